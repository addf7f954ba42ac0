// What the decode kernels share (decode_attention.cu on CUDA cores, decode_attention_sm80.cu on
// tensor cores): the launch's plan, which CTA does what, the keys a CTA loads, the score rule of
// every option, and the epilogue that combines a CTA's partial softmax states and writes out / lse
// (or the split partials). One definition each, so both kernels mean the same thing.
#pragma once
#include <cstdint>

#include "../fused/attention_problem.cuh"
#include "async_copy.cuh"
#include "decode_attention.h"

namespace attnkit {
namespace cuda {

__device__ __forceinline__ float neg_inf() { return -__int_as_float(0x7f800000); }

// exp for the online softmax: ex2.approx on the device (relative error ~1e-7 for the arguments
// here, all <= 0), expf in the emulator.
__device__ __forceinline__ float fast_exp(float x) {
#if defined(__CUDA_ARCH__)
  return __expf(x);
#else
  return expf(x);
#endif
}

// The keys a CTA's rows can see inside its chunk [j0, j1), as two spans: the sink prefix, which
// the left window does not cut, and the causal / left-window range. Tiles wholly outside both are
// never loaded (a 128k cache with a 4k window reads ~4k keys).
// Positions fit in int: lengths are int32.
struct KeySpans {
  int a0, a1;  // span A [a0, a1)
  int b0, b1;  // span B [b0, b1)
  int tiles_a, tiles_b;
};

__device__ __forceinline__ KeySpans key_spans(const DecodeProblem& p, int len, int j0, int j1, int first_pos,
                                              int last_pos, int tile) {
  KeySpans s;
  const int hi = j1 < last_pos + 1 ? j1 : last_pos + 1;  // causal: nothing past the last query
  int sink_end = 0, lo = j0;
  if (p.window_left >= 0) {
    sink_end = p.sinks < len ? int(p.sinks) : len;
    const int64_t w64 = int64_t(first_pos) - p.window_left;  // the earliest key any row's window reaches
    const int w = w64 < 0 ? 0 : int(w64);
    lo = sink_end > w ? sink_end : w;
    lo = lo > j0 ? lo : j0;
  }
  s.a0 = j0;
  s.a1 = hi < sink_end ? hi : sink_end;
  if (s.a1 < s.a0) s.a1 = s.a0;
  s.b0 = lo;
  s.b1 = hi > lo ? hi : lo;
  s.tiles_a = (s.a1 - s.a0 + tile - 1) / tile;
  s.tiles_b = (s.b1 - s.b0 + tile - 1) / tile;
  return s;
}

// Tile t of the spans: its first key and key count.
__device__ __forceinline__ void tile_of(const KeySpans& s, int t, int tile, int* start, int* count) {
  const bool in_a = t < s.tiles_a;
  const int begin = in_a ? s.a0 + t * tile : s.b0 + (t - s.tiles_a) * tile;
  const int end = in_a ? s.a1 : s.b1;
  *start = begin;
  *count = end - begin < tile ? end - begin : tile;
}

// Element offset of key j's row (kv head hkv of sequence b) in a pool, through the page table.
// The page id is clamped into the pool: a corrupt table can give wrong keys, never a stray read.
__device__ __forceinline__ int64_t pool_row(const DecodeProblem& p, int b, int hkv, int j) {
  int64_t page = p.page_table[int64_t(b) * p.table_width + j / p.page_size];
  page = page < 0 ? 0 : (page >= p.pool_pages ? p.pool_pages - 1 : page);
  return ((page * p.heads_kv + hkv) * p.page_size + j % p.page_size) * p.head_dim;
}

// Which (sequence, kv head, row block, key chunk) a CTA does, and what follows from it. Row r of
// the block is query head hkv * G + (r0 + r) / Sq, new query (r0 + r) % Sq, at position
// len - Sq + (r0 + r) % Sq.
struct DecodeCta {
  int b, hkv, split, r0, nrows, G, len;
  int first_pos, last_pos;  // of the block's rows
  KeySpans spans;
  int tiles;
};

template <int RB, int Tile>
__device__ __forceinline__ DecodeCta decode_cta(const DecodeProblem& p, const DecodeLaunch& launch) {
  DecodeCta c;
  // Row block fastest (CTAs sharing K / V run side by side and share L2), then split.
  int x = int(blockIdx.x);
  const int rb = x % launch.row_blocks;
  x /= launch.row_blocks;
  c.split = x % launch.splits;
  x /= launch.splits;
  c.hkv = x % p.heads_kv;
  c.b = x / p.heads_kv;
  c.G = p.heads_q / p.heads_kv;
  const int Sq = p.seq_q, R = c.G * Sq;
  c.r0 = rb * RB;
  c.nrows = R - c.r0 < RB ? R - c.r0 : RB;
  int len = p.lengths[c.b];
  const int64_t cap = p.table_width * p.page_size;
  c.len = len < 0 ? 0 : (len > cap ? int(cap) : len);
  c.first_pos = INT32_MAX;
  c.last_pos = INT32_MIN;
  for (int r = 0; r < c.nrows; ++r) {
    const int a = c.len - Sq + (c.r0 + r) % Sq;
    c.first_pos = a < c.first_pos ? a : c.first_pos;
    c.last_pos = a > c.last_pos ? a : c.last_pos;
  }
  const int64_t per_split = (int64_t(c.len) + launch.splits - 1) / launch.splits;
  const int chunk = int((per_split + Tile - 1) / Tile * Tile);
  const int64_t j0_64 = int64_t(c.split) * chunk;
  const int j0 = j0_64 < c.len ? int(j0_64) : c.len;
  const int j1 = c.len - j0 > chunk ? j0 + chunk : c.len;
  c.spans = key_spans(p, c.len, j0, j1, c.first_pos, c.last_pos, Tile);
  c.tiles = c.spans.tiles_a + c.spans.tiles_b;
  return c;
}

// Issues the copies of tile t (if the CTA has one) through load(start, count, t), then commits a
// cp.async group either way, so that every thread's group count stays one per tile slot.
template <class Load>
__device__ __forceinline__ void issue_tile(const DecodeCta& c, int t, int tile, Load&& load) {
  if (t < c.tiles) {
    int start, count;
    tile_of(c.spans, t, tile, &start, &count);
    load(start, count, t);
  }
  cp_async_commit();
}

// The top of a CTA's tile loop for tile t: wait until its copies have landed (at most Stages - 2
// groups still in flight), a barrier (tile t is visible to all; tile t - 1's stage is free), then
// tile t + Stages - 1 into that stage; returns tile t's first key and count.
template <int Stages, class Load>
__device__ __forceinline__ void next_tile(const DecodeCta& c, int t, int tile, Load&& load, int* start, int* count) {
  cp_async_wait<Stages - 2>();
  __syncthreads();
  issue_tile(c, t + Stages - 1, tile, load);
  tile_of(c.spans, t, tile, start, count);
}

// A tile every row of the block sees whole, with no score modifier: scores need only the scale
// (and the bound check of a short tile).
__device__ __forceinline__ bool plain_tile(const DecodeProblem& p, const DecodeCta& c, int start, int count) {
  return p.window_left < 0 && p.window_right < 0 && p.softcap <= 0.0f && p.alibi_slopes == nullptr &&
         start + count - 1 <= c.first_pos;
}

// The documented order for one scaled score of the row at position `a` (query head h) and key j:
// causal / window / sinks hide it (-inf), then softcap, then ALiBi.
__device__ __forceinline__ float decode_score(const DecodeProblem& p, int a, int h, int j, float s) {
  bool visible = j <= a;
  if (visible && j >= p.sinks) {
    if (p.window_left >= 0 && j < a - p.window_left) visible = false;
    if (p.window_right >= 0 && j > a + p.window_right) visible = false;
  }
  if (!visible) return neg_inf();
  if (p.softcap > 0.0f) s = p.softcap * tanhf(s / p.softcap);
  if (p.alibi_slopes) s -= p.alibi_slopes[h] * float(a > j ? a - j : j - a);
  return s;
}

// Shared memory of the epilogue: Groups partial states of RB rows.
template <int Groups, int RB, int DPad>
struct CombineSmem {
  static constexpr int kFloats = Groups * RB * DPad + 3 * Groups * RB + 2 * RB;
  static constexpr int kBytes = kFloats * 4;
};

// The epilogue: every group (a lane group or a warp) has put its running max m, sum l and
// unnormalised output acc of each row into smem (acc [Groups][RB][DPad] floats, then m and l
// [Groups][RB]); this combines them, out = sum_g w_g acc_g / sum_g w_g l_g with w_g = exp(m_g - M),
// M the largest m_g (and the sink logit, which only the first chunk counts), and writes out and
// lse, or the split's float32 partials. Called by every thread of the CTA after a barrier.
template <int Groups, int RB, int DPad, int Threads>
__device__ __forceinline__ void combine_and_store(const DecodeProblem& p, const DecodeLaunch& launch,
                                                  const DecodeCta& c, float* smem) {
  float* red_acc = smem;                              // [Groups][RB][DPad]
  float* red_m = red_acc + Groups * RB * DPad;        // [Groups][RB]
  float* red_l = red_m + Groups * RB;                 // [Groups][RB]
  float* red_w = red_l + Groups * RB;                 // [Groups][RB]
  float* row_inv = red_w + Groups * RB;               // [RB]
  float* row_lse = row_inv + RB;                      // [RB]
  const int Sq = p.seq_q, D = p.head_dim;
  if (int(threadIdx.x) < c.nrows) {
    const int r = threadIdx.x;
    float mx = neg_inf();
    for (int g = 0; g < Groups; ++g) mx = red_m[g * RB + r] > mx ? red_m[g * RB + r] : mx;
    const bool sink = c.split == 0 && p.sink_logits != nullptr;
    const float sink_logit = sink ? p.sink_logits[c.hkv * c.G + (c.r0 + r) / Sq] : 0.0f;
    if (sink && sink_logit > mx) mx = sink_logit;
    float total = 0.0f;
    for (int g = 0; g < Groups; ++g) {
      const float mg = red_m[g * RB + r];
      // expf, not the fast form: once per row, and float32 must match a float64 reference.
      const float w = mg == neg_inf() ? 0.0f : expf(mg - mx);
      red_w[g * RB + r] = w;
      total += w * red_l[g * RB + r];
    }
    if (sink) total += expf(sink_logit - mx);
    row_inv[r] = total > 0.0f ? 1.0f / total : 0.0f;
    row_lse[r] = total > 0.0f ? mx + logf(total) : neg_inf();
  }
  __syncthreads();

  const int64_t rows_total = int64_t(p.batch) * p.heads_q * Sq;
  for (int idx = threadIdx.x; idx < c.nrows * D; idx += Threads) {
    const int r = idx / D, d = idx % D;
    float o = 0.0f;
    for (int g = 0; g < Groups; ++g) o += red_w[g * RB + r] * red_acc[(g * RB + r) * DPad + d];
    o *= row_inv[r];
    const int row = c.r0 + r, h = c.hkv * c.G + row / Sq, i = row % Sq;
    if (launch.splits > 1) {
      const int64_t grow = (int64_t(c.b) * p.heads_q + h) * Sq + i;
      launch.part_out[(c.split * rows_total + grow) * D + d] = o;
    } else {
      store_element(p.out, p.out_dtype,
                    int64_t(c.b) * p.out_stride[0] + int64_t(h) * p.out_stride[1] + int64_t(i) * p.out_stride[2] +
                        int64_t(d) * p.out_stride[3],
                    o);
    }
  }
  if (int(threadIdx.x) < c.nrows) {
    const int row = c.r0 + threadIdx.x, h = c.hkv * c.G + row / Sq, i = row % Sq;
    const int64_t grow = (int64_t(c.b) * p.heads_q + h) * Sq + i;
    if (launch.splits > 1)
      launch.part_lse[c.split * rows_total + grow] = row_lse[threadIdx.x];
    else if (p.lse)
      p.lse[grow] = row_lse[threadIdx.x];
  }
}

}  // namespace cuda
}  // namespace attnkit
