// The generic CUDA fused-attention kernel: correct for every valid problem (float32 / float16 /
// bfloat16 inputs, any output dtype, any head dims, any strides, every option, varlen), and the
// path float32 and odd shapes take. A FlashAttention-2-style SIMT kernel in float32 FMA:
//
//   * one CTA of 128 threads computes a block of kBlockM = 64 query rows of one head of one
//     segment (batch entry or varlen segment); the grid is a flat list of such work items;
//   * key tiles of kBlockN = 64 keys are staged in shared memory as float32, q.k is accumulated
//     over the head dim in chunks of kChunkD = 32 (so any D fits), and an exact online softmax
//     (running max m and sum l per row, expf) folds each tile into the output accumulator;
//   * the threads form a 16 x 8 grid: thread (ty, tx) owns query rows ty + 16 r (r < 4) and, of a
//     score tile, keys tx + 8 c (c < 8); of the output, dims 32 c + 4 tx + e. The 8 threads that
//     share a row are 8 consecutive lanes, so row max / sum reductions are 3 shuffles;
//   * the output accumulator lives in registers, kDvChunk (32 / 64 / 96 / 128) dims of it; a
//     wider Dv is done in several passes over the keys (q.k recomputed, softmax identical);
//   * options (causal, window, sinks, softcap, bias, ALiBi, mask, sink logits) and tile skipping
//     come from attention_problem.cuh, so they mean what they mean in every other kernel.
#include <cuda_fp16.h>

#include <climits>
#include <cstdint>

#include "fused_attention.h"

namespace attnkit {
namespace cuda {
namespace {

constexpr int kThreads = 128;
// Shared memory (64-94 KB for head dims up to 128) allows 2-3 CTAs per SM; registers are capped for 2.
constexpr int kMinBlocksPerSM = 2;
constexpr int kLanesPerRow = 8;                        // threads sharing a query row: consecutive lanes
constexpr int kRowGroups = kThreads / kLanesPerRow;    // 16
constexpr int kBlockM = 64;                            // query rows per work item
constexpr int kBlockN = 64;                            // keys per tile
constexpr int kChunkD = 32;                            // head dims of q.k staged at a time
constexpr int kRowsPerThread = kBlockM / kRowGroups;   // 4
constexpr int kKeysPerThread = kBlockN / kLanesPerRow; // 8
// Shared rows are padded by 4 floats: rows stay 16-byte aligned for float4 reads, and the 8 rows
// that one quarter-warp reads at once (keys tx + 8c) start in 8 different 4-bank groups.
constexpr int kPad = 4;
constexpr int kChunkLd = kChunkD + kPad;
constexpr int kProbLd = kBlockN + kPad;

static_assert(kBlockM % kRowGroups == 0 && kBlockN % kLanesPerRow == 0, "tile must split evenly");
static_assert(kChunkD % 4 == 0 && kBlockN % 4 == 0, "float4 steps");

__device__ __forceinline__ float neg_inf() { return -__int_as_float(0x7f800000); }

// What the host decided for one launch.
struct LaunchPlan {
  int q_blocks;        // query blocks per (segment, head): ceil(max_seqlen_q / kBlockM)
  int64_t work_items;  // segments * heads_q * q_blocks
  bool q_resident;     // all of Q's head dim stays in shared memory; else it is staged per chunk
  int q_ld;            // row stride of the resident Q (a multiple of kChunkD, plus kPad)
  // Shared-memory carve-up, in floats.
  int q_offset, k_offset, v_offset, p_offset;
};

// Shared layout for a kernel with kDvChunk output dims per pass.
template <int kDvChunk>
struct SharedLayout {
  static constexpr int kVLd = kDvChunk + kPad;
  static constexpr int kKFloats = kBlockN * kChunkLd;  // one head-dim chunk of the key tile
  static constexpr int kVFloats = kBlockN * kVLd;      // the value tile, kDvChunk dims of it
  static constexpr int kPFloats = kBlockM * kProbLd;   // the tile's probabilities
};

// Four consecutive elements (dtype `dtype`, 4 * element-size aligned) as float32.
__device__ __forceinline__ float4 load_four(const void* src, int dtype, int64_t index) {
  if (dtype == kF32) return *reinterpret_cast<const float4*>(static_cast<const float*>(src) + index);
  const uint2 bits = *reinterpret_cast<const uint2*>(static_cast<const unsigned short*>(src) + index);
  const unsigned short h[4] = {static_cast<unsigned short>(bits.x & 0xffffu), static_cast<unsigned short>(bits.x >> 16),
                               static_cast<unsigned short>(bits.y & 0xffffu), static_cast<unsigned short>(bits.y >> 16)};
  float f[4];
#pragma unroll
  for (int e = 0; e < 4; ++e)
    f[e] = dtype == kBF16 ? __uint_as_float(static_cast<unsigned int>(h[e]) << 16) : __half2float(__ushort_as_half(h[e]));
  return make_float4(f[0], f[1], f[2], f[3]);
}

// Copies rows [0, rows) x cols [0, cols) of a strided matrix (element (r, c) at
// base + r * row_stride + c * col_stride, any dtype) into shared memory as float32 times `factor`,
// row-major with stride ld, and zero-fills the rest of the [kAllocRows x kAllocCols] block: padding
// keys and dims must read as 0, never as stale or NaN data. Consecutive threads take consecutive
// columns, so unit-stride rows load coalesced.
template <int kAllocRows, int kAllocCols>
__device__ __forceinline__ void stage_block(float* dst, int ld, const void* src, int dtype, int64_t base,
                                            int64_t row_stride, int64_t col_stride, int rows, int cols, float factor) {
  static_assert(kAllocCols % 4 == 0, "whole groups of four columns");
  const int64_t element_bytes = dtype == kF32 ? 4 : 2;
  const bool by_four = col_stride == 1 && row_stride % 4 == 0 && cols % 4 == 0 &&
                       (reinterpret_cast<uintptr_t>(src) + base * element_bytes) % (4 * element_bytes) == 0;
  if (by_four) {
    // Unit-stride, aligned rows (the usual BHSD / BSHD layouts): one 16-byte (float32) or 8-byte
    // load per four elements, four loads in flight per thread.
    constexpr int kGroupsPerRow = kAllocCols / 4;
#pragma unroll 4
    for (int g = threadIdx.x; g < kAllocRows * kGroupsPerRow; g += kThreads) {
      const int r = g / kGroupsPerRow, c = g % kGroupsPerRow * 4;
      float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (r < rows && c < cols) {
        x = load_four(src, dtype, base + r * row_stride + c);
        x = make_float4(x.x * factor, x.y * factor, x.z * factor, x.w * factor);
      }
      *reinterpret_cast<float4*>(dst + r * ld + c) = x;
    }
    return;
  }
  // Any strides: element by element, two loads in flight per thread.
#pragma unroll 2
  for (int e = threadIdx.x; e < kAllocRows * kAllocCols; e += kThreads) {
    const int r = e / kAllocCols, c = e % kAllocCols;
    float x = 0.0f;
    if (r < rows && c < cols) x = load_element(src, dtype, base + r * row_stride + c * col_stride) * factor;
    dst[r * ld + c] = x;
  }
}

// The state of one query block while it walks the key tiles: per row, the running max and this
// thread's share of the running sum; per (row, owned dim), the unnormalised output.
template <int kDvChunk>
struct RowBlockState {
  static constexpr int kDimsPerThread = kDvChunk / kLanesPerRow;
  float m[kRowsPerThread];
  float l[kRowsPerThread];  // partial: this lane's keys only, reduced across the row at the end
  float o[kRowsPerThread][kDimsPerThread];
};

// Where one work item's data starts: element offsets of (batch, head, first row) in q / k / v / out.
struct HeadBases {
  int64_t q, k, v, out;
};

// Everything one CTA needs to know about its current work item.
struct WorkItem {
  Segment seg;
  int head;
  int i0, i1;    // segment-local query rows [i0, i1)
  HeadBases at;
};

// s[r][c] = scale * q_{row r} . k_{key c} for the key tile [j0, j0 + kBlockN), accumulated over the
// head dim in chunks.
__device__ __forceinline__ void score_tile(const FusedAttentionProblem& p, const LaunchPlan& plan, const WorkItem& w,
                                           int j0, float* smem, float (&s)[kRowsPerThread][kKeysPerThread]) {
  const int tx = threadIdx.x % kLanesPerRow, ty = threadIdx.x / kLanesPerRow;
  const int keys = min(kBlockN, w.seg.k_len - j0);
  float* q_smem = smem + plan.q_offset;
  float* k_smem = smem + plan.k_offset;

#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
    for (int c = 0; c < kKeysPerThread; ++c) s[r][c] = 0.0f;

  const int head_dim = p.head_dim;
  const int chunks = head_dim > 0 ? (head_dim + kChunkD - 1) / kChunkD : 1;  // D == 0: one zero chunk
  for (int chunk = 0; chunk < chunks; ++chunk) {
    const int d0 = chunk * kChunkD;
    const int dims = min(kChunkD, head_dim - d0);
    __syncthreads();  // every thread is done with the previous chunk (and the previous tile's P.V)
    stage_block<kBlockN, kChunkD>(k_smem, kChunkLd, p.k, p.dtype, w.at.k + j0 * p.k_stride[2] + d0 * p.k_stride[3],
                                  p.k_stride[2], p.k_stride[3], keys, dims, 1.0f);
    if (!plan.q_resident)
      stage_block<kBlockM, kChunkD>(q_smem, kChunkLd, p.q, p.dtype, w.at.q + d0 * p.q_stride[3], p.q_stride[2],
                                    p.q_stride[3], w.i1 - w.i0, dims, p.scale);
    __syncthreads();

    const float* q_chunk = plan.q_resident ? q_smem + d0 : q_smem;
    const int q_ld = plan.q_resident ? plan.q_ld : kChunkLd;
#pragma unroll 1  // 4 dims x (4 rows + 8 keys) float4 reads feed 128 FMAs: enough ILP, fewer registers
    for (int d = 0; d < kChunkD; d += 4) {
      float4 qv[kRowsPerThread];
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r)
        qv[r] = *reinterpret_cast<const float4*>(q_chunk + (ty + kRowGroups * r) * q_ld + d);
#pragma unroll
      for (int c = 0; c < kKeysPerThread; ++c) {
        const float4 kv = *reinterpret_cast<const float4*>(k_smem + (tx + kLanesPerRow * c) * kChunkLd + d);
#pragma unroll
        for (int r = 0; r < kRowsPerThread; ++r) {
          float acc = s[r][c];
          acc = fmaf(qv[r].x, kv.x, acc);
          acc = fmaf(qv[r].y, kv.y, acc);
          acc = fmaf(qv[r].z, kv.z, acc);
          acc = fmaf(qv[r].w, kv.w, acc);
          s[r][c] = acc;
        }
      }
    }
  }
}

// Softcap / bias / ALiBi and every visibility rule, through attention_problem.cuh; -inf for keys
// past the segment and rows past the block (whose bias or mask must not even be read).
// Tiles that need the per-score rules go through shared memory (the thread's own slots of the P
// buffer, so no barrier is needed) and a rolled loop: 32 unrolled copies of modified_score would
// hold dozens of bias / mask addresses in registers and spill the whole kernel.
__device__ __forceinline__ void modify_scores(const FusedAttentionProblem& p, const LaunchPlan& plan, const WorkItem& w,
                                              int j0, float* smem, float (&s)[kRowsPerThread][kKeysPerThread]) {
  const int tx = threadIdx.x % kLanesPerRow, ty = threadIdx.x / kLanesPerRow;
  const int j1 = min(j0 + kBlockN, w.seg.k_len);
  // (a block mask's tiles always take the per-score path: modified_score applies its states)
  const bool raw = !p.block_mask && tile_fully_visible(p, w.seg, w.i0, w.i1, j0, j1) && !(p.softcap > 0.0f) &&
                   !p.bias && !p.alibi_slopes;
  if (raw && w.i1 - w.i0 == kBlockM && j1 - j0 == kBlockN) return;  // the common case: nothing to do
  if (raw) {  // only the edges of the block: rows past i1, keys past j1
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
      for (int c = 0; c < kKeysPerThread; ++c)
        if (w.i0 + ty + kRowGroups * r >= w.i1 || j0 + tx + kLanesPerRow * c >= j1) s[r][c] = neg_inf();
    return;
  }
  // Safe without a barrier: the previous tile's reads of P finished before score_tile's barriers.
  float* own = smem + plan.p_offset + ty * kProbLd + tx;  // slot (r, c) at own[r * kRowGroups * kProbLd + c * kLanesPerRow]
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
    for (int c = 0; c < kKeysPerThread; ++c) own[r * kRowGroups * kProbLd + c * kLanesPerRow] = s[r][c];
#pragma unroll 1
  for (int e = 0; e < kRowsPerThread * kKeysPerThread; ++e) {
    const int r = e / kKeysPerThread, c = e % kKeysPerThread;
    const int i = w.i0 + ty + kRowGroups * r, j = j0 + tx + kLanesPerRow * c;
    float& x = own[r * kRowGroups * kProbLd + c * kLanesPerRow];
    x = i < w.i1 && j < j1 ? modified_score(p, w.seg, w.head, i, j, x) : neg_inf();
  }
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
    for (int c = 0; c < kKeysPerThread; ++c) s[r][c] = own[r * kRowGroups * kProbLd + c * kLanesPerRow];
}

// Max over the 8 lanes that share a row (the xor partners stay inside the aligned group of 8).
__device__ __forceinline__ float row_max(float x) {
#pragma unroll
  for (int offset = 1; offset < kLanesPerRow; offset *= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}

__device__ __forceinline__ float row_sum(float x) {
#pragma unroll
  for (int offset = 1; offset < kLanesPerRow; offset *= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// Online softmax: folds the tile's scores into (m, l), rescales the output accumulator, and turns
// s into unnormalised probabilities exp(s - m).
template <int kDvChunk>
__device__ __forceinline__ void online_softmax(RowBlockState<kDvChunk>& st, float (&s)[kRowsPerThread][kKeysPerThread]) {
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    float tile_max = s[r][0];
#pragma unroll
    for (int c = 1; c < kKeysPerThread; ++c) tile_max = fmaxf(tile_max, s[r][c]);
    const float m_new = fmaxf(st.m[r], row_max(tile_max));
    // A row that has seen no visible key yet (m_new = -inf) keeps l = 0, o = 0: subtract 0
    // instead of -inf so that its -inf scores give exp(-inf) = 0, not NaN.
    const float base = m_new == neg_inf() ? 0.0f : m_new;
    const float correction = expf(st.m[r] - base);  // old m = -inf: 0; unchanged m: 1
    st.m[r] = m_new;
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < kKeysPerThread; ++c) {
      s[r][c] = expf(s[r][c] - base);
      sum += s[r][c];
    }
    st.l[r] = fmaf(st.l[r], correction, sum);
#pragma unroll
    for (int d = 0; d < RowBlockState<kDvChunk>::kDimsPerThread; ++d) st.o[r][d] *= correction;
  }
}

// o += P V for the tile [j0, j0 + keys): P through shared memory (each thread needs its rows'
// probabilities for every key), and the value tile's dims [dv0, dv0 + kDvChunk) staged next to it.
// V is staged here rather than with K so that the scores' registers are free by then.
template <int kDvChunk>
__device__ __forceinline__ void accumulate_pv(const FusedAttentionProblem& p, const LaunchPlan& plan, const WorkItem& w,
                                              int j0, int dv0, float* smem, RowBlockState<kDvChunk>& st,
                                              const float (&s)[kRowsPerThread][kKeysPerThread]) {
  using L = SharedLayout<kDvChunk>;
  const int tx = threadIdx.x % kLanesPerRow, ty = threadIdx.x / kLanesPerRow;
  const int keys = min(kBlockN, w.seg.k_len - j0);
  float* p_smem = smem + plan.p_offset;
  float* v_smem = smem + plan.v_offset;
  // Safe without a barrier first: the previous tile's reads of P and V happened before this
  // tile's first barrier in score_tile.
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
    for (int c = 0; c < kKeysPerThread; ++c) p_smem[(ty + kRowGroups * r) * kProbLd + tx + kLanesPerRow * c] = s[r][c];
  stage_block<kBlockN, kDvChunk>(v_smem, L::kVLd, p.v, p.dtype, w.at.v + j0 * p.v_stride[2] + dv0 * p.v_stride[3],
                                 p.v_stride[2], p.v_stride[3], keys, min(kDvChunk, p.head_dim_v - dv0), 1.0f);
  __syncthreads();

  // Keys past the segment have P = 0 and zero-filled V, so rounding `keys` up to 4 is harmless.
  const int key_steps = (keys + 3) / 4;
  for (int step = 0; step < key_steps; ++step) {
    const int k = step * 4;
    float4 pr[kRowsPerThread];
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r)
      pr[r] = *reinterpret_cast<const float4*>(p_smem + (ty + kRowGroups * r) * kProbLd + k);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
      for (int g = 0; g < kDvChunk / 32; ++g) {
        const float4 vv = *reinterpret_cast<const float4*>(v_smem + (k + kk) * L::kVLd + 32 * g + 4 * tx);
#pragma unroll
        for (int r = 0; r < kRowsPerThread; ++r) {
          const float pk = kk == 0 ? pr[r].x : kk == 1 ? pr[r].y : kk == 2 ? pr[r].z : pr[r].w;
          st.o[r][4 * g + 0] = fmaf(pk, vv.x, st.o[r][4 * g + 0]);
          st.o[r][4 * g + 1] = fmaf(pk, vv.y, st.o[r][4 * g + 1]);
          st.o[r][4 * g + 2] = fmaf(pk, vv.z, st.o[r][4 * g + 2]);
          st.o[r][4 * g + 3] = fmaf(pk, vv.w, st.o[r][4 * g + 3]);
        }
      }
    }
  }
}

// Normalises and stores the rows' outputs for dims [dv0, dv0 + kDvChunk), and their lse on the
// first pass. Rows that saw no key get 0 (and lse -inf, or the sink logit's).
template <int kDvChunk>
__device__ __forceinline__ void write_rows(const FusedAttentionProblem& p, const WorkItem& w, int dv0, bool first_pass,
                                           RowBlockState<kDvChunk>& st) {
  const int tx = threadIdx.x % kLanesPerRow, ty = threadIdx.x / kLanesPerRow;
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    const float l = row_sum(st.l[r]);  // every lane takes part in the shuffles
    const int i = w.i0 + ty + kRowGroups * r;
    if (i >= w.i1) continue;
    float factor, lse;
    finish_row(p, w.head, st.m[r], l, &factor, &lse);
    const int64_t row_at = w.at.out + int64_t(i) * p.o_stride[2];
#pragma unroll
    for (int g = 0; g < kDvChunk / 32; ++g)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int d = dv0 + 32 * g + 4 * tx + e;
        if (d < p.head_dim_v) store_element(p.out, p.out_dtype, row_at + d * p.o_stride[3], st.o[r][4 * g + e] * factor);
      }
    if (first_pass && tx == 0 && p.lse)
      p.lse[(int64_t(w.seg.batch) * p.heads_q + w.head) * p.seq_q + w.seg.q_start + i] = lse;
  }
}

// One work item: query rows [i0, i1) of one head of one segment, all passes over Dv.
template <int kDvChunk>
__device__ void attend_query_block(const FusedAttentionProblem& p, const LaunchPlan& plan, const WorkItem& w,
                                   float* smem) {
  if (plan.q_resident) {
    // The previous work item may still be reading Q: wait, then stage this block's queries once,
    // scaled, every head-dim chunk (zero-padded to whole chunks).
    __syncthreads();
    const int chunks = p.head_dim > 0 ? (p.head_dim + kChunkD - 1) / kChunkD : 1;
    for (int chunk = 0; chunk < chunks; ++chunk) {
      const int d0 = chunk * kChunkD;
      stage_block<kBlockM, kChunkD>(smem + plan.q_offset + d0, plan.q_ld, p.q, p.dtype, w.at.q + d0 * p.q_stride[3],
                                    p.q_stride[2], p.q_stride[3], w.i1 - w.i0, min(kChunkD, p.head_dim - d0), p.scale);
    }
    // score_tile's first barrier publishes these before anyone reads them.
  }

  // Key tiles start at the segment's first key (so they line up across query blocks); only those
  // holding a sink or part of the visible range are visited. A block mask's full blocks may hold
  // keys the options hide: then every tile whose blocks are not all skipped.
  const KeyRange keys = p.block_mask ? KeyRange{0, w.seg.k_len, 0} : visible_keys(p, w.seg, w.i0, w.i1);
  const int first_tile = keys.sink_end > 0 ? 0 : keys.main_begin / kBlockN * kBlockN;
  const int passes = p.head_dim_v > kDvChunk ? (p.head_dim_v + kDvChunk - 1) / kDvChunk : 1;

  for (int pass = 0; pass < passes; ++pass) {
    const int dv0 = pass * kDvChunk;
    RowBlockState<kDvChunk> st;
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
      st.m[r] = neg_inf();
      st.l[r] = 0.0f;
#pragma unroll
      for (int d = 0; d < RowBlockState<kDvChunk>::kDimsPerThread; ++d) st.o[r][d] = 0.0f;
    }
    for (int j0 = first_tile; j0 < keys.main_end || j0 < keys.sink_end; j0 += kBlockN) {
      const bool holds_sink = j0 < keys.sink_end;
      const bool holds_main = j0 + kBlockN > keys.main_begin && j0 < keys.main_end;
      if (!holds_sink && !holds_main) continue;  // the same for the whole CTA
      if (covered_block_states(p, w.seg, w.head, w.i0, w.i1, j0, min(j0 + kBlockN, w.seg.k_len)) == kSomeSkipped) continue;
      float s[kRowsPerThread][kKeysPerThread];
      score_tile(p, plan, w, j0, smem, s);
      modify_scores(p, plan, w, j0, smem, s);
      online_softmax<kDvChunk>(st, s);
      accumulate_pv<kDvChunk>(p, plan, w, j0, dv0, smem, st, s);
    }
    write_rows<kDvChunk>(p, w, dv0, pass == 0, st);
  }
}

template <int kDvChunk>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM) fused_attention_generic_kernel(const FusedAttentionProblem p,
                                                                           const LaunchPlan plan) {
  extern __shared__ float4 smem_storage[];  // float4: 16-byte alignment for the float4 reads
  float* smem = reinterpret_cast<float*>(smem_storage);
  // Work item = (segment, head, query block), query block fastest. Query blocks are taken last
  // first: under causal masks the last rows see the most keys, and starting the longest work
  // first shortens the tail of the launch.
  for (int64_t item = blockIdx.x; item < plan.work_items; item += gridDim.x) {
    WorkItem w;
    const int block = plan.q_blocks - 1 - int(item % plan.q_blocks);
    const int64_t rest = item / plan.q_blocks;
    w.head = int(rest % p.heads_q);
    w.seg = segment_of(p, int(rest / p.heads_q));
    w.i0 = block * kBlockM;
    if (w.i0 >= w.seg.q_len) continue;  // a shorter varlen segment: the same for the whole CTA
    w.i1 = min(w.i0 + kBlockM, w.seg.q_len);
    const int kv_head = w.head / p.group;
    const int64_t b = w.seg.batch;
    w.at.q = b * p.q_stride[0] + w.head * p.q_stride[1] + int64_t(w.seg.q_start + w.i0) * p.q_stride[2];
    w.at.k = b * p.k_stride[0] + kv_head * p.k_stride[1] + int64_t(w.seg.k_start) * p.k_stride[2];
    w.at.v = b * p.v_stride[0] + kv_head * p.v_stride[1] + int64_t(w.seg.k_start) * p.v_stride[2];
    w.at.out = b * p.o_stride[0] + w.head * p.o_stride[1] + int64_t(w.seg.q_start) * p.o_stride[2];
    attend_query_block<kDvChunk>(p, plan, w, smem);
  }
}

// Host side -------------------------------------------------------------------------------------

size_t plan_shared_floats(LaunchPlan& plan, int head_dim, int k_floats, int v_floats, int p_floats) {
  const int d_chunks = head_dim > 0 ? (head_dim + kChunkD - 1) / kChunkD : 1;
  plan.q_ld = plan.q_resident ? d_chunks * kChunkD + kPad : kChunkLd;
  const int q_floats = kBlockM * plan.q_ld;
  plan.q_offset = 0;
  plan.k_offset = q_floats;
  plan.v_offset = plan.k_offset + k_floats;
  plan.p_offset = plan.v_offset + v_floats;
  return size_t(plan.p_offset) + p_floats;
}

template <int kDvChunk>
cudaError_t launch_with_chunk(const FusedAttentionProblem& p, const DeviceTraits& dev, cudaStream_t stream) {
  using L = SharedLayout<kDvChunk>;
  LaunchPlan plan;
  const int max_q = p.max_seqlen_q;
  const int segments = p.cu_seqlens_q ? p.num_segments : p.batch;
  plan.q_blocks = (max_q + kBlockM - 1) / kBlockM;
  plan.work_items = int64_t(segments) * p.heads_q * plan.q_blocks;
  if (plan.work_items == 0) return cudaSuccess;

  // Keep Q resident (read from global memory once per work item, not once per key tile) when two
  // CTAs still fit an SM: at 4 warps per CTA, one CTA alone cannot hide the staging loads' latency.
  // Wider heads (D > 128 on H100, D > 64 on A100) stream Q chunk by chunk next to K instead. The
  // per-block opt-in limit stands in for the SM's capacity (227 of 228 KB on H100, 163 of 164 on A100).
  const size_t limit = dev.max_shared_per_block_optin > 0 ? dev.max_shared_per_block_optin : 48 * 1024;
  LaunchPlan streamed = plan;
  streamed.q_resident = false;
  plan.q_resident = true;
  const size_t resident_bytes = plan_shared_floats(plan, p.head_dim, L::kKFloats, L::kVFloats, L::kPFloats) * sizeof(float);
  const size_t streamed_bytes =
      plan_shared_floats(streamed, p.head_dim, L::kKFloats, L::kVFloats, L::kPFloats) * sizeof(float);
  size_t bytes = resident_bytes;
  if (resident_bytes > limit / 2 && streamed_bytes <= limit / 2) {
    plan = streamed;
    bytes = streamed_bytes;
  } else if (resident_bytes > limit) {
    if (streamed_bytes > limit) return cudaErrorNotSupported;  // no GPU of sm_80 or later is this small
    plan = streamed;
    bytes = streamed_bytes;
  }

  auto kernel = fused_attention_generic_kernel<kDvChunk>;
  if (bytes > 48 * 1024) {
    // Always the same value, whatever the problem: concurrent launches from several host threads
    // then never shrink the limit under one another.
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(limit));
    if (e != cudaSuccess) return e;
  }
  // Every work item is a CTA; past 2^31 - 1 of them the kernel's loop takes the rest.
  const unsigned grid = unsigned(plan.work_items < INT_MAX ? plan.work_items : INT_MAX);
  kernel<<<grid, kThreads, bytes, stream>>>(p, plan);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_fused_attention_generic(const FusedAttentionProblem& p, const DeviceTraits& dev, cudaStream_t stream) {
  // The narrowest output chunk that holds Dv (fewer wasted registers and FMAs); wider heads take
  // several passes of 128 dims.
  if (p.head_dim_v <= 32) return launch_with_chunk<32>(p, dev, stream);
  if (p.head_dim_v <= 64) return launch_with_chunk<64>(p, dev, stream);
  if (p.head_dim_v <= 96) return launch_with_chunk<96>(p, dev, stream);
  return launch_with_chunk<128>(p, dev, stream);
}

}  // namespace cuda
}  // namespace attnkit
