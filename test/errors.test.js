'use strict';
// A table of bad inputs: attentionSync throws and attention rejects (never throws) an AttnError
// with the right code and a message naming the argument. Plus a randomized malformed-call batch in
// a child process: the process must survive and every failure must be a coded AttnError.
const path = require('path');
const { spawnSync } = require('child_process');
const { Tensor, AttnError, attention, attentionSync, mergeAttentionStates, toFloat16 } = require('..');
const { checkError, expectRefusedBothWays } = require('./helpers/bad-input');

const CODES = ['ERR_ATTN_SHAPE', 'ERR_ATTN_DTYPE', 'ERR_ATTN_DEVICE', 'ERR_ATTN_ARGUMENT', 'ERR_ATTN_ABORTED',
  'ERR_ATTN_DISPOSED', 'ERR_ATTN_OOM', 'ERR_ATTN_CUDA_UNAVAILABLE', 'ERR_ATTN_NATIVE_LOAD'];

let seed = 12345;
function rnd() { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff * 2 - 1; }
function f32(n) { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = rnd(); return a; }
const numel = (s) => s.reduce((a, b) => a * b, 1);
const T = (shape, dtype = 'float32') => {
  if (dtype === 'float32') return Tensor.from(f32(numel(shape)), shape);
  if (dtype === 'float16' || dtype === 'bfloat16') return Tensor.from(toFloat16(f32(numel(shape))), shape, { dtype });
  if (dtype === 'int32') return Tensor.from(new Int32Array(numel(shape)).fill(1), shape);
  return Tensor.from(new Uint8Array(numel(shape)).fill(1), shape);
};

// Base problem: B 1, Hq 4, Hkv 2 (GQA), Sq 5, Sk 7, D 8, Dv 6.
const B = 1, HQ = 4, HKV = 2, SQ = 5, SK = 7, D = 8, DV = 6;
const qShape = [B, HQ, SQ, D], kShape = [B, HKV, SK, D], vShape = [B, HKV, SK, DV], oShape = [B, HQ, SQ, DV];
function base(over = {}) {
  return {
    q: over.q !== undefined ? over.q : T(qShape),
    k: over.k !== undefined ? over.k : T(kShape),
    v: over.v !== undefined ? over.v : T(vShape),
    opts: over.opts,
  };
}

// A float32 tensor over a resizable buffer, then shrunk behind the Tensor's back: its JS-side checks
// passed at from(), so only native validation stands between the kernel and out-of-bounds memory.
function shrunk(shape, { strides, offset = 0, keepElems, tracking = true }) {
  const n = numel(shape) * 3 + offset + 64;
  const rab = new ArrayBuffer(n * 4, { maxByteLength: n * 4 });
  const arr = tracking ? new Float32Array(rab) : new Float32Array(rab, 0, n);
  arr.set(f32(n));
  const t = Tensor.from(arr, shape, { strides, offset });
  rab.resize(keepElems * 4);
  return t;
}
function detachedViaStructuredClone(shape, fromBuffer = false) {
  const buf = new ArrayBuffer(numel(shape) * 4);
  new Float32Array(buf).set(f32(numel(shape)));
  const t = fromBuffer ? Tensor.from(buf, shape) : Tensor.from(new Float32Array(buf), shape);
  structuredClone(buf, { transfer: [buf] });
  return t;
}

const strides4 = (s) => [s[1] * s[2] * s[3], s[2] * s[3], s[3], 1];
const hasTransfer = typeof ArrayBuffer.prototype.transfer === 'function';

// name, build -> {q, k, v, opts}, code, regex the message must match (names the argument)
const CASES = [
  // ranks
  ['q rank 3', () => base({ q: T([HQ, SQ, D]) }), 'ERR_ATTN_SHAPE', /\bq\b/],
  ['q rank 5', () => base({ q: T([B, HQ, SQ, D, 1]) }), 'ERR_ATTN_SHAPE', /\bq\b/],
  ['k rank 3', () => base({ k: T([HKV, SK, D]) }), 'ERR_ATTN_SHAPE', /\bk\b/],
  ['k rank 5', () => base({ k: T([B, HKV, SK, D, 1]) }), 'ERR_ATTN_SHAPE', /\bk\b/],
  ['v rank 3', () => base({ v: T([HKV, SK, DV]) }), 'ERR_ATTN_SHAPE', /\bv\b/],
  ['v rank 5', () => base({ v: T([B, HKV, SK, DV, 1]) }), 'ERR_ATTN_SHAPE', /\bv\b/],
  ['q rank 7', () => base({ q: T([1, 1, 1, HQ, SQ, D, 1]) }), 'ERR_ATTN_SHAPE', /\bq\b/],
  ['q rank 0', () => base({ q: T([]) }), 'ERR_ATTN_SHAPE', /\bq\b/],
  // shapes
  ['k batch != q batch', () => base({ k: T([2, HKV, SK, D]), v: T([2, HKV, SK, DV]) }), 'ERR_ATTN_SHAPE', /\bk\b.*batch|batch.*\bk\b/],
  ['v batch != q batch', () => base({ v: T([2, HKV, SK, DV]) }), 'ERR_ATTN_SHAPE', /\bv\b/],
  ['k head dim != q head dim', () => base({ k: T([B, HKV, SK, D / 2]) }), 'ERR_ATTN_SHAPE', /\bk\b/],
  ['q head dim != k head dim (q smaller)', () => base({ q: T([B, HQ, SQ, D + 1]) }), 'ERR_ATTN_SHAPE', /head dim|\bD\b/],
  ['Hq % Hkv != 0', () => base({ k: T([B, 3, SK, D]), v: T([B, 3, SK, DV]) }), 'ERR_ATTN_SHAPE', /heads/],
  ['Hkv > Hq', () => base({ k: T([B, 8, SK, D]), v: T([B, 8, SK, DV]) }), 'ERR_ATTN_SHAPE', /heads/],
  ['Hkv = 0', () => base({ k: T([B, 0, SK, D]), v: T([B, 0, SK, DV]) }), 'ERR_ATTN_SHAPE', /heads/],
  ['v heads != k heads', () => base({ v: T([B, 1, SK, DV]) }), 'ERR_ATTN_SHAPE', /\bv\b/],
  ['v length != k length', () => base({ v: T([B, HKV, SK - 1, DV]) }), 'ERR_ATTN_SHAPE', /\bv\b/],
  ['D = 0', () => base({ q: T([B, HQ, SQ, 0]), k: T([B, HKV, SK, 0]) }), 'ERR_ATTN_SHAPE', /dim|\bD\b/],
  // dtypes
  ['q float32, k float16', () => base({ k: T(kShape, 'float16') }), 'ERR_ATTN_DTYPE', /\bk\b/],
  ['q float32, v bfloat16', () => base({ v: T(vShape, 'bfloat16') }), 'ERR_ATTN_DTYPE', /\bv\b/],
  ['q float16, k bfloat16 (same Uint16Array storage)', () => base({ q: T(qShape, 'float16'), k: T(kShape, 'bfloat16'), v: T(vShape, 'float16') }), 'ERR_ATTN_DTYPE', /\bk\b/],
  ['q bfloat16, k/v float32', () => base({ q: T(qShape, 'bfloat16') }), 'ERR_ATTN_DTYPE', /\bk\b|\bq\b/],
  ['int32 q', () => base({ q: T(qShape, 'int32') }), 'ERR_ATTN_DTYPE', /\bq\b/],
  ['int32 q, k, v', () => base({ q: T(qShape, 'int32'), k: T(kShape, 'int32'), v: T(vShape, 'int32') }), 'ERR_ATTN_DTYPE', /\bq\b/],
  ['uint8 q, k, v', () => base({ q: T(qShape, 'uint8'), k: T(kShape, 'uint8'), v: T(vShape, 'uint8') }), 'ERR_ATTN_DTYPE', /\bq\b/],
  ['out int32', () => base({ opts: { out: T(oShape, 'int32') } }), 'ERR_ATTN_DTYPE', /\bout\b/],
  ['mask float32 (not uint8)', () => base({ opts: { mask: T([B, HQ, SQ, SK]) } }), 'ERR_ATTN_DTYPE', /mask/],
  ['mask int32', () => base({ opts: { mask: T([SQ, SK], 'int32') } }), 'ERR_ATTN_DTYPE', /mask/],
  ['bias uint8', () => base({ opts: { bias: T([SQ, SK], 'uint8') } }), 'ERR_ATTN_DTYPE', /bias/],
  ['bias int32', () => base({ opts: { bias: T([SQ, SK], 'int32') } }), 'ERR_ATTN_DTYPE', /bias/],
  // memory the JS side no longer vouches for
  ['q strides reach past its (shrunk) buffer', () => base({ q: shrunk(qShape, { strides: [0, 1, HQ, HQ * SQ], keepElems: HQ * SQ * D - 1 }) }), 'ERR_ATTN_ARGUMENT', /\bq\b/],
  ['k strides reach past its (shrunk, out-of-bounds) buffer', () => base({ k: shrunk(kShape, { strides: strides4(kShape), keepElems: 10, tracking: false }) }), 'ERR_ATTN_ARGUMENT', /\bk\b/],
  ['v offset past its (shrunk) buffer', () => base({ v: shrunk(vShape, { strides: strides4(vShape), offset: 200, keepElems: 150 }) }), 'ERR_ATTN_ARGUMENT', /\bv\b/],
  ['v offset + extent one past its (shrunk) buffer', () => base({ v: shrunk(vShape, { strides: strides4(vShape), offset: 3, keepElems: numel(vShape) + 2 }) }), 'ERR_ATTN_ARGUMENT', /\bv\b/],
  ['out offset past its (shrunk) buffer', () => base({ opts: { out: shrunk(oShape, { strides: strides4(oShape), offset: 7, keepElems: 7 }) } }), 'ERR_ATTN_ARGUMENT', /\bout\b/],
  ['mask past its (shrunk) buffer', () => {
    const rab = new ArrayBuffer(SQ * SK, { maxByteLength: SQ * SK });
    const m = Tensor.from(new Uint8Array(rab).fill(1), [SQ, SK]);
    rab.resize(SK);
    return base({ opts: { mask: m } });
  }, 'ERR_ATTN_ARGUMENT', /mask/],
  ['bias past its (shrunk) buffer', () => base({ opts: { bias: shrunk([SQ, SK], { strides: [SK, 1], keepElems: SK }) } }), 'ERR_ATTN_ARGUMENT', /bias/],
  ['q over a detached Float32Array (structuredClone transfer)', () => base({ q: detachedViaStructuredClone(qShape) }), 'ERR_ATTN_ARGUMENT', /\bq\b/],
  ['k over a detached ArrayBuffer (structuredClone transfer)', () => base({ k: detachedViaStructuredClone(kShape, true) }), 'ERR_ATTN_ARGUMENT', /\bk\b/],
  ['out over a detached buffer', () => base({ opts: { out: detachedViaStructuredClone(oShape) } }), 'ERR_ATTN_ARGUMENT', /\bout\b/],
  ['alibiSlopes over a detached buffer', () => {
    const a = new Float32Array(HQ);
    structuredClone(a.buffer, { transfer: [a.buffer] });
    return base({ opts: { alibiSlopes: a } });
  }, 'ERR_ATTN_ARGUMENT', /alibiSlopes/],
  ...(hasTransfer ? [['v detached via ArrayBuffer.prototype.transfer', () => {
    const t = T(vShape);
    t.data.buffer.transfer();
    return base({ v: t });
  }, 'ERR_ATTN_ARGUMENT', /\bv\b/]] : []),
  // scalar options
  ['negative scale', () => base({ opts: { scale: -0.5 } }), 'ERR_ATTN_ARGUMENT', /scale/],
  ['NaN scale', () => base({ opts: { scale: NaN } }), 'ERR_ATTN_ARGUMENT', /scale/],
  ['Infinity scale', () => base({ opts: { scale: Infinity } }), 'ERR_ATTN_ARGUMENT', /scale/],
  ['-Infinity scale', () => base({ opts: { scale: -Infinity } }), 'ERR_ATTN_ARGUMENT', /scale/],
  ['string scale', () => base({ opts: { scale: '0.5' } }), 'ERR_ATTN_ARGUMENT', /scale/],
  ['negative softcap', () => base({ opts: { softcap: -1 } }), 'ERR_ATTN_ARGUMENT', /softcap/],
  ['NaN softcap', () => base({ opts: { softcap: NaN } }), 'ERR_ATTN_ARGUMENT', /softcap/],
  ['Infinity softcap', () => base({ opts: { softcap: Infinity } }), 'ERR_ATTN_ARGUMENT', /softcap/],
  ['window left < -1', () => base({ opts: { window: [-2, 0] } }), 'ERR_ATTN_ARGUMENT', /window/],
  ['window right < -1', () => base({ opts: { window: [0, -5] } }), 'ERR_ATTN_ARGUMENT', /window/],
  ['window not an array (string)', () => base({ opts: { window: '4,0' } }), 'ERR_ATTN_ARGUMENT', /window/],
  ['window not an array (number)', () => base({ opts: { window: 4 } }), 'ERR_ATTN_ARGUMENT', /window/],
  ['window not an array (array-like object)', () => base({ opts: { window: { 0: 1, 1: 0, length: 2 } } }), 'ERR_ATTN_ARGUMENT', /window/],
  ['window of one entry', () => base({ opts: { window: [3] } }), 'ERR_ATTN_ARGUMENT', /window/],
  ['window non-integer', () => base({ opts: { window: [1.5, 0] } }), 'ERR_ATTN_ARGUMENT', /window/],
  ['window NaN', () => base({ opts: { window: [2, NaN] } }), 'ERR_ATTN_ARGUMENT', /window/],
  ['window Infinity', () => base({ opts: { window: [Infinity, 0] } }), 'ERR_ATTN_ARGUMENT', /window/],
  ['negative sinks', () => base({ opts: { sinks: -1 } }), 'ERR_ATTN_ARGUMENT', /sinks/],
  ['non-integer sinks', () => base({ opts: { sinks: 1.5 } }), 'ERR_ATTN_ARGUMENT', /sinks/],
  ['NaN sinks', () => base({ opts: { sinks: NaN } }), 'ERR_ATTN_ARGUMENT', /sinks/],
  // per-head arrays
  ['alibiSlopes too short', () => base({ opts: { alibiSlopes: new Float32Array(HQ - 1) } }), 'ERR_ATTN_ARGUMENT', /alibiSlopes/],
  ['alibiSlopes per kv head', () => base({ opts: { alibiSlopes: new Float32Array(HKV) } }), 'ERR_ATTN_ARGUMENT', /alibiSlopes/],
  ['alibiSlopes too long', () => base({ opts: { alibiSlopes: new Float32Array(HQ + 1) } }), 'ERR_ATTN_ARGUMENT', /alibiSlopes/],
  ['alibiSlopes wrong type', () => base({ opts: { alibiSlopes: new Int32Array(HQ) } }), 'ERR_ATTN_ARGUMENT', /alibiSlopes/],
  ['sinkLogits wrong length', () => base({ opts: { sinkLogits: new Float32Array(HQ + 2) } }), 'ERR_ATTN_ARGUMENT', /sinkLogits/],
  ['sinkLogits empty', () => base({ opts: { sinkLogits: new Float32Array(0) } }), 'ERR_ATTN_ARGUMENT', /sinkLogits/],
  ['sinkLogits wrong type', () => base({ opts: { sinkLogits: 'abc' } }), 'ERR_ATTN_ARGUMENT', /sinkLogits/],
  // varlen
  ['cuSeqlensQ not monotone', () => base({ opts: { cuSeqlensQ: Int32Array.of(0, 3, 2, 5), cuSeqlensK: Int32Array.of(0, 2, 4, 7) } }), 'ERR_ATTN_ARGUMENT', /cuSeqlensQ/],
  ['cuSeqlensK not monotone', () => base({ opts: { cuSeqlensQ: Int32Array.of(0, 2, 5), cuSeqlensK: Int32Array.of(0, 8, 7) } }), 'ERR_ATTN_ARGUMENT', /cuSeqlensK/],
  ['cuSeqlensQ not starting at 0', () => base({ opts: { cuSeqlensQ: Int32Array.of(1, 5), cuSeqlensK: Int32Array.of(0, 7) } }), 'ERR_ATTN_ARGUMENT', /cuSeqlensQ/],
  ['cuSeqlensK starting below 0', () => base({ opts: { cuSeqlensQ: Int32Array.of(0, 5), cuSeqlensK: Int32Array.of(-1, 7) } }), 'ERR_ATTN_ARGUMENT', /cuSeqlensK/],
  ['cuSeqlensQ not ending at Sq', () => base({ opts: { cuSeqlensQ: Int32Array.of(0, 2, 4), cuSeqlensK: Int32Array.of(0, 3, 7) } }), 'ERR_ATTN_ARGUMENT', /cuSeqlensQ/],
  ['cuSeqlensQ ending past Sq', () => base({ opts: { cuSeqlensQ: Int32Array.of(0, 2, 6), cuSeqlensK: Int32Array.of(0, 3, 7) } }), 'ERR_ATTN_ARGUMENT', /cuSeqlensQ/],
  ['cuSeqlensK not ending at Sk', () => base({ opts: { cuSeqlensQ: Int32Array.of(0, 2, 5), cuSeqlensK: Int32Array.of(0, 3, 6) } }), 'ERR_ATTN_ARGUMENT', /cuSeqlensK/],
  ['cuSeqlensQ with a single entry', () => base({ opts: { cuSeqlensQ: Int32Array.of(0), cuSeqlensK: Int32Array.of(0) } }), 'ERR_ATTN_ARGUMENT', /cuSeqlens/],
  ['only cuSeqlensQ', () => base({ opts: { cuSeqlensQ: Int32Array.of(0, 5) } }), 'ERR_ATTN_ARGUMENT', /cuSeqlens/],
  ['only cuSeqlensK', () => base({ opts: { cuSeqlensK: Int32Array.of(0, 7) } }), 'ERR_ATTN_ARGUMENT', /cuSeqlens/],
  ['cuSeqlensQ/K with different segment counts', () => base({ opts: { cuSeqlensQ: Int32Array.of(0, 2, 5), cuSeqlensK: Int32Array.of(0, 7) } }), 'ERR_ATTN_ARGUMENT', /cuSeqlens/],
  ['cuSeqlensQ wrong type', () => base({ opts: { cuSeqlensQ: Float32Array.of(0, 5), cuSeqlensK: Int32Array.of(0, 7) } }), 'ERR_ATTN_ARGUMENT', /cuSeqlensQ/],
  ['varlen with B = 2', () => base({ q: T([2, HQ, SQ, D]), k: T([2, HKV, SK, D]), v: T([2, HKV, SK, DV]), opts: { cuSeqlensQ: Int32Array.of(0, 5), cuSeqlensK: Int32Array.of(0, 7) } }), 'ERR_ATTN_SHAPE', /cuSeqlens|batch/],
  // mask / bias broadcasting
  ['mask that does not broadcast (Sk)', () => base({ opts: { mask: T([B, HQ, SQ, SK - 1], 'uint8') } }), 'ERR_ATTN_SHAPE', /mask/],
  ['mask that does not broadcast (heads)', () => base({ opts: { mask: T([1, HKV, SQ, SK], 'uint8') } }), 'ERR_ATTN_SHAPE', /mask/],
  ['mask of rank 5', () => base({ opts: { mask: T([1, B, HQ, SQ, SK], 'uint8') } }), 'ERR_ATTN_SHAPE', /mask/],
  ['bias that does not broadcast (Sq)', () => base({ opts: { bias: T([SQ + 1, SK]) } }), 'ERR_ATTN_SHAPE', /bias/],
  ['bias that does not broadcast (batch)', () => base({ opts: { bias: T([3, 1, 1, SK]) } }), 'ERR_ATTN_SHAPE', /bias/],
  ['mask not a Tensor', () => base({ opts: { mask: new Uint8Array(SQ * SK) } }), 'ERR_ATTN_ARGUMENT', /mask/],
  ['bias not a Tensor', () => base({ opts: { bias: [0, 1] } }), 'ERR_ATTN_ARGUMENT', /bias/],
  // out
  ['out of the wrong shape (Dv)', () => base({ opts: { out: T([B, HQ, SQ, D]) } }), 'ERR_ATTN_SHAPE', /\bout\b/],
  ['out of the wrong shape (heads)', () => base({ opts: { out: T([B, HKV, SQ, DV]) } }), 'ERR_ATTN_SHAPE', /\bout\b/],
  ['out of rank 3', () => base({ opts: { out: T([HQ, SQ, DV]) } }), 'ERR_ATTN_SHAPE', /\bout\b/],
  ['out with a stride-0 dim (overlapping)', () => base({ opts: { out: Tensor.from(new Float32Array(SQ * DV), oShape, { strides: [0, 0, DV, 1] }) } }), 'ERR_ATTN_ARGUMENT', /\bout\b/],
  ['out with all strides 0', () => base({ opts: { out: Tensor.from(new Float32Array(1), oShape, { strides: [0, 0, 0, 0] }) } }), 'ERR_ATTN_ARGUMENT', /\bout\b/],
  ['out with partly overlapping rows', () => base({ opts: { out: Tensor.from(new Float32Array(200), oShape, { strides: [0, DV * SQ, DV - 1, 1] }) } }), 'ERR_ATTN_ARGUMENT', /\bout\b/],
  ['out not a Tensor', () => base({ opts: { out: new Float32Array(numel(oShape)) } }), 'ERR_ATTN_ARGUMENT', /\bout\b/],
  // argument types
  ['q not a Tensor (Float32Array)', () => base({ q: f32(numel(qShape)) }), 'ERR_ATTN_ARGUMENT', /\bq\b/],
  ['q not a Tensor (look-alike object)', () => { const r = T(qShape); return base({ q: { dtype: 'float32', shape: r.shape, strides: r.strides, offset: 0, device: 'cpu', data: r.data } }); }, 'ERR_ATTN_ARGUMENT', /\bq\b/],
  ['q null', () => base({ q: null }), 'ERR_ATTN_ARGUMENT', /\bq\b/],
  ['k a number', () => base({ k: 3 }), 'ERR_ATTN_ARGUMENT', /\bk\b/],
  ['v a string', () => base({ v: 'v' }), 'ERR_ATTN_ARGUMENT', /\bv\b/],
  ['options a number', () => base({ opts: 5 }), 'ERR_ATTN_ARGUMENT', /options/],
  ['options a string', () => base({ opts: 'causal' }), 'ERR_ATTN_ARGUMENT', /options/],
  ['options null', () => base({ opts: null }), 'ERR_ATTN_ARGUMENT', /options/],
  ['signal not an AbortSignal', () => base({ opts: { signal: { aborted: 'no' } } }), 'ERR_ATTN_ARGUMENT', /signal/],
  // abort / dispose
  ['signal already aborted', () => base({ opts: { signal: AbortSignal.abort() } }), 'ERR_ATTN_ABORTED', /abort/i],
  ['disposed q', () => { const q = T(qShape); q.dispose(); return base({ q }); }, 'ERR_ATTN_DISPOSED', /\bq\b/],
  ['disposed v', () => { const v = T(vShape); v[Symbol.dispose](); return base({ v }); }, 'ERR_ATTN_DISPOSED', /\bv\b/],
  ['disposed out', () => { const out = T(oShape); out.dispose(); return base({ opts: { out } }); }, 'ERR_ATTN_DISPOSED', /\bout\b/],
  ['disposed mask', () => { const mask = T([SQ, SK], 'uint8'); mask.dispose(); return base({ opts: { mask } }); }, 'ERR_ATTN_DISPOSED', /mask/],
];

describe('attention: the valid base call and near-miss options succeed (the table below is not vacuous)', () => {
  const near = [
    {}, { scale: 0 }, { scale: 0.25 }, { softcap: 0 }, { softcap: 30 }, { window: [-1, -1] }, { window: [0, 0] },
    { window: [2, -1], causal: true }, { sinks: 0 }, { sinks: 2, window: [1, 0] }, { alibiSlopes: new Float32Array(HQ) },
    { sinkLogits: new Float32Array(HQ) }, { cuSeqlensQ: Int32Array.of(0, 2, 5), cuSeqlensK: Int32Array.of(0, 3, 7) },
    { cuSeqlensQ: Int32Array.of(0, 0, 5), cuSeqlensK: Int32Array.of(0, 7, 7) },
    { mask: T([SQ, SK], 'uint8') }, { mask: T([B, 1, 1, SK], 'uint8') }, { bias: T([1, HQ, 1, SK]) }, { bias: T([SK]) },
    { bias: T([SQ, SK], 'float16') }, { out: T(oShape) }, { out: T(oShape, 'bfloat16') }, { returnLse: true },
    { signal: new AbortController().signal },
  ];
  test.each(near.map((o, i) => [i, o]))('options #%i', async (_, opts) => {
    const { q, k, v } = base();
    const r = attentionSync(q, k, v, opts);
    const out = opts.returnLse ? r.out : r;
    expect([...out.shape]).toEqual(oShape);
    if (opts.out) expect(out).toBe(opts.out);
    const a = await attention(q, k, v, opts);
    expect((opts.returnLse ? a.out : a).toFloat32Array()).toEqual(out.toFloat32Array());
  });
  test('a rank-4 mask/bias with size-1 dims, 16-bit q/k/v, and strided out are all accepted', async () => {
    const q = T(qShape, 'float16'), k = T(kShape, 'float16'), v = T(vShape, 'float16');
    const big = new Float32Array(numel(oShape) * 2);
    const out = Tensor.from(big, [B, SQ, HQ, DV * 2]).slice(3, 0, DV).transpose(1, 2);
    const r = await attention(q, k, v, { out, mask: T([1, 1, SQ, SK], 'uint8'), bias: T([B, HQ, SQ, 1]) });
    expect(r).toBe(out);
    expect(out.toFloat32Array().every(Number.isFinite)).toBe(true);
  });
});

describe('attention: bad inputs', () => {
  test.each(CASES.map(([name, build, code, mention]) => ({ name, build, code, mention })))('$name -> $code', async ({ name, build, code, mention }) => {
    await expectRefusedBothWays(name, 'attention', () => { const s = build(); return attentionSync(s.q, s.k, s.v, s.opts); },
      () => { const a = build(); return attention(a.q, a.k, a.v, a.opts); }, code, mention);
  });

  test('a rejected call leaves the caller\'s out untouched', async () => {
    const sentinel = 1234.5;
    for (const bad of [{ alibiSlopes: new Float32Array(1) }, { window: [-3, 0] }, { mask: T([2, SK], 'uint8') }, { scale: NaN }]) {
      const out = Tensor.from(new Float32Array(numel(oShape)).fill(sentinel), oShape);
      const { q, k, v } = base();
      expect(() => attentionSync(q, k, v, { ...bad, out })).toThrow(AttnError);
      await expect(attention(q, k, v, { ...bad, out })).rejects.toBeInstanceOf(AttnError);
      expect(out.data.every((x) => x === sentinel)).toBe(true);
    }
  });

  test('bad shapes together with an aborted signal still reject with a coded AttnError', async () => {
    const q = T([3, 3]);
    const e = await attention(q, q, q, { signal: AbortSignal.abort() }).then(() => null, (x) => x);
    expect(e).toBeInstanceOf(AttnError);
    expect(CODES).toContain(e.code);
  });
});

describe('mergeAttentionStates: bad inputs', () => {
  const state = (shape = [1, 2, 3, 4], lseDtype = 'float32') => ({
    out: T(shape),
    lse: lseDtype === 'float32' ? T(shape.slice(0, 3)) : T(shape.slice(0, 3), lseDtype),
  });
  const MERGE = [
    ['empty list', () => [], 'ERR_ATTN_ARGUMENT', /parts/],
    ['not an array', () => state(), 'ERR_ATTN_ARGUMENT', /parts/],
    ['null', () => null, 'ERR_ATTN_ARGUMENT', /parts/],
    ['a part that is not an object', () => [state(), 7], 'ERR_ATTN_ARGUMENT', /parts\[1\]/],
    ['a part without out', () => [{ lse: T([1, 2, 3]) }], 'ERR_ATTN_ARGUMENT', /parts\[0\]\.out/],
    ['a part whose lse is an array', () => [state(), { out: T([1, 2, 3, 4]), lse: [0, 0] }], 'ERR_ATTN_ARGUMENT', /parts\[1\]\.lse/],
    ['mismatched out shapes', () => [state([1, 2, 3, 4]), state([1, 2, 3, 5])], 'ERR_ATTN_SHAPE', /parts\[1\]/],
    ['mismatched S', () => [state([1, 2, 3, 4]), state([1, 2, 4, 4])], 'ERR_ATTN_SHAPE', /parts\[1\]/],
    ['lse of the wrong shape', () => [state(), { out: T([1, 2, 3, 4]), lse: T([1, 2, 4]) }], 'ERR_ATTN_SHAPE', /lse/],
    ['lse of rank 4', () => [{ out: T([1, 2, 3, 4]), lse: T([1, 2, 3, 1]) }], 'ERR_ATTN_SHAPE', /lse/],
    ['lse float16', () => [state([1, 2, 3, 4], 'float16')], 'ERR_ATTN_DTYPE', /lse/],
    ['lse int32', () => [state(), state([1, 2, 3, 4], 'int32')], 'ERR_ATTN_DTYPE', /lse/],
    ['out uint8', () => [{ out: T([1, 2, 3, 4], 'uint8'), lse: T([1, 2, 3]) }], 'ERR_ATTN_DTYPE', /out/],
    ['out of rank 3', () => [{ out: T([2, 3, 4]), lse: T([2, 3, 4]) }], 'ERR_ATTN_SHAPE', /out/],
    ['disposed lse', () => { const s = state(); s.lse.dispose(); return [state(), s]; }, 'ERR_ATTN_DISPOSED', /parts\[1\]\.lse/],
    ['out over a shrunk buffer', () => [state(), { out: shrunk([1, 2, 3, 4], { strides: [24, 12, 4, 1], keepElems: 5 }), lse: T([1, 2, 3]) }], 'ERR_ATTN_ARGUMENT', /parts\[1\]\.out/],
    ['lse over a detached buffer', () => [state(), { out: T([1, 2, 3, 4]), lse: detachedViaStructuredClone([1, 2, 3]) }], 'ERR_ATTN_ARGUMENT', /parts\[1\]\.lse/],
  ];
  test.each(MERGE.map(([name, build, code, mention]) => ({ name, build, code, mention })))('$name -> $code', ({ name, build, code, mention }) => {
    let err, res;
    try { res = mergeAttentionStates(build()); } catch (e) { err = e; }
    if (err === undefined) throw new Error(`${name}: mergeAttentionStates returned ${JSON.stringify(res && Object.keys(res))}`);
    checkError(err, code, mention, name);
  });

  test('valid merge of two key splits equals attention over all keys (the table above is not vacuous)', () => {
    const { q, k, v } = base();
    const full = attentionSync(q, k, v, { returnLse: true });
    const a = attentionSync(q, k.slice(2, 0, 3), v.slice(2, 0, 3), { returnLse: true });
    const b = attentionSync(q, k.slice(2, 3, SK), v.slice(2, 3, SK), { returnLse: true });
    const m = mergeAttentionStates([a, b]);
    const want = full.out.toFloat32Array(), got = m.out.toFloat32Array();
    let err = 0, mx = 0;
    for (let i = 0; i < want.length; i++) { err = Math.max(err, Math.abs(got[i] - want[i])); mx = Math.max(mx, Math.abs(want[i])); }
    expect(err / mx).toBeLessThan(1e-5);
    const wl = full.lse.toFloat32Array(), gl = m.lse.toFloat32Array();
    for (let i = 0; i < wl.length; i++) expect(Math.abs(gl[i] - wl[i])).toBeLessThan(1e-5 * Math.max(1, Math.abs(wl[i])));
  });
});

describe('randomized malformed calls in a child process', () => {
  test('the process survives and every failure is a coded AttnError (>= 10,000 calls over every op and the native binding)', () => {
    const script = path.join(__dirname, 'fixtures', 'fuzz-malformed.js');
    const r = spawnSync(process.execPath, ['--expose-gc', script, '3500', '20240601'], { encoding: 'utf8', timeout: 90000, cwd: path.join(__dirname, '..') });
    const last = (r.stdout || '').trim().split('\n').pop();
    if (r.status !== 0) throw new Error(`child exited with status ${r.status} signal ${r.signal}\nstdout tail: ${(r.stdout || '').slice(-2000)}\nstderr: ${(r.stderr || '').slice(-3000)}`);
    const summary = JSON.parse(last);
    expect(summary.problems).toEqual([]);
    expect(summary.calls).toBeGreaterThanOrEqual(10000);
    // every other op is reached both with inputs it accepts and with inputs it refuses
    for (const op of ['blockSparse', 'neighborhood', 'topk', 'linear', 'linearStep', 'agent']) {
      expect(summary.byOp[op].successes).toBeGreaterThan(20);
      expect(summary.byOp[op].calls - summary.byOp[op].successes).toBeGreaterThan(20);
    }
    expect(summary.byOp.native.calls).toBeGreaterThan(500);
    // the generator must actually produce both failures (of several codes) and successes
    expect(summary.failures).toBeGreaterThan(1000);
    expect(summary.successes).toBeGreaterThan(500);
    expect(Object.keys(summary.codes).length).toBeGreaterThanOrEqual(4);
    for (const c of Object.keys(summary.codes)) expect(CODES).toContain(c);
  });
});

describe('valid inputs are read only inside their buffers (child processes)', () => {
  // A per-head mask on causal tiles: an all-ones mask must change nothing, and the kernel must not
  // read past the mask's buffer (small S: wrong values; larger S: the stray reads leave the mapping).
  test.each([[8], [1024]])('per-head all-ones mask [1, H, S, S], S = %i, causal', (S) => {
    const script = path.join(__dirname, 'fixtures', 'per-head-mask.js');
    const r = spawnSync(process.execPath, [script, String(S)], { encoding: 'utf8', timeout: 60000, cwd: path.join(__dirname, '..') });
    if (r.status !== 0) throw new Error(`child exited with status ${r.status} signal ${r.signal}\nstderr: ${(r.stderr || '').slice(-3000)}`);
    const { err } = JSON.parse(r.stdout.trim().split('\n').pop());
    expect(err).toBeLessThan(1e-5); // a masked tile takes the partial path: rounding may differ slightly
  });
});

describe('buffers mutated while an async call runs (child processes)', () => {
  // The caller shrinks (resizable ArrayBuffer) or transfers away the buffer under a tensor while an
  // async call is reading or writing it. Each scenario runs in its own child so one crash does not
  // hide the others.
  // Only shrinking is tested: attnkit rejects resizable buffers in async calls. Transferring a
  // buffer away mid-call (then collecting it) is documented caller misuse, as with fs.read: N-API
  // gives no way to pin a backing store.
  test.each(['shrink-q', 'shrink-out'])('%s while an async call runs does not crash the process', (scenario) => {
    const script = path.join(__dirname, 'fixtures', 'mutate-during-async.js');
    const r = spawnSync(process.execPath, ['--expose-gc', script, scenario], { encoding: 'utf8', timeout: 60000, cwd: path.join(__dirname, '..') });
    if (r.status !== 0) throw new Error(`child exited with status ${r.status} signal ${r.signal}\nstdout: ${(r.stdout || '').slice(-2000)}\nstderr: ${(r.stderr || '').slice(-3000)}`);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop());
    expect(summary.problems).toEqual([]);
    expect(summary.outcomes[scenario]).toHaveLength(3);
  });
});
