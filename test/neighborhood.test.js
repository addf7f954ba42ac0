'use strict';
// Neighborhood attention (neighborhoodAttentionSync / neighborhoodAttention) on the CPU, and the
// element bitmaps that carry it (BlockMask.neighborhood, BlockMask.elements): against the float64
// oracle neighborhoodAttentionReference in 1, 2 and 3 dims with dilation and causal, every dtype,
// strided inputs and GQA; against dense attention with the equivalent mask tensor; the mask's
// blocks and bits against the rule pair by pair; bad input. Outputs are NaN-poisoned first.
//
// Replay a failure: ATTNKIT_SEED=<printed seed> npx jest test/neighborhood.test.js -t '<name>'
const {
  Tensor, BlockMask, attentionSync, blockSparseAttentionSync, neighborhoodAttention, neighborhoodAttentionSync,
} = require('..');
const { neighborhoodAttentionReference, blockSparseAttentionReference } = require('../dist/reference');
const { describeEachIsa } = require('./helpers/isa');
const R = require('./helpers/random');
const { TOL, tolFor, relErr, lseErr, worst, toleranceChecker } = require('./helpers/compare');
const { expectRefusedBothWays } = require('./helpers/bad-input');

R.announceSeed('neighborhood');
const check = toleranceChecker(R.BASE_SEED);

// The rule once more, written as NATTEN states it (window start per dim), for the mask tensor of
// the dense comparison and the bitmap checks.
function sees(rule, i, j) {
  const { spatial, kernelSize: kernel, dilation = spatial.map(() => 1), causal = spatial.map(() => false) } = rule;
  const per = (x, d) => (Array.isArray(x) ? x[d] : x);
  let a = i, b = j;
  for (let d = spatial.length - 1; d >= 0; d--) {
    const L = spatial[d], K = per(kernel, d), dil = per(dilation, d), cz = per(causal, d);
    const ci = a % L, cj = b % L;
    a = Math.floor(a / L); b = Math.floor(b / L);
    if (ci % dil !== cj % dil) return false;
    const g = ci % dil, n = Math.ceil((L - g) / dil), x = (ci - g) / dil, y = (cj - g) / dil;
    if (cz) { if (y > x || y <= x - K) return false; continue; }
    const lo = Math.max(0, Math.min(x - Math.floor(K / 2), n - K));
    if (y < lo || y >= lo + K) return false;
  }
  return true;
}

function denseMask(rule, N) {
  const m = new Uint8Array(N * N);
  for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) m[i * N + j] = sees(rule, i, j) ? 1 : 0;
  return Tensor.from(m, [N, N]);
}

const cases = [];
const add = (name, c) => cases.push({ name, B: 2, Hq: 2, Hkv: 1, D: 16, dtype: 'float32', layout: 'bhsd', ...c });
add('1D L=97 k=7', { rule: { spatial: [97], kernelSize: 7 } });
add('1D L=150 k=9 dilation 3', { rule: { spatial: [150], kernelSize: 9, dilation: 3 } });
add('1D L=130 k=17 causal', { rule: { spatial: [130], kernelSize: 17, causal: true } });
add('1D L=70 k=70 (whole extent)', { rule: { spatial: [70], kernelSize: 70 }, D: 32 });
add('1D L=40 k=1', { rule: { spatial: [40], kernelSize: 1 } });
add('1D L=90 k=6 (even)', { rule: { spatial: [90], kernelSize: 6 } });
add('2D 9x13 k=[3,5]', { rule: { spatial: [9, 13], kernelSize: [3, 5] } });
add('2D 12x11 k=3 dilation [2,1]', { rule: { spatial: [12, 11], kernelSize: 3, dilation: [2, 1] } });
add('2D 10x14 k=[5,3] causal [true,false]', { rule: { spatial: [10, 14], kernelSize: [5, 3], causal: [true, false] } });
add('2D 16x16 k=7 dilation 2 causal', { rule: { spatial: [16, 16], kernelSize: 7, dilation: 2, causal: true }, D: 64, Hq: 4, Hkv: 2 });
add('2D 20x20 k=13 GQA 4/1', { rule: { spatial: [20, 20], kernelSize: 13 }, Hq: 4, Hkv: 1, B: 1 });
add('3D 4x5x6 k=3', { rule: { spatial: [4, 5, 6], kernelSize: 3 } });
add('3D 6x5x8 k=[3,3,5] dilation [1,1,2] causal [false,true,false]', {
  rule: { spatial: [6, 5, 8], kernelSize: [3, 3, 3], dilation: [1, 1, 2], causal: [false, true, false] },
});
for (const dtype of ['float16', 'bfloat16']) {
  add(`1D L=97 k=7 ${dtype}`, { rule: { spatial: [97], kernelSize: 7 }, dtype });
  add(`2D 9x13 k=[3,5] ${dtype} strided`, { rule: { spatial: [9, 13], kernelSize: [3, 5] }, dtype, layout: 'bshd' });
  add(`3D 4x5x6 k=3 causal ${dtype} padded`, { rule: { spatial: [4, 5, 6], kernelSize: 3, causal: true }, dtype, layout: 'padded' });
}
add('2D 9x13 strided bshd', { rule: { spatial: [9, 13], kernelSize: [3, 5] }, layout: 'bshd' });
add('2D 8x24 padded, softcap, scale', { rule: { spatial: [8, 24], kernelSize: [3, 7] }, layout: 'padded', o: { softcap: 3, scale: 0.4 } });

const prepared = new Map();
function prepare(c) {
  if (prepared.has(c.name)) return prepared.get(c.name);
  const r = R.rng(c.name);
  const N = c.rule.spatial.reduce((a, b) => a * b, 1);
  const q = R.randomTensor(r, [c.B, c.Hq, N, c.D], c.dtype, { layout: c.layout });
  const k = R.randomTensor(r, [c.B, c.Hkv, N, c.D], c.dtype, { layout: c.layout });
  const v = R.randomTensor(r, [c.B, c.Hkv, N, c.D], c.dtype, { layout: c.layout });
  const ref = neighborhoodAttentionReference(q.t, k.t, v.t, { ...c.rule, ...(c.o || {}) });
  const p = { N, q: q.t, k: k.t, v: v.t, ref, tol: tolFor(c.dtype) };
  prepared.set(c.name, p);
  return p;
}

async function runCase(c) {
  const { N, q, k, v, ref, tol } = prepare(c);
  const shape = [c.B, c.Hq, N, c.D];
  for (const mode of ['sync', 'async']) {
    const out = R.stridedOut(shape, c.dtype);
    const call = { ...c.rule, ...(c.o || {}), out, returnLse: true };
    const res = mode === 'sync' ? neighborhoodAttentionSync(q, k, v, call) : await neighborhoodAttention(q, k, v, call);
    expect(res.out).toBe(out);
    const o = out.toFloat32Array(), lse = res.lse.toFloat32Array();
    check(`${c.name} ${mode} out`, relErr(o, ref.out), tol, () => worst(o, ref.out));
    check(`${c.name} ${mode} lse`, lseErr(lse, ref.lse), TOL.float32, () => worst(lse, ref.lse));
  }
}

describe('neighborhoodAttention vs the float64 oracle', () => {
  test.each(cases.map((c) => [c.name, c]))('%s', async (_n, c) => { await runCase(c); });
});

describeEachIsa(['2D 16x16 k=7 dilation 2 causal', '3D 6x5x8 k=[3,3,5] dilation [1,1,2] causal [false,true,false]', '1D L=97 k=7 bfloat16'],
  (name) => runCase(cases.find((c) => c.name === name)));

describe('neighborhoodAttention equals dense attention with the equivalent mask', () => {
  const rules = [
    { spatial: [120], kernelSize: 11, dilation: 2 },
    { spatial: [11, 12], kernelSize: [5, 3], dilation: [1, 2], causal: [false, true] },
    { spatial: [5, 6, 7], kernelSize: [3, 5, 3], causal: [true, false, false] },
  ];
  test.each(rules.map((r) => [JSON.stringify(r), r]))('%s', (_n, rule) => {
    const N = rule.spatial.reduce((a, b) => a * b, 1);
    const r = R.rng(`dense ${JSON.stringify(rule)}`);
    const [q, k, v] = [0, 1, 2].map(() => R.randomTensor(r, [1, 2, N, 32], 'float32').t);
    const na = neighborhoodAttentionSync(q, k, v, { ...rule, out: R.poisonedOut([1, 2, N, 32]) }).toFloat32Array();
    const dense = attentionSync(q, k, v, { mask: denseMask(rule, N), out: R.poisonedOut([1, 2, N, 32]) }).toFloat32Array();
    check(`${JSON.stringify(rule)} vs masked attention`, relErr(na, dense), TOL.float32, () => worst(na, dense));
  });
});

describe('BlockMask.neighborhood', () => {
  const rules = [
    { spatial: [9, 13], kernelSize: [3, 5], blockSize: [64, 64] },
    { spatial: [9, 13], kernelSize: [3, 5], dilation: [2, 1], causal: [false, true], blockSize: [37, 50] },
    { spatial: [4, 5, 6], kernelSize: 3, blockSize: 16 },
    { spatial: [300], kernelSize: 101, blockSize: [32, 16] }, // blocks wholly inside windows: full
  ];
  test.each(rules.map((r) => [JSON.stringify(r), r]))('blocks and bits are exact: %s', (_n, rule) => {
    const m = BlockMask.neighborhood(rule);
    const N = rule.spatial.reduce((a, b) => a * b, 1);
    const [bq, bk] = m.blockSize;
    expect([m.seqLenQ, m.seqLenK]).toEqual([N, N]);
    const states = m.blocks.toFloat32Array(), index = m.elements.index.data, bits = m.elements.bits.data;
    const words = Math.ceil(bk / 32);
    const nQB = Math.ceil(N / bq), nKB = Math.ceil(N / bk);
    let full = 0;
    for (let qb = 0; qb < nQB; qb++) {
      for (let kb = 0; kb < nKB; kb++) {
        let seen = 0, pairs = 0;
        const n = index[qb * nKB + kb], st = states[qb * nKB + kb];
        for (let i = qb * bq; i < Math.min(N, (qb + 1) * bq); i++) {
          for (let j = kb * bk; j < Math.min(N, (kb + 1) * bk); j++) {
            pairs++;
            const s = sees(rule, i, j);
            if (s) seen++;
            if (st === 1) {
              const c = j - kb * bk, bit = (bits[(n * bq + i - qb * bq) * words + (c >> 5)] >>> (c & 31)) & 1;
              if (bit !== (s ? 1 : 0)) throw new Error(`bit of pair (${i}, ${j}) is ${bit}, rule says ${s}`);
            }
          }
        }
        const want = seen === 0 ? 0 : seen === pairs ? 2 : 1;
        if (st !== want) throw new Error(`block (${qb}, ${kb}) is ${st}, want ${want} (${seen} of ${pairs} pairs)`);
        expect(n >= 0).toBe(st === 1);
        if (st === 2) full++;
      }
    }
    if (rule.kernelSize === 101) expect(full).toBeGreaterThan(0);
  });

  test('blockSparseAttention with a neighborhood mask of odd blocks, plus causal, vs its oracle', () => {
    const rule = { spatial: [10, 11], kernelSize: [5, 5], blockSize: [23, 41] };
    const m = BlockMask.neighborhood(rule);
    const r = R.rng('bs neighborhood');
    const [q, k, v] = [0, 1, 2].map(() => R.randomTensor(r, [2, 2, 110, 16], 'float32').t);
    const ref = blockSparseAttentionReference(q, k, v, m, { causal: true });
    const got = blockSparseAttentionSync(q, k, v, m, { causal: true, out: R.poisonedOut([2, 2, 110, 16]) }).toFloat32Array();
    check('block-sparse + bitmaps + causal', relErr(got, ref.out), TOL.float32, () => worst(got, ref.out));
  });

  test('and / or refuse masks with bitmaps', () => {
    const m = BlockMask.neighborhood({ spatial: [10, 10], kernelSize: 3, blockSize: 32 });
    const c = BlockMask.causal({ seqLenQ: 100, seqLenK: 100, blockSize: 32 });
    expect(() => m.and(c)).toThrow(expect.objectContaining({ code: 'ERR_ATTN_ARGUMENT' }));
    expect(() => c.or(m)).toThrow(expect.objectContaining({ code: 'ERR_ATTN_ARGUMENT' }));
  });
});

describe('bad input', () => {
  const t = (N) => Tensor.zeros([1, 1, N, 8]);
  const refused = (name, code, mention, q, k, v, opts) =>
    test(name, () => expectRefusedBothWays(name, 'neighborhoodAttention', () => neighborhoodAttentionSync(q, k, v, opts),
      () => neighborhoodAttention(q, k, v, opts), code, mention));
  refused('kernel larger than the spatial extent', 'ERR_ATTN_ARGUMENT', /kernelSize\[1\]/, t(40), t(40), t(40), { spatial: [4, 10], kernelSize: [3, 11] });
  refused('kernel times dilation larger than the extent', 'ERR_ATTN_ARGUMENT', /dilation\[0\]/, t(20), t(20), t(20), { spatial: [20], kernelSize: 7, dilation: 3 });
  refused('spatial product != N', 'ERR_ATTN_SHAPE', /spatial/, t(41), t(41), t(41), { spatial: [4, 10], kernelSize: 3 });
  refused('k with another N', 'ERR_ATTN_SHAPE', /\bk\b/, t(40), t(41), t(41), { spatial: [4, 10], kernelSize: 3 });
  refused('4 spatial dims', 'ERR_ATTN_ARGUMENT', /spatial/, t(16), t(16), t(16), { spatial: [2, 2, 2, 2], kernelSize: 1 });
  refused('kernelSize 0', 'ERR_ATTN_ARGUMENT', /kernelSize\[0\]/, t(16), t(16), t(16), { spatial: [16], kernelSize: 0 });
  refused('kernelSize per dim of the wrong length', 'ERR_ATTN_ARGUMENT', /kernelSize/, t(16), t(16), t(16), { spatial: [4, 4], kernelSize: [3] });
  refused('no kernelSize', 'ERR_ATTN_ARGUMENT', /kernelSize/, t(16), t(16), t(16), { spatial: [16] });
  refused('causal not boolean', 'ERR_ATTN_ARGUMENT', /causal\[0\]/, t(16), t(16), t(16), { spatial: [16], kernelSize: 3, causal: 1 });
  refused('no options', 'ERR_ATTN_ARGUMENT', /spatial/, t(16), t(16), t(16), undefined);

  // element bitmaps reach native through any BlockMask-like object: their checks are native
  const q = t(64);
  const mask = (index, bits) => ({
    blocks: Tensor.from(new Uint8Array([1, 1, 1, 1]), [1, 1, 2, 2]), blockSize: [32, 32], seqLenQ: 64, seqLenK: 64,
    elements: { index, bits },
  });
  const bits1 = Tensor.from(new Int32Array(32), [1, 32, 1]);
  test.each([
    ['index out of range', mask(Tensor.from(new Int32Array([0, 1, -1, 0]), [1, 1, 2, 2]), bits1), 'ERR_ATTN_ARGUMENT', /elementIndex.*got 1 at \[0, 0, 0, 1\]/],
    ['index below -1', mask(Tensor.from(new Int32Array([0, -2, -1, 0]), [1, 1, 2, 2]), bits1), 'ERR_ATTN_ARGUMENT', /elementIndex/],
    ['index not int32', mask(Tensor.from(new Uint8Array(4), [1, 1, 2, 2]), bits1), 'ERR_ATTN_DTYPE', /elementIndex/],
    ['index of another grid', mask(Tensor.from(new Int32Array(6), [1, 1, 2, 3]), bits1), 'ERR_ATTN_SHAPE', /elementIndex/],
    ['bits of the wrong row count', mask(Tensor.from(new Int32Array(4), [1, 1, 2, 2]), Tensor.from(new Int32Array(31), [1, 31, 1])), 'ERR_ATTN_SHAPE', /elementBits/],
    ['bits not contiguous', mask(Tensor.from(new Int32Array(4), [1, 1, 2, 2]), Tensor.from(new Int32Array(64), [1, 32, 1], { strides: [64, 2, 1] })), 'ERR_ATTN_ARGUMENT', /elementBits/],
  ])('blockSparseAttention: %s', (_n, m, code, re) => {
    expect(() => blockSparseAttentionSync(q, q, q, m)).toThrow(expect.objectContaining({ code, message: expect.stringMatching(re) }));
  });
});
