// The fused attention tile kernel, written once over the simd/ Vec interface and compiled once per
// ISA (fused_attention_<isa>.cpp includes it inside namespace attnkit::cpu_<isa>).
//
// Layout: the work item is kQueryBlock query rows of one head. Scores are kept transposed,
// S^T[key][query], so that
//   * both matmuls (S^T = K Q^T and O^T += V^T P^T) are one register-blocked micro-kernel that
//     broadcasts a scalar of K (or V) against vectors of packed queries: K and V are read in place,
//     any strides, with no transposition or packing for float32;
//   * the online softmax runs down columns: the running max and sum of each query are vectors and
//     no horizontal reduction is ever needed.
// Only Q (scaled, transposed once per work item) and float16/bfloat16 K/V tiles (converted) are
// copied into scratch.
//
// Requires (from the including TU): Vec, kWidth, the v* operations, vexp2, vtanh, cvt_*_row,
// rows_as_f32 / fill / head_base (simd/row_io.h), and
// the micro-tile shape kTileRows x kTileCols (rows broadcast x vectors of queries).

static_assert(kQueryBlock % (kTileCols * kWidth) == 0, "query block must hold whole micro-tiles");
constexpr int64_t kQueryVecs = kQueryBlock / kWidth;

// c[r][cols] = (c_scale ? c[r][cols] * c_scale : 0) + sum_t a[r*a_rs + t*a_ts] * b[t][cols]
// b and c have row stride kQueryBlock; cols are C vectors starting at the pointers given.
// col_max (optional): also folds each column's maximum over these R rows into col_max[x], so the
// softmax needs no separate pass over the scores for their maximum.
template <int R, int C>
static inline void bcast_gemm_tile(const float* a, int64_t a_rs, int64_t a_ts, const float* b, int64_t T, float* c,
                                   const Vec* c_scale, Vec* col_max) {
  Vec acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < C; ++x)
      acc[r][x] = c_scale ? vmul(vload(c + r * kQueryBlock + x * kWidth), c_scale[x]) : vzero();
  for (int64_t t = 0; t < T; ++t) {
    const float* bt = b + t * kQueryBlock;
    Vec bv[C];
    for (int x = 0; x < C; ++x) bv[x] = vload(bt + x * kWidth);
    const float* at = a + t * a_ts;
    for (int r = 0; r < R; ++r) {
      const Vec ar = vset1(at[r * a_rs]);
      for (int x = 0; x < C; ++x) acc[r][x] = vfma(ar, bv[x], acc[r][x]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < C; ++x) vstore(c + r * kQueryBlock + x * kWidth, acc[r][x]);
  if (col_max) {
    for (int x = 0; x < C; ++x) {
      Vec m = acc[0][x];
      for (int r = 1; r < R; ++r) m = vmax(m, acc[r][x]);
      col_max[x] = vmax(col_max[x], m);
    }
  }
}

template <int C>
static inline void bcast_gemm_rows(int64_t rows, const float* a, int64_t a_rs, int64_t a_ts, const float* b, int64_t T,
                                   float* c, const Vec* c_scale, Vec* col_max) {
  int64_t r = 0;
  for (; r + kTileRows <= rows; r += kTileRows)
    bcast_gemm_tile<kTileRows, C>(a + r * a_rs, a_rs, a_ts, b, T, c + r * kQueryBlock, c_scale, col_max);
  const float* ar = a + r * a_rs;
  float* cr = c + r * kQueryBlock;
  switch (rows - r) {
    case 0: break;
    case 1: bcast_gemm_tile<1, C>(ar, a_rs, a_ts, b, T, cr, c_scale, col_max); break;
    case 2: bcast_gemm_tile<2, C>(ar, a_rs, a_ts, b, T, cr, c_scale, col_max); break;
    case 3: bcast_gemm_tile<3, C>(ar, a_rs, a_ts, b, T, cr, c_scale, col_max); break;
    case 4: if constexpr (kTileRows > 4) bcast_gemm_tile<4, C>(ar, a_rs, a_ts, b, T, cr, c_scale, col_max); break;
    case 5: if constexpr (kTileRows > 5) bcast_gemm_tile<5, C>(ar, a_rs, a_ts, b, T, cr, c_scale, col_max); break;
    default: break;
  }
}

// C[rows][query vecs 0..ncv) over all column micro-tiles; query-column-major so a slice of b stays
// in L1 while every row group streams past it.
static inline void bcast_gemm(int64_t rows, int64_t ncv, const float* a, int64_t a_rs, int64_t a_ts, const float* b,
                              int64_t T, float* c, const Vec* c_scale, Vec* col_max = nullptr) {
  for (int64_t v = 0; v < ncv; v += kTileCols) {
    const int64_t n = ncv - v < kTileCols ? ncv - v : kTileCols;
    const float* bv = b + v * kWidth;
    float* cv = c + v * kWidth;
    const Vec* sv = c_scale ? c_scale + v : nullptr;
    Vec* mv = col_max ? col_max + v : nullptr;
    // n <= kTileCols; the min() keeps unreachable instantiations out of narrower ISAs.
    switch (n) {
      case 1: bcast_gemm_rows<1>(rows, a, a_rs, a_ts, bv, T, cv, sv, mv); break;
      case 2: bcast_gemm_rows<(kTileCols < 2 ? kTileCols : 2)>(rows, a, a_rs, a_ts, bv, T, cv, sv, mv); break;
      case 3: bcast_gemm_rows<(kTileCols < 3 ? kTileCols : 3)>(rows, a, a_rs, a_ts, bv, T, cv, sv, mv); break;
      case 4: bcast_gemm_rows<(kTileCols < 4 ? kTileCols : 4)>(rows, a, a_rs, a_ts, bv, T, cv, sv, mv); break;
      default: break;
    }
  }
}

// Mixed: a block mask's tile whose blocks differ (some skipped or full beside others): every
// element is tested against its own block's state.
enum class TileKind { Skip, Full, Partial, Mixed };

static inline TileKind classify_tile(const AttentionParams& p, const AttentionSegment& s, int64_t i0, int64_t i1,
                                     int64_t j0, int64_t j1) {
  if (!p.causal && p.window_left < 0 && p.window_right < 0) return p.has_mask ? TileKind::Partial : TileKind::Full;
  if (j0 >= p.sinks) {
    // Past the sinks both bounds of a key's visible queries rise with the key, so the tile's
    // corners decide (a rare skippable tile may come out Partial: computed, all masked).
    int64_t lo_first, hi_first, lo_last, hi_last;
    visible_queries(p, s, j0, &lo_first, &hi_first);
    visible_queries(p, s, j1 - 1, &lo_last, &hi_last);
    if (lo_first > i1 - 1 || hi_last < i0) return TileKind::Skip;
    return lo_last <= i0 && hi_first >= i1 - 1 && !p.has_mask ? TileKind::Full : TileKind::Partial;
  }
  bool all_full = true, all_empty = true;
  for (int64_t j = j0; j < j1; ++j) {
    int64_t lo, hi;
    visible_queries(p, s, j, &lo, &hi);
    if (lo < i0) lo = i0;
    if (hi > i1 - 1) hi = i1 - 1;
    if (lo <= hi) all_empty = false;
    if (lo != i0 || hi != i1 - 1) all_full = false;
  }
  if (all_empty) return TileKind::Skip;
  return all_full && !p.has_mask ? TileKind::Full : TileKind::Partial;
}

// With a block mask: its blocks decide first (all skipped, all full: no element test), then, for
// partial blocks, causal / window / sinks / mask as usual.
static inline TileKind classify_masked_tile(const AttentionParams& p, const AttentionSegment& s, int64_t h, int64_t i0,
                                            int64_t i1, int64_t j0, int64_t j1) {
  if (!p.has_block_mask) return classify_tile(p, s, i0, i1, j0, j1);
  switch (covered_block_states(p, s, h, i0, i1, j0, j1)) {
    case kSomeSkipped: return TileKind::Skip;
    case kSomeFull: return TileKind::Full;
    case kSomePartial: {
      // element bitmaps of partial blocks hide pairs the options keep: never the fast full path
      const TileKind k = classify_tile(p, s, i0, i1, j0, j1);
      return k == TileKind::Full && p.has_element_mask ? TileKind::Partial : k;
    }
    default: return TileKind::Mixed;
  }
}

// One block of kQueryBlock queries: its transposed queries, running softmax state and output.
struct QueryBlockState {
  int64_t i0, i1, nq, ncv;  // segment-local rows [i0, i1); ncv vectors of queries
  float* QT;                // [D][kQueryBlock]  scaled queries, transposed (zero padding columns)
  float* OT;                // [Dv][kQueryBlock] unnormalised output, transposed
  float* mrow;              // [kQueryBlock] running max (natural-log units)
  float* lrow;              // [kQueryBlock] running sum
  Vec corr[kQueryVecs];     // this tile's rescale of the running state, per query vector
};

// Q^T, scaled, zero in the padding columns: rows converted to float32 (in place when they already
// are) into `staging`, then 8x8 register transposes, scalar loops for the ragged edges.
static inline void start_query_block(const AttentionParams& p, const AttentionSegment& sg, int64_t h,
                                     QueryBlockState& b, float* staging) {
  const int64_t D = p.head_dim, Dv = p.head_dim_v, nq = b.nq;
  float* QT = b.QT;
  int64_t row_stride;
  const float* rows = rows_as_f32(p.q, head_base(p.q, sg.batch, h), sg.q_start + b.i0, nq, D, false, staging, &row_stride);
  float scale8[8];
  for (float& x : scale8) x = p.scale;
  // Zero the last query vector of every row of Q^T first (one store a row), then write the queries:
  // the padding columns end up zero without a scalar fill per row.
  if (nq % kWidth != 0)
    for (int64_t d = 0; d < D; ++d) vstore(QT + d * kQueryBlock + (b.ncv - 1) * kWidth, vzero());
  int64_t i = 0;
  for (; i + 8 <= nq; i += 8) {
    int64_t d = 0;
    for (; d + 8 <= D; d += 8) transpose8x8(rows + i * row_stride + d, row_stride, QT + d * kQueryBlock + i, kQueryBlock, scale8);
    for (; d < D; ++d)
      for (int64_t r = i; r < i + 8; ++r) QT[d * kQueryBlock + r] = p.scale * rows[r * row_stride + d];
  }
  for (; i < nq; ++i)
    for (int64_t d = 0; d < D; ++d) QT[d * kQueryBlock + i] = p.scale * rows[i * row_stride + d];
  fill(b.mrow, kQueryBlock, -std::numeric_limits<float>::infinity());
  fill(b.lrow, kQueryBlock, 0.0f);
  for (int64_t d = 0; d < Dv; ++d) fill(b.OT + d * kQueryBlock, b.ncv * kWidth, 0.0f);
}

// Folds key tile [j0, j0+nk) into one query block: S^T = K Q^T, score modifiers, masks, online
// softmax, O^T = O^T * corr + V^T P^T. ST is scratch for the tile's scores.
static inline void attend_key_tile(const AttentionParams& p, const AttentionSegment& sg, int64_t h, QueryBlockState& b,
                                   int64_t j0, int64_t nk, TileKind kind, const float* Kt, int64_t ks, const float* Vt,
                                   int64_t vs, float* ST) {
  const int64_t D = p.head_dim, Dv = p.head_dim_v;
  const int64_t i0 = b.i0, i1 = b.i1, nq = b.nq, ncv = b.ncv;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const bool score_mods = p.softcap > 0.0f || p.has_bias || p.alibi_slopes;

  // S^T = K Q^T. In a partial tile each key sees an interval of the block's queries (causal,
  // window, sinks); per group of kTileRows keys only the query vectors that some key sees are
  // computed, the rest are set to -inf. Diagonal tiles so cost about half.
  int64_t lo[kKeyBlock], hi[kKeyBlock];  // visible queries of key j0+j, block-local, inclusive
  // Full tiles without score modifiers get each column's max from the micro-kernel itself.
  const bool fused_max = kind == TileKind::Full && !score_mods;
  Vec tile_max[kQueryVecs];
  if (fused_max) {
    for (int64_t v = 0; v < ncv; ++v) tile_max[v] = vset1(neg_inf);
    bcast_gemm(nk, ncv, Kt, ks, 1, b.QT, D, ST, nullptr, tile_max);
  } else if (kind == TileKind::Full) {
    bcast_gemm(nk, ncv, Kt, ks, 1, b.QT, D, ST, nullptr);
  } else {
    // A mixed tile computes every score; the block states and options hide them afterwards.
    for (int64_t j = 0; j < nk; ++j) {
      if (kind == TileKind::Mixed) {
        lo[j] = 0, hi[j] = nq - 1;
        continue;
      }
      visible_queries(p, sg, j0 + j, &lo[j], &hi[j]);
      lo[j] = lo[j] < i0 ? 0 : lo[j] - i0;
      hi[j] = hi[j] > i1 - 1 ? nq - 1 : hi[j] - i0;
    }
    for (int64_t j = 0; j < nk; j += kTileRows) {
      const int64_t rr = nk - j < kTileRows ? nk - j : kTileRows;
      int64_t glo = nq, ghi = -1;
      for (int64_t r = j; r < j + rr; ++r)
        if (lo[r] <= hi[r]) { glo = lo[r] < glo ? lo[r] : glo; ghi = hi[r] > ghi ? hi[r] : ghi; }
      const int64_t v0 = glo <= ghi ? glo / kWidth : 0, v1 = glo <= ghi ? ghi / kWidth + 1 : 0;
      if (v1 > v0) bcast_gemm(rr, v1 - v0, Kt + j * ks, ks, 1, b.QT + v0 * kWidth, D, ST + j * kQueryBlock + v0 * kWidth, nullptr);
      for (int64_t r = j; r < j + rr; ++r) {
        float* srow = ST + r * kQueryBlock;
        fill(srow, v0 * kWidth, neg_inf);
        fill(srow + v1 * kWidth, (ncv - v1) * kWidth, neg_inf);
      }
    }
  }

  // score modifiers, in the documented order: softcap, + bias, - alibi
  if (p.softcap > 0.0f) {
    const Vec cap = vset1(p.softcap), inv = vset1(1.0f / p.softcap);
    for (int64_t j = 0; j < nk; ++j)
      for (int64_t v = 0; v < ncv; ++v) {
        float* s = ST + j * kQueryBlock + v * kWidth;
        vstore(s, vmul(cap, vtanh(vmul(vload(s), inv))));
      }
  }
  if (p.has_bias) {
    const Broadcast4& B = p.bias;
    const int64_t base = sg.batch * B.strides[0] + h * B.strides[1];
    for (int64_t j = 0; j < nk; ++j) {
      float* s = ST + j * kQueryBlock;
      const int64_t col = base + (sg.k_start + j0 + j) * B.strides[3];
      for (int64_t i = 0; i < nq; ++i) s[i] += load_as_float(B.data, B.dtype, col + (sg.q_start + i0 + i) * B.strides[2]);
    }
  }
  if (p.alibi_slopes) {
    const float slope = p.alibi_slopes[h];
    const int64_t off = sg.k_len - sg.q_len;
    for (int64_t j = 0; j < nk; ++j) {
      float* s = ST + j * kQueryBlock;
      const int64_t rel = i0 + off - (j0 + j);  // (i + off) - j at i = i0
      for (int64_t i = 0; i < ncv * kWidth; ++i) s[i] -= slope * std::fabs(static_cast<float>(rel + i));
    }
  }
  if (kind == TileKind::Mixed) {
    // Per element: hidden in a skipped block, visible in a full one, and in a partial block
    // visible as causal / window / sinks / mask say.
    const Broadcast4& M = p.mask;
    const uint8_t* m = static_cast<const uint8_t*>(M.data);
    for (int64_t j = 0; j < nk; ++j) {
      float* s = ST + j * kQueryBlock;
      int64_t vlo, vhi;  // segment-local rows that see key j0 + j through the options
      visible_queries(p, sg, j0 + j, &vlo, &vhi);
      const int64_t kb = (sg.k_start + j0 + j) / p.block_k;
      const int64_t mcol = sg.batch * M.strides[0] + h * M.strides[1] + (sg.k_start + j0 + j) * M.strides[3];
      for (int64_t i = 0; i < nq; ++i) {
        const int64_t row = i0 + i;
        const uint8_t st = block_state(p, sg.batch, h, (sg.q_start + row) / p.block_q, kb);
        const bool visible = st == kBlockFull ||
                             (st != kBlockSkip && row >= vlo && row <= vhi && (!p.has_mask || m[mcol + (sg.q_start + row) * M.strides[2]]));
        if (!visible) s[i] = neg_inf;
      }
    }
  }
  if (kind == TileKind::Partial) {
    for (int64_t j = 0; j < nk; ++j) {
      float* s = ST + j * kQueryBlock;
      const int64_t l = lo[j] > nq ? nq : lo[j];
      const int64_t after = hi[j] + 1 > l ? hi[j] + 1 : l;
      fill(s, l, neg_inf);
      fill(s + after, nq - after, neg_inf);
      if (p.has_mask) {
        const Broadcast4& M = p.mask;
        const uint8_t* m = static_cast<const uint8_t*>(M.data);
        const int64_t col = sg.batch * M.strides[0] + h * M.strides[1] + (sg.k_start + j0 + j) * M.strides[3];
        for (int64_t i = 0; i < nq; ++i)
          if (!m[col + (sg.q_start + i0 + i) * M.strides[2]]) s[i] = neg_inf;
      }
    }
  }

  if (p.has_element_mask && kind != TileKind::Full) {
    // Element bitmaps of the partial blocks (a mixed tile's full blocks keep every pair), one
    // lookup per (row, key block).
    for (int64_t i = 0; i < nq; ++i) {
      const int64_t row = sg.q_start + i0 + i;
      for (int64_t j = 0; j < nk;) {
        const int64_t key = sg.k_start + j0 + j, kb = key / p.block_k;
        const int64_t left = (kb + 1) * p.block_k - key;  // keys of this block from here
        const int64_t run = nk - j < left ? nk - j : left;
        const bool full = kind == TileKind::Mixed && block_state(p, sg.batch, h, row / p.block_q, kb) == kBlockFull;
        const uint32_t* bits = full ? nullptr : element_row_bits(p, sg.batch, h, row, kb);
        if (bits) {
          for (int64_t r = 0; r < run; ++r) {
            const int64_t c = key + r - kb * p.block_k;
            if (!((bits[c / 32] >> (c % 32)) & 1u)) ST[(j + r) * kQueryBlock + i] = neg_inf;
          }
        }
        j += run;
      }
    }
  }

  // online softmax down each query column
  const Vec log2e = vset1(kLog2e);
  const Vec lowest = vset1(-1e30f);  // finite, and its product with log2e stays finite
  for (int64_t v = 0; v < ncv; ++v) {
    Vec mt = vset1(neg_inf);
    if (fused_max) mt = tile_max[v];
    else for (int64_t j = 0; j < nk; ++j) mt = vmax(mt, vload(ST + j * kQueryBlock + v * kWidth));
    const Vec m_old = vload(b.mrow + v * kWidth);
    const Vec m_new = vmax(m_old, mt);
    // exp(s - m) = 2^(s*log2e - m*log2e): one FMA per score. A column with nothing visible yet
    // (m = -inf) uses a large finite base instead, so -inf scores never make a NaN.
    const Vec base = vmax(m_new, lowest);
    const Vec neg_base = vmul(base, vset1(-kLog2e));
    const Vec c = vexp2_nonpositive(vfma(m_old, log2e, neg_base));
    Vec sum = vzero();
    for (int64_t j = 0; j < nk; ++j) {
      float* s = ST + j * kQueryBlock + v * kWidth;
      const Vec pr = vexp2_nonpositive(vfma(vload(s), log2e, neg_base));
      vstore(s, pr);
      sum = vadd(sum, pr);
    }
    vstore(b.lrow + v * kWidth, vfma(vload(b.lrow + v * kWidth), c, sum));
    vstore(b.mrow + v * kWidth, m_new);
    b.corr[v] = c;
  }

  // O^T = O^T * corr + V^T P^T
  if (kind == TileKind::Full) {
    bcast_gemm(Dv, ncv, Vt, 1, vs, ST, nk, b.OT, b.corr);
  } else {
    // Partial tile: each query vector only sums the keys some of its queries see (outside that
    // range P is 0), one vector at a time.
    for (int64_t v = 0; v < ncv; ++v) {
      const int64_t q_first = v * kWidth, q_last = v * kWidth + kWidth - 1;
      int64_t t0 = nk, t1 = 0;
      for (int64_t j = 0; j < nk; ++j)
        if (lo[j] <= hi[j] && lo[j] <= q_last && hi[j] >= q_first) { t0 = j < t0 ? j : t0; t1 = j + 1; }
      if (t1 < t0) t0 = t1 = 0;  // nothing visible: only the rescale by corr
      bcast_gemm(Dv, 1, Vt + t0 * vs, 1, vs, ST + t0 * kQueryBlock + v * kWidth, t1 - t0, b.OT + v * kWidth, b.corr + v);
    }
  }
}

// Normalises one block (folding in the learned sink logit) and writes its out rows and lse.
static inline void finish_query_block(const AttentionParams& p, const AttentionSegment& sg, int64_t h, QueryBlockState& b) {
  const int64_t Dv = p.head_dim_v, nq = b.nq, ncv = b.ncv;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float* OT = b.OT;
  float* factor = b.mrow;  // reused in place: factor[i] replaces mrow[i] once lse is written
  for (int64_t i = 0; i < nq; ++i) {
    // m stays -inf exactly when the row saw no key (masked scores leave a ~1e-38 trace in l).
    float m = b.mrow[i], l = b.lrow[i];
    const bool seen = m != neg_inf;
    float f;
    if (p.sink_logits) {
      const float sink = p.sink_logits[h];
      const float mf = seen && m > sink ? m : sink;
      const float keep = seen ? std::exp(m - mf) : 0.0f;
      l = l * keep + std::exp(sink - mf);
      f = keep / l;
      m = mf;
    } else {
      f = seen ? 1.0f / l : 0.0f;
    }
    if (p.lse) p.lse[(sg.batch * p.heads_q + h) * p.seq_q + sg.q_start + b.i0 + i] = seen || p.sink_logits ? m + std::log(l) : neg_inf;
    factor[i] = f;
  }
  fill(factor + nq, ncv * kWidth - nq, 0.0f);
  for (int64_t d = 0; d < Dv; ++d)
    for (int64_t v = 0; v < ncv; ++v) {
      float* x = OT + d * kQueryBlock + v * kWidth;
      vstore(x, vmul(vload(x), vload(factor + v * kWidth)));
    }

  const TensorView& o = p.out;
  char* ob = static_cast<char*>(o.data) + (sg.batch * o.strides[0] + h * o.strides[1]) * static_cast<int64_t>(dtype_size(o.dtype));
  const int64_t os2 = o.strides[2], os3 = o.strides[3];
  const int64_t row0 = sg.q_start + b.i0;
  int64_t i = 0;
  if (o.dtype == DType::Float32 && (os3 == 1 || Dv == 1)) {
    float* out0 = reinterpret_cast<float*>(ob) + row0 * os2;
    for (; i + 8 <= nq; i += 8) {
      int64_t d = 0;
      for (; d + 8 <= Dv; d += 8) transpose8x8(OT + d * kQueryBlock + i, kQueryBlock, out0 + i * os2 + d, os2, nullptr);
      for (; d < Dv; ++d)
        for (int64_t r = i; r < i + 8; ++r) out0[r * os2 + d] = OT[d * kQueryBlock + r];
    }
  }
  if (o.dtype == DType::Float32) {
    float* out0 = reinterpret_cast<float*>(ob) + row0 * os2;
    for (; i < nq; ++i)
      for (int64_t d = 0; d < Dv; ++d) out0[i * os2 + d * os3] = OT[d * kQueryBlock + i];
  }
  for (; i < nq; ++i)
    for (int64_t d = 0; d < Dv; ++d) store_from_float(ob, o.dtype, (row0 + i) * os2 + d * os3, OT[d * kQueryBlock + i]);
}

// Rows [i0, i1) of query head h, up to kQueryBlocksPerItem blocks of kQueryBlock queries. Every
// key tile is loaded (and converted) once and folded into all the blocks while it is in L1/L2:
// streaming K/V once per 64 queries cost ~15% of the matmul speed.
bool attention_query_block(const AttentionParams& p, const AttentionSegment& sg, int64_t h, int64_t i0, int64_t i1,
                           float* scratch) {
  const int64_t D = p.head_dim, Dv = p.head_dim_v;
  const int64_t hk = h / (p.heads_q / p.heads_kv);
  float* ST = scratch;                        // [kKeyBlock][kQueryBlock] scores, then probabilities
  float* Kb = ST + kKeyBlock * kQueryBlock;   // [kStageRows][D] converted keys, or staged query rows
  float* Vb = Kb + kStageRows * D;            // [kKeyBlock][Dv] converted values
  float* next = Vb + kKeyBlock * Dv;

  QueryBlockState blocks[kQueryBlocksPerItem];
  int nb = 0;
  KeyRange kr{INT64_MAX, 0, 0};  // union over the blocks
  for (int64_t b0 = i0; b0 < i1; b0 += kQueryBlock, ++nb) {
    QueryBlockState& b = blocks[nb];
    b.i0 = b0;
    b.i1 = b0 + kQueryBlock < i1 ? b0 + kQueryBlock : i1;
    b.nq = b.i1 - b.i0;
    b.ncv = (b.nq + kWidth - 1) / kWidth;
    b.QT = next; next += D * kQueryBlock;
    b.OT = next; next += Dv * kQueryBlock;
    b.mrow = next; next += kQueryBlock;
    b.lrow = next; next += kQueryBlock;
    start_query_block(p, sg, h, b, Kb);
    const KeyRange r = visible_keys(p, sg, b.i0, b.i1);
    if (r.main_end > r.main_begin) {
      kr.main_begin = r.main_begin < kr.main_begin ? r.main_begin : kr.main_begin;
      kr.main_end = r.main_end > kr.main_end ? r.main_end : kr.main_end;
    }
    kr.sink_end = r.sink_end > kr.sink_end ? r.sink_end : kr.sink_end;
  }
  if (kr.main_begin > kr.main_end) kr.main_begin = kr.main_end;

  const char* kbase = head_base(p.k, sg.batch, hk) + sg.k_start * p.k.strides[2] * static_cast<int64_t>(dtype_size(p.k.dtype));
  const char* vbase = head_base(p.v, sg.batch, hk) + sg.k_start * p.v.strides[2] * static_cast<int64_t>(dtype_size(p.v.dtype));

  // Key tiles start at the segment's first key so that tiles line up across query blocks; the
  // first one visited is the one holding a sink or the start of the visible range.
  // A block mask's full blocks may hold keys the options would hide: visit every key tile, and
  // let the block states skip (reading a few bytes of the mask per tile).
  if (p.has_block_mask) kr = KeyRange{0, sg.k_len, 0};
  const int64_t first = kr.sink_end > 0 ? 0 : kr.main_begin / kKeyBlock * kKeyBlock;
  for (int64_t j0 = first; j0 < kr.main_end || j0 < kr.sink_end; j0 += kKeyBlock) {
    const int64_t j1 = j0 + kKeyBlock < sg.k_len ? j0 + kKeyBlock : sg.k_len;
    if (!(j0 < kr.sink_end) && !(j1 > kr.main_begin && j0 < kr.main_end)) continue;
    if (p.abort_flag && p.abort_flag->load(std::memory_order_relaxed)) return false;
    const int64_t nk = j1 - j0;
    TileKind kinds[kQueryBlocksPerItem];
    bool any = false;
    for (int b = 0; b < nb; ++b) {
      kinds[b] = classify_masked_tile(p, sg, h, blocks[b].i0, blocks[b].i1, j0, j1);
      any = any || kinds[b] != TileKind::Skip;
    }
    if (!any) continue;
    int64_t ks, vs;
    const float* Kt = rows_as_f32(p.k, kbase, j0, nk, D, false, Kb, &ks);
    const float* Vt = rows_as_f32(p.v, vbase, j0, nk, Dv, true, Vb, &vs);
    for (int b = 0; b < nb; ++b)
      if (kinds[b] != TileKind::Skip) attend_key_tile(p, sg, h, blocks[b], j0, nk, kinds[b], Kt, ks, Vt, vs, ST);
  }
  for (int b = 0; b < nb; ++b) finish_query_block(p, sg, h, blocks[b]);
  return true;
}
