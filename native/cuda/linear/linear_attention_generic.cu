// The generic linear-attention kernel: every problem linear_attention.h describes, in float32 on
// the CUDA cores. It follows the CPU kernel (native/cpu/linear/linear_attention_kernel.h) step by
// step, so the two agree to float32 rounding:
//   per chunk of n rows, G_i the chunk's cumulative log gates (double, clamped at -1000),
//   A  = (Q K^T) ⊙ exp(G_i - G_j) over j <= i      (per key dimension for GLA: inside the sum)
//   O  = (Q ⊙ exp(G_i)) S + A V
//   S  = exp(G_last) ⊙ S + (K ⊙ exp(G_last - G_j))^T V
// Every exponent is a difference of doubles that is <= 0, rounded to float only then: nothing
// overflows, and a small gate beside a huge one keeps its digits.
//
// One CTA per (b, h, block of kCols value columns); with normalize, z rides along as one more
// column of S (and V gets a column of ones), as on the CPU. Everything of a chunk sits in shared
// memory; threads stride over the elements of each step, steps separated by __syncthreads.
#include <cfloat>

#include "../fused/attention_problem.cuh"
#include "linear_attention.h"

namespace attnkit {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kCols = 32;           // value columns per CTA
constexpr int kLds = kCols + 1;     // row stride of S, V, O: the columns and z

// Shared-memory layout for chunk C and key dim Dk (bytes; doubles first for alignment).
struct GenericLayout {
  int C;
  size_t g, s, q, k, v, o, a, em, el, total;
};

__host__ __device__ inline GenericLayout generic_layout(int C, int64_t dk, bool per_dim) {
  GenericLayout L;
  L.C = C;
  size_t at = 0;
  auto take = [&](size_t bytes) { const size_t here = at; at += (bytes + 15) / 16 * 16; return here; };
  L.g = take(sizeof(double) * size_t(C) * size_t(per_dim ? dk : 1));
  L.s = take(sizeof(float) * size_t(dk) * kLds);
  L.q = take(sizeof(float) * size_t(C) * size_t(dk));
  L.k = take(sizeof(float) * size_t(C) * size_t(dk));
  L.v = take(sizeof(float) * size_t(C) * kLds);
  L.o = take(sizeof(float) * size_t(C) * kLds);
  L.a = take(sizeof(float) * size_t(C) * size_t(C));
  L.em = take(sizeof(float) * size_t(dk));
  L.el = take(sizeof(float) * size_t(dk));
  L.total = at;
  return L;
}

__device__ __forceinline__ int64_t at4(const LinearTensor& t, int64_t b, int64_t h, int64_t s, int64_t d) {
  return b * t.stride[0] + h * t.stride[1] + s * t.stride[2] + d * t.stride[3];
}

// One log gate as the recurrence uses it: clamped at the floor; > 0 or NaN is reported and counts as 0.
__device__ __forceinline__ double gate_value(const LinearProblem& p, int64_t index) {
  const float x = load_element(p.gates.data, p.gates.dtype, index);
  if (!(x <= 0.0f)) {
    if (p.bad_gates) *p.bad_gates = 1;
    return 0.0;
  }
  const double d = double(x);
  return d > kLinearLogGateFloor ? d : kLinearLogGateFloor;
}

struct Ctx {
  const LinearProblem& p;
  GenericLayout L;
  int64_t b, h, c0;
  int nv, nc, C;
  double* G;
  float *S, *Q, *K, *V, *O, *A, *em, *el;
  double log_decay;
};

// Rows [t0, t0 + n) of q: Q = scale * phi(q). 'efficient': a softmax over the features (a warp per row).
__device__ void load_q(Ctx& c, int64_t t0, int n) {
  const LinearProblem& p = c.p;
  const int Dk = int(p.dk);
  for (int e = threadIdx.x; e < n * Dk; e += blockDim.x) {
    const int i = e / Dk, d = e % Dk;
    const float x = load_element(p.q.data, p.q.dtype, at4(p.q, c.b, c.h, t0 + i, d));
    c.Q[i * Dk + d] = p.feature_map == kMapEfficient ? x : linear_feature(p.feature_map, x) * p.scale;
  }
  if (p.feature_map != kMapEfficient) return;
  __syncthreads();
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  for (int i = warp; i < n; i += warps) {
    float* row = c.Q + i * Dk;
    float m = -FLT_MAX;
    for (int d = lane; d < Dk; d += 32) m = fmaxf(m, row[d]);
    for (int o = 16; o; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float sum = 0.0f;
    for (int d = lane; d < Dk; d += 32) {
      const float e = expf(row[d] - m);
      row[d] = e;
      sum += e;
    }
    for (int o = 16; o; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float f = p.scale / sum;
    for (int d = lane; d < Dk; d += 32) row[d] *= f;
  }
}

// Rows [t0, t0 + n) of k: phi(k); 'efficient': exp(k - em) * el per dimension (sequence softmax).
__device__ void load_k(Ctx& c, int64_t t0, int n) {
  const LinearProblem& p = c.p;
  const int Dk = int(p.dk);
  for (int e = threadIdx.x; e < n * Dk; e += blockDim.x) {
    const int j = e / Dk, d = e % Dk;
    const float x = load_element(p.k.data, p.k.dtype, at4(p.k, c.b, c.h, t0 + j, d));
    c.K[j * Dk + d] = p.feature_map == kMapEfficient ? expf(x - c.em[d]) * c.el[d] : linear_feature(p.feature_map, x);
  }
}

// Rows [t0, t0 + n) of v, this CTA's columns, then the column of ones (normalize).
__device__ void load_v(Ctx& c, int64_t t0, int n) {
  const LinearProblem& p = c.p;
  for (int e = threadIdx.x; e < n * c.nc; e += blockDim.x) {
    const int j = e / c.nc, col = e % c.nc;
    c.V[j * kLds + col] = col < c.nv ? load_element(p.v.data, p.v.dtype, at4(p.v, c.b, c.h, t0 + j, c.c0 + col)) : 1.0f;
  }
}

// The chunk's cumulative log gates G (double): [n] for a decay or per-step gates, [n][Dk] per dimension.
__device__ void load_gates(Ctx& c, int64_t t0, int n) {
  const LinearProblem& p = c.p;
  const int Dk = int(p.dk);
  if (p.gate_kind == kGatePerDim) {
    for (int d = threadIdx.x; d < Dk; d += blockDim.x) {
      double acc = 0.0;
      for (int i = 0; i < n; ++i) {
        acc += gate_value(p, at4(p.gates, c.b, c.h, t0 + i, d));
        c.G[i * Dk + d] = acc;
      }
    }
  } else if (threadIdx.x == 0) {
    double acc = 0.0;
    for (int i = 0; i < n; ++i) {
      acc += p.gate_kind == kGateDecay ? c.log_decay : gate_value(p, at4(p.gates, c.b, c.h, t0 + i, 0));
      c.G[i] = acc;
    }
  }
}

// G_{i,d} (0 without gates).
__device__ __forceinline__ double gate_at(const Ctx& c, int i, int d) {
  if (c.p.gate_kind == kGateNone) return 0.0;
  return c.p.gate_kind == kGatePerDim ? c.G[i * int(c.p.dk) + d] : c.G[i];
}

// A = (Q K^T) ⊙ exp(G_i - G_j) over j <= i, zeros above.
__device__ void intra_scores(Ctx& c, int n) {
  const LinearProblem& p = c.p;
  const int Dk = int(p.dk);
  const bool per_dim = p.gate_kind == kGatePerDim, gated = p.gate_kind != kGateNone;
  for (int e = threadIdx.x; e < n * n; e += blockDim.x) {
    const int i = e / n, j = e % n;
    float a = 0.0f;
    if (j <= i) {
      const float* qi = c.Q + i * Dk;
      const float* kj = c.K + j * Dk;
      if (per_dim) {
        for (int d = 0; d < Dk; ++d) a += qi[d] * kj[d] * expf(float(c.G[i * Dk + d] - c.G[j * Dk + d]));
      } else {
        for (int d = 0; d < Dk; ++d) a += qi[d] * kj[d];
        if (gated) a *= expf(float(c.G[i] - c.G[j]));
      }
    }
    c.A[i * c.C + j] = a;
  }
}

// In place: Q = Q ⊙ exp(G_i) (what each row keeps of the state before the chunk; with_q) and
// K = K ⊙ exp(G_last - G_j) (what of each key survives to the chunk's end).
__device__ void gate_factors(Ctx& c, int n, bool with_q) {
  const LinearProblem& p = c.p;
  if (p.gate_kind == kGateNone) return;
  const int Dk = int(p.dk);
  for (int e = threadIdx.x; e < n * Dk; e += blockDim.x) {
    const int i = e / Dk, d = e % Dk;
    const double gi = gate_at(c, i, d), last = gate_at(c, n - 1, d);
    if (with_q) c.Q[e] *= expf(float(gi));
    c.K[e] *= expf(float(last - gi));
  }
}

// O[i][col] = Q_i . S[:, col] (+ sum_{j <= i} A_ij V_j[col] when causal).
__device__ void outputs(Ctx& c, int n, bool state_zero, bool causal) {
  const int Dk = int(c.p.dk);
  for (int e = threadIdx.x; e < n * c.nc; e += blockDim.x) {
    const int i = e / c.nc, col = e % c.nc;
    float acc = 0.0f;
    if (!state_zero)
      for (int d = 0; d < Dk; ++d) acc += c.Q[i * Dk + d] * c.S[d * kLds + col];
    if (causal)
      for (int j = 0; j <= i; ++j) acc += c.A[i * c.C + j] * c.V[j * kLds + col];
    c.O[i * kLds + col] = acc;
  }
}

// out rows [t0, t0 + n): this CTA's columns, divided by the normalizer column.
__device__ void store_out(Ctx& c, int64_t t0, int n) {
  const LinearProblem& p = c.p;
  for (int e = threadIdx.x; e < n * c.nv; e += blockDim.x) {
    const int i = e / c.nv, col = e % c.nv;
    float x = c.O[i * kLds + col];
    if (p.normalize) x *= 1.0f / (c.O[i * kLds + c.nv] + kLinearEps);
    store_element(const_cast<void*>(p.out.data), p.out.dtype, at4(p.out, c.b, c.h, t0 + i, c.c0 + col), x);
  }
}

// S = exp(G_last) ⊙ S + K^T V (K already carries exp(G_last - G_j)).
__device__ void update_state(Ctx& c, int n) {
  const LinearProblem& p = c.p;
  const int Dk = int(p.dk);
  for (int e = threadIdx.x; e < Dk * c.nc; e += blockDim.x) {
    const int d = e / c.nc, col = e % c.nc;
    float s = c.S[d * kLds + col];
    if (p.gate_kind != kGateNone) s *= expf(float(gate_at(c, n - 1, d)));
    for (int j = 0; j < n; ++j) s += c.K[j * Dk + d] * c.V[j * kLds + col];
    c.S[d * kLds + col] = s;
  }
}

// 'efficient': per key dimension, the max over the sequence and 1 / sum exp(k - max) (online).
__device__ void key_softmax_stats(Ctx& c) {
  const LinearProblem& p = c.p;
  for (int d = threadIdx.x; d < int(p.dk); d += blockDim.x) {
    float m = -FLT_MAX, l = 0.0f;
    for (int64_t t = 0; t < p.seq; ++t) {
      const float x = load_element(p.k.data, p.k.dtype, at4(p.k, c.b, c.h, t, d));
      const float mn = fmaxf(m, x);
      l = l * expf(m - mn) + expf(x - mn);
      m = mn;
    }
    c.em[d] = m;
    c.el[d] = 1.0f / l;
  }
}

__global__ void __launch_bounds__(kThreads) linear_generic_kernel(const LinearProblem p, const GenericLayout L) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int64_t slices = (p.dv + kCols - 1) / kCols;
  const int64_t slice = blockIdx.x % slices, bh = blockIdx.x / slices;
  Ctx c{p, L, bh / p.heads, bh % p.heads, slice * kCols};
  c.nv = int(p.dv - c.c0 < kCols ? p.dv - c.c0 : kCols);
  c.nc = c.nv + (p.normalize ? 1 : 0);
  c.C = L.C;
  c.G = reinterpret_cast<double*>(smem + L.g);
  c.S = reinterpret_cast<float*>(smem + L.s);
  c.Q = reinterpret_cast<float*>(smem + L.q);
  c.K = reinterpret_cast<float*>(smem + L.k);
  c.V = reinterpret_cast<float*>(smem + L.v);
  c.O = reinterpret_cast<float*>(smem + L.o);
  c.A = reinterpret_cast<float*>(smem + L.a);
  c.em = reinterpret_cast<float*>(smem + L.em);
  c.el = reinterpret_cast<float*>(smem + L.el);
  c.log_decay = p.log_decay_per_head ? p.log_decay_per_head[c.h] : p.log_decay;
  const int Dk = int(p.dk);

  // The state: the initial one (these columns) or zeros; z in column nv.
  for (int e = threadIdx.x; e < Dk * c.nc; e += blockDim.x) {
    const int d = e / c.nc, col = e % c.nc;
    float s = 0.0f;
    if (col < c.nv && p.state_in) {
      const int64_t* st = p.state_in_stride;
      s = p.state_in[c.b * st[0] + c.h * st[1] + d * st[2] + (c.c0 + col) * st[3]];
    } else if (col == c.nv && p.norm_in) {
      const int64_t* st = p.norm_in_stride;
      s = p.norm_in[c.b * st[0] + c.h * st[1] + d * st[2]];
    }
    c.S[d * kLds + col] = s;
  }
  bool state_zero = p.state_in == nullptr && p.norm_in == nullptr;
  __syncthreads();

  const int C = L.C;
  if (p.causal) {
    for (int64_t t0 = 0; t0 < p.seq; t0 += C) {
      const int n = int(p.seq - t0 < C ? p.seq - t0 : C);
      load_q(c, t0, n);
      load_k(c, t0, n);
      load_v(c, t0, n);
      if (p.gate_kind != kGateNone) load_gates(c, t0, n);
      __syncthreads();
      intra_scores(c, n);
      __syncthreads();
      gate_factors(c, n, !state_zero);
      __syncthreads();
      outputs(c, n, state_zero, true);
      __syncthreads();
      store_out(c, t0, n);
      update_state(c, n);
      state_zero = false;
      __syncthreads();
    }
  } else {
    if (p.feature_map == kMapEfficient) {
      key_softmax_stats(c);
      __syncthreads();
    }
    for (int64_t t0 = 0; t0 < p.seq; t0 += C) {
      const int n = int(p.seq - t0 < C ? p.seq - t0 : C);
      load_k(c, t0, n);
      load_v(c, t0, n);
      if (p.gate_kind != kGateNone) load_gates(c, t0, n);
      __syncthreads();
      gate_factors(c, n, false);
      __syncthreads();
      update_state(c, n);
      __syncthreads();
    }
    for (int64_t t0 = 0; t0 < p.seq; t0 += C) {
      const int n = int(p.seq - t0 < C ? p.seq - t0 : C);
      load_q(c, t0, n);
      __syncthreads();
      outputs(c, n, false, false);
      __syncthreads();
      store_out(c, t0, n);
      __syncthreads();
    }
  }

  for (int e = threadIdx.x; e < Dk * c.nc; e += blockDim.x) {
    const int d = e / c.nc, col = e % c.nc;
    if (col < c.nv && p.state_out) {
      const int64_t* st = p.state_out_stride;
      p.state_out[c.b * st[0] + c.h * st[1] + d * st[2] + (c.c0 + col) * st[3]] = c.S[d * kLds + col];
    } else if (col == c.nv && p.norm_out && slice == 0) {
      const int64_t* st = p.norm_out_stride;
      p.norm_out[c.b * st[0] + c.h * st[1] + d * st[2]] = c.S[d * kLds + col];
    }
  }
}

__global__ void copy_normalizer_kernel(const LinearProblem p, float* dst) {
  const int64_t n = p.batch * p.heads * p.dk;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = e % p.dk, bh = e / p.dk;
    const int64_t* st = p.norm_in_stride;
    dst[e] = p.norm_in[(bh / p.heads) * st[0] + (bh % p.heads) * st[1] + d * st[2]];
  }
}

}  // namespace

cudaError_t launch_linear_copy_normalizer(const LinearProblem& p, float* dst, cudaStream_t stream) {
  const int64_t n = p.batch * p.heads * p.dk;
  const int64_t blocks = (n + 255) / 256;
  copy_normalizer_kernel<<<unsigned(blocks < 4096 ? blocks : 4096), 256, 0, stream>>>(p, dst);
  return cudaGetLastError();
}

cudaError_t launch_linear_attention_generic(const LinearProblem& p, size_t max_shared, cudaStream_t stream) {
  const int64_t slices = (p.dv + kCols - 1) / kCols;
  const int64_t blocks = p.batch * p.heads * slices;
  if (blocks == 0) return cudaSuccess;  // (seq 0 still runs: the state passes through)
  // The largest chunk whose working set fits (32 rows: every step has n * n or n * Dk elements
  // for 256 threads; fewer rows only for a Dk in the hundreds).
  const bool per_dim = p.gate_kind == kGatePerDim;
  GenericLayout L = generic_layout(32, p.dk, per_dim);
  for (int C = 16; L.total > max_shared && C >= 1; C /= 2) L = generic_layout(C, p.dk, per_dim);
  if (L.total > max_shared) return cudaErrorInvalidValue;
  if (blocks > int64_t(0x7fffffff)) return cudaErrorInvalidValue;
  cudaError_t e = cudaFuncSetAttribute(linear_generic_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(L.total));
  if (e != cudaSuccess) return e;
  linear_generic_kernel<<<unsigned(blocks), kThreads, L.total, stream>>>(p, L);
  return cudaGetLastError();
}

size_t linear_attention_scratch_bytes(const LinearProblem& p, int cc_major) {
  return linear_attention_tc_supports(p, cc_major) ? linear_attention_tc_scratch_bytes(p) : 0;
}

cudaError_t launch_linear_attention(const LinearProblem& p, int cc_major, int multiprocessors, size_t max_shared,
                                    cudaStream_t stream, const char** kernel) {
  if (linear_attention_tc_supports(p, cc_major)) {
    *kernel = "tensor-core";
    return launch_linear_attention_tc(p, multiprocessors, stream);
  }
  *kernel = "generic";
  return launch_linear_attention_generic(p, max_shared, stream);
}

}  // namespace cuda
}  // namespace attnkit
