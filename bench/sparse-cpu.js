#!/usr/bin/env node
// Block-sparse attention on the CPU against dense attention on the same inputs, interleaved in one
// process (issue 4's density target: a call at density d takes <= 1.25 x d x the dense time).
// Random masks of full blocks; float32, the library's default thread count.
//   node bench/sparse-cpu.js [S=8192] [block=128] [heads=8] [D=64]
// (Not yet a row of `npm run bench`, whose cases verify every peer against the reference.)
'use strict';
const attn = require('..');

const [S, block, H, D] = [8192, 128, 8, 64].map((x, i) => +(process.argv[2 + i] || x));
const random = (n) => { const x = new Float32Array(n); for (let i = 0; i < n; i++) x[i] = Math.random() * 2 - 1; return x; };
const [q, k, v] = [0, 1, 2].map(() => attn.Tensor.from(random(H * S * D), [1, H, S, D]));
const out = attn.Tensor.empty([1, H, S, D]);
const nb = Math.ceil(S / block);
const masks = [0.5, 0.25, 0.1].map((d) => {
  const states = new Uint8Array(H * nb * nb).map(() => (Math.random() < d ? 2 : 0));
  const computed = states.reduce((n, x) => n + (x > 0), 0) / states.length;
  const mask = attn.BlockMask.fromDense(attn.Tensor.from(states, [1, H, nb, nb]), { blockSize: block, seqLenQ: S, seqLenK: S });
  return { d, computed, mask };
});
const ms = (f) => { const t0 = process.hrtime.bigint(); f(); return Number(process.hrtime.bigint() - t0) / 1e6; };
const median = (x) => x.slice().sort((a, b) => a - b)[x.length >> 1];
const dense = [], sparse = masks.map(() => []);
for (let round = 0; round < 5; round++) {
  dense.push(ms(() => attn.attentionSync(q, k, v, { out })));
  masks.forEach((m, i) => sparse[i].push(ms(() => attn.blockSparseAttentionSync(q, k, v, m.mask, { out }))));
}
const denseMs = median(dense);
console.log(`H${H} S${S} D${D} float32, ${block} x ${block} blocks, ${attn.backendInfo().cpu.threads} threads: dense ${denseMs.toFixed(1)} ms`);
for (const [i, m] of masks.entries()) {
  const t = median(sparse[i]);
  console.log(`  density ${m.d} (computed ${m.computed.toFixed(3)}): ${t.toFixed(1)} ms = ${(t / (m.computed * denseMs)).toFixed(2)} x d x dense (target <= 1.25)`);
}
