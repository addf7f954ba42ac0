// Everything a fused-attention kernel needs, already validated. Backend-neutral: the CPU kernels
// read it today and the CUDA library will receive the same fields through its C ABI.
#pragma once
#include <atomic>
#include <cstdint>

#include "tensor_view.h"

namespace attnkit {

struct AttentionParams {
  // Logical [B, Hq, Sq, D], [B, Hkv, Sk, D], [B, Hkv, Sk, Dv], out [B, Hq, Sq, Dv] (strides in elements).
  TensorView q, k, v, out;
  int64_t batch = 0, heads_q = 0, heads_kv = 0, seq_q = 0, seq_k = 0, head_dim = 0, head_dim_v = 0;

  float scale = 1.0f;
  bool causal = false;
  int64_t window_left = -1;   // -1: unbounded
  int64_t window_right = -1;  // -1: unbounded
  int64_t sinks = 0;          // keys j < sinks ignore the window (not causal)
  float softcap = 0.0f;       // 0: off

  const float* alibi_slopes = nullptr;  // [Hq]
  const float* sink_logits = nullptr;   // [Hq]
  bool has_bias = false, has_mask = false;
  Broadcast4 bias;  // float, [B, Hq, Sq, Sk] after broadcast
  Broadcast4 mask;  // uint8

  // Block sparsity (blockSparseAttention): the uint8 state of each (query block, key block), block
  // qb holding rows [qb * block_q, (qb + 1) * block_q) of dim 2 (packed positions under varlen),
  // broadcast to [B, Hq, ceil(Sq / block_q), ceil(Sk / block_k)]. 0: skipped; 2: full, computed
  // with no causal / window / sinks / mask test (the mask vouches for the block, as
  // FlexAttention's full blocks skip mask_mod); anything else: partial, every option applies.
  // Varlen segments hold in every block; score modifiers apply to every computed pair.
  bool has_block_mask = false;
  Broadcast4 block_mask;
  int64_t block_q = 0, block_k = 0;

  // Element masks inside partial blocks (a BlockMask with element bitmaps: neighborhoodAttention,
  // or any rule finer than blocks). element_index (int32, broadcast like block_mask) names each
  // block's bitmap, or -1 for none. Bitmap n holds block_q rows of element_words uint32 each:
  // bit c % 32 of word c / 32 of row r keeps pair (qb * block_q + r, kb * block_k + c). A partial
  // block with a bitmap computes a pair iff its bit is set and every option admits it; full and
  // skipped blocks ignore bitmaps. Indices were checked against element_bitmaps (CPU), or are
  // checked by the kernels (device memory): one out of range hides its block's pairs.
  bool has_element_mask = false;
  Broadcast4 element_index;
  const uint32_t* element_bits = nullptr;
  int64_t element_bitmaps = 0, element_words = 0;

  // Variable-length packing: batch == 1, num_segments segments; segment s owns query rows
  // [cu_q[s], cu_q[s+1]) and keys [cu_k[s], cu_k[s+1]). nullptr means ordinary batches.
  const int32_t* cu_seqlens_q = nullptr;
  const int32_t* cu_seqlens_k = nullptr;
  int64_t num_segments = 0;

  float* lse = nullptr;  // optional, contiguous [B, Hq, Sq]

  const std::atomic<int32_t>* abort_flag = nullptr;  // nonzero: stop at the next tile
};


}  // namespace attnkit
