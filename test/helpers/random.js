'use strict';
// Seeded random inputs and tensor builders for the parity tests.
//
// The base seed comes from ATTNKIT_SEED, else Date.now(); it is printed once per test file. Each test
// draws from its own stream, rng(label), seeded by (base seed, label), so one failing test replays
// alone: ATTNKIT_SEED=<seed> npx jest test/x.test.js -t '<test name>'.
const { Tensor, toFloat16, toBFloat16, fromFloat16, fromBFloat16 } = require('../..');

const BASE_SEED = (() => {
  const env = process.env.ATTNKIT_SEED;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isSafeInteger(n)) throw new Error(`ATTNKIT_SEED must be an integer, got ${env}`);
    return n;
  }
  return Date.now();
})();

let announced = false;
function announceSeed(file) {
  if (announced) return BASE_SEED;
  announced = true;
  // process.stdout keeps it on one line without jest's console decoration.
  process.stdout.write(`\n[attnkit] ${file ? file + ': ' : ''}ATTNKIT_SEED=${BASE_SEED} (set it to replay)\n`);
  return BASE_SEED;
}

function hashString(s, h) {
  // FNV-1a over UTF-16 code units, mixed with the running state.
  let x = h >>> 0 ^ 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    x ^= s.charCodeAt(i);
    x = Math.imul(x, 0x01000193) >>> 0;
  }
  return x >>> 0;
}

/** sfc32: a small, fast PRNG with a 128-bit state. */
function makeRng(seed, label = '') {
  let a = hashString(label, seed % 0x100000000);
  let b = hashString(label, Math.floor(seed / 0x100000000) ^ 0x9e3779b9);
  let c = hashString(String(seed), 0x6a09e667);
  let d = 1;
  const next = () => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 16; i++) next();
  let spare = null;
  const rng = {
    seed,
    label,
    /** uniform [0, 1) */
    random: next,
    /** uniform [lo, hi) */
    uniform(lo = 0, hi = 1) { return lo + (hi - lo) * next(); },
    /** integer in [lo, hi] */
    int(lo, hi) { return lo + Math.floor(next() * (hi - lo + 1)); },
    pick(arr) { return arr[Math.floor(next() * arr.length)]; },
    /** standard normal (Box-Muller) */
    normal() {
      if (spare !== null) { const s = spare; spare = null; return s; }
      let u = 0;
      while (u === 0) u = next();
      const r = Math.sqrt(-2 * Math.log(u)), th = 2 * Math.PI * next();
      spare = r * Math.sin(th);
      return r * Math.cos(th);
    },
    /** Float32Array of n standard normals times `scale` (never all zeros). */
    randn(n, scale = 1) {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = rng.normal() * scale;
      return a;
    },
    /** Float32Array of n uniforms in [lo, hi). */
    rand(n, lo = 0, hi = 1) {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * next();
      return a;
    },
  };
  return rng;
}

/** A deterministic stream for one test, seeded by the file's base seed and the label. */
function rng(label) { return makeRng(BASE_SEED, label); }

function numel(shape) { return shape.reduce((a, b) => a * b, 1); }

function contiguousStrides(shape) {
  const s = new Array(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
  return s;
}

/**
 * Rounds float values to `dtype`: returns the typed array that stores them and the exactly
 * representable values (what the kernel will read) as a Float32Array.
 */
function encode(f32, dtype) {
  if (dtype === 'float32') { const a = Float32Array.from(f32); return { storage: a, values: a.slice() }; }
  if (dtype === 'float16') { const s = toFloat16(f32); return { storage: s, values: fromFloat16(s) }; }
  if (dtype === 'bfloat16') { const s = toBFloat16(f32); return { storage: s, values: fromBFloat16(s) }; }
  throw new Error(`encode: unsupported dtype ${dtype}`);
}

/** Contiguous tensor of `dtype` holding `f32` (rounded). Returns { t, values } (values exact, logical order). */
function tensorFrom(f32, shape, dtype = 'float32') {
  const { storage, values } = encode(f32, dtype);
  return { t: Tensor.from(storage, shape, { dtype }), values };
}

/**
 * Random tensor of logical shape `shape` in a physical `layout`:
 *   'bhsd'   contiguous
 *   'bshd'   storage [B, S, H, D], viewed as BHSD with .transpose(1, 2)
 *   'padded' rows with gaps: D padded to D + 3, every S-row padded by one spare row, per-head gap
 *            of 5 elements, and a leading offset of 7 (so strides are all non-trivial)
 * Every element outside the view is NaN (poisoned), so a kernel that reads past the view fails.
 * Returns { t, values } with values the exact logical float values (row-major).
 */
function randomTensor(r, shape, dtype = 'float32', { layout = 'bhsd', scale = 1 } = {}) {
  const values0 = r.randn(numel(shape), scale);
  return viewOf(values0, shape, dtype, layout);
}

/** Places logical values (row-major, rank 4 BHSD, or any rank for 'bhsd') into `layout`. */
function viewOf(values0, shape, dtype, layout = 'bhsd') {
  const { storage: dense, values } = encode(values0, dtype);
  if (layout === 'bhsd') return { t: Tensor.from(dense, shape, { dtype }), values };
  if (shape.length !== 4) throw new Error(`layout ${layout} needs rank 4`);
  const [B, H, S, D] = shape;
  let strides, offset, size;
  if (layout === 'bshd') {
    // storage [B, S, H, D]
    strides = [S * H * D, D, H * D, 1];
    offset = 0;
    size = B * S * H * D;
  } else if (layout === 'padded') {
    const rowStride = D + 3;
    const headStride = (S + 1) * rowStride + 5;
    const batchStride = H * headStride + 2;
    offset = 7;
    strides = [batchStride, headStride, rowStride, 1];
    size = offset + B * batchStride + 1;
  } else {
    throw new Error(`unknown layout ${layout}`);
  }
  const storage = new (dense.constructor)(size);
  poisonArray(storage, dtype);
  scatter(storage, dense, shape, strides, offset);
  return { t: Tensor.from(storage, shape, { dtype, strides, offset }), values };
}

/** Writes logical row-major `src` into `dst` at (offset, strides). */
function scatter(dst, src, shape, strides, offset) {
  const [B, H, S, D] = shape;
  let n = 0;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let s = 0; s < S; s++) {
        const base = offset + b * strides[0] + h * strides[1] + s * strides[2];
        for (let d = 0; d < D; d++) dst[base + d * strides[3]] = src[n++];
      }
}

/**
 * A packed QKV projection as one buffer [B, S, Hq + 2*Hkv, D] (for Hq == Hkv this is exactly
 * [B, S, 3, H, D]); q, k and v are zero-copy BHSD views into it with offsets (slice of dim 2, then
 * transpose(1, 2)). Returns { q, k, v, storage } with q/k/v each { t, values }.
 */
function packedQkv(r, B, S, Hq, Hkv, D, dtype = 'float32') {
  const Ht = Hq + 2 * Hkv;
  const { storage } = encode(r.randn(B * S * Ht * D), dtype);
  const all = Tensor.from(storage, [B, S, Ht, D], { dtype });
  const part = (h0, h1) => {
    const t = all.slice(2, h0, h1).transpose(1, 2); // [B, h1-h0, S, D], offset h0*D
    return { t, values: t.toFloat32Array() };
  };
  return { q: part(0, Hq), k: part(Hq, Hq + Hkv), v: part(Hq + Hkv, Ht), storage };
}

/** The same for the literal [B, S, 3, H, D] layout (Hq == Hkv), built with explicit strides. */
function packedQkv5(r, B, S, H, D, dtype = 'float32') {
  const { storage } = encode(r.randn(B * S * 3 * H * D), dtype);
  const strides = [S * 3 * H * D, D, 3 * H * D, 1]; // BHSD view of [B, S, 3, H, D]
  const part = (which) => {
    const t = Tensor.from(storage, [B, H, S, D], { dtype, strides, offset: which * H * D });
    return { t, values: t.toFloat32Array() };
  };
  return { q: part(0), k: part(1), v: part(2), storage };
}

/**
 * An output tensor [B, H, S, D] with non-contiguous strides: storage [B, S, H, D + 2] with an
 * offset of 3, viewed as BHSD. The whole backing array is poisoned.
 */
function stridedOut(shape, dtype = 'float32') {
  const [B, H, S, D] = shape;
  const Dp = D + 2;
  const strides = [S * H * Dp, Dp, H * Dp, 1];
  const offset = 3;
  const Ctor = dtype === 'float32' ? Float32Array : Uint16Array;
  const storage = new Ctor(offset + B * S * H * Dp + 1);
  const t = Tensor.from(storage, shape, { dtype, strides, offset });
  poison(t);
  return t;
}

/** A contiguous, poisoned output tensor. */
function poisonedOut(shape, dtype = 'float32') {
  const t = Tensor.empty(shape, { dtype });
  poison(t);
  return t;
}

const NAN_BITS = { float16: 0x7e00, bfloat16: 0x7fc0 };
function poisonArray(a, dtype) {
  if (a instanceof Float32Array) a.fill(NaN);
  else if (a instanceof Uint16Array) a.fill(NAN_BITS[dtype] ?? 0x7e00);
  else throw new Error(`poison: cannot poison a ${a.constructor.name}`);
  return a;
}

/** Fills the whole backing array of a float tensor with NaN (0x7e00 / 0x7fc0 for 16-bit). */
function poison(t) {
  poisonArray(t.data, t.dtype);
  return t;
}

module.exports = {
  BASE_SEED, announceSeed, makeRng, rng, numel, contiguousStrides, encode, tensorFrom, randomTensor, viewOf,
  packedQkv, packedQkv5, stridedOut, poisonedOut, poison, poisonArray,
};
