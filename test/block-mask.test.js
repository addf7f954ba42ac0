'use strict';
// BlockMask (lib/sparse/block-mask.ts): every builder against a per-element brute force, the dense
// round trip, and / or, bad input; and blockSparseAttentionReference against attentionReference
// and against a brute-force dense computation that pins the skip / partial / full semantics.
//
// Replay a failure: ATTNKIT_SEED=<printed seed> npx jest test/block-mask.test.js -t '<name>'
const { Tensor, AttnError } = require('..');
const { BlockMask, BlockState } = require('..');
const { attentionReference, blockSparseAttentionReference } = require('../dist/reference');
const R = require('./helpers/random');
const { relErr, lseErr, worst, toleranceChecker } = require('./helpers/compare');

R.announceSeed('block-mask');

const check = toleranceChecker(R.BASE_SEED);

// ---------------------------------------------------------------------------------------------
// brute force: per-element rules, blocks classified by scanning their pairs
// ---------------------------------------------------------------------------------------------
const causalRule = (Sq, Sk) => (i, j) => j <= i + Sk - Sq;

function windowRule(Sq, Sk, [left, right], causal) {
  return (i, j) => {
    const a = i + Sk - Sq;
    return (left < 0 || j >= a - left) && (right < 0 || j <= a + right) && (!causal || j <= a);
  };
}

const documentsRule = (idsQ, idsK) => (i, j) => idsQ[i] === idsK[j];

/** [nQB * nKB] states: 2 if every pair of the (clipped) block is visible, 0 if none is, else 1. */
function classify(Sq, Sk, bq, bk, visible) {
  const nQB = Math.ceil(Sq / bq), nKB = Math.ceil(Sk / bk);
  const out = new Uint8Array(nQB * nKB);
  for (let qb = 0; qb < nQB; qb++) {
    for (let kb = 0; kb < nKB; kb++) {
      let any = false, all = true;
      for (let i = qb * bq; i < Math.min((qb + 1) * bq, Sq); i++) {
        for (let j = kb * bk; j < Math.min((kb + 1) * bk, Sk); j++) {
          if (visible(i, j)) any = true; else all = false;
        }
      }
      out[qb * nKB + kb] = all ? 2 : any ? 1 : 0;
    }
  }
  return out;
}

/** The mask's blocks equal `want` (row-major over `shape`); a mismatch names its index. */
// Plain checks, not expect(): the exhaustive sweep calls this tens of thousands of times.
function expectBlocks(mask, shape, want) {
  const b = mask.blocks;
  if (b.dtype !== 'uint8' || b.shape.join() !== shape.join() || !b.isContiguous() || b.data.length !== want.length) {
    throw new Error(`blocks: got ${b.dtype} [${b.shape.join(', ')}] (contiguous: ${b.isContiguous()}), want uint8 [${shape.join(', ')}] contiguous`);
  }
  const got = b.data;
  for (let n = 0; n < want.length; n++) {
    if (got[n] !== want[n]) {
      const [, H, Q, K] = shape;
      const at = [Math.floor(n / (H * Q * K)), Math.floor(n / (Q * K)) % H, Math.floor(n / K) % Q, n % K];
      throw new Error(`block [${at.join(', ')}]: got ${got[n]}, want ${want[n]}\n  replay: ATTNKIT_SEED=${R.BASE_SEED}`);
    }
  }
}

const nBlocks = (Sq, Sk, bq, bk) => [Math.ceil(Sq / bq), Math.ceil(Sk / bk)];

// Random shapes: block sizes that divide the lengths and ones that do not, Sq < Sk and Sq > Sk.
function randomShape(r) {
  const Sq = r.pick([1, r.int(1, 40), r.int(40, 200), 128]);
  const Sk = r.random() < 0.25 ? Sq : r.pick([1, r.int(1, 40), r.int(40, 200), 256]);
  const bq = r.pick([1, r.int(2, 20), 16, 64, 128]);
  const bk = r.random() < 0.4 ? bq : r.pick([1, r.int(2, 20), 16, 64]);
  return { Sq, Sk, bq, bk };
}

const WINDOWS = [[-1, -1], [0, 0], [1, 0], [0, 2], [3, -1], [-1, 2], [2, 5], [0, -1], [-1, 0]];

// ---------------------------------------------------------------------------------------------
describe('exact builders vs per-element classification', () => {
  test('exhaustive small sweep: causal and every window, Sq, Sk <= 9, bq, bk <= 4', () => {
    for (let Sq = 1; Sq <= 9; Sq++) for (let Sk = 1; Sk <= 9; Sk++) for (let bq = 1; bq <= 4; bq++) for (let bk = 1; bk <= 4; bk++) {
      const shape = { seqLenQ: Sq, seqLenK: Sk, blockSize: [bq, bk] };
      const dims = [1, 1, ...nBlocks(Sq, Sk, bq, bk)];
      expectBlocks(BlockMask.causal(shape), dims, classify(Sq, Sk, bq, bk, causalRule(Sq, Sk)));
      for (const window of WINDOWS) {
        for (const causal of [false, true]) {
          const m = BlockMask.slidingWindow({ ...shape, window, causal });
          expectBlocks(m, dims, classify(Sq, Sk, bq, bk, windowRule(Sq, Sk, window, causal)));
        }
      }
    }
  });

  const r = R.rng('builder shapes');
  const shapes = Array.from({ length: 30 }, () => randomShape(r));
  test.each(shapes)('causal Sq=$Sq Sk=$Sk block [$bq, $bk]', ({ Sq, Sk, bq, bk }) => {
    const m = BlockMask.causal({ seqLenQ: Sq, seqLenK: Sk, blockSize: [bq, bk], batch: 3, heads: 5 });
    expectBlocks(m, [1, 1, ...nBlocks(Sq, Sk, bq, bk)], classify(Sq, Sk, bq, bk, causalRule(Sq, Sk)));
    expect(m.numQueryBlocks).toBe(Math.ceil(Sq / bq));
    expect(m.numKeyBlocks).toBe(Math.ceil(Sk / bk));
    expect(m.blockSize).toEqual([bq, bk]);
    expect([m.seqLenQ, m.seqLenK]).toEqual([Sq, Sk]);
  });

  test.each(shapes)('slidingWindow Sq=$Sq Sk=$Sk block [$bq, $bk]', ({ Sq, Sk, bq, bk }) => {
    const rw = R.rng(`window ${Sq} ${Sk} ${bq} ${bk}`);
    const windows = [...WINDOWS, [rw.int(0, 60), rw.int(0, 60)], [rw.int(0, 60), -1], [-1, rw.int(0, 60)]];
    for (const window of windows) {
      for (const causal of [false, true]) {
        const m = BlockMask.slidingWindow({ seqLenQ: Sq, seqLenK: Sk, blockSize: [bq, bk], window, causal });
        expectBlocks(m, [1, 1, ...nBlocks(Sq, Sk, bq, bk)], classify(Sq, Sk, bq, bk, windowRule(Sq, Sk, window, causal)));
      }
    }
  });

  /** Non-decreasing ids: segments of random lengths (some empty on one side), numbered from `first`. */
  function contiguousIds(rr, Sq, Sk) {
    const idsQ = new Int32Array(Sq), idsK = new Int32Array(Sk);
    let i = 0, j = 0, id = rr.int(-3, 3);
    while (i < Sq || j < Sk) {
      const lq = rr.random() < 0.15 ? 0 : rr.int(1, Math.max(1, Sq >> 2));
      const lk = rr.random() < 0.15 ? 0 : rr.int(1, Math.max(1, Sk >> 2));
      for (let n = 0; n < lq && i < Sq; n++) idsQ[i++] = id;
      for (let n = 0; n < lk && j < Sk; n++) idsK[j++] = id;
      id += rr.int(1, 2); // gaps in the numbering too
    }
    return { idsQ, idsK };
  }

  test.each(shapes)('documents, contiguous segments, Sq=$Sq Sk=$Sk block [$bq, $bk]', ({ Sq, Sk, bq, bk }) => {
    const rr = R.rng(`documents ${Sq} ${Sk} ${bq} ${bk}`);
    for (let rep = 0; rep < 4; rep++) {
      const { idsQ, idsK } = contiguousIds(rr, Sq, Sk);
      const m = BlockMask.documents({ seqLenQ: Sq, seqLenK: Sk, blockSize: [bq, bk], segmentIds: idsQ, segmentIdsK: idsK });
      expectBlocks(m, [1, 1, ...nBlocks(Sq, Sk, bq, bk)], classify(Sq, Sk, bq, bk, documentsRule(idsQ, idsK)));
    }
    // One array for both sides (self-attention over a packed batch).
    const { idsQ } = contiguousIds(rr, Sq, Sq);
    const m = BlockMask.documents({ seqLenQ: Sq, seqLenK: Sq, blockSize: [bq, bk], segmentIds: idsQ });
    expectBlocks(m, [1, 1, ...nBlocks(Sq, Sq, bq, bk)], classify(Sq, Sq, bq, bk, documentsRule(idsQ, idsQ)));
  });

  test.each(shapes)('documents, arbitrary ids, Sq=$Sq Sk=$Sk block [$bq, $bk]', ({ Sq, Sk, bq, bk }) => {
    const rr = R.rng(`documents arbitrary ${Sq} ${Sk} ${bq} ${bk}`);
    for (const nIds of [1, 2, 4, 50]) {
      const idsQ = Int32Array.from({ length: Sq }, () => rr.int(0, nIds - 1) * 3 - 7);
      const idsK = Int32Array.from({ length: Sk }, () => rr.int(0, nIds - 1) * 3 - 7);
      const m = BlockMask.documents({ seqLenQ: Sq, seqLenK: Sk, blockSize: [bq, bk], segmentIds: idsQ, segmentIdsK: idsK });
      expectBlocks(m, [1, 1, ...nBlocks(Sq, Sk, bq, bk)], classify(Sq, Sk, bq, bk, documentsRule(idsQ, idsK)));
    }
  });

  test('documents: ids that skip a value between a block\'s rows are not mistaken for an overlap', () => {
    // rows carry {0, 2}, keys {1}: the id ranges overlap, the id sets do not.
    const m = BlockMask.documents({ seqLenQ: 2, seqLenK: 1, blockSize: [2, 1], segmentIds: Int32Array.of(0, 2), segmentIdsK: Int32Array.of(1) });
    expect(Array.from(m.blocks.data)).toEqual([0]);
  });
});

// ---------------------------------------------------------------------------------------------
describe('whole-block patterns', () => {
  const r = R.rng('pattern shapes');
  const shapes = Array.from({ length: 12 }, () => randomShape(r));

  test.each(shapes)('dilated Sq=$Sq Sk=$Sk block [$bq, $bk]', ({ Sq, Sk, bq, bk }) => {
    const [nQB, nKB] = nBlocks(Sq, Sk, bq, bk);
    for (const dilation of [1, 2, 3, 7]) {
      for (const local of [undefined, 0, 1, 3]) {
        const m = BlockMask.dilated({ seqLenQ: Sq, seqLenK: Sk, blockSize: [bq, bk], dilation, ...(local === undefined ? {} : { local }) });
        const band = local ?? 1;
        const want = new Uint8Array(nQB * nKB);
        for (let qb = 0; qb < nQB; qb++) {
          for (let kb = 0; kb < nKB; kb++) {
            const near = qb - kb < band && kb - qb < band, strided = Number.isInteger((qb - kb) / dilation);
            want[qb * nKB + kb] = near || strided ? 2 : 0;
          }
        }
        expectBlocks(m, [1, 1, nQB, nKB], want);
      }
    }
  });

  test.each(shapes)('perHeadShards Sq=$Sq Sk=$Sk block [$bq, $bk]', ({ Sq, Sk, bq, bk }) => {
    const [nQB, nKB] = nBlocks(Sq, Sk, bq, bk);
    for (const [heads, shards] of [[1, 1], [4, 2], [6, 4], [3, 5]]) {
      for (const localBlocks of [undefined, 0, 2]) {
        const m = BlockMask.perHeadShards({ seqLenQ: Sq, seqLenK: Sk, blockSize: [bq, bk], heads, shards, ...(localBlocks === undefined ? {} : { localBlocks }) });
        const band = localBlocks ?? 1;
        const want = new Uint8Array(heads * nQB * nKB);
        let n = 0;
        for (let h = 0; h < heads; h++) {
          for (let qb = 0; qb < nQB; qb++) {
            for (let kb = 0; kb < nKB; kb++) {
              const mine = (kb - h) % shards === 0, local = qb - kb >= 0 && qb - kb < band;
              want[n++] = mine || local ? 2 : 0;
            }
          }
        }
        expectBlocks(m, [1, heads, nQB, nKB], want);
      }
    }
  });

  test('perHeadShards: every key block belongs to exactly one shard, so the heads cover the keys', () => {
    const m = BlockMask.perHeadShards({ seqLenQ: 64, seqLenK: 64, blockSize: 8, heads: 4, shards: 4, localBlocks: 0 });
    const d = m.blocks.data, plane = 64;
    for (let n = 0; n < plane; n++) {
      let count = 0;
      for (let h = 0; h < 4; h++) count += d[h * plane + n] === 2 ? 1 : 0;
      expect(count).toBe(1);
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe('fromFunction, fromDense, density, toDense, and / or', () => {
  test('fromFunction calls fn once per block, in order, and stores its states', () => {
    const seen = [];
    const fn = (b, h, qb, kb) => {
      seen.push([b, h, qb, kb]);
      return [false, 'partial', 'full'][(b * 7 + h * 5 + qb * 3 + kb) % 3];
    };
    const m = BlockMask.fromFunction(fn, { batch: 2, heads: 3, seqLenQ: 10, seqLenK: 7, blockSize: [4, 3] });
    expect(m.blocks.shape).toEqual([2, 3, 3, 3]);
    expect(seen.length).toBe(2 * 3 * 3 * 3);
    const want = seen.map(([b, h, qb, kb]) => (b * 7 + h * 5 + qb * 3 + kb) % 3);
    expectBlocks(m, [2, 3, 3, 3], want);
    expect(seen[1]).toEqual([0, 0, 0, 1]); // row-major
  });

  test('fromFunction defaults batch and heads to 1 and takes one number as [bq, bk]', () => {
    const m = BlockMask.fromFunction(() => 'full', { seqLenQ: 5, seqLenK: 9, blockSize: 4 });
    expect(m.blocks.shape).toEqual([1, 1, 2, 3]);
    expect(m.blockSize).toEqual([4, 4]);
    expect(m.density()).toBe(1);
  });

  test('fromDense round trip, from contiguous, offset and strided tensors', () => {
    const r = R.rng('fromDense');
    const shape = [2, 3, 4, 5];
    const vals = Uint8Array.from({ length: 120 }, () => r.int(0, 2));
    const opts = { seqLenQ: 14, seqLenK: 17, blockSize: [4, 4] };
    // contiguous
    const m1 = BlockMask.fromDense(Tensor.from(vals, shape), opts);
    expect(Array.from(m1.toDense().data)).toEqual(Array.from(vals));
    expect(m1.toDense().shape).toEqual(shape);
    // with an offset into a longer buffer
    const buf = new Uint8Array(130).fill(9);
    buf.set(vals, 7);
    const m2 = BlockMask.fromDense(Tensor.from(buf, shape, { offset: 7 }), opts);
    expect(Array.from(m2.toDense().data)).toEqual(Array.from(vals));
    // strided: a [2, 3, 5, 4] buffer viewed through transpose(2, 3)
    const t = Tensor.from(Uint8Array.from({ length: 120 }, () => r.int(0, 2)), [2, 3, 5, 4]).transpose(2, 3);
    const m3 = BlockMask.fromDense(t, opts);
    expect(Array.from(m3.toDense().data)).toEqual(Array.from(t.toFloat32Array()));
    expect(m3.blocks.isContiguous()).toBe(true);
  });

  test('fromDense copies: editing the input afterwards does not change the mask; toDense is a fresh copy', () => {
    const vals = new Uint8Array([0, 1, 2, 1]);
    const t = Tensor.from(vals, [1, 1, 2, 2]);
    const m = BlockMask.fromDense(t, { seqLenQ: 4, seqLenK: 4, blockSize: 2 });
    vals.fill(2);
    expect(Array.from(m.blocks.data)).toEqual([0, 1, 2, 1]);
    const d = m.toDense();
    expect(d.data).not.toBe(m.blocks.data);
    d.data.fill(0);
    expect(Array.from(m.blocks.data)).toEqual([0, 1, 2, 1]);
    expect(m.density()).toBe(0.75);
  });

  test('density counts nonzero entries over the stored shape', () => {
    const m = BlockMask.causal({ seqLenQ: 64, seqLenK: 64, blockSize: 16 });
    expect(m.density()).toBe(10 / 16);
    const all = BlockMask.fromFunction(() => false, { seqLenQ: 3, seqLenK: 3, blockSize: 1, heads: 2 });
    expect(all.density()).toBe(0);
  });

  test('BlockState names the stored values', () => {
    expect(BlockState).toEqual({ Skip: 0, Partial: 1, Full: 2 });
  });

  const STATES = [0, 1, 2];
  const AND = (x, y) => (x === 0 || y === 0 ? 0 : x === 2 && y === 2 ? 2 : 1);
  const OR = (x, y) => (x === 2 || y === 2 ? 2 : x === 0 && y === 0 ? 0 : 1);

  test('and / or truth tables', () => {
    // One 3x3 mask holds every left state per row; the other every right state per column.
    const shape = { seqLenQ: 3, seqLenK: 3, blockSize: 1 };
    const rule = (s) => [false, 'partial', 'full'][s];
    const x = BlockMask.fromFunction((b, h, qb) => rule(STATES[qb]), shape);
    const y = BlockMask.fromFunction((b, h, qb, kb) => rule(STATES[kb]), shape);
    const wantAnd = [], wantOr = [];
    for (const a of STATES) for (const b of STATES) { wantAnd.push(AND(a, b)); wantOr.push(OR(a, b)); }
    expect(wantAnd).toEqual([0, 0, 0, 0, 1, 1, 0, 1, 2]);
    expect(wantOr).toEqual([0, 1, 2, 1, 1, 2, 2, 2, 2]);
    expectBlocks(x.and(y), [1, 1, 3, 3], wantAnd);
    expectBlocks(x.or(y), [1, 1, 3, 3], wantOr);
  });

  test('and / or broadcast Bm and Hm (1 vs n)', () => {
    const r = R.rng('and/or broadcast');
    const shape = { seqLenQ: 9, seqLenK: 11, blockSize: [4, 3] };
    const rand = (batch, heads) => {
      const states = Array.from({ length: batch * heads * 12 }, () => r.int(0, 2));
      return { states, mask: BlockMask.fromDense(Tensor.from(Uint8Array.from(states), [batch, heads, 3, 4]), shape) };
    };
    for (const [[b1, h1], [b2, h2]] of [[[1, 3], [2, 1]], [[2, 3], [1, 1]], [[1, 1], [2, 3]], [[2, 1], [2, 3]], [[2, 3], [2, 3]]]) {
      const x = { ...rand(b1, h1), b: b1, h: h1 }, y = { ...rand(b2, h2), b: b2, h: h2 };
      const B = Math.max(b1, b2), H = Math.max(h1, h2);
      const at = (m, b, h, n) => m.states[((m.b === 1 ? 0 : b) * m.h + (m.h === 1 ? 0 : h)) * 12 + n];
      const wantAnd = [], wantOr = [];
      for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let n = 0; n < 12; n++) {
        wantAnd.push(AND(at(x, b, h, n), at(y, b, h, n)));
        wantOr.push(OR(at(x, b, h, n), at(y, b, h, n)));
      }
      expectBlocks(x.mask.and(y.mask), [B, H, 3, 4], wantAnd);
      expectBlocks(x.mask.or(y.mask), [B, H, 3, 4], wantOr);
      expectBlocks(y.mask.and(x.mask), [B, H, 3, 4], wantAnd); // commutative
    }
  });

  test('and / or leave both operands unchanged', () => {
    const shape = { seqLenQ: 8, seqLenK: 8, blockSize: 2 };
    const c = BlockMask.causal(shape), w = BlockMask.slidingWindow({ ...shape, window: [2, 0] });
    const before = [Array.from(c.blocks.data), Array.from(w.blocks.data)];
    c.and(w); c.or(w);
    expect([Array.from(c.blocks.data), Array.from(w.blocks.data)]).toEqual(before);
  });
});

// ---------------------------------------------------------------------------------------------
// blockSparseAttentionReference
// ---------------------------------------------------------------------------------------------
/** Random q, k, v ({ t, values }) for dims { B, Hq, Hkv, Sq, Sk, D }. */
function qkv(r, c) {
  return {
    q: R.randomTensor(r, [c.B, c.Hq, c.Sq, c.D]),
    k: R.randomTensor(r, [c.B, c.Hkv, c.Sk, c.D]),
    v: R.randomTensor(r, [c.B, c.Hkv, c.Sk, c.D]),
  };
}

/** Option values for a case: the named options drawn at the case's dims (full-shape bias / mask). */
function drawOptions(r, c, names) {
  const o = {};
  const full = [c.B, c.Hq, c.Sq, c.Sk], n = full.reduce((a, b) => a * b, 1);
  for (const name of names) {
    if (name === 'causal') o.causal = true;
    else if (name === 'window') o.window = [r.int(0, 4), r.pick([-1, 0, r.int(1, 4)])];
    else if (name === 'sinks') o.sinks = r.int(1, 3);
    else if (name === 'softcap') o.softcap = r.uniform(1, 4);
    else if (name === 'alibi') o.alibiSlopes = r.rand(c.Hq, 0.05, 0.8);
    else if (name === 'bias') o.bias = Tensor.from(r.randn(n, 0.5), full);
    else if (name === 'mask') o.mask = Tensor.from(Uint8Array.from({ length: n }, () => (r.random() < 0.7 ? 1 : 0)), full);
    else if (name === 'sinkLogits') o.sinkLogits = r.randn(c.Hq);
    else if (name === 'scale') o.scale = r.uniform(0.1, 0.5);
    else throw new Error(`unknown option ${name}`);
  }
  if (c.cuQ) { o.cuSeqlensQ = Int32Array.from(c.cuQ); o.cuSeqlensK = Int32Array.from(c.cuK); }
  return o;
}

/**
 * Block-sparse attention written out per element: a pair of a skipped block is hidden; of a full
 * block, visible (no causal / window / sinks / mask); of a partial block, visible iff every element
 * rule keeps it. Varlen segments bound every row; score modifiers apply to every visible pair.
 */
function bruteBlockSparse(c, x, blocks, bm, hm, bq, bk, o) {
  const { B, Hq, Hkv, Sq, Sk, D } = c;
  const q = x.q.values, k = x.k.values, v = x.v.values;
  const bias = o.bias && o.bias.toFloat32Array(), mask = o.mask && o.mask.data;
  const nQB = Math.ceil(Sq / bq), nKB = Math.ceil(Sk / bk);
  const scale = o.scale ?? 1 / Math.sqrt(D), group = Hq / Hkv, sinks = o.sinks ?? 0;
  const out = new Float64Array(B * Hq * Sq * D), lse = new Float64Array(B * Hq * Sq).fill(-Infinity);
  const cuQ = c.cuQ ?? [0, Sq], cuK = c.cuK ?? [0, Sk];
  for (let b = 0; b < B; b++) for (let h = 0; h < Hq; h++) for (let i = 0; i < Sq; i++) {
    let s = 0;
    while (!(i < cuQ[s + 1])) s++;
    const q0 = cuQ[s], k0 = cuK[s], k1 = cuK[s + 1];
    const a = (i - q0) + (k1 - k0) - (cuQ[s + 1] - q0);
    const hk = Math.floor(h / group), row = (b * Hq + h) * Sq + i;
    const keys = [], logits = [];
    for (let j = k0; j < k1; j++) {
      const lj = j - k0, full = ((b * Hq + h) * Sq + i) * Sk + j;
      const state = blocks[(((bm === 1 ? 0 : b) * hm + (hm === 1 ? 0 : h)) * nQB + Math.floor(i / bq)) * nKB + Math.floor(j / bk)];
      const inWindow = !o.window || lj < sinks
        || ((o.window[0] < 0 || lj >= a - o.window[0]) && (o.window[1] < 0 || lj <= a + o.window[1]));
      const elementOk = (!o.causal || lj <= a) && inWindow && (!mask || mask[full] !== 0);
      if (state === 0 || (state === 1 && !elementOk)) continue;
      let dot = 0;
      for (let d = 0; d < D; d++) dot += q[row * D + d] * k[((b * Hkv + hk) * Sk + j) * D + d];
      let z = scale * dot;
      if (o.softcap) z = o.softcap * Math.tanh(z / o.softcap);
      if (bias) z += bias[full];
      if (o.alibiSlopes) z -= o.alibiSlopes[h] * Math.abs(a - lj);
      keys.push(j);
      logits.push(z);
    }
    const sink = o.sinkLogits ? o.sinkLogits[h] : -Infinity;
    const m = Math.max(sink, ...logits);
    if (m === -Infinity) continue;
    let denom = Math.exp(sink - m);
    const acc = new Float64Array(D);
    keys.forEach((j, n) => {
      const p = Math.exp(logits[n] - m);
      denom += p;
      for (let d = 0; d < D; d++) acc[d] += p * v[((b * Hkv + hk) * Sk + j) * D + d];
    });
    for (let d = 0; d < D; d++) out[row * D + d] = acc[d] / denom;
    lse[row] = m + Math.log(denom);
  }
  return { out, lse };
}

const expectSame = (got, want) => {
  expect(got.out).toEqual(want.out);
  expect(got.lse).toEqual(want.lse);
};

const DENSE = { B: 2, Hq: 4, Hkv: 2, Sq: 13, Sk: 19, D: 8 };
const VARLEN = { B: 1, Hq: 2, Hkv: 1, D: 8, cuQ: [0, 5, 5, 6, 15], cuK: [0, 7, 10, 10, 21], Sq: 15, Sk: 21 };
const OPTION_SETS = [
  [], ['causal'], ['window'], ['window', 'sinks'], ['causal', 'window', 'sinks'], ['mask'], ['bias', 'softcap'],
  ['alibi', 'causal'], ['sinkLogits', 'causal'], ['scale'],
  ['causal', 'window', 'sinks', 'mask', 'bias', 'softcap', 'alibi', 'sinkLogits'],
];

describe('blockSparseAttentionReference', () => {
  const grid = [];
  for (const c of [DENSE, VARLEN]) for (const names of OPTION_SETS) grid.push({ c, names, label: `${c === DENSE ? 'dense' : 'varlen'} {${names.join(', ')}}` });

  test.each(grid)('all-partial mask equals attentionReference: $label', ({ c, names }) => {
    const r = R.rng(`all partial ${c === DENSE ? 'dense' : 'varlen'} ${names.join(' ')}`);
    const x = qkv(r, c), o = drawOptions(r, c, names);
    const m = BlockMask.fromFunction(() => 'partial', { seqLenQ: c.Sq, seqLenK: c.Sk, blockSize: [4, 3] });
    expectSame(blockSparseAttentionReference(x.q.t, x.k.t, x.v.t, m, o), attentionReference(x.q.t, x.k.t, x.v.t, o));
  });

  test.each([[1, 1], [4, 4], [5, 3], [16, 16], [13, 19]])('BlockMask.causal with causal: true equals causal attention, block [%i, %i]', (bq, bk) => {
    for (const c of [DENSE, { ...DENSE, Sq: 19, Sk: 13 }]) {
      const r = R.rng(`causal exact ${bq} ${bk} ${c.Sq}`);
      const x = qkv(r, c), o = drawOptions(r, c, ['causal', 'alibi', 'bias']);
      const m = BlockMask.causal({ seqLenQ: c.Sq, seqLenK: c.Sk, blockSize: [bq, bk] });
      expectSame(blockSparseAttentionReference(x.q.t, x.k.t, x.v.t, m, o), attentionReference(x.q.t, x.k.t, x.v.t, o));
    }
  });

  test.each(WINDOWS)('BlockMask.slidingWindow with the same window equals windowed attention, window [%i, %i]', (left, right) => {
    for (const causal of [false, true]) {
      const r = R.rng(`window exact ${left} ${right} ${causal}`);
      const x = qkv(r, DENSE), o = { window: [left, right], causal, softcap: 3 };
      const m = BlockMask.slidingWindow({ seqLenQ: DENSE.Sq, seqLenK: DENSE.Sk, blockSize: [3, 4], window: [left, right], causal });
      expectSame(blockSparseAttentionReference(x.q.t, x.k.t, x.v.t, m, o), attentionReference(x.q.t, x.k.t, x.v.t, o));
    }
  });

  test('BlockMask.documents from cuSeqlens equals varlen attention; with and(causal) it equals varlen causal', () => {
    const r = R.rng('documents varlen');
    const ids = (cu, n) => { const a = new Int32Array(n); for (let s = 0; s + 1 < cu.length; s++) a.fill(s, cu[s], cu[s + 1]); return a; };
    const x = qkv(r, VARLEN);
    const shape = { seqLenQ: VARLEN.Sq, seqLenK: VARLEN.Sk, blockSize: [4, 4] };
    const docs = BlockMask.documents({ ...shape, segmentIds: ids(VARLEN.cuQ, VARLEN.Sq), segmentIdsK: ids(VARLEN.cuK, VARLEN.Sk) });
    expect(docs.density()).toBeLessThan(1);
    const o = drawOptions(r, VARLEN, ['bias']);
    expectSame(blockSparseAttentionReference(x.q.t, x.k.t, x.v.t, docs, o), attentionReference(x.q.t, x.k.t, x.v.t, o));
    // Self-attention packing (cuQ == cuK): per-segment causal is the packed causal rule.
    const cu = [0, 6, 7, 16, 21];
    const self = { B: 1, Hq: 2, Hkv: 2, D: 8, cuQ: cu, cuK: cu, Sq: 21, Sk: 21 };
    const y = qkv(r, self), oc = drawOptions(r, self, ['causal']);
    const sid = ids(cu, 21);
    const dc = BlockMask.documents({ seqLenQ: 21, seqLenK: 21, blockSize: 4, segmentIds: sid })
      .and(BlockMask.causal({ seqLenQ: 21, seqLenK: 21, blockSize: 4 }));
    expectSame(blockSparseAttentionReference(y.q.t, y.k.t, y.v.t, dc, oc), attentionReference(y.q.t, y.k.t, y.v.t, oc));
  });

  // Random skip / partial / full masks, against the per-element brute force: pins what a full block
  // overrides (causal, window, sinks, mask) and what it does not (segments, score modifiers).
  const TINY = [
    { name: 'dense GQA, Bm = B, Hm = Hq', c: DENSE, bm: 2, hm: 4, bq: 3, bk: 4 },
    { name: 'dense, broadcast mask [1, 1]', c: { B: 2, Hq: 2, Hkv: 1, Sq: 9, Sk: 6, D: 4 }, bm: 1, hm: 1, bq: 2, bk: 5 },
    { name: 'dense, Hm = Hq, Bm = 1, block 1x1', c: { B: 2, Hq: 2, Hkv: 2, Sq: 7, Sk: 7, D: 4 }, bm: 1, hm: 2, bq: 1, bk: 1 },
    { name: 'varlen, blocks across segments', c: VARLEN, bm: 1, hm: 2, bq: 4, bk: 3 },
  ];
  const tinyGrid = [];
  for (const t of TINY) for (const names of OPTION_SETS) tinyGrid.push({ ...t, names, label: `${t.name} {${names.join(', ')}}` });

  test.each(tinyGrid)('random 0/1/2 mask vs brute force: $label', ({ c, bm, hm, bq, bk, names }) => {
    const r = R.rng(`random mask ${c.Sq} ${bm} ${hm} ${bq} ${bk} ${names.join(' ')}`);
    const x = qkv(r, c), o = drawOptions(r, c, names);
    const m = BlockMask.fromFunction(() => r.pick([false, 'partial', 'full']), { batch: bm, heads: hm, seqLenQ: c.Sq, seqLenK: c.Sk, blockSize: [bq, bk] });
    const got = blockSparseAttentionReference(x.q.t, x.k.t, x.v.t, m, o);
    const want = bruteBlockSparse(c, x, m.blocks.data, bm, hm, bq, bk, o);
    check('out', relErr(got.out, want.out), 1e-12, () => worst(got.out, want.out));
    check('lse', lseErr(got.lse, want.lse), 1e-12, () => worst(got.lse, want.lse));
  });

  test('the brute force is sensitive to the full / partial distinction (the test can fail)', () => {
    const r = R.rng('sensitivity');
    const c = DENSE, x = qkv(r, c), o = drawOptions(r, c, ['causal']);
    const shape = { seqLenQ: c.Sq, seqLenK: c.Sk, blockSize: [c.Sq, c.Sk] };
    const full = BlockMask.fromFunction(() => 'full', shape), partial = BlockMask.fromFunction(() => 'partial', shape);
    const a = blockSparseAttentionReference(x.q.t, x.k.t, x.v.t, full, o);
    const b = blockSparseAttentionReference(x.q.t, x.k.t, x.v.t, partial, o);
    expectSame(a, attentionReference(x.q.t, x.k.t, x.v.t, {})); // full ignores causal
    expect(relErr(a.out, b.out)).toBeGreaterThan(1e-3);
  });
});

// ---------------------------------------------------------------------------------------------
describe('bad input', () => {
  const shape = { seqLenQ: 8, seqLenK: 8, blockSize: 4 };
  const u8 = (dims, fill = 0) => Tensor.from(new Uint8Array(dims.reduce((a, b) => a * b, 1)).fill(fill), dims);
  const q = Tensor.zeros([1, 2, 8, 4]), k = Tensor.zeros([1, 2, 8, 4]);
  const causal = BlockMask.causal(shape);
  const bad = [
    ['fromDense: float32 blocks', () => BlockMask.fromDense(Tensor.zeros([1, 1, 2, 2]), shape), 'ERR_ATTN_DTYPE', /blocks must be uint8.*float32/],
    ['fromDense: int32 blocks', () => BlockMask.fromDense(Tensor.zeros([1, 1, 2, 2], { dtype: 'int32' }), shape), 'ERR_ATTN_DTYPE', /blocks must be uint8/],
    ['fromDense: rank 3', () => BlockMask.fromDense(u8([1, 2, 2]), shape), 'ERR_ATTN_SHAPE', /blocks must have shape .*\[Bm, Hm, 2, 2\].*got \[1, 2, 2\]/],
    ['fromDense: wrong nKB', () => BlockMask.fromDense(u8([1, 1, 2, 3]), shape), 'ERR_ATTN_SHAPE', /blocks must have shape/],
    ['fromDense: nQB of a floor, not a ceil', () => BlockMask.fromDense(u8([1, 1, 2, 2]), { seqLenQ: 9, seqLenK: 8, blockSize: 4 }), 'ERR_ATTN_SHAPE', /\[Bm, Hm, 3, 2\]/],
    ['fromDense: Bm = 0', () => BlockMask.fromDense(u8([0, 1, 2, 2]), shape), 'ERR_ATTN_SHAPE', /blocks must have shape/],
    ['fromDense: value 3', () => { const t = u8([2, 1, 2, 2], 1); t.data[6] = 3; return BlockMask.fromDense(t, shape); }, 'ERR_ATTN_ARGUMENT', /blocks values must be 0 .* got 3 at \[1, 0, 1, 0\]/],
    ['fromDense: not a tensor', () => BlockMask.fromDense(new Uint8Array(4), shape), 'ERR_ATTN_ARGUMENT', /blocks must be a Tensor/],
    ['fromDense: no options', () => BlockMask.fromDense(u8([1, 1, 2, 2])), 'ERR_ATTN_ARGUMENT', /options must be an object/],
    ['blockSize 0', () => BlockMask.fromDense(u8([1, 1, 2, 2]), { ...shape, blockSize: 0 }), 'ERR_ATTN_ARGUMENT', /blockSize\[0\].*>= 1, got 0/],
    ['blockSize negative', () => BlockMask.causal({ ...shape, blockSize: [4, -2] }), 'ERR_ATTN_ARGUMENT', /blockSize\[1\].*got -2/],
    ['blockSize non-integer', () => BlockMask.causal({ ...shape, blockSize: 2.5 }), 'ERR_ATTN_ARGUMENT', /blockSize\[0\].*got 2\.5/],
    ['blockSize of one entry', () => BlockMask.causal({ ...shape, blockSize: [4] }), 'ERR_ATTN_ARGUMENT', /blockSize must be a positive integer or \[bq, bk\]/],
    ['blockSize a string', () => BlockMask.causal({ ...shape, blockSize: '4' }), 'ERR_ATTN_ARGUMENT', /blockSize/],
    ['seqLenQ 0', () => BlockMask.causal({ ...shape, seqLenQ: 0 }), 'ERR_ATTN_ARGUMENT', /seqLenQ must be an integer >= 1, got 0/],
    ['seqLenK non-integer', () => BlockMask.causal({ ...shape, seqLenK: 7.5 }), 'ERR_ATTN_ARGUMENT', /seqLenK .*got 7\.5/],
    ['seqLenK missing', () => BlockMask.causal({ seqLenQ: 8, blockSize: 4 }), 'ERR_ATTN_ARGUMENT', /seqLenK .*got undefined/],
    ['builder without a shape', () => BlockMask.causal(), 'ERR_ATTN_ARGUMENT', /BlockMask.causal: options must be an object/],
    ['builder batch 0', () => BlockMask.causal({ ...shape, batch: 0 }), 'ERR_ATTN_ARGUMENT', /batch must be an integer >= 1/],
    ['fromFunction: fn returns true', () => BlockMask.fromFunction(() => true, shape), 'ERR_ATTN_ARGUMENT', /fn must return false, 'partial' or 'full', got true at \[0, 0, 0, 0\]/],
    ['fromFunction: fn returns 2', () => BlockMask.fromFunction((b, h, qb, kb) => (kb === 1 ? 2 : false), shape), 'ERR_ATTN_ARGUMENT', /fn must return .* got 2 at \[0, 0, 0, 1\]/],
    ['fromFunction: fn returns \'skip\'', () => BlockMask.fromFunction(() => 'skip', shape), 'ERR_ATTN_ARGUMENT', /fn must return .* got 'skip'/],
    ['fromFunction: fn not a function', () => BlockMask.fromFunction('full', shape), 'ERR_ATTN_ARGUMENT', /fn must be a function/],
    ['fromFunction: heads 1.5', () => BlockMask.fromFunction(() => 'full', { ...shape, heads: 1.5 }), 'ERR_ATTN_ARGUMENT', /heads must be an integer >= 1/],
    ['slidingWindow: left -2', () => BlockMask.slidingWindow({ ...shape, window: [-2, 0] }), 'ERR_ATTN_ARGUMENT', /window\[0\] \(left\) must be an integer >= -1, got -2/],
    ['slidingWindow: right 1.5', () => BlockMask.slidingWindow({ ...shape, window: [1, 1.5] }), 'ERR_ATTN_ARGUMENT', /window\[1\] \(right\)/],
    ['slidingWindow: no window', () => BlockMask.slidingWindow(shape), 'ERR_ATTN_ARGUMENT', /window must be \[left, right\]/],
    ['dilated: dilation 0', () => BlockMask.dilated({ ...shape, dilation: 0 }), 'ERR_ATTN_ARGUMENT', /dilation must be an integer >= 1, got 0/],
    ['dilated: local -1', () => BlockMask.dilated({ ...shape, dilation: 2, local: -1 }), 'ERR_ATTN_ARGUMENT', /local must be an integer >= 0/],
    ['perHeadShards: shards 0', () => BlockMask.perHeadShards({ ...shape, heads: 2, shards: 0 }), 'ERR_ATTN_ARGUMENT', /shards must be an integer >= 1/],
    ['perHeadShards: heads 0', () => BlockMask.perHeadShards({ ...shape, heads: 0, shards: 2 }), 'ERR_ATTN_ARGUMENT', /heads must be an integer >= 1/],
    ['perHeadShards: localBlocks -1', () => BlockMask.perHeadShards({ ...shape, shards: 2, localBlocks: -1 }), 'ERR_ATTN_ARGUMENT', /localBlocks/],
    ['documents: ids too short', () => BlockMask.documents({ ...shape, segmentIds: new Int32Array(7) }), 'ERR_ATTN_SHAPE', /segmentIds must hold one id per query row \(seqLenQ = 8\), got 7/],
    ['documents: key ids too long', () => BlockMask.documents({ ...shape, segmentIds: new Int32Array(8), segmentIdsK: new Int32Array(9) }), 'ERR_ATTN_SHAPE', /segmentIdsK must hold one id per key \(seqLenK = 8\), got 9/],
    ['documents: ids an Array', () => BlockMask.documents({ ...shape, segmentIds: [0, 0, 0, 0, 1, 1, 1, 1] }), 'ERR_ATTN_ARGUMENT', /segmentIds must be an Int32Array/],
    ['and: other blockSize', () => causal.and(BlockMask.causal({ ...shape, blockSize: [4, 2] })), 'ERR_ATTN_ARGUMENT', /BlockMask.and: other must have the same blockSize/],
    ['or: other seqLenK', () => causal.or(BlockMask.causal({ ...shape, seqLenK: 7 })), 'ERR_ATTN_ARGUMENT', /BlockMask.or: .*seqLenK/],
    ['and: not a BlockMask', () => causal.and(u8([1, 1, 2, 2])), 'ERR_ATTN_ARGUMENT', /other must be a BlockMask/],
    ['and: Bm 2 vs 3', () => BlockMask.fromDense(u8([2, 1, 2, 2]), shape).and(BlockMask.fromDense(u8([3, 1, 2, 2]), shape)), 'ERR_ATTN_SHAPE', /Bm \(dim 0\) 3 does not broadcast/],
    ['or: Hm 2 vs 4', () => BlockMask.fromDense(u8([1, 2, 2, 2]), shape).or(BlockMask.fromDense(u8([1, 4, 2, 2]), shape)), 'ERR_ATTN_SHAPE', /Hm \(dim 1\) 4 does not broadcast/],
    ['reference: seqLenQ mismatch', () => blockSparseAttentionReference(q, k, k, BlockMask.causal({ ...shape, seqLenQ: 9 }), {}), 'ERR_ATTN_SHAPE', /blockMask was built for seqLenQ 9 x seqLenK 8, but q and k have 8 x 8/],
    ['reference: Hm does not broadcast', () => blockSparseAttentionReference(q, k, k, BlockMask.fromDense(u8([1, 3, 2, 2]), shape)), 'ERR_ATTN_SHAPE', /blockMask.blocks \[1, 3, 2, 2\] does not broadcast to \[B, Hq\] = \[1, 2\]/],
    ['reference: Bm does not broadcast', () => blockSparseAttentionReference(q, k, k, BlockMask.fromDense(u8([2, 1, 2, 2]), shape)), 'ERR_ATTN_SHAPE', /does not broadcast to \[B, Hq\]/],
    ['reference: not a BlockMask', () => blockSparseAttentionReference(q, k, k, u8([1, 1, 2, 2])), 'ERR_ATTN_ARGUMENT', /blockMask must be a BlockMask/],
  ];

  test.each(bad)('%s', (name, fn, code, msg) => {
    let err;
    try { fn(); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(AttnError);
    expect(err.code).toBe(code);
    expect(err.message).toMatch(msg);
  });
});

describe('device placement', () => {
  test("a builder's mask lives on the CPU; to('cpu') / toSync('cpu') return it as is, as Tensor.to does", async () => {
    const m = BlockMask.causal({ seqLenQ: 70, seqLenK: 90, blockSize: [16, 32] });
    expect(m.device).toBe('cpu');
    expect(m.toSync('cpu')).toBe(m);
    expect(await m.to('cpu')).toBe(m);
    expect(() => m.toSync('gpu7')).toThrow(expect.objectContaining({ code: 'ERR_ATTN_DEVICE' }));
  });
});
