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

  // Variable-length packing: batch == 1, num_segments segments; segment s owns query rows
  // [cu_q[s], cu_q[s+1]) and keys [cu_k[s], cu_k[s+1]). nullptr means ordinary batches.
  const int32_t* cu_seqlens_q = nullptr;
  const int32_t* cu_seqlens_k = nullptr;
  int64_t num_segments = 0;

  float* lse = nullptr;  // optional, contiguous [B, Hq, Sq]

  const std::atomic<int32_t>* abort_flag = nullptr;  // nonzero: stop at the next tile
};


}  // namespace attnkit
