// Chunkwise linear attention, written once over the simd/ Vec interface and compiled once per ISA
// (linear_attention_<isa>.cpp includes it inside namespace attnkit::cpu_<isa>). The recurrence is in
// linear_params.h; this is Lightning Attention-2's intra/inter split with flash-linear-attention's
// gated forms (chunk_simple_gla, chunk_gla).
//
// A work item is (b, h, value columns [c0, c1)). Its state S [Dk][lds] stays in scratch, float32;
// with normalize, z rides along as one more column of S (and V gets a column of ones), so the
// numerator and the denominator come out of the same products.
//
// Per chunk of n <= C rows, with G_i the sum of the chunk's log gates up to and including row i
// (G = 0 without gates; formed in double):
//   O  = (Q ⊙ exp(G)) S                                 what the chunk inherits (inter-chunk)
//   A  = (Q K^T) ⊙ D,  D_ij = exp(G_i - G_j) for j <= i, else 0   (intra-chunk, quadratic)
//   O += A V
//   S  = exp(G_{n-1}) ⊙ S + (K ⊙ exp(G_{n-1} - G))^T V
// Every exponent is <= 0, so nothing overflows however negative the gates (exp(G_i) exp(-G_j) would
// overflow: the log gates of -20 reach G = -1280 in one chunk), and each is a difference
// taken in double before it is rounded to float32, so a small gate next to a huge one keeps its
// digits (a difference of float32 cumsums of size 1280 would be off by 1e-4).
//
// GLA's per-dimension gates make D depend on the key dimension, so A is no longer one matmul. The
// chunk's rows are split into sub-chunks of kGlaSubChunk: a sub-chunk against the rows before it is
// one matmul of q_i ⊙ exp(G_i - G_r) and k_j ⊙ exp(G_r - G_j), r the row just before the sub-chunk
// (so both factors are <= 1), and the pairs inside a sub-chunk are summed pair by pair with
// exp(G_i - G_j) per dimension (flash-linear-attention's chunk_gla splits the same way).
//
// Non-causal: every query reads the state after the whole sequence: one pass over K, V builds it,
// a second one reads Q.
//
// All products are one register-blocked micro-kernel (mm below): a scalar of A broadcast against
// vectors of B rows, kMmRows x kMmVecs accumulators (from the including TU).

enum class Acc { Set, Add, ScaleAdd };

// c[r][x] (R rows, NV vectors from c) = init + sum_{t < T} a[r*a_rs + t*a_ts] * b[t*ldb + x*kWidth],
// init: 0 (Set), c (Add), c * row_scale[r] (ScaleAdd).
template <Acc kMode, int R, int NV>
static inline void mm_tile(const float* a, int64_t a_rs, int64_t a_ts, const float* b, int64_t ldb, int64_t T,
                           float* c, int64_t ldc, const float* row_scale) {
  Vec acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < NV; ++x) {
      if constexpr (kMode == Acc::Set) acc[r][x] = vzero();
      else if constexpr (kMode == Acc::Add) acc[r][x] = vload(c + r * ldc + x * kWidth);
      else acc[r][x] = vmul(vload(c + r * ldc + x * kWidth), vset1(row_scale[r]));
    }
  for (int64_t t = 0; t < T; ++t) {
    Vec bv[NV];
    const float* bt = b + t * ldb;
    for (int x = 0; x < NV; ++x) bv[x] = vload(bt + x * kWidth);
    const float* at = a + t * a_ts;
    for (int r = 0; r < R; ++r) {
      const Vec ar = vset1(at[r * a_rs]);
      for (int x = 0; x < NV; ++x) acc[r][x] = vfma(ar, bv[x], acc[r][x]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < NV; ++x) vstore(c + r * ldc + x * kWidth, acc[r][x]);
}

template <Acc kMode, int R>
static inline void mm_rows(int64_t nvec, const float* a, int64_t a_rs, int64_t a_ts, const float* b, int64_t ldb, int64_t T,
                           float* c, int64_t ldc, const float* row_scale) {
  int64_t x = 0;
  for (; x + kMmVecs <= nvec; x += kMmVecs) mm_tile<kMode, R, kMmVecs>(a, a_rs, a_ts, b + x * kWidth, ldb, T, c + x * kWidth, ldc, row_scale);
  const float* bx = b + x * kWidth;
  float* cx = c + x * kWidth;
  // nvec - x < kMmVecs; the min() keeps unreachable instantiations out of narrower ISAs.
  switch (nvec - x) {
    case 1: mm_tile<kMode, R, 1>(a, a_rs, a_ts, bx, ldb, T, cx, ldc, row_scale); break;
    case 2: mm_tile<kMode, R, (kMmVecs < 2 ? kMmVecs : 2)>(a, a_rs, a_ts, bx, ldb, T, cx, ldc, row_scale); break;
    case 3: mm_tile<kMode, R, (kMmVecs < 3 ? kMmVecs : 3)>(a, a_rs, a_ts, bx, ldb, T, cx, ldc, row_scale); break;
    default: break;
  }
}

template <Acc kMode>
static inline void mm_mode(int64_t rows, int64_t nvec, const float* a, int64_t a_rs, int64_t a_ts, const float* b, int64_t ldb,
                           int64_t T, float* c, int64_t ldc, const float* row_scale) {
  int64_t r = 0;
  for (; r + kMmRows <= rows; r += kMmRows)
    mm_rows<kMode, kMmRows>(nvec, a + r * a_rs, a_rs, a_ts, b, ldb, T, c + r * ldc, ldc, row_scale + (kMode == Acc::ScaleAdd ? r : 0));
  const float* ar = a + r * a_rs;
  float* cr = c + r * ldc;
  const float* sr = row_scale + (kMode == Acc::ScaleAdd ? r : 0);
  switch (rows - r) {
    case 1: mm_rows<kMode, 1>(nvec, ar, a_rs, a_ts, b, ldb, T, cr, ldc, sr); break;
    case 2: mm_rows<kMode, (kMmRows < 2 ? kMmRows : 2)>(nvec, ar, a_rs, a_ts, b, ldb, T, cr, ldc, sr); break;
    case 3: mm_rows<kMode, (kMmRows < 3 ? kMmRows : 3)>(nvec, ar, a_rs, a_ts, b, ldb, T, cr, ldc, sr); break;
    case 4: mm_rows<kMode, (kMmRows < 4 ? kMmRows : 4)>(nvec, ar, a_rs, a_ts, b, ldb, T, cr, ldc, sr); break;
    case 5: mm_rows<kMode, (kMmRows < 5 ? kMmRows : 5)>(nvec, ar, a_rs, a_ts, b, ldb, T, cr, ldc, sr); break;
    default: break;
  }
}

// C[rows][nvec vectors] = (0 | C | C * row_scale[row]) + A B, over row groups of kMmRows.
static inline void mm(int64_t rows, int64_t nvec, const float* a, int64_t a_rs, int64_t a_ts, const float* b, int64_t ldb,
                      int64_t T, float* c, int64_t ldc, Acc mode, const float* row_scale = nullptr) {
  switch (mode) {
    case Acc::Set: mm_mode<Acc::Set>(rows, nvec, a, a_rs, a_ts, b, ldb, T, c, ldc, row_scale); break;
    case Acc::Add: mm_mode<Acc::Add>(rows, nvec, a, a_rs, a_ts, b, ldb, T, c, ldc, row_scale); break;
    case Acc::ScaleAdd: mm_mode<Acc::ScaleAdd>(rows, nvec, a, a_rs, a_ts, b, ldb, T, c, ldc, row_scale); break;
  }
}

// x[i] = exp(x[i]) for x[i] <= 0 (natural log units; 2^-126 at the bottom instead of 0, like the
// fused kernel's softmax: a normal float, negligible beside the terms it sits next to). Works on
// whole vectors: x must have room up to n rounded up to kWidth (every scratch buffer does; what the
// padding holds afterwards is unused).
static inline void exp_nonpositive(float* x, int64_t n) {
  const Vec l2e = vset1(kLog2e);
  for (int64_t i = 0; i < n; i += kWidth) vstore(x + i, vexp2(vmul(vload(x + i), l2e)));
}

// dst[0, Dk) = phi(src) * s and dst[Dk, ldk) = 0. Efficient (queries): softmax over the features.
static inline void feature_map_row(FeatureMap fm, const float* src, int64_t Dk, int64_t ldk, float s, float* dst) {
  std::memcpy(dst, src, static_cast<size_t>(Dk) * sizeof(float));
  fill(dst + Dk, ldk - Dk, 0.0f);
  const Vec sv = vset1(s), zero = vzero(), l2e = vset1(kLog2e);
  switch (fm) {
    case FeatureMap::Identity:
      for (int64_t d = 0; d < ldk; d += kWidth) vstore(dst + d, vmul(vload(dst + d), sv));
      break;
    case FeatureMap::Relu:
      for (int64_t d = 0; d < ldk; d += kWidth) vstore(dst + d, vmul(vmax(vload(dst + d), zero), sv));
      break;
    case FeatureMap::Elu1:  // elu(x) + 1 = max(x, 0) + exp(min(x, 0))
      for (int64_t d = 0; d < ldk; d += kWidth) {
        const Vec x = vload(dst + d);
        vstore(dst + d, vmul(vadd(vmax(x, zero), vexp2(vmul(vmin(x, zero), l2e))), sv));
      }
      fill(dst + Dk, ldk - Dk, 0.0f);
      break;
    case FeatureMap::Efficient: {
      float m = dst[0];
      for (int64_t d = 1; d < Dk; ++d) m = dst[d] > m ? dst[d] : m;
      const Vec mv = vset1(m);
      for (int64_t d = 0; d < ldk; d += kWidth) vstore(dst + d, vexp2(vmul(vsub(vload(dst + d), mv), l2e)));
      float sum = 0.0f;
      for (int64_t d = 0; d < Dk; ++d) sum += dst[d];
      fill(dst + Dk, ldk - Dk, 0.0f);
      const Vec f = vset1(s / sum);
      for (int64_t d = 0; d < ldk; d += kWidth) vstore(dst + d, vmul(vload(dst + d), f));
      break;
    }
  }
}

namespace {

// Pointers into one item's scratch (LinearLayout) and the item's fixed facts.
struct Item {
  const LinearParams& p;
  LinearLayout L;
  int64_t b, h, c0, nv, nc;  // nc = nv (+1: the normalizer column)
  int64_t ls = 0;            // row stride of S (L.lds in scratch; the caller's when updated in place)
  float *S = nullptr, *Q = nullptr, *Qt = nullptr, *Kr = nullptr, *Krs = nullptr, *KT = nullptr, *KhT = nullptr,
        *Qh = nullptr, *V = nullptr, *A = nullptr, *O = nullptr, *stage = nullptr, *fq = nullptr, *fk = nullptr,
        *rs = nullptr, *tmp = nullptr, *em = nullptr, *el = nullptr;
  double* G = nullptr;
  double log_decay = 0.0;  // GateKind::Decay
};

// Rows [t0, t0 + n) of q: Q[i] = scale * phi(q). Efficient maps each row with a softmax.
void load_q(Item& it, int64_t t0, int64_t n) {
  const LinearParams& p = it.p;
  int64_t rs;
  const float* rows = rows_as_f32(p.q, head_base(p.q, it.b, it.h), t0, n, p.dk, false, it.stage, &rs);
  for (int64_t i = 0; i < n; ++i) feature_map_row(p.feature_map, rows + i * rs, p.dk, it.L.ldk, p.scale, it.Q + i * it.L.ldk);
}

// Rows [t0, t0 + n) of k: Kr[j] = phi(k_j), row-major. Efficient: exp(k - m) / l per dimension,
// with m, l the sequence's max and sum (em, el = 1 / l).
void load_k(Item& it, int64_t t0, int64_t n) {
  const LinearParams& p = it.p;
  const int64_t ldk = it.L.ldk, Dk = p.dk;
  int64_t rs;
  const float* rows = rows_as_f32(p.k, head_base(p.k, it.b, it.h), t0, n, Dk, false, it.stage, &rs);
  if (p.feature_map != FeatureMap::Efficient) {
    for (int64_t j = 0; j < n; ++j) feature_map_row(p.feature_map, rows + j * rs, Dk, ldk, 1.0f, it.Kr + j * ldk);
    return;
  }
  const Vec l2e = vset1(kLog2e);
  for (int64_t j = 0; j < n; ++j) {
    float* dst = it.Kr + j * ldk;
    std::memcpy(dst, rows + j * rs, static_cast<size_t>(Dk) * sizeof(float));
    fill(dst + Dk, ldk - Dk, 0.0f);
    for (int64_t d = 0; d < ldk; d += kWidth) {
      const Vec e = vexp2(vmul(vsub(vload(dst + d), vload(it.em + d)), l2e));
      vstore(dst + d, vmul(e, vload(it.el + d)));  // el = 0 in the padding
    }
  }
}

// Efficient feature map: the per-dimension max and 1 / sum of exp(k - max) over the whole sequence
// (online, one pass).
void key_softmax_stats(Item& it) {
  const LinearParams& p = it.p;
  const int64_t ldk = it.L.ldk, Dk = p.dk, C = p.chunk;
  const Vec l2e = vset1(kLog2e);
  fill(it.em, ldk, -3.0e38f);  // finite: (x - m) stays a number
  fill(it.el, ldk, 0.0f);
  float* row = it.tmp;
  for (int64_t t0 = 0; t0 < p.seq; t0 += C) {
    const int64_t n = p.seq - t0 < C ? p.seq - t0 : C;
    int64_t rs;
    const float* rows = rows_as_f32(p.k, head_base(p.k, it.b, it.h), t0, n, Dk, false, it.stage, &rs);
    for (int64_t j = 0; j < n; ++j) {
      std::memcpy(row, rows + j * rs, static_cast<size_t>(Dk) * sizeof(float));
      fill(row + Dk, ldk - Dk, 0.0f);
      for (int64_t d = 0; d < ldk; d += kWidth) {
        const Vec x = vload(row + d), m = vload(it.em + d);
        const Vec mn = vmax(m, x);
        const Vec l = vadd(vmul(vload(it.el + d), vexp2(vmul(vsub(m, mn), l2e))), vexp2(vmul(vsub(x, mn), l2e)));
        vstore(it.em + d, mn);
        vstore(it.el + d, l);
      }
    }
  }
  for (int64_t d = 0; d < ldk; ++d) {
    it.el[d] = d < Dk ? 1.0f / it.el[d] : 0.0f;
    if (d >= Dk) it.em[d] = 0.0f;
  }
}

// Rows [t0, t0 + n) of v, value columns [c0, c0 + nv), then a column of ones (normalize), zero padding.
void load_v(Item& it, int64_t t0, int64_t n) {
  const LinearParams& p = it.p;
  const int64_t lds = it.L.lds;
  const char* base = head_base(p.v, it.b, it.h) + it.c0 * p.v.strides[3] * static_cast<int64_t>(dtype_size(p.v.dtype));
  int64_t rs;
  const float* rows = rows_as_f32(p.v, base, t0, n, it.nv, false, it.stage, &rs);
  for (int64_t j = 0; j < n; ++j) {
    float* dst = it.V + j * lds;
    std::memcpy(dst, rows + j * rs, static_cast<size_t>(it.nv) * sizeof(float));
    if (p.normalize) dst[it.nv] = 1.0f;
    fill(dst + it.nc, lds - it.nc, 0.0f);
  }
}

// KT[d][j] = Kr[j][d] for j < n; columns [n, cp) zero (they pad the score matmul's last vectors).
void transpose_k(Item& it, int64_t n) {
  const int64_t Dk = it.p.dk, ldk = it.L.ldk, cp = it.L.cp;
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    int64_t d = 0;
    for (; d + 8 <= Dk; d += 8) transpose8x8(it.Kr + j * ldk + d, ldk, it.KT + d * cp + j, cp, nullptr);
    for (; d < Dk; ++d)
      for (int64_t r = j; r < j + 8; ++r) it.KT[d * cp + r] = it.Kr[r * ldk + d];
  }
  for (; j < n; ++j)
    for (int64_t d = 0; d < Dk; ++d) it.KT[d * cp + j] = it.Kr[j * ldk + d];
  for (int64_t d = 0; d < Dk; ++d) fill(it.KT + d * cp + n, cp - n, 0.0f);
}

// The chunk's cumulative log gates G (double): [n] for a decay or scalar gates, [n][ldk] per
// dimension (zero padding). Log gates are clamped at kLogGateFloor (see linear_attention.h).
void load_gates(Item& it, int64_t t0, int64_t n) {
  const LinearParams& p = it.p;
  if (p.gate_kind == GateKind::Decay) {
    for (int64_t i = 0; i < n; ++i) it.G[i] = static_cast<double>(i + 1) * it.log_decay;
    return;
  }
  const TensorView& g = p.gates;
  const int64_t base = it.b * g.strides[0] + it.h * g.strides[1];
  if (p.gate_kind == GateKind::Scalar) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double x = load_as_float(g.data, g.dtype, base + (t0 + i) * g.strides[2]);
      acc += x > kLogGateFloor ? x : kLogGateFloor;  // also maps -Infinity to the floor
      it.G[i] = acc;
    }
    return;
  }
  const int64_t ldk = it.L.ldk, Dk = p.dk;
  for (int64_t i = 0; i < n; ++i) {
    double* row = it.G + i * ldk;
    const double* prev = i ? row - ldk : nullptr;
    const int64_t at = base + (t0 + i) * g.strides[2];
    for (int64_t d = 0; d < Dk; ++d) {
      const double x = load_as_float(g.data, g.dtype, at + d * g.strides[3]);
      row[d] = (prev ? prev[d] : 0.0) + (x > kLogGateFloor ? x : kLogGateFloor);
    }
    for (int64_t d = Dk; d < ldk; ++d) row[d] = 0.0;
  }
}

// From G: Qt = Q ⊙ exp(G_i) (what each row keeps of the state before the chunk), Krs = Kr ⊙
// exp(G_last - G_j) (what of each key survives to the chunk's end) and rs = exp(G_last) (the
// state's own decay over the chunk). Without gates Qt, Krs are Q, Kr and rs is unused.
void gate_factors(Item& it, int64_t n, bool need_q) {
  const LinearParams& p = it.p;
  const int64_t ldk = it.L.ldk;
  if (p.gate_kind != GateKind::PerDim) {
    const double last = it.G[n - 1];
    for (int64_t i = 0; i < n; ++i) {
      it.fq[i] = static_cast<float>(it.G[i]);
      it.fk[i] = static_cast<float>(last - it.G[i]);
    }
    it.tmp[0] = static_cast<float>(last);
    exp_nonpositive(it.fq, n);
    exp_nonpositive(it.fk, n);
    exp_nonpositive(it.tmp, 1);
    fill(it.rs, ldk, it.tmp[0]);
    for (int64_t i = 0; i < n; ++i) {
      const Vec fqv = vset1(it.fq[i]), fkv = vset1(it.fk[i]);
      for (int64_t d = 0; d < ldk; d += kWidth) {
        if (need_q) vstore(it.Qt + i * ldk + d, vmul(vload(it.Q + i * ldk + d), fqv));
        vstore(it.Krs + i * ldk + d, vmul(vload(it.Kr + i * ldk + d), fkv));
      }
    }
    return;
  }
  const double* last = it.G + (n - 1) * ldk;
  for (int64_t d = 0; d < ldk; ++d) it.rs[d] = static_cast<float>(last[d]);
  exp_nonpositive(it.rs, ldk);
  for (int64_t i = 0; i < n; ++i) {
    const double* gi = it.G + i * ldk;
    float* f = it.tmp;
    if (need_q) {
      for (int64_t d = 0; d < ldk; ++d) f[d] = static_cast<float>(gi[d]);
      exp_nonpositive(f, ldk);
      for (int64_t d = 0; d < ldk; d += kWidth) vstore(it.Qt + i * ldk + d, vmul(vload(it.Q + i * ldk + d), vload(f + d)));
    }
    for (int64_t d = 0; d < ldk; ++d) f[d] = static_cast<float>(last[d] - gi[d]);
    exp_nonpositive(f, ldk);
    for (int64_t d = 0; d < ldk; d += kWidth) vstore(it.Krs + i * ldk + d, vmul(vload(it.Kr + i * ldk + d), vload(f + d)));
  }
}

// A = (Q K^T) ⊙ D over the causal triangle (zeros above the diagonal, out to cp columns).
void intra_scores(Item& it, int64_t n) {
  const LinearParams& p = it.p;
  const int64_t ldk = it.L.ldk, cp = it.L.cp, Dk = p.dk;
  if (p.gate_kind != GateKind::PerDim) {
    for (int64_t i0 = 0; i0 < n; i0 += kMmRows) {
      const int64_t rows = n - i0 < kMmRows ? n - i0 : kMmRows;
      const int64_t nvec = (i0 + rows + kWidth - 1) / kWidth;  // keys 0 .. i0 + rows - 1
      mm(rows, nvec, it.Q + i0 * ldk, ldk, 1, it.KT, cp, Dk, it.A + i0 * cp, cp, Acc::Set);
    }
    const bool gated = p.gate_kind != GateKind::None;
    for (int64_t i = 0; i < n; ++i) {
      float* a = it.A + i * cp;
      if (gated) {
        float* f = it.tmp;
        for (int64_t j = 0; j <= i; ++j) f[j] = static_cast<float>(it.G[i] - it.G[j]);
        exp_nonpositive(f, i + 1);
        for (int64_t j = 0; j <= i; ++j) a[j] *= f[j];
      }
      fill(a + i + 1, cp - i - 1, 0.0f);
    }
    return;
  }
  // Per-dimension gates: sub-chunks (see the top of this file).
  for (int64_t s0 = 0; s0 < n; s0 += kGlaSubChunk) {
    const int64_t s1 = s0 + kGlaSubChunk < n ? s0 + kGlaSubChunk : n;
    if (s0 > 0) {
      const double* gr = it.G + (s0 - 1) * ldk;  // the reference row r = s0 - 1
      for (int64_t i = s0; i < s1; ++i) {
        const double* gi = it.G + i * ldk;
        float* f = it.tmp;
        for (int64_t d = 0; d < ldk; ++d) f[d] = static_cast<float>(gi[d] - gr[d]);
        exp_nonpositive(f, ldk);
        float* qh = it.Qh + (i - s0) * ldk;
        for (int64_t d = 0; d < ldk; d += kWidth) vstore(qh + d, vmul(vload(it.Q + i * ldk + d), vload(f + d)));
      }
      for (int64_t j = 0; j < s0; ++j) {
        const double* gj = it.G + j * ldk;
        float* f = it.tmp;
        for (int64_t d = 0; d < Dk; ++d) f[d] = static_cast<float>(gr[d] - gj[d]);
        exp_nonpositive(f, Dk);
        for (int64_t d = 0; d < Dk; ++d) it.KhT[d * cp + j] = it.Kr[j * ldk + d] * f[d];
      }
      const int64_t nvec = (s0 + kWidth - 1) / kWidth;
      for (int64_t d = 0; d < Dk; ++d) fill(it.KhT + d * cp + s0, nvec * kWidth - s0, 0.0f);
      mm(s1 - s0, nvec, it.Qh, ldk, 1, it.KhT, cp, Dk, it.A + s0 * cp, cp, Acc::Set);
    }
    for (int64_t i = s0; i < s1; ++i) {
      const double* gi = it.G + i * ldk;
      const float* qi = it.Q + i * ldk;
      float* a = it.A + i * cp;
      for (int64_t j = s0; j <= i; ++j) {
        const double* gj = it.G + j * ldk;
        float* f = it.tmp;
        for (int64_t d = 0; d < ldk; ++d) f[d] = static_cast<float>(gi[d] - gj[d]);
        exp_nonpositive(f, ldk);
        const float* kj = it.Kr + j * ldk;
        Vec acc = vzero();
        for (int64_t d = 0; d < ldk; d += kWidth) acc = vfma(vmul(vload(qi + d), vload(kj + d)), vload(f + d), acc);
        float lanes[kWidth];
        vstore(lanes, acc);
        float sum = 0.0f;
        for (int l = 0; l < kWidth; ++l) sum += lanes[l];
        a[j] = sum;
      }
      fill(a + i + 1, cp - i - 1, 0.0f);
    }
  }
}

// out rows [t0, t0 + n) from O: columns [c0, c0 + nv), divided by the normalizer column.
void store_out(Item& it, int64_t t0, int64_t n) {
  const LinearParams& p = it.p;
  const TensorView& o = p.out;
  char* base = const_cast<char*>(head_base(o, it.b, it.h));
  const int64_t s2 = o.strides[2], s3 = o.strides[3], lds = it.L.lds;
  for (int64_t i = 0; i < n; ++i) {
    float* row = it.O + i * lds;
    if (p.normalize) {
      const Vec f = vset1(1.0f / (row[it.nv] + kLinearNormalizeEps));
      for (int64_t c = 0; c < lds; c += kWidth) vstore(row + c, vmul(vload(row + c), f));
    }
    const int64_t at = (t0 + i) * s2 + it.c0 * s3;
    if (o.dtype == DType::Float32 && s3 == 1) {
      std::memcpy(reinterpret_cast<float*>(base) + at, row, static_cast<size_t>(it.nv) * sizeof(float));
    } else {
      for (int64_t c = 0; c < it.nv; ++c) store_from_float(base, o.dtype, at + c * s3, row[c]);
    }
  }
}

// S = exp(G_last) ⊙ S + Krs^T V (Kr^T V without gates).
void update_state(Item& it, int64_t n) {
  const LinearParams& p = it.p;
  const int64_t ldk = it.L.ldk, lds = it.L.lds;
  if (p.gate_kind == GateKind::None) {
    mm(p.dk, lds / kWidth, it.Kr, 1, ldk, it.V, lds, n, it.S, it.ls, Acc::Add);
  } else {
    mm(p.dk, lds / kWidth, it.Krs, 1, ldk, it.V, lds, n, it.S, it.ls, Acc::ScaleAdd, it.rs);
  }
}

}  // namespace

bool linear_attention_item(const LinearParams& p, const LinearItem& item, const float* init_z, float* scratch) {
  const int64_t nv = item.c1 - item.c0;
  Item it{p, linear_layout(p, nv), item.b, item.h, item.c0, nv, nv + (p.normalize ? 1 : 0)};
  const LinearLayout& L = it.L;
  it.S = scratch + L.state; it.Q = scratch + L.q; it.Qt = scratch + L.qt; it.Kr = scratch + L.kr; it.Krs = scratch + L.krs;
  it.KT = scratch + L.kt; it.KhT = scratch + L.kht; it.Qh = scratch + L.qh; it.V = scratch + L.v; it.A = scratch + L.a;
  it.O = scratch + L.o; it.stage = scratch + L.stage; it.fq = scratch + L.fq; it.fk = scratch + L.fk; it.rs = scratch + L.rs;
  it.tmp = scratch + L.tmp; it.em = scratch + L.em; it.el = scratch + L.el;
  it.G = reinterpret_cast<double*>(scratch + L.g);
  if (p.gate_kind == GateKind::Decay) it.log_decay = std::log(p.decay_per_head ? static_cast<double>(p.decay_per_head[item.h]) : p.decay);
  const int64_t Dk = p.dk, lds = L.lds, C = p.chunk;

  // The state: the initial one (this item's columns) or zeros; z in column nv. A step updating a
  // float32 state with unit column stride in place works on the caller's rows directly (copying
  // them in and out cost more than the step itself), when they hold whole vectors and no z column.
  const bool has_z0 = p.normalize && init_z;
  const TensorView& s0 = p.initial_state;
  const TensorView& s1 = p.state_out;
  const bool in_place = p.has_initial_state && p.has_state_out && s0.data == s1.data && s0.strides[2] == s1.strides[2] &&
                        s0.strides[3] == 1 && s1.strides[3] == 1 && s0.strides[0] == s1.strides[0] && s0.strides[1] == s1.strides[1] &&
                        !p.normalize && nv == lds;
  it.ls = lds;
  if (in_place) {
    it.S = static_cast<float*>(s1.data) + item.b * s1.strides[0] + item.h * s1.strides[1] + item.c0;
    it.ls = s1.strides[2];
  }
  for (int64_t d = 0; d < Dk && !in_place; ++d) {
    float* row = it.S + d * lds;
    fill(row, lds, 0.0f);
    if (p.has_initial_state) {
      const TensorView& s = p.initial_state;
      const float* src = static_cast<const float*>(s.data) + item.b * s.strides[0] + item.h * s.strides[1] + d * s.strides[2] + item.c0 * s.strides[3];
      if (s.strides[3] == 1) std::memcpy(row, src, static_cast<size_t>(nv) * sizeof(float));
      else for (int64_t c = 0; c < nv; ++c) row[c] = src[c * s.strides[3]];
    }
    if (has_z0) row[nv] = init_z[(item.b * p.heads + item.h) * Dk + d];
  }
  bool state_zero = !p.has_initial_state && !has_z0;
  const bool gated = p.gate_kind != GateKind::None;
  const int64_t vecs = lds / kWidth;

  if (p.causal) {
    for (int64_t t0 = 0; t0 < p.seq; t0 += C) {
      if (p.abort_flag && p.abort_flag->load(std::memory_order_relaxed)) return false;
      const int64_t n = p.seq - t0 < C ? p.seq - t0 : C;
      load_q(it, t0, n);
      load_k(it, t0, n);
      load_v(it, t0, n);
      transpose_k(it, n);
      if (gated) {
        load_gates(it, t0, n);
        gate_factors(it, n, !state_zero);
      }
      // inter-chunk: O = (Q ⊙ exp(G)) S
      if (!state_zero) mm(n, vecs, gated ? it.Qt : it.Q, L.ldk, 1, it.S, it.ls, Dk, it.O, lds, Acc::Set);
      // intra-chunk: O += A V over the causal triangle (row group i0 needs keys < i0 + rows)
      intra_scores(it, n);
      for (int64_t i0 = 0; i0 < n; i0 += kMmRows) {
        const int64_t rows = n - i0 < kMmRows ? n - i0 : kMmRows;
        mm(rows, vecs, it.A + i0 * L.cp, L.cp, 1, it.V, lds, i0 + rows, it.O + i0 * lds, lds, state_zero ? Acc::Set : Acc::Add);
      }
      store_out(it, t0, n);
      update_state(it, n);
      state_zero = false;
    }
  } else {
    if (p.feature_map == FeatureMap::Efficient) key_softmax_stats(it);
    for (int64_t t0 = 0; t0 < p.seq; t0 += C) {
      if (p.abort_flag && p.abort_flag->load(std::memory_order_relaxed)) return false;
      const int64_t n = p.seq - t0 < C ? p.seq - t0 : C;
      load_k(it, t0, n);
      load_v(it, t0, n);
      if (gated) {
        load_gates(it, t0, n);
        gate_factors(it, n, false);
      }
      update_state(it, n);
    }
    for (int64_t t0 = 0; t0 < p.seq; t0 += C) {
      if (p.abort_flag && p.abort_flag->load(std::memory_order_relaxed)) return false;
      const int64_t n = p.seq - t0 < C ? p.seq - t0 : C;
      load_q(it, t0, n);
      mm(n, vecs, it.Q, L.ldk, 1, it.S, it.ls, Dk, it.O, lds, Acc::Set);
      store_out(it, t0, n);
    }
  }

  if (p.has_state_out && !in_place) {
    const TensorView& s = p.state_out;
    for (int64_t d = 0; d < Dk; ++d) {
      float* dst = static_cast<float*>(s.data) + item.b * s.strides[0] + item.h * s.strides[1] + d * s.strides[2] + item.c0 * s.strides[3];
      if (s.strides[3] == 1) std::memcpy(dst, it.S + d * lds, static_cast<size_t>(nv) * sizeof(float));
      else for (int64_t c = 0; c < nv; ++c) dst[c * s.strides[3]] = it.S[d * lds + c];
    }
  }
  if (p.has_normalizer_out && item.c0 == 0) {
    const TensorView& z = p.normalizer_out;
    float* dst = static_cast<float*>(z.data) + item.b * z.strides[0] + item.h * z.strides[1];
    for (int64_t d = 0; d < Dk; ++d) dst[d * z.strides[2]] = it.S[d * lds + nv];
  }
  return true;
}
