'use strict';
// Fused attention (attentionSync and attention) against the float64 oracle in attnkit/reference,
// over shapes, layouts, dtypes and every option of API.md, alone and combined. Every run writes
// into a NaN-poisoned `out`, so an element the kernel forgets to write fails the comparison.
//
// Replay a failure: ATTNKIT_SEED=<printed seed> npx jest test/attention.parity.test.js -t '<name>'
const { Tensor, attention, attentionSync } = require('..');
const { attentionReference, attentionNaiveJs, attentionTunedJs } = require('../dist/reference');
const { describeEachIsa } = require('./helpers/isa');
const R = require('./helpers/random');
const { TOL, relErr, lseErr, worst, toleranceChecker } = require('./helpers/compare');
// The case table and its input builders live in a helper shared with the GPU suite (test/gpu/run.js).
const { cases, byName, prepareCase } = require('./helpers/parity-cases');

R.announceSeed('attention.parity');

// lse is float32 whatever the inputs (which the oracle reads exactly), so one tolerance serves all.
const LSE_TOL = TOL.float32;

const check = toleranceChecker(R.BASE_SEED);

/** Runs one case through attentionSync and attention, each into a fresh poisoned out. */
async function runCase(c, modes = ['sync', 'async']) {
  const { q, k, v, opts, ref, outShape, outMode, outDtype, tol } = prepareCase(c, attentionReference);
  for (const mode of modes) {
    const out = outMode === 'none' ? undefined
      : outMode === 'contig' ? R.poisonedOut(outShape, outDtype) : R.stridedOut(outShape, outDtype);
    const call = { ...opts, out, returnLse: !!c.lse };
    const res = mode === 'sync' ? attentionSync(q.t, k.t, v.t, call) : await attention(q.t, k.t, v.t, call);
    const o = c.lse ? res.out : res;
    if (out) expect(o).toBe(out);
    expect(o.dtype).toBe(outDtype);
    expect(o.shape).toEqual(outShape);
    check(`${mode} out (${c.dtype} -> ${outDtype})`, relErr(o, ref.out), tol, () => worst(o, ref.out));
    if (c.lse) {
      expect(res.lse.dtype).toBe('float32');
      expect(res.lse.shape).toEqual([c.B, c.Hq, c.Sq]);
      check(`${mode} lse`, lseErr(res.lse, ref.lse), LSE_TOL, () => worst(res.lse, ref.lse));
    }
  }
  return ref;
}

// ---------------------------------------------------------------------------------------------
describe('fused attention vs float64 reference (sync + async, poisoned strided out)', () => {
  test.each(cases)('$name', async (c) => { await runCase(c); });
});

// Each CPU kernel ISA on a representative subset. setIsa caps at what the machine has.
const ISA_SUBSET = [
  'plain D=64 float32', 'plain D=80 float16', 'plain D=256 bfloat16', 'plain Sq>Sk', 'GQA Hq=8 Hkv=1',
  'causal Sq>Sk (fully masked rows)', 'window [6,3]', 'sinks=4 window [8,0]+causal', 'softcap=2',
  'alibi+causal', 'bias B1QK bfloat16', 'mask zero rows (fully masked)', 'sinkLogits + fully masked rows (causal Sq>Sk)',
  'out bfloat16 from q float32', 'layout bshd float16', 'layout padded bfloat16', 'layout qkv GQA float32',
  'varlen causal', 'all options float32', 'all options float16', 'all options varlen', 'Dv>D',
];
for (const n of ISA_SUBSET) if (!byName.has(n)) throw new Error(`ISA subset names unknown case ${n}`);

describeEachIsa(ISA_SUBSET, (name) => runCase(byName.get(name), ['sync', 'async']), { checkReported: true });

// ---------------------------------------------------------------------------------------------
describe('the oracle itself', () => {
  test('Sk=1: out = v, lse = score', () => {
    const q = Tensor.from(Float32Array.from([1, 2]), [1, 1, 1, 2]);
    const k = Tensor.from(Float32Array.from([3, -1]), [1, 1, 1, 2]);
    const v = Tensor.from(Float32Array.from([5, 7, 9]), [1, 1, 1, 3]);
    const ref = attentionReference(q, k, v, { scale: 0.5 });
    expect(Array.from(ref.out)).toEqual([5, 7, 9]);
    expect(ref.lse[0]).toBeCloseTo(0.5 * (3 - 2), 12);
  });
  test('scale 0: mean of the visible values, lse = log(count); causal bottom-right', () => {
    const r = R.rng('oracle-scale0');
    const q = R.randomTensor(r, [1, 1, 2, 4]).t, k = R.randomTensor(r, [1, 1, 3, 4]).t;
    const vv = Float32Array.from([1, 2, 4]);
    const v = Tensor.from(vv, [1, 1, 3, 1]);
    const ref = attentionReference(q, k, v, { scale: 0, causal: true });
    // row 0 sits at key 1 (Sk - Sq = 1): keys 0..1; row 1: keys 0..2
    expect(ref.out[0]).toBeCloseTo(1.5, 12);
    expect(ref.out[1]).toBeCloseTo(7 / 3, 12);
    expect(ref.lse[0]).toBeCloseTo(Math.log(2), 12);
    expect(ref.lse[1]).toBeCloseTo(Math.log(3), 12);
  });
  test('sink logit with no visible key: out 0, lse = sink', () => {
    const q = Tensor.from(new Float32Array(2).fill(1), [1, 1, 2, 1]);
    const k = Tensor.from(new Float32Array(1).fill(1), [1, 1, 1, 1]);
    const v = Tensor.from(new Float32Array(1).fill(3), [1, 1, 1, 1]);
    const ref = attentionReference(q, k, v, { causal: true, sinkLogits: Float32Array.from([0.25]), scale: 0 });
    expect(ref.out[0]).toBe(0);
    expect(ref.lse[0]).toBeCloseTo(0.25, 7);
    expect(ref.out[1]).toBeCloseTo(3 / (1 + Math.exp(0.25)), 7);
  });
});

// ---------------------------------------------------------------------------------------------
describe('pure-JS baselines (bench) vs the oracle', () => {
  const shapes = [
    { batch: 2, headsQ: 4, headsKv: 2, seqQ: 37, seqK: 150, headDim: 64, causal: false },
    { batch: 1, headsQ: 8, headsKv: 1, seqQ: 70, seqK: 70, headDim: 32, causal: true },
    { batch: 2, headsQ: 2, headsKv: 2, seqQ: 90, seqK: 40, headDim: 13, causal: true }, // rows with no key; D % 4 != 0
    { batch: 1, headsQ: 4, headsKv: 4, seqQ: 1, seqK: 130, headDim: 128, causal: true },
  ];
  test.each(shapes)('B=$batch Hq=$headsQ Hkv=$headsKv Sq=$seqQ Sk=$seqK D=$headDim causal=$causal', (s) => {
    const r = R.rng(`fast-js ${JSON.stringify(s)}`);
    const D = s.headDim;
    const q = r.randn(s.batch * s.headsQ * s.seqQ * D);
    const k = r.randn(s.batch * s.headsKv * s.seqK * D);
    const v = r.randn(s.batch * s.headsKv * s.seqK * D);
    const T = (a, H, S) => Tensor.from(a, [s.batch, H, S, D]);
    const ref = attentionReference(T(q, s.headsQ, s.seqQ), T(k, s.headsKv, s.seqK), T(v, s.headsKv, s.seqK), { causal: s.causal });
    const naive = attentionNaiveJs(q, k, v, s);
    const tuned = attentionTunedJs(q, k, v, s);
    expect(naive).toBeInstanceOf(Float32Array);
    expect(tuned).toBeInstanceOf(Float32Array);
    check('naive JS', relErr(naive, ref.out), TOL.float32, () => worst(naive, ref.out));
    check('tuned JS', relErr(tuned, ref.out), TOL.float32, () => worst(tuned, ref.out));
  });
});
