// decodeAttention() bindings: arguments -> validated DecodeParams -> the CPU decode kernel
// (native/cpu/decode), synchronously or on a libuv worker that waits for attnkit's pool.
#include <napi.h>

#include <atomic>
#include <string>

#include "../core/validate.h"
#include "../cpu/decode/decode_attention.h"
#include "bindings.h"
#include "descriptor.h"
#include "js_errors.h"
#include "promise_worker.h"
#include "tensor_args.h"

namespace attnkit {
namespace {

// decodeAttention(q, out, kPool, vPool, pageTable, lengths, alibiSlopes, sinkLogits, lse, scores,
// descriptor, abortFlag, resizableArg). pageTable: Int32Array [B, width]; lengths: Int32Array [B];
// lse: Float32Array [B, Hq, Sq] or null; scores: Float32Array [pages, Hkv, P] or null.
enum { aQ = 0, aOut, aKPool, aVPool, aTable, aLengths, aAlibi, aSinkLogits, aLse, aScores, aDesc, aAbort, aResizable, aCount };
const char* const kNames[] = {"q", "out", "cache.k", "cache.v", "pageTable", "lengths", "alibiSlopes", "sinkLogits", "lse", "scores"};

DecodeParams decode_params_from(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < aCount) throw_attn_error(env, ErrorCode::Argument, "internal: decode binding needs 13 arguments");
  const double* d = descriptor_arg(env, info[aDesc], desc::kDecodeLength);
  const double* opt = d + desc::kDecodeOptions;
  DecodeRequest r;
  r.q = tensor_slot(env, info[aQ], "q", d, desc::kDecQ);
  r.out = tensor_slot(env, info[aOut], "out", d, desc::kDecOut);
  r.k_pool = tensor_slot(env, info[aKPool], "cache.k", d, desc::kDecKPool);
  r.v_pool = tensor_slot(env, info[aVPool], "cache.v", d, desc::kDecVPool);
  r.page_table = int32_array_arg(env, info[aTable], "pageTable");
  r.lengths = int32_array_arg(env, info[aLengths], "lengths");
  r.alibi_slopes = float_array_arg(env, info[aAlibi], "alibiSlopes");
  r.sink_logits = float_array_arg(env, info[aSinkLogits], "sinkLogits");
  const FloatArray lse = float_array_arg(env, info[aLse], "lse");
  r.lse = const_cast<float*>(lse.data);
  r.lse_length = lse.length;
  r.scores = float_array_arg(env, info[aScores], "scores");
  r.has_scale = opt[desc::kDecHasScale] != 0;
  r.scale = opt[desc::kDecScale];
  r.has_window = opt[desc::kDecHasWindow] != 0;
  r.window_left = opt[desc::kDecWindowLeft];
  r.window_right = opt[desc::kDecWindowRight];
  r.sinks = opt[desc::kDecSinks];
  r.softcap = opt[desc::kDecSoftcap];
  r.splits = opt[desc::kDecSplits];
  DecodeParams p = validate_decode(r);
  p.abort_flag = abort_flag_arg(env, info[aAbort]);
  return p;
}

class DecodeWorker : public PromiseWorker {
 public:
  DecodeWorker(Napi::Env env, const Napi::CallbackInfo& info, const DecodeParams& p)
      : PromiseWorker(env, "attnkit.decodeAttention", info, ErrorCode::Argument), params_(p) {}

 private:
  void work() override {
    try {
      decode_attention_cpu(params_);
    } catch (const std::bad_alloc&) {
      throw AttnException(ErrorCode::OutOfMemory, "decodeAttention: out of memory for scratch buffers");
    }
  }
  DecodeParams params_;
};

Napi::Value decode_sync(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    decode_attention_cpu(decode_params_from(info));
    return info.Env().Undefined();
  });
}

Napi::Value decode_async(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    DecodeParams p = decode_params_from(info);
    refuse_resizable(info[aResizable], kNames, aScores + 1, "the Sync form");
    auto* w = new DecodeWorker(info.Env(), info, p);
    Napi::Promise promise = w->promise();
    w->Queue();
    return promise;
  });
}

}  // namespace

void register_decode_bindings(Napi::Env env, Napi::Object exports) {
  exports.Set("decodeAttentionSync", Napi::Function::New(env, decode_sync, "decodeAttentionSync"));
  exports.Set("decodeAttentionAsync", Napi::Function::New(env, decode_async, "decodeAttentionAsync"));
}

}  // namespace attnkit
