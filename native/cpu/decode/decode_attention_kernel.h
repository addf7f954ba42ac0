// The decode kernel, written once over the simd/ Vec layer and compiled per ISA (included inside
// cpu_<isa> after vec_<isa>.h, vec_math.h and row_io.h). One item: keys [j0, j1) of one
// (sequence, kv head), all R = (Hq / Hkv) * Sq query rows of the GQA group at once, so each key
// and value row is read from its page once per item and reused from L1 by every row. Keys go in
// tiles of kDecodeKeyTile (a tile may span pages: each row is located through the page table).
// Online softmax over the tiles as in FlashAttention; the item's (out, lse) is either final (one
// chunk) or a part merged later (split-KV, Flash-Decoding).

static inline float dot_row(const float* a, const float* b, int64_t n) {
  Vec acc = vzero();
  int64_t d = 0;
  for (; d + kWidth <= n; d += kWidth) acc = vfma(vload(a + d), vload(b + d), acc);
  float s = vhsum(acc);
  for (; d < n; ++d) s += a[d] * b[d];
  return s;
}

// Four query rows (q, q + D, q + 2D, q + 3D) against one key row: the key is loaded once.
static inline void dot4(const float* q, int64_t D, const float* k, float* out) {
  Vec a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
  int64_t d = 0;
  for (; d + kWidth <= D; d += kWidth) {
    const Vec kv = vload(k + d);
    a0 = vfma(vload(q + d), kv, a0);
    a1 = vfma(vload(q + D + d), kv, a1);
    a2 = vfma(vload(q + 2 * D + d), kv, a2);
    a3 = vfma(vload(q + 3 * D + d), kv, a3);
  }
  vhsum4(a0, a1, a2, a3, out);
  for (; d < D; ++d) { out[0] += q[d] * k[d]; out[1] += q[D + d] * k[d]; out[2] += q[2 * D + d] * k[d]; out[3] += q[3 * D + d] * k[d]; }
}

static inline void axpy_row(float* y, float a, const float* x, int64_t n) {
  const Vec va = vset1(a);
  int64_t d = 0;
  for (; d + kWidth <= n; d += kWidth) vstore(y + d, vfma(va, vload(x + d), vload(y + d)));
  for (; d < n; ++d) y[d] += a * x[d];
}

static inline void scale_row(float* y, float a, int64_t n) {
  const Vec va = vset1(a);
  int64_t d = 0;
  for (; d + kWidth <= n; d += kWidth) vstore(y + d, vmul(va, vload(y + d)));
  for (; d < n; ++d) y[d] *= a;
}

// Row j of kv head hkv of sequence b in a pool, as float32 (in place for float32, else converted into buf).
static inline const float* pool_row(const DecodeParams& p, const TensorView& pool, int64_t b, int64_t hkv, int64_t j, float* buf) {
  const int64_t P = p.page_size, D = p.head_dim;
  const int64_t page = p.page_table[b * p.table_width + j / P];
  const int64_t at = ((page * p.heads_kv + hkv) * P + j % P) * D;
  switch (pool.dtype) {
    case DType::Float32: return static_cast<const float*>(pool.data) + at;
    case DType::Float16: cvt_f16_row(static_cast<const uint16_t*>(pool.data) + at, buf, D); return buf;
    default: cvt_bf16_row(static_cast<const uint16_t*>(pool.data) + at, buf, D); return buf;
  }
}

bool decode_item(const DecodeParams& p, const DecodeItem& w, const TensorView& out, float* lse, bool scores_pass, float* scratch) {
  const int64_t D = p.head_dim, Sq = p.seq_q, G = p.heads_q / p.heads_kv, R = G * Sq, T = kDecodeKeyTile;
  const int64_t len = p.lengths[w.b];
  const float ninf = -std::numeric_limits<float>::infinity();
  float* qf = scratch;           // [R][D] scaled queries
  float* acc = qf + R * D;       // [R][D]
  float* m = acc + R * D;        // [R]
  float* l = m + R;              // [R]
  float* s = l + R;              // [R][T]
  float* kbuf = s + R * T;       // [T][D]
  float* vbuf = kbuf + T * D;    // [T][D]
  float* alpha = vbuf + T * D;   // [R] rescale of each row's accumulator in this tile
  const float* krow[kDecodeKeyTile];

  for (int64_t r = 0; r < R; ++r) {
    const int64_t h = w.hkv * G + r / Sq, i = r % Sq;
    const TensorView& q = p.q;
    const int64_t base = w.b * q.strides[0] + h * q.strides[1] + i * q.strides[2];
    for (int64_t d = 0; d < D; ++d) qf[r * D + d] = p.scale * load_as_float(q.data, q.dtype, base + d * q.strides[3]);
    std::memset(acc + r * D, 0, sizeof(float) * D);
    const float sink = (w.first && p.sink_logits && !scores_pass) ? p.sink_logits[h] : ninf;
    m[r] = sink;
    l[r] = sink == ninf ? 0.0f : 1.0f;  // the sink adds exp(sink) to the denominator only
  }
  const bool windowed = p.window_left >= 0 || p.window_right >= 0;
  for (int64_t t0 = w.j0; t0 < w.j1; t0 += T) {
    if (p.abort_flag && p.abort_flag->load(std::memory_order_relaxed) != 0) return false;
    const int64_t n = std::min(T, w.j1 - t0);
    // Rows are staged into kbuf / vbuf (converted, or copied for float32): a plain streaming copy
    // keeps more cache-line reads in flight than the compute loops that use them (a small gain on
    // one thread, none seen on two: the kernel is still far from the read bandwidth, see bench/).
    for (int64_t t = 0; t < n; ++t) {
      krow[t] = pool_row(p, p.k_pool, w.b, w.hkv, t0 + t, kbuf + t * D);
      if (krow[t] != kbuf + t * D) { std::memcpy(kbuf + t * D, krow[t], sizeof(float) * D); krow[t] = kbuf + t * D; }
    }
    // Raw scores, four rows per key load, then each row's score modifiers and masks.
    for (int64_t t = 0; t < n; ++t) {
      int64_t r = 0;
      float d4[4];
      for (; r + 4 <= R; r += 4) {
        dot4(qf + r * D, D, krow[t], d4);
        s[r * T + t] = d4[0]; s[(r + 1) * T + t] = d4[1]; s[(r + 2) * T + t] = d4[2]; s[(r + 3) * T + t] = d4[3];
      }
      for (; r < R; ++r) s[r * T + t] = dot_row(qf + r * D, krow[t], D);
    }
    // Past the sinks and the window's reach, with no score modifier, a tile the earliest query
    // sees whole needs no per-score pass (the common decode tile): only its padding is masked.
    const bool plain_tile = !windowed && p.softcap <= 0.0f && !p.alibi_slopes && t0 + n - 1 <= len - Sq;
    for (int64_t r = 0; plain_tile && n < T && r < R; ++r)
      for (int64_t t = n; t < T; ++t) s[r * T + t] = ninf;
    for (int64_t r = 0; !plain_tile && r < R; ++r) {
      const int64_t h = w.hkv * G + r / Sq, a = len - Sq + r % Sq;  // the query's position
      float* sr = s + r * T;
      for (int64_t t = 0; t < n; ++t) {
        const int64_t j = t0 + t;
        bool visible = j <= a;
        if (visible && windowed && j >= p.sinks) {
          if (p.window_left >= 0 && j < a - p.window_left) visible = false;
          if (p.window_right >= 0 && j > a + p.window_right) visible = false;
        }
        if (!visible) { sr[t] = ninf; continue; }
        float x = sr[t];
        if (p.softcap > 0.0f) x = p.softcap * std::tanh(x / p.softcap);
        if (p.alibi_slopes) x -= p.alibi_slopes[h] * static_cast<float>(a > j ? a - j : j - a);
        sr[t] = x;
      }
      for (int64_t t = n; t < T; ++t) sr[t] = ninf;
    }
    if (scores_pass) {
      // Each key's probability exp(s - lse) summed over the group's rows, into its slot's score.
      for (int64_t t = 0; t < n; ++t) {
        const int64_t j = t0 + t;
        float mass = 0.0f;
        for (int64_t r = 0; r < R; ++r) {
          const float x = s[r * T + t];
          const float lr = lse[((w.b * p.heads_q + w.hkv * G + r / Sq) * Sq) + r % Sq];
          if (x != ninf && lr != ninf) mass += std::exp(x - lr);
        }
        const int64_t page = p.page_table[w.b * p.table_width + j / p.page_size];
        p.scores[(page * p.heads_kv + w.hkv) * p.page_size + j % p.page_size] += mass;
      }
      continue;
    }
    const float* vrow[kDecodeKeyTile];
    for (int64_t t = 0; t < n; ++t) {
      vrow[t] = pool_row(p, p.v_pool, w.b, w.hkv, t0 + t, vbuf + t * D);
      if (vrow[t] != vbuf + t * D) { std::memcpy(vbuf + t * D, vrow[t], sizeof(float) * D); vrow[t] = vbuf + t * D; }
    }
    // Online softmax: each row's new max, its probabilities (vector exp over the tile, in place
    // of the scores) and the rescale factor of what it has accumulated.
    for (int64_t r = 0; r < R; ++r) {
      float* sr = s + r * T;
      float mx = m[r];
      for (int64_t t = 0; t < n; ++t) mx = sr[t] > mx ? sr[t] : mx;
      if (mx == ninf) {  // nothing visible yet: contributes nothing
        alpha[r] = 1.0f;
        for (int64_t t = 0; t < T; ++t) sr[t] = 0.0f;
        continue;
      }
      alpha[r] = m[r] == ninf ? 0.0f : std::exp(m[r] - mx);
      const Vec vm = vset1(mx), l2e = vset1(kLog2e);
      for (int64_t t = 0; t < T; t += kWidth) {
        const Vec e = vexp2_nonpositive(vmul(vsub(vload(sr + t), vm), l2e));
        vstore(sr + t, e);
      }
      // Masked entries (-inf) came out as 2^-125: zero them so they add nothing at all.
      float total = 0.0f;
      for (int64_t t = 0; t < T; ++t) {
        if (t >= n || sr[t] < 1e-37f) sr[t] = 0.0f;
        total += sr[t];
      }
      m[r] = mx;
      l[r] = l[r] * alpha[r] + total;
    }
    // acc = alpha * acc + P V: four rows per value load, the accumulators in registers per D chunk.
    int64_t r = 0;
    for (; r + 4 <= R; r += 4) {
      float* a0 = acc + r * D;
      const float* p0 = s + r * T;
      int64_t d = 0;
      for (; d + kWidth <= D; d += kWidth) {
        Vec x0 = vmul(vload(a0 + d), vset1(alpha[r])), x1 = vmul(vload(a0 + D + d), vset1(alpha[r + 1]));
        Vec x2 = vmul(vload(a0 + 2 * D + d), vset1(alpha[r + 2])), x3 = vmul(vload(a0 + 3 * D + d), vset1(alpha[r + 3]));
        for (int64_t t = 0; t < n; ++t) {
          const Vec vv = vload(vrow[t] + d);
          x0 = vfma(vset1(p0[t]), vv, x0);
          x1 = vfma(vset1(p0[T + t]), vv, x1);
          x2 = vfma(vset1(p0[2 * T + t]), vv, x2);
          x3 = vfma(vset1(p0[3 * T + t]), vv, x3);
        }
        vstore(a0 + d, x0); vstore(a0 + D + d, x1); vstore(a0 + 2 * D + d, x2); vstore(a0 + 3 * D + d, x3);
      }
      for (; d < D; ++d) {
        for (int k = 0; k < 4; ++k) {
          float x = a0[k * D + d] * alpha[r + k];
          for (int64_t t = 0; t < n; ++t) x += p0[k * T + t] * vrow[t][d];
          a0[k * D + d] = x;
        }
      }
    }
    for (; r < R; ++r) {
      float* ar = acc + r * D;
      if (alpha[r] != 1.0f) scale_row(ar, alpha[r], D);
      const float* pr = s + r * T;
      for (int64_t t = 0; t < n; ++t) if (pr[t] != 0.0f) axpy_row(ar, pr[t], vrow[t], D);
    }
  }
  if (scores_pass) return true;
  for (int64_t r = 0; r < R; ++r) {
    const int64_t h = w.hkv * G + r / Sq, i = r % Sq;
    const bool any = l[r] > 0.0f && m[r] != ninf;
    const float inv = any ? 1.0f / l[r] : 0.0f;
    const int64_t base = w.b * out.strides[0] + h * out.strides[1] + i * out.strides[2];
    for (int64_t d = 0; d < D; ++d) store_from_float(out.data, out.dtype, base + d * out.strides[3], acc[r * D + d] * inv);
    lse[(w.b * p.heads_q + h) * Sq + i] = any ? m[r] + std::log(l[r]) : ninf;
  }
  return true;
}
