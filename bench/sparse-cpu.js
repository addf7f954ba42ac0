#!/usr/bin/env node
// The sparse family on the CPU, each against dense attention on the same inputs, interleaved in one
// process: block-sparse at densities 0.5 / 0.25 / 0.1 (issue 4's target: a call at density d takes
// <= 1.25 x d x the dense time), 2D neighborhood attention and MoBA top-k block attention (times,
// and their computed fraction of the dense work). float32, the library's thread count. A part of
// `npm run bench` (bench/run.js), or alone:
//   node bench/sparse-cpu.js [S=8192] [block=128] [heads=8] [D=64]
'use strict';
const attn = require('..');

const random = (n) => { const x = new Float32Array(n); for (let i = 0; i < n; i++) x[i] = Math.random() * 2 - 1; return x; };
const ms = (f) => { const t0 = process.hrtime.bigint(); f(); return Number(process.hrtime.bigint() - t0) / 1e6; };
const median = (x) => x.slice().sort((a, b) => a - b)[x.length >> 1];

/** Rows { name, kind, ms, denseMs, computed, ratio }; ratio = ms / (computed x denseMs). */
function runSparseCpu({ S = 8192, block = 128, H = 8, D = 64, rounds = 5, side = 64, kernel = 13, topk = 8 } = {}) {
  const [q, k, v] = [0, 1, 2].map(() => attn.Tensor.from(random(H * S * D), [1, H, S, D]));
  const out = attn.Tensor.empty([1, H, S, D]);
  const nb = Math.ceil(S / block);
  const masks = [0.5, 0.25, 0.1].map((d) => {
    const states = new Uint8Array(H * nb * nb).map(() => (Math.random() < d ? 2 : 0));
    const computed = states.reduce((n, x) => n + (x > 0), 0) / states.length;
    const mask = attn.BlockMask.fromDense(attn.Tensor.from(states, [1, H, nb, nb]), { blockSize: block, seqLenQ: S, seqLenK: S });
    return { d, computed, mask };
  });
  // neighborhood: a side x side map (its own dense baseline: N = side^2 tokens)
  const N = side * side;
  const [qn, kn, vn] = [0, 1, 2].map(() => attn.Tensor.from(random(H * N * D), [1, H, N, D]));
  const outN = attn.Tensor.empty([1, H, N, D]);
  const na = { spatial: [side, side], kernelSize: kernel };
  attn.neighborhoodAttentionSync(qn, kn, vn, { ...na, out: outN }); // builds and caches its mask
  const naMask = attn.BlockMask.neighborhood({ ...na, blockSize: 64 });
  const naComputed = naMask.density();
  const moba = { blockSize: block, topk, causal: true };

  const t = { dense: [], sparse: masks.map(() => []), denseN: [], na: [], topk: [] };
  for (let round = 0; round < rounds; round++) {
    t.dense.push(ms(() => attn.attentionSync(q, k, v, { out })));
    masks.forEach((m, i) => t.sparse[i].push(ms(() => attn.blockSparseAttentionSync(q, k, v, m.mask, { out }))));
    t.topk.push(ms(() => attn.topkBlockAttentionSync(q, k, v, { ...moba, out })));
    t.denseN.push(ms(() => attn.attentionSync(qn, kn, vn, { out: outN })));
    t.na.push(ms(() => attn.neighborhoodAttentionSync(qn, kn, vn, { ...na, out: outN })));
  }
  attn.clearNeighborhoodCache();
  const denseMs = median(t.dense), denseN = median(t.denseN);
  const shape = `H${H} S${S} D${D} float32`;
  const rows = masks.map((m, i) => ({
    name: `block-sparse ${shape}, ${block} x ${block} blocks, density ${m.d}`, kind: 'density', target: 1.25,
    ms: median(t.sparse[i]), denseMs, computed: m.computed,
  }));
  // causal top-k: the own block is half computed, the rest whole
  const topkComputed = Math.min(1, ((topk - 1) * nb - ((topk - 1) * topk) / 2 + nb / 2) / (nb * nb));
  rows.push({ name: `topkBlockAttention ${shape}, blocks ${block}, topk ${topk}, causal (gating included)`, kind: 'topk', ms: median(t.topk), denseMs, computed: topkComputed });
  rows.push({ name: `neighborhoodAttention H${H} ${side}x${side} D${D} float32, kernel ${kernel}`, kind: 'neighborhood', ms: median(t.na), denseMs: denseN, computed: naComputed });
  for (const r of rows) r.ratio = r.ms / (r.computed * r.denseMs);
  return rows;
}

function printRows(rows) {
  for (const r of rows) {
    console.log(`  ${r.name}: ${r.ms.toFixed(1)} ms, dense ${r.denseMs.toFixed(1)} ms, computed ${r.computed.toFixed(3)} of the blocks: ` +
      `${r.ratio.toFixed(2)} x computed x dense${r.target ? ` (target <= ${r.target})` : ''}`);
  }
}

module.exports = { runSparseCpu };

if (require.main === module) {
  const [S, block, H, D] = [8192, 128, 8, 64].map((x, i) => +(process.argv[2 + i] || x));
  console.log(`sparse on the CPU, ${attn.backendInfo().cpu.threads} threads`);
  printRows(runSparseCpu({ S, block, H, D }));
}
