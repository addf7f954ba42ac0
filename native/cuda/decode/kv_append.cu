// KVCache.append on a device cache: new K / V rows scattered into their pages (see
// decode_attention.h). One thread per element, grid-stride; a copy of bits, no arithmetic.
#include <cstdint>

#include "decode_attention.h"

namespace attnkit {
namespace cuda {
namespace {

constexpr int kAppendThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kAppendThreads) kv_append_kernel(const AppendProblem p) {
  const int64_t D = p.head_dim, T_ = p.tokens;
  const int64_t total = int64_t(p.batch) * p.heads_kv * T_ * D;
  for (int64_t idx = int64_t(blockIdx.x) * kAppendThreads + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * kAppendThreads) {
    const int64_t d = idx % D, t = (idx / D) % T_, h = (idx / (D * T_)) % p.heads_kv, b = idx / (D * T_ * p.heads_kv);
    if (t >= p.counts[b]) continue;
    const int64_t pos = int64_t(p.starts[b]) + t;
    const int64_t slot = pos / p.page_size;
    if (pos < 0 || slot >= p.table_width) continue;  // outside the table: never written
    int64_t page = p.page_table[b * p.table_width + slot];
    if (page < 0 || page >= p.pool_pages) continue;  // outside the pool: never written
    const int64_t dst = ((page * p.heads_kv + h) * p.page_size + pos % p.page_size) * D + d;
    static_cast<T*>(p.k_pool)[dst] =
        static_cast<const T*>(p.k)[b * p.k_stride[0] + h * p.k_stride[1] + t * p.k_stride[2] + d * p.k_stride[3]];
    static_cast<T*>(p.v_pool)[dst] =
        static_cast<const T*>(p.v)[b * p.v_stride[0] + h * p.v_stride[1] + t * p.v_stride[2] + d * p.v_stride[3]];
  }
}

}  // namespace

cudaError_t launch_kv_append(const AppendProblem& p, int multiprocessors, cudaStream_t stream) {
  const int64_t total = int64_t(p.batch) * p.heads_kv * p.tokens * p.head_dim;
  if (total == 0) return cudaSuccess;
  const int64_t wanted = (total + kAppendThreads - 1) / kAppendThreads;
  const int64_t cap = int64_t(multiprocessors > 0 ? multiprocessors : 1) * 16;
  const unsigned blocks = unsigned(wanted < cap ? wanted : cap);
  auto kernel = p.elem_bytes == 4 ? kv_append_kernel<uint32_t> : kv_append_kernel<uint16_t>;
  kernel<<<blocks, kAppendThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace attnkit
