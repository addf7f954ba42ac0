'use strict';
// Block-sparse attention (blockSparseAttentionSync and blockSparseAttention) on the CPU against
// the float64 oracle blockSparseAttentionReference (attnkit/reference), over random 0 / 1 / 2 block
// masks whose block sizes do and do not divide the lengths and the kernel's 64 x 64 tiles (so one
// tile mixes skipped, partial and full blocks), every dtype, layout and option; its equivalences
// with attention; hand-made masks; bad input; zero copy. Every run writes into a NaN-poisoned
// `out`, so an element the kernel forgets to write fails the comparison. The sync result is held to
// the oracle, the async one to the sync one, bitwise.
//
//
// Block states (lib/sparse/block-mask.ts): 0 skip; 2 full = computed WITHOUT causal / window /
// sinks / mask; anything else partial = every option applies. Varlen segments always hold, score
// modifiers (softcap, bias, alibiSlopes, sinkLogits) apply to every computed pair.
//
// Replay a failure: ATTNKIT_SEED=<printed seed> npx jest test/block-sparse.test.js -t '<name>'
const path = require('path');
const { spawnSync } = require('child_process');
const {
  Tensor, AttnError, BlockMask, attentionSync, blockSparseAttention, blockSparseAttentionSync, toFloat16, backendInfo, setNumThreads,
} = require('..');
const { blockSparseAttentionReference } = require('../dist/reference');
const { describeEachIsa } = require('./helpers/isa');
const R = require('./helpers/random');
const { TOL, tolFor, relErr, lseErr, worst, toleranceChecker } = require('./helpers/compare');
// The case builders of the fused-attention parity suite: the same inputs, layouts and options.
const { buildInputs, buildOptions, DTYPES } = require('./helpers/parity-cases');
const { expectRefusedBothWays } = require('./helpers/bad-input');

R.announceSeed('block-sparse');

// lse is float32 whatever the inputs (which the oracle reads exactly), so one tolerance serves all.
const LSE_TOL = TOL.float32;

const check = toleranceChecker(R.BASE_SEED);

const numel = (s) => s.reduce((a, b) => a * b, 1);
const pairOf = (bs) => (typeof bs === 'number' ? [bs, bs] : bs);
const cumsum = (a) => Int32Array.from([0, ...a.map(((t) => (x) => (t += x))(0))]);
/** Per position, the index of its segment (for BlockMask.documents). */
const segmentIds = (lengths) => Int32Array.from(lengths.flatMap((n, s) => new Array(n).fill(s)));

// ---------------------------------------------------------------------------------------------
// Case description -> block mask
// ---------------------------------------------------------------------------------------------
// A case is a parity case (test/helpers/parity-cases.js: B, Hq, Hkv, Sq, Sk, D, dtype, layout,
// out, outDtype, lse, varlen, o) plus
//   bm: { bs: n | [bq, bk], grid: 'BH' | 'B1' | '1H' | '11' (Bm, Hm: the batch / heads or 1),
//         p: [skip, partial, full] relative weights of the random states,
//         skipRows: query blocks skipped in every plane (their rows see nothing),
//         builder: (c) => BlockMask (instead of random states) }

/** Random block states of a case: { data, shape [Bm, Hm, nQB, nKB], blockSize }. */
function randomStates(r, c) {
  const s = c.bm || {};
  const [bq, bk] = pairOf(s.bs ?? 48);
  const nQB = Math.ceil(c.Sq / bq), nKB = Math.ceil(c.Sk / bk);
  const grid = s.grid ?? 'BH';
  const Bm = grid[0] === 'B' ? c.B : 1, Hm = grid[1] === 'H' ? c.Hq : 1;
  const w = s.p ?? [1, 1, 1];
  const total = w[0] + w[1] + w[2];
  const data = new Uint8Array(Bm * Hm * nQB * nKB);
  for (let n = 0; n < data.length; n++) {
    const x = r.random() * total;
    data[n] = x < w[0] ? 0 : x < w[0] + w[1] ? 1 : 2;
  }
  for (const qb of s.skipRows ?? []) {
    if (qb >= nQB) continue;
    for (let plane = 0; plane < Bm * Hm; plane++) data.fill(0, (plane * nQB + qb) * nKB, (plane * nQB + qb + 1) * nKB);
  }
  return { data, shape: [Bm, Hm, nQB, nKB], blockSize: [bq, bk] };
}

function blockMaskFor(r, c) {
  if (c.bm && c.bm.builder) return c.bm.builder(c);
  const st = randomStates(r, c);
  return BlockMask.fromDense(Tensor.from(st.data, st.shape), { blockSize: st.blockSize, seqLenQ: c.Sq, seqLenK: c.Sk });
}

function describeCase(c) {
  const o = Object.keys(c.o || {}).join('+') || 'no options';
  const bm = c.bm || {};
  return `B${c.B} Hq${c.Hq}/Hkv${c.Hkv} Sq${c.Sq} Sk${c.Sk} D${c.D} ${c.dtype} ${c.layout || 'bhsd'} out ${c.out || 'strided'}`
    + ` bs ${JSON.stringify(bm.builder ? 'builder' : bm.bs ?? 48)} grid ${bm.grid ?? 'BH'}${c.varlen ? ` varlen ${JSON.stringify(c.varlen)}` : ''} ${o}`;
}

/** The inputs, options, mask and the oracle's answer of a case, from the case's own random stream. */
const prepared = new Map(); // by case name: the ISA runs reuse the oracle's answer
function prepare(c) {
  if (!prepared.has(c.name)) prepared.set(c.name, prepareOnce(c));
  return prepared.get(c.name);
}
function prepareOnce(c) {
  const r = R.rng(c.name);
  const { q, k, v } = buildInputs(r, c);
  const opts = buildOptions(r, c);
  const blockMask = blockMaskFor(r, c);
  const ref = blockSparseAttentionReference(q.t, k.t, v.t, blockMask, opts);
  const outShape = [c.B, c.Hq, c.Sq, c.Dv ?? c.D];
  const outMode = c.out || 'strided';
  const outDtype = outMode === 'none' ? c.dtype : (c.outDtype || c.dtype);
  return { q, k, v, opts, blockMask, ref, outShape, outMode, outDtype, tol: tolFor(c.dtype, outDtype) };
}

/**
 * Runs one case through blockSparseAttentionSync and blockSparseAttention, each into a fresh
 * poisoned out. The sync result is checked against the oracle; the async one bitwise against the
 * sync one (both run the same work partition on attnkit's pool, so they must agree exactly), which
 * also halves the cost of the comparisons (slow under jest's VM context).
 */
async function runCase(c, modes = ['sync', 'async']) {
  const { q, k, v, opts, blockMask, ref, outShape, outMode, outDtype, tol } = prepare(c);
  const detail = (a, b) => () => `${worst(a, b)}\n  case: ${describeCase(c)}`;
  let first;
  for (const mode of modes) {
    const out = outMode === 'none' ? undefined
      : outMode === 'contig' ? R.poisonedOut(outShape, outDtype) : R.stridedOut(outShape, outDtype);
    const call = { ...opts, out, returnLse: !!c.lse };
    const res = mode === 'sync' ? blockSparseAttentionSync(q.t, k.t, v.t, blockMask, call)
      : await blockSparseAttention(q.t, k.t, v.t, blockMask, call);
    const o = c.lse ? res.out : res;
    if (out) expect(o).toBe(out);
    expect(o.dtype).toBe(outDtype);
    expect(o.shape).toEqual(outShape);
    if (c.lse) {
      expect(res.lse.dtype).toBe('float32');
      expect(res.lse.shape).toEqual([c.B, c.Hq, c.Sq]);
    }
    if (first === undefined) {
      first = { mode, out: o.toFloat32Array(), lse: c.lse ? res.lse.toFloat32Array() : undefined };
      check(`${mode} out (${c.dtype} -> ${outDtype})`, relErr(first.out, ref.out), tol, detail(first.out, ref.out));
      if (c.lse) check(`${mode} lse`, lseErr(first.lse, ref.lse), LSE_TOL, detail(first.lse, ref.lse));
    } else {
      bitwiseEqual(`${mode} out vs ${first.mode} out`, o.toFloat32Array(), first.out);
      if (c.lse) bitwiseEqual(`${mode} lse vs ${first.mode} lse`, res.lse.toFloat32Array(), first.lse);
    }
  }
  return ref;
}

/** Every element equal (NaN never is; +0 and -0 count as equal). */
function bitwiseEqual(what, a, b) {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) {
    if (!(a[i] === b[i])) throw new Error(`${what}: not bitwise equal at flat index ${i}: ${a[i]} vs ${b[i]}\n  replay: ATTNKIT_SEED=${R.BASE_SEED}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The case table
// ---------------------------------------------------------------------------------------------
const cases = [];
const byName = new Map();
function add(name, c) {
  const full = { name, B: 2, Hq: 2, Hkv: 1, D: 16, Sq: 80, Sk: 110, dtype: 'float32', lse: true, ...c, bm: { bs: 48, ...(c.bm || {}) } };
  if (full.varlen) {
    full.B = 1;
    full.Sq = full.varlen.q.reduce((a, b) => a + b, 0);
    full.Sk = full.varlen.k.reduce((a, b) => a + b, 0);
  }
  if (byName.has(name)) throw new Error(`duplicate case name ${name}`);
  cases.push(full);
  byName.set(name, full);
}

// Shapes x dtypes: every D, GQA ratios 1 / 2 / 4, Sq < Sk and Sq > Sk, lengths that the blocks do
// and do not divide.
const SHAPES = [
  { D: 16, B: 1, Hq: 4, Hkv: 4, Sq: 97, Sk: 150, bs: 48 },
  { D: 64, B: 3, Hq: 4, Hkv: 1, Sq: 100, Sk: 70, bs: 64 },
  { D: 80, B: 2, Hq: 2, Hkv: 1, Sq: 128, Sk: 192, bs: 64 }, // 64 divides both lengths
  { D: 128, B: 1, Hq: 2, Hkv: 1, Sq: 70, Sk: 129, bs: [100, 32] },
];
for (const { bs, ...s } of SHAPES) {
  for (const dtype of DTYPES) {
    add(`D=${s.D} ${dtype} B=${s.B} Hq/Hkv=${s.Hq}/${s.Hkv} Sq=${s.Sq} Sk=${s.Sk} bs=${JSON.stringify(bs)}`, { ...s, dtype, bm: { bs } });
  }
}

// Block sizes: multiples of the kernel's 64-key tiles, divisors of it, and sizes that cut tiles
// anywhere; square and not; larger than the lengths. Plain, then with every element-level option
// (those apply in partial blocks, not in full ones, so a tile mixing states tests them per element).
const BLOCK_SIZES = [64, 128, 32, 16, 48, 100, 7, 1, [48, 100], [100, 48], [7, 33], [128, 64], [64, 16], 256, 2 ** 31 - 1];
for (const bs of BLOCK_SIZES) add(`bs ${JSON.stringify(bs)} plain Sq=150 Sk=97`, { B: 1, Sq: 150, Sk: 97, bm: { bs } });
for (const bs of BLOCK_SIZES) {
  add(`bs ${JSON.stringify(bs)} + causal, window, sinks, mask`, {
    B: 1, Sq: 130, Sk: 170, o: { causal: true, window: [40, -1], sinks: 5, mask: { shape: 'B1QK', keep: 0.8 } }, bm: { bs },
  });
}
add('lengths divisible: bs 64 Sq=128 Sk=256 causal', { B: 1, Sq: 128, Sk: 256, o: { causal: true }, bm: { bs: 64 } });
add('lengths divisible: bs 128 Sq=256 Sk=128 window [30,30]', { B: 1, Sq: 256, Sk: 128, Hq: 2, Hkv: 1, o: { window: [30, 30] }, bm: { bs: 128 } });
add('lengths divisible: bs [32, 64] Sq=96 Sk=192 mask', { Sq: 96, Sk: 192, o: { mask: { shape: 'QK' } }, bm: { bs: [32, 64] } });

// The block grid: per batch and head, broadcast over either or both.
for (const grid of ['11', '1H', 'B1', 'BH']) {
  add(`grid ${grid}`, { B: 3, Hq: 4, Hkv: 1, D: 16, Sq: 70, Sk: 100, bm: { bs: 32, grid } });
  add(`grid ${grid} + causal + mask`, { B: 2, Hq: 4, Hkv: 2, D: 16, Sq: 100, Sk: 70, o: { causal: true, mask: { shape: 'BHQK' } }, bm: { bs: [24, 40], grid } });
}

// Mixes of states
add('all skipped: zeros, lse -Infinity', { bm: { p: [1, 0, 0] } });
add('all skipped + sinkLogits: zeros, lse = sink', { o: { sinkLogits: true }, bm: { p: [1, 0, 0] } });
add('all full overrides causal and window', { Sq: 150, Sk: 97, o: { causal: true, window: [3, 3] }, bm: { p: [0, 0, 1] } });
add('all full overrides a mask of zeros', { o: { mask: { shape: 'QK', keep: 0 } }, bm: { p: [0, 0, 1] } });
add('all partial + a mask of zeros: zeros', { o: { mask: { shape: 'QK', keep: 0 } }, bm: { p: [0, 1, 0] } });
add('all partial + causal Sq>Sk', { Sq: 150, Sk: 60, o: { causal: true }, bm: { p: [0, 1, 0], bs: 7 } });
add('mostly skipped', { B: 1, Sq: 200, Sk: 200, bm: { p: [20, 1, 1], bs: 16 } });
add('full and skip only', { Sq: 150, Sk: 150, o: { causal: true, mask: { shape: 'QK' } }, bm: { p: [1, 0, 1], bs: 40 } });
add('partial and skip only', { Sq: 150, Sk: 150, o: { causal: true, mask: { shape: 'QK' } }, bm: { p: [1, 1, 0], bs: 40 } });

// Fully hidden rows: whole query-block rows skipped, or rows the options hide in partial blocks.
add('hidden rows: query blocks skipped', { Sq: 130, Sk: 90, bm: { bs: 32, skipRows: [0, 2] } });
add('hidden rows: query blocks skipped + sinkLogits', { Sq: 130, Sk: 90, o: { sinkLogits: 2 }, bm: { bs: [32, 20], skipRows: [1, 3] } });
add('hidden rows: mask zero rows in partial blocks', { Sq: 70, Sk: 90, o: { mask: { shape: 'QK', zeroRows: [0, 5, 63, 64, 69] } }, bm: { p: [1, 3, 1], bs: 16 } });
add('hidden rows: causal Sq>Sk in partial blocks', { Sq: 140, Sk: 67, o: { causal: true }, bm: { p: [1, 3, 1], bs: 20 } });

// Layouts and out
add('layout bshd float16', { D: 64, dtype: 'float16', layout: 'bshd', o: { causal: true } });
add('layout bshd bfloat16', { D: 80, dtype: 'bfloat16', layout: 'bshd', bm: { bs: 7 } });
add('layout padded bfloat16', { D: 64, dtype: 'bfloat16', layout: 'padded', o: { window: [10, 0] }, bm: { bs: [16, 64] } });
add('layout padded float32', { D: 16, layout: 'padded', bm: { bs: 100 } });
add('layout qkv GQA float32 (Sq = Sk)', { B: 1, Hq: 4, Hkv: 2, D: 64, Sq: 130, Sk: 130, layout: 'qkv', o: { causal: true } });
add('layout qkv5 float16 (Sq = Sk)', { Hq: 2, Hkv: 2, D: 32, Sq: 100, Sk: 100, dtype: 'float16', layout: 'qkv5' });
add('out contiguous', { out: 'contig' });
add('out none (library allocates)', { out: 'none', dtype: 'float16' });
add('out bfloat16 from q float32', { outDtype: 'bfloat16', o: { causal: true } });
add('out float32 from q float16', { dtype: 'float16', outDtype: 'float32', bm: { bs: [7, 33] } });
add('no lse', { lse: false, o: { causal: true } });
add('Dv<D', { D: 64, Dv: 32, bm: { bs: 32 } });
add('Dv>D', { D: 32, Dv: 80, dtype: 'float16', bm: { bs: 100 } });
add('Sq=1 decode', { D: 64, Sq: 1, Sk: 150, o: { causal: true }, bm: { bs: [1, 48] } });
add('Sk=1', { D: 64, Sq: 70, Sk: 1, bm: { bs: 7 } });

// Every option alone (random masks with bs 48: tiles mix states)
add('opt causal', { o: { causal: true } });
add('opt causal Sq>Sk', { Sq: 140, Sk: 90, o: { causal: true } });
for (const w of [[-1, 0], [0, 0], [8, -1], [-1, 5], [6, 3], [-1, -1], [40, 0], [0, 70]]) {
  add(`opt window [${w}]`, { o: { window: w }, bm: { bs: 24 } });
}
add('opt window [20,-1] + causal', { Sq: 150, Sk: 150, o: { window: [20, -1], causal: true } });
add('opt window [5,5] Sq>Sk', { Sq: 120, Sk: 45, o: { window: [5, 5] }, bm: { bs: 16 } });
add('opt sinks=4 window [8,0]', { o: { sinks: 4, window: [8, 0] } });
add('opt sinks=4 window [8,0] + causal', { Sq: 100, Sk: 100, o: { sinks: 4, window: [8, 0], causal: true } });
add('opt sinks=70 window [5,5] (sinks span tiles)', { Sq: 60, Sk: 150, o: { sinks: 70, window: [5, 5] }, bm: { bs: [16, 32] } });
add('opt sinks=6 without window', { o: { sinks: 6, causal: true } });
add('opt softcap=2', { o: { softcap: 2 } });
add('opt softcap=8 scale=0.5', { o: { softcap: 8, scale: 0.5 }, bm: { bs: 7 } });
add('opt alibi', { B: 1, Hq: 8, Hkv: 2, o: { alibi: true } });
add('opt alibi Sq>Sk', { Hq: 4, Hkv: 1, Sq: 90, Sk: 30, o: { alibi: 0.2 }, bm: { bs: 10 } });
for (const [shape, dtype, view] of [['BHQK', 'float32'], ['QK', 'float32', 'transposed'], ['1H1K', 'float16'], ['B1Q1', 'bfloat16'], ['K', 'float32'], ['BHQK', 'float16', 'expanded']]) {
  add(`opt bias ${shape} ${dtype}${view ? ' ' + view : ''}`, { Sq: 70, Sk: 110, o: { bias: { shape, dtype, view } } });
}
add('opt bias large + causal', { Sq: 90, Sk: 90, o: { causal: true, bias: { shape: 'BHQK', scale: 10 } } });
for (const [shape, view] of [['BHQK'], ['QK', 'transposed'], ['B11K'], ['1H1K'], ['BHQ1'], ['BHQK', 'expanded']]) {
  add(`opt mask ${shape}${view ? ' ' + view : ''}`, { Sq: 70, Sk: 110, o: { mask: { shape, view } } });
}
add('opt mask sparse (keep 5%)', { o: { mask: { shape: 'BHQK', keep: 0.05 } } });
add('opt sinkLogits', { o: { sinkLogits: true } });
add('opt sinkLogits large + causal Sq>Sk', { Sq: 80, Sk: 30, o: { sinkLogits: 4, causal: true }, bm: { bs: 16 } });
add('opt scale=0.3', { o: { scale: 0.3 } });
add('opt scale=0 (uniform over the visible keys)', { o: { scale: 0 } });

// Options combined
const ALL = { causal: true, window: [30, 10], sinks: 3, softcap: 5, alibi: 0.5, bias: { shape: 'B1QK' }, mask: { shape: '1HQK', keep: 0.85 }, sinkLogits: true, scale: 0.2 };
add('all options float32', { Sq: 130, Sk: 170, o: ALL });
add('all options float16 bshd', { Sq: 130, Sk: 170, D: 64, dtype: 'float16', layout: 'bshd', o: ALL, bm: { bs: [7, 33] } });
add('all options bfloat16 padded Sq>Sk', { Sq: 150, Sk: 110, D: 80, dtype: 'bfloat16', layout: 'padded', o: ALL, bm: { bs: 100, grid: '1H' } });
add('all options but causal float32 GQA 4', { B: 1, Hq: 8, Hkv: 2, Sq: 90, Sk: 130, o: { ...ALL, causal: false, bias: { shape: 'BHQK', dtype: 'float16' } }, bm: { bs: [64, 16], grid: 'B1' } });

// Packed variable-length batches (block indices are packed positions), segments of length 0 and 1
const SEGS = { q: [0, 1, 37, 1, 60, 0, 23], k: [5, 0, 1, 70, 50, 0, 41] };
add('varlen segments of length 0 and 1', { Hq: 4, Hkv: 2, varlen: SEGS, bm: { bs: 32 } });
add('varlen causal', { Hq: 4, Hkv: 2, varlen: SEGS, o: { causal: true }, bm: { bs: 48 } });
add('varlen window + sinks, bs 7 grid 1H fp16', { Hq: 4, Hkv: 1, dtype: 'float16', varlen: SEGS, o: { window: [10, 2], sinks: 2 }, bm: { bs: 7, grid: '1H' } });
add('varlen all options', { Hq: 4, Hkv: 2, varlen: SEGS, o: { ...ALL, bias: { shape: '1HQK' } }, bm: { bs: [20, 50] } });
add('varlen equal segments bshd bfloat16', { Hq: 2, Hkv: 2, D: 64, dtype: 'bfloat16', layout: 'bshd', varlen: { q: [50, 1, 64, 0], k: [50, 1, 64, 0] }, o: { causal: true } });

// Builder masks (pinned by the oracle too)
const geom = (c, bs) => ({ seqLenQ: c.Sq, seqLenK: c.Sk, blockSize: bs });
add('builder causal(bs 48) without the causal option', { Sq: 130, Sk: 130, bm: { builder: (c) => BlockMask.causal(geom(c, 48)) } });
add('builder causal(bs 7) + causal', { Sq: 100, Sk: 160, bm: { builder: (c) => BlockMask.causal(geom(c, 7)) }, o: { causal: true } });
add('builder slidingWindow [16,0] + window and sinks', { Sq: 150, Sk: 150, o: { window: [16, 0], sinks: 4 }, bm: { builder: (c) => BlockMask.slidingWindow({ ...geom(c, 16), window: [16, 0] }) } });
add('builder dilated.and(causal) + causal', { B: 1, Sq: 200, Sk: 200, o: { causal: true }, bm: { builder: (c) => BlockMask.dilated({ ...geom(c, 16), dilation: 3, local: 2 }).and(BlockMask.causal(geom(c, 16))) } });
add('builder perHeadShards (Hm = heads)', { B: 1, Hq: 4, Hkv: 2, Sq: 160, Sk: 160, bm: { builder: (c) => BlockMask.perHeadShards({ ...geom(c, [32, 24]), heads: c.Hq, shards: 3 }) } });
add('builder documents + varlen', {
  varlen: { q: [30, 1, 70, 0, 40], k: [50, 2, 33, 7, 40] },
  bm: { builder: (c) => BlockMask.documents({ ...geom(c, 24), segmentIds: segmentIds(c.varlen.q), segmentIdsK: segmentIds(c.varlen.k) }) },
});
add('builder fromFunction per batch and head', { B: 2, Hq: 4, Hkv: 2, Sq: 120, Sk: 90, o: { causal: true, mask: { shape: 'QK' } }, bm: { builder: (c) => BlockMask.fromFunction((b, h, qb, kb) => ((b + h + qb + kb) % 3 === 0 ? false : (b + qb * kb + h) % 2 ? 'full' : 'partial'), { ...geom(c, [20, 36]), batch: c.B, heads: c.Hq }) } });

// Random shapes: B 1-3, GQA 1/2/4, Sq != Sk, D in {16, 64, 80, 128}, random block sizes, grids,
// state mixes, layouts, out modes and option subsets, all drawn from the seed.
function randomCase(i) {
  const r = R.rng(`random shape #${i}`);
  const B = r.int(1, 3);
  const Hkv = r.int(1, 2);
  const Hq = Hkv * r.pick([1, 2, 4]);
  const D = r.pick([16, 64, 80, 128]);
  // lengths up to 150, capped so that the float64 oracle's B * Hq * Sq * Sk * D stays near 4e6
  const maxLen = Math.max(24, Math.min(150, Math.floor(Math.sqrt(4e6 / (B * Hq * D)))));
  const Sq = r.int(1, maxLen);
  let Sk = r.int(1, maxLen);
  if (Sk === Sq) Sk++;
  const dtype = r.pick(DTYPES);
  const bsKind = r.pick([64, 128, 32, 48, 100, 7, 'pair']);
  const bs = bsKind === 'pair' ? [r.int(1, 130), r.int(1, 130)] : bsKind;
  const grid = r.pick(['BH', 'B1', '1H', '11']);
  const p = [r.random(), r.random(), r.random()];
  const layout = r.pick(['bhsd', 'bshd', 'padded']);
  const out = r.pick(['strided', 'contig', 'none']);
  const o = {};
  if (r.random() < 0.4) o.causal = true;
  if (r.random() < 0.3) o.window = [r.int(-1, 40), r.int(-1, 40)];
  if (o.window && r.random() < 0.5) o.sinks = r.int(0, 20);
  if (r.random() < 0.25) o.softcap = r.uniform(1, 10);
  if (r.random() < 0.25) o.alibi = true;
  if (r.random() < 0.3) o.bias = { shape: r.pick(['BHQK', 'QK', '1H1K', 'B1Q1']), dtype: r.pick(DTYPES) };
  if (r.random() < 0.3) o.mask = { shape: r.pick(['BHQK', 'QK', 'B11K', '1H1K']) };
  if (r.random() < 0.25) o.sinkLogits = true;
  const c = { B, Hq, Hkv, Sq, Sk, D, dtype, layout, out, lse: r.random() < 0.8, o, bm: { bs, grid, p } };
  c.name = `random #${i}: ${describeCase(c)}`;
  return c;
}
const RANDOM_CASES = Array.from({ length: 16 }, (_, i) => randomCase(i));

// ---------------------------------------------------------------------------------------------
describe('blockSparseAttention vs float64 reference (sync + async, poisoned out)', () => {
  test.each(cases)('$name', async (c) => { await runCase(c); });
});

describe('random shapes vs float64 reference', () => {
  test.each(RANDOM_CASES)('$name', async (c) => { await runCase(c); });
});

// Each CPU kernel ISA on a representative subset. setIsa caps at what the machine has.
const ISA_SUBSET = [
  'bs 48 + causal, window, sinks, mask', 'bs [7,33] + causal, window, sinks, mask', 'bs 64 + causal, window, sinks, mask',
  'all options float16 bshd', 'varlen all options', 'hidden rows: query blocks skipped + sinkLogits', 'grid 1H + causal + mask',
];
for (const n of ISA_SUBSET) if (!byName.has(n)) throw new Error(`ISA subset names unknown case ${n}`);

describeEachIsa(ISA_SUBSET, (name) => runCase(byName.get(name)));

// Several 64-row query blocks per work item share each key tile, and classify it per block: the
// kernel groups up to 4 when there are enough blocks per pool thread, so pin the pool to one thread.
const MULTI_BLOCK = [
  { name: 'multi-block items: random states bs [48, 20]', B: 1, Hq: 8, Hkv: 2, D: 16, Sq: 260, Sk: 130, dtype: 'float32', lse: true, bm: { bs: [48, 20] } },
  { name: 'multi-block items: causal, window, sinks, mask, bs 7, grid 1H, bfloat16', B: 1, Hq: 8, Hkv: 2, D: 16, Sq: 260, Sk: 150, dtype: 'bfloat16', lse: true, o: { causal: true, window: [90, 5], sinks: 2, mask: { shape: 'QK' } }, bm: { bs: 7, grid: '1H' } },
  { name: 'multi-block items: skipped query blocks, bs 64', B: 1, Hq: 8, Hkv: 8, D: 16, Sq: 300, Sk: 120, dtype: 'float32', lse: true, bm: { bs: 64, p: [1, 1, 2], skipRows: [1, 4] } },
];
describe('several query blocks per work item (one pool thread)', () => {
  const threads = backendInfo().cpu.threads;
  beforeAll(() => { setNumThreads(1); });
  afterAll(() => { setNumThreads(threads); expect(backendInfo().cpu.threads).toBe(threads); });
  test.each(MULTI_BLOCK)('$name', async (c) => {
    expect(backendInfo().cpu.threads).toBe(1);
    await runCase(c);
  });
});

// ---------------------------------------------------------------------------------------------
describe('fully hidden rows', () => {
  // Head 0 skips query blocks 0 and 3, every head skips block 5 (bq 16): those rows see nothing.
  const B = 1, Hq = 2, Hkv = 1, Sq = 100, Sk = 90, D = 16, bq = 16, bk = 32;
  const nQB = Math.ceil(Sq / bq), nKB = Math.ceil(Sk / bk);
  const hiddenBlocks = (h) => (h === 0 ? [0, 3, 5] : [5]);
  function setup(label) {
    const r = R.rng(label);
    const q = R.randomTensor(r, [B, Hq, Sq, D]).t, k = R.randomTensor(r, [B, Hkv, Sk, D]).t, v = R.randomTensor(r, [B, Hkv, Sk, D]).t;
    const states = new Uint8Array(Hq * nQB * nKB);
    for (let h = 0; h < Hq; h++)
      for (let qb = 0; qb < nQB; qb++)
        for (let kb = 0; kb < nKB; kb++) states[(h * nQB + qb) * nKB + kb] = hiddenBlocks(h).includes(qb) ? 0 : 1 + r.int(0, 1);
    const bm = BlockMask.fromDense(Tensor.from(states, [1, Hq, nQB, nKB]), { blockSize: [bq, bk], seqLenQ: Sq, seqLenK: Sk });
    return { q, k, v, bm };
  }
  const hidden = (h, i) => hiddenBlocks(h).includes(Math.floor(i / bq));

  test.each(['sync', 'async'])('%s: zeros and lse -Infinity; other rows finite', async (mode) => {
    const { q, k, v, bm } = setup('hidden rows');
    const out = R.stridedOut([B, Hq, Sq, D]);
    const call = { out, returnLse: true };
    const res = mode === 'sync' ? blockSparseAttentionSync(q, k, v, bm, call) : await blockSparseAttention(q, k, v, bm, call);
    expect(res.out).toBe(out);
    const o = out.toFloat32Array(), lse = res.lse.toFloat32Array();
    let nHidden = 0;
    for (let h = 0; h < Hq; h++)
      for (let i = 0; i < Sq; i++) {
        const row = h * Sq + i;
        if (hidden(h, i)) {
          nHidden++;
          expect(lse[row]).toBe(-Infinity);
          for (let d = 0; d < D; d++) if (o[row * D + d] !== 0) throw new Error(`hidden row h ${h} i ${i}: out[${d}] = ${o[row * D + d]}, want 0`);
        } else {
          expect(Number.isFinite(lse[row])).toBe(true);
          for (let d = 0; d < D; d++) if (!Number.isFinite(o[row * D + d])) throw new Error(`row h ${h} i ${i}: out[${d}] = ${o[row * D + d]}`);
        }
      }
    expect(nHidden).toBe(4 * bq); // three blocks of head 0, one of head 1
  });

  test('with sinkLogits: zeros and lse = the sink logit', () => {
    const { q, k, v, bm } = setup('hidden rows sink');
    const sinkLogits = Float32Array.from([0.75, -1.5]);
    const res = blockSparseAttentionSync(q, k, v, bm, { sinkLogits, returnLse: true, out: R.poisonedOut([B, Hq, Sq, D]) });
    const o = res.out.toFloat32Array(), lse = res.lse.toFloat32Array();
    for (let h = 0; h < Hq; h++)
      for (let i = 0; i < Sq; i++) {
        if (!hidden(h, i)) continue;
        expect(lse[h * Sq + i]).toBeCloseTo(sinkLogits[h], 6);
        for (let d = 0; d < D; d++) if (o[(h * Sq + i) * D + d] !== 0) throw new Error(`hidden row h ${h} i ${i}: out[${d}] = ${o[(h * Sq + i) * D + d]}, want 0`);
      }
  });
});

// ---------------------------------------------------------------------------------------------
// Equivalences with attention. Exact (bitwise; +0 and -0 count as equal) where the block mask
// makes the kernel take attention's own path; within tolerance where a 64 x 64 tile mixes block
// states (it then computes every score of the tile and hides them per element, so its sums group
// differently).
function compareRuns(what, got, want, exact, tol) {
  const a = got.toFloat32Array(), b = want.toFloat32Array();
  expect(a.length).toBe(b.length);
  if (exact) {
    bitwiseEqual(what, a, b);
  } else {
    const err = what.endsWith('lse') ? lseErr(a, b) : relErr(a, b);
    check(what, err, tol, () => worst(a, b));
  }
}
const tileAligned = (bs) => pairOf(bs).every((x) => x % 64 === 0);

describe('equivalences with attention', () => {
  const EQ_SHAPES = [[140, 140], [70, 170], [170, 80]];
  const EQ_BS = [64, 128, 32, 48, 100, 7, [48, 100], [64, 128]];
  const EB = 2, EH = 2, EHKV = 1, ED = 16;
  const inputs = (label, Sq, Sk, dtype = 'float32', layout = 'bhsd') => {
    const r = R.rng(label);
    return {
      q: R.randomTensor(r, [EB, EH, Sq, ED], dtype, { layout }).t,
      k: R.randomTensor(r, [EB, EHKV, Sk, ED], dtype, { layout }).t,
      v: R.randomTensor(r, [EB, EHKV, Sk, ED], dtype, { layout }).t,
    };
  };

  test.each(EQ_BS.flatMap((bs) => DTYPES.map((dtype) => [JSON.stringify(bs), dtype])))('BlockMask.causal(bs %s) + causal = attention causal, %s', async (bsJson, dtype) => {
    const bs = JSON.parse(bsJson);
    for (const [Sq, Sk] of EQ_SHAPES) {
      const { q, k, v } = inputs(`eq causal ${bsJson} ${dtype} ${Sq} ${Sk}`, Sq, Sk, dtype, 'bshd');
      const bm = BlockMask.causal({ seqLenQ: Sq, seqLenK: Sk, blockSize: bs });
      if (Sq === Sk && pairOf(bs)[0] < Sq) expect(bm.density()).toBeLessThan(1); // it does skip blocks
      const want = attentionSync(q, k, v, { causal: true, returnLse: true });
      const got = blockSparseAttentionSync(q, k, v, bm, { causal: true, returnLse: true, out: R.stridedOut([EB, EH, Sq, ED], dtype) });
      const exact = tileAligned(bs);
      compareRuns(`Sq ${Sq} Sk ${Sk} out`, got.out, want.out, exact, tolFor(dtype));
      compareRuns(`Sq ${Sq} Sk ${Sk} lse`, got.lse, want.lse, exact, LSE_TOL);
      const gotAsync = await blockSparseAttention(q, k, v, bm, { causal: true, returnLse: true });
      compareRuns(`Sq ${Sq} Sk ${Sk} async out`, gotAsync.out, got.out, true);
      compareRuns(`Sq ${Sq} Sk ${Sk} async lse`, gotAsync.lse, got.lse, true);
    }
  });

  const WINDOWS = [[[20, 3]], [[-1, 0]], [[8, -1]], [[-1, 5]], [[0, 0]], [[-1, -1]], [[20, -1], true], [[3, 3], true]];
  test.each(WINDOWS.flatMap(([w, causal]) => [64, 48, [7, 33]].map((bs) => [JSON.stringify(w), !!causal, JSON.stringify(bs)])))(
    'BlockMask.slidingWindow(window %s, causal %s, bs %s) + the same options = attention', (wJson, causal, bsJson) => {
      const window = JSON.parse(wJson), bs = JSON.parse(bsJson);
      for (const [Sq, Sk] of EQ_SHAPES) {
        const { q, k, v } = inputs(`eq window ${wJson} ${causal} ${bsJson} ${Sq} ${Sk}`, Sq, Sk);
        const bm = BlockMask.slidingWindow({ seqLenQ: Sq, seqLenK: Sk, blockSize: bs, window, causal });
        const opts = { window, causal, returnLse: true };
        const want = attentionSync(q, k, v, opts);
        const got = blockSparseAttentionSync(q, k, v, bm, { ...opts, out: R.stridedOut([EB, EH, Sq, ED]) });
        compareRuns(`Sq ${Sq} Sk ${Sk} out`, got.out, want.out, tileAligned(bs), TOL.float32);
        compareRuns(`Sq ${Sq} Sk ${Sk} lse`, got.lse, want.lse, tileAligned(bs), LSE_TOL);
      }
    });

  // An all-partial mask applies every option exactly as attention does: bitwise the same.
  const PARTIAL_OPTS = [
    ['no options', {}],
    ['causal', { causal: true }],
    ['causal Sq>Sk', { causal: true }, 200, 90],
    ['window + sinks', { window: [12, 4], sinks: 3 }],
    ['mask BHQK', { mask: { shape: 'BHQK' } }],
    ['bias + softcap + alibi', { bias: { shape: '1HQK', dtype: 'float16' }, softcap: 4, alibi: true }],
    ['sinkLogits + mask zero rows', { sinkLogits: true, mask: { shape: 'QK', zeroRows: [0, 7, 64] } }],
    ['all options', ALL],
    ['varlen + causal + mask', { causal: true, mask: { shape: 'QK' } }, 0, 0, SEGS],
    ['varlen all options', ALL, 0, 0, SEGS],
  ];
  test.each(PARTIAL_OPTS.flatMap(([name, o, Sq, Sk, varlen]) => DTYPES.map((dtype) => ({ name, o, Sq, Sk, varlen, dtype }))))(
    "fromFunction(() => 'partial') + $name = attention with the same options, $dtype", async ({ name, o, Sq: Sq0, Sk: Sk0, varlen, dtype }) => {
      const c = { name: `eq partial ${name} ${dtype}`, B: varlen ? 1 : 2, Hq: 4, Hkv: 2, D: 16, Sq: Sq0 || 110, Sk: Sk0 || 150, dtype, layout: 'bshd', o, varlen };
      if (varlen) { c.Sq = varlen.q.reduce((a, b) => a + b, 0); c.Sk = varlen.k.reduce((a, b) => a + b, 0); }
      const r = R.rng(c.name);
      const { q, k, v } = buildInputs(r, c);
      const opts = buildOptions(r, c);
      for (const [bs, grid] of [[48, {}], [[7, 100], { batch: c.B, heads: c.Hq }], [64, { heads: c.Hq }]]) {
        const bm = BlockMask.fromFunction(() => 'partial', { seqLenQ: c.Sq, seqLenK: c.Sk, blockSize: bs, ...grid });
        const want = attentionSync(q.t, k.t, v.t, { ...opts, returnLse: true });
        const got = blockSparseAttentionSync(q.t, k.t, v.t, bm, { ...opts, returnLse: true, out: R.stridedOut([c.B, c.Hq, c.Sq, c.D], dtype) });
        compareRuns(`bs ${JSON.stringify(bs)} out`, got.out, want.out, true);
        compareRuns(`bs ${JSON.stringify(bs)} lse`, got.lse, want.lse, true);
        const gotAsync = await blockSparseAttention(q.t, k.t, v.t, bm, { ...opts, returnLse: true });
        compareRuns(`bs ${JSON.stringify(bs)} async out`, gotAsync.out, want.out, true);
      }
    });

  // Document masks: their full blocks skip the element rules, the segments still hold.
  test.each([24, 64, [16, 48]])('BlockMask.documents(bs %j) + varlen = attention varlen; .and(causal) + causal too', (bs) => {
    const lens = [30, 1, 0, 70, 64, 40];
    const Sq = lens.reduce((a, b) => a + b, 0);
    const r = R.rng(`eq documents ${JSON.stringify(bs)}`);
    const q = R.randomTensor(r, [1, 4, Sq, 32]).t, k = R.randomTensor(r, [1, 2, Sq, 32]).t, v = R.randomTensor(r, [1, 2, Sq, 32]).t;
    const cu = cumsum(lens);
    const geo = { seqLenQ: Sq, seqLenK: Sq, blockSize: bs };
    const docs = BlockMask.documents({ ...geo, segmentIds: segmentIds(lens) });
    expect(docs.density()).toBeLessThan(1);
    for (const [bm, causal] of [[docs, false], [docs.and(BlockMask.causal(geo)), true]]) {
      const opts = { cuSeqlensQ: cu, cuSeqlensK: cu, causal, returnLse: true };
      const want = attentionSync(q, k, v, opts);
      const got = blockSparseAttentionSync(q, k, v, bm, { ...opts, out: R.stridedOut([1, 4, Sq, 32]) });
      compareRuns(`causal ${causal} out`, got.out, want.out, false, TOL.float32);
      compareRuns(`causal ${causal} lse`, got.lse, want.lse, false, LSE_TOL);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Hand-made masks: anything with blocks (a uint8 Tensor), blockSize, seqLenQ and seqLenK.
describe('hand-made block masks', () => {
  const B = 2, Hq = 4, Hkv = 2, Sq = 110, Sk = 90, D = 32, bq = 24, bk = 20;
  const nQB = Math.ceil(Sq / bq), nKB = Math.ceil(Sk / bk);
  function setup(label, grid = [B, Hq]) {
    const r = R.rng(label);
    const q = R.randomTensor(r, [B, Hq, Sq, D]).t, k = R.randomTensor(r, [B, Hkv, Sk, D]).t, v = R.randomTensor(r, [B, Hkv, Sk, D]).t;
    const states = new Uint8Array(grid[0] * grid[1] * nQB * nKB);
    for (let n = 0; n < states.length; n++) states[n] = r.int(0, 2);
    const bm = BlockMask.fromDense(Tensor.from(states, [grid[0], grid[1], nQB, nKB]), { blockSize: [bq, bk], seqLenQ: Sq, seqLenK: Sk });
    const opts = { causal: true, window: [50, 3], mask: Tensor.from(Uint8Array.from({ length: Sq * Sk }, () => (r.int(0, 4) > 0 ? 1 : 0)), [Sq, Sk]) };
    return { q, k, v, states, bm, opts };
  }
  const run = (q, k, v, m, opts) => blockSparseAttentionSync(q, k, v, m, { ...opts, returnLse: true, out: R.poisonedOut([B, Hq, Sq, D]) });
  const same = (what, a, b) => { compareRuns(`${what} out`, a.out, b.out, true); compareRuns(`${what} lse`, a.lse, b.lse, true); };

  test('a plain object equals the BlockMask of the same states, and the oracle', () => {
    const { q, k, v, states, bm, opts } = setup('hand-made plain');
    const obj = { blocks: Tensor.from(states.slice(), [B, Hq, nQB, nKB]), blockSize: [bq, bk], seqLenQ: Sq, seqLenK: Sk };
    const want = run(q, k, v, bm, opts);
    same('plain object', run(q, k, v, obj, opts), want);
    const ref = blockSparseAttentionReference(q, k, v, bm, opts);
    check('out vs oracle', relErr(want.out, ref.out), TOL.float32, () => worst(want.out, ref.out));
    check('lse vs oracle', lseErr(want.lse, ref.lse), LSE_TOL, () => worst(want.lse, ref.lse));
  });

  test('non-contiguous blocks (swapped storage, offset; stride-0 heads) read through their strides', () => {
    const { q, k, v, states, bm, opts } = setup('hand-made strided');
    // storage [B, Hq, nKB, nQB] after a 5-element offset, viewed back with strides
    const swapped = new Uint8Array(5 + states.length).fill(9);
    for (let p = 0; p < B * Hq; p++)
      for (let qb = 0; qb < nQB; qb++)
        for (let kb = 0; kb < nKB; kb++) swapped[5 + (p * nKB + kb) * nQB + qb] = states[(p * nQB + qb) * nKB + kb];
    const view = Tensor.from(swapped, [B, Hq, nQB, nKB], { strides: [Hq * nKB * nQB, nKB * nQB, 1, nQB], offset: 5 });
    same('swapped storage', run(q, k, v, { blocks: view, blockSize: [bq, bk], seqLenQ: Sq, seqLenK: Sk }, opts), run(q, k, v, bm, opts));

    // one plane per batch entry, repeated over the heads with a 0 stride
    const one = setup('hand-made strided heads', [B, 1]);
    const expanded = Tensor.from(one.states.slice(), [B, Hq, nQB, nKB], { strides: [nQB * nKB, 0, nKB, 1] });
    same('stride-0 heads', run(q, k, v, { blocks: expanded, blockSize: [bq, bk], seqLenQ: Sq, seqLenK: Sk }, opts), run(q, k, v, one.bm, opts));
  });

  test('empty lengths (Sq or Sk = 0, which BlockMask cannot describe): nothing to do, lse -Infinity', async () => {
    const T = (shape) => Tensor.from(new Float32Array(numel(shape)).fill(0.5), shape);
    for (const [sq, sk] of [[5, 0], [0, 5], [0, 0]]) {
      const q = T([1, 2, sq, 4]), k = T([1, 1, sk, 4]), v = T([1, 1, sk, 4]);
      const nq = Math.ceil(sq / 4), nk = Math.ceil(sk / 4);
      const obj = { blocks: Tensor.from(new Uint8Array(nq * nk).fill(2), [1, 1, nq, nk]), blockSize: [4, 4], seqLenQ: sq, seqLenK: sk };
      for (const res of [blockSparseAttentionSync(q, k, v, obj, { returnLse: true }), await blockSparseAttention(q, k, v, obj, { returnLse: true })]) {
        expect(res.out.shape).toEqual([1, 2, sq, 4]);
        expect(Array.from(res.out.toFloat32Array()).every((x) => x === 0)).toBe(true);
        expect(Array.from(res.lse.toFloat32Array()).every((x) => x === -Infinity)).toBe(true);
      }
    }
  });

  test('states other than 0 and 2 are partial (3, 7, 255 act as 1)', () => {
    const { q, k, v, states, bm, opts } = setup('hand-made odd states');
    const odd = states.map((s, n) => (s === 1 ? [1, 3, 7, 255][n % 4] : s));
    const obj = { blocks: Tensor.from(odd, [B, Hq, nQB, nKB]), blockSize: [bq, bk], seqLenQ: Sq, seqLenK: Sk };
    same('odd partial states', run(q, k, v, obj, opts), run(q, k, v, bm, opts));
  });
});

// ---------------------------------------------------------------------------------------------
// Zero copy: the caller's out is the tensor written and returned; nothing else is written.
describe('zero copy', () => {
  const B = 2, Hq = 2, Hkv = 1, Sq = 70, Sk = 100, D = 32;
  function setup(label, dtype = 'float32') {
    const r = R.rng(label);
    const q = R.randomTensor(r, [B, Hq, Sq, D], dtype).t, k = R.randomTensor(r, [B, Hkv, Sk, D], dtype).t, v = R.randomTensor(r, [B, Hkv, Sk, D], dtype).t;
    const bm = BlockMask.fromFunction((b, h, qb, kb) => [false, 'partial', 'full'][(b + 2 * h + qb + kb) % 3], { seqLenQ: Sq, seqLenK: Sk, blockSize: [16, 48], batch: B, heads: Hq });
    return { q, k, v, bm };
  }

  test.each(DTYPES.flatMap((d) => [[d, 'sync'], [d, 'async']]))('%s %s: a strided out is written in place, only inside its view', async (dtype, mode) => {
    const { q, k, v, bm } = setup(`zero copy ${dtype}`, dtype);
    const out = R.stridedOut([B, Hq, Sq, D], dtype);
    const storage = out.data;
    const call = { out, causal: true, returnLse: true };
    const res = mode === 'sync' ? blockSparseAttentionSync(q, k, v, bm, call) : await blockSparseAttention(q, k, v, bm, call);
    expect(res.out).toBe(out);
    expect(out.data).toBe(storage);
    // every element of the view written, every other element of the storage still poisoned
    const inView = new Uint8Array(storage.length);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < Hq; h++)
        for (let i = 0; i < Sq; i++)
          for (let d = 0; d < D; d++) inView[out.offset + b * out.strides[0] + h * out.strides[1] + i * out.strides[2] + d * out.strides[3]] = 1;
    const isPoison = dtype === 'float32' ? (x) => Number.isNaN(x) : (x) => x === R.poisonArray(new Uint16Array(1), dtype)[0];
    for (let n = 0; n < storage.length; n++) {
      if (!inView[n] && !isPoison(storage[n])) throw new Error(`${dtype}: element ${n} outside the out view was written`);
    }
    expect(out.toFloat32Array().every(Number.isFinite)).toBe(true);
    const ref = blockSparseAttentionReference(q, k, v, bm, { causal: true });
    check(`${mode} out`, relErr(out, ref.out), tolFor(dtype), () => worst(out, ref.out));
  });

  test('a contiguous out without lse is returned as is; inputs and the mask are not written', async () => {
    const { q, k, v, bm } = setup('zero copy contiguous');
    const snap = [q, k, v, bm.blocks].map((t) => t.data.slice());
    const out = R.poisonedOut([B, Hq, Sq, D]);
    expect(blockSparseAttentionSync(q, k, v, bm, { out })).toBe(out);
    const first = out.data.slice();
    R.poison(out);
    expect(await blockSparseAttention(q, k, v, bm, { out })).toBe(out);
    expect(out.data).toEqual(first);
    [q, k, v, bm.blocks].forEach((t, i) => expect(t.data).toEqual(snap[i]));
  });

  test('without out, a new tensor of q\'s dtype and shape comes back', async () => {
    const { q, k, v, bm } = setup('zero copy none', 'bfloat16');
    for (const res of [blockSparseAttentionSync(q, k, v, bm), await blockSparseAttention(q, k, v, bm)]) {
      expect(res).toBeInstanceOf(Tensor);
      expect(res.dtype).toBe('bfloat16');
      expect(res.shape).toEqual([B, Hq, Sq, D]);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Bad input: blockSparseAttentionSync throws and blockSparseAttention rejects (never throws) an
// AttnError with the right code and a message naming the argument.
const CODES = ['ERR_ATTN_SHAPE', 'ERR_ATTN_DTYPE', 'ERR_ATTN_DEVICE', 'ERR_ATTN_ARGUMENT', 'ERR_ATTN_ABORTED',
  'ERR_ATTN_DISPOSED', 'ERR_ATTN_OOM', 'ERR_ATTN_CUDA_UNAVAILABLE', 'ERR_ATTN_NATIVE_LOAD'];

describe('bad inputs', () => {
  // Base problem: B 1, Hq 4, Hkv 2 (GQA), Sq 37, Sk 53, D 8, block size 16: a [1, 1, 3, 4] grid.
  const B = 1, HQ = 4, HKV = 2, SQ = 37, SK = 53, D = 8, BS = 16, NQB = 3, NKB = 4;
  let seed = 4242;
  const rnd = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff * 2 - 1; };
  const T = (shape, dtype = 'float32') => {
    const f = Float32Array.from({ length: numel(shape) }, rnd);
    if (dtype === 'float32') return Tensor.from(f, shape);
    if (dtype === 'float16') return Tensor.from(toFloat16(f), shape, { dtype });
    if (dtype === 'int32') return Tensor.from(new Int32Array(numel(shape)).fill(1), shape);
    return Tensor.from(new Uint8Array(numel(shape)).fill(1), shape);
  };
  const geo = { seqLenQ: SQ, seqLenK: SK, blockSize: BS };
  const goodMask = () => BlockMask.causal(geo);
  const handMade = (blocks, blockSize = [BS, BS], extra = {}) => ({ blocks, blockSize, seqLenQ: SQ, seqLenK: SK, ...extra });
  const u8 = (shape) => T(shape, 'uint8');
  function base(over = {}) {
    return {
      q: 'q' in over ? over.q : T([B, HQ, SQ, D]),
      k: 'k' in over ? over.k : T([B, HKV, SK, D]),
      v: 'v' in over ? over.v : T([B, HKV, SK, D]),
      bm: 'bm' in over ? over.bm : goodMask(),
      opts: over.opts,
    };
  }
  function detached(shape) {
    const buf = new ArrayBuffer(numel(shape));
    const t = Tensor.from(new Uint8Array(buf), shape);
    structuredClone(buf, { transfer: [buf] });
    return t;
  }
  function shrunk(shape) {
    const n = numel(shape);
    const rab = new ArrayBuffer(n, { maxByteLength: n });
    const t = Tensor.from(new Uint8Array(rab).fill(1), shape);
    rab.resize(n - 5);
    return t;
  }

  const ARG = 'ERR_ATTN_ARGUMENT', SHAPE = 'ERR_ATTN_SHAPE', DTYPE = 'ERR_ATTN_DTYPE';
  const CASES = [
    // not a block mask
    ['blockMask undefined', () => base({ bm: undefined }), ARG, /blockMask/],
    ['blockMask null', () => base({ bm: null }), ARG, /blockMask/],
    ['blockMask a number', () => base({ bm: 7 }), ARG, /blockMask/],
    ['blockMask a string', () => base({ bm: 'causal' }), ARG, /blockMask/],
    ['blockMask a bare Uint8Array', () => base({ bm: new Uint8Array(NQB * NKB) }), ARG, /blockMask/],
    ['blockMask a Tensor (its blocks alone)', () => base({ bm: u8([1, 1, NQB, NKB]) }), ARG, /blockMask/],
    ['blockMask whose blocks is a Uint8Array', () => base({ bm: handMade(new Uint8Array(NQB * NKB)) }), ARG, /blockMask/],
    ['blockMask without blockSize', () => base({ bm: { blocks: u8([1, 1, NQB, NKB]), seqLenQ: SQ, seqLenK: SK } }), ARG, /blockMask/],
    ['blockMask with a number blockSize', () => base({ bm: handMade(u8([1, 1, NQB, NKB]), BS) }), ARG, /blockMask/],
    // built for other lengths
    ['BlockMask built for another seqLenQ', () => base({ bm: BlockMask.causal({ ...geo, seqLenQ: SQ + 1 }) }), SHAPE, /blockMask/],
    ['BlockMask built for another seqLenK', () => base({ bm: BlockMask.causal({ ...geo, seqLenK: SK - 1 }) }), SHAPE, /blockMask/],
    ['BlockMask built for swapped lengths', () => base({ bm: BlockMask.causal({ ...geo, seqLenQ: SK, seqLenK: SQ }) }), SHAPE, /blockMask/],
    ['BlockMask built for other lengths, same grid', () => base({ bm: BlockMask.causal({ ...geo, seqLenQ: SQ + 2, seqLenK: SK + 3 }) }), SHAPE, /blockMask/],
    ['hand-made mask claiming other lengths', () => base({ bm: handMade(u8([1, 1, NQB, NKB]), [BS, BS], { seqLenK: SK + 1 }) }), SHAPE, /blockMask/],
    // blocks of the wrong dtype (hand-made: BlockMask.fromDense refuses them)
    ['blocks float32', () => base({ bm: handMade(T([1, 1, NQB, NKB])) }), DTYPE, /blockMask/],
    ['blocks int32', () => base({ bm: handMade(T([1, 1, NQB, NKB], 'int32')) }), DTYPE, /blockMask/],
    ['blocks float16', () => base({ bm: handMade(T([1, 1, NQB, NKB], 'float16')) }), DTYPE, /blockMask/],
    // block sizes
    ['block size 0', () => base({ bm: handMade(u8([1, 1, NQB, NKB]), [0, BS]) }), ARG, /blockMask/],
    ['key block size 0', () => base({ bm: handMade(u8([1, 1, NQB, NKB]), [BS, 0]) }), ARG, /blockMask/],
    ['block sizes [0, 0]', () => base({ bm: handMade(u8([1, 1, 1, 1]), [0, 0]) }), ARG, /blockMask/],
    ['negative block size', () => base({ bm: handMade(u8([1, 1, NQB, NKB]), [-16, BS]) }), ARG, /blockMask/],
    ['non-integer block size', () => base({ bm: handMade(u8([1, 1, NQB, NKB]), [BS, 15.5]) }), ARG, /blockMask/],
    ['NaN block size', () => base({ bm: handMade(u8([1, 1, NQB, NKB]), [NaN, BS]) }), ARG, /blockMask/],
    ['Infinity block size', () => base({ bm: handMade(u8([1, 1, 1, 1]), [Infinity, Infinity]) }), ARG, /blockMask/],
    ['block size 2^31 (past int32)', () => base({ bm: handMade(u8([1, 1, 1, 1]), [2 ** 31, BS]) }), ARG, /blockMask/],
    // grids that do not broadcast to [B, Hq, nQB, nKB]
    ['grid of batch 2 for B = 1', () => base({ bm: handMade(u8([2, 1, NQB, NKB])) }), SHAPE, /blockMask/],
    ['grid per kv head (Hkv, not Hq)', () => base({ bm: handMade(u8([1, HKV, NQB, NKB])) }), SHAPE, /blockMask/],
    ['grid of 3 heads', () => base({ bm: handMade(u8([1, 3, NQB, NKB])) }), SHAPE, /blockMask/],
    ['grid one query block too many', () => base({ bm: handMade(u8([1, 1, NQB + 1, NKB])) }), SHAPE, /blockMask/],
    ['grid one key block too few', () => base({ bm: handMade(u8([1, 1, NQB, NKB - 1])) }), SHAPE, /blockMask/],
    ['grid built for another block size', () => base({ bm: handMade(u8([1, 1, Math.ceil(SQ / 8), Math.ceil(SK / 8)])) }), SHAPE, /blockMask/],
    ['grid transposed', () => base({ bm: handMade(u8([1, 1, NKB, NQB])) }), SHAPE, /blockMask/],
    ['blocks of rank 5', () => base({ bm: handMade(u8([1, 1, 1, NQB, NKB])) }), SHAPE, /blockMask/],
    ['BlockMask.fromFunction over batch 2 for B = 1', () => base({ bm: BlockMask.fromFunction(() => 'full', { ...geo, batch: 2, heads: HQ }) }), SHAPE, /blockMask/],
    ['BlockMask.perHeadShards over 8 heads for Hq = 4', () => base({ bm: BlockMask.perHeadShards({ ...geo, heads: 8, shards: 2 }) }), SHAPE, /blockMask/],
    // blocks memory the JS side no longer vouches for
    ['blocks disposed', () => { const bm = goodMask(); bm.blocks.dispose(); return base({ bm }); }, 'ERR_ATTN_DISPOSED', /blockMask/],
    ['blocks over a detached buffer', () => base({ bm: handMade(detached([1, 1, NQB, NKB])) }), ARG, /blockMask/],
    ['blocks over a shrunk resizable buffer', () => base({ bm: handMade(shrunk([1, 1, NQB, NKB])) }), ARG, /blockMask/],
    // the usual ones hold through this op
    ['q rank 3', () => base({ q: T([HQ, SQ, D]) }), SHAPE, /\bq\b/],
    ['q rank 5', () => base({ q: T([B, HQ, SQ, D, 1]) }), SHAPE, /\bq\b/],
    ['k rank 3', () => base({ k: T([HKV, SK, D]) }), SHAPE, /\bk\b/],
    ['q not a Tensor', () => base({ q: new Float32Array(HQ * SQ * D) }), ARG, /\bq\b/],
    ['v a string', () => base({ v: 'v' }), ARG, /\bv\b/],
    ['q float32, k float16', () => base({ k: T([B, HKV, SK, D], 'float16') }), DTYPE, /\bk\b/],
    ['Hq % Hkv != 0', () => base({ k: T([B, 3, SK, D]), v: T([B, 3, SK, D]) }), SHAPE, /heads/],
    ['v length != k length', () => base({ v: T([B, HKV, SK - 1, D]) }), SHAPE, /\bv\b/],
    ['mask that does not broadcast', () => base({ opts: { mask: u8([B, HQ, SQ, SK - 1]) } }), SHAPE, /mask/],
    ['mask float32', () => base({ opts: { mask: T([SQ, SK]) } }), DTYPE, /mask/],
    ['bias uint8', () => base({ opts: { bias: u8([SQ, SK]) } }), DTYPE, /bias/],
    ['bias that does not broadcast', () => base({ opts: { bias: T([SQ + 1, SK]) } }), SHAPE, /bias/],
    ['negative scale', () => base({ opts: { scale: -1 } }), ARG, /scale/],
    ['negative softcap', () => base({ opts: { softcap: -1 } }), ARG, /softcap/],
    ['window left < -1', () => base({ opts: { window: [-2, 0] } }), ARG, /window/],
    ['window not an array', () => base({ opts: { window: 4 } }), ARG, /window/],
    ['negative sinks', () => base({ opts: { sinks: -1 } }), ARG, /sinks/],
    ['alibiSlopes too short', () => base({ opts: { alibiSlopes: new Float32Array(HQ - 1) } }), ARG, /alibiSlopes/],
    ['sinkLogits wrong length', () => base({ opts: { sinkLogits: new Float32Array(HQ + 1) } }), ARG, /sinkLogits/],
    ['cuSeqlensQ not ending at Sq', () => base({ opts: { cuSeqlensQ: Int32Array.of(0, 20, 30), cuSeqlensK: Int32Array.of(0, 20, SK) } }), ARG, /cuSeqlensQ/],
    ['only cuSeqlensK', () => base({ opts: { cuSeqlensK: Int32Array.of(0, SK) } }), ARG, /cuSeqlens/],
    ['out of the wrong shape', () => base({ opts: { out: T([B, HQ, SQ, D + 1]) } }), SHAPE, /\bout\b/],
    ['out int32', () => base({ opts: { out: T([B, HQ, SQ, D], 'int32') } }), DTYPE, /\bout\b/],
    ['out not a Tensor', () => base({ opts: { out: new Float32Array(B * HQ * SQ * D) } }), ARG, /\bout\b/],
    ['options null', () => base({ opts: null }), ARG, /options/],
    ['options a string', () => base({ opts: 'causal' }), ARG, /options/],
    ['signal not an AbortSignal', () => base({ opts: { signal: { aborted: 'no' } } }), ARG, /signal/],
    ['signal already aborted', () => base({ opts: { signal: AbortSignal.abort() } }), 'ERR_ATTN_ABORTED', /abort/i],
    ['signal already aborted, with returnLse and out', () => base({ opts: { signal: AbortSignal.abort(), returnLse: true, out: T([B, HQ, SQ, D]) } }), 'ERR_ATTN_ABORTED', /abort/i],
  ];

  test('the valid base call succeeds (the table is not vacuous)', async () => {
    const s = base();
    const out = blockSparseAttentionSync(s.q, s.k, s.v, s.bm, { causal: true });
    expect(out.shape).toEqual([B, HQ, SQ, D]);
    const a = await blockSparseAttention(s.q, s.k, s.v, s.bm, { causal: true, signal: new AbortController().signal });
    expect(a.toFloat32Array()).toEqual(out.toFloat32Array());
    // near misses of the table: a hand-made object, a [1, 1] grid of one huge block, broadcast heads
    for (const bm of [handMade(u8([1, 1, NQB, NKB])), handMade(u8([1, 1, 1, 1]), [2 ** 31 - 1, 2 ** 31 - 1]), handMade(u8([B, HQ, NQB, NKB])),
      BlockMask.fromFunction(() => 'partial', { ...geo, batch: B, heads: HQ })]) {
      expect(blockSparseAttentionSync(s.q, s.k, s.v, bm).toFloat32Array().every(Number.isFinite)).toBe(true);
    }
  });

  test.each(CASES.map(([name, build, code, mention]) => ({ name, build, code, mention })))('$name -> $code', async ({ name, build, code, mention }) => {
    await expectRefusedBothWays(name, 'blockSparseAttention',
      () => { const s = build(); return blockSparseAttentionSync(s.q, s.k, s.v, s.bm, s.opts); },
      () => { const a = build(); return blockSparseAttention(a.q, a.k, a.v, a.bm, a.opts); }, code, mention);
  });

  test('a rejected call leaves the caller\'s out untouched', async () => {
    const sentinel = 1234.5;
    const bads = [handMade(T([1, 1, NQB, NKB])), handMade(u8([1, 1, NQB, NKB]), [0, BS]), handMade(u8([2, 1, NQB, NKB])),
      BlockMask.causal({ ...geo, seqLenQ: SQ + 1 }), null];
    for (const bm of bads) {
      const out = Tensor.from(new Float32Array(B * HQ * SQ * D).fill(sentinel), [B, HQ, SQ, D]);
      const { q, k, v } = base();
      expect(() => blockSparseAttentionSync(q, k, v, bm, { out })).toThrow(AttnError);
      await expect(blockSparseAttention(q, k, v, bm, { out })).rejects.toBeInstanceOf(AttnError);
      expect(out.data.every((x) => x === sentinel)).toBe(true);
    }
  });

  // BlockMask and the op agree on block sizes: at most 2^31 - 1 (the kernels' 32-bit block index).
  test('a block size of 2^31 is refused when the mask is built, as the op would refuse it', () => {
    const { q, k, v } = base();
    let bm;
    try {
      bm = BlockMask.causal({ ...geo, blockSize: 2 ** 31 });
    } catch (e) {
      expect(e).toBeInstanceOf(AttnError); // fixed on the builder's side: refused when built
      expect(e.code).toBe('ERR_ATTN_ARGUMENT');
      return;
    }
    let res, err;
    try { res = blockSparseAttentionSync(q, k, v, bm, { causal: true }); } catch (e) { err = e; }
    if (err) throw new Error(`BlockMask.causal accepted blockSize 2^31, blockSparseAttentionSync refused it: ${err.code}: ${err.message}`);
    expect(res.toFloat32Array().every(Number.isFinite)).toBe(true);
  });

  test('aborting a running async call settles it: ERR_ATTN_ABORTED or a complete result', async () => {
    const S = 1024;
    // values do not matter here, only the work: constant inputs are cheap to make
    const q = Tensor.from(new Float32Array(4 * S * 64).fill(0.01), [1, 4, S, 64]), k = Tensor.from(new Float32Array(4 * S * 64).fill(0.02), [1, 4, S, 64]);
    const v = Tensor.from(new Float32Array(4 * S * 64).fill(0.5), [1, 4, S, 64]);
    const bm = BlockMask.causal({ seqLenQ: S, seqLenK: S, blockSize: 48 });
    const ac = new AbortController();
    const p = blockSparseAttention(q, k, v, bm, { causal: true, signal: ac.signal });
    ac.abort();
    const res = await p.then((x) => x, (e) => e);
    if (res instanceof Tensor) {
      expect(res.toFloat32Array().every(Number.isFinite)).toBe(true);
    } else {
      expect(res).toBeInstanceOf(AttnError);
      expect(res.code).toBe('ERR_ATTN_ABORTED');
    }
    // the library is usable afterwards
    expect(blockSparseAttentionSync(q.slice(2, 0, 64), k.slice(2, 0, 64), v.slice(2, 0, 64), BlockMask.causal({ seqLenQ: 64, seqLenK: 64, blockSize: 48 }), { causal: true })
      .toFloat32Array().every(Number.isFinite)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Randomized malformed hand-made masks in a child process: the process must survive, every failure
// must be a coded AttnError, every success a finite result with out written only inside its view.
const FUZZ = `
const { Tensor, AttnError, blockSparseAttention, blockSparseAttentionSync } = require(process.argv[1]);
const CODES = new Set(${JSON.stringify(CODES)});
const N = Number(process.argv[2]);
let s = Number(process.argv[3]) >>> 0;
function rand() { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; }
const ri = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = (a) => a[Math.floor(rand() * a.length)];
const chance = (p) => rand() < p;
const numel = (sh) => sh.reduce((a, b) => a * b, 1);
const f32 = (shape) => Tensor.from(Float32Array.from({ length: numel(shape) }, () => rand() * 2 - 1), shape);
const SENTINEL = -7777.25;
const summary = { calls: 0, successes: 0, failures: 0, codes: {}, problems: [] };
function blocksTensor(shape) {
  const dtype = chance(0.9) ? 'uint8' : pick(['int32', 'float32', 'float16']);
  const Ctor = { uint8: Uint8Array, int32: Int32Array, float32: Float32Array, float16: Uint16Array }[dtype];
  const n = numel(shape);
  const layout = pick(['contig', 'contig', 'offset', 'transposed', 'broadcast']);
  if (layout === 'transposed' && shape.length === 4) {
    const [a, b, c, d] = shape;
    const data = new Ctor(n);
    for (let i = 0; i < n; i++) data[i] = chance(0.9) ? ri(0, 2) : ri(0, 255);
    return Tensor.from(data, shape, { dtype, strides: [b * c * d, c * d, 1, c] });
  }
  if (layout === 'broadcast' && shape.length === 4) {
    const data = new Ctor(Math.max(1, n));
    for (let i = 0; i < data.length; i++) data[i] = ri(0, 2);
    return Tensor.from(data, shape, { dtype, strides: [0, 0, shape[3], 1] });
  }
  const off = layout === 'offset' ? ri(1, 7) : 0;
  const data = new Ctor(n + off);
  for (let i = 0; i < data.length; i++) data[i] = chance(0.9) ? ri(0, 2) : ri(0, 255);
  return Tensor.from(data, shape, { dtype, offset: off });
}
async function main() {
  for (let it = 0; it < N; it++) {
    const B = ri(1, 2), Hkv = ri(1, 2), Hq = Hkv * pick([1, 2]), Sq = ri(1, 24), Sk = ri(1, 24), D = pick([4, 8, 16]);
    const clean = chance(0.4);
    const size = () => (clean || chance(0.7) ? pick([1, 2, 3, 5, 7, 8, 16, 64, 1000, 2 ** 31 - 1]) : pick([0, -1, -0, 1.5, NaN, Infinity, -Infinity, 2 ** 31, 1e300, null, undefined, '4', 'x', {}]));
    const bq = size(), bk = size();
    const nq = Number.isInteger(bq) && bq > 0 ? Math.ceil(Sq / bq) : ri(1, 4), nk = Number.isInteger(bk) && bk > 0 ? Math.ceil(Sk / bk) : ri(1, 4);
    const grid = [pick([1, B]), pick([1, Hq]), nq, nk];
    if (!clean && chance(0.3)) grid[ri(0, 3)] += pick([-1, 1, 2]);
    if (!clean && chance(0.05)) grid.unshift(1);
    if (!clean && chance(0.05)) grid.splice(0, 2);
    let blocks;
    try { blocks = blocksTensor(grid.map((x) => Math.max(x, 0))); } catch (e) { continue; }
    if (!clean && chance(0.03)) blocks.dispose();
    const bm = { blocks, blockSize: chance(0.97) ? [bq, bk] : pick([bq, undefined, [bq]]), seqLenQ: clean || chance(0.9) ? Sq : Sq + 1, seqLenK: Sk };
    const q = f32([B, Hq, Sq, D]), k = f32([B, Hkv, Sk, D]), v = f32([B, Hkv, Sk, D]);
    const opts = { returnLse: chance(0.5) };
    if (chance(0.4)) opts.causal = true;
    if (chance(0.3)) { opts.window = [ri(-1, 6), ri(-1, 6)]; if (chance(0.5)) opts.sinks = ri(0, 4); }
    if (chance(0.2)) opts.mask = Tensor.from(Uint8Array.from({ length: Sq * Sk }, () => ri(0, 1)), [Sq, Sk]);
    if (chance(0.2)) opts.softcap = 3;
    if (B === 1 && chance(0.3)) {
      const cut = (n) => { const a = ri(0, n), b = ri(a, n); return Int32Array.of(0, a, b, n); };
      opts.cuSeqlensQ = cut(Sq); opts.cuSeqlensK = cut(Sk);
    }
    let guard = null;
    if (chance(0.5)) {
      guard = new Float32Array(B * Hq * Sq * D + 6).fill(SENTINEL);
      opts.out = Tensor.from(guard, [B, Hq, Sq, D], { offset: 3 });
    }
    summary.calls++;
    try {
      const res = chance(0.5) ? blockSparseAttentionSync(q, k, v, bm, opts) : await blockSparseAttention(q, k, v, bm, opts);
      const out = opts.returnLse ? res.out : res;
      summary.successes++;
      if (!out.toFloat32Array().every(Number.isFinite)) summary.problems.push('non-finite out at iteration ' + it);
      if (guard && [0, 1, 2, guard.length - 3, guard.length - 2, guard.length - 1].some((i) => guard[i] !== SENTINEL)) summary.problems.push('wrote outside out at iteration ' + it);
    } catch (e) {
      summary.failures++;
      if (!(e instanceof AttnError) || !CODES.has(e.code)) summary.problems.push('iteration ' + it + ': ' + (e && e.constructor && e.constructor.name) + ' ' + (e && e.code) + ' ' + (e && e.message));
      else summary.codes[e.code] = (summary.codes[e.code] || 0) + 1;
    }
  }
  process.stdout.write(JSON.stringify(summary) + '\\n');
}
main().catch((e) => { process.stdout.write(JSON.stringify({ crash: String(e && e.stack) }) + '\\n'); process.exit(3); });
`;

describe('randomized malformed block masks in a child process', () => {
  test('the process survives, every failure is a coded AttnError, every success is finite and in bounds', () => {
    const fuzzSeed = R.BASE_SEED % 0x100000000;
    const r = spawnSync(process.execPath, ['-e', FUZZ, path.join(__dirname, '..'), '1500', String(fuzzSeed)], { encoding: 'utf8', timeout: 90000 });
    const last = (r.stdout || '').trim().split('\n').pop();
    if (r.status !== 0) throw new Error(`child exited with status ${r.status} signal ${r.signal} (fuzz seed ${fuzzSeed})\nstdout tail: ${(r.stdout || '').slice(-2000)}\nstderr: ${(r.stderr || '').slice(-3000)}`);
    const summary = JSON.parse(last);
    expect(summary.problems).toEqual([]);
    expect(summary.calls).toBeGreaterThan(1200);
    expect(summary.successes).toBeGreaterThan(150);
    expect(summary.failures).toBeGreaterThan(150);
    expect(Object.keys(summary.codes).length).toBeGreaterThanOrEqual(3);
  });
});
