// The tensor-core linear-attention kernel: float16 / bfloat16, causal, Dk 64 or 128, Dv a multiple
// of 64, identity / relu / elu1, no normalize; no decay, a decay, per-step log gates or per-dimension
// log gates (GLA). One pass over the sequence (flash-linear-attention's chunk_simple_gla and
// chunk_gla run the same math as several kernels that write every chunk's state to memory).
//
// One CTA of 4 warps per (b, h, 64 value columns) walks the chunks of 64 rows in order and carries
// the Dk x 64 state S in registers (float32), split by key rows over the warps. Per chunk, with G
// the chunk's cumulative log gates (<= 0, per row or per row and key dimension):
//   scores  A = (Q K^T) ⊙ exp(G_i - G_j), j <= i        warp w: rows [16w, 16w + 16)
//   output  O = scale (Q ⊙ exp(G_i)) S + scale A V      same rows; S read from shared memory
//   state   S = exp(G_last) ⊙ S + (K ⊙ exp(G_last - G_j))^T V    warp w: key rows of S
// All products are mma.sync m16n8k16 with float32 accumulators; the state is rounded to the input
// type only as the B operand of Q S (as flash-linear-attention does with its chunk states). Every
// exponent is a difference that is <= 0 (never exp of a positive number): log gates of -20 per
// step stay finite over any length.
//
// GLA: exp(G_i - G_j) depends on the key dimension, so A is not one matmul. Rows of warp w against
// the earlier rows (j < 16w) are one: (Q_i ⊙ exp(G_i - G_r)) (K_j ⊙ exp(G_r - G_j))^T with the
// reference r = 16w - 1, so both factors are <= 1 (flash-linear-attention's sub-chunks, 16 rows
// too). The 16 x 16 diagonal blocks are sums pair by pair with exp(G_i - G_j) per dimension: no
// reference row keeps both factors <= 1 there. They are computed ahead, by gla_diag_kernel, over
// the whole GPU at once (16 x 16 x Dk exponentials per 16 rows, far too many for the one CTA per
// SM that walks a head's chunks: inside it they took 5x the time of everything else), into a
// [B * H][rows][16] float32 scratch that the main kernel fetches with each chunk.
//
// The next chunk's q, k, v (and GLA gates) are fetched with cp.async into a second buffer while
// the current one is computed. Tiles are row-major in shared memory with their 16-byte pieces
// XOR-swizzled by row, so ldmatrix reads 8 rows at one column without bank conflicts.
#include <cstdint>

#include "../fused/attention_problem.cuh"
#include "linear_attention.h"

namespace attnkit {
namespace cuda {
namespace {

constexpr int kC = 64;        // rows per chunk
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;

// exp(x) for x <= 0 (ex2.approx: 2 ulp, flushes below 2^-126, which is 0 beside the terms it
// meets here).
__device__ __forceinline__ float exp_neg(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x * kLog2e));
  return y;
}

// ---- shared-memory tiles ------------------------------------------------------------------------

// Element offset of (row, col) in a [rows][COLS] 16-bit tile whose 16-byte pieces are swizzled:
// the 8 rows an ldmatrix reads at one column land in 8 different bank groups (rows of 128 bytes
// or more: piece ^ row % 8; rows of 64 bytes, two to a bank line: piece ^ (row / 2) % 4).
template <int COLS>
__device__ __forceinline__ int swz(int row, int col) {
  constexpr int kPieces = COLS / 8;
  const int x = kPieces >= 8 ? (row & 7) : ((row >> 1) & (kPieces - 1));
  return row * COLS + (((col >> 3) ^ x) << 3) + (col & 7);
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::); }

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

template <bool BF16>
__device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  if (BF16)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The two 16-bit values of a fragment register as floats, and back.
template <bool BF16>
__device__ __forceinline__ float2 unpack(uint32_t r) {
  if (BF16) return make_float2(__uint_as_float(r << 16), __uint_as_float(r & 0xffff0000u));
  float lo, hi;
  asm("{ .reg .f16 a, b; mov.b32 {a, b}, %2; cvt.f32.f16 %0, a; cvt.f32.f16 %1, b; }" : "=f"(lo), "=f"(hi) : "r"(r));
  return make_float2(lo, hi);
}
template <bool BF16>
__device__ __forceinline__ uint32_t scaled(uint32_t r, float f_lo, float f_hi) {
  const float2 x = unpack<BF16>(r);
  return pack_16bit_pair<BF16>(x.x * f_lo, x.y * f_hi);
}

// phi on a 16-bit tile in place (identity needs no pass).
template <bool BF16>
__device__ void feature_map_tile(uint32_t* tile, int words, int map) {
  for (int e = threadIdx.x; e < words; e += kThreads) {
    const float2 x = unpack<BF16>(tile[e]);
    float a = x.x, b = x.y;
    if (map == kMapRelu) {
      a = fmaxf(a, 0.0f);
      b = fmaxf(b, 0.0f);
    } else {
      a = fmaxf(a, 0.0f) + __expf(fminf(a, 0.0f));
      b = fmaxf(b, 0.0f) + __expf(fminf(b, 0.0f));
    }
    tile[e] = pack_16bit_pair<BF16>(a, b);
  }
}

// GLA's cumulative gates [row][DK + kGPad] floats: a row stride of 8 floats past a multiple of 32
// banks, so the fragment pattern (8 rows x 4 column pairs) reads them in 2 wavefronts, not 8 (the
// unpadded stride cost GLA more than all of its exponentials).
constexpr int kGPad = 8;

// Shared memory, in bytes: two buffers of q, k, v; the state tile; the per-row cumulative gates;
// GLA's two buffers of diagonal blocks, cumulative gates [row][d] and two buffers of raw gates.
template <int DK, int GATE, int BV>
struct Layout {
  static constexpr size_t q = 0;
  static constexpr size_t k = q + 2 * kC * DK * 2;
  static constexpr size_t v = k + 2 * kC * DK * 2;
  static constexpr size_t s = v + 2 * kC * BV * 2;
  static constexpr size_t gs = s + DK * BV * 2;
  static constexpr size_t diag = gs + kC * 8;  // GLA: two buffers of the chunk's diagonal blocks [64][16]
  static constexpr size_t g = diag + (GATE == kGatePerDim ? 2 * kC * 16 * 4 : 0);
  static constexpr size_t graw = g + (GATE == kGatePerDim ? kC * (DK + kGPad) * 4 : 0);
  static constexpr size_t total = graw + (GATE == kGatePerDim ? 2 * kC * DK * 4 : 0);
};

struct Where {
  int64_t b, h, c0;
};

// Rows per head of the GLA diagonal scratch: whole chunks.
__host__ __device__ __forceinline__ int64_t gla_rows(const LinearProblem& p) { return (p.seq + kC - 1) / kC * kC; }

// cp.async of rows [t0, t0 + 64) of q, k and v (this CTA's columns) into buffer `buf`; rows past
// the end are zero-filled. GLA: the raw gates too.
template <int DK, int GATE, int BV>
__device__ void issue_chunk(const LinearProblem& p, const Where& w, unsigned char* smem, int buf, int64_t t0) {
  using L = Layout<DK, GATE, BV>;
  uint16_t* q = reinterpret_cast<uint16_t*>(smem + L::q) + buf * kC * DK;
  uint16_t* k = reinterpret_cast<uint16_t*>(smem + L::k) + buf * kC * DK;
  uint16_t* v = reinterpret_cast<uint16_t*>(smem + L::v) + buf * kC * BV;
  const uint16_t* gq = static_cast<const uint16_t*>(p.q.data) + w.b * p.q.stride[0] + w.h * p.q.stride[1];
  const uint16_t* gk = static_cast<const uint16_t*>(p.k.data) + w.b * p.k.stride[0] + w.h * p.k.stride[1];
  const uint16_t* gv = static_cast<const uint16_t*>(p.v.data) + w.b * p.v.stride[0] + w.h * p.v.stride[1] + w.c0;
  constexpr int kPieces = DK / 8;  // 16-byte pieces per row
  for (int e = threadIdx.x; e < kC * kPieces; e += kThreads) {
    const int r = e / kPieces, c = (e % kPieces) * 8;
    const bool in = t0 + r < p.seq;
    const int64_t t = in ? t0 + r : 0;
    cp_async16(q + swz<DK>(r, c), gq + t * p.q.stride[2] + c, in);
    cp_async16(k + swz<DK>(r, c), gk + t * p.k.stride[2] + c, in);
  }
  for (int e = threadIdx.x; e < kC * (BV / 8); e += kThreads) {
    const int r = e / (BV / 8), c = (e % (BV / 8)) * 8;
    const bool in = t0 + r < p.seq;
    cp_async16(v + swz<BV>(r, c), gv + (in ? t0 + r : 0) * p.v.stride[2] + c, in);
  }
  if (GATE == kGatePerDim) {
    const int es = p.gates.dtype == kF32 ? 4 : 2;
    const int pieces = DK * es / 16;
    unsigned char* dst = smem + L::graw + buf * kC * DK * 4;
    const unsigned char* src = static_cast<const unsigned char*>(p.gates.data) +
                               (w.b * p.gates.stride[0] + w.h * p.gates.stride[1]) * es;
    for (int e = threadIdx.x; e < kC * pieces; e += kThreads) {
      const int r = e / pieces, c = e % pieces;
      const bool in = t0 + r < p.seq;
      cp_async16(dst + (r * pieces + c) * 16, src + ((in ? t0 + r : 0) * p.gates.stride[2]) * es + c * 16, in);
    }
    // The chunk's diagonal blocks: gla_diag_kernel wrote every row of every chunk.
    float* dg = reinterpret_cast<float*>(smem + L::diag) + buf * kC * 16;
    const float* sd = p.gla_diag + ((w.b * p.heads + w.h) * gla_rows(p) + t0) * 16;
    for (int e = threadIdx.x; e < kC * 4; e += kThreads) cp_async16(dg + e * 4, sd + e * 4, true);
  }
  cp_async_commit();
}

// A raw log gate as the recurrence takes it: clamped at the floor; > 0 or NaN reported, counted as 0.
__device__ __forceinline__ float clean_gate(const LinearProblem& p, float x) {
  if (!(x <= 0.0f)) {
    if (p.bad_gates) *p.bad_gates = 1;
    return 0.0f;
  }
  return x > float(kLinearLogGateFloor) ? x : float(kLinearLogGateFloor);
}

// Per-step gates / decay: warp 0 turns the chunk's gates (prefetched into registers, two rows a
// lane) into cumulative sums in double. Rows past the end repeat the last sum (their keys are 0).
template <int GATE>
__device__ void scan_scalar_gates(const LinearProblem& p, double* gs, double log_decay, float g0, float g1, int n) {
  if (threadIdx.x >= 32) return;
  const int lane = threadIdx.x;
  double a, b;
  if (GATE == kGateDecay) {
    a = 2 * lane < n ? log_decay : 0.0;
    b = 2 * lane + 1 < n ? log_decay : 0.0;
  } else {
    a = 2 * lane < n ? double(clean_gate(p, g0)) : 0.0;
    b = 2 * lane + 1 < n ? double(clean_gate(p, g1)) : 0.0;
  }
  double sum = a + b;
  for (int o = 1; o < 32; o <<= 1) {
    const double up = __shfl_up_sync(0xffffffffu, sum, o);
    if (lane >= o) sum += up;
  }
  gs[2 * lane + 1] = sum;
  gs[2 * lane] = sum - b;
}

// GLA: G[row][d], G[row][d + 1] (d even) in one 8-byte load.
template <int DK>
__device__ __forceinline__ float2 gate_pair(const float* gd, int row, int d) {
  return *reinterpret_cast<const float2*>(gd + row * (DK + kGPad) + d);
}

// GLA: G[i][d] = cumulative gates from the raw tile (threads over d; float, exponents stay <= 0).
template <int DK>
__device__ void scan_dim_gates(const LinearProblem& p, float* g, const unsigned char* raw, int n) {
  const int es = p.gates.dtype == kF32 ? 4 : 2;
  for (int d = threadIdx.x; d < DK; d += kThreads) {
    float acc = 0.0f;
#pragma unroll 8
    for (int i = 0; i < kC; ++i) {
      float x = 0.0f;
      if (i < n) x = clean_gate(p, load_element(raw + size_t(i) * DK * es, p.gates.dtype, d));
      acc += x;
      g[i * (DK + kGPad) + d] = acc;
    }
  }
}

template <int DK, bool BF16, int GATE, int BV>
__global__ void __launch_bounds__(kThreads, 2) linear_tc_kernel(const LinearProblem p) {
  extern __shared__ __align__(128) unsigned char smem[];
  using L = Layout<DK, GATE, BV>;
  constexpr int KS = DK / 16;   // k-steps over the key dimension
  constexpr int MT = DK / 64;   // m-tiles of 16 key rows of S per warp
  constexpr int NT = BV / 8;    // n-tiles of 8 value columns
  constexpr int NP = BV / 16;   // pairs of them (one ldmatrix.x4 each)
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int gr = lane / 4, tq = lane % 4;  // fragment row group and thread-in-group

  const int64_t slices = p.dv / BV;
  const int64_t bh = blockIdx.x / slices;
  const Where w{bh / p.heads, bh % p.heads, (blockIdx.x % slices) * BV};
  uint16_t* s_tile = reinterpret_cast<uint16_t*>(smem + L::s);
  double* gs = reinterpret_cast<double*>(smem + L::gs);
  float* gd = reinterpret_cast<float*>(smem + L::g);
  const double log_decay = p.log_decay_per_head ? p.log_decay_per_head[w.h] : p.log_decay;

  // The state: warp w holds key rows [w * DK / 4, (w + 1) * DK / 4) x 64 columns as MT x 8 C fragments.
  const int d0 = warp * (DK / kWarps);
  float st[MT][NT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int d = d0 + mt * 16 + gr + (r >= 2 ? 8 : 0), c = nt * 8 + 2 * tq + (r & 1);
        const int64_t* s = p.state_in_stride;
        st[mt][nt][r] = p.state_in ? p.state_in[w.b * s[0] + w.h * s[1] + d * s[2] + (w.c0 + c) * s[3]] : 0.0f;
      }
  bool state_zero = p.state_in == nullptr;
  // Writes st to the shared B-operand tile (rounded to the input type).
  auto publish_state = [&]() {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int d = d0 + mt * 16 + gr + half * 8, c = nt * 8 + 2 * tq;
          *reinterpret_cast<uint32_t*>(s_tile + swz<BV>(d, c)) =
              pack_16bit_pair<BF16>(st[mt][nt][2 * half], st[mt][nt][2 * half + 1]);
        }
  };
  if (!state_zero) publish_state();

  // Output: 16-bit pairs stored as one word when out is q's type with unit, even strides.
  const bool out_pairs = p.out.dtype == p.q.dtype && p.out.stride[3] == 1 && p.out.stride[2] % 2 == 0 &&
                         p.out.stride[1] % 2 == 0 && p.out.stride[0] % 2 == 0 &&
                         (reinterpret_cast<uintptr_t>(p.out.data) & 3) == 0;

  // Per-step gates arrive two rows a lane of warp 0, one chunk ahead.
  float gnext0 = 0.0f, gnext1 = 0.0f;
  auto fetch_gates = [&](int64_t t0) {
    if (GATE != kGateScalar || warp != 0) return;
    const int64_t base = w.b * p.gates.stride[0] + w.h * p.gates.stride[1];
    const int64_t t = t0 + 2 * lane;
    gnext0 = t < p.seq ? load_element(p.gates.data, p.gates.dtype, base + t * p.gates.stride[2]) : 0.0f;
    gnext1 = t + 1 < p.seq ? load_element(p.gates.data, p.gates.dtype, base + (t + 1) * p.gates.stride[2]) : 0.0f;
  };

  issue_chunk<DK, GATE, BV>(p, w, smem, 0, 0);
  fetch_gates(0);
  const int64_t chunks = (p.seq + kC - 1) / kC;
  for (int64_t ci = 0; ci < chunks; ++ci) {
    const int64_t t0 = ci * kC;
    const int n = int(p.seq - t0 < kC ? p.seq - t0 : kC);
    const int buf = int(ci & 1);
    uint16_t* qt = reinterpret_cast<uint16_t*>(smem + L::q) + buf * kC * DK;
    uint16_t* kt = reinterpret_cast<uint16_t*>(smem + L::k) + buf * kC * DK;
    uint16_t* vt = reinterpret_cast<uint16_t*>(smem + L::v) + buf * kC * BV;
    const float g0 = gnext0, g1 = gnext1;

    cp_async_wait_all();
    __syncthreads();  // chunk ci landed; every warp is done with chunk ci - 1 (and its buffer)
    if (ci + 1 < chunks) {
      issue_chunk<DK, GATE, BV>(p, w, smem, buf ^ 1, t0 + kC);
      fetch_gates(t0 + kC);
    }
    if (p.feature_map != kMapIdentity) {
      feature_map_tile<BF16>(reinterpret_cast<uint32_t*>(qt), kC * DK / 2, p.feature_map);
      feature_map_tile<BF16>(reinterpret_cast<uint32_t*>(kt), kC * DK / 2, p.feature_map);
    }
    if (GATE == kGateDecay || GATE == kGateScalar) scan_scalar_gates<GATE>(p, gs, log_decay, g0, g1, n);
    if (GATE == kGatePerDim) scan_dim_gates<DK>(p, gd, smem + L::graw + buf * kC * DK * 4, n);
    __syncthreads();

    // ---- scores: warp w, rows [i0, i0 + 16) against keys [0, i0 + 16) ----
    const int i0 = warp * 16;
    const int ntiles = 2 * (warp + 1);
    float sc[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) sc[nt][r] = 0.0f;
    const int ra = i0 + (lane & 15), ca = (lane >> 4) * 8;                       // A (row-major) lane address
    const int rb = (lane & 7) + ((lane >> 4) << 3), cb = ((lane >> 3) & 1) * 8;  // B from [n][k] rows
    // GLA reference row of this warp's off-diagonal block (warp 0 has none).
    const int ref = i0 - 1;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      uint32_t a[4];
      ldsm_x4(a, qt + swz<DK>(ra, ks * 16 + ca));
      if (GATE == kGatePerDim && warp > 0) {
        // q_i ⊙ exp(G_i - G_ref): elements (row gr | gr + 8, dims 2tq, 2tq + 1 | + 8)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int i = i0 + gr + (r & 1) * 8, d = ks * 16 + 2 * tq + (r >> 1) * 8;
          const float2 gi = gate_pair<DK>(gd, i, d), gf = gate_pair<DK>(gd, ref, d);
          a[r] = scaled<BF16>(a[r], exp_neg(gi.x - gf.x), exp_neg(gi.y - gf.y));
        }
      }
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        if (GATE == kGatePerDim ? 2 * np >= ntiles - 2 : 2 * np >= ntiles) break;
        uint32_t b[4];
        ldsm_x4(b, kt + swz<DK>(np * 16 + rb, ks * 16 + cb));
        if (GATE == kGatePerDim) {
          // k_j ⊙ exp(G_ref - G_j): b0/b2 hold dims 2tq, 2tq + 1 of keys np*16 + gr (+ 8); b1/b3 dims + 8
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const int j = np * 16 + gr + (r >> 1) * 8, d = ks * 16 + 2 * tq + (r & 1) * 8;
            const float2 gf = gate_pair<DK>(gd, ref, d), gj = gate_pair<DK>(gd, j, d);
            b[r] = scaled<BF16>(b[r], exp_neg(gf.x - gj.x), exp_neg(gf.y - gj.y));
          }
        }
        mma<BF16>(sc[2 * np], a, b[0], b[1]);
        mma<BF16>(sc[2 * np + 1], a, b[2], b[3]);
      }
    }
    if (GATE == kGatePerDim) {
      // The diagonal block, from gla_diag_kernel's scratch (fetched with the chunk).
      const float* dg = reinterpret_cast<const float*>(smem + L::diag) + buf * kC * 16;
#pragma unroll
      for (int half = 0; half < 2; ++half)
#pragma unroll
        for (int r = 0; r < 4; ++r) sc[ntiles - 2 + half][r] = dg[(i0 + gr + (r >> 1) * 8) * 16 + half * 8 + 2 * tq + (r & 1)];
    }
    // Causal mask, the decay between the rows (per-step gates), and scale.
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      if (nt >= ntiles) break;
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int i = i0 + gr + (r >> 1) * 8, j = nt * 8 + 2 * tq + (r & 1);
        float x = 0.0f;
        if (j <= i) {
          x = sc[nt][r] * p.scale;
          if (GATE == kGateDecay || GATE == kGateScalar) x *= exp_neg(float(gs[i] - gs[j]));
        }
        sc[nt][r] = x;
      }
    }

    // ---- output: O = scale (Q ⊙ exp(G_i)) S + A V ----
    float o[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) o[nt][r] = 0.0f;
    const int rv = (lane & 7) + (((lane >> 3) & 1) << 3), cv = (lane >> 4) * 8;  // B from [k][n] rows (trans)
    if (!state_zero) {
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) {
        uint32_t a[4];
        ldsm_x4(a, qt + swz<DK>(ra, ks * 16 + ca));
        if (GATE == kGatePerDim) {
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const int i = i0 + gr + (r & 1) * 8, d = ks * 16 + 2 * tq + (r >> 1) * 8;
            const float2 gi = gate_pair<DK>(gd, i, d);
            a[r] = scaled<BF16>(a[r], exp_neg(gi.x), exp_neg(gi.y));
          }
        }
#pragma unroll
        for (int np = 0; np < NP; ++np) {
          uint32_t b[4];
          ldsm_x4_t(b, s_tile + swz<BV>(ks * 16 + rv, np * 16 + cv));
          mma<BF16>(o[2 * np], a, b[0], b[1]);
          mma<BF16>(o[2 * np + 1], a, b[2], b[3]);
        }
      }
      // Row factors: scale, and exp(G_i) for a decay / per-step gates.
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        float f = p.scale;
        if (GATE == kGateDecay || GATE == kGateScalar) f *= exp_neg(float(gs[i0 + gr + half * 8]));
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          o[nt][2 * half] *= f;
          o[nt][2 * half + 1] *= f;
        }
      }
    }
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      if (kk > warp) break;
      uint32_t a[4] = {pack_16bit_pair<BF16>(sc[2 * kk][0], sc[2 * kk][1]), pack_16bit_pair<BF16>(sc[2 * kk][2], sc[2 * kk][3]),
                       pack_16bit_pair<BF16>(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                       pack_16bit_pair<BF16>(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
#pragma unroll
      for (int np = 0; np < NP; ++np) {
        uint32_t b[4];
        ldsm_x4_t(b, vt + swz<BV>(kk * 16 + rv, np * 16 + cv));
        mma<BF16>(o[2 * np], a, b[0], b[1]);
        mma<BF16>(o[2 * np + 1], a, b[2], b[3]);
      }
    }
    // Store rows < n.
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int i = i0 + gr + half * 8;
      if (i >= n) continue;
      const int64_t row = w.b * p.out.stride[0] + w.h * p.out.stride[1] + (t0 + i) * p.out.stride[2];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const int64_t c = w.c0 + nt * 8 + 2 * tq;
        if (out_pairs) {
          *reinterpret_cast<uint32_t*>(static_cast<uint16_t*>(const_cast<void*>(p.out.data)) + row + c) =
              pack_16bit_pair<BF16>(o[nt][2 * half], o[nt][2 * half + 1]);
        } else {
          store_element(const_cast<void*>(p.out.data), p.out.dtype, row + c * p.out.stride[3], o[nt][2 * half]);
          store_element(const_cast<void*>(p.out.data), p.out.dtype, row + (c + 1) * p.out.stride[3], o[nt][2 * half + 1]);
        }
      }
    }

    // ---- state: S = exp(G_last) ⊙ S + (K ⊙ exp(G_last - G_j))^T V ----
    if (GATE != kGateNone) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int d = d0 + mt * 16 + gr + half * 8;
          const float f = GATE == kGatePerDim ? exp_neg(gd[(n - 1) * (DK + kGPad) + d]) : exp_neg(float(gs[n - 1]));
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            st[mt][nt][2 * half] *= f;
            st[mt][nt][2 * half + 1] *= f;
          }
        }
    }
    const int rk = (lane & 7) + ((lane >> 4) << 3), ck = ((lane >> 3) & 1) * 8;  // A = K^T from [k][m] rows (trans)
#pragma unroll
    for (int ks = 0; ks < kC / 16; ++ks) {
      uint32_t vb[NP][4];
#pragma unroll
      for (int np = 0; np < NP; ++np) ldsm_x4_t(vb[np], vt + swz<BV>(ks * 16 + rv, np * 16 + cv));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        uint32_t a[4];
        ldsm_x4_t(a, kt + swz<DK>(ks * 16 + rk, d0 + mt * 16 + ck));
        if (GATE != kGateNone) {
          // element (d = row gr | gr + 8, j = 2tq, 2tq + 1 | + 8): exp(G_last - G_j)
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const int d = d0 + mt * 16 + gr + (r & 1) * 8, j = ks * 16 + 2 * tq + (r >> 1) * 8;
            float f0, f1;
            if (GATE == kGatePerDim) {
              const float last = gd[(n - 1) * (DK + kGPad) + d];
              f0 = exp_neg(last - gd[j * (DK + kGPad) + d]);
              f1 = exp_neg(last - gd[(j + 1) * (DK + kGPad) + d]);
            } else {
              f0 = exp_neg(float(gs[n - 1] - gs[j]));
              f1 = exp_neg(float(gs[n - 1] - gs[j + 1]));
            }
            a[r] = scaled<BF16>(a[r], f0, f1);
          }
        }
#pragma unroll
        for (int np = 0; np < NP; ++np) {
          mma<BF16>(st[mt][2 * np], a, vb[np][0], vb[np][1]);
          mma<BF16>(st[mt][2 * np + 1], a, vb[np][2], vb[np][3]);
        }
      }
    }
    state_zero = false;
    __syncthreads();  // every warp has read the old state tile
    publish_state();
  }

  if (p.state_out) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int d = d0 + mt * 16 + gr + (r >= 2 ? 8 : 0), c = nt * 8 + 2 * tq + (r & 1);
          const int64_t* s = p.state_out_stride;
          p.state_out[w.b * s[0] + w.h * s[1] + d * s[2] + (w.c0 + c) * s[3]] = st[mt][nt][r];
        }
  }
}

// GLA's diagonal blocks: for every 16 rows of a head, A_ij = sum_d phi(q_id) phi(k_jd) exp(G_id -
// G_jd), j <= i inside the 16 (0 above), with G the cumulative gates from the block's first row
// (the differences are the same from any origin). One CTA of 8 warps per block: the 136 pairs
// split over the warps, the key dims over the lanes.
constexpr int kDiagThreads = 256;

template <int DK>
__global__ void __launch_bounds__(kDiagThreads) gla_diag_kernel(const LinearProblem p) {
  __shared__ float q[16][DK], k[16][DK], g[16][DK];
  const int64_t blocks = gla_rows(p) / 16;
  const int64_t bh = blockIdx.x / blocks, t0 = (blockIdx.x % blocks) * 16;
  const int64_t b = bh / p.heads, h = bh % p.heads;
  for (int e = threadIdx.x; e < 16 * DK; e += kDiagThreads) {
    const int r = e / DK, d = e % DK;
    const int64_t t = t0 + r;
    const bool in = t < p.seq;
    const int64_t gi = b * p.gates.stride[0] + h * p.gates.stride[1] + t * p.gates.stride[2] + d * p.gates.stride[3];
    q[r][d] = in ? linear_feature(p.feature_map, load_element(p.q.data, p.q.dtype, b * p.q.stride[0] + h * p.q.stride[1] + t * p.q.stride[2] + d)) : 0.0f;
    k[r][d] = in ? linear_feature(p.feature_map, load_element(p.k.data, p.k.dtype, b * p.k.stride[0] + h * p.k.stride[1] + t * p.k.stride[2] + d)) : 0.0f;
    g[r][d] = in ? clean_gate(p, load_element(p.gates.data, p.gates.dtype, gi)) : 0.0f;
  }
  __syncthreads();
  if (threadIdx.x < DK) {
    float acc = 0.0f;
    for (int r = 0; r < 16; ++r) {
      acc += g[r][threadIdx.x];
      g[r][threadIdx.x] = acc;
    }
  }
  __syncthreads();
  float* out = p.gla_diag + (bh * gla_rows(p) + t0) * 16;
  for (int e = threadIdx.x; e < 256; e += kDiagThreads)
    if ((e % 16) > (e / 16)) out[e] = 0.0f;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int pair = warp; pair < 136; pair += kDiagThreads / 32) {
    int i = 0, j = pair;
    while (j > i) {  // pair -> (i, j <= i), row by row
      j -= i + 1;
      ++i;
    }
    float acc = 0.0f;
#pragma unroll 4
    for (int d = lane; d < DK; d += 32) acc += q[i][d] * k[j][d] * exp_neg(g[i][d] - g[j][d]);
    for (int o = 16; o; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) out[i * 16 + j] = acc;
  }
}

bool aligned16(const LinearTensor& t, int esize) {
  if (t.stride[3] != 1 || (reinterpret_cast<uintptr_t>(t.data) & 15) != 0) return false;
  for (int i = 0; i < 3; ++i)
    if ((t.stride[i] * esize) % 16 != 0) return false;
  return true;
}

template <int DK, bool BF16, int GATE, int BV>
cudaError_t launch_variant(const LinearProblem& p, cudaStream_t stream) {
  if (GATE == kGatePerDim) {
    const int64_t diag_blocks = p.batch * p.heads * (gla_rows(p) / 16);
    if (p.gla_diag == nullptr || diag_blocks > int64_t(0x7fffffff)) return cudaErrorInvalidValue;
    gla_diag_kernel<DK><<<unsigned(diag_blocks), kDiagThreads, 0, stream>>>(p);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  const size_t bytes = Layout<DK, GATE, BV>::total;
  cudaError_t e = cudaFuncSetAttribute(linear_tc_kernel<DK, BF16, GATE, BV>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (e != cudaSuccess) return e;
  const int64_t blocks = p.batch * p.heads * (p.dv / BV);
  linear_tc_kernel<DK, BF16, GATE, BV><<<unsigned(blocks), kThreads, bytes, stream>>>(p);
  return cudaGetLastError();
}

template <int DK, bool BF16, int BV>
cudaError_t launch_gate(const LinearProblem& p, cudaStream_t stream) {
  switch (p.gate_kind) {
    case kGateDecay: return launch_variant<DK, BF16, kGateDecay, BV>(p, stream);
    case kGateScalar: return launch_variant<DK, BF16, kGateScalar, BV>(p, stream);
    case kGatePerDim: return launch_variant<DK, BF16, kGatePerDim, BV>(p, stream);
    default: return launch_variant<DK, BF16, kGateNone, BV>(p, stream);
  }
}

template <int DK, bool BF16>
cudaError_t launch_width(const LinearProblem& p, int multiprocessors, cudaStream_t stream) {
  // 64 value columns per CTA. 32 (twice the CTAs, Q K^T computed twice as often) measured no
  // faster at B4 H16 S8192 D128 bf16 on an H100, scalar gates (0.654 vs 0.638 ms), and GLA's
  // buffers leave room for one CTA per SM at either width.
  (void)multiprocessors;
  return launch_gate<DK, BF16, 64>(p, stream);
}

}  // namespace

bool linear_attention_tc_supports(const LinearProblem& p, int cc_major) {
  if (cc_major < 8 || !p.causal || p.normalize || p.feature_map == kMapEfficient) return false;
  if (p.q.dtype != kF16 && p.q.dtype != kBF16) return false;
  if ((p.dk != 64 && p.dk != 128) || p.dv % 64 != 0 || p.seq == 0) return false;
  if (p.batch * p.heads * (p.dv / 32) > int64_t(0x7fffffff)) return false;
  if (!aligned16(p.q, 2) || !aligned16(p.k, 2) || !aligned16(p.v, 2)) return false;
  if (p.gate_kind == kGatePerDim && !aligned16(p.gates, p.gates.dtype == kF32 ? 4 : 2)) return false;
  return true;
}

size_t linear_attention_tc_scratch_bytes(const LinearProblem& p) {
  return p.gate_kind == kGatePerDim ? size_t(p.batch * p.heads * gla_rows(p) * 16) * sizeof(float) : 0;
}

cudaError_t launch_linear_attention_tc(const LinearProblem& p, int multiprocessors, cudaStream_t stream) {
  const bool bf16 = p.q.dtype == kBF16;
  if (p.dk == 64) return bf16 ? launch_width<64, true>(p, multiprocessors, stream) : launch_width<64, false>(p, multiprocessors, stream);
  return bf16 ? launch_width<128, true>(p, multiprocessors, stream) : launch_width<128, false>(p, multiprocessors, stream);
}

}  // namespace cuda
}  // namespace attnkit
