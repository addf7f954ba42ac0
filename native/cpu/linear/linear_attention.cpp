#include "linear_attention.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "../../core/cpu_features.h"
#include "../../core/error.h"
#include "../../core/thread_pool.h"
#include "../scratch.h"

namespace attnkit {
namespace {

LinearItemKernel kernel_for(Isa isa) {
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::Avx512: return cpu_avx512::linear_attention_item;
    case Isa::Avx2: return cpu_avx2::linear_attention_item;
#endif
    default: return cpu_scalar::linear_attention_item;
  }
}

// Value-column blocks per (b, h). Heads are independent, so B * H items suffice when they can
// keep every thread busy; otherwise each head's value columns are split too (blocks of 16, a whole
// number of vectors on every ISA), at the price of repeating the column-independent part of the
// work (feature maps and Q K^T, about a fifth of it at Dk = Dv = chunk). Picks the count with the
// shortest estimated makespan.
int64_t column_blocks(int64_t heads, int64_t dv, int64_t threads) {
  const int64_t most = (dv + 15) / 16;
  const double repeated = 0.2;
  int64_t best = 1;
  double best_cost = 1e300;
  for (int64_t n = 1; n <= most && n <= 4 * threads; ++n) {
    const double rounds = static_cast<double>((heads * n + threads - 1) / threads);
    const double cost = rounds * (1.0 / static_cast<double>(n) + repeated);
    if (cost < best_cost - 1e-9) { best_cost = cost; best = n; }
  }
  return best;
}

}  // namespace

void linear_attention_cpu(const LinearParams& p) {
  const int64_t heads = p.batch * p.heads;
  if (heads == 0) return;
  // The initial normalizer as a contiguous copy: a step updates it in place, and the item that
  // writes it back (the one with column 0) may finish before another item of its head reads it.
  std::vector<float> z0;
  if (p.has_initial_normalizer) {
    const TensorView& z = p.initial_normalizer;
    z0.resize(static_cast<size_t>(heads * p.dk));
    for (int64_t b = 0; b < p.batch; ++b)
      for (int64_t h = 0; h < p.heads; ++h)
        for (int64_t d = 0; d < p.dk; ++d)
          z0[static_cast<size_t>((b * p.heads + h) * p.dk + d)] =
              static_cast<const float*>(z.data)[b * z.strides[0] + h * z.strides[1] + d * z.strides[2]];
  }

  const int64_t threads = ThreadPool::global().threads();
  int64_t blocks = column_blocks(heads, p.dv, threads);
  const int64_t width = round_up16((p.dv + blocks - 1) / blocks);
  blocks = (p.dv + width - 1) / width;
  std::vector<LinearItem> items;
  items.reserve(static_cast<size_t>(heads * blocks));
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t h = 0; h < p.heads; ++h)
      for (int64_t c = 0; c < blocks; ++c) items.push_back({b, h, c * width, std::min(p.dv, (c + 1) * width)});

  const LinearItemKernel kernel = kernel_for(active_isa());
  const size_t scratch = linear_layout(p, width).total;
  const float* init_z = z0.empty() ? nullptr : z0.data();
  // A call this small (a decoding step, say) finishes in a few microseconds on this thread, about
  // what waking the pool's workers would cost.
  const double work = static_cast<double>(heads) * static_cast<double>(3 * p.seq + 2) * static_cast<double>(p.dk) * static_cast<double>(p.dv);
  if (work < static_cast<double>(1 << 18)) {
    for (const LinearItem& item : items) {
      if (!kernel(p, item, init_z, thread_scratch(scratch))) fail(ErrorCode::Aborted, "linearAttention was aborted by its AbortSignal");
    }
    return;
  }
  std::atomic<bool> aborted{false};
  ThreadPool::global().parallel_for(static_cast<int64_t>(items.size()), [&](int64_t n, int) {
    if (aborted.load(std::memory_order_relaxed)) return;
    if (!kernel(p, items[static_cast<size_t>(n)], init_z, thread_scratch(scratch))) aborted.store(true);
  });
  if (aborted.load()) fail(ErrorCode::Aborted, "linearAttention was aborted by its AbortSignal");
}

}  // namespace attnkit
