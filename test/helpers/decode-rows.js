'use strict';
// A KVCache under test together with the test's own copy of every row appended to it (the exact
// values of the cache's dtype), for the decode tests: test/decode.test.js on the CPU and
// test/gpu/run.js on a GPU. The copy is what the float64 oracle (decodeAttentionReference) reads.
const { KVCache } = require('../..');
const R = require('./random');

/** A cache plus the test's own copy of its rows: rows[b].k[h] is an array of Float32Array(D). */
function makeCache(cfg) {
  const cache = new KVCache(cfg);
  const rows = Array.from({ length: cfg.batch }, () => ({
    k: Array.from({ length: cfg.kvHeads }, () => []), v: Array.from({ length: cfg.kvHeads }, () => []),
  }));
  return { cache, rows, cfg };
}

/**
 * Appends T random rows to every sequence (or lengths[b] to sequence b), made in `layout`, and
 * mirrors them into rows. `place(t)` gives what append receives (default: the CPU tensor itself;
 * the GPU suite passes a device copy), and `release(t)` disposes of it afterwards.
 */
function appendRandom(r, st, T, lengths, layout = 'bhsd', { place = (t) => t, release = () => {} } = {}) {
  const { batch: B, kvHeads: H, headDim: D, dtype } = st.cfg;
  const k = R.randomTensor(r, [B, H, T, D], dtype, { layout });
  const v = R.randomTensor(r, [B, H, T, D], dtype, { layout });
  const kp = place(k.t), vp = place(v.t);
  try {
    st.cache.append(kp, vp, lengths ? { lengths: Int32Array.from(lengths) } : undefined);
  } finally {
    if (kp !== k.t) release(kp);
    if (vp !== v.t) release(vp);
  }
  for (let b = 0; b < B; b++) {
    const n = lengths ? lengths[b] : T;
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < n; t++) {
        const at = ((b * H + h) * T + t) * D;
        st.rows[b].k[h].push(k.values.slice(at, at + D));
        st.rows[b].v[h].push(v.values.slice(at, at + D));
      }
    }
  }
}

/** The oracle's sequences from the test's rows: k, v [kvHeads, length, D] row-major. */
function seqsOf(st) {
  return st.rows.map((s) => {
    const n = s.k[0].length, D = st.cfg.headDim;
    const k = new Float32Array(st.cfg.kvHeads * n * D), v = new Float32Array(k.length);
    s.k.forEach((hr, h) => hr.forEach((row, t) => k.set(row, (h * n + t) * D)));
    s.v.forEach((hr, h) => hr.forEach((row, t) => v.set(row, (h * n + t) * D)));
    return { k, v, length: n };
  });
}

module.exports = { makeCache, appendRandom, seqsOf };
