// Fused (FlashAttention-style) attention on the CPU: the planner splits the work into query blocks
// and hands each to the ISA-specific tile kernel picked at run time.
#pragma once
#include <cstdint>

#include "../../core/attention_params.h"

namespace attnkit {

// One independent attention problem inside a call: a batch entry, or a varlen segment.
struct AttentionSegment {
  int64_t batch = 0;    // index into dim 0 of q/k/v/out
  int64_t q_start = 0;  // first query row (dim 2) of the segment
  int64_t k_start = 0;  // first key row
  int64_t q_len = 0;
  int64_t k_len = 0;
};

// Queries per block and keys per tile; shared by every ISA so scratch sizing is common. A work
// item holds up to kQueryBlocksPerItem blocks of one head, which share each key tile.
constexpr int64_t kQueryBlock = 64;
constexpr int64_t kQueryBlocksPerItem = 4;
constexpr int64_t kKeyBlock = 64;
// Rows of the staging buffer: a key tile, or a query block while Q is transposed.
constexpr int64_t kStageRows = kQueryBlock > kKeyBlock ? kQueryBlock : kKeyBlock;

size_t fused_attention_scratch_floats(int64_t head_dim, int64_t head_dim_v);

// Computes out rows [i0, i1) (segment-local, at most kQueryBlock * kQueryBlocksPerItem) of query
// head h. Returns false if aborted.
using QueryBlockKernel = bool (*)(const AttentionParams& p, const AttentionSegment& seg, int64_t h, int64_t i0,
                                  int64_t i1, float* scratch);

namespace cpu_avx512 { bool attention_query_block(const AttentionParams&, const AttentionSegment&, int64_t, int64_t, int64_t, float*); }
namespace cpu_avx2 { bool attention_query_block(const AttentionParams&, const AttentionSegment&, int64_t, int64_t, int64_t, float*); }
namespace cpu_scalar { bool attention_query_block(const AttentionParams&, const AttentionSegment&, int64_t, int64_t, int64_t, float*); }

// Runs the whole call on the global thread pool; throws AttnException(Aborted) if the flag is raised.
void fused_attention_cpu(const AttentionParams& p);

// Keys a query-row range [i0, i1) of a segment can see: [main_begin, main_end) plus the sink
// prefix [0, sink_end). Shared by the planner (cost) and the kernels (which key tiles to visit).
struct KeyRange {
  int64_t main_begin, main_end, sink_end;
};
static inline KeyRange visible_keys(const AttentionParams& p, const AttentionSegment& s, int64_t i0, int64_t i1) {
  const int64_t off = s.k_len - s.q_len;  // bottom-right alignment: row i sits at key i + off
  int64_t end = s.k_len;
  if (p.causal && i1 + off < end) end = i1 + off;
  if (end < 0) end = 0;
  KeyRange r{0, end, 0};
  if (p.window_right >= 0 && i1 + off + p.window_right < r.main_end) r.main_end = i1 + off + p.window_right;
  if (p.window_left >= 0 && i0 + off - p.window_left > r.main_begin) r.main_begin = i0 + off - p.window_left;
  if (r.main_end < r.main_begin) r.main_end = r.main_begin;
  const bool windowed = p.window_left >= 0 || p.window_right >= 0;
  r.sink_end = windowed ? (p.sinks < end ? p.sinks : end) : 0;
  return r;
}

// Query rows (segment-local, inclusive) that key j can see, before intersecting with [0, q_len).
static inline void visible_queries(const AttentionParams& p, const AttentionSegment& s, int64_t j, int64_t* lo, int64_t* hi) {
  const int64_t off = s.k_len - s.q_len;
  int64_t l = p.causal ? j - off : INT64_MIN / 4;
  int64_t h = INT64_MAX / 4;
  if (j >= p.sinks) {
    if (p.window_left >= 0 && j - off + p.window_left < h) h = j - off + p.window_left;
    if (p.window_right >= 0 && j - off - p.window_right > l) l = j - off - p.window_right;
  }
  *lo = l;
  *hi = h;
}

// Block sparsity (blockSparseAttention, AttentionParams::block_mask): the state of block (qb, kb)
// of batch entry b, query head h. 0 skipped, 2 full, anything else partial.
constexpr uint8_t kBlockSkip = 0, kBlockFull = 2;
static inline uint8_t block_state(const AttentionParams& p, int64_t b, int64_t h, int64_t qb, int64_t kb) {
  const Broadcast4& m = p.block_mask;
  return static_cast<const uint8_t*>(m.data)[b * m.strides[0] + h * m.strides[1] + qb * m.strides[2] + kb * m.strides[3]];
}

// Element bitmaps (AttentionParams::element_bits) of batch entry b, head h: the words of absolute
// row `row` over block kb's keys, or nullptr when block (row / block_q, kb) has no bitmap (every
// pair kept). Bit c % 32 of word c / 32 keeps key kb * block_k + c.
static inline const uint32_t* element_row_bits(const AttentionParams& p, int64_t b, int64_t h, int64_t row, int64_t kb) {
  const Broadcast4& ix = p.element_index;
  const int64_t qb = row / p.block_q;
  const int32_t n = static_cast<const int32_t*>(ix.data)[b * ix.strides[0] + h * ix.strides[1] + qb * ix.strides[2] + kb * ix.strides[3]];
  return n < 0 ? nullptr : p.element_bits + (n * p.block_q + row - qb * p.block_q) * p.element_words;
}

// Which states the blocks under segment-local rows [i0, i1) x keys [j0, j1) take: a set of these bits.
enum : int { kSomeSkipped = 1, kSomePartial = 2, kSomeFull = 4 };
static inline int covered_block_states(const AttentionParams& p, const AttentionSegment& s, int64_t h, int64_t i0,
                                       int64_t i1, int64_t j0, int64_t j1) {
  const int64_t qb0 = (s.q_start + i0) / p.block_q, qb1 = (s.q_start + i1 - 1) / p.block_q;
  const int64_t kb0 = (s.k_start + j0) / p.block_k, kb1 = (s.k_start + j1 - 1) / p.block_k;
  int seen = 0;
  for (int64_t qb = qb0; qb <= qb1; ++qb)
    for (int64_t kb = kb0; kb <= kb1; ++kb) {
      const uint8_t st = block_state(p, s.batch, h, qb, kb);
      seen |= st == kBlockSkip ? kSomeSkipped : st == kBlockFull ? kSomeFull : kSomePartial;
    }
  return seen;
}

}  // namespace attnkit
