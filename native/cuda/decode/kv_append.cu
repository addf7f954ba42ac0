// KVCache.append on a device cache: new K / V rows scattered into their pages, and its inverse for
// eviction: rows gathered out of their pages (see decode_attention.h). One thread per element,
// grid-stride; a copy of bits, no arithmetic. A position whose page is outside the table or the
// pool is skipped, so no table content makes either kernel touch memory outside the pools.
#include <cstdint>

#include "decode_attention.h"

namespace attnkit {
namespace cuda {
namespace {

constexpr int kAppendThreads = 256;

// Element offset of position pos (kv head h of sequence b) in a pool plus d, or -1 when its page
// is outside the table or the pool.
__device__ __forceinline__ int64_t pool_element(const KvRowsProblem& p, int64_t b, int64_t h, int64_t pos, int64_t d) {
  const int64_t slot = pos / p.page_size;
  if (pos < 0 || slot >= p.table_width) return -1;
  const int64_t page = p.page_table[b * p.table_width + slot];
  if (page < 0 || page >= p.pool_pages) return -1;
  return ((page * p.heads_kv + h) * p.page_size + pos % p.page_size) * p.head_dim + d;
}

// Rows between [B, Hkv, T, D] tensors and the pools. kToPool: append (k, v -> pools, position
// starts[b] + t); else gather (pools -> k, v, position positions[b * T + t]).
template <typename T, bool kToPool>
__global__ void __launch_bounds__(kAppendThreads) kv_rows_kernel(const KvRowsProblem p, const int32_t* positions) {
  const int64_t D = p.head_dim, T_ = p.tokens;
  const int64_t total = int64_t(p.batch) * p.heads_kv * T_ * D;
  for (int64_t idx = int64_t(blockIdx.x) * kAppendThreads + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * kAppendThreads) {
    const int64_t d = idx % D, t = (idx / D) % T_, h = (idx / (D * T_)) % p.heads_kv, b = idx / (D * T_ * p.heads_kv);
    if (t >= p.counts[b]) continue;
    const int64_t pos = kToPool ? int64_t(p.starts[b]) + t : int64_t(positions[b * T_ + t]);
    const int64_t at = pool_element(p, b, h, pos, d);
    if (at < 0) continue;
    const int64_t ki = b * p.k_stride[0] + h * p.k_stride[1] + t * p.k_stride[2] + d * p.k_stride[3];
    const int64_t vi = b * p.v_stride[0] + h * p.v_stride[1] + t * p.v_stride[2] + d * p.v_stride[3];
    if (kToPool) {
      static_cast<T*>(p.k_pool)[at] = static_cast<const T*>(p.k)[ki];
      static_cast<T*>(p.v_pool)[at] = static_cast<const T*>(p.v)[vi];
    } else {
      static_cast<T*>(p.k)[ki] = static_cast<const T*>(p.k_pool)[at];
      static_cast<T*>(p.v)[vi] = static_cast<const T*>(p.v_pool)[at];
    }
  }
}

template <bool kToPool>
cudaError_t launch_rows(const KvRowsProblem& p, const int32_t* positions, int multiprocessors, cudaStream_t stream) {
  const int64_t total = int64_t(p.batch) * p.heads_kv * p.tokens * p.head_dim;
  if (total == 0) return cudaSuccess;
  const int64_t wanted = (total + kAppendThreads - 1) / kAppendThreads;
  const int64_t cap = int64_t(multiprocessors > 0 ? multiprocessors : 1) * 16;
  const unsigned blocks = unsigned(wanted < cap ? wanted : cap);
  auto kernel = p.elem_bytes == 4 ? kv_rows_kernel<uint32_t, kToPool> : kv_rows_kernel<uint16_t, kToPool>;
  kernel<<<blocks, kAppendThreads, 0, stream>>>(p, positions);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_kv_append(const KvRowsProblem& p, int multiprocessors, cudaStream_t stream) {
  return launch_rows<true>(p, nullptr, multiprocessors, stream);
}

cudaError_t launch_kv_gather(const KvRowsProblem& p, const int32_t* positions, int multiprocessors, cudaStream_t stream) {
  return launch_rows<false>(p, positions, multiprocessors, stream);
}

}  // namespace cuda
}  // namespace attnkit
