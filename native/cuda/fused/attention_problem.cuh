// The fused-attention problem as every CUDA kernel sees it: one by-value struct of pointers,
// strides and options, plus the few device functions that define the semantics of each option.
// All kernels (the generic one, the sm_80 mma.sync one and the sm_90a wgmma one) use these, so
// causal / window / sinks / softcap / ALiBi / bias / mask / varlen mean one thing everywhere, and
// the same thing as on the CPU (native/cpu/fused/fused_attention.h: visible_keys, classify_tile).
#pragma once
#include <cstdint>

namespace attnkit {
namespace cuda {

enum ElementType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

struct FusedAttentionProblem {
  // Logical q [B, Hq, Sq, D], k [B, Hkv, Sk, D], v [B, Hkv, Sk, Dv], out [B, Hq, Sq, Dv];
  // strides in elements as (b, h, s, d). `dtype` is q/k/v's, `out_dtype` out's.
  const void* q;
  const void* k;
  const void* v;
  void* out;
  int64_t q_stride[4], k_stride[4], v_stride[4], o_stride[4];
  int dtype, out_dtype;
  int batch, heads_q, heads_kv, seq_q, seq_k, head_dim, head_dim_v;
  int group;  // heads_q / heads_kv: query head h reads kv head h / group

  float scale;     // applied to q.k
  float softcap;   // 0: off
  int causal;      // bottom-right aligned
  int window_left, window_right;  // -1: unbounded
  int sinks;       // keys j < sinks ignore the window (not causal)

  const float* alibi_slopes;  // device [Hq] or nullptr
  const float* sink_logits;   // device [Hq] or nullptr
  const void* bias;           // device, broadcast [B, Hq, Sq, Sk] or nullptr
  int bias_dtype;
  int64_t bias_stride[4];
  const uint8_t* mask;        // device, broadcast [B, Hq, Sq, Sk] or nullptr; 0 = masked
  int64_t mask_stride[4];

  // Varlen (batch == 1): segment s owns rows [cu_q[s], cu_q[s+1]) and keys [cu_k[s], cu_k[s+1]).
  const int32_t* cu_seqlens_q;  // device, or nullptr
  const int32_t* cu_seqlens_k;
  int num_segments;

  float* lse;  // device, contiguous [B, Hq, Sq], or nullptr

  // Block sparsity (blockSparseAttention): device uint8 states broadcast by these strides over
  // [B, Hq, ceil(Sq / block_q), ceil(Sk / block_k)], blocks over absolute (packed) rows and keys;
  // nullptr: none. 0 skipped; 2 full, computed with no causal / window / sinks / mask test; any
  // other value partial, every option applies.
  const uint8_t* block_mask;
  int64_t block_mask_stride[4];
  int block_q, block_k;
  // Element bitmaps of partial blocks (attnkit_cuda_element_mask): element_index[block] names a
  // bitmap of block_q rows x element_words words, or -1; nullptr: none.
  const int32_t* element_index;
  int64_t element_index_stride[4];
  const uint32_t* element_bits;
  int element_bitmaps, element_words;
  // A zeroed device int for this launch alone, or nullptr: block-masked calls on sm_90 deal their
  // work items from it (rows of random masks differ in cost; a static deal left SMs idle).
  int* work_counter;

  // Longest segment (varlen) or seq_q / seq_k: lets a launcher size its grid without reading the
  // device copies of cu_seqlens (FlashAttention's max_seqlen_q / max_seqlen_k).
  int max_seqlen_q, max_seqlen_k;
};

// One independent attention problem of a launch: a batch entry or a varlen segment.
struct Segment {
  int batch;    // index into dim 0
  int q_start;  // first row (dim 2) of q / out
  int k_start;  // first row of k / v
  int q_len, k_len;
};

__device__ __forceinline__ Segment segment_of(const FusedAttentionProblem& p, int index) {
  Segment s;
  if (p.cu_seqlens_q) {
    s.batch = 0;
    s.q_start = p.cu_seqlens_q[index];
    s.k_start = p.cu_seqlens_k[index];
    s.q_len = p.cu_seqlens_q[index + 1] - s.q_start;
    s.k_len = p.cu_seqlens_k[index + 1] - s.k_start;
  } else {
    s.batch = index;
    s.q_start = 0;
    s.k_start = 0;
    s.q_len = p.seq_q;
    s.k_len = p.seq_k;
  }
  return s;
}

__host__ __device__ __forceinline__ bool has_window(const FusedAttentionProblem& p) {
  return p.window_left >= 0 || p.window_right >= 0;
}

constexpr uint8_t kBlockSkip = 0, kBlockFull = 2;

// The block mask's state for segment-local row i, key j of head h.
__device__ __forceinline__ uint8_t block_state(const FusedAttentionProblem& p, const Segment& s, int h, int i, int j) {
  const int64_t qb = (s.q_start + i) / p.block_q, kb = (s.k_start + j) / p.block_k;
  return p.block_mask[s.batch * p.block_mask_stride[0] + h * p.block_mask_stride[1] + qb * p.block_mask_stride[2] +
                      kb * p.block_mask_stride[3]];
}

// The element bitmap words of segment-local row i over the key block holding segment-local key
// j, or nullptr when that block has no bitmap (every pair kept); `hidden` is set when its index is
// out of range (device memory the caller filled: never read past the bitmaps, hide the block).
__device__ __forceinline__ const uint32_t* element_row_bits(const FusedAttentionProblem& p, const Segment& s, int h, int i,
                                                            int j, bool* hidden) {
  const int row = s.q_start + i, qb = row / p.block_q, kb = (s.k_start + j) / p.block_k;
  const int n = p.element_index[s.batch * p.element_index_stride[0] + h * p.element_index_stride[1] +
                                qb * p.element_index_stride[2] + kb * p.element_index_stride[3]];
  *hidden = n >= p.element_bitmaps || n < -1;
  if (n < 0 || *hidden) return nullptr;
  return p.element_bits + (int64_t(n) * p.block_q + (row - qb * p.block_q)) * p.element_words;
}

// Whether a partial block's element bitmap keeps segment-local pair (i, j).
__device__ __forceinline__ bool element_kept(const FusedAttentionProblem& p, const Segment& s, int h, int i, int j) {
  if (!p.element_bits) return true;
  bool hidden;
  const uint32_t* bits = element_row_bits(p, s, h, i, j, &hidden);
  if (!bits) return !hidden;
  const int c = (s.k_start + j) % p.block_k;
  return (bits[c / 32] >> (c % 32)) & 1u;
}

// Which states the mask's blocks under segment-local rows [i0, i1) x keys [j0, j1) take (both
// ranges non-empty): a set of these bits. Without a block mask: partial, options decide.
enum : int { kSomeSkipped = 1, kSomePartial = 2, kSomeFull = 4 };
__device__ __forceinline__ int covered_block_states(const FusedAttentionProblem& p, const Segment& s, int h, int i0,
                                                    int i1, int j0, int j1) {
  if (!p.block_mask) return kSomePartial;
  const int qb0 = (s.q_start + i0) / p.block_q, qb1 = (s.q_start + i1 - 1) / p.block_q;
  const int kb0 = (s.k_start + j0) / p.block_k, kb1 = (s.k_start + j1 - 1) / p.block_k;
  const uint8_t* base = p.block_mask + s.batch * p.block_mask_stride[0] + h * p.block_mask_stride[1];
  int seen = 0;
  for (int qb = qb0; qb <= qb1; ++qb)
    for (int kb = kb0; kb <= kb1; ++kb) {
      const uint8_t st = base[qb * p.block_mask_stride[2] + kb * p.block_mask_stride[3]];
      seen |= st == kBlockSkip ? kSomeSkipped : st == kBlockFull ? kSomeFull : kSomePartial;
    }
  return seen;
}

// The keys segment-local query i sees through causal / window / sinks, as two intervals: the
// sink prefix [0, sink_end), which the window does not cut, and [begin, end). Kernels test a
// masked tile with three compares per element against these (bounds taken once per row).
struct RowKeys {
  int sink_end, begin, end;
};

__device__ __forceinline__ RowKeys row_visible_keys(const FusedAttentionProblem& p, const Segment& s, int i) {
  const int a = i + s.k_len - s.q_len;  // the key position query i is aligned with; |a| < 2^30
  RowKeys r{0, 0, s.k_len};
  if (p.causal && a < r.end) r.end = a < 0 ? 0 : a + 1;
  if (has_window(p)) {
    r.sink_end = p.sinks < r.end ? p.sinks : r.end;
    r.begin = p.sinks < s.k_len ? p.sinks : s.k_len;
    // written so that no sum can overflow, whatever the window's size
    if (p.window_left >= 0 && a - r.begin > p.window_left) r.begin = a - p.window_left;
    if (p.window_right >= 0 && r.end - a - 1 > p.window_right) r.end = a + p.window_right + 1;
  }
  return r;
}

// Whether segment-local query i sees segment-local key j through causal / window / sinks (the
// mask tensor is separate: score_mask_bit): row_visible_keys' rule for one element. The score-
// modifier paths test through this form; inside modified_score the per-row form was not
// hoisted and made sm_80's kernel spill.
__device__ __forceinline__ bool key_visible(const FusedAttentionProblem& p, const Segment& s, int i, int j) {
  const int a = i + s.k_len - s.q_len;  // the key position query i is aligned with
  if (p.causal && j > a) return false;
  if (j >= p.sinks) {
    if (p.window_left >= 0 && j < a - p.window_left) return false;
    if (p.window_right >= 0 && j > a + p.window_right) return false;
  }
  return true;
}

// Keys that query rows [i0, i1) can see: [main_begin, main_end) plus the sink prefix [0, sink_end),
// the two disjoint (sink_end < main_begin, or sink_end == 0).
struct KeyRange {
  int main_begin, main_end, sink_end;
};

__device__ __forceinline__ KeyRange visible_keys(const FusedAttentionProblem& p, const Segment& s, int i0, int i1) {
  const int off = s.k_len - s.q_len;
  int end = s.k_len;
  if (p.causal && i1 + off < end) end = i1 + off;
  if (end < 0) end = 0;
  KeyRange r{0, end, 0};
  if (p.window_right >= 0 && i1 + off + p.window_right < r.main_end) r.main_end = i1 + off + p.window_right;
  if (p.window_left >= 0 && i0 + off - p.window_left > r.main_begin) r.main_begin = i0 + off - p.window_left;
  if (r.main_end < r.main_begin) r.main_end = r.main_begin;
  r.sink_end = has_window(p) ? (p.sinks < end ? p.sinks : end) : 0;
  if (r.sink_end >= r.main_begin) {  // the two ranges touch: one range [0, max end)
    if (r.sink_end > r.main_end) r.main_end = r.sink_end;
    r.main_begin = 0;
    r.sink_end = 0;
  }
  return r;
}

// Whether every (query in [i0, i1), key in [j0, j1)) pair is visible through causal / window /
// sinks, so the tile needs no per-element test (the mask tensor still forces one).
__device__ __forceinline__ bool tile_fully_visible(const FusedAttentionProblem& p, const Segment& s, int i0, int i1,
                                                   int j0, int j1) {
  if (p.mask) return false;
  const int off = s.k_len - s.q_len;
  if (p.causal && j1 - 1 > i0 + off) return false;
  const int jw = j0 > p.sinks ? j0 : p.sinks;  // first key of the tile the window applies to
  if (jw < j1) {
    if (p.window_left >= 0 && jw < (i1 - 1) + off - p.window_left) return false;
    if (p.window_right >= 0 && j1 - 1 > i0 + off + p.window_right) return false;
  }
  return true;
}

__device__ __forceinline__ float load_element(const void* base, int dtype, int64_t index) {
  if (dtype == kF32) return static_cast<const float*>(base)[index];
  const unsigned short bits = static_cast<const unsigned short*>(base)[index];
  if (dtype == kBF16) return __uint_as_float(static_cast<unsigned int>(bits) << 16);
  // float16 -> float32 without cuda_fp16.h, so this header stays usable from any translation unit
  float f;
  asm("{ .reg .f16 h; mov.b16 h, %1; cvt.f32.f16 %0, h; }" : "=f"(f) : "h"(bits));
  return f;
}

// Stores x as `dtype` at base[index], rounding to nearest even (the CPU's store_from_float).
// cvt.rn.bf16.f32 needs sm_80, the oldest target of this library.
__device__ __forceinline__ void store_element(void* base, int dtype, int64_t index, float x) {
  if (dtype == kF32) {
    static_cast<float*>(base)[index] = x;
    return;
  }
  unsigned short bits;
  if (dtype == kBF16)
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(bits) : "f"(x));
  else
    asm("{ .reg .f16 h; cvt.rn.f16.f32 h, %1; mov.b16 %0, h; }" : "=h"(bits) : "f"(x));
  static_cast<unsigned short*>(base)[index] = bits;
}

// Two floats rounded to nearest-even 16-bit values in one register, `lo` in the low half: the
// layout of an mma / wgmma A fragment and of two adjacent output elements.
template <bool BF16>
__device__ __forceinline__ uint32_t pack_16bit_pair(float lo, float hi) {
  uint32_t r;
  if (BF16)
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

// The documented order for one score already multiplied by `scale`: softcap, + bias, - ALiBi,
// then causal / window / sinks and the mask tensor. Returns -inf for a hidden pair. i, j are
// segment-local; bias and mask are indexed by the absolute (packed) row and key.
// `blocks` says how a block mask applies: looked up per element (the default), or already known
// for the whole tile: all partial (the options decide) or all full (no option test).
enum BlockRule : int { kLookUpBlock = 0, kPartialBlocks, kFullBlocks };
__device__ __forceinline__ float modified_score(const FusedAttentionProblem& p, const Segment& s, int h, int i, int j,
                                                float scaled, BlockRule blocks = kLookUpBlock) {
  float x = scaled;
  if (p.softcap > 0.0f) x = p.softcap * tanhf(x / p.softcap);
  if (p.bias) {
    const int64_t at = s.batch * p.bias_stride[0] + h * p.bias_stride[1] + int64_t(s.q_start + i) * p.bias_stride[2] +
                       int64_t(s.k_start + j) * p.bias_stride[3];
    x += load_element(p.bias, p.bias_dtype, at);
  }
  if (p.alibi_slopes) x -= p.alibi_slopes[h] * fabsf(float(i + s.k_len - s.q_len - j));
  if (blocks == kFullBlocks) return x;
  if (blocks == kLookUpBlock && p.block_mask) {
    const uint8_t st = block_state(p, s, h, i, j);
    if (st == kBlockSkip) return -__int_as_float(0x7f800000);
    if (st == kBlockFull) return x;
  }
  if (!key_visible(p, s, i, j)) return -__int_as_float(0x7f800000);
  if (p.block_mask && !element_kept(p, s, h, i, j)) return -__int_as_float(0x7f800000);
  if (p.mask) {
    const int64_t at = s.batch * p.mask_stride[0] + h * p.mask_stride[1] + int64_t(s.q_start + i) * p.mask_stride[2] +
                       int64_t(s.k_start + j) * p.mask_stride[3];
    if (!p.mask[at]) return -__int_as_float(0x7f800000);
  }
  return x;
}

// Softmax epilogue shared by all kernels: from a row's running max m (natural-log units, -inf if
// it saw nothing) and sum l, the factor that normalises its output and the lse to store, with the
// learned sink logit folded into the denominator only.
__device__ __forceinline__ void finish_row(const FusedAttentionProblem& p, int h, float m, float l, float* factor,
                                           float* lse) {
  const float neg_inf = -__int_as_float(0x7f800000);
  const bool seen = m != neg_inf;
  if (p.sink_logits) {
    const float sink = p.sink_logits[h];
    const float mf = seen && m > sink ? m : sink;
    // expf / logf, not __expf / __logf: once per row, and float32 results must match a float64
    // reference to ~1e-6 (the intrinsics lose bits for arguments far from 0).
    const float keep = seen ? expf(m - mf) : 0.0f;
    l = l * keep + expf(sink - mf);
    *factor = keep / l;
    *lse = mf + logf(l);
  } else {
    *factor = seen ? 1.0f / l : 0.0f;
    *lse = seen ? m + logf(l) : neg_inf;
  }
}

}  // namespace cuda
}  // namespace attnkit
