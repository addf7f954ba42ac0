// mergeAttentionStates on the device. One warp per row (b, h, s): every lane reads the row's
// num_parts lse values (the same addresses: broadcast loads), then the lanes split the Dv outputs.
// The arithmetic mirrors native/cpu/merge/merge_states.cpp step by step (max, exp, sum, weights
// w_p / sum, parts with weight 0 skipped), so both backends agree to float32 rounding.
//
// Stacked parts (split-KV decode: few rows, up to hundreds of parts) take a second kernel with
// one thread per output element: a warp per row walked the parts one dependent load at a time
// (~90 us for 32 rows x 33 parts on an H100, a third of the decode it finished).
#include "merge_states.h"

#include "../fused/attention_problem.cuh"

namespace attnkit {
namespace cuda {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kThreads = kWarpsPerBlock * 32;

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
      const float x = p.parts[part].lse[row];
      if (x > m) m = x;
    }
    float sum = 0.0f;
    if (m != neg_inf)
      for (int part = 0; part < p.num_parts; ++part) sum += expf(p.parts[part].lse[row] - m);

    const int64_t out_at = b * p.out_stride[0] + h * p.out_stride[1] + s * p.out_stride[2];
    for (int64_t d = lane; d < p.head_dim_v; d += 32) {
      float acc = 0.0f;
      if (sum > 0.0f) {
        for (int part = 0; part < p.num_parts; ++part) {
          const MergePart& q = p.parts[part];
          const float w = expf(q.lse[row] - m) / sum;
          if (w == 0.0f) continue;
          const int64_t at = b * q.stride[0] + h * q.stride[1] + s * q.stride[2] + d * q.stride[3];
          acc += w * load_element(q.out, q.dtype, at);
        }
      }
      store_element(p.out, p.out_dtype, out_at + d * p.out_stride[3], acc);
    }
    if (lane == 0) p.lse[row] = sum > 0.0f ? m + logf(sum) : neg_inf;
  }
}

// Stacked parts: thread (row, d) reads the row's lse of every part (broadcast within the block),
// then one pass sums exp(lse_p - m) and exp(lse_p - m) * out_p[d]; independent loads, unrolled.
constexpr int kStackedThreads = 128;

__global__ void __launch_bounds__(kStackedThreads) merge_stacked_kernel(const MergeProblem p) {
  const float neg_inf = -__int_as_float(0x7f800000);
  const int64_t total = p.batch * p.heads * p.seq * p.head_dim_v;
  for (int64_t idx = int64_t(blockIdx.x) * kStackedThreads + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * kStackedThreads) {
    const int64_t row = idx / p.head_dim_v, d = idx % p.head_dim_v;
    const int64_t s = row % p.seq, h = (row / p.seq) % p.heads, b = row / (p.seq * p.heads);
    float m = neg_inf;
#pragma unroll 8
    for (int part = 0; part < p.num_parts; ++part) m = fmaxf(m, p.stacked_lse[part * p.stacked_lse_stride + row]);
    float sum = 0.0f, acc = 0.0f;
    if (m != neg_inf) {
#pragma unroll 8
      for (int part = 0; part < p.num_parts; ++part) {
        const float l = p.stacked_lse[part * p.stacked_lse_stride + row];
        if (l == neg_inf) continue;  // an empty part: weight 0
        const float e = expf(l - m);
        sum += e;
        acc += e * p.stacked_out[part * p.stacked_out_stride + row * p.head_dim_v + d];
      }
    }
    store_element(p.out, p.out_dtype, b * p.out_stride[0] + h * p.out_stride[1] + s * p.out_stride[2] + d * p.out_stride[3],
                  sum > 0.0f ? acc / sum : 0.0f);
    if (d == 0) p.lse[row] = sum > 0.0f ? m + logf(sum) : neg_inf;
  }
}

}  // namespace

cudaError_t launch_merge_attention_states(const MergeProblem& p, int multiprocessors, cudaStream_t stream) {
  const int64_t rows = p.batch * p.heads * p.seq;
  if (rows == 0) return cudaSuccess;
  if (p.parts == nullptr) {
    const int64_t wanted = (rows * p.head_dim_v + kStackedThreads - 1) / kStackedThreads;
    const int64_t cap = int64_t(multiprocessors > 0 ? multiprocessors : 1) * 32;
    merge_stacked_kernel<<<static_cast<unsigned>(wanted < cap ? wanted : cap), kStackedThreads, 0, stream>>>(p);
    return cudaGetLastError();
  }
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
