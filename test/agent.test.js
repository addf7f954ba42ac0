'use strict';
// Agent attention (agentAttentionSync / agentAttention): softmax(Q A^T) softmax(A K^T) V, against
// the float64 oracle agentAttentionReference (attnkit/reference) over shapes, GQA, broadcast agents,
// dtypes, strided inputs, scale, poisoned outputs; against its own definition as two attention
// calls; a long sequence (no Sq x Sk buffer); bad input.
//
// Tolerances: DESIGN.md's. The agent values pass through q's dtype between the two softmaxes (they
// are the second call's v), which the 16-bit tolerances absorb.
//
// Replay a failure: ATTNKIT_SEED=<printed seed> npx jest test/agent.test.js -t '<name>'
const { Tensor, agentAttention, agentAttentionSync, attentionSync, toFloat16 } = require('..');
const { agentAttentionReference } = require('../dist/reference');
const R = require('./helpers/random');
const { tolFor, relErr, worst, toleranceChecker } = require('./helpers/compare');
const { expectRefusedBothWays } = require('./helpers/bad-input');

R.announceSeed('agent');
const check = toleranceChecker(R.BASE_SEED);
const numel = (s) => s.reduce((a, b) => a * b, 1);

// { B, Hq, Hkv, Sq, Sk, D, Dv, nA, agents: 'BH' | 'B1' | '1H' | '11', dtype, layout, out, scale }
const CASES = [
  { name: 'plain', B: 2, Hq: 2, Hkv: 2, Sq: 70, Sk: 90, D: 16, Dv: 16, nA: 7, agents: 'BH' },
  { name: 'agents shared by batch and heads', B: 2, Hq: 3, Hkv: 3, Sq: 50, Sk: 130, D: 32, Dv: 24, nA: 16, agents: '11' },
  { name: 'agents per head', B: 2, Hq: 2, Hkv: 1, Sq: 65, Sk: 65, D: 8, Dv: 12, nA: 49, agents: '1H' },
  { name: 'agents per batch entry', B: 2, Hq: 4, Hkv: 2, Sq: 33, Sk: 200, D: 64, Dv: 64, nA: 9, agents: 'B1' },
  { name: 'one agent', B: 1, Hq: 2, Hkv: 2, Sq: 40, Sk: 40, D: 16, Dv: 8, nA: 1, agents: 'BH' },
  { name: 'GQA 4:1, Dv > D', B: 1, Hq: 4, Hkv: 1, Sq: 100, Sk: 150, D: 32, Dv: 80, nA: 12, agents: '1H' },
  { name: 'scale 0.2', B: 1, Hq: 2, Hkv: 2, Sq: 60, Sk: 60, D: 16, Dv: 16, nA: 5, agents: 'BH', scale: 0.2 },
  { name: 'float16 bshd', B: 2, Hq: 2, Hkv: 2, Sq: 70, Sk: 90, D: 64, Dv: 64, nA: 16, agents: '11', dtype: 'float16', layout: 'bshd' },
  { name: 'bfloat16 padded', B: 1, Hq: 3, Hkv: 1, Sq: 70, Sk: 90, D: 32, Dv: 16, nA: 8, agents: 'BH', dtype: 'bfloat16', layout: 'padded' },
  { name: 'out contiguous', B: 1, Hq: 2, Hkv: 2, Sq: 30, Sk: 45, D: 16, Dv: 16, nA: 4, agents: 'BH', out: 'contig' },
  { name: 'out none (library allocates)', B: 1, Hq: 2, Hkv: 2, Sq: 30, Sk: 45, D: 16, Dv: 16, nA: 4, agents: 'B1', out: 'none' },
];

function prepare(c) {
  const r = R.rng(c.name);
  const dtype = c.dtype || 'float32', layout = c.layout || 'bhsd';
  const q = R.randomTensor(r, [c.B, c.Hq, c.Sq, c.D], dtype, { layout });
  const k = R.randomTensor(r, [c.B, c.Hkv, c.Sk, c.D], dtype, { layout });
  const v = R.randomTensor(r, [c.B, c.Hkv, c.Sk, c.Dv], dtype, { layout });
  const aShape = [c.agents[0] === 'B' ? c.B : 1, c.agents[1] === 'H' ? c.Hq : 1, c.nA, c.D];
  const agents = R.randomTensor(r, aShape, dtype, { layout: c.layout === 'padded' ? 'padded' : 'bhsd' });
  const opts = c.scale === undefined ? {} : { scale: c.scale };
  return { q: q.t, k: k.t, v: v.t, agents: agents.t, opts, ref: agentAttentionReference(q.t, k.t, v.t, agents.t, opts), tol: tolFor(dtype) };
}

describe('agentAttention vs float64 reference (sync + async, poisoned out)', () => {
  test.each(CASES)('$name', async (c) => {
    const { q, k, v, agents, opts, ref, tol } = prepare(c);
    const shape = [c.B, c.Hq, c.Sq, c.Dv], dtype = c.dtype || 'float32';
    for (const mode of ['sync', 'async']) {
      const out = c.out === 'none' ? undefined : c.out === 'contig' ? R.poisonedOut(shape, dtype) : R.stridedOut(shape, dtype);
      const res = mode === 'sync' ? agentAttentionSync(q, k, v, agents, { ...opts, out }) : await agentAttention(q, k, v, agents, { ...opts, out });
      if (out) expect(res).toBe(out);
      expect(res.shape).toEqual(shape);
      expect(res.dtype).toBe(dtype);
      check(`${mode} out`, relErr(res, ref), tol, () => `${worst(res, ref)}\n  case: ${JSON.stringify(c)}`);
    }
  });

  test('is exactly two attention calls: agents attend k / v, then q attends the agents', () => {
    const { q, k, v, agents } = prepare(CASES[3]);
    const [B, Hq] = q.shape, nA = agents.shape[2], D = q.shape[3];
    const wide = agents.asStrided([B, Hq, nA, D], [agents.strides[0], 0, agents.strides[2], agents.strides[3]]);
    const values = attentionSync(wide, k, v);
    const want = attentionSync(q, wide, values).toFloat32Array();
    const got = agentAttentionSync(q, k, v, agents).toFloat32Array();
    expect(got.length).toBe(want.length);
    for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) throw new Error(`differs at ${i}: ${got[i]} vs ${want[i]}`);
  });

  test('a longer sequence (Sq = Sk = 4096, 8 agents) matches the reference', () => {
    const r = R.rng('long');
    // (each agent sums its softmax over every key in float32: the fused kernel's rounding grows with
    // the number of keys, ~3e-6 of max|out| at 4096 keys, ~5e-6 at 8192, ~1.5e-5 at 32768)
    const S = 4096, D = 16;
    const q = Tensor.from(r.randn(S * D), [1, 1, S, D]), k = Tensor.from(r.randn(S * D), [1, 1, S, D]);
    // v positive: an average of 4096 zero-mean values would cancel down to ~1/64 of them, and float32
    // accumulation error relative to that result would measure the cancellation, not the kernel
    const v = Tensor.from(r.rand(S * D, 0, 1), [1, 1, S, D]), agents = Tensor.from(r.randn(8 * D), [1, 1, 8, D]);
    const out = agentAttentionSync(q, k, v, agents);
    check('out', relErr(out, agentAttentionReference(q, k, v, agents)), tolFor('float32'));
  });
});

// ---------------------------------------------------------------------------------------------
const T = (shape, dtype = 'float32') => {
  const x = Float32Array.from({ length: numel(shape) }, (_, i) => Math.sin(i));
  return dtype === 'float32' ? Tensor.from(x, shape) : Tensor.from(toFloat16(x), shape, { dtype });
};
const base = (over = {}) => ({ q: T([2, 2, 5, 8]), k: T([2, 2, 6, 8]), v: T([2, 2, 6, 4]), agents: T([1, 2, 3, 8]), opts: undefined, ...over });
const aborted = () => { const c = new AbortController(); c.abort(); return c.signal; };
const BAD = [
  ['agents not a Tensor', () => base({ agents: [1, 2] }), 'ERR_ATTN_ARGUMENT', /agents/],
  ['agents rank 3', () => base({ agents: T([2, 3, 8]) }), 'ERR_ATTN_SHAPE', /agents/],
  ['agents head dim != q head dim', () => base({ agents: T([1, 2, 3, 4]) }), 'ERR_ATTN_SHAPE', /agents/],
  ['agents batch 3 for B = 2', () => base({ agents: T([3, 2, 3, 8]) }), 'ERR_ATTN_SHAPE', /agents/],
  ['agents heads 4 for Hq = 2', () => base({ agents: T([1, 4, 3, 8]) }), 'ERR_ATTN_SHAPE', /agents/],
  ['no agents (nA = 0)', () => base({ agents: T([1, 2, 0, 8]) }), 'ERR_ATTN_SHAPE', /agents/],
  ['agents float16, q float32', () => base({ agents: T([1, 2, 3, 8], 'float16') }), 'ERR_ATTN_DTYPE', /agents/],
  ['q rank 3', () => base({ q: T([2, 5, 8]) }), 'ERR_ATTN_SHAPE', /\bq\b/],
  ['k head dim != q head dim', () => base({ k: T([2, 2, 6, 4]) }), 'ERR_ATTN_SHAPE', /\bk\b/],
  ['v length != k length', () => base({ v: T([2, 2, 7, 4]) }), 'ERR_ATTN_SHAPE', /\bv\b/],
  ['out wrong shape', () => base({ opts: { out: T([2, 2, 5, 8]) } }), 'ERR_ATTN_SHAPE', /\bout\b/],
  ['negative scale', () => base({ opts: { scale: -1 } }), 'ERR_ATTN_ARGUMENT', /scale/],
  ['options not an object', () => base({ opts: 3 }), 'ERR_ATTN_ARGUMENT', /options/],
  ['signal already aborted', () => base({ opts: { signal: aborted() } }), 'ERR_ATTN_ABORTED', /aborted/],
];

describe('bad input: agentAttention', () => {
  test.each(BAD.map(([name, build, code, mention]) => ({ name, build, code, mention })))('$name -> $code', async ({ name, build, code, mention }) => {
    await expectRefusedBothWays(name, 'agentAttention', () => { const a = build(); return agentAttentionSync(a.q, a.k, a.v, a.agents, a.opts); },
      () => { const a = build(); return agentAttention(a.q, a.k, a.v, a.agents, a.opts); }, code, mention);
  });
});
