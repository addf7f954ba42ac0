'use strict';
// Top-k block attention (MoBA) on the CPU: the output against the float64 oracle
// topkBlockAttentionReference over block sizes that do not divide the lengths, every dtype, strided
// inputs, GQA, causal; the selected blocks (returnIndices) against a brute-force gating written
// here; ties to the lower block; bad input. Outputs are NaN-poisoned first.
//
// Replay a failure: ATTNKIT_SEED=<printed seed> npx jest test/topk.test.js -t '<name>'
const { Tensor, topkBlockAttention, topkBlockAttentionSync } = require('..');
const { topkBlockAttentionReference } = require('../dist/reference');
const R = require('./helpers/random');
const { TOL, tolFor, relErr, lseErr, worst, toleranceChecker } = require('./helpers/compare');
const { expectRefusedBothWays } = require('./helpers/bad-input');

R.announceSeed('topk');
const check = toleranceChecker(R.BASE_SEED);

// Brute-force MoBA gating from logical values: per (b, h, qb) the sorted list of selected blocks.
function bruteSelect(qv, kv, [B, Hq, Sq, D], [, Hkv, Sk], bs, topk, causal) {
  const mean = (x, H, S, b, h, blk) => {
    const m = new Float64Array(D);
    const r1 = Math.min(S, (blk + 1) * bs);
    for (let r = blk * bs; r < r1; r++) for (let d = 0; d < D; d++) m[d] += x[((b * H + h) * S + r) * D + d] / (r1 - blk * bs);
    return m;
  };
  const nQB = Math.ceil(Sq / bs), nKB = Math.ceil(Sk / bs), out = [];
  for (let b = 0; b < B; b++) for (let h = 0; h < Hq; h++) for (let qb = 0; qb < nQB; qb++) {
    const mq = mean(qv, Hq, Sq, b, h, qb);
    const cands = [];
    for (let kb = 0; kb < (causal ? qb : nKB); kb++) {
      const mk = mean(kv, Hkv, Sk, b, Math.floor(h / (Hq / Hkv)), kb);
      cands.push({ kb, s: mq.reduce((a, x, d) => a + x * mk[d], 0) });
    }
    cands.sort((x, y) => y.s - x.s || x.kb - y.kb);
    const pick = cands.slice(0, causal ? topk - 1 : topk).map((c) => c.kb);
    if (causal) pick.push(qb);
    pick.sort((x, y) => x - y);
    while (pick.length < topk) pick.push(-1);
    out.push(...pick);
  }
  return out;
}

const cases = [];
const add = (name, c) => cases.push({ name, B: 2, Hq: 2, Hkv: 1, D: 16, Sq: 150, Sk: 150, dtype: 'float32', layout: 'bhsd', ...c });
add('bs 32 topk 2 Sq=150 Sk=170', { bs: 32, topk: 2, Sk: 170 });
add('bs 48 topk 3 causal Sq=Sk=200', { bs: 48, topk: 3, causal: true, Sq: 200, Sk: 200 });
add('bs 16 topk 1 causal (own block only)', { bs: 16, topk: 1, causal: true, Sq: 100, Sk: 100 });
add('bs 20 topk = all blocks (dense)', { bs: 20, topk: 6, Sq: 90, Sk: 110 });
add('bs 64 topk 4 causal GQA 4/2 D64', { bs: 64, topk: 4, causal: true, Hq: 4, Hkv: 2, D: 64, Sq: 300, Sk: 300, B: 1 });
add('bs 7 topk 5 Sq=60 Sk=45, softcap, scale', { bs: 7, topk: 5, Sq: 60, Sk: 45, o: { softcap: 4, scale: 0.3 } });
for (const dtype of ['float16', 'bfloat16']) {
  add(`bs 32 topk 3 causal ${dtype} bshd`, { bs: 32, topk: 3, causal: true, Sq: 130, Sk: 130, dtype, layout: 'bshd' });
  add(`bs 50 topk 2 ${dtype} padded`, { bs: 50, topk: 2, dtype, layout: 'padded' });
}

test.each(cases.map((c) => [c.name, c]))('topkBlockAttention vs the float64 oracle: %s', async (_n, c) => {
  const r = R.rng(c.name);
  const q = R.randomTensor(r, [c.B, c.Hq, c.Sq, c.D], c.dtype, { layout: c.layout });
  const k = R.randomTensor(r, [c.B, c.Hkv, c.Sk, c.D], c.dtype, { layout: c.layout });
  const v = R.randomTensor(r, [c.B, c.Hkv, c.Sk, c.D], c.dtype, { layout: c.layout });
  const o = { blockSize: c.bs, topk: c.topk, causal: !!c.causal, ...(c.o || {}) };
  const ref = topkBlockAttentionReference(q.t, k.t, v.t, o);
  const want = bruteSelect(q.values, k.values, [c.B, c.Hq, c.Sq, c.D], [c.B, c.Hkv, c.Sk, c.D], c.bs, c.topk, !!c.causal);
  expect(Array.from(ref.indices)).toEqual(want);
  for (const mode of ['sync', 'async']) {
    const out = R.stridedOut([c.B, c.Hq, c.Sq, c.D], c.dtype);
    const call = { ...o, out, returnLse: true, returnIndices: true };
    const res = mode === 'sync' ? topkBlockAttentionSync(q.t, k.t, v.t, call) : await topkBlockAttention(q.t, k.t, v.t, call);
    expect(res.out).toBe(out);
    expect(res.indices.shape).toEqual([c.B, c.Hq, Math.ceil(c.Sq / c.bs), c.topk]);
    expect(Array.from(res.indices.data)).toEqual(want);
    const got = out.toFloat32Array(), lse = res.lse.toFloat32Array();
    check(`${c.name} ${mode} out`, relErr(got, ref.out), tolFor(c.dtype), () => worst(got, ref.out));
    check(`${c.name} ${mode} lse`, lseErr(lse, ref.lse), TOL.float32, () => worst(lse, ref.lse));
  }
});

test('a plain call returns the output tensor; ties go to the lower block', () => {
  // every key block identical: all scores tie, so blocks 0 .. topk-1 are chosen
  const D = 8, S = 64;
  const kv = new Float32Array(S * D);
  for (let j = 0; j < S; j++) for (let d = 0; d < D; d++) kv[j * D + d] = ((j % 8) + d) / 10;
  const r = R.rng('ties');
  const q = R.randomTensor(r, [1, 1, S, D]).t, k = Tensor.from(kv, [1, 1, S, D]);
  const res = topkBlockAttentionSync(q, k, k, { blockSize: 8, topk: 3, returnIndices: true });
  for (let qb = 0; qb < 8; qb++) expect(Array.from(res.indices.data.subarray(qb * 3, qb * 3 + 3))).toEqual([0, 1, 2]);
  expect(topkBlockAttentionSync(q, k, k, { blockSize: 8, topk: 3 })).toBeInstanceOf(Tensor);
});

describe('bad input', () => {
  const t = (S) => Tensor.zeros([1, 2, S, 8]);
  const refused = (name, code, mention, q, k, opts) =>
    test(name, () => expectRefusedBothWays(name, 'topkBlockAttention', () => topkBlockAttentionSync(q, k, k, opts),
      () => topkBlockAttention(q, k, k, opts), code, mention));
  refused('topk 0', 'ERR_ATTN_ARGUMENT', /topk must be an integer in \[1, 4\]/, t(64), t(64), { blockSize: 16, topk: 0 });
  refused('topk above the number of key blocks', 'ERR_ATTN_ARGUMENT', /topk must be an integer in \[1, 5\].*got 6/, t(64), t(70), { blockSize: 16, topk: 6 });
  refused('blockSize 0', 'ERR_ATTN_ARGUMENT', /blockSize/, t(64), t(64), { blockSize: 0, topk: 1 });
  refused('causal with Sq != Sk', 'ERR_ATTN_SHAPE', /causal needs seqLenQ === seqLenK/, t(64), t(70), { blockSize: 16, topk: 1, causal: true });
  refused('no options', 'ERR_ATTN_ARGUMENT', /blockSize and topk/, t(64), t(64), undefined);
  refused('q not a tensor', 'ERR_ATTN_ARGUMENT', /\bq\b/, null, t(64), { blockSize: 16, topk: 1 });
});
