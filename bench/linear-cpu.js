#!/usr/bin/env node
// Linear attention on the CPU: the chunked kernel's cost against the sequence length (issue 5's
// target: time(S = 65536) / time(S = 8192) <= 9, i.e. linear) and against attnkit's own causal
// softmax attention on the same inputs (target: >= 10x at S = 16384, D = 64), interleaved in one
// process; then, for information, the gated and normalized forms and a decoding step. float32, B1,
// the library's thread count. A part of `npm run bench` (bench/run.js), or alone:
//   node bench/linear-cpu.js [H=8] [D=64] [--quick]
'use strict';
const attn = require('..');

const random = (n) => { const x = new Float32Array(n); for (let i = 0; i < n; i++) x[i] = Math.random() * 2 - 1; return x; };
const ms = (f) => { const t0 = process.hrtime.bigint(); f(); return Number(process.hrtime.bigint() - t0) / 1e6; };
const median = (x) => x.slice().sort((a, b) => a - b)[x.length >> 1];
const T = (shape) => attn.Tensor.from(random(shape.reduce((a, b) => a * b, 1)), shape);

/**
 * Rows { name, kind, ms, ... }. kind 'scaling': ratio = ms(long) / ms(short), target <= 9;
 * 'vs-softmax': ratio = causal softmax attention ms / linear ms, target >= 10; 'info': times only.
 */
function runLinearCpu({ H = 8, D = 64, short = 8192, long = 65536, compareS = 16384, rounds = 3 } = {}) {
  const q = T([1, H, long, D]), k = T([1, H, long, D]), v = T([1, H, long, D]);
  const out = attn.Tensor.empty([1, H, long, D]);
  // prefixes of one set of inputs: zero-copy slices along the sequence
  const at = (S) => ({ q: q.slice(2, 0, S), k: k.slice(2, 0, S), v: v.slice(2, 0, S), out: out.slice(2, 0, S) });
  const s = at(short), l = at(long), c = at(compareS);
  const lin = (x, o = {}) => attn.linearAttentionSync(x.q, x.k, x.v, { ...o, out: x.out });
  const t = { short: [], long: [], compare: [], softmax: [] };
  lin(s); // warm the pool and the scratch
  for (let round = 0; round < rounds; round++) {
    t.short.push(ms(() => lin(s)));
    t.long.push(ms(() => lin(l)));
    t.compare.push(ms(() => lin(c)));
    t.softmax.push(ms(() => attn.attentionSync(c.q, c.k, c.v, { causal: true, out: c.out })));
  }
  const shape = (S) => `B1 H${H} S${S} D${D} float32`;
  const rows = [];
  const shortMs = median(t.short), longMs = median(t.long);
  rows.push({ name: `linearAttention causal ${shape(short)}`, kind: 'time', ms: shortMs });
  rows.push({ name: `linearAttention causal ${shape(long)}`, kind: 'time', ms: longMs });
  rows.push({
    name: `linearAttention causal B1 H${H} D${D} float32: time(S=${long}) / time(S=${short})`, kind: 'scaling', ms: longMs, refMs: shortMs,
    ratio: longMs / shortMs, op: '<=', target: 9, detail: `${(longMs).toFixed(1)} ms vs ${shortMs.toFixed(1)} ms (ideal ${long / short}x)`,
  });
  const linMs = median(t.compare), softMs = median(t.softmax);
  rows.push({
    name: `causal softmax attention / linearAttention, ${shape(compareS)}`, kind: 'vs-softmax', ms: linMs, refMs: softMs,
    ratio: softMs / linMs, op: '>=', target: 10, detail: `attentionSync causal ${softMs.toFixed(1)} ms vs linearAttentionSync ${linMs.toFixed(1)} ms`,
  });

  // the other forms at the short length (information)
  const gScalar = attn.Tensor.from(random(H * short).map((x) => -0.05 * Math.abs(x)), [1, H, short]);
  const gDim = attn.Tensor.from(random(H * short * D).map((x) => -0.05 * Math.abs(x)), [1, H, short, D]);
  const forms = [
    ['decay 0.99 (RetNet / Lightning)', { decay: 0.99 }],
    ['scalar log gates [B,H,S] (Mamba-2 / simple GLA)', { logGates: gScalar }],
    ['per-dim log gates [B,H,S,Dk] (GLA)', { logGates: gDim }],
    ['elu1 + normalize', { featureMap: 'elu1', normalize: true }],
    ['non-causal', { causal: false }],
    ['non-causal efficient (Shen et al.)', { causal: false, featureMap: 'efficient' }],
  ];
  const ft = forms.map(() => []);
  for (let round = 0; round < rounds; round++) forms.forEach(([, o], i) => ft[i].push(ms(() => lin(s, o))));
  forms.forEach(([name], i) => rows.push({ name: `linearAttention ${name}, ${shape(short)}`, kind: 'info', ms: median(ft[i]), refMs: shortMs }));

  // decoding: one token per call into a state
  const state = attn.Tensor.zeros([1, H, D, D]);
  const one = { q: q.slice(2, 0, 1), k: k.slice(2, 0, 1), v: v.slice(2, 0, 1), out: out.slice(2, 0, 1) };
  const steps = 2000;
  for (let i = 0; i < 100; i++) attn.linearAttentionStepSync(one.q, one.k, one.v, state, { decay: 0.99, out: one.out });
  const stepMs = ms(() => { for (let i = 0; i < steps; i++) attn.linearAttentionStepSync(one.q, one.k, one.v, state, { decay: 0.99, out: one.out }); }) / steps;
  rows.push({ name: `linearAttentionStep, one token, B1 H${H} D${D} float32, decay`, kind: 'info', ms: stepMs });
  return rows;
}

function printRows(rows) {
  for (const r of rows) {
    const time = r.ms < 1 ? `${(r.ms * 1000).toFixed(1)} µs` : `${r.ms.toFixed(1)} ms`;
    if (r.target !== undefined) console.log(`  ${r.name}: ${r.ratio.toFixed(2)} (target ${r.op} ${r.target}): ${r.detail}`);
    else console.log(`  ${r.name}: ${time}${r.kind === 'info' && r.refMs ? ` (${(r.ms / r.refMs).toFixed(2)}x the plain causal form)` : ''}`);
  }
}

module.exports = { runLinearCpu, printRows };

if (require.main === module) {
  const quick = process.argv.includes('--quick');
  const [H, D] = [8, 64].map((x, i) => +(process.argv.filter((a) => !a.startsWith('--'))[2 + i] || x));
  console.log(`linear attention on the CPU, ${attn.backendInfo().cpu.threads} threads, ISA ${attn.backendInfo().cpu.isa}${quick ? ' (--quick: small sizes)' : ''}`);
  printRows(runLinearCpu(quick ? { H, D, short: 2048, long: 16384, compareS: 4096, rounds: 2 } : { H, D }));
}
