// MoBA's block gating on the device (topkBlockAttention's selection, lib/sparse/topk.ts on the
// host): query block qb scores key block kb by mean(Q_qb) . mean(K_kb) per query head against its
// kv head, keeps the topk best (ties to the lower block index); under causal only kb < qb compete
// for topk - 1 places and qb itself is always kept. Means and dot products are float64, as on the
// host, so both pick the same blocks up to float64 summation order.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace attnkit {
namespace cuda {

struct TopkSelectProblem {
  const void* q;  // [B, Hq, Sq, D], any strides (elements) and float dtype (ElementType)
  int q_dtype;
  int64_t q_stride[4];
  const void* k;  // [B, Hkv, Sk, D]
  int k_dtype;
  int64_t k_stride[4];
  int64_t batch, heads_q, heads_kv, seq_q, seq_k, head_dim;
  int64_t block, topk;
  int causal;
  uint8_t* states;   // contiguous [B, Hq, nQB, nKB]: 2 selected, 1 own block under causal, 0 skipped
  int32_t* indices;  // contiguous [B, Hq, nQB, topk]: selected blocks ascending, -1 padded
};

// Bytes of device scratch launch_topk_select needs (the block means, float64).
size_t topk_select_scratch_bytes(const TopkSelectProblem& p);
// The largest number of key blocks one selection handles (its scores live in shared memory).
int64_t topk_select_max_key_blocks();
cudaError_t launch_topk_select(const TopkSelectProblem& p, void* scratch, cudaStream_t stream);

}  // namespace cuda
}  // namespace attnkit
