'use strict';
// Decode attention over a paged KV cache (KVCache, decodeAttentionSync / decodeAttention) on the
// CPU. The test keeps its own plain copy of every row it appends (the exact values of the cache's
// dtype) and checks decodeAttention against the float64 oracle over those rows
// (decodeAttentionReference) and against attentionSync over the cache's contents: ragged batches,
// page sizes that do not divide the lengths, every dtype, GQA ratios 1-8, Sq_new 1-4 (causal,
// bottom-right aligned), each option, strided q and out, poisoned outputs; streaming eviction
// and H2O eviction against attention over exactly the kept rows; split-KV (forced and automatic
// chunk counts) on long ragged sequences under every ISA; accumulated H2O scores against the
// softmax column sums of the oracle; pool exhaustion (all or nothing) and page reuse
// across sequences; bad input.
//
// Replay a failure: ATTNKIT_SEED=<printed seed> npx jest test/decode.test.js -t '<name>'
const {
  Tensor, AttnError, KVCache, decodeAttention, decodeAttentionSync, attentionSync, backendInfo,
} = require('..');
const { decodeAttentionReference, decodeScoresReference } = require('../dist/reference');
const { describeEachIsa } = require('./helpers/isa');
const R = require('./helpers/random');
const { tolFor, relErr, lseErr, worst, toleranceChecker } = require('./helpers/compare');
const { expectRefusedBothWays, checkError } = require('./helpers/bad-input');
const { makeCache, appendRandom, seqsOf } = require('./helpers/decode-rows');

R.announceSeed('decode');
const check = toleranceChecker(R.BASE_SEED);

const DTYPES = ['float32', 'float16', 'bfloat16'];

function expectDecodeMatches(what, st, q, opts, got) {
  const ref = decodeAttentionReference(q.t, seqsOf(st), st.cfg.kvHeads, opts);
  const out = opts.returnLse ? got.out : got;
  const tol = tolFor(st.cfg.dtype, out.dtype);
  check(`${what} out`, relErr(out, ref.out), tol, () => worst(out, ref.out));
  if (opts.returnLse) check(`${what} lse`, lseErr(got.lse.data, ref.lse), 1e-5 * 4, () => worst(got.lse.data, ref.lse));
  // The same answer as dense attention over the cache's contents, sequence by sequence.
  const [B, Hq, Sq, D] = q.t.shape;
  const o = out.toFloat32Array();
  for (let b = 0; b < B; b++) {
    const { k, v } = st.cache.contents(b);
    expect(k.shape[2]).toBe(st.rows[b].k[0].length);
    const dense = attentionSync(q.t.slice(0, b, b + 1), k, v, { ...opts, out: undefined, returnLse: false, causal: true });
    const mine = o.subarray(b * Hq * Sq * D, (b + 1) * Hq * Sq * D);
    check(`${what} vs attentionSync (b ${b})`, relErr(mine, Float64Array.from(dense.toFloat32Array())), tol);
  }
}

describe('decodeAttentionSync parity', () => {
  let n = 0;
  for (const dtype of DTYPES) {
    for (const group of [1, 2, 3, 4, 8]) {
      const name = `${dtype} GQA ${group} #${n++}`;
      test(name, () => {
        const r = R.rng(name);
        const B = r.int(1, 3), H = r.int(1, 2), D = r.pick([8, 16, 33, 64]);
        const pageSize = r.pick([1, 3, 5, 16]);
        const st = makeCache({ batch: B, kvHeads: H, headDim: D, pageSize, maxPages: 200, dtype });
        // Several appends, ragged, in different layouts.
        for (let i = 0; i < 3; i++) {
          const T = r.int(1, 20);
          appendRandom(r, st, T, Array.from({ length: B }, () => r.int(0, T)), r.pick(['bhsd', 'bshd', 'padded']));
        }
        const Sq = r.int(1, 4);
        appendRandom(r, st, Sq, undefined);  // the new tokens, in every sequence
        const q = R.randomTensor(r, [B, H * group, Sq, D], dtype, { layout: r.pick(['bhsd', 'bshd']) });
        const out = r.random() < 0.5 ? R.stridedOut([B, H * group, Sq, D], dtype) : R.poisonedOut([B, H * group, Sq, D], dtype);
        const got = decodeAttentionSync(q.t, st.cache, { out, returnLse: true });
        expect(got.out).toBe(out);
        expectDecodeMatches(name, st, q, { returnLse: true }, got);
      });
    }
  }

  const OPTIONS = {
    scale: () => ({ scale: 0.3 }),
    window: (r) => ({ window: [r.int(0, 12), 0] }),
    'window+sinks': (r) => ({ window: [r.int(0, 8), 0], sinks: r.int(1, 4) }),
    softcap: () => ({ softcap: 2.5 }),
    alibiSlopes: (r, Hq) => ({ alibiSlopes: r.rand(Hq, 0.05, 0.5) }),
    sinkLogits: (r, Hq) => ({ sinkLogits: r.randn(Hq) }),
  };
  for (const [opt, make] of Object.entries(OPTIONS)) {
    for (const dtype of ['float32', 'bfloat16']) {
      const name = `option ${opt} ${dtype}`;
      test(name, () => {
        const r = R.rng(name);
        const B = 3, H = 2, group = r.pick([1, 2, 4]), D = 32;
        const st = makeCache({ batch: B, kvHeads: H, headDim: D, pageSize: 7, maxPages: 64, dtype });
        appendRandom(r, st, 30, [30, 11, 23]);
        const Sq = r.int(1, 3);
        appendRandom(r, st, Sq);
        const q = R.randomTensor(r, [B, H * group, Sq, D], dtype);
        const opts = { ...make(r, H * group), returnLse: true };
        const got = decodeAttentionSync(q.t, st.cache, opts);
        expectDecodeMatches(name, st, q, opts, got);
      });
    }
  }

  test('async form equals the sync form; abort rejects', async () => {
    const r = R.rng('async');
    const st = makeCache({ batch: 2, kvHeads: 2, headDim: 16, pageSize: 4, maxPages: 40, dtype: 'float16' });
    appendRandom(r, st, 25, [25, 9]);
    const q = R.randomTensor(r, [2, 4, 1, 16], 'float16');
    const a = await decodeAttention(q.t, st.cache, { returnLse: true });
    const s = decodeAttentionSync(q.t, st.cache, { returnLse: true });
    expect(Array.from(a.out.data)).toEqual(Array.from(s.out.data));
    expect(Array.from(a.lse.data)).toEqual(Array.from(s.lse.data));
    expectDecodeMatches('async', st, q, { returnLse: true }, a);
    const ac = new AbortController();
    ac.abort();
    const err = await decodeAttention(q.t, st.cache, { signal: ac.signal }).then(() => undefined, (e) => e);
    expect(err).toBeInstanceOf(AttnError);
    expect(err.code).toBe('ERR_ATTN_ABORTED');
  });

  test('a sequence with no tokens yields zeros and lse -Infinity', () => {
    const r = R.rng('empty');
    const st = makeCache({ batch: 2, kvHeads: 1, headDim: 8, pageSize: 4, maxPages: 8 });
    appendRandom(r, st, 5, [5, 0]);
    const q = R.randomTensor(r, [2, 2, 1, 8]);
    const got = decodeAttentionSync(q.t, st.cache, { out: R.poisonedOut([2, 2, 1, 8]), returnLse: true });
    expect(Array.from(got.out.data.subarray(16))).toEqual(new Array(16).fill(0));
    expect(Array.from(got.lse.data.subarray(2))).toEqual([-Infinity, -Infinity]);
    expectDecodeMatches('empty', st, q, { returnLse: true }, got);
  });
});

describe('KVCache pages', () => {
  test('pagesUsed / pagesFree / length / reset', () => {
    const r = R.rng('pages');
    const st = makeCache({ batch: 3, kvHeads: 2, headDim: 4, pageSize: 4, maxPages: 10 });
    appendRandom(r, st, 9, [9, 4, 0]);
    expect([st.cache.length(0), st.cache.length(1), st.cache.length(2)]).toEqual([9, 4, 0]);
    expect(st.cache.pagesUsed).toBe(3 + 1);
    expect(st.cache.pagesFree).toBe(6);
    st.cache.reset(0);
    expect(st.cache.length(0)).toBe(0);
    expect(st.cache.pagesUsed).toBe(1);
  });

  test('pool exhaustion: ERR_ATTN_CACHE_FULL, nothing written, other sequences intact', () => {
    const r = R.rng('full');
    const st = makeCache({ batch: 2, kvHeads: 2, headDim: 8, pageSize: 4, maxPages: 6, dtype: 'bfloat16' });
    appendRandom(r, st, 10, [10, 7]);  // 3 + 2 pages
    const before = [0, 1].map((b) => st.cache.contents(b));
    const k = R.randomTensor(r, [2, 2, 6, 8], 'bfloat16'), v = R.randomTensor(r, [2, 2, 6, 8], 'bfloat16');
    let err;
    try { st.cache.append(k.t, v.t); } catch (e) { err = e; }  // needs 2 + 2 pages, 1 free
    checkError(err, 'ERR_ATTN_CACHE_FULL', /pages/, 'full');
    expect([st.cache.length(0), st.cache.length(1), st.cache.pagesFree]).toEqual([10, 7, 1]);
    for (const b of [0, 1]) {
      const now = st.cache.contents(b);
      expect(Array.from(now.k.data)).toEqual(Array.from(before[b].k.data));
      expect(Array.from(now.v.data)).toEqual(Array.from(before[b].v.data));
    }
    // What does fit still goes in.
    appendRandom(r, st, 2, [2, 2]);  // 12 tokens in 3 pages, 9 in 3
    expect(st.cache.pagesFree).toBe(0);
    const q = R.randomTensor(r, [2, 4, 1, 8], 'bfloat16');
    expectDecodeMatches('after full', st, q, {}, decodeAttentionSync(q.t, st.cache));
  });

  test('fill the pool, evict, reuse pages across sequences; no other sequence changes', () => {
    const r = R.rng('reuse');
    const B = 3, P = 5;
    const st = makeCache({ batch: B, kvHeads: 2, headDim: 16, pageSize: P, maxPages: 12, dtype: 'float16' });
    appendRandom(r, st, 20, [20, 20, 19]);  // 4 + 4 + 4 pages: full
    expect(st.cache.pagesFree).toBe(0);
    expect(() => appendRandom(r, st, 1, [0, 0, 1])).not.toThrow();  // 19 -> 20 fits in its last page
    let err;
    try { appendRandom(r, st, 1, [1, 0, 0]); } catch (e) { err = e; }
    expect(err && err.code).toBe('ERR_ATTN_CACHE_FULL');
    const untouched = [1, 2].map((b) => st.cache.contents(b));
    // StreamingLLM on sequence 0: 2 sinks + last 6 -> 8 tokens in 2 pages; 2 pages freed.
    st.cache.evict({ kind: 'streaming', sinks: 2, window: 6 }, { batch: 0 });
    const k0 = st.rows[0].k.map((hr) => [...hr.slice(0, 2), ...hr.slice(-6)]);
    const v0 = st.rows[0].v.map((hr) => [...hr.slice(0, 2), ...hr.slice(-6)]);
    st.rows[0].k = k0; st.rows[0].v = v0;
    expect(st.cache.length(0)).toBe(8);
    expect(st.cache.pagesFree).toBe(2);
    // Sequence 1 grows into the freed pages.
    appendRandom(r, st, 10, [0, 10, 0]);
    expect(st.cache.pagesFree).toBe(0);
    const now2 = st.cache.contents(2);
    expect(Array.from(now2.k.data)).toEqual(Array.from(untouched[1].k.data));
    expect(Array.from(now2.v.data)).toEqual(Array.from(untouched[1].v.data));
    const now1 = st.cache.contents(1);
    expect(Array.from(now1.k.data.subarray(0, 20 * 16))).toEqual(Array.from(untouched[0].k.data.subarray(0, 20 * 16)));
    const q = R.randomTensor(r, [B, 4, 2, 16], 'float16');
    expectDecodeMatches('after reuse', st, q, { returnLse: true }, decodeAttentionSync(q.t, st.cache, { returnLse: true }));
    // reset returns pages too; the pool is reusable from empty.
    for (let b = 0; b < B; b++) { st.cache.reset(b); st.rows[b] = { k: [[], []], v: [[], []] }; }
    expect(st.cache.pagesFree).toBe(12);
    appendRandom(r, st, 17, [17, 3, 0]);
    expectDecodeMatches('after reset', st, q, {}, decodeAttentionSync(q.t, st.cache));
  });
});

describe('streaming eviction', () => {
  for (const dtype of DTYPES) {
    test(`decode after eviction equals attention over exactly the kept tokens (${dtype})`, () => {
      const r = R.rng(`evict ${dtype}`);
      const B = 3, H = 2, D = 24, P = r.pick([3, 4, 8]);
      const st = makeCache({ batch: B, kvHeads: H, headDim: D, pageSize: P, maxPages: 100, dtype });
      appendRandom(r, st, 40, [40, 13, 7]);
      const sinks = r.int(0, 4), window = r.int(5, 12);
      const usedBefore = st.cache.pagesUsed;
      st.cache.evict({ kind: 'streaming', sinks, window });
      for (let b = 0; b < B; b++) {
        const n = st.rows[b].k[0].length;
        if (n <= sinks + window) continue;
        const keep = (hr) => [...hr.slice(0, sinks), ...hr.slice(n - window)];
        st.rows[b].k = st.rows[b].k.map(keep);
        st.rows[b].v = st.rows[b].v.map(keep);
      }
      let pages = 0;
      for (let b = 0; b < B; b++) {
        expect(st.cache.length(b)).toBe(st.rows[b].k[0].length);
        pages += Math.ceil(st.cache.length(b) / P);
      }
      expect(st.cache.pagesUsed).toBe(pages);
      expect(st.cache.pagesUsed).toBeLessThan(usedBefore);
      // Keep decoding after the eviction: new tokens are appended after the kept ones.
      appendRandom(r, st, 2);
      const q = R.randomTensor(r, [B, H * 4, 2, D], dtype);
      expectDecodeMatches(`evict ${dtype}`, st, q, { returnLse: true }, decodeAttentionSync(q.t, st.cache, { returnLse: true }));
    });
  }
});

describe('bad input', () => {
  const cfg = { batch: 2, kvHeads: 2, headDim: 8, pageSize: 4, maxPages: 8 };
  const t = (shape, dtype = 'float32') => R.randomTensor(R.rng('bad'), shape, dtype).t;
  const fresh = () => { const c = new KVCache(cfg); c.append(t([2, 2, 3, 8]), t([2, 2, 3, 8])); return c; };

  const decodeCases = [
    ['q headDim mismatch', () => [t([2, 4, 1, 9]), fresh()], 'ERR_ATTN_SHAPE', /q/],
    ['q batch mismatch', () => [t([3, 4, 1, 8]), fresh()], 'ERR_ATTN_SHAPE', /q/],
    ['Hq not a multiple of kvHeads', () => [t([2, 3, 1, 8]), fresh()], 'ERR_ATTN_SHAPE', /kvHeads/],
    ['q dtype differs from the cache', () => [t([2, 4, 1, 8], 'float16'), fresh()], 'ERR_ATTN_DTYPE', /dtype/],
    ['disposed cache', () => { const c = fresh(); c.dispose(); return [t([2, 4, 1, 8]), c]; }, 'ERR_ATTN_DISPOSED', /cache/],
    ['not a cache', () => [t([2, 4, 1, 8]), {}], 'ERR_ATTN_ARGUMENT', /cache/],
    ['out shape', () => [t([2, 4, 1, 8]), fresh(), { out: Tensor.empty([2, 4, 2, 8]) }], 'ERR_ATTN_SHAPE', /out/],
    ['out int32', () => [t([2, 4, 1, 8]), fresh(), { out: Tensor.empty([2, 4, 1, 8], { dtype: 'int32' }) }], 'ERR_ATTN_DTYPE', /out/],
    ['splits -1', () => [t([2, 4, 1, 8]), fresh(), { splits: -1 }], 'ERR_ATTN_ARGUMENT', /splits/],
    ['window not integers', () => [t([2, 4, 1, 8]), fresh(), { window: [1.5, 0] }], 'ERR_ATTN_ARGUMENT', /window/],
    ['sinkLogits length', () => [t([2, 4, 1, 8]), fresh(), { sinkLogits: new Float32Array(3) }], 'ERR_ATTN_ARGUMENT', /sinkLogits/],
    ['alibiSlopes length', () => [t([2, 4, 1, 8]), fresh(), { alibiSlopes: new Float32Array(5) }], 'ERR_ATTN_ARGUMENT', /alibiSlopes/],
    ['scale NaN', () => [t([2, 4, 1, 8]), fresh(), { scale: NaN }], 'ERR_ATTN_ARGUMENT', /scale/],
    ['q not a tensor', () => [new Float32Array(64), fresh()], 'ERR_ATTN_ARGUMENT', /q/],
  ];
  for (const [name, make, code, mention] of decodeCases) {
    test(`decodeAttention: ${name}`, async () => {
      await expectRefusedBothWays(name, 'decodeAttention', () => decodeAttentionSync(...make()), () => decodeAttention(...make()), code, mention);
    });
  }

  const cacheCases = [
    ['append k headDim mismatch', (c) => c.append(t([2, 2, 1, 9]), t([2, 2, 1, 9])), 'ERR_ATTN_SHAPE', /headDim/],
    ['append kvHeads mismatch', (c) => c.append(t([2, 3, 1, 8]), t([2, 3, 1, 8])), 'ERR_ATTN_SHAPE', /kvHeads/],
    ['append k/v token mismatch', (c) => c.append(t([2, 2, 1, 8]), t([2, 2, 2, 8])), 'ERR_ATTN_SHAPE', /tokens/],
    ['append wrong dtype', (c) => c.append(t([2, 2, 1, 8], 'bfloat16'), t([2, 2, 1, 8], 'bfloat16')), 'ERR_ATTN_DTYPE', /dtype/],
    ['append not a tensor', (c) => c.append([1, 2], t([2, 2, 1, 8])), 'ERR_ATTN_ARGUMENT', /k/],
    ['append lengths out of range', (c) => c.append(t([2, 2, 2, 8]), t([2, 2, 2, 8]), { lengths: Int32Array.from([3, 0]) }), 'ERR_ATTN_ARGUMENT', /lengths/],
    ['append lengths wrong count', (c) => c.append(t([2, 2, 2, 8]), t([2, 2, 2, 8]), { lengths: Int32Array.from([1]) }), 'ERR_ATTN_ARGUMENT', /lengths/],
    ['append to a disposed cache', (c) => { c.dispose(); c.append(t([2, 2, 1, 8]), t([2, 2, 1, 8])); }, 'ERR_ATTN_DISPOSED', /disposed/],
    ['length of b out of range', (c) => c.length(2), 'ERR_ATTN_ARGUMENT', /b/],
    ['reset of b out of range', (c) => c.reset(-1), 'ERR_ATTN_ARGUMENT', /b/],
    ['length on a disposed cache', (c) => { c.dispose(); c.length(0); }, 'ERR_ATTN_DISPOSED', /disposed/],
    ['evict unknown policy', (c) => c.evict({ kind: 'lru' }), 'ERR_ATTN_ARGUMENT', /kind/],
    ['evict h2o without heavy', (c) => c.evict({ kind: 'h2o', recent: 2 }), 'ERR_ATTN_ARGUMENT', /heavy/],
    ['scores of b out of range', (c) => c.scores(5), 'ERR_ATTN_ARGUMENT', /b/],
    ['evict negative window', (c) => c.evict({ kind: 'streaming', sinks: 0, window: -1 }), 'ERR_ATTN_ARGUMENT', /window/],
    ['pool exhausted', (c) => c.append(t([2, 2, 20, 8]), t([2, 2, 20, 8])), 'ERR_ATTN_CACHE_FULL', /pages/],
  ];
  for (const [name, call, code, mention] of cacheCases) {
    test(`KVCache: ${name}`, () => {
      const c = fresh();
      let err;
      try { call(c); } catch (e) { err = e; }
      checkError(err, code, mention, name);
      if (!c.disposed) expect([c.length(0), c.length(1)]).toEqual([3, 3]);
    });
  }

  const ctorCases = [
    ['device tpu', { ...cfg, device: 'tpu' }, 'ERR_ATTN_DEVICE', /device must be 'cpu', 'cuda' or 'cuda:N'/],
    // Device caches run over the fake CUDA library in test/cuda.test.js (test/gpu/run.js).
    ...(backendInfo().cuda.available ? [] : [['device cuda without CUDA', { ...cfg, device: 'cuda' }, 'ERR_ATTN_CUDA_UNAVAILABLE', /KVCache: CUDA is unavailable/]]),
    ['dtype int32', { ...cfg, dtype: 'int32' }, 'ERR_ATTN_DTYPE', /dtype/],
    ['pageSize 0', { ...cfg, pageSize: 0 }, 'ERR_ATTN_ARGUMENT', /pageSize/],
    ['maxPages 1.5', { ...cfg, maxPages: 1.5 }, 'ERR_ATTN_ARGUMENT', /maxPages/],
    ['no options', undefined, 'ERR_ATTN_ARGUMENT', /options/],
  ];
  for (const [name, opts, code, mention] of ctorCases) {
    test(`new KVCache: ${name}`, () => {
      let err;
      try { new KVCache(opts); } catch (e) { err = e; }
      checkError(err, code, mention, name);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Split-KV (Flash-Decoding) on long ragged sequences, every ISA
// ---------------------------------------------------------------------------------------------
const SPLIT_CASES = {};
for (const dtype of DTYPES) {
  for (const splits of [undefined, 1, 2, 3, 7]) {
    SPLIT_CASES[`split ${dtype} splits=${splits ?? 'auto'}`] = { dtype, splits };
  }
}
function runSplit(name) {
  const c = SPLIT_CASES[name];
  const r = R.rng(name);
  const B = 3, H = 2, group = r.pick([1, 4, 8]), D = r.pick([64, 40]);
  const st = makeCache({ batch: B, kvHeads: H, headDim: D, pageSize: 13, maxPages: 400, dtype: c.dtype });
  appendRandom(r, st, 1200, [r.int(700, 1200), r.int(1, 300), 1]);
  const Sq = r.int(1, 3);
  appendRandom(r, st, Sq);
  const q = R.randomTensor(r, [B, H * group, Sq, D], c.dtype);
  const extra = r.pick([{}, { window: [200, 0], sinks: 3 }, { softcap: 3, sinkLogits: r.randn(H * group) }]);
  const opts = { ...extra, returnLse: true, splits: c.splits };
  const got = decodeAttentionSync(q.t, st.cache, { ...opts, out: R.stridedOut([B, H * group, Sq, D], c.dtype) });
  expectDecodeMatches(name, st, q, opts, got);
}
describe('split-KV', () => {
  for (const name of Object.keys(SPLIT_CASES)) test(name, () => runSplit(name));
});
describeEachIsa(['split float32 splits=3', 'split float16 splits=auto', 'split bfloat16 splits=7'], runSplit);

// ---------------------------------------------------------------------------------------------
// H2O: accumulated scores and eviction
// ---------------------------------------------------------------------------------------------
function expectScores(what, st, ref, times = 1) {
  for (let b = 0; b < st.cfg.batch; b++) {
    const got = st.cache.scores(b);
    const want = ref[b].map((x) => x * times);
    check(`${what} scores (b ${b})`, relErr(got, want), 1e-5 * 4, () => worst(got, want));
  }
}

describe('accumulateScores', () => {
  const SCORE_OPTIONS = {
    plain: () => ({}),
    'window+sinks': () => ({ window: [9, 0], sinks: 2 }),
    'softcap+alibi': (r, Hq) => ({ softcap: 2, alibiSlopes: r.rand(Hq, 0.05, 0.3) }),
    sinkLogits: (r, Hq) => ({ sinkLogits: r.randn(Hq) }),
  };
  for (const [opt, make] of Object.entries(SCORE_OPTIONS)) {
    for (const splits of [1, 3]) {
      const name = `scores ${opt} splits=${splits}`;
      test(name, async () => {
        const r = R.rng(name);
        const B = 2, H = 2, group = r.pick([1, 2, 4]), D = 16, dtype = r.pick(DTYPES);
        const st = makeCache({ batch: B, kvHeads: H, headDim: D, pageSize: 6, maxPages: 64, dtype });
        appendRandom(r, st, 40, [40, 17]);
        const Sq = r.int(1, 3);
        appendRandom(r, st, Sq);
        const q = R.randomTensor(r, [B, H * group, Sq, D], dtype);
        const opts = { ...make(r, H * group), splits };
        const ref = decodeScoresReference(q.t, seqsOf(st), H, opts);
        for (let b = 0; b < B; b++) expect(Array.from(st.cache.scores(b))).toEqual(new Array(H * st.cache.length(b)).fill(0));
        const got = decodeAttentionSync(q.t, st.cache, { ...opts, accumulateScores: true });
        expectDecodeMatches(name, st, q, opts, got);
        expectScores(name, st, ref);
        // A second call (async) adds the same mass again.
        await decodeAttention(q.t, st.cache, { ...opts, accumulateScores: true });
        expectScores(`${name} x2`, st, ref, 2);
      });
    }
  }
});

describe('h2o eviction', () => {
  for (const dtype of DTYPES) {
    test(`decode after h2o eviction equals attention over exactly the kept tokens (${dtype})`, () => {
      const r = R.rng(`h2o ${dtype}`);
      const B = 2, H = 2, D = 16, P = 5, heavy = 6, recent = 4;
      const st = makeCache({ batch: B, kvHeads: H, headDim: D, pageSize: P, maxPages: 64, dtype });
      appendRandom(r, st, 30, [30, 8]);
      const q = R.randomTensor(r, [B, H * 2, 2, D], dtype);
      const ref = decodeScoresReference(q.t, seqsOf(st), H);
      decodeAttentionSync(q.t, st.cache, { accumulateScores: true });
      const kept = [];
      for (let b = 0; b < B; b++) {
        const n = st.rows[b].k[0].length;
        if (n <= heavy + recent) { kept.push(null); continue; }
        const mass = Array.from({ length: n - recent }, (_, t) => { let m = 0; for (let h = 0; h < H; h++) m += ref[b][h * n + t]; return m; });
        const top = mass.map((m, t) => t).sort((x, y) => mass[y] - mass[x] || x - y).slice(0, heavy).sort((x, y) => x - y);
        kept.push([...top, ...Array.from({ length: recent }, (_, i) => n - recent + i)]);
      }
      const scoresBefore = [0, 1].map((b) => st.cache.scores(b));
      const usedBefore = st.cache.pagesUsed;
      st.cache.evict({ kind: 'h2o', heavy, recent });
      for (let b = 0; b < B; b++) {
        if (!kept[b]) { expect(st.cache.length(b)).toBe(st.rows[b].k[0].length); continue; }
        const n = st.rows[b].k[0].length;
        st.rows[b].k = st.rows[b].k.map((hr) => kept[b].map((t) => hr[t]));
        st.rows[b].v = st.rows[b].v.map((hr) => kept[b].map((t) => hr[t]));
        expect(st.cache.length(b)).toBe(heavy + recent);
        // Scores moved with their rows.
        const now = st.cache.scores(b);
        for (let h = 0; h < H; h++) kept[b].forEach((t, i) => expect(now[h * kept[b].length + i]).toBe(scoresBefore[b][h * n + t]));
      }
      expect(st.cache.pagesUsed).toBeLessThan(usedBefore);
      appendRandom(r, st, 1);
      const q2 = R.randomTensor(r, [B, H * 2, 1, D], dtype);
      expectDecodeMatches(`h2o ${dtype}`, st, q2, { returnLse: true }, decodeAttentionSync(q2.t, st.cache, { returnLse: true }));
    });
  }

  test('an async decode reads the cache as it was when called; appends meanwhile are fine', async () => {
    const r = R.rng('snapshot');
    const st = makeCache({ batch: 2, kvHeads: 2, headDim: 16, pageSize: 4, maxPages: 64, dtype: 'float32' });
    appendRandom(r, st, 30, [30, 12]);
    const q = R.randomTensor(r, [2, 4, 1, 16]);
    const want = decodeAttentionReference(q.t, seqsOf(st), 2, {});
    const pending = decodeAttention(q.t, st.cache, { out: R.poisonedOut([2, 4, 1, 16]) });
    appendRandom(r, st, 7, [7, 3]);  // into the same last pages and new ones
    const got = await pending;
    check('snapshot', relErr(got, want.out), 1e-5, () => worst(got, want.out));
    expect([st.cache.length(0), st.cache.length(1)]).toEqual([37, 15]);
  });

  test('evict and reset are refused while an async decode runs', async () => {
    const r = R.rng('busy');
    const st = makeCache({ batch: 1, kvHeads: 1, headDim: 8, pageSize: 4, maxPages: 8 });
    appendRandom(r, st, 10);
    const q = R.randomTensor(r, [1, 1, 1, 8]);
    const pending = decodeAttention(q.t, st.cache);
    let err;
    try { st.cache.evict({ kind: 'streaming', sinks: 1, window: 2 }); } catch (e) { err = e; }
    checkError(err, 'ERR_ATTN_ARGUMENT', /async decodeAttention/, 'busy');
    await pending;
    st.cache.evict({ kind: 'streaming', sinks: 1, window: 2 });
    expect(st.cache.length(0)).toBe(3);
  });
});
