'use strict';
// mergeAttentionStates against the float64 oracle, and the split-KV property: attention over
// disjoint key ranges, each with its lse, merges into attention over all keys.
//
// Replay a failure: ATTNKIT_SEED=<printed seed> npx jest test/merge.test.js -t '<name>'
const { Tensor, attentionSync, mergeAttentionStates } = require('..');
const { attentionReference, mergeReference } = require('../dist/reference');
const R = require('./helpers/random');
const { TOL, tolFor, relErr, lseErr, worst, toleranceChecker } = require('./helpers/compare');

R.announceSeed('merge');

const check = toleranceChecker(R.BASE_SEED);

// ---------------------------------------------------------------------------------------------
// mergeAttentionStates vs mergeReference
// ---------------------------------------------------------------------------------------------
/**
 * An lse tensor [B, H, S] holding `vals` (row-major): 'contig', or 'strided' (a [B, S, H] buffer
 * viewed through transpose, with NaN poison around it via an offset and a spare tail).
 */
function lseTensor(vals, shape, view) {
  if (view !== 'strided') return Tensor.from(Float32Array.from(vals), shape);
  const [B, H, S] = shape;
  const buf = new Float32Array(2 + B * S * H + 3).fill(NaN);
  const t = Tensor.from(buf, [B, S, H], { offset: 2 }).transpose(1, 2);
  let n = 0;
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let s = 0; s < S; s++) buf[2 + (b * S + s) * H + h] = vals[n++];
  return t;
}

/**
 * A case: shape [B, H, S, Dv], parts: list of out dtypes, layout of each part's out, lse view,
 * and which lse entries are -Infinity ('none' | 'some' | 'row' (some rows -inf in every part) |
 * 'part' (one part -inf everywhere)).
 */
const mergeCases = [
  { name: 'one part (identity)', shape: [2, 3, 17, 32], parts: ['float32'] },
  { name: 'two parts fp32', shape: [2, 4, 33, 64], parts: ['float32', 'float32'] },
  { name: 'three parts fp32 with -inf entries', shape: [1, 8, 40, 16], parts: ['float32', 'float32', 'float32'], inf: 'some' },
  { name: 'rows -inf in every part', shape: [2, 2, 30, 32], parts: ['float32', 'float32'], inf: 'row' },
  { name: 'one part -inf everywhere', shape: [2, 2, 30, 32], parts: ['float32', 'float32', 'float32'], inf: 'part' },
  { name: 'five parts, large lse spread', shape: [1, 4, 50, 80], parts: ['float32', 'float32', 'float32', 'float32', 'float32'], lseScale: 30 },
  { name: 'fp16 parts', shape: [2, 4, 33, 64], parts: ['float16', 'float16'], inf: 'some' },
  { name: 'bf16 parts', shape: [2, 4, 33, 64], parts: ['bfloat16', 'bfloat16', 'bfloat16'], inf: 'some' },
  { name: 'mixed dtypes (fp32 first)', shape: [1, 4, 33, 128], parts: ['float32', 'float16', 'bfloat16'] },
  { name: 'mixed dtypes (bf16 first)', shape: [1, 4, 33, 128], parts: ['bfloat16', 'float32'] },
  { name: 'strided outs (bshd) and strided lse', shape: [2, 4, 45, 64], parts: ['float32', 'float16'], layout: 'bshd', lseView: 'strided', inf: 'some' },
  { name: 'padded outs', shape: [2, 3, 21, 80], parts: ['float32', 'float32'], layout: 'padded', lseView: 'strided' },
  { name: 'more than 256 rows (several work items)', shape: [3, 4, 70, 16], parts: ['float32', 'float32'], inf: 'some' },
];

describe('mergeAttentionStates vs mergeReference', () => {
  test.each(mergeCases)('$name', (c) => {
    const r = R.rng(`merge ${c.name}`);
    const [B, H, S, Dv] = c.shape;
    const rows = B * H * S;
    const parts = [], refParts = [];
    c.parts.forEach((dtype, p) => {
      const out = R.randomTensor(r, c.shape, dtype, { layout: c.layout || 'bhsd' });
      const lv = new Float32Array(rows);
      for (let i = 0; i < rows; i++) lv[i] = r.normal() * (c.lseScale ?? 3);
      if (c.inf === 'some') for (let i = 0; i < rows; i++) if (r.random() < 0.25) lv[i] = -Infinity;
      if (c.inf === 'row') for (let i = 0; i < rows; i += 7) lv[i] = -Infinity;
      if (c.inf === 'part' && p === 1) lv.fill(-Infinity);
      parts.push({ out: out.t, lse: lseTensor(lv, [B, H, S], c.lseView) });
      refParts.push({ out: out.values, lse: lv });
    });
    const ref = mergeReference(refParts, rows, Dv);
    const m = mergeAttentionStates(parts);
    expect(m.out.dtype).toBe(c.parts[0]);
    expect(m.out.shape).toEqual(c.shape);
    expect(m.lse.dtype).toBe('float32');
    expect(m.lse.shape).toEqual([B, H, S]);
    check('merged out', relErr(m.out, ref.out), tolFor(c.parts[0]), () => worst(m.out, ref.out));
    check('merged lse', lseErr(m.lse, ref.lse), TOL.float32, () => worst(m.lse, ref.lse));
    if (c.inf === 'row') {
      // a row with no part: zeros and -Infinity
      const o = m.out.toFloat32Array(), l = m.lse.toFloat32Array();
      expect(l[0]).toBe(-Infinity);
      expect(Array.from(o.subarray(0, Dv)).every((x) => x === 0)).toBe(true);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// split-KV: attention over key ranges, merged == attention over all keys
// ---------------------------------------------------------------------------------------------
// Options that depend on where a key sits relative to the end of the key range (causal, window,
// alibi) change meaning when the keys are split, so causal is expressed as a uint8 mask over all
// keys and sliced with them, exactly as a split-KV decoder would. Sink logits belong to exactly
// one part and are left out.
const splitCases = [
  { name: 'two parts', B: 2, Hq: 4, Hkv: 2, Sq: 40, Sk: 150, D: 64, cuts: [77] },
  { name: 'two parts at a tile boundary', B: 1, Hq: 4, Hkv: 4, Sq: 70, Sk: 128, D: 32, cuts: [64] },
  { name: 'three parts GQA 8', B: 1, Hq: 8, Hkv: 1, Sq: 33, Sk: 140, D: 32, cuts: [20, 101] },
  { name: 'decode Sq=1, four parts', B: 3, Hq: 8, Hkv: 2, Sq: 1, Sk: 150, D: 128, cuts: [40, 80, 120] },
  { name: 'causal mask: early rows fully masked in the last part (lse -inf)', B: 2, Hq: 4, Hkv: 2, Sq: 60, Sk: 100, D: 32, cuts: [55], causalMask: true },
  { name: 'causal mask, Sq>Sk: rows fully masked in every part', B: 1, Hq: 2, Hkv: 1, Sq: 90, Sk: 50, D: 32, cuts: [25], causalMask: true },
  { name: 'a part fully masked everywhere (lse -inf)', B: 2, Hq: 2, Hkv: 2, Sq: 30, Sk: 90, D: 32, cuts: [30, 60], deadPart: 1 },
  { name: 'softcap + bias sliced', B: 2, Hq: 4, Hkv: 2, Sq: 40, Sk: 120, D: 64, cuts: [61], softcap: 4, bias: true },
  { name: 'bshd layout, random mask', B: 2, Hq: 4, Hkv: 1, Sq: 50, Sk: 130, D: 80, cuts: [33, 97], layout: 'bshd', randomMask: true },
  { name: 'fp16 inputs, fp32 part outputs', B: 1, Hq: 4, Hkv: 2, Sq: 40, Sk: 110, D: 64, cuts: [50], dtype: 'float16', partOut: 'float32' },
  { name: 'bf16 inputs, fp32 part outputs, causal mask', B: 1, Hq: 4, Hkv: 2, Sq: 40, Sk: 110, D: 64, cuts: [80], dtype: 'bfloat16', partOut: 'float32', causalMask: true },
  { name: 'an empty part (zero keys)', B: 1, Hq: 2, Hkv: 2, Sq: 20, Sk: 60, D: 32, cuts: [0, 30] },
];

describe('split-KV: merged partial attention equals attention over all keys', () => {
  test.each(splitCases)('$name', (c) => {
    const r = R.rng(`split ${c.name}`);
    const dtype = c.dtype || 'float32';
    const layout = c.layout || 'bhsd';
    const q = R.randomTensor(r, [c.B, c.Hq, c.Sq, c.D], dtype, { layout }).t;
    const k = R.randomTensor(r, [c.B, c.Hkv, c.Sk, c.D], dtype, { layout }).t;
    const v = R.randomTensor(r, [c.B, c.Hkv, c.Sk, c.D], dtype, { layout }).t;

    const common = {};
    if (c.softcap) common.softcap = c.softcap;
    let mask, bias;
    if (c.causalMask || c.randomMask || c.deadPart !== undefined) {
      const mv = new Uint8Array(c.B * c.Sq * c.Sk);
      for (let b = 0; b < c.B; b++)
        for (let i = 0; i < c.Sq; i++)
          for (let j = 0; j < c.Sk; j++) {
            let keep = 1;
            if (c.causalMask && j > i + c.Sk - c.Sq) keep = 0;
            if (c.randomMask && r.random() < 0.3) keep = 0;
            if (c.deadPart !== undefined && j >= c.cuts[c.deadPart - 1] && j < c.cuts[c.deadPart]) keep = 0;
            mv[(b * c.Sq + i) * c.Sk + j] = keep;
          }
      mask = Tensor.from(mv, [c.B, 1, c.Sq, c.Sk]);
    }
    if (c.bias) bias = R.randomTensor(r, [c.B, c.Hq, c.Sq, c.Sk], 'float32').t;

    // whole: oracle and native
    const full = { ...common, mask, bias };
    const ref = attentionReference(q, k, v, full);
    const whole = attentionSync(q, k, v, { ...full, returnLse: true });

    // parts over [cuts[i-1], cuts[i])
    const bounds = [0, ...c.cuts, c.Sk];
    const parts = [];
    let sawDeadRow = false;
    for (let p = 0; p + 1 < bounds.length; p++) {
      const [j0, j1] = [bounds[p], bounds[p + 1]];
      const opts = { ...common, returnLse: true };
      if (mask) opts.mask = mask.slice(3, j0, j1);
      if (bias) opts.bias = bias.slice(3, j0, j1);
      opts.out = R.stridedOut([c.B, c.Hq, c.Sq, c.D], c.partOut || dtype);
      const part = attentionSync(q, k.slice(2, j0, j1), v.slice(2, j0, j1), opts);
      // each part on its own matches the oracle over its keys
      const pref = attentionReference(q, k.slice(2, j0, j1), v.slice(2, j0, j1), opts);
      check(`part ${p} out`, relErr(part.out, pref.out), tolFor(dtype, c.partOut || dtype), () => worst(part.out, pref.out));
      check(`part ${p} lse`, lseErr(part.lse, pref.lse), TOL.float32, () => worst(part.lse, pref.lse));
      if (pref.lse.some((x) => x === -Infinity)) sawDeadRow = true;
      parts.push(part);
    }
    if (c.causalMask || c.deadPart !== undefined || c.cuts.includes(0)) expect(sawDeadRow).toBe(true);

    const merged = mergeAttentionStates(parts);
    const tol = tolFor(c.partOut || dtype);
    check('merged out vs oracle', relErr(merged.out, ref.out), tol, () => worst(merged.out, ref.out));
    check('merged lse vs oracle', lseErr(merged.lse, ref.lse), TOL.float32, () => worst(merged.lse, ref.lse));
    if (dtype === 'float32') {
      check('merged out vs whole', relErr(merged.out, whole.out.toFloat32Array()), TOL.float32);
      check('merged lse vs whole', lseErr(merged.lse, whole.lse.toFloat32Array()), TOL.float32);
    }
  });
});
