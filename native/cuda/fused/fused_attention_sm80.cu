// Fused attention forward for sm_80+ (Ampere, Ada; also runs on Hopper): FlashAttention-2-style,
// mma.sync m16n8k16 (fp16 / bf16 in, f32 accumulate) written as inline PTX.
//
// Design
//   * One CTA = BlockM query rows of one (batch or varlen segment, query head); 4 warps, each warp
//     owns BlockM/4 whole rows (32 rows = two m16 tiles for D <= 128, 16 rows for D = 256), so the
//     softmax row statistics never leave the warp (quad shuffles only).
//   * Tiles per head dim (BlockM x BlockN, K/V stages, shared memory):
//        D=32: 128x64, 2 (30 KB)   D=64: 128x64, 2 (54 KB)   D=96: 128x64, 2 (78 KB)
//        D=128: 128x32, 2 (68 KB)    D=256: 64x64, 1 (99 KB)
//     BlockN is what fits the registers: O (BlockM*D/128 floats per thread) and the score tile
//     (BlockM*BlockN/128) must stay under 255 with no spill; at D=128 a 64-key tile spills.
//     Q, K and V tiles live in shared memory with rows padded by 16 bytes: the row pitch is then
//     an odd number of 16-byte units, so the 8 row addresses of every ldmatrix (and the cp.async
//     stores) hit 8 different bank groups. Padding, unlike an XOR swizzle, also works for D = 96.
//   * Pipeline: K and V have their own ring buffers of `Stages` tiles, filled with cp.async (rows
//     past the end zero-filled). The load of V[n+S-1] is issued right after the barrier that opens
//     iteration n (every warp has finished P.V of tile n-1), the load of K[n+S] right after the
//     barrier between Q.K^T and P.V (every warp has finished reading K[n]). With one stage this
//     is FlashAttention-2's K/V ping-pong; with two, loads run a whole tile ahead.
//   * Q.K^T: A = Q by ldmatrix (held in registers for D <= 64, re-read from shared memory per
//     k-step otherwise, which keeps D >= 96 free of spills), B = K by ldmatrix (non-transposed:
//     K rows are the mma's "col" operand as stored).
//   * Online softmax in registers, in log2 units: logit = score * scale * log2(e), p = 2^(logit-m)
//     with ex2.approx; the row sum stays per-thread until the epilogue. A row that has seen nothing
//     keeps m = -inf and subtracts 0 instead, so fully masked rows never produce NaN.
//   * P.V: the f32 score accumulators of two n8 tiles are exactly the A fragment of one k16 step,
//     so P is packed to fp16/bf16 in registers (no shared-memory round trip); V by ldmatrix.trans.
//   * Which key tiles: only those of visible_keys() (sink tiles, then the main range). A tile that
//     tile_fully_visible() covers and that has no softcap / bias / ALiBi / mask does no per-element
//     work; a tile that only needs causal / window / sink / tail masking tests key_visible(); any
//     score modifier goes through modified_score() per element. All option semantics come from
//     attention_problem.cuh.
//   * Grid: x = query head fastest (then batch), y = query block in reverse order, so the heaviest
//     causal blocks of every head launch first and the light ones fill the tail. Varlen packs all
//     segments' query blocks into y without knowing their lengths on the host: segment s owns
//     blocks [cu_q[s]/BlockM + s, cu_q[s+1]/BlockM + s + 1), at least ceil(len/BlockM) of them,
//     found by a binary search; at most one idle block per segment.
#include <cstdint>

#include "fused_attention.h"
#include "mma_sm80.cuh"

namespace attnkit {
namespace cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ---------------------------------------------------------------------------------------------
// Tile configuration per head dim

template <int D>
struct TileShape;
template <> struct TileShape<32>  { static constexpr int kBlockM = 128, kBlockN = 64;  static constexpr bool kQInRegs = true; };
template <> struct TileShape<64>  { static constexpr int kBlockM = 128, kBlockN = 64;  static constexpr bool kQInRegs = true; };
template <> struct TileShape<96>  { static constexpr int kBlockM = 128, kBlockN = 64;  static constexpr bool kQInRegs = false; };
template <> struct TileShape<128> { static constexpr int kBlockM = 128, kBlockN = 32;  static constexpr bool kQInRegs = false; };
template <> struct TileShape<256> { static constexpr int kBlockM = 64,  kBlockN = 64;  static constexpr bool kQInRegs = false; };

template <int D, int Stages>
struct Config {
  static constexpr int kHeadDim = D;
  static constexpr int kStages = Stages;
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kBlockM = TileShape<D>::kBlockM;
  static constexpr int kBlockN = TileShape<D>::kBlockN;
  static constexpr bool kQInRegs = TileShape<D>::kQInRegs;
  static constexpr int kWarpRows = kBlockM / kWarps;
  static constexpr int kMTiles = kWarpRows / 16;  // m16 tiles per warp
  static constexpr int kNTiles = kBlockN / 8;     // n8 score tiles per row block
  static constexpr int kDTiles = D / 8;           // n8 output tiles
  static constexpr int kDSteps = D / 16;          // k16 steps of Q.K^T
  static constexpr int kNSteps = kBlockN / 16;    // k16 steps of P.V
  static constexpr int kPitch = D + 8;            // smem row pitch in 16-bit elements
  static constexpr int kQElems = kBlockM * kPitch;
  static constexpr int kKVElems = kBlockN * kPitch;
  static constexpr int kSmemBytes = 2 * (kQElems + 2 * kStages * kKVElems);
  static_assert(kWarpRows % 16 == 0 && kBlockN % 16 == 0 && D % 16 == 0, "tile shape");
  static_assert(((kPitch / 8) & 1) == 1, "row pitch must be an odd number of 16-byte units");
};

// Where a launch's query blocks sit: y blocks [first, first + gridDim.y) of `total`.
struct LaunchMap {
  int first_block;
  int total_blocks;
  int out_paired;  // out rows allow 2-element stores (unit d-stride, even strides, aligned base)
};

// ---------------------------------------------------------------------------------------------
// Memory movement

// 16 bytes global -> shared, bypassing L1; src_bytes = 0 writes zeros and reads nothing.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// An int the compiler cannot see through. Per-element index math derived from it stays inside
// the key-tile loop instead of being hoisted out as dozens of loop-invariant registers.
__device__ __forceinline__ int opaque(int x) {
  int y;
  asm volatile("mov.b32 %0, %1;" : "=r"(y) : "r"(x));
  return y;
}

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Rows [0, Rows) of a [rows, D] tile (row stride `stride` elements) into padded shared memory;
// rows >= valid_rows are zero-filled, so a V tail never feeds garbage (or NaN) into P.V.
template <class C, int Rows>
__device__ __forceinline__ void load_tile_async(uint32_t smem, const uint16_t* rows, int64_t stride, int valid_rows,
                                                int tid) {
  constexpr int kChunksPerRow = C::kHeadDim / 8;
  constexpr int kChunks = Rows * kChunksPerRow;
  static_assert(kChunks % C::kThreads == 0, "every thread copies the same number of chunks");
  if constexpr (C::kThreads % kChunksPerRow == 0) {
    // A thread's chunks share one column and sit kRowStep rows apart: one pointer walks them,
    // instead of a 64-bit address per chunk kept live across the main loop.
    constexpr int kRowStep = C::kThreads / kChunksPerRow;
    const int row0 = tid / kChunksPerRow, col = tid % kChunksPerRow;
    const uint16_t* src = rows + row0 * stride + col * 8;
    const int64_t step = kRowStep * stride;
    const uint32_t dst = smem + 2u * (row0 * C::kPitch + col * 8);
#pragma unroll
    for (int k = 0; k < kChunks / C::kThreads; ++k) {
      const bool valid = row0 + k * kRowStep < valid_rows;
      cp_async_16(dst + 2u * (k * kRowStep * C::kPitch), valid ? src : rows, valid ? 16 : 0);
      src += step;
    }
  } else {
#pragma unroll
    for (int k = 0; k < kChunks / C::kThreads; ++k) {
      const int c = tid + k * C::kThreads;
      const int row = c / kChunksPerRow, col = c % kChunksPerRow;
      const bool valid = row < valid_rows;
      const uint16_t* src = valid ? rows + row * stride + col * 8 : rows;
      cp_async_16(smem + 2u * (row * C::kPitch + col * 8), src, valid ? 16 : 0);
    }
  }
}

// Key tile `tile` (its first key at tile * BlockN) of K or V into ring slot `slot`.
template <class C>
__device__ __forceinline__ void load_kv_tile_async(uint32_t ring, int slot, const uint16_t* head_rows, int64_t stride,
                                                   int j0, int k_len, int tid) {
  load_tile_async<C, C::kBlockN>(ring + 2u * slot * C::kKVElems, head_rows + j0 * stride, stride, k_len - j0, tid);
}

// ---------------------------------------------------------------------------------------------
// The two matmuls of a key tile

// S[mt][nt] = Q_warp . K_tile^T for this warp's rows.
template <class T, class C>
__device__ __forceinline__ void qk_tile_mma(float (&S)[C::kMTiles][C::kNTiles][4],
                                            const uint32_t (&q_regs)[C::kQInRegs ? C::kMTiles : 1]
                                                                    [C::kQInRegs ? C::kDSteps : 1][4],
                                            uint32_t q_lane, uint32_t k_lane) {
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) S[mt][nt][e] = 0.0f;
  // With Q in shared memory the k-steps stay a rolled loop: fully unrolled, the scheduler
  // prefetches the fragments of several steps at once and the kernel spills at D >= 96.
#pragma unroll(C::kQInRegs ? C::kDSteps : 1)
  for (int ks = 0; ks < C::kDSteps; ++ks) {
    uint32_t a[C::kMTiles][4];
#pragma unroll
    for (int mt = 0; mt < C::kMTiles; ++mt) {
      if constexpr (C::kQInRegs) {
#pragma unroll
        for (int r = 0; r < 4; ++r) a[mt][r] = q_regs[mt][ks][r];
      } else {
        ldmatrix_x4(a[mt], q_lane + 2u * (mt * 16 * C::kPitch + ks * 16));
      }
    }
#pragma unroll
    for (int np = 0; np < C::kNTiles / 2; ++np) {  // two n8 tiles (16 keys) per ldmatrix.x4
      uint32_t b[4];
      ldmatrix_x4(b, k_lane + 2u * (np * 16 * C::kPitch + ks * 16));
#pragma unroll
      for (int mt = 0; mt < C::kMTiles; ++mt) {
        T::mma(S[mt][2 * np], a[mt], b[0], b[1]);
        T::mma(S[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

// O += P . V_tile, P taken straight from the probability registers: the C fragments of n8 tiles
// 2s and 2s+1 are the A fragment of k16 step s.
template <class T, class C>
__device__ __forceinline__ void pv_tile_mma(float (&O)[C::kMTiles][C::kDTiles][4],
                                            const float (&P)[C::kMTiles][C::kNTiles][4], uint32_t v_lane) {
#pragma unroll
  for (int s = 0; s < C::kNSteps; ++s) {
    uint32_t a[C::kMTiles][4];
#pragma unroll
    for (int mt = 0; mt < C::kMTiles; ++mt) {
      a[mt][0] = T::pack(P[mt][2 * s][0], P[mt][2 * s][1]);
      a[mt][1] = T::pack(P[mt][2 * s][2], P[mt][2 * s][3]);
      a[mt][2] = T::pack(P[mt][2 * s + 1][0], P[mt][2 * s + 1][1]);
      a[mt][3] = T::pack(P[mt][2 * s + 1][2], P[mt][2 * s + 1][3]);
    }
#pragma unroll
    for (int dp = 0; dp < C::kDTiles / 2; ++dp) {  // two n8 output tiles per ldmatrix.x4.trans
      uint32_t b[4];
      ldmatrix_x4_trans(b, v_lane + 2u * (s * 16 * C::kPitch + dp * 16));
#pragma unroll
      for (int mt = 0; mt < C::kMTiles; ++mt) {
        T::mma(O[mt][2 * dp], a[mt], b[0], b[1]);
        T::mma(O[mt][2 * dp + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Scores to logits, online softmax

enum class TileWork {
  kPlain,     // every pair visible, no score modifier: scale only
  kMaskOnly,  // causal / window / sinks / key tail: key_visible per element
  kModified,  // softcap, bias, ALiBi or the mask tensor: modified_score per element
};

__device__ __forceinline__ TileWork classify_tile(const FusedAttentionProblem& p, const Segment& seg, int i0, int i1,
                                                  int j0, int block_n) {
  if (p.softcap > 0.0f || p.bias || p.alibi_slopes || p.mask) return TileWork::kModified;
  if (j0 + block_n <= seg.k_len && tile_fully_visible(p, seg, i0, i1, j0, j0 + block_n)) return TileWork::kPlain;
  return TileWork::kMaskOnly;
}

// Raw q.k scores -> logits in log2 units, -inf where hidden. Fragment element (mt, nt, e) is row
// row0 + mt*16 + (e/2)*8, key j0 + nt*8 + (e%2) (row0, j0 already include the lane's offsets).
// Rows past the segment (a ragged last block) and keys past it are hidden too: modified_score
// would read bias / mask out of bounds there.
template <class C>
__device__ __forceinline__ void scores_to_logits(float (&S)[C::kMTiles][C::kNTiles][4], TileWork work,
                                                 const FusedAttentionProblem& p, const Segment& seg, int h, int row0,
                                                 int j0, float scale_log2) {
  const float neg_inf = -__int_as_float(0x7f800000);
  row0 = opaque(row0);
  if (work == TileWork::kPlain) {
#pragma unroll
    for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
      for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) S[mt][nt][e] *= scale_log2;
  } else if (work == TileWork::kMaskOnly) {
#pragma unroll
    for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int i = row0 + mt * 16 + half * 8;
        // The row's visible keys as bounds on the column offset jc = nt * 8 + c (a constant per
        // element); a row past the segment sees none.
        RowKeys keys = row_visible_keys(p, seg, i);
        if (i >= seg.q_len) keys = RowKeys{0, 0, 0};
        const int sink_hi = keys.sink_end - j0, lo = keys.begin - j0, hi = keys.end - j0;
#pragma unroll
        for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int jc = nt * 8 + c;
            float& s = S[mt][nt][half * 2 + c];
            s = jc < sink_hi || (jc >= lo && jc < hi) ? s * scale_log2 : neg_inf;
          }
      }
  } else {
#pragma unroll
    for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int i = row0 + mt * 16 + half * 8;
        const bool row_ok = i < seg.q_len;
#pragma unroll
        for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int j = j0 + nt * 8 + c;
            float& s = S[mt][nt][half * 2 + c];
            s = row_ok && j < seg.k_len ? modified_score(p, seg, h, i, j, s * p.scale) * kLog2e : neg_inf;
          }
      }
  }
}

// Folds a tile of logits into the running (max m, sum l, output O) of this thread's rows and
// turns S into probabilities. Thread rows: (mt, half); a row's 4 lanes are one quad.
template <class C>
__device__ __forceinline__ void online_softmax_update(float (&S)[C::kMTiles][C::kNTiles][4],
                                                      float (&O)[C::kMTiles][C::kDTiles][4], float (&m)[C::kMTiles][2],
                                                      float (&l)[C::kMTiles][2]) {
  const float neg_inf = -__int_as_float(0x7f800000);
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float mx = m[mt][half];
#pragma unroll
      for (int nt = 0; nt < C::kNTiles; ++nt)
        mx = fmaxf(mx, fmaxf(S[mt][nt][half * 2], S[mt][nt][half * 2 + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      // Nothing visible yet: subtract 0, so -inf logits give 0 rather than NaN.
      const float base = mx == neg_inf ? 0.0f : mx;
      const float corr = fast_exp2(m[mt][half] - base);  // 0 while the row had seen nothing
      m[mt][half] = mx;
      float sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float pr = fast_exp2(S[mt][nt][half * 2 + c] - base);
          S[mt][nt][half * 2 + c] = pr;
          sum += pr;
        }
      l[mt][half] = l[mt][half] * corr + sum;
#pragma unroll
      for (int dt = 0; dt < C::kDTiles; ++dt) {
        O[mt][dt][half * 2] *= corr;
        O[mt][dt][half * 2 + 1] *= corr;
      }
    }
}

// ---------------------------------------------------------------------------------------------
// Epilogue

__device__ __forceinline__ uint16_t to_f16_bits(float x) {
  uint16_t r;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(x));
  return r;
}
__device__ __forceinline__ uint16_t to_bf16_bits(float x) {
  uint16_t r;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(x));
  return r;
}

__device__ __forceinline__ void store_element(void* out, int dtype, int64_t at, float x) {
  if (dtype == kF32) static_cast<float*>(out)[at] = x;
  else if (dtype == kF16) static_cast<uint16_t*>(out)[at] = to_f16_bits(x);
  else static_cast<uint16_t*>(out)[at] = to_bf16_bits(x);
}

// Two adjacent elements of a row (at is even, the row pair-aligned: LaunchMap::out_paired).
__device__ __forceinline__ void store_pair(void* out, int dtype, int64_t at, float x0, float x1) {
  if (dtype == kF32) {
    *reinterpret_cast<float2*>(static_cast<float*>(out) + at) = make_float2(x0, x1);
  } else {
    const uint32_t bits = dtype == kF16 ? (uint32_t(to_f16_bits(x1)) << 16) | to_f16_bits(x0)
                                        : (uint32_t(to_bf16_bits(x1)) << 16) | to_bf16_bits(x0);
    *reinterpret_cast<uint32_t*>(static_cast<uint16_t*>(out) + at) = bits;
  }
}

// Normalises this thread's rows (sink logit folded in by finish_row) and writes out and lse.
template <class C>
__device__ __forceinline__ void write_output(const FusedAttentionProblem& p, const Segment& seg, int h, int row0,
                                             int lane, bool paired, float (&O)[C::kMTiles][C::kDTiles][4],
                                             const float (&m)[C::kMTiles][2], float (&l)[C::kMTiles][2]) {
  const int col0 = (lane % 4) * 2;
  const int64_t head_base = seg.batch * p.o_stride[0] + h * p.o_stride[1];
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float sum = l[mt][half];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      float factor, lse;
      finish_row(p, h, m[mt][half] * kLn2, sum, &factor, &lse);
      const int i = row0 + mt * 16 + half * 8;
      if (i >= seg.q_len) continue;
      const int64_t row = seg.q_start + i;
      if (p.lse && lane % 4 == 0) p.lse[(int64_t(seg.batch) * p.heads_q + h) * p.seq_q + row] = lse;
      const int64_t row_base = head_base + row * p.o_stride[2];
      if (paired) {
#pragma unroll
        for (int dt = 0; dt < C::kDTiles; ++dt)
          store_pair(p.out, p.out_dtype, row_base + dt * 8 + col0, O[mt][dt][half * 2] * factor,
                     O[mt][dt][half * 2 + 1] * factor);
      } else {
#pragma unroll
        for (int dt = 0; dt < C::kDTiles; ++dt)
#pragma unroll
          for (int c = 0; c < 2; ++c)
            store_element(p.out, p.out_dtype, row_base + int64_t(dt * 8 + col0 + c) * p.o_stride[3],
                          O[mt][dt][half * 2 + c] * factor);
      }
    }
}

// ---------------------------------------------------------------------------------------------
// Work assignment

// First query block (in the y numbering) of varlen segment s; see the header comment.
__device__ __forceinline__ int varlen_first_block(const FusedAttentionProblem& p, int s, int block_m) {
  return p.cu_seqlens_q[s] / block_m + s;
}

// The segment and query block of this CTA; false if it has no rows to compute.
__device__ __forceinline__ bool locate_block(const FusedAttentionProblem& p, const LaunchMap& map, int block_m,
                                             Segment* seg, int* q_block) {
  const int g = map.total_blocks - 1 - (map.first_block + int(blockIdx.y));  // heaviest first
  if (p.cu_seqlens_q) {
    if (p.num_segments <= 0 || varlen_first_block(p, 0, block_m) > g) return false;
    int lo = 0, hi = p.num_segments - 1;  // last segment whose first block is <= g
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (varlen_first_block(p, mid, block_m) <= g) lo = mid;
      else hi = mid - 1;
    }
    *seg = segment_of(p, lo);
    *q_block = g - varlen_first_block(p, lo, block_m);
  } else {
    *seg = segment_of(p, int(blockIdx.x) / p.heads_q);
    *q_block = g;
  }
  return *q_block * block_m < seg->q_len;
}

// ---------------------------------------------------------------------------------------------
// The kernel

template <class T, class C>
__global__ void __launch_bounds__(C::kThreads) fused_attention_sm80_kernel(const FusedAttentionProblem p,
                                                                           const LaunchMap map) {
  extern __shared__ __align__(16) uint16_t smem[];
  constexpr int BM = C::kBlockM, BN = C::kBlockN, S = C::kStages;

  Segment seg;
  int q_block;
  if (!locate_block(p, map, BM, &seg, &q_block)) return;
  const int h = int(blockIdx.x) % p.heads_q;
  const int hk = h / p.group;
  const int i0 = q_block * BM;
  const int i1 = min(i0 + BM, seg.q_len);

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

  // Key tiles to visit: the sink tiles [0, sink_tiles), then [main_first, main_last).
  const KeyRange kr = visible_keys(p, seg, i0, i1);
  const int sink_tiles = (kr.sink_end + BN - 1) / BN;
  int main_first = kr.main_begin / BN, main_last = (kr.main_end + BN - 1) / BN;
  if (kr.main_end <= kr.main_begin) main_last = main_first;
  if (main_first < sink_tiles) main_first = sink_tiles;
  const int num_tiles = sink_tiles + max(main_last - main_first, 0);
  auto tile_key0 = [&](int n) { return (n < sink_tiles ? n : main_first + n - sink_tiles) * BN; };

  const uint16_t* q_rows = static_cast<const uint16_t*>(p.q) + seg.batch * p.q_stride[0] + h * p.q_stride[1] +
                           int64_t(seg.q_start + i0) * p.q_stride[2];
  const uint16_t* k_rows = static_cast<const uint16_t*>(p.k) + seg.batch * p.k_stride[0] + hk * p.k_stride[1] +
                           int64_t(seg.k_start) * p.k_stride[2];
  const uint16_t* v_rows = static_cast<const uint16_t*>(p.v) + seg.batch * p.v_stride[0] + hk * p.v_stride[1] +
                           int64_t(seg.k_start) * p.v_stride[2];

  const uint32_t q_smem = smem_address(smem);
  const uint32_t k_ring = q_smem + 2u * C::kQElems;
  const uint32_t v_ring = k_ring + 2u * S * C::kKVElems;

  // ldmatrix row addresses of this lane (see the fragment layouts of mma.m16n8k16):
  //   Q (A, x4): rows lane%16 of the m16 tile, column half lane/16;
  //   K (B, x4): keys lane%8 + 8*(lane/16), column half (lane/8)%2 -> b0,b1 of two n8 tiles;
  //   V (B, x4.trans): keys lane%8 + 8*((lane/8)%2), d half lane/16 -> b0,b1 of two n8 tiles.
  const uint32_t q_lane = q_smem + 2u * ((warp * C::kWarpRows + lane % 16) * C::kPitch + (lane / 16) * 8);
  const uint32_t k_lane_off = 2u * ((lane % 8 + (lane / 16) * 8) * C::kPitch + ((lane / 8) % 2) * 8);
  const uint32_t v_lane_off = 2u * ((lane % 8 + ((lane / 8) % 2) * 8) * C::kPitch + (lane / 16) * 8);

  // Prologue: Q with K[0], then V[0], K[1], ..., V[S-2], K[S-1]; one commit group each (empty
  // groups past the last tile keep the wait counts below uniform).
  if (num_tiles > 0) {
    load_tile_async<C, BM>(q_smem, q_rows, p.q_stride[2], seg.q_len - i0, tid);
    load_kv_tile_async<C>(k_ring, 0, k_rows, p.k_stride[2], tile_key0(0), seg.k_len, tid);
  }
  cp_async_commit();
#pragma unroll
  for (int n = 1; n < S; ++n) {
    if (n - 1 < num_tiles) load_kv_tile_async<C>(v_ring, n - 1, v_rows, p.v_stride[2], tile_key0(n - 1), seg.k_len, tid);
    cp_async_commit();
    if (n < num_tiles) load_kv_tile_async<C>(k_ring, n, k_rows, p.k_stride[2], tile_key0(n), seg.k_len, tid);
    cp_async_commit();
  }

  float O[C::kMTiles][C::kDTiles][4];
  float m[C::kMTiles][2], l[C::kMTiles][2];
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt) {
#pragma unroll
    for (int dt = 0; dt < C::kDTiles; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) O[mt][dt][e] = 0.0f;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      m[mt][half] = -__int_as_float(0x7f800000);
      l[mt][half] = 0.0f;
    }
  }
  uint32_t q_regs[C::kQInRegs ? C::kMTiles : 1][C::kQInRegs ? C::kDSteps : 1][4];

  const float scale_log2 = p.scale * kLog2e;
  const int row0 = i0 + warp * C::kWarpRows + lane / 4;  // segment-local row of fragment row g
  const bool mods = p.softcap > 0.0f || p.bias || p.alibi_slopes || p.mask;

  for (int n = 0; n < num_tiles; ++n) {
    const int slot = n % S;
    const int j0 = tile_key0(n);

    // K[n] (and Q) landed; every warp is past P.V of tile n-1, so V slot (n-1)%S is free.
    cp_async_wait<2 * S - 2>();
    __syncthreads();
    if (n + S - 1 < num_tiles)
      load_kv_tile_async<C>(v_ring, (n + S - 1) % S, v_rows, p.v_stride[2], tile_key0(n + S - 1), seg.k_len, tid);
    cp_async_commit();

    if constexpr (C::kQInRegs) {
      if (n == 0) {
#pragma unroll
        for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
          for (int ks = 0; ks < C::kDSteps; ++ks) ldmatrix_x4(q_regs[mt][ks], q_lane + 2u * (mt * 16 * C::kPitch + ks * 16));
      }
    }

    float Sc[C::kMTiles][C::kNTiles][4];
    qk_tile_mma<T, C>(Sc, q_regs, q_lane, k_ring + 2u * slot * C::kKVElems + k_lane_off);

    const TileWork work = mods ? TileWork::kModified : classify_tile(p, seg, i0, i1, j0, BN);
    scores_to_logits<C>(Sc, work, p, seg, h, row0, j0 + (lane % 4) * 2, scale_log2);
    online_softmax_update<C>(Sc, O, m, l);

    // V[n] landed; every warp is past Q.K^T of tile n, so K slot n%S is free for K[n+S].
    cp_async_wait<2 * S - 2>();
    __syncthreads();
    if (n + S < num_tiles) load_kv_tile_async<C>(k_ring, slot, k_rows, p.k_stride[2], tile_key0(n + S), seg.k_len, tid);
    cp_async_commit();

    pv_tile_mma<T, C>(O, Sc, v_ring + 2u * slot * C::kKVElems + v_lane_off);
  }
  cp_async_wait<0>();  // nothing may still be writing shared memory when the CTA retires

  write_output<C>(p, seg, h, row0, lane, map.out_paired != 0, O, m, l);
}

// ---------------------------------------------------------------------------------------------
// Host side

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

// Every row start of a [B, H, S, D] tensor with unit d-stride is 16-byte aligned (16-bit data):
// strides of dims with more than one entry are multiples of 8 elements.
bool rows_aligned16(const void* base, const int64_t (&stride)[4], int64_t b, int64_t h, int64_t s) {
  if (!aligned16(base) || stride[3] != 1) return false;
  const int64_t sizes[3] = {b, h, s};
  for (int d = 0; d < 3; ++d)
    if (sizes[d] > 1 && stride[d] % 8 != 0) return false;
  return true;
}

size_t shared_optin(const DeviceTraits& dev) {
  if (dev.max_shared_per_block_optin > 0) return dev.max_shared_per_block_optin;
  int device = 0, bytes = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess)
    return 48 * 1024;
  return size_t(bytes);
}

// Shared memory of the configuration the launcher will pick for head dim D.
size_t smem_bytes_for(int d) {
  switch (d) {
    case 32: return Config<32, 2>::kSmemBytes;
    case 64: return Config<64, 2>::kSmemBytes;
    case 96: return Config<96, 2>::kSmemBytes;
    case 128: return Config<128, 2>::kSmemBytes;
    case 256: return Config<256, 1>::kSmemBytes;
    default: return 0;
  }
}

template <class T, class C>
cudaError_t launch(const FusedAttentionProblem& p, cudaStream_t stream) {
  auto kernel = fused_attention_sm80_kernel<T, C>;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes);
  if (err != cudaSuccess) return err;

  const bool varlen = p.cu_seqlens_q != nullptr;
  const int64_t x = int64_t(p.heads_q) * (varlen ? 1 : p.batch);
  const int64_t total = varlen ? int64_t(p.seq_q) / C::kBlockM + p.num_segments
                               : (int64_t(p.seq_q) + C::kBlockM - 1) / C::kBlockM;
  if (x <= 0 || total <= 0) return cudaSuccess;

  const int64_t* os = p.o_stride;
  const int64_t out_elem = p.out_dtype == kF32 ? 4 : 2;
  const bool paired = os[3] == 1 && os[0] % 2 == 0 && os[1] % 2 == 0 && os[2] % 2 == 0 &&
                      reinterpret_cast<uintptr_t>(p.out) % (2 * out_elem) == 0;

  // gridDim.y is limited to 65535: very long sequences take several launches, heaviest first.
  constexpr int64_t kMaxY = 65535;
  for (int64_t first = 0; first < total; first += kMaxY) {
    const int64_t y = total - first < kMaxY ? total - first : kMaxY;
    const LaunchMap map{int(first), int(total), paired ? 1 : 0};
    kernel<<<dim3(unsigned(x), unsigned(y), 1), C::kThreads, C::kSmemBytes, stream>>>(p, map);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

template <class T>
cudaError_t launch_for_head_dim(const FusedAttentionProblem& p, cudaStream_t stream) {
  switch (p.head_dim) {
    case 32: return launch<T, Config<32, 2>>(p, stream);
    case 64: return launch<T, Config<64, 2>>(p, stream);
    case 96: return launch<T, Config<96, 2>>(p, stream);
    case 128: return launch<T, Config<128, 2>>(p, stream);
    case 256: return launch<T, Config<256, 1>>(p, stream);
    default: return cudaErrorNotSupported;
  }
}

}  // namespace

bool fused_attention_sm80_supports(const FusedAttentionProblem& p, const DeviceTraits& dev) {
  if (p.block_mask) return false;  // block masks: the sm_90a or the generic kernel
  if (dev.cc_major < 8) return false;
  if (p.dtype != kF16 && p.dtype != kBF16) return false;
  if (p.out_dtype != kF32 && p.out_dtype != kF16 && p.out_dtype != kBF16) return false;
  if (p.head_dim != p.head_dim_v) return false;
  if (p.head_dim != 32 && p.head_dim != 64 && p.head_dim != 96 && p.head_dim != 128 && p.head_dim != 256) return false;
  if (p.group < 1 || p.heads_kv < 1 || p.heads_q != p.heads_kv * p.group) return false;
  if (p.bias && p.bias_dtype != kF32 && p.bias_dtype != kF16 && p.bias_dtype != kBF16) return false;
  if (p.cu_seqlens_q && (!p.cu_seqlens_k || p.batch != 1)) return false;
  if (!rows_aligned16(p.q, p.q_stride, p.batch, p.heads_q, p.seq_q)) return false;
  if (!rows_aligned16(p.k, p.k_stride, p.batch, p.heads_kv, p.seq_k)) return false;
  if (!rows_aligned16(p.v, p.v_stride, p.batch, p.heads_kv, p.seq_k)) return false;
  // grid.x = heads * batch; the varlen block numbering must stay within int.
  if (int64_t(p.heads_q) * p.batch > 0x7fffffff) return false;
  if (int64_t(p.seq_q) + p.num_segments + 1 > 0x7fffffff) return false;
  return smem_bytes_for(p.head_dim) <= shared_optin(dev);
}

cudaError_t launch_fused_attention_sm80(const FusedAttentionProblem& p, const DeviceTraits& dev, cudaStream_t stream) {
  if (!fused_attention_sm80_supports(p, dev)) return cudaErrorNotSupported;
  return p.dtype == kF16 ? launch_for_head_dim<Fp16>(p, stream) : launch_for_head_dim<Bf16>(p, stream);
}

}  // namespace cuda
}  // namespace attnkit
