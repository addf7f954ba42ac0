'use strict';
// Linear attention on the CPU (linearAttentionSync / linearAttention, linearAttentionStepSync /
// linearAttentionStep) against the float64 oracles in attnkit/reference: the step-by-step recurrence
// (linearAttentionReference) and the quadratic masked form (linearAttentionQuadraticReference), which
// are also checked against each other. Random shapes (lengths that the chunk does not divide,
// Dk != Dv), every feature map, causal and not, decay (one lambda, one per head), log gates (per step,
// per key dimension), normalize, scale, initial / returned state, chunk sizes, dtypes, strided
// inputs, outputs poisoned with NaN, every ISA; the chunked form against the recurrent one token by
// token; state handed across calls; log gates of -20 per step over 65536 steps; bad input.
//
// Tolerances are DESIGN.md's (max|out - ref| / max|ref|), unloosened. With normalize and the
// identity feature map, q and k are drawn positive: a denominator phi(q) . z near zero is
// ill-conditioned in any precision (the feature maps elu1, relu and efficient are positive anyway).
//
// Replay a failure: ATTNKIT_SEED=<printed seed> npx jest test/linear.test.js -t '<name>'
const { types } = require('util');
const {
  Tensor, AttnError, linearAttention, linearAttentionSync, linearAttentionStep, linearAttentionStepSync, setNumThreads, backendInfo,
  toFloat16,
} = require('..');
const { linearAttentionReference, linearAttentionQuadraticReference } = require('../dist/reference');
const { describeEachIsa } = require('./helpers/isa');
const R = require('./helpers/random');
const { TOL, relErr, worst, toleranceChecker } = require('./helpers/compare');
const { cases, byName, prepare, describeCase, input } = require('./helpers/linear-cases');
const { expectRefusedBothWays } = require('./helpers/bad-input');

R.announceSeed('linear');
const check = toleranceChecker(R.BASE_SEED);

const numel = (s) => s.reduce((a, b) => a * b, 1);

/** Every element equal (NaN never is). */
function bitwiseEqual(what, a, b) {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) {
    if (!(a[i] === b[i])) throw new Error(`${what}: not bitwise equal at flat index ${i}: ${a[i]} vs ${b[i]}\n  replay: ATTNKIT_SEED=${R.BASE_SEED}`);
  }
}


/**
 * Runs one case through linearAttentionSync and linearAttention, each into a fresh poisoned out.
 * The sync result is held to the oracle, the async one bitwise to the sync one (the same work on
 * the same pool). The returned state (float32) is held to the fp32 tolerance.
 */
async function runCase(c, modes = ['sync', 'async']) {
  const { s, q, k, v, opts, ref, outMode, outDtype, tol } = prepare(c);
  const outShape = [s.B, s.H, s.S, s.Dv];
  const detail = (a, b) => () => `${worst(a, b)}\n  case: ${describeCase(c, s)}`;
  let first;
  for (const mode of modes) {
    const out = outMode === 'none' ? undefined : outMode === 'contig' ? R.poisonedOut(outShape, outDtype) : R.stridedOut(outShape, outDtype);
    const call = { ...opts, out };
    const res = mode === 'sync' ? linearAttentionSync(q.t, k.t, v.t, call) : await linearAttention(q.t, k.t, v.t, call);
    const o = opts.returnState ? res.out : res;
    if (out) expect(o).toBe(out);
    expect(o.dtype).toBe(outDtype);
    expect(o.shape).toEqual(outShape);
    if (opts.returnState) {
      expect(res.state.dtype).toBe('float32');
      expect(res.state.shape).toEqual([s.B, s.H, s.Dk, s.Dv]);
      if (opts.normalize) expect(res.normalizer.shape).toEqual([s.B, s.H, s.Dk]);
      else expect(res.normalizer).toBeUndefined();
    }
    const got = o.toFloat32Array();
    if (first === undefined) {
      first = { mode, out: got, state: opts.returnState ? res.state.toFloat32Array() : undefined };
      check(`${mode} out (${c.dtype || 'float32'} -> ${outDtype})`, relErr(got, ref.out), tol, detail(got, ref.out));
      if (opts.returnState) {
        check(`${mode} state`, relErr(first.state, ref.state), TOL.float32, detail(first.state, ref.state));
        if (opts.normalize) {
          const z = res.normalizer.toFloat32Array();
          check(`${mode} normalizer`, relErr(z, ref.normalizer), TOL.float32, detail(z, ref.normalizer));
        }
      }
    } else {
      bitwiseEqual(`${mode} out vs ${first.mode} out`, got, first.out);
      if (opts.returnState) bitwiseEqual(`${mode} state vs ${first.mode}`, res.state.toFloat32Array(), first.state);
    }
  }
}


describe('linearAttention vs float64 recurrence (sync + async, poisoned strided out)', () => {
  test.each(cases)('$name', async (c) => { await runCase(c); });
});

const ISA_SUBSET = [
  'identity causal no decay', 'elu1 causal decay scalar normalize', 'relu non-causal logGates perDim normalize', 'elu1 causal logGates perDim normalize',
  'efficient non-causal normalize', 'Dk=130 Dv=67', 'Dk=7 Dv=100 GLA', 'chunkSize 7 GLA normalize', 'chunkSize 1 scalar gates',
  'float16 GLA normalize elu1 + state', 'bfloat16 layout bshd scalar gates', 'initialState + normalize logGates scalar elu1',
  'layout padded float32 normalize', 'everything: GLA elu1 normalize scale state chunk 24 bshd',
];
for (const name of ISA_SUBSET) if (!byName.has(name)) throw new Error(`ISA subset names unknown case ${name}`);
describeEachIsa(ISA_SUBSET, (name) => runCase(byName.get(name)), { checkReported: true });

// ---------------------------------------------------------------------------------------------
describe('the oracles', () => {
  test('recurrence == quadratic form (float64), over options', () => {
    const r = R.rng('oracles');
    const B = 2, H = 2, S = 37, Dk = 5, Dv = 4;
    const T = (shape, positive) => input(r, shape, 'float32', 'bhsd', positive).t;
    const q = T([B, H, S, Dk], true), k = T([B, H, S, Dk], true), v = T([B, H, S, Dv]);
    const gs = Tensor.from(Float32Array.from({ length: B * H * S }, () => -r.uniform(0, 2)), [B, H, S]);
    const gd = Tensor.from(Float32Array.from({ length: B * H * S * Dk }, (_, i) => (i % 11 === 3 ? -Infinity : -r.uniform(0, 2))), [B, H, S, Dk]);
    const st = T([B, H, Dk, Dv]), z = T([B, H, Dk], true);
    for (const opts of [{}, { causal: false }, { decay: 0.7 }, { decay: [0.5, 1] }, { logGates: gs }, { logGates: gd, causal: false },
      { featureMap: 'elu1', normalize: true, logGates: gd, initialState: st, initialNormalizer: z }, { featureMap: 'efficient', causal: false, normalize: true },
      { featureMap: 'relu', scale: 0.4, initialState: st, logGates: gs, causal: false }]) {
      const a = linearAttentionReference(q, k, v, opts), b = linearAttentionQuadraticReference(q, k, v, opts);
      expect(relErr(a.out, b.out)).toBeLessThan(1e-12);
      expect(relErr(a.state, b.state)).toBeLessThan(1e-12);
      if (opts.normalize) expect(relErr(a.normalizer, b.normalizer)).toBeLessThan(1e-12);
    }
  });

  test('a hand example: decay 0.5, Dk = Dv = 1', () => {
    const q = Tensor.from(Float32Array.of(1, 2, 3), [1, 1, 3, 1]);
    const k = Tensor.from(Float32Array.of(1, 1, 2), [1, 1, 3, 1]);
    const v = Tensor.from(Float32Array.of(4, 8, 1), [1, 1, 3, 1]);
    // S_1 = 4, S_2 = 0.5 * 4 + 8 = 10, S_3 = 0.5 * 10 + 2 = 7; out = q S
    const ref = linearAttentionReference(q, k, v, { decay: 0.5 });
    expect(Array.from(ref.out)).toEqual([4, 20, 21]);
    expect(Array.from(ref.state)).toEqual([7]);
    expect(Array.from(linearAttentionReference(q, k, v, { decay: 0.5, causal: false }).out)).toEqual([7, 14, 21]);
    const norm = linearAttentionReference(q, k, v, { decay: 0.5, normalize: true });
    // z: 1, 1.5, 2.75
    expect(norm.out[2]).toBeCloseTo(21 / (3 * 2.75 + 1e-10), 12);
    expect(Array.from(norm.normalizer)).toEqual([2.75]);
    expect(relErr(linearAttentionSync(q, k, v, { decay: 0.5 }), ref.out)).toBeLessThan(1e-6);
  });
});

// ---------------------------------------------------------------------------------------------
// Forms that must agree
// ---------------------------------------------------------------------------------------------
function problem(label, { B = 2, H = 2, S = 150, Dk = 12, Dv = 10, gates = 'perDim', normalize = true, featureMap = 'elu1', initial = true } = {}) {
  const r = R.rng(label);
  const q = input(r, [B, H, S, Dk], 'float32', 'bhsd').t, k = input(r, [B, H, S, Dk], 'float32', 'bhsd').t;
  const v = input(r, [B, H, S, Dv], 'float32', 'bhsd').t;
  const gshape = gates === 'perDim' ? [B, H, S, Dk] : [B, H, S];
  const logGates = gates ? Tensor.from(Float32Array.from({ length: numel(gshape) }, () => -r.uniform(0, 0.5)), gshape) : undefined;
  const state = initial ? Tensor.from(r.randn(B * H * Dk * Dv, 0.5), [B, H, Dk, Dv]) : undefined;
  const z = initial && normalize ? Tensor.from(Float32Array.from({ length: B * H * Dk }, () => r.uniform(0.5, 2)), [B, H, Dk]) : undefined;
  const opts = { featureMap, normalize, logGates, initialState: state, initialNormalizer: z };
  return { B, H, S, Dk, Dv, q, k, v, logGates, opts };
}

// gates: 'perDim' | 'scalar' | null (none).
/** The per-step inputs t0 .. t1 of a problem: zero-copy slices along the sequence. */
const rows = (t, t0, t1) => t.slice(2, t0, t1);

function copyState(t) { return t ? Tensor.from(t.toFloat32Array(), t.shape.slice()) : undefined; }

describe('chunked == recurrent step by step == quadratic form', () => {
  for (const gates of ['perDim', 'scalar', null]) {
    test(`logGates ${gates ?? 'none'}: linearAttention (chunk 16) == linearAttentionStep over every token == both oracles`, async () => {
      const p = problem(`steps ${gates}`, { gates, S: 70 });
      const quad = linearAttentionQuadraticReference(p.q, p.k, p.v, p.opts);
      const rec = linearAttentionReference(p.q, p.k, p.v, p.opts);
      expect(relErr(rec.out, quad.out)).toBeLessThan(1e-12);
      const chunked = linearAttentionSync(p.q, p.k, p.v, { ...p.opts, chunkSize: 16, returnState: true });
      check('chunked vs quadratic', relErr(chunked.out, quad.out), TOL.float32, () => worst(chunked.out, quad.out));
      // one token at a time, sync and async alternating; then three at a time
      for (const T of [1, 3]) {
        const state = copyState(p.opts.initialState) ?? Tensor.zeros([p.B, p.H, p.Dk, p.Dv]);
        const normalizer = copyState(p.opts.initialNormalizer);
        const out = new Float32Array(p.B * p.H * p.S * p.Dv).fill(NaN);
        const outT = Tensor.from(out, [p.B, p.H, p.S, p.Dv]);
        for (let t = 0; t < p.S; t += T) {
          const t1 = Math.min(p.S, t + T);
          const opts = { featureMap: p.opts.featureMap, normalize: p.opts.normalize, normalizer, out: rows(outT, t, t1) };
          if (p.logGates) opts.logGates = rows(p.logGates, t, t1);
          const step = [rows(p.q, t, t1), rows(p.k, t, t1), rows(p.v, t, t1), state];
          const o = (t / T) % 2 ? await linearAttentionStep(...step, opts) : linearAttentionStepSync(...step, opts);
          expect(o).toBe(opts.out);
        }
        check(`steps of ${T} vs quadratic`, relErr(out, quad.out), TOL.float32, () => worst(out, quad.out));
        check(`state after steps of ${T}`, relErr(state.toFloat32Array(), quad.state), TOL.float32);
        if (normalizer) check(`normalizer after steps of ${T}`, relErr(normalizer.toFloat32Array(), quad.normalizer), TOL.float32);
        check(`steps of ${T} vs chunked`, relErr(out, chunked.out.toFloat32Array()), TOL.float32);
      }
    });
  }

  test('decay per head, relu, no normalize: steps == chunked', () => {
    const p = problem('steps decay', { gates: null, normalize: false, featureMap: 'relu', H: 3 });
    p.opts.decay = Float32Array.of(0.9, 1, 0.3);
    const chunked = linearAttentionSync(p.q, p.k, p.v, { ...p.opts, returnState: true });
    const state = copyState(p.opts.initialState);
    const outs = [];
    for (let t = 0; t < p.S; t++) {
      outs.push(linearAttentionStepSync(rows(p.q, t, t + 1), rows(p.k, t, t + 1), rows(p.v, t, t + 1), state,
        { decay: p.opts.decay, featureMap: 'relu' }).toFloat32Array());
    }
    const ref = linearAttentionReference(p.q, p.k, p.v, p.opts);
    const stepped = new Float32Array(ref.out.length);
    for (let t = 0; t < p.S; t++) for (let bh = 0; bh < p.B * p.H; bh++) stepped.set(outs[t].subarray(bh * p.Dv, (bh + 1) * p.Dv), (bh * p.S + t) * p.Dv);
    check('steps vs reference', relErr(stepped, ref.out), TOL.float32, () => worst(stepped, ref.out));
    check('chunked vs reference', relErr(chunked.out, ref.out), TOL.float32);
    check('state', relErr(state.toFloat32Array(), ref.state), TOL.float32);
  });
});

describe('steps on the caller\'s state rows (Dv a multiple of 16, no normalize: updated without a copy)', () => {
  const threads = backendInfo().cpu.threads;
  afterAll(() => { setNumThreads(threads); });
  for (const [label, Dv, rowPad, nThreads] of [['contiguous state, Dv 32', 32, 0, threads], ['padded state rows, Dv 48, 3 threads', 48, 16, 3],
    ['padded state rows, Dv 64, 8 threads (column blocks)', 64, 5, 8]]) {
    test(label, () => {
      setNumThreads(nThreads);
      const p = problem(`in place ${label}`, { B: 1, H: 2, S: 40, Dk: 16, Dv, gates: 'perDim', normalize: false, featureMap: 'identity' });
      const ref = linearAttentionReference(p.q, p.k, p.v, p.opts);
      // state [B, H, Dk, Dv] inside rows of Dv + rowPad floats (the padding poisoned: never touched)
      const ld = Dv + rowPad, init = p.opts.initialState.toFloat32Array();
      const data = new Float32Array(p.B * p.H * p.Dk * ld).fill(NaN);
      for (let r = 0; r < p.B * p.H * p.Dk; r++) data.set(init.subarray(r * Dv, (r + 1) * Dv), r * ld);
      const state = Tensor.from(data, [p.B, p.H, p.Dk, Dv], { strides: [p.H * p.Dk * ld, p.Dk * ld, ld, 1] });
      const out = Tensor.from(new Float32Array(p.B * p.H * p.S * Dv).fill(NaN), [p.B, p.H, p.S, Dv]);
      for (let t = 0; t < p.S; t++) {
        linearAttentionStepSync(rows(p.q, t, t + 1), rows(p.k, t, t + 1), rows(p.v, t, t + 1), state,
          { logGates: rows(p.logGates, t, t + 1), out: rows(out, t, t + 1) });
      }
      check('out', relErr(out, ref.out), TOL.float32, () => worst(out, ref.out));
      check('state', relErr(state.toFloat32Array(), ref.state), TOL.float32);
      for (let r = 0; r < p.B * p.H * p.Dk; r++) for (let c = Dv; c < ld; c++) expect(Number.isNaN(data[r * ld + c])).toBe(true);
    });
  }
});

describe('state handed across calls == one call over the concatenation', () => {
  for (const [label, o] of [['GLA elu1 normalize', {}], ['scalar gates identity', { gates: 'scalar', normalize: false, featureMap: 'identity' }],
    ['no decay relu normalize', { gates: null, featureMap: 'relu' }]]) {
    test(label, async () => {
      const p = problem(`handoff ${label}`, { S: 237, ...o });
      const whole = linearAttentionSync(p.q, p.k, p.v, { ...p.opts, returnState: true });
      for (const split of [1, 100, 128, 236]) {
        const part = (t0, t1) => [rows(p.q, t0, t1), rows(p.k, t0, t1), rows(p.v, t0, t1)];
        const g = (t0, t1) => (p.logGates ? { logGates: rows(p.logGates, t0, t1) } : {});
        const first = linearAttentionSync(...part(0, split), { ...p.opts, ...g(0, split), returnState: true });
        const second = await linearAttention(...part(split, p.S), {
          ...p.opts, ...g(split, p.S), initialState: first.state, initialNormalizer: first.normalizer, returnState: true, chunkSize: 50,
        });
        const a = first.out.toFloat32Array(), b = second.out.toFloat32Array();
        const joined = new Float32Array(a.length + b.length);
        for (let bh = 0; bh < p.B * p.H; bh++) {
          joined.set(a.subarray(bh * split * p.Dv, (bh + 1) * split * p.Dv), bh * p.S * p.Dv);
          joined.set(b.subarray(bh * (p.S - split) * p.Dv, (bh + 1) * (p.S - split) * p.Dv), (bh * p.S + split) * p.Dv);
        }
        const w = whole.out.toFloat32Array();
        check(`split at ${split}: out`, relErr(joined, w), TOL.float32, () => worst(joined, w));
        check(`split at ${split}: state`, relErr(second.state.toFloat32Array(), whole.state.toFloat32Array()), TOL.float32);
        if (p.opts.normalize) check(`split at ${split}: normalizer`, relErr(second.normalizer.toFloat32Array(), whole.normalizer.toFloat32Array()), TOL.float32);
      }
    });
  }

  test('prefill hands its state to decoding steps (bfloat16 inputs, per-dim gates)', () => {
    const r = R.rng('prefill');
    const B = 1, H = 2, S = 90, P = 77, Dk = 16, Dv = 24;
    const q = input(r, [B, H, S, Dk], 'bfloat16', 'bshd'), k = input(r, [B, H, S, Dk], 'bfloat16', 'bshd');
    const v = input(r, [B, H, S, Dv], 'bfloat16', 'bshd');
    const g = Tensor.from(Float32Array.from({ length: B * H * S * Dk }, () => -r.uniform(0, 0.3)), [B, H, S, Dk]);
    const base = { featureMap: 'elu1', normalize: true };
    const ref = linearAttentionReference(q.t, k.t, v.t, { ...base, logGates: g });
    const pre = linearAttentionSync(rows(q.t, 0, P), rows(k.t, 0, P), rows(v.t, 0, P), { ...base, logGates: rows(g, 0, P), returnState: true });
    const decoded = [];
    for (let t = P; t < S; t++) {
      decoded.push(linearAttentionStepSync(rows(q.t, t, t + 1), rows(k.t, t, t + 1), rows(v.t, t, t + 1), pre.state,
        { ...base, normalizer: pre.normalizer, logGates: rows(g, t, t + 1) }).toFloat32Array());
    }
    const want = [], got = [];
    for (let t = P; t < S; t++) {
      for (let h = 0; h < H; h++) {
        for (let c = 0; c < Dv; c++) { want.push(ref.out[(h * S + t) * Dv + c]); got.push(decoded[t - P][h * Dv + c]); }
      }
    }
    check('decoded rows', relErr(Float32Array.from(got), Float64Array.from(want)), TOL.bfloat16);
    check('final state', relErr(pre.state.toFloat32Array(), ref.state), TOL.float32);
  });
});

// ---------------------------------------------------------------------------------------------
describe('log space: strong gates over long sequences stay finite and exact', () => {
  const S = 65536, B = 1, H = 1, Dk = 8, Dv = 8;
  const big = (() => {
    const r = R.rng('long');
    return { q: input(r, [B, H, S, Dk], 'float32', 'bhsd').t, k: input(r, [B, H, S, Dk], 'float32', 'bhsd').t, v: input(r, [B, H, S, Dv], 'float32', 'bhsd').t, r };
  })();
  const finite = (a) => a.every((x) => Number.isFinite(x));
  const gateTensors = {
    'scalar -20 per step': () => Tensor.from(new Float32Array(B * H * S).fill(-20), [B, H, S]),
    'per-dim -20 per step': () => Tensor.from(new Float32Array(B * H * S * Dk).fill(-20), [B, H, S, Dk]),
    // tiny gates beside huge ones (and some full resets): the chunk cumsums reach -1e3 and more, and
    // the small gates after a huge one must keep their digits
    'scalar mixed: -20, -1e-3, -Infinity': () => Tensor.from(Float32Array.from({ length: B * H * S },
      () => { const x = big.r.random(); return x < 0.3 ? -20 : x < 0.301 ? -Infinity : -big.r.uniform(0, 1e-3); }), [B, H, S]),
    'per-dim mixed: -20 and -1e-3': () => Tensor.from(Float32Array.from({ length: B * H * S * Dk },
      () => (big.r.random() < 0.3 ? -20 : -big.r.uniform(0, 1e-3))), [B, H, S, Dk]),
  };
  for (const [name, make] of Object.entries(gateTensors)) {
    test(name, () => {
      const logGates = make();
      for (const normalize of [false, true]) {
        const opts = { logGates, normalize, featureMap: normalize ? 'elu1' : 'identity' };
        const res = linearAttentionSync(big.q, big.k, big.v, { ...opts, returnState: true, out: R.poisonedOut([B, H, S, Dv]) });
        const out = res.out.toFloat32Array(), state = res.state.toFloat32Array();
        expect(finite(out)).toBe(true);
        expect(finite(state)).toBe(true);
        const ref = linearAttentionReference(big.q, big.k, big.v, opts);
        check(`out${normalize ? ' (normalize)' : ''}`, relErr(out, ref.out), TOL.float32, () => worst(out, ref.out));
        check(`state${normalize ? ' (normalize)' : ''}`, relErr(state, ref.state), TOL.float32, () => worst(state, ref.state));
      }
    });
  }
  test('decay 1e-30 (the smallest lambdas) over the long sequence', () => {
    const res = linearAttentionSync(big.q, big.k, big.v, { decay: 1e-30, chunkSize: 1024 });
    const ref = linearAttentionReference(big.q, big.k, big.v, { decay: 1e-30 });
    const out = res.toFloat32Array();
    expect(finite(out)).toBe(true);
    check('out', relErr(out, ref.out), TOL.float32, () => worst(out, ref.out));
  });
});

// ---------------------------------------------------------------------------------------------
describe('threads and partitions', () => {
  const threads = backendInfo().cpu.threads;
  afterAll(() => { setNumThreads(threads); });
  test('1, 3 and 8 threads give bitwise equal results (value columns split when B * H is small)', () => {
    for (const [label, B, H, Dv, o] of [['B1 H1 Dv 70 GLA normalize', 1, 1, 70, { gates: 'perDim', normalize: true }],
      ['B1 H3 Dv 40 decay', 1, 3, 40, { gates: null, normalize: false, featureMap: 'identity' }]]) {
      const p = problem(`threads ${label}`, { B, H, Dv, S: 130, ...o });
      if (o.gates === null) p.opts.decay = 0.95;
      const results = [1, 3, 8].map((t) => {
        setNumThreads(t);
        const res = linearAttentionSync(p.q, p.k, p.v, { ...p.opts, returnState: true });
        return { out: res.out.toFloat32Array(), state: res.state.toFloat32Array(), z: res.normalizer && res.normalizer.toFloat32Array() };
      });
      for (const r of results.slice(1)) {
        bitwiseEqual(`${label} out`, r.out, results[0].out);
        bitwiseEqual(`${label} state`, r.state, results[0].state);
        if (r.z) bitwiseEqual(`${label} normalizer`, r.z, results[0].z);
      }
      const ref = linearAttentionReference(p.q, p.k, p.v, p.opts);
      check(`${label} vs reference`, relErr(results[0].out, ref.out), TOL.float32);
    }
  });
});

describe('calls', () => {
  test('a step updates its state and normalizer in place, through strided views', () => {
    const r = R.rng('strided state');
    const B = 2, H = 2, Dk = 6, Dv = 5;
    // state [B, H, Dk, Dv] as a transposed view of [B, H, Dv, Dk] storage, normalizer with a gap
    const stData = r.randn(B * H * Dv * Dk);
    const state = Tensor.from(stData, [B, H, Dv, Dk]).transpose(2, 3);
    const zData = new Float32Array(B * H * Dk * 2);
    for (let i = 0; i < zData.length; i++) zData[i] = i % 2 ? NaN : r.uniform(0.5, 1);
    const normalizer = Tensor.from(zData, [B, H, Dk], { strides: [H * Dk * 2, Dk * 2, 2] });
    const q = input(r, [B, H, 1, Dk], 'float32', 'padded').t, k = input(r, [B, H, 1, Dk], 'float32', 'bhsd').t;
    const v = input(r, [B, H, 1, Dv], 'float32', 'bhsd').t;
    const opts = { normalize: true, featureMap: 'elu1', decay: 0.8 };
    const ref = linearAttentionReference(q, k, v, { ...opts, initialState: state, initialNormalizer: normalizer });
    const out = linearAttentionStepSync(q, k, v, state, { ...opts, normalizer, out: R.stridedOut([B, H, 1, Dv]) });
    check('out', relErr(out, ref.out), TOL.float32);
    check('state', relErr(state.toFloat32Array(), ref.state), TOL.float32);
    check('normalizer', relErr(normalizer.toFloat32Array(), ref.normalizer), TOL.float32);
    for (let i = 1; i < zData.length; i += 2) expect(Number.isNaN(zData[i])).toBe(true); // gaps untouched
  });

  test('an aborted signal rejects before anything runs; a step\'s state is untouched', async () => {
    const p = problem('abort', { S: 20 });
    const ac = new AbortController();
    ac.abort();
    await expect(linearAttention(p.q, p.k, p.v, { ...p.opts, signal: ac.signal })).rejects.toMatchObject({ code: 'ERR_ATTN_ABORTED' });
    expect(() => linearAttentionSync(p.q, p.k, p.v, { ...p.opts, signal: ac.signal })).toThrow(expect.objectContaining({ code: 'ERR_ATTN_ABORTED' }));
    const state = copyState(p.opts.initialState), before = state.toFloat32Array();
    await expect(linearAttentionStep(rows(p.q, 0, 1), rows(p.k, 0, 1), rows(p.v, 0, 1), state,
      { normalize: true, normalizer: copyState(p.opts.initialNormalizer), signal: ac.signal })).rejects.toMatchObject({ code: 'ERR_ATTN_ABORTED' });
    bitwiseEqual('state after an aborted step', state.toFloat32Array(), before);
  });

  test('abort during a long call rejects with ERR_ATTN_ABORTED', async () => {
    const S = 1 << 16, D = 64;
    const r = R.rng('abort long');
    const q = Tensor.from(r.randn(S * D), [1, 1, S, D]);
    const ac = new AbortController();
    const p = linearAttention(q, q, q, { logGates: Tensor.from(new Float32Array(S * D).fill(-0.1), [1, 1, S, D]), signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'ERR_ATTN_ABORTED' });
  });

  test('a large async call (on a worker) resolves with the out it was given, equal to the sync one', async () => {
    const p = problem('async', { S: 2000, Dk: 64, Dv: 64, B: 1, H: 4 });
    const out = Tensor.empty([1, 4, 2000, 64]);
    const pending = linearAttention(p.q, p.k, p.v, { ...p.opts, out });
    expect(types.isPromise(pending)).toBe(true);
    expect(await pending).toBe(out);
    bitwiseEqual('async vs sync', out.toFloat32Array(), linearAttentionSync(p.q, p.k, p.v, p.opts).toFloat32Array());
  });
});

// ---------------------------------------------------------------------------------------------
// Bad input: sync throws, async rejects (never throws), each with a stable code naming the argument.
// ---------------------------------------------------------------------------------------------
const B0 = 1, H0 = 2, S0 = 5, DK = 4, DV = 3;
let bseed = 7;
function f32(n) { const a = new Float32Array(n); for (let i = 0; i < n; i++) { bseed = (bseed * 1103515245 + 12345) & 0x7fffffff; a[i] = bseed / 0x7fffffff - 0.5; } return a; }
const T = (shape, dtype = 'float32') => {
  if (dtype === 'float32') return Tensor.from(f32(numel(shape)), shape);
  if (dtype === 'float16' || dtype === 'bfloat16') return Tensor.from(toFloat16(f32(numel(shape))), shape, { dtype });
  if (dtype === 'int32') return Tensor.from(new Int32Array(numel(shape)), shape);
  return Tensor.from(new Uint8Array(numel(shape)), shape);
};
const gates = (shape, fill) => Tensor.from(new Float32Array(numel(shape)).fill(fill), shape);
function shrunk(shape, keepElems) {
  const n = numel(shape) + 16;
  const rab = new ArrayBuffer(n * 4, { maxByteLength: n * 4 });
  const t = Tensor.from(new Float32Array(rab), shape);
  rab.resize(keepElems * 4);
  return t;
}
function detached(shape) {
  const t = T(shape);
  structuredClone(t.data.buffer, { transfer: [t.data.buffer] });
  return t;
}
const qs = [B0, H0, S0, DK], vs = [B0, H0, S0, DV], stS = [B0, H0, DK, DV], zS = [B0, H0, DK];
function base(over = {}) {
  return { q: over.q ?? T(qs), k: over.k ?? T(qs), v: over.v ?? T(vs), opts: over.opts };
}
const aborted = () => { const c = new AbortController(); c.abort(); return c.signal; };

const LINEAR_BAD = [
  ['q not a Tensor', () => base({ q: new Float32Array(4) }), 'ERR_ATTN_ARGUMENT', /\bq\b/],
  ['q rank 3', () => base({ q: T([H0, S0, DK]) }), 'ERR_ATTN_SHAPE', /\bq\b/],
  ['k rank 5', () => base({ k: T([B0, H0, S0, DK, 1]) }), 'ERR_ATTN_SHAPE', /\bk\b/],
  ['k key dim != q key dim', () => base({ k: T([B0, H0, S0, DK + 1]) }), 'ERR_ATTN_SHAPE', /\bk\b/],
  ['k length != q length', () => base({ k: T([B0, H0, S0 + 1, DK]) }), 'ERR_ATTN_SHAPE', /\bk\b/],
  ['k heads != q heads', () => base({ k: T([B0, 1, S0, DK]) }), 'ERR_ATTN_SHAPE', /\bk\b/],
  ['v batch != q batch', () => base({ v: T([2, H0, S0, DV]) }), 'ERR_ATTN_SHAPE', /\bv\b/],
  ['v length != q length', () => base({ v: T([B0, H0, S0 - 1, DV]) }), 'ERR_ATTN_SHAPE', /\bv\b/],
  ['Dk = 0', () => base({ q: T([B0, H0, S0, 0]), k: T([B0, H0, S0, 0]) }), 'ERR_ATTN_SHAPE', /Dk|key dim/],
  ['Dv = 0', () => base({ v: T([B0, H0, S0, 0]) }), 'ERR_ATTN_SHAPE', /Dv|value dim/],
  ['k float16, q float32', () => base({ k: T(qs, 'float16') }), 'ERR_ATTN_DTYPE', /\bk\b/],
  ['v bfloat16, q float32', () => base({ v: T(vs, 'bfloat16') }), 'ERR_ATTN_DTYPE', /\bv\b/],
  ['q int32', () => base({ q: T(qs, 'int32'), k: T(qs, 'int32'), v: T(vs, 'int32') }), 'ERR_ATTN_DTYPE', /\bq\b/],
  ['out wrong shape', () => base({ opts: { out: T([B0, H0, S0, DV + 1]) } }), 'ERR_ATTN_SHAPE', /\bout\b/],
  ['out uint8', () => base({ opts: { out: T([B0, H0, S0, DV], 'uint8') } }), 'ERR_ATTN_DTYPE', /\bout\b/],
  ['out with overlapping strides', () => base({ opts: { out: Tensor.from(new Float32Array(64), [B0, H0, S0, DV], { strides: [0, 1, 1, 1] }) } }), 'ERR_ATTN_ARGUMENT', /\bout\b/],
  ['q over a shrunk resizable buffer', () => base({ q: shrunk(qs, 5) }), 'ERR_ATTN_ARGUMENT', /\bq\b/],
  ['v over a detached buffer', () => base({ v: detached(vs) }), 'ERR_ATTN_ARGUMENT', /\bv\b/],
  ['options not an object', () => base({ opts: 5 }), 'ERR_ATTN_ARGUMENT', /options/],
  ['decay 0', () => base({ opts: { decay: 0 } }), 'ERR_ATTN_ARGUMENT', /decay/],
  ['decay 1.5', () => base({ opts: { decay: 1.5 } }), 'ERR_ATTN_ARGUMENT', /decay/],
  ['decay -0.5', () => base({ opts: { decay: -0.5 } }), 'ERR_ATTN_ARGUMENT', /decay/],
  ['decay NaN', () => base({ opts: { decay: NaN } }), 'ERR_ATTN_ARGUMENT', /decay/],
  ['decay per head: wrong length', () => base({ opts: { decay: Float32Array.of(0.5) } }), 'ERR_ATTN_ARGUMENT', /decay/],
  ['decay per head: a 0', () => base({ opts: { decay: [0.5, 0] } }), 'ERR_ATTN_ARGUMENT', /decay\[1\]/],
  ['decay per head: a NaN', () => base({ opts: { decay: Float32Array.of(NaN, 0.5) } }), 'ERR_ATTN_ARGUMENT', /decay\[0\]/],
  ['decay a string', () => base({ opts: { decay: '0.5' } }), 'ERR_ATTN_ARGUMENT', /decay/],
  ['decay and logGates both', () => base({ opts: { decay: 0.5, logGates: gates([B0, H0, S0], -0.1) } }), 'ERR_ATTN_ARGUMENT', /decay and logGates/],
  ['logGates wrong shape', () => base({ opts: { logGates: gates([B0, H0, S0 + 1], -0.1) } }), 'ERR_ATTN_SHAPE', /logGates/],
  ['logGates [B, H, S, Dv] (not Dk)', () => base({ opts: { logGates: gates([B0, H0, S0, DV], -0.1) } }), 'ERR_ATTN_SHAPE', /logGates/],
  ['logGates positive', () => base({ opts: { logGates: gates([B0, H0, S0], 0.1) } }), 'ERR_ATTN_ARGUMENT', /logGates/],
  ['logGates NaN', () => base({ opts: { logGates: gates([B0, H0, S0, DK], NaN) } }), 'ERR_ATTN_ARGUMENT', /logGates/],
  ['logGates +Infinity (float16)', () => base({ opts: { logGates: Tensor.from(new Uint16Array(B0 * H0 * S0).fill(0x7c00), [B0, H0, S0], { dtype: 'float16' }) } }), 'ERR_ATTN_ARGUMENT', /logGates/],
  ['logGates int32', () => base({ opts: { logGates: T([B0, H0, S0], 'int32') } }), 'ERR_ATTN_DTYPE', /logGates/],
  ['logGates not a Tensor', () => base({ opts: { logGates: new Float32Array(10) } }), 'ERR_ATTN_ARGUMENT', /logGates/],
  ['initialState wrong shape', () => base({ opts: { initialState: T([B0, H0, DV, DK]) } }), 'ERR_ATTN_SHAPE', /initialState/],
  ['initialState rank 3', () => base({ opts: { initialState: T([H0, DK, DV]) } }), 'ERR_ATTN_SHAPE', /initialState/],
  ['initialState float16', () => base({ opts: { initialState: T(stS, 'float16') } }), 'ERR_ATTN_DTYPE', /initialState/],
  ['initialState over a shrunk buffer', () => base({ opts: { initialState: shrunk(stS, 3) } }), 'ERR_ATTN_ARGUMENT', /initialState/],
  ['initialNormalizer without normalize', () => base({ opts: { initialNormalizer: T(zS) } }), 'ERR_ATTN_ARGUMENT', /initialNormalizer/],
  ['normalize: initialState without initialNormalizer', () => base({ opts: { normalize: true, initialState: T(stS) } }), 'ERR_ATTN_ARGUMENT', /initialNormalizer/],
  ['initialNormalizer wrong shape', () => base({ opts: { normalize: true, initialState: T(stS), initialNormalizer: T([B0, H0, DV]) } }), 'ERR_ATTN_SHAPE', /initialNormalizer/],
  ['efficient + causal (the default)', () => base({ opts: { featureMap: 'efficient' } }), 'ERR_ATTN_ARGUMENT', /efficient/],
  ['efficient + decay', () => base({ opts: { featureMap: 'efficient', causal: false, decay: 0.5 } }), 'ERR_ATTN_ARGUMENT', /efficient/],
  ['efficient + initialState', () => base({ opts: { featureMap: 'efficient', causal: false, initialState: T(stS) } }), 'ERR_ATTN_ARGUMENT', /efficient/],
  ['unknown featureMap', () => base({ opts: { featureMap: 'softmax' } }), 'ERR_ATTN_ARGUMENT', /featureMap/],
  ['chunkSize 0', () => base({ opts: { chunkSize: 0 } }), 'ERR_ATTN_ARGUMENT', /chunkSize/],
  ['chunkSize -3', () => base({ opts: { chunkSize: -3 } }), 'ERR_ATTN_ARGUMENT', /chunkSize/],
  ['chunkSize 1.5', () => base({ opts: { chunkSize: 1.5 } }), 'ERR_ATTN_ARGUMENT', /chunkSize/],
  ['chunkSize 4096', () => base({ opts: { chunkSize: 4096 } }), 'ERR_ATTN_ARGUMENT', /chunkSize/],
  ['chunkSize NaN', () => base({ opts: { chunkSize: NaN } }), 'ERR_ATTN_ARGUMENT', /chunkSize/],
  ['chunkSize a string', () => base({ opts: { chunkSize: '64' } }), 'ERR_ATTN_ARGUMENT', /chunkSize/],
  ['scale NaN', () => base({ opts: { scale: NaN } }), 'ERR_ATTN_ARGUMENT', /scale/],
  ['scale Infinity', () => base({ opts: { scale: Infinity } }), 'ERR_ATTN_ARGUMENT', /scale/],
  ['signal already aborted', () => base({ opts: { signal: aborted() } }), 'ERR_ATTN_ABORTED', /aborted/],
  ['signal not an AbortSignal', () => base({ opts: { signal: {} } }), 'ERR_ATTN_ARGUMENT', /signal/],
];

describe('bad input: linearAttention', () => {
  test.each(LINEAR_BAD.map(([name, build, code, mention]) => ({ name, build, code, mention })))('$name -> $code', async ({ name, build, code, mention }) => {
    await expectRefusedBothWays(name, 'linearAttention', () => { const a = build(); return linearAttentionSync(a.q, a.k, a.v, a.opts); },
      () => { const a = build(); return linearAttention(a.q, a.k, a.v, a.opts); }, code, mention);
  });
});

const STEP_BAD = [
  ['state not a Tensor', () => ({ ...base(), state: new Float32Array(24) }), 'ERR_ATTN_ARGUMENT', /state/],
  ['state missing', () => ({ ...base(), state: undefined }), 'ERR_ATTN_ARGUMENT', /state/],
  ['state wrong shape', () => ({ ...base(), state: T([B0, H0, DK, DV + 1]) }), 'ERR_ATTN_SHAPE', /state/],
  ['state [B, H, Dv, Dk]', () => ({ ...base(), state: T([B0, H0, DV, DK]) }), 'ERR_ATTN_SHAPE', /state/],
  ['state float16', () => ({ ...base(), state: T(stS, 'float16') }), 'ERR_ATTN_DTYPE', /state/],
  ['state int32', () => ({ ...base(), state: T(stS, 'int32') }), 'ERR_ATTN_DTYPE', /state/],
  ['state with overlapping strides', () => ({ ...base(), state: Tensor.from(new Float32Array(64), stS, { strides: [0, 0, 1, 1] }) }), 'ERR_ATTN_ARGUMENT', /state/],
  ['state over a detached buffer', () => ({ ...base(), state: detached(stS) }), 'ERR_ATTN_ARGUMENT', /state/],
  ['normalize without normalizer', () => ({ ...base({ opts: { normalize: true } }), state: T(stS) }), 'ERR_ATTN_ARGUMENT', /normalizer/],
  ['normalizer without normalize', () => ({ ...base({ opts: { normalizer: T(zS) } }), state: T(stS) }), 'ERR_ATTN_ARGUMENT', /normalizer/],
  ['normalizer wrong shape', () => ({ ...base({ opts: { normalize: true, normalizer: T([B0, H0, DK + 1]) } }), state: T(stS) }), 'ERR_ATTN_SHAPE', /normalizer/],
  ['normalizer float16', () => ({ ...base({ opts: { normalize: true, normalizer: T(zS, 'float16') } }), state: T(stS) }), 'ERR_ATTN_DTYPE', /normalizer/],
  ['efficient feature map', () => ({ ...base({ opts: { featureMap: 'efficient' } }), state: T(stS) }), 'ERR_ATTN_ARGUMENT', /efficient/],
  ['logGates [B, H, T] of another T', () => ({ ...base({ opts: { logGates: gates([B0, H0, S0 - 1], -1) } }), state: T(stS) }), 'ERR_ATTN_SHAPE', /logGates/],
  ['decay 2', () => ({ ...base({ opts: { decay: 2 } }), state: T(stS) }), 'ERR_ATTN_ARGUMENT', /decay/],
  ['v tokens != q tokens', () => ({ ...base({ v: T([B0, H0, 1, DV]) }), state: T(stS) }), 'ERR_ATTN_SHAPE', /\bv\b/],
];

describe('bad input: linearAttentionStep', () => {
  test.each(STEP_BAD.map(([name, build, code, mention]) => ({ name, build, code, mention })))('$name -> $code', async ({ name, build, code, mention }) => {
    await expectRefusedBothWays(name, 'linearAttentionStep', () => { const a = build(); return linearAttentionStepSync(a.q, a.k, a.v, a.state, a.opts); },
      () => { const a = build(); return linearAttentionStep(a.q, a.k, a.v, a.state, a.opts); }, code, mention);
  });

  test('a refused step leaves its state and normalizer untouched', () => {
    const state = T(stS), z = T(zS);
    const before = [state.toFloat32Array(), z.toFloat32Array()];
    expect(() => linearAttentionStepSync(T(qs), T(qs), T(vs), state, { normalize: true, normalizer: z, logGates: gates([B0, H0, S0], 1) }))
      .toThrow(AttnError);
    bitwiseEqual('state', state.toFloat32Array(), before[0]);
    bitwiseEqual('normalizer', z.toFloat32Array(), before[1]);
  });
});
