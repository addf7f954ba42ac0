// MoBA block gating on the device; the contract is in topk_select.h. Two kernels:
//   block_means: one CTA per (b, h, block) of q or k, threads over D, float64 sums of the rows;
//   select: one CTA per (b, hq, query block), the scores of every candidate key block in shared
//   memory, then each candidate's rank (how many beat it, ties to the lower index) says whether
//   it is kept and, among the kept, where it goes in the ascending index list. Ranking by counting
//   is O(candidates^2) per query block: with the usual 64-128 token blocks that is 10^4-10^6
//   comparisons a CTA, far below the attention that follows.
#include "topk_select.h"

#include "../fused/attention_problem.cuh"

namespace attnkit {
namespace cuda {
namespace {

constexpr int kThreads = 128;
constexpr int64_t kSharedBytes = 48 * 1024;  // default dynamic shared memory, no opt-in needed

int64_t blocks_of(int64_t seq, int64_t block) { return (seq + block - 1) / block; }

// means[(bh * blocks + blk) * D + d] = mean over the block's rows of x[b, h, row, d].
__global__ void __launch_bounds__(kThreads) block_means_kernel(const void* x, int dtype, const int64_t s0, const int64_t s1,
                                                               const int64_t s2, const int64_t s3, int64_t heads, int64_t seq,
                                                               int64_t dim, int64_t block, int64_t blocks, double* means) {
  const int64_t item = blockIdx.x;  // (b * heads + h) * blocks + blk
  const int64_t blk = item % blocks, bh = item / blocks;
  const int64_t b = bh / heads, h = bh % heads;
  const int64_t r0 = blk * block, r1 = r0 + block < seq ? r0 + block : seq;
  for (int64_t d = threadIdx.x; d < dim; d += kThreads) {
    double sum = 0.0;
    for (int64_t r = r0; r < r1; ++r) sum += double(load_element(x, dtype, b * s0 + h * s1 + r * s2 + d * s3));
    means[item * dim + d] = sum / double(r1 - r0);
  }
}

__global__ void __launch_bounds__(kThreads) select_kernel(const TopkSelectProblem p, const double* q_means,
                                                          const double* k_means, int64_t nqb, int64_t nkb) {
  extern __shared__ float4 smem_storage[];
  double* score = reinterpret_cast<double*>(smem_storage);
  uint8_t* kept = reinterpret_cast<uint8_t*>(score + nkb);
  const int64_t item = blockIdx.x;  // (b * Hq + hq) * nQB + qb
  const int64_t qb = item % nqb, bh = item / nqb;
  const int64_t b = bh / p.heads_q, hq = bh % p.heads_q;
  const int64_t hkv = hq / (p.heads_q / p.heads_kv);
  const double* mq = q_means + item * p.head_dim;
  const double* mk = k_means + (b * p.heads_kv + hkv) * nkb * p.head_dim;
  const int64_t candidates = p.causal ? qb : nkb;
  const int64_t keep = p.causal ? p.topk - 1 : p.topk;

  for (int64_t kb = threadIdx.x; kb < candidates; kb += kThreads) {
    double s = 0.0;
    for (int64_t d = 0; d < p.head_dim; ++d) s += mq[d] * mk[kb * p.head_dim + d];
    score[kb] = s;
  }
  __syncthreads();
  for (int64_t kb = threadIdx.x; kb < nkb; kb += kThreads) {
    bool chosen = false;
    if (kb < candidates) {
      int64_t rank = 0;
      const double s = score[kb];
      for (int64_t j = 0; j < candidates && rank < keep; ++j) rank += (score[j] > s || (score[j] == s && j < kb)) ? 1 : 0;
      chosen = rank < keep;
    }
    kept[kb] = chosen || (p.causal && kb == qb) ? 1 : 0;
    p.states[item * nkb + kb] = chosen ? 2 : (p.causal && kb == qb) ? 1 : 0;
  }
  __syncthreads();
  // The kept blocks in ascending order: each kept block's place is the number kept before it.
  int32_t* out = p.indices + item * p.topk;
  for (int64_t kb = threadIdx.x; kb < nkb; kb += kThreads) {
    if (!kept[kb]) continue;
    int64_t place = 0;
    for (int64_t j = 0; j < kb; ++j) place += kept[j];
    out[place] = int32_t(kb);
  }
  const int64_t total = (candidates < keep ? candidates : keep) + (p.causal ? 1 : 0);
  for (int64_t i = total + threadIdx.x; i < p.topk; i += kThreads) out[i] = -1;
}

}  // namespace

size_t topk_select_scratch_bytes(const TopkSelectProblem& p) {
  const int64_t nqb = blocks_of(p.seq_q, p.block), nkb = blocks_of(p.seq_k, p.block);
  return size_t(p.batch * (p.heads_q * nqb + p.heads_kv * nkb) * p.head_dim) * sizeof(double);
}

int64_t topk_select_max_key_blocks() { return kSharedBytes / int64_t(sizeof(double) + 1); }

cudaError_t launch_topk_select(const TopkSelectProblem& p, void* scratch, cudaStream_t stream) {
  const int64_t nqb = blocks_of(p.seq_q, p.block), nkb = blocks_of(p.seq_k, p.block);
  if (p.batch * p.heads_q * nqb == 0) return cudaSuccess;
  if (nkb > topk_select_max_key_blocks()) return cudaErrorInvalidValue;
  double* q_means = static_cast<double*>(scratch);
  double* k_means = q_means + p.batch * p.heads_q * nqb * p.head_dim;
  const unsigned q_items = unsigned(p.batch * p.heads_q * nqb), k_items = unsigned(p.batch * p.heads_kv * nkb);
  const size_t shared = size_t(nkb) * (sizeof(double) + 1);
  // (each launch on one line: test/gpu/emu/build.sh rewrites launches line by line)
  block_means_kernel<<<q_items, kThreads, 0, stream>>>(p.q, p.q_dtype, p.q_stride[0], p.q_stride[1], p.q_stride[2], p.q_stride[3], p.heads_q, p.seq_q, p.head_dim, p.block, nqb, q_means);
  block_means_kernel<<<k_items, kThreads, 0, stream>>>(p.k, p.k_dtype, p.k_stride[0], p.k_stride[1], p.k_stride[2], p.k_stride[3], p.heads_kv, p.seq_k, p.head_dim, p.block, nkb, k_means);
  select_kernel<<<q_items, kThreads, shared, stream>>>(p, q_means, k_means, nqb, nkb);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace attnkit
