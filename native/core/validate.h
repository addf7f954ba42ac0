// Validation at the trust boundary: every extent, stride and option the caller sends is checked
// here before any kernel touches memory. Messages name the argument, what was expected, what came.
#pragma once
#include <cstddef>
#include <cstdint>

#include "attention_params.h"
#include "decode_params.h"
#include "linear_params.h"
#include "tensor_view.h"

namespace attnkit {

// The caller's memory: a typed array's first element and its length in elements, or a device
// allocation (then `length` counts elements of the tensor's dtype that fit in its bytes).
struct CallerBuffer {
  void* base = nullptr;
  size_t length = 0;      // elements of the array's own type
  DType array_dtype = DType::Float32;  // what the array holds; Uint16Array serves float16 and bfloat16
  bool detached = false;
  int device = -1;        // -1: host memory; N: CUDA device N
};

// A tensor as described by the caller (numbers not yet trusted).
struct TensorDesc {
  DType dtype = DType::Float32;
  int rank = 0;
  int64_t shape[kMaxRank] = {0};
  int64_t strides[kMaxRank] = {0};
  int64_t offset = 0;
};

// Checks that desc addresses only elements inside buf; returns the view.
TensorView make_view(const char* name, const CallerBuffer& buf, const TensorDesc& desc);

// Fails unless `out` can be written without two logical elements sharing one address.
void require_no_self_overlap(const char* name, const TensorView& t);

struct FloatArray {
  const float* data = nullptr;
  size_t length = 0;
  bool present = false;
};
struct Int32Array {
  const int32_t* data = nullptr;
  size_t length = 0;
  bool present = false;
};

struct AttentionRequest {
  TensorView q, k, v, out;
  bool has_bias = false, has_mask = false;
  TensorView bias, mask;
  bool has_block_mask = false;
  TensorView block_mask;
  double block_q = 0, block_k = 0;
  bool has_element_mask = false;  // only with a block mask
  TensorView element_index, element_bits;
  FloatArray alibi_slopes, sink_logits;
  Int32Array cu_seqlens_q, cu_seqlens_k;
  float* lse = nullptr;
  size_t lse_length = 0;
  int lse_device = -1;
  bool has_scale = false;  // not given: 1/sqrt(D)
  double scale = 0;
  bool causal = false;
  bool has_window = false;
  double window_left = -1, window_right = -1;
  double sinks = 0;
  double softcap = 0;
};

AttentionParams validate_attention(const AttentionRequest& req);

// linearAttention and linearAttentionStep (step: state and normalizer are updated in place, so
// the same views arrive as initial_* and *_out, and messages call them state / normalizer).
struct LinearRequest {
  bool step = false;
  TensorView q, k, v, out;
  bool causal = true;
  double feature_map = 0;  // FeatureMap code
  double scale = 1;
  bool normalize = false;
  double chunk = 64;
  int decay_kind = 0;  // 0 none, 1 one lambda (decay), 2 one per head (decay_per_head)
  double decay = 1;
  FloatArray decay_per_head;
  bool has_gates = false;
  TensorView gates;
  bool has_initial_state = false, has_initial_normalizer = false, has_state_out = false, has_normalizer_out = false;
  TensorView initial_state, initial_normalizer, state_out, normalizer_out;
};

LinearParams validate_linear(const LinearRequest& req);

// decodeAttention over a paged KV cache (lib/ops/decode.ts): pools [pages, Hkv, P, D].
struct DecodeRequest {
  TensorView q, out, k_pool, v_pool;
  Int32Array page_table, lengths;
  FloatArray alibi_slopes, sink_logits, scores;
  float* lse = nullptr;
  size_t lse_length = 0;
  bool has_scale = false;
  double scale = 0;
  bool has_window = false;
  double window_left = -1, window_right = -1;
  double sinks = 0;
  double softcap = 0;
  double splits = 0;
  int lse_device = -1;
  // A device cache's copies of page_table and lengths (device int32 buffers; base nullptr: none),
  // and its scores (device float32 [pages, kvHeads, P]) when accumulateScores.
  CallerBuffer device_table, device_lengths, device_scores;
};

DecodeParams validate_decode(const DecodeRequest& req);

// KVCache.append / eviction on a device cache (lib/ops/decode.ts): k, v [B, Hkv, T, D] any strides
// on the pools' device; table: the host mirror of the device table [B, width]; counts [B]; starts
// [B] (append) or positions [B, T] (gather: rows read out of the cache into k, v).
struct KvRowsRequest {
  TensorView k, v, k_pool, v_pool;
  bool gather = false;
  Int32Array table, counts, starts, positions;
  CallerBuffer device_table;
};
KvRowsParams validate_kv_rows(const KvRowsRequest& req);

struct MergeRequest {
  int64_t num_parts = 0;
  const TensorView* outs = nullptr;
  const TensorView* lses = nullptr;
  TensorView out, lse;
};
void validate_merge(const MergeRequest& req);

// topkBlockAttention's gating on a device (the host gating is JS): q [B, Hq, Sq, D] and k
// [B, Hkv, Sk, D] float, any strides; states uint8 [B, Hq, nQB, nKB] and indices int32
// [B, Hq, nQB, topk], contiguous; all on one device.
struct TopkSelectRequest {
  TensorView q, k, states, indices;
  int64_t block = 0, topk = 0;
  bool causal = false;
};
void validate_topk_select(const TopkSelectRequest& r);

// Fails unless [offset, offset + bytes) lies inside `capacity` bytes (copies between host and device).
void check_byte_range(const char* name, uint64_t offset, uint64_t bytes, uint64_t capacity);

// True if t's elements are laid out densely in row-major order (size-1 dims ignored).
bool is_row_major(const TensorView& t);

}  // namespace attnkit
