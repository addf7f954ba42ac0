// attention() and mergeAttentionStates() bindings: arguments -> validated params -> the CPU kernel
// or the CUDA library (where the tensors live), synchronously or on a libuv worker that waits for
// attnkit's own pool or for the GPU.
#include <napi.h>

#include <atomic>
#include <cmath>
#include <memory>
#include <vector>

#include "../core/cuda_backend.h"
#include "../core/validate.h"
#include "../cpu/fused/fused_attention.h"
#include "../cpu/merge/merge_states.h"
#include "bindings.h"
#include "descriptor.h"
#include "device_storage.h"
#include "js_errors.h"
#include "promise_worker.h"
#include "tensor_args.h"

namespace attnkit {
namespace {

// Argument positions of attention(q, k, v, out, bias, mask, blockMask, elementIndex, elementBits,
// alibiSlopes, sinkLogits, cuSeqlensQ, cuSeqlensK, lse, descriptor, abortFlag, resizableArg). q, k,
// v, out, bias, mask, blockMask, elementIndex, elementBits and lse are each a TypedArray or a
// device storage handle; every tensor of a call on one device (validate.cpp). blockSparseAttention
// is attention with a blockMask (and its element bitmaps, if it has them).
enum { aQ = 0, aK, aV, aOut, aBias, aMask, aBlockMask, aElementIndex, aElementBits, aAlibi, aSinkLogits, aCuQ, aCuK, aLse, aDesc, aAbort, aResizable, aCount };
const char* const kArgNames[] = {"q", "k", "v", "out", "bias", "mask", "blockMask", "blockMask.elementIndex", "blockMask.elementBits",
                                 "alibiSlopes", "sinkLogits", "cuSeqlensQ", "cuSeqlensK", "lse"};

AttentionParams attention_params_from(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < aCount) throw_attn_error(env, ErrorCode::Argument, "internal: attention binding needs 17 arguments");
  const double* d = descriptor_arg(env, info[aDesc], desc::kAttentionLength);
  const double* opt = d + desc::kOptions;
  AttentionRequest r;
  r.q = tensor_slot(env, info[aQ], "q", d, desc::kQ);
  r.k = tensor_slot(env, info[aK], "k", d, desc::kK);
  r.v = tensor_slot(env, info[aV], "v", d, desc::kV);
  r.out = tensor_slot(env, info[aOut], "out", d, desc::kOut);
  r.has_bias = opt[desc::kHasBias] != 0;
  r.has_mask = opt[desc::kHasMask] != 0;
  if (r.has_bias) r.bias = tensor_slot(env, info[aBias], "bias", d, desc::kBias);
  if (r.has_mask) r.mask = tensor_slot(env, info[aMask], "mask", d, desc::kMask);
  r.has_block_mask = opt[desc::kHasBlockMask] != 0;
  if (r.has_block_mask) {
    r.block_mask = tensor_slot(env, info[aBlockMask], "blockMask", d, desc::kBlockMask);
    r.block_q = opt[desc::kBlockQ];
    r.block_k = opt[desc::kBlockK];
    r.has_element_mask = opt[desc::kHasElementMask] != 0;
    if (r.has_element_mask) {
      r.element_index = tensor_slot(env, info[aElementIndex], "blockMask.elementIndex", d, desc::kElementIndex);
      r.element_bits = tensor_slot(env, info[aElementBits], "blockMask.elementBits", d, desc::kElementBits);
    }
  }
  r.alibi_slopes = float_array_arg(env, info[aAlibi], "alibiSlopes");
  r.sink_logits = float_array_arg(env, info[aSinkLogits], "sinkLogits");
  r.cu_seqlens_q = int32_array_arg(env, info[aCuQ], "cuSeqlensQ");
  r.cu_seqlens_k = int32_array_arg(env, info[aCuK], "cuSeqlensK");
  const LseArg lse = lse_arg(env, info[aLse]);
  r.lse = lse.data;
  r.lse_length = lse.length;
  r.lse_device = lse.device;
  r.has_scale = opt[desc::kHasScale] != 0;
  r.scale = opt[desc::kScale];
  r.causal = opt[desc::kCausal] != 0;
  r.has_window = opt[desc::kHasWindow] != 0;
  r.window_left = opt[desc::kWindowLeft];
  r.window_right = opt[desc::kWindowRight];
  r.sinks = opt[desc::kSinks];
  r.softcap = opt[desc::kSoftcap];
  AttentionParams p = validate_attention(r);
  p.abort_flag = abort_flag_arg(env, info[aAbort]);
  return p;
}

// Where the call runs: the device of q (validation put every tensor there).
void run_attention(const AttentionParams& p) {
  if (p.q.device >= 0) {
    cuda_attention(p, p.q.device);
  } else {
    fused_attention_cpu(p);
  }
}

class AttentionWorker : public PromiseWorker {
 public:
  AttentionWorker(Napi::Env env, const Napi::CallbackInfo& info, const AttentionParams& p)
      : PromiseWorker(env, "attnkit.attention", info, ErrorCode::Argument), params_(p) {
    // Device memory of this call stays allocated until it settles, even if disposed meanwhile.
    for (int i = aQ; i <= aLse; ++i) mark_busy(env, info[i], &busy());
  }

 private:
  void work() override {
    if (params_.q.device >= 0 && params_.abort_flag && params_.abort_flag->load() != 0) {
      // A GPU call is not interrupted once it runs; an abort that lands before it starts counts.
      throw AttnException(ErrorCode::Aborted, "attention was aborted by its AbortSignal");
    }
    try {
      run_attention(params_);
    } catch (const std::bad_alloc&) {
      throw AttnException(ErrorCode::OutOfMemory, "attention: out of memory for scratch buffers");
    }
  }

  AttentionParams params_;
};

Napi::Value attention_sync(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    run_attention(attention_params_from(info));
    return info.Env().Undefined();
  });
}

double attention_macs(const AttentionParams& p) {
  return static_cast<double>(p.batch) * p.heads_q * p.seq_q * p.seq_k * static_cast<double>(p.head_dim + p.head_dim_v);
}

Napi::Value attention_async(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    AttentionParams p = attention_params_from(info);
    refuse_resizable(info[aResizable], kArgNames, aLse + 1, "attentionSync");
    if (p.q.device < 0 && attention_macs(p) <= kInlineAsyncMacs) return settled_promise(info.Env(), [&] { fused_attention_cpu(p); });
    auto* w = new AttentionWorker(info.Env(), info, p);
    Napi::Promise promise = w->promise();
    w->Queue();
    return promise;
  });
}

// mergeAttentionStates(outs: TypedArray[], lses: TypedArray[], out, lse, descriptor): the
// descriptor holds records for outs[0..n), lses[0..n), out, lse. Each tensor may instead be a
// device storage handle (all on one device).
Napi::Value merge_states(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    Napi::Env env = info.Env();
    if (info.Length() < 5 || !info[0].IsArray() || !info[1].IsArray()) throw_attn_error(env, ErrorCode::Argument, "internal: merge binding arguments");
    Napi::Array outs = info[0].As<Napi::Array>(), lses = info[1].As<Napi::Array>();
    const uint32_t n = outs.Length();
    if (n < 1 || lses.Length() != n) throw_attn_error(env, ErrorCode::Argument, "parts must hold at least one { out, lse } pair");
    const double* d = descriptor_arg(env, info[4], static_cast<size_t>(2 * n + 2) * desc::kTensorRecord);
    std::vector<TensorView> ov(n), lv(n);
    std::vector<std::string> names(2 * n);
    for (uint32_t i = 0; i < n; ++i) {
      names[2 * i] = "parts[" + std::to_string(i) + "].out";
      names[2 * i + 1] = "parts[" + std::to_string(i) + "].lse";
      ov[i] = tensor_slot(env, outs.Get(i), names[2 * i].c_str(), d, static_cast<int>(i));
      lv[i] = tensor_slot(env, lses.Get(i), names[2 * i + 1].c_str(), d, static_cast<int>(n + i));
    }
    MergeRequest r;
    r.num_parts = n;
    r.outs = ov.data();
    r.lses = lv.data();
    r.out = tensor_slot(env, info[2], "out", d, static_cast<int>(2 * n));
    r.lse = tensor_slot(env, info[3], "lse", d, static_cast<int>(2 * n + 1));
    validate_merge(r);
    if (r.out.device >= 0) {
      cuda_merge_states(r, r.out.device);
    } else {
      merge_attention_states_cpu(r);
    }
    return env.Undefined();
  });
}

// topkSelect(q, k, states, indices, descriptor): topkBlockAttention's gating for device tensors
// (the CPU gating is JS). The descriptor holds records for q, k, states, indices, then blockSize,
// topk and causal.
Napi::Value topk_select(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    Napi::Env env = info.Env();
    if (info.Length() < 5) throw_attn_error(env, ErrorCode::Argument, "internal: topkSelect binding arguments");
    constexpr int kRecords = 4;
    const double* d = descriptor_arg(env, info[4], kRecords * desc::kTensorRecord + 3);
    TopkSelectRequest r;
    r.q = tensor_slot(env, info[0], "q", d, 0);
    r.k = tensor_slot(env, info[1], "k", d, 1);
    r.states = tensor_slot(env, info[2], "states", d, 2);
    r.indices = tensor_slot(env, info[3], "indices", d, 3);
    const double* o = d + kRecords * desc::kTensorRecord;
    for (int i = 0; i < 2; ++i) {
      if (!(o[i] >= 1 && o[i] <= 9007199254740992.0 && o[i] == std::floor(o[i]))) {
        throw_attn_error(env, ErrorCode::Argument, i == 0 ? "blockSize must be an integer >= 1" : "topk must be an integer >= 1");
      }
    }
    r.block = static_cast<int64_t>(o[0]);
    r.topk = static_cast<int64_t>(o[1]);
    r.causal = o[2] != 0;
    validate_topk_select(r);
    cuda_topk_select(r, r.q.device);
    return env.Undefined();
  });
}

}  // namespace

void register_attention_bindings(Napi::Env env, Napi::Object exports) {
  exports.Set("attentionSync", Napi::Function::New(env, attention_sync, "attentionSync"));
  exports.Set("attentionAsync", Napi::Function::New(env, attention_async, "attentionAsync"));
  exports.Set("mergeStates", Napi::Function::New(env, merge_states, "mergeStates"));
  exports.Set("topkSelect", Napi::Function::New(env, topk_select, "topkSelect"));
}

}  // namespace attnkit
