#include "fused_attention.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "../../core/cpu_features.h"
#include "../../core/error.h"
#include "../../core/thread_pool.h"
#include "../scratch.h"

namespace attnkit {
namespace {

QueryBlockKernel kernel_for(Isa isa) {
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::Avx512: return cpu_avx512::attention_query_block;
    case Isa::Avx2: return cpu_avx2::attention_query_block;
#endif
    default: return cpu_scalar::attention_query_block;
  }
}

struct WorkItem {
  int64_t segment, head, i0, i1, cost;
};

// Keys an item's rows visit under a block mask: the computed blocks of its query blocks, in keys
// (a proxy for its cost, which orders the work).
int64_t block_mask_cost(const AttentionParams& p, const AttentionSegment& g, int64_t h, int64_t i0, int64_t i1) {
  if (g.k_len == 0 || i1 <= i0) return 0;
  const int64_t kb0 = g.k_start / p.block_k, kb1 = (g.k_start + g.k_len - 1) / p.block_k;
  int64_t computed = 0;
  for (int64_t qb = (g.q_start + i0) / p.block_q; qb <= (g.q_start + i1 - 1) / p.block_q; ++qb)
    for (int64_t kb = kb0; kb <= kb1; ++kb) computed += block_state(p, g.batch, h, qb, kb) != kBlockSkip;
  return computed * p.block_k;
}

// A call's plan (segments, work items), kept per calling thread so that a tiny call allocates
// nothing (malloc/free were a few % of a one-token call).
struct CallPlan {
  std::vector<AttentionSegment> segments;
  std::vector<WorkItem> items;
  std::vector<int64_t> group_cost;
};

}  // namespace

size_t fused_attention_scratch_floats(int64_t d, int64_t dv) {
  const int64_t per_block = (d + dv + 2) * kQueryBlock;  // QT, OT, running max and sum
  return static_cast<size_t>(kKeyBlock * kQueryBlock + kStageRows * d + kKeyBlock * dv + kQueryBlocksPerItem * per_block);
}

void fused_attention_cpu(const AttentionParams& p) {
  thread_local CallPlan plan;
  // Named references: the pool's workers must read the caller's plan (a thread_local named inside
  // the task would be each worker's own, empty one).
  std::vector<AttentionSegment>& segments = plan.segments;
  std::vector<WorkItem>& items = plan.items;
  segments.clear();
  items.clear();
  if (p.cu_seqlens_q) {
    for (int64_t s = 0; s < p.num_segments; ++s) {
      AttentionSegment g;
      g.q_start = p.cu_seqlens_q[s];
      g.k_start = p.cu_seqlens_k[s];
      g.q_len = p.cu_seqlens_q[s + 1] - g.q_start;
      g.k_len = p.cu_seqlens_k[s + 1] - g.k_start;
      segments.push_back(g);
    }
  } else {
    for (int64_t b = 0; b < p.batch; ++b) {
      AttentionSegment g;
      g.batch = b;
      g.q_len = p.seq_q;
      g.k_len = p.seq_k;
      segments.push_back(g);
    }
  }

  // Work items, heaviest first within each head (causal / windowed rows see different numbers of
  // keys), so the dynamic hand-out in the pool ends with small items and threads finish together.
  // Blocks per work item: up to kQueryBlocksPerItem, fewer when that would leave under 8 items
  // per pool thread (load balance beats K/V reuse there).
  int64_t total_blocks = 0;
  for (const AttentionSegment& g : segments) total_blocks += (g.q_len + kQueryBlock - 1) / kQueryBlock * p.heads_q;
  const int64_t threads = ThreadPool::global().threads();
  int64_t per_item = kQueryBlocksPerItem;
  while (per_item > 1 && total_blocks / per_item < 8 * threads) per_item /= 2;
  const int64_t item_rows = per_item * kQueryBlock;

  // Head-major within a segment: consecutive items read the same K/V head, which then stays in
  // the core's L2 (and both cores share it in L3) instead of a new head streaming in per item.
  for (int64_t s = 0; s < static_cast<int64_t>(segments.size()); ++s) {
    const AttentionSegment& g = segments[s];
    for (int64_t h = 0; h < p.heads_q; ++h) {
      for (int64_t i0 = 0; i0 < g.q_len; i0 += item_rows) {
        const int64_t i1 = std::min(i0 + item_rows, g.q_len);
        const KeyRange r = visible_keys(p, g, i0, i1);
        const int64_t main = r.main_end - std::min(r.main_begin, r.main_end);
        const int64_t keys = p.has_block_mask ? block_mask_cost(p, g, h, i0, i1) : main + r.sink_end;
        items.push_back({s, h, i0, i1, keys + 1});
      }
    }
  }
  // Heaviest first, but only within a (segment, head) group: groups keep head-major order, so the
  // K/V locality above survives causal and windowed calls (sorting globally would interleave heads).
  // Groups themselves go heaviest first, which matters only for varlen segments of unequal length.
  std::vector<int64_t>& group_cost = plan.group_cost;
  group_cost.assign(segments.size() * static_cast<size_t>(p.heads_q), 0);
  for (const WorkItem& w : items) group_cost[w.segment * p.heads_q + w.head] += w.cost;
  std::stable_sort(items.begin(), items.end(), [&](const WorkItem& a, const WorkItem& b) {
    const int64_t ga = a.segment * p.heads_q + a.head, gb = b.segment * p.heads_q + b.head;
    if (ga != gb) return group_cost[ga] != group_cost[gb] ? group_cost[ga] > group_cost[gb] : ga < gb;
    return a.cost > b.cost;
  });

  const QueryBlockKernel kernel = kernel_for(active_isa());
  const size_t scratch = fused_attention_scratch_floats(p.head_dim, p.head_dim_v);
  std::atomic<bool> aborted{false};
  ThreadPool::global().parallel_for(static_cast<int64_t>(items.size()), [&](int64_t n, int) {
    if (aborted.load(std::memory_order_relaxed)) return;
    const WorkItem& w = items[n];
    if (!kernel(p, segments[w.segment], w.head, w.i0, w.i1, thread_scratch(scratch))) aborted.store(true);
  });
  if (aborted.load()) fail(ErrorCode::Aborted, "attention was aborted by its AbortSignal");
}

}  // namespace attnkit
