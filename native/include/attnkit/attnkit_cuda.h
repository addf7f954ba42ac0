/* The C ABI between the CPU addon (attnkit.node) and the CUDA library (libattnkit_cuda.so).
 *
 * The addon dlopens the library lazily and asks it for one table of entry points through
 * attnkit_cuda_get_api(ATTNKIT_CUDA_ABI_VERSION). A library built for another ABI version answers
 * NULL, so an old addon never calls into a new library (or the reverse) with the wrong layouts.
 *
 * Plain C on purpose: no C++ types, no exceptions and no CUDA types cross this boundary, so the
 * addon compiles without the CUDA toolkit and the library carries its CUDA runtime statically.
 *
 * The table only grows within a version: entries are appended at its end, and struct_size says
 * how far a library's table reaches, so a caller asks ATTNKIT_CUDA_API_HAS before it uses an entry
 * newer than the ones it requires (an older library of the same version still serves it).
 *
 * Every entry point returns an attnkit_cuda_status and, on failure, writes a NUL-terminated
 * message into err[0..err_len). The caller (native/core) has already validated every argument
 * against the sizes of the device allocations; the library re-checks only what it alone can see
 * (device capabilities, kernel images, memory).
 */
#ifndef ATTNKIT_CUDA_H_
#define ATTNKIT_CUDA_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ATTNKIT_CUDA_ABI_VERSION 1
#define ATTNKIT_CUDA_MAX_RANK 6

typedef enum attnkit_cuda_status {
  ATTNKIT_CUDA_OK = 0,
  ATTNKIT_CUDA_OOM = 1,          /* device allocation failed: ERR_ATTN_OOM */
  ATTNKIT_CUDA_UNAVAILABLE = 2,  /* no driver, no device, or no kernel image: ERR_ATTN_CUDA_UNAVAILABLE */
  ATTNKIT_CUDA_ARGUMENT = 3,     /* an argument the library cannot serve: ERR_ATTN_ARGUMENT */
  ATTNKIT_CUDA_INTERNAL = 4      /* any other CUDA error (the message carries cudaGetErrorString) */
} attnkit_cuda_status;

/* Same numbering as the addon's DType. */
typedef enum attnkit_cuda_dtype {
  ATTNKIT_CUDA_FLOAT32 = 0,
  ATTNKIT_CUDA_FLOAT16 = 1,
  ATTNKIT_CUDA_BFLOAT16 = 2,
  ATTNKIT_CUDA_INT32 = 3,
  ATTNKIT_CUDA_UINT8 = 4
} attnkit_cuda_dtype;

/* A strided view of device memory. `data` points at logical element [0, ...] (offset applied);
 * strides are in elements. */
typedef struct attnkit_cuda_tensor {
  void* data;
  int32_t dtype;
  int32_t rank;
  int64_t shape[ATTNKIT_CUDA_MAX_RANK];
  int64_t strides[ATTNKIT_CUDA_MAX_RANK];
} attnkit_cuda_tensor;

typedef struct attnkit_cuda_device_info {
  char name[256];
  int32_t cc_major, cc_minor;
  int32_t multiprocessors;
  uint64_t memory_bytes;
  int32_t has_kernel_image; /* 0: this library holds no code this GPU can run */
} attnkit_cuda_device_info;

/* Fused attention, the same contract as the CPU kernel (see API.md). Logical layouts:
 * q [B, Hq, Sq, D], k [B, Hkv, Sk, D], v [B, Hkv, Sk, Dv], out [B, Hq, Sq, Dv]. */
typedef struct attnkit_cuda_attention_args {
  int32_t device;
  attnkit_cuda_tensor q, k, v, out;
  int64_t batch, heads_q, heads_kv, seq_q, seq_k, head_dim, head_dim_v;

  float scale;
  int32_t causal;
  int64_t window_left, window_right; /* -1: unbounded */
  int64_t sinks;
  float softcap; /* 0: off */

  /* Small per-head tables live in host memory; the library copies them to the device. */
  const float* alibi_slopes; /* [Hq] or NULL */
  const float* sink_logits;  /* [Hq] or NULL */

  /* Broadcast score tensors in device memory: [B, Hq, Sq, Sk] with stride 0 on broadcast dims. */
  const void* bias; /* NULL: none */
  int32_t bias_dtype;
  int64_t bias_strides[4];
  const uint8_t* mask; /* NULL: none; 0 = masked out */
  int64_t mask_strides[4];

  /* Packed variable-length batch (batch == 1), host memory, num_segments + 1 entries each. */
  const int32_t* cu_seqlens_q;
  const int32_t* cu_seqlens_k;
  int64_t num_segments;

  float* lse; /* device, contiguous [B, Hq, Sq] float32, or NULL */
} attnkit_cuda_attention_args;

/* Block sparsity for block_sparse_attention (blockSparseAttention): the uint8 state of each
 * (query block, key block), in device memory, broadcast by its strides (elements; 0 on a broadcast
 * dim) over [B, Hq, ceil(Sq / block_q), ceil(Sk / block_k)]; blocks count rows / keys of dim 2 of
 * q / k (packed positions for a varlen batch). 0: skipped; 2: full, computed with no causal /
 * window / sinks / mask test; any other value: partial, every option applies. Varlen segments
 * hold in every block; softcap, bias, ALiBi and sink logits apply to every computed pair. */
typedef struct attnkit_cuda_block_mask {
  const uint8_t* states;
  int64_t strides[4];
  int64_t block_q, block_k;
} attnkit_cuda_block_mask;

/* Element bitmaps inside partial blocks (block_sparse_attention_elements): `index` (device int32,
 * broadcast by its strides over the same block grid as the states) names each block's bitmap, or
 * -1 for none; `bits` (device) holds `bitmaps` bitmaps of block_q rows x ceil(block_k / 32) uint32
 * words, row-major: bit c % 32 of word c / 32 of row r keeps pair (qb * block_q + r, kb * block_k
 * + c). A partial block with a bitmap computes a pair iff its bit is set and every option admits
 * it; full and skipped blocks ignore bitmaps. An index outside [-1, bitmaps) hides its block. */
typedef struct attnkit_cuda_element_mask {
  const int32_t* index;
  int64_t index_strides[4];
  const uint32_t* bits;
  int64_t bitmaps;
} attnkit_cuda_element_mask;

/* mergeAttentionStates over `parts` partial results, all on one device. outs[p]: [B, H, S, Dv]
 * any strides; lses[p]: contiguous [B, H, S] float32; out/lse likewise. */
typedef struct attnkit_cuda_merge_args {
  int32_t device;
  int32_t parts;
  const attnkit_cuda_tensor* outs;
  const float* const* lses;
  attnkit_cuda_tensor out;
  float* lse;
} attnkit_cuda_merge_args;

/* Linear attention (linearAttention / linearAttentionStep), the contract of the CPU op (API.md):
 * q, k [B, H, S, Dk], v and out [B, H, S, Dv], any strides, float dtypes (q, k, v alike). Per
 * (b, h): S_t = a_t S_{t-1} + phi(k_t)^T v_t, out_t = scale phi(q_t) S_t (causal) or
 * scale phi(q_t) S_end (non-causal), divided by scale phi(q_t) . z_t + 1e-10 with normalize.
 * Optional tensors have data NULL when absent. A step passes one state as initial_state and
 * state_out (the same view; likewise the normalizer): it is updated in place. */
typedef struct attnkit_cuda_linear_args {
  int32_t device;
  attnkit_cuda_tensor q, k, v, out;
  int64_t batch, heads, seq, dk, dv;
  int32_t causal;
  int32_t feature_map; /* 0 identity, 1 elu(x) + 1, 2 relu, 3 efficient (non-causal, no state) */
  int32_t normalize;
  float scale;
  /* 0 none; 1 decay: lambda in (0, 1], `decay` for every head or decay_per_head (host [H]);
   * 2 log gates [B, H, S]; 3 log gates [B, H, S, Dk] (GLA). Gates: device, float dtypes, <= 0
   * (-inf allowed); a gate > 0 or NaN is reported by a blocking call (ATTNKIT_CUDA_ARGUMENT). */
  int32_t gate_kind;
  double decay;
  const float* decay_per_head;
  attnkit_cuda_tensor gates;
  /* float32 [B, H, Dk, Dv] / [B, H, Dk] in device memory. */
  attnkit_cuda_tensor initial_state, initial_normalizer, state_out, normalizer_out;
} attnkit_cuda_linear_args;

/* MoBA's block gating for topkBlockAttention (topk_block_select): query block qb of head hq
 * scores key block kb by mean(Q rows of qb) . mean(K rows of kb) (k's head hq / (Hq / Hkv)), in
 * float64; it keeps the topk best, ties to the lower index; with causal (seq_q == seq_k) only
 * kb < qb compete for topk - 1 places and qb itself is always kept. q [B, Hq, Sq, D] and
 * k [B, Hkv, Sk, D] are strided float tensors; blocks of block_size rows (the last may be
 * shorter). Writes, in device memory, contiguous: states [B, Hq, nQB, nKB] uint8 (2 kept, 1 own
 * block under causal, 0 not) and indices [B, Hq, nQB, topk] int32 (kept blocks ascending, -1
 * padded). nKB is limited (the library says by how much when it refuses). */
typedef struct attnkit_cuda_topk_args {
  int32_t device;
  attnkit_cuda_tensor q, k;
  int64_t block_size, topk;
  int32_t causal;
  uint8_t* states;
  int32_t* indices;
} attnkit_cuda_topk_args;
/* decode_attention (decodeAttention): attention of a few new queries per sequence over a paged KV
 * cache, the CPU decode's contract (native/cpu/decode). q and out [B, Hq, Sq, D], any strides,
 * device memory; the pools [pool_pages, Hkv, P, D] contiguous in q's dtype (FlashInfer's HND
 * pages), device memory; page_table [B, table_width] and lengths [B] int32 in DEVICE memory (a
 * device cache keeps them there, so a call uploads nothing per token). Query i of sequence b sits
 * at position lengths[b] - Sq + i and sees keys j <= that position (causal, bottom-right), through
 * the window / sinks / softcap / ALiBi / sink-logit options as in attention. The kernel clamps
 * every length to table_width * P and every page id into the pool, so no table content makes it
 * read outside the pools (the caller validates the tables all the same). */
typedef struct attnkit_cuda_decode_args {
  int32_t device;
  attnkit_cuda_tensor q, out;
  const void* k_pool;
  const void* v_pool;
  int64_t pool_pages;
  const int32_t* page_table;
  int64_t table_width;
  const int32_t* lengths;
  int64_t max_length; /* host: an upper bound of the lengths (sizes the split-KV plan) */
  int64_t batch, heads_q, heads_kv, seq_q, head_dim, page_size;

  float scale;
  int64_t window_left, window_right; /* -1: unbounded */
  int64_t sinks;
  float softcap; /* 0: off */
  const float* alibi_slopes; /* host [Hq] or NULL (copied like attention's) */
  const float* sink_logits;  /* host [Hq] or NULL */
  float* lse;                /* device, contiguous [B, Hq, Sq] float32, or NULL */
  int64_t splits;            /* key chunks per (sequence, kv head) (split-KV); 0: the library's choice */
  /* device [pool_pages, Hkv, P] float32, or NULL: each key's softmax probability, summed over its
   * kv head's query heads and the new queries, is added to its slot (H2O; a second pass over K
   * after the final lse is known, as on the CPU). */
  float* scores;
} attnkit_cuda_decode_args;

/* kv_append and kv_gather (KVCache.append and eviction on a device cache): rows between k, v
 * ([B, Hkv, T, D], any strides, device, the pools' dtype) and the pools, through page_table
 * (device [B, table_width]). kv_append writes row t < counts[b] of sequence b to position
 * index[b] + t (index: starts [B]); kv_gather reads it from position index[b * T + t] (index:
 * positions [B, T]). counts and index are host arrays; the caller made sure every position lies in
 * a page of the sequence's table that is inside the pool (the kernels skip any other). */
typedef struct attnkit_cuda_kv_rows_args {
  int32_t device;
  attnkit_cuda_tensor k, v;
  void* k_pool;
  void* v_pool;
  int64_t pool_pages;
  const int32_t* page_table;
  int64_t table_width;
  const int32_t* counts; /* host [B] */
  const int32_t* index;  /* host: starts [B] (kv_append) or positions [B, T] (kv_gather) */
  int64_t batch, heads_kv, head_dim, page_size;
} attnkit_cuda_kv_rows_args;

typedef struct attnkit_cuda_api {
  uint32_t abi_version;
  uint32_t struct_size;
  const char* build_info; /* e.g. "attnkit_cuda 0.1.0, CUDA 13.0, sm_80 sm_86 sm_89 sm_90a +PTX" */

  attnkit_cuda_status (*device_count)(int32_t* count, char* err, size_t err_len);
  attnkit_cuda_status (*device_info)(int32_t device, attnkit_cuda_device_info* info, char* err, size_t err_len);

  attnkit_cuda_status (*malloc)(int32_t device, size_t bytes, void** ptr, char* err, size_t err_len);
  /* Frees after the device's work queue drains; never fails loudly (called from finalizers). */
  void (*free)(int32_t device, void* ptr);
  attnkit_cuda_status (*memset_zero)(int32_t device, void* ptr, size_t bytes, char* err, size_t err_len);
  /* Blocking copies: host<->device and device<->device. */
  attnkit_cuda_status (*copy_to_device)(int32_t device, void* dst, const void* src, size_t bytes, char* err, size_t err_len);
  attnkit_cuda_status (*copy_to_host)(int32_t device, void* dst, const void* src, size_t bytes, char* err, size_t err_len);
  attnkit_cuda_status (*copy_on_device)(int32_t device, void* dst, const void* src, size_t bytes, char* err, size_t err_len);

  /* Enqueue on the library's stream for args->device and wait for it to finish (attention is
   * attention_on_stream on that stream, then a wait). Called from a worker thread for async ops,
   * so the JS thread never waits on the GPU. */
  attnkit_cuda_status (*attention)(const attnkit_cuda_attention_args* args, char* err, size_t err_len);
  attnkit_cuda_status (*merge_states)(const attnkit_cuda_merge_args* args, char* err, size_t err_len);

  /* ---- appended within ABI version 1: check ATTNKIT_CUDA_API_HAS(api, name) before use ---- */

  /* Stream-ordered attention, for PyTorch / onnxruntime integrations and CUDA graph capture.
   * Validates exactly like `attention`, enqueues the kernel on the caller's cudaStream_t `stream`
   * (NULL: the legacy default stream), which must belong to args->device, and returns without
   * waiting. A failure to validate or to launch is returned; an error of the running kernel
   * surfaces on that stream (the caller's next cudaStreamSynchronize / cudaGetLastError).
   * - Device memory (q, k, v, out, bias, mask, lse) must stay valid until the stream has reached
   *   the work. The host tables (alibi_slopes, sink_logits, cu_seqlens_q / _k) are consumed
   *   before the call returns: the caller may free or change them at once.
   * - The call's device copy of those tables is allocated and freed in the stream's order (from a
   *   pool the library keeps per device), so it needs no synchronisation with other streams.
   * - Under stream capture the call becomes graph nodes that hold the tables' values as of the
   *   call (every replay uses them) and pool allocation / free nodes. The first call on a device
   *   creates the library's state for it (a stream, a memory pool): make it outside a capture,
   *   as a warm-up call. */
  attnkit_cuda_status (*attention_on_stream)(const attnkit_cuda_attention_args* args, void* stream, char* err,
                                             size_t err_len);

  /* Attention over the blocks `blocks` selects. blocking != 0: like `attention` (the library's
   * stream for args->device, then a wait; `stream` is ignored); 0: like attention_on_stream on
   * `stream`. The states must stay valid until the work has run, as q / k / v must. */
  attnkit_cuda_status (*block_sparse_attention)(const attnkit_cuda_attention_args* args,
                                                const attnkit_cuda_block_mask* blocks, void* stream, int32_t blocking,
                                                char* err, size_t err_len);

  /* block_sparse_attention with element bitmaps in the partial blocks (`elements` NULL: none). */
  attnkit_cuda_status (*block_sparse_attention_elements)(const attnkit_cuda_attention_args* args,
                                                         const attnkit_cuda_block_mask* blocks,
                                                         const attnkit_cuda_element_mask* elements, void* stream,
                                                         int32_t blocking, char* err, size_t err_len);

  /* Linear attention and its recurrent step (one entry: a step is a short causal call whose state
   * is updated in place). blocking != 0: on the library's stream for args->device, then a wait;
   * 0: enqueued on `stream` (NULL: the legacy default stream) without waiting, and gate values
   * are then not checked. The per-head decay table is consumed before the call returns. */
  attnkit_cuda_status (*linear_attention)(const attnkit_cuda_linear_args* args, void* stream, int32_t blocking,
                                          char* err, size_t err_len);

  /* MoBA's block gating (see attnkit_cuda_topk_args), on the library's stream for args->device,
   * then a wait. */
  attnkit_cuda_status (*topk_block_select)(const attnkit_cuda_topk_args* args, char* err, size_t err_len);
  /* Decode attention over a paged KV cache (attnkit_cuda_decode_args). blocking != 0: the
   * library's stream for args->device, then a wait (`stream` ignored); 0: enqueued on `stream`
   * like attention_on_stream (the pools, tables, q, out and lse must stay valid until it ran). */
  attnkit_cuda_status (*decode_attention)(const attnkit_cuda_decode_args* args, void* stream, int32_t blocking,
                                          char* err, size_t err_len);
  /* Rows written into / read out of a paged KV cache (attnkit_cuda_kv_rows_args); blocking as
   * decode_attention. */
  attnkit_cuda_status (*kv_append)(const attnkit_cuda_kv_rows_args* args, void* stream, int32_t blocking, char* err,
                                   size_t err_len);
  attnkit_cuda_status (*kv_gather)(const attnkit_cuda_kv_rows_args* args, void* stream, int32_t blocking, char* err,
                                   size_t err_len);
} attnkit_cuda_api;

/* Whether `api`'s table reaches entry `field` (struct_size covers it). */
#define ATTNKIT_CUDA_API_HAS(api, field) \
  ((size_t)(api)->struct_size >= offsetof(attnkit_cuda_api, field) + sizeof((api)->field))

/* Returns the table for `abi_version`, or NULL if this library speaks another version. */
typedef const attnkit_cuda_api* (*attnkit_cuda_get_api_fn)(uint32_t abi_version);
#define ATTNKIT_CUDA_GET_API_SYMBOL "attnkit_cuda_get_api"

#ifdef __cplusplus
}
#endif

#endif /* ATTNKIT_CUDA_H_ */
