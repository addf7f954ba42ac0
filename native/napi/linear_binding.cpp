// linearAttention() and linearAttentionStep() bindings: arguments -> validated LinearParams -> the
// CPU kernel or, for tensors on a CUDA device, the CUDA library; synchronously or on a libuv
// worker that waits for attnkit's pool (or the GPU).
#include <napi.h>

#include <atomic>
#include <string>

#include "../core/cuda_backend.h"
#include "../core/validate.h"
#include "../cpu/linear/linear_attention.h"
#include "bindings.h"
#include "descriptor.h"
#include "js_errors.h"
#include "promise_worker.h"
#include "tensor_args.h"

namespace attnkit {
namespace {

// Argument positions of linearAttention(q, k, v, out, logGates, initialState, initialNormalizer,
// stateOut, normalizerOut, decay, descriptor, abortFlag, resizableArg). A step passes its state
// (and normalizer) as both initialState and stateOut. decay: a Float32Array [H] or null (a single
// lambda travels in the descriptor).
enum { aQ = 0, aK, aV, aOut, aGates, aInitState, aInitNorm, aStateOut, aNormOut, aDecay, aDesc, aAbort, aResizable, aCount };

struct Names {
  const char* arg[aDecay + 1];
};
Names names_for(bool step) {
  if (step) return {{"q", "k", "v", "out", "logGates", "state", "normalizer", "state", "normalizer", "decay"}};
  return {{"q", "k", "v", "out", "logGates", "initialState", "initialNormalizer", "state", "normalizer", "decay"}};
}

LinearParams linear_params_from(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < aCount) throw_attn_error(env, ErrorCode::Argument, "internal: linear attention binding needs 13 arguments");
  const double* d = descriptor_arg(env, info[aDesc], desc::kLinearLength);
  const double* opt = d + desc::kLinearOptions;
  LinearRequest r;
  r.step = opt[desc::kLinStep] != 0;
  const Names n = names_for(r.step);
  r.q = tensor_slot(env, info[aQ], n.arg[aQ], d, desc::kLinQ);
  r.k = tensor_slot(env, info[aK], n.arg[aK], d, desc::kLinK);
  r.v = tensor_slot(env, info[aV], n.arg[aV], d, desc::kLinV);
  r.out = tensor_slot(env, info[aOut], n.arg[aOut], d, desc::kLinOut);
  r.has_gates = opt[desc::kLinHasGates] != 0;
  if (r.has_gates) r.gates = tensor_slot(env, info[aGates], n.arg[aGates], d, desc::kLinGates);
  r.has_initial_state = opt[desc::kLinHasInitialState] != 0;
  if (r.has_initial_state) r.initial_state = tensor_slot(env, info[aInitState], n.arg[aInitState], d, desc::kLinInitialState);
  r.has_initial_normalizer = opt[desc::kLinHasInitialNormalizer] != 0;
  if (r.has_initial_normalizer) r.initial_normalizer = tensor_slot(env, info[aInitNorm], n.arg[aInitNorm], d, desc::kLinInitialNormalizer);
  r.has_state_out = opt[desc::kLinHasStateOut] != 0;
  if (r.has_state_out) r.state_out = tensor_slot(env, info[aStateOut], n.arg[aStateOut], d, desc::kLinStateOut);
  r.has_normalizer_out = opt[desc::kLinHasNormalizerOut] != 0;
  if (r.has_normalizer_out) r.normalizer_out = tensor_slot(env, info[aNormOut], n.arg[aNormOut], d, desc::kLinNormalizerOut);
  r.causal = opt[desc::kLinCausal] != 0;
  r.feature_map = opt[desc::kLinFeatureMap];
  r.scale = opt[desc::kLinScale];
  r.normalize = opt[desc::kLinNormalize] != 0;
  r.chunk = opt[desc::kLinChunk];
  const double kind = opt[desc::kLinDecayKind];
  r.decay_kind = kind == 1 ? 1 : kind == 2 ? 2 : kind == 0 ? 0 : -1;
  r.decay = opt[desc::kLinDecay];
  if (r.decay_kind == 2) {
    r.decay_per_head = float_array_arg(env, info[aDecay], "decay");
    if (!r.decay_per_head.present) throw_attn_error(env, ErrorCode::Argument, "internal: per-head decay without its array");
  }
  LinearParams p = validate_linear(r);
  // A step updates its state in place; stopping half way would leave some heads updated and others
  // not, so a step that has started always finishes (the async form checks the flag before it starts).
  if (!r.step) p.abort_flag = abort_flag_arg(env, info[aAbort]);
  return p;
}

// Where the call runs: the device of q (validation put every tensor there).
void run_linear(const LinearParams& p, const char* op) {
  if (p.q.device >= 0) {
    cuda_linear_attention(p, p.q.device, op);
  } else {
    linear_attention_cpu(p);
  }
}

const char* op_name(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double* d = descriptor_arg(env, info[aDesc], desc::kLinearLength);
  return d[desc::kLinearOptions + desc::kLinStep] != 0 ? "linearAttentionStep" : "linearAttention";
}

class LinearWorker : public PromiseWorker {
 public:
  LinearWorker(Napi::Env env, const Napi::CallbackInfo& info, const LinearParams& p, const char* op,
               const std::atomic<int32_t>* start_flag)
      : PromiseWorker(env, "attnkit.linearAttention", info, ErrorCode::Argument), params_(p), op_(op), start_flag_(start_flag) {
    // Device memory of this call stays allocated until it settles, even if disposed meanwhile.
    for (int i = aQ; i <= aNormOut; ++i) mark_busy(env, info[i], &busy());
  }

 private:
  void work() override {
    // A step, and any GPU call, is not interrupted once it runs; an abort that lands before it
    // starts counts (the CPU kernel polls its flag between chunks itself).
    const std::atomic<int32_t>* flag = start_flag_ ? start_flag_ : params_.q.device >= 0 ? params_.abort_flag : nullptr;
    if (flag && flag->load() != 0) {
      throw AttnException(ErrorCode::Aborted, std::string(op_) + " was aborted by its AbortSignal");
    }
    try {
      run_linear(params_, op_);
    } catch (const std::bad_alloc&) {
      throw AttnException(ErrorCode::OutOfMemory, std::string(op_) + ": out of memory for scratch buffers");
    }
  }

  LinearParams params_;
  const char* op_;
  const std::atomic<int32_t>* start_flag_;  // the abort flag, read once before a step starts (see above)
};

Napi::Value linear_sync(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    run_linear(linear_params_from(info), op_name(info));
    return info.Env().Undefined();
  });
}

Napi::Value linear_async(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    LinearParams p = linear_params_from(info);
    const char* op = op_name(info);
    const bool step = std::string(op) == "linearAttentionStep";
    refuse_resizable(info[aResizable], names_for(step).arg, aDecay + 1, "the Sync form");
    const double macs = static_cast<double>(p.batch) * p.heads * p.seq * static_cast<double>(p.dk) * static_cast<double>(p.dv) * 3.0;
    if (p.q.device < 0 && macs <= kInlineAsyncMacs) return settled_promise(info.Env(), [&] { linear_attention_cpu(p); });
    // (a step's flag is not in p: a running step always finishes, see linear_params_from)
    const std::atomic<int32_t>* start_flag = step ? abort_flag_arg(info.Env(), info[aAbort]) : nullptr;
    auto* w = new LinearWorker(info.Env(), info, p, op, start_flag);
    Napi::Promise promise = w->promise();
    w->Queue();
    return promise;
  });
}

}  // namespace

void register_linear_bindings(Napi::Env env, Napi::Object exports) {
  exports.Set("linearAttentionSync", Napi::Function::New(env, linear_sync, "linearAttentionSync"));
  exports.Set("linearAttentionAsync", Napi::Function::New(env, linear_async, "linearAttentionAsync"));
}

}  // namespace attnkit
