// mergeAttentionStates on the device. One warp per row (b, h, s): every lane reads the row's
// num_parts lse values (the same addresses: broadcast loads), then the lanes split the Dv outputs.
// The arithmetic mirrors native/cpu/merge/merge_states.cpp step by step (max, exp, sum, weights
// w_p / sum, parts with weight 0 skipped), so both backends agree to float32 rounding.
#include "merge_states.h"

#include "../fused/attention_problem.cuh"

namespace attnkit {
namespace cuda {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kThreads = kWarpsPerBlock * 32;

// Part `part`'s lse of row `row` (contiguous [B, H, S]), from the table or the stacked buffer.
__device__ __forceinline__ float part_lse(const MergeProblem& p, int part, int64_t row) {
  return p.parts ? p.parts[part].lse[row] : p.stacked_lse[part * p.stacked_lse_stride + row];
}

// Part `part`'s output element d of row (b, h, s) = `row`.
__device__ __forceinline__ float part_out(const MergeProblem& p, int part, int64_t row, int64_t b, int64_t h, int64_t s,
                                          int64_t d) {
  if (!p.parts) return p.stacked_out[part * p.stacked_out_stride + row * p.head_dim_v + d];
  const MergePart& q = p.parts[part];
  return load_element(q.out, q.dtype, b * q.stride[0] + h * q.stride[1] + s * q.stride[2] + d * q.stride[3]);
}

__global__ void __launch_bounds__(kThreads) merge_states_kernel(const MergeProblem p) {
  const float neg_inf = -__int_as_float(0x7f800000);
  const int lane = threadIdx.x % 32;
  const int64_t rows = p.batch * p.heads * p.seq;
  const int64_t warps = int64_t(gridDim.x) * kWarpsPerBlock;
  for (int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; row < rows; row += warps) {
    const int64_t s = row % p.seq, h = (row / p.seq) % p.heads, b = row / (p.seq * p.heads);

    // The lse arrays are contiguous [B, H, S]: the row index is the element index.
    float m = neg_inf;
    for (int part = 0; part < p.num_parts; ++part) {
      const float x = part_lse(p, part, row);
      if (x > m) m = x;
    }
    float sum = 0.0f;
    if (m != neg_inf)
      for (int part = 0; part < p.num_parts; ++part) sum += expf(part_lse(p, part, row) - m);

    const int64_t out_at = b * p.out_stride[0] + h * p.out_stride[1] + s * p.out_stride[2];
    for (int64_t d = lane; d < p.head_dim_v; d += 32) {
      float acc = 0.0f;
      if (sum > 0.0f) {
        for (int part = 0; part < p.num_parts; ++part) {
          const float w = expf(part_lse(p, part, row) - m) / sum;
          if (w == 0.0f) continue;
          acc += w * part_out(p, part, row, b, h, s, d);
        }
      }
      store_element(p.out, p.out_dtype, out_at + d * p.out_stride[3], acc);
    }
    if (lane == 0) p.lse[row] = sum > 0.0f ? m + logf(sum) : neg_inf;
  }
}

}  // namespace

cudaError_t launch_merge_attention_states(const MergeProblem& p, int multiprocessors, cudaStream_t stream) {
  const int64_t rows = p.batch * p.heads * p.seq;
  if (rows == 0) return cudaSuccess;
  // Enough blocks to fill the GPU several times over; the kernel's loop covers the rest.
  const int64_t wanted = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const int64_t cap = int64_t(multiprocessors > 0 ? multiprocessors : 1) * 64;
  const unsigned blocks = static_cast<unsigned>(wanted < cap ? wanted : cap);
  merge_states_kernel<<<blocks, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t merge_kernel_attributes(cudaFuncAttributes* attributes) {
  return cudaFuncGetAttributes(attributes, merge_states_kernel);
}

}  // namespace cuda
}  // namespace attnkit
