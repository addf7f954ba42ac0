// Module entry: registers the feature bindings and the introspection calls.
#include <napi.h>

#include "../core/cpu_features.h"
#include "../core/thread_pool.h"
#include "../cpu/peak/fma_peak.h"
#include "../cpu/peak/mem_read.h"
#include "bindings.h"
#include "js_errors.h"

namespace attnkit {
namespace {

// init(AttnError): lib/ hands over its error class so native errors are real AttnError instances.
Napi::Value init(const Napi::CallbackInfo& info) {
  AddonState* state = info.Env().GetInstanceData<AddonState>();
  if (info.Length() > 0 && info[0].IsFunction()) state->attn_error = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Value cpu_info(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("isa", isa_name(active_isa()));
  o.Set("bestIsa", isa_name(detect_best_isa()));
  o.Set("threads", ThreadPool::global().threads());
  return o;
}

Napi::Value set_num_threads(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const double n = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    if (!(n >= 1 && n <= 1024) || n != static_cast<int>(n)) fail(ErrorCode::Argument, "setNumThreads(n): n must be an integer in [1, 1024]");
    ThreadPool::global().resize(static_cast<int>(n));
    return info.Env().Undefined();
  });
}

// setIsa('scalar' | 'avx2' | 'avx512'): caps the kernels used (benchmarks and tests of every path).
Napi::Value set_isa(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const std::string s = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    if (s == "scalar") set_active_isa(Isa::Scalar);
    else if (s == "avx2") set_active_isa(Isa::Avx2);
    else if (s == "avx512") set_active_isa(Isa::Avx512);
    else fail(ErrorCode::Argument, "isa must be 'scalar', 'avx2' or 'avx512', got '" + s + "'");
    return Napi::String::New(info.Env(), isa_name(active_isa()));
  });
}

// memReadGBps(megabytes, rounds): the machine's streaming read bandwidth (bench/decode-cpu.js).
Napi::Value mem_read(const Napi::CallbackInfo& info) {
  const double mb = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 512;
  const double rounds = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 5;
  const double m = mb < 16 ? 16 : mb > 8192 ? 8192 : mb;
  return guarded(info.Env(), [&] {
    return Napi::Number::New(info.Env(), measure_read_gbps(static_cast<size_t>(m * 1048576.0), rounds < 1 ? 1 : rounds > 100 ? 100 : static_cast<int>(rounds)));
  });
}

Napi::Value fma_peak(const Napi::CallbackInfo& info) {
  const int ms = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 200;
  return Napi::Number::New(info.Env(), measure_fma_peak_gflops(ms < 10 ? 10 : ms));
}

}  // namespace

void register_info_bindings(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, init, "init"));
  exports.Set("cpuInfo", Napi::Function::New(env, cpu_info, "cpuInfo"));
  exports.Set("setNumThreads", Napi::Function::New(env, set_num_threads, "setNumThreads"));
  exports.Set("setIsa", Napi::Function::New(env, set_isa, "setIsa"));
  exports.Set("fmaPeakGflops", Napi::Function::New(env, fma_peak, "fmaPeakGflops"));
  exports.Set("memReadGBps", Napi::Function::New(env, mem_read, "memReadGBps"));
}

Napi::Object module_init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData<AddonState>(new AddonState());
  register_info_bindings(env, exports);
  register_attention_bindings(env, exports);
  register_linear_bindings(env, exports);
  register_decode_bindings(env, exports);
  register_device_bindings(env, exports);
  return exports;
}

}  // namespace attnkit

static Napi::Object InitAttnkit(Napi::Env env, Napi::Object exports) { return attnkit::module_init(env, exports); }
NODE_API_MODULE(attnkit, InitAttnkit)
