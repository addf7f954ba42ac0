// decodeAttention() bindings: arguments -> validated DecodeParams -> the CPU decode kernel
// (native/cpu/decode) or, for a cache on a GPU, the CUDA library's decode_attention, synchronously
// or on a libuv worker that waits for attnkit's pool or the GPU. Also the device cache's row moves:
// KVCache.append's scatter (kvAppendSync) and eviction's gather (kvGatherSync).
#include <napi.h>

#include <atomic>
#include <string>

#include "../core/cuda_backend.h"
#include "../core/validate.h"
#include "../cpu/decode/decode_attention.h"
#include "bindings.h"
#include "descriptor.h"
#include "device_storage.h"
#include "js_errors.h"
#include "promise_worker.h"
#include "tensor_args.h"

namespace attnkit {
namespace {

// decodeAttention(q, out, kPool, vPool, pageTable, lengths, alibiSlopes, sinkLogits, lse, scores,
// descriptor, abortFlag, resizableArg, deviceTable, deviceLengths). pageTable: Int32Array [B, width];
// lengths: Int32Array [B]; lse: [B, Hq, Sq] float32 and scores: [pages, Hkv, P] float32 (each a
// Float32Array, or a device handle for a device cache) or null. q, out and the pools are
// TypedArrays or device handles; a device cache also passes the device copies of pageTable and
// lengths (deviceTable, deviceLengths: int32 device handles; null for a CPU cache).
enum {
  aQ = 0, aOut, aKPool, aVPool, aTable, aLengths, aAlibi, aSinkLogits, aLse, aScores, aDesc, aAbort, aResizable,
  aDeviceTable, aDeviceLengths, aCount
};
const char* const kNames[] = {"q", "out", "cache.k", "cache.v", "pageTable", "lengths", "alibiSlopes", "sinkLogits", "lse", "scores"};

DecodeParams decode_params_from(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < aCount) throw_attn_error(env, ErrorCode::Argument, "internal: decode binding needs 15 arguments");
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
  const LseArg lse = lse_arg(env, info[aLse]);
  r.lse = lse.data;
  r.lse_length = lse.length;
  r.lse_device = lse.device;
  r.device_table = device_array_arg(env, info[aDeviceTable], "deviceTable", DType::Int32);
  r.device_lengths = device_array_arg(env, info[aDeviceLengths], "deviceLengths", DType::Int32);
  // scores: a Float32Array (CPU cache) or a float32 device handle (device cache).
  if (device_storage_of(env, info[aScores]))
    r.device_scores = device_array_arg(env, info[aScores], "scores", DType::Float32);
  else
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

// Where the call runs: the device of q (validation put every tensor there).
void run_decode(const DecodeParams& p) {
  if (p.q.device >= 0) {
    cuda_decode_attention(p, p.q.device);
  } else {
    decode_attention_cpu(p);
  }
}

class DecodeWorker : public PromiseWorker {
 public:
  DecodeWorker(Napi::Env env, const Napi::CallbackInfo& info, const DecodeParams& p)
      : PromiseWorker(env, "attnkit.decodeAttention", info, ErrorCode::Argument), params_(p) {
    // Device memory of this call stays allocated until it settles, even if disposed meanwhile.
    for (int i : {aQ, aOut, aKPool, aVPool, aLse, aScores, aDeviceTable, aDeviceLengths}) mark_busy(env, info[i], &busy());
  }

 private:
  void work() override {
    if (params_.q.device >= 0 && params_.abort_flag && params_.abort_flag->load() != 0) {
      // A GPU call is not interrupted once it runs; an abort that lands before it starts counts.
      throw AttnException(ErrorCode::Aborted, "decodeAttention was aborted by its AbortSignal");
    }
    try {
      run_decode(params_);
    } catch (const std::bad_alloc&) {
      throw AttnException(ErrorCode::OutOfMemory, "decodeAttention: out of memory for scratch buffers");
    }
  }
  DecodeParams params_;
};

Napi::Value decode_sync(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    run_decode(decode_params_from(info));
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

// kvAppendSync / kvGatherSync(kPool, vPool, deviceTable, k, v, table, counts, index, descriptor):
// rows between k, v and a device cache's pools (KVCache.append; eviction reads the kept rows out).
// table: the Int32Array mirror of deviceTable [B, width]; counts: Int32Array [B]; index: starts
// [B] (append) or positions [B, T] (gather); the descriptor holds the records of k, v, kPool, vPool.
template <bool kGather>
Napi::Value kv_rows_sync(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    Napi::Env env = info.Env();
    if (info.Length() < 9) throw_attn_error(env, ErrorCode::Argument, "internal: kv rows binding needs 9 arguments");
    const double* d = descriptor_arg(env, info[8], desc::kKvAppendLength);
    KvRowsRequest r;
    r.gather = kGather;
    r.k_pool = tensor_slot(env, info[0], "cache.k", d, desc::kAppKPool);
    r.v_pool = tensor_slot(env, info[1], "cache.v", d, desc::kAppVPool);
    r.device_table = device_array_arg(env, info[2], "deviceTable", DType::Int32);
    r.k = tensor_slot(env, info[3], "k", d, desc::kAppK);
    r.v = tensor_slot(env, info[4], "v", d, desc::kAppV);
    r.table = int32_array_arg(env, info[5], "pageTable");
    r.counts = int32_array_arg(env, info[6], "counts");
    (kGather ? r.positions : r.starts) = int32_array_arg(env, info[7], kGather ? "positions" : "starts");
    const KvRowsParams p = validate_kv_rows(r);
    cuda_kv_rows(p, p.k_pool.device);
    return env.Undefined();
  });
}

}  // namespace

void register_decode_bindings(Napi::Env env, Napi::Object exports) {
  exports.Set("kvAppendSync", Napi::Function::New(env, kv_rows_sync<false>, "kvAppendSync"));
  exports.Set("kvGatherSync", Napi::Function::New(env, kv_rows_sync<true>, "kvGatherSync"));
  exports.Set("decodeAttentionSync", Napi::Function::New(env, decode_sync, "decodeAttentionSync"));
  exports.Set("decodeAttentionAsync", Napi::Function::New(env, decode_async, "decodeAttentionAsync"));
}

}  // namespace attnkit
