// Decode attention on the GPU over a paged KV cache (issue 6): the few new queries of each
// sequence against its cached keys and values, read in place through the page table. Same
// semantics as the CPU kernel (native/cpu/decode): query i of sequence b sits at position
// length(b) - Sq + i (causal among the new queries, bottom-right aligned), GQA packing (every query
// head of a kv head and every new query share one pass over that kv head's pages), window, sinks,
// softcap, ALiBi, sink logits and lse.
//
// Split-KV (Flash-Decoding): when the (sequence, kv head) pairs alone do not fill the GPU, each
// pair's keys are cut into `splits` chunks whose partial (out, lse) are written as float32 and
// combined by the attention-state merge (native/cuda/merge) in a second launch.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "../fused/fused_attention.h"

namespace attnkit {
namespace cuda {

struct DecodeProblem {
  // q [B, Hq, Sq, D] and out [B, Hq, Sq, D], strides in elements as (b, h, s, d). `dtype` is q's
  // and the pools', out_dtype out's (ElementType).
  const void* q;
  int64_t q_stride[4];
  void* out;
  int64_t out_stride[4];
  int dtype, out_dtype;
  // Pools [pool_pages, Hkv, P, D], contiguous (HND pages).
  const void* k_pool;
  const void* v_pool;
  int64_t pool_pages;
  // Device memory: page_table [B, table_width], lengths [B]. The kernel clamps what it reads (a
  // length to table_width * P, a page id to [0, pool_pages)), so no table content makes it read
  // outside the pools; the caller validated them anyway.
  const int32_t* page_table;
  int64_t table_width;
  const int32_t* lengths;
  int batch, heads_q, heads_kv, seq_q, head_dim, page_size;

  float scale;
  float softcap;  // 0: off
  int64_t window_left, window_right;  // -1: unbounded
  int64_t sinks;                      // keys j < sinks ignore the window
  const float* alibi_slopes;          // device [Hq] or nullptr
  const float* sink_logits;           // device [Hq] or nullptr
  float* lse;                         // device, contiguous [B, Hq, Sq], or nullptr
};

// H2O's accumulated scores: scores[slot of key j] += sum over the kv head's rows of exp(s - lse),
// s the row's score of key j (every option applied), lse the row's final lse (device [B, Hq, Sq]).
// A pass over K alone after the decode; max_length bounds the lengths (sizes the grid).
cudaError_t launch_decode_scores(const DecodeProblem& p, const float* lse, float* scores, int64_t max_length,
                                 cudaStream_t stream);

// How a call is cut into CTAs: query rows of a kv head's group per CTA (row blocks), key chunks
// per (sequence, kv head) (splits), and the float32 scratch the split partials need.
struct DecodePlan {
  bool mma = false;  // the tensor-core kernel
  int rows_per_block = 4;
  int row_blocks = 1;
  int splits = 1;
  size_t scratch_bytes = 0;  // partial outs and lses when splits > 1, else 0
};

// Launch-wide values of one decode launch (internal to the decode kernels).
struct DecodeLaunch {
  int splits, row_blocks;
  bool aligned;     // rows are 16-byte aligned: cp.async; else element copies
  float* part_out;  // splits > 1: [splits][B * Hq * Sq][D] float32
  float* part_lse;  // splits > 1: [splits][B * Hq * Sq]
};

// The tensor-core form (decode_attention_sm80.cu, mma.sync m16n8k16): float16 / bfloat16, head
// dims 64 and 128, 16-byte aligned pools, a device of compute capability 8.0 or newer; 16 query
// rows per CTA. Builds without it (the CPU emulator) answer false.
bool decode_mma_supports(const DecodeProblem& p, const DeviceTraits& dev);
constexpr int kDecodeMmaRows = 16;
// Two CTAs per SM: each CTA's tile loop (barrier, loads issued, QK, softmax, PV) is serial, and one
// CTA per SM with twice the stages ran at 0.58x copy bandwidth where two ran at 0.94x (H100).
constexpr int kDecodeMmaCtasPerSm = 2;
cudaError_t launch_decode_mma(const DecodeProblem& p, const DecodeLaunch& launch, unsigned blocks, cudaStream_t stream);

// Whether the kernel takes the problem; `why` says what it lacks when not.
bool decode_supports(const DecodeProblem& p, const char** why);

// splits <= 0: chosen so that the CTAs fill the device's multiprocessors; max_length bounds the
// longest sequence (the planner never reads device memory).
DecodePlan plan_decode(const DecodeProblem& p, int64_t max_length, int64_t splits, const DeviceTraits& dev);

// Enqueues the decode kernel and, when plan.splits > 1, the merge of its partials (scratch: at
// least plan.scratch_bytes of device memory, 16-byte aligned, used until the merge has run).
cudaError_t launch_decode_attention(const DecodeProblem& p, const DecodePlan& plan, void* scratch,
                                    const DeviceTraits& dev, cudaStream_t stream);

}  // namespace cuda
}  // namespace attnkit

namespace attnkit {
namespace cuda {

// Rows moved between [B, Hkv, T, D] tensors (any strides) and a paged cache's pools, through the
// page table: KVCache.append scatters row t < counts[b] of sequence b to position starts[b] + t;
// eviction gathers it from position positions[b * T + t]. counts, starts: device [B].
struct KvRowsProblem {
  void* k;  // read by append, written by gather
  void* v;
  int64_t k_stride[4], v_stride[4];
  int64_t tokens;  // T
  int elem_bytes;  // 2 or 4: rows are copied as bits
  void* k_pool;
  void* v_pool;
  int64_t pool_pages;
  const int32_t* page_table;
  int64_t table_width;
  const int32_t* counts;
  const int32_t* starts;  // append only
  int batch, heads_kv, head_dim, page_size;
};

cudaError_t launch_kv_append(const KvRowsProblem& p, int multiprocessors, cudaStream_t stream);
// positions: device [B, T].
cudaError_t launch_kv_gather(const KvRowsProblem& p, const int32_t* positions, int multiprocessors, cudaStream_t stream);

}  // namespace cuda
}  // namespace attnkit
