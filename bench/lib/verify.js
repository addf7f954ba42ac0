'use strict';
// Correctness checks for the benchmark: a float64 reference evaluated on a sample of query rows
// (cheap even at S = 8192), read through explicit strides so it sees exactly the memory a peer
// was given, and a whole-tensor comparison between two peers' outputs.

/**
 * A strided float view: { data: ArrayLike<number>, strides: [sb, sh, ss, sd], offset } in elements,
 * logical [B, H, S, D].
 */
function view(data, strides, offset = 0) {
  return { data, strides, offset };
}
const bhsd = (data, H, S, D) => view(data, [H * S * D, S * D, D, 1]);
const bshd = (data, H, S, D) => view(data, [S * H * D, D, H * D, 1]);

/** Keys visible to query row i: [lo, hi] inclusive (hi < lo means none). Bottom-right aligned. */
function visibleRange(i, seqQ, seqK, { causal = false, window } = {}) {
  const a = i + seqK - seqQ;
  let lo = 0, hi = seqK - 1;
  if (causal) hi = Math.min(hi, a);
  if (window) {
    const [left, right] = window;
    if (left >= 0) lo = Math.max(lo, a - left);
    if (right >= 0) hi = Math.min(hi, a + right);
  }
  return [lo, hi];
}

/** Number of visible (query, key) pairs in one head. */
function visiblePairs(seqQ, seqK, mask = {}) {
  let n = 0;
  for (let i = 0; i < seqQ; i++) {
    const [lo, hi] = visibleRange(i, seqQ, seqK, mask);
    if (hi >= lo) n += hi - lo + 1;
  }
  return n;
}

/**
 * Float64 attention for the listed rows. rows: [[b, h, i], ...]. Returns Float64Array rows.length * D.
 */
function referenceRows(q, k, v, shape, rows, mask = {}) {
  const { headsQ, headsKv, seqQ, seqK, headDim: D } = shape;
  const scale = 1 / Math.sqrt(D);
  const group = headsQ / headsKv;
  const out = new Float64Array(rows.length * D);
  const p = new Float64Array(seqK);
  const qrow = new Float64Array(D);
  rows.forEach(([b, h, i], r) => {
    const hk = Math.floor(h / group);
    const [lo, hi] = visibleRange(i, seqQ, seqK, mask);
    if (hi < lo) return;
    const qo = q.offset + b * q.strides[0] + h * q.strides[1] + i * q.strides[2];
    for (let d = 0; d < D; d++) qrow[d] = q.data[qo + d * q.strides[3]];
    let m = -Infinity;
    for (let j = lo; j <= hi; j++) {
      const ko = k.offset + b * k.strides[0] + hk * k.strides[1] + j * k.strides[2];
      let s = 0;
      for (let d = 0; d < D; d++) s += qrow[d] * k.data[ko + d * k.strides[3]];
      s *= scale;
      p[j] = s;
      if (s > m) m = s;
    }
    let sum = 0;
    for (let j = lo; j <= hi; j++) sum += (p[j] = Math.exp(p[j] - m));
    for (let j = lo; j <= hi; j++) {
      const w = p[j] / sum;
      const vo = v.offset + b * v.strides[0] + hk * v.strides[1] + j * v.strides[2];
      for (let d = 0; d < D; d++) out[r * D + d] += w * v.data[vo + d * v.strides[3]];
    }
  });
  return out;
}

/** A deterministic spread of rows: first, last, and evenly spaced ones across heads and batch. */
function sampleRows({ batch, headsQ, seqQ }, count = 24) {
  const rows = [[0, 0, 0], [batch - 1, headsQ - 1, seqQ - 1]];
  for (let r = 0; rows.length < count; r++) {
    const t = (r + 0.5) / (count - 2);
    const flat = Math.min(batch * headsQ * seqQ - 1, Math.floor(t * batch * headsQ * seqQ) + 7 * r);
    const b = Math.floor(flat / (headsQ * seqQ));
    const h = Math.floor(flat / seqQ) % headsQ;
    rows.push([b, h, flat % seqQ]);
  }
  return rows;
}

/** max |a - ref| / max |ref|, over a and ref given as flat arrays of equal length. */
function maxRelError(a, ref) {
  let diff = 0, scale = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(a[i] - ref[i]);
    if (!(d <= diff)) diff = d; // NaN propagates as the error
    const r = Math.abs(ref[i]);
    if (r > scale) scale = r;
  }
  return scale > 0 ? diff / scale : diff;
}

/** Pulls the listed rows out of a strided output view into a flat array (same order as rows). */
function gatherRows(o, rows, D) {
  const out = new Float64Array(rows.length * D);
  rows.forEach(([b, h, i], r) => {
    const base = o.offset + b * o.strides[0] + h * o.strides[1] + i * o.strides[2];
    for (let d = 0; d < D; d++) out[r * D + d] = o.data[base + d * o.strides[3]];
  });
  return out;
}

/** Whole-tensor max relative error between two strided [B, H, S, D] views. */
function compareViews(a, ref, [B, H, S, D]) {
  let diff = 0, scale = 0;
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < S; i++) {
    const ao = a.offset + b * a.strides[0] + h * a.strides[1] + i * a.strides[2];
    const ro = ref.offset + b * ref.strides[0] + h * ref.strides[1] + i * ref.strides[2];
    for (let d = 0; d < D; d++) {
      const x = a.data[ao + d * a.strides[3]], y = ref.data[ro + d * ref.strides[3]];
      const e = Math.abs(x - y);
      if (!(e <= diff)) diff = e;
      if (Math.abs(y) > scale) scale = Math.abs(y);
    }
  }
  return scale > 0 ? diff / scale : diff;
}

module.exports = {
  view, bhsd, bshd, visibleRange, visiblePairs, referenceRows, sampleRows, maxRelError, gatherRows, compareViews,
};
