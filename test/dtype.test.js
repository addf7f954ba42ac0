'use strict';
// float16 / bfloat16 conversions against an independent exact (float64) implementation.
const { toFloat16, toBFloat16, fromFloat16, fromBFloat16 } = require('..');

// ---- independent reference -------------------------------------------------------------------
// Every float32 value is exact in float64, and so are the scalings by powers of two below, so the
// rounding decision is made on the exact value.

function roundHalfEven(x) { // x >= 0, exact
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function binadeExponent(a, minExp) { // largest e >= minExp with 2^e <= a (a > 0)
  let e = Math.max(minExp, Math.floor(Math.log2(a)));
  while (e > minExp && 2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  return e;
}

/**
 * Exact bits of the float32 value x in a 16-bit format with `mant` mantissa bits, smallest normal
 * exponent `minExp` and infinity `inf`, rounding to nearest even; null for NaN (any NaN will do).
 */
function refHalfBits(x, mant, minExp, inf) {
  if (Number.isNaN(x)) return null;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === Infinity) return sign | inf;
  if (a === 0) return sign;
  const e = binadeExponent(a, minExp);
  const one = 2 ** mant;
  const r = roundHalfEven(a / 2 ** (e - mant)); // in [0, 2 * one]
  let bits;
  if (r < one) bits = r; // subnormal (only possible when e = minExp)
  else bits = ((e + 1 - minExp) * one) + (r - one); // r = 2 * one carries into the exponent
  if (bits >= inf) bits = inf; // overflow to infinity
  return sign | bits;
}

/** Exact float16 bits of the float32 value x, round to nearest even. */
const refFloat16Bits = (x) => refHalfBits(x, 10, -14, 0x7c00);
/** Exact bfloat16 bits of the float32 value x, round to nearest even. */
const refBFloat16Bits = (x) => refHalfBits(x, 7, -126, 0x7f80);

function refFloat16Value(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1024 + m) * 2 ** (e - 25);
}
function refBFloat16Value(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 7) & 0xff, m = h & 0x7f;
  if (e === 0) return s * m * 2 ** -133;
  if (e === 255) return m ? NaN : s * Infinity;
  return s * (128 + m) * 2 ** (e - 134);
}

// ---- inputs -----------------------------------------------------------------------------------

function mulberry32(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = mulberry32(0x5eed1234);

function f32FromBits(u) { const b = new Uint32Array([u >>> 0]); return new Float32Array(b.buffer)[0]; }
function bitsOfF32(x) { return new Uint32Array(Float32Array.of(x).buffer)[0]; }

function randomValues(n, lo, hi) { // random sign, exponent in [lo, hi], random mantissa
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const e = lo + Math.floor(rand() * (hi - lo + 1));
    const m = 1 + rand();
    out[i] = (rand() < 0.5 ? -1 : 1) * m * 2 ** e;
  }
  return out;
}
function randomBits(n) {
  const u = new Uint32Array(n);
  for (let i = 0; i < n; i++) u[i] = Math.floor(rand() * 2 ** 32);
  return new Float32Array(u.buffer);
}

function half16Ties() {
  // exact midpoints between neighbouring float16 values, both parities, normal and subnormal
  const v = [];
  for (const e of [-14, -13, -5, -1, 0, 1, 7, 14, 15]) {
    const ulp = 2 ** (e - 10);
    for (const m of [1024, 1025, 1026, 1500, 2046, 2047]) v.push((m + 0.5) * ulp);
  }
  for (const m of [0, 1, 2, 3, 100, 511, 1022, 1023]) v.push((m + 0.5) * 2 ** -24);
  return v.flatMap((x) => [x, -x, Math.fround(x * (1 + 2 ** -20)), Math.fround(x * (1 - 2 ** -20))]);
}
function bf16Ties() {
  const v = [];
  for (const e of [-126, -125, -20, -1, 0, 1, 30, 126, 127]) {
    const ulp = 2 ** (e - 7);
    for (const m of [128, 129, 130, 200, 254, 255]) v.push((m + 0.5) * ulp);
  }
  for (const m of [0, 1, 2, 3, 63, 126, 127]) v.push((m + 0.5) * 2 ** -133);
  return v.flatMap((x) => [x, -x, Math.fround(x * (1 + 2 ** -20)), Math.fround(x * (1 - 2 ** -20))]);
}

const EDGE16 = [
  0, -0, 1, -1, 65504, -65504, 65505, 65519, Math.fround(65519.99), 65520, -65520, 65536, 1e6, 3.4e38,
  Infinity, -Infinity, NaN, 2 ** -14, 2 ** -15, 2 ** -24, -(2 ** -24), 2 ** -25, 2 ** -26,
  Math.fround(2 ** -25 * 1.0000001), 3 * 2 ** -25, 1023 * 2 ** -24, 1023.5 * 2 ** -24, 1 + 2 ** -11,
  1 + 3 * 2 ** -11, 2048 + 1, 2048 + 3, 0.1, 1 / 3, Math.PI, 1e-10, -1e-10,
  f32FromBits(0x00000001), f32FromBits(0x007fffff), f32FromBits(0x7f7fffff), f32FromBits(0x477fefff),
  f32FromBits(0x477ff000), f32FromBits(0x477fe000), f32FromBits(0x387fe000), f32FromBits(0x387ff000),
  f32FromBits(0x33000000), f32FromBits(0x33000001), f32FromBits(0x32ffffff),
];
const EDGE_BF = [
  0, -0, 1, -1, Infinity, -Infinity, NaN, 3.4e38, -3.4e38, f32FromBits(0x7f7fffff), f32FromBits(0x7f7f7fff),
  f32FromBits(0x7f7f8000), f32FromBits(0x7f7f8001), f32FromBits(0x7f7effff), f32FromBits(0x7f7f0000),
  f32FromBits(0x00000001), f32FromBits(0x00007fff), f32FromBits(0x00008000), f32FromBits(0x00018000),
  f32FromBits(0x007fffff), f32FromBits(0x00800000), f32FromBits(0x3f808000), f32FromBits(0x3f818000),
  f32FromBits(0x3f808001), f32FromBits(0x3f80ffff), f32FromBits(0x80008000), 65504, 0.1, 1 / 3, Math.PI, 1e-40,
];

function check(name, inputs, conv, ref) {
  const x = Float32Array.from(inputs);
  const got = conv(x);
  expect(got).toBeInstanceOf(Uint16Array);
  expect(got.length).toBe(x.length);
  const bad = [];
  for (let i = 0; i < x.length; i++) {
    const want = ref(x[i]);
    const isNaNBits = name === 'f16' ? (got[i] & 0x7c00) === 0x7c00 && (got[i] & 0x3ff) !== 0
      : (got[i] & 0x7f80) === 0x7f80 && (got[i] & 0x7f) !== 0;
    if (want === null ? !isNaNBits : got[i] !== want) {
      bad.push(`${x[i]} (0x${bitsOfF32(x[i]).toString(16)}): got 0x${got[i].toString(16)}, want ${want === null ? 'NaN' : '0x' + want.toString(16)}`);
    }
  }
  expect(bad.slice(0, 10)).toEqual([]);
}

// ---- self-checks of the reference (so a broken oracle cannot hide a broken library) -----------
describe('reference sanity', () => {
  test('known float16 encodings', () => {
    expect(refFloat16Bits(1)).toBe(0x3c00);
    expect(refFloat16Bits(-2)).toBe(0xc000);
    expect(refFloat16Bits(65504)).toBe(0x7bff);
    expect(refFloat16Bits(65519)).toBe(0x7bff);
    expect(refFloat16Bits(65520)).toBe(0x7c00);
    expect(refFloat16Bits(2 ** -24)).toBe(0x0001);
    expect(refFloat16Bits(2 ** -25)).toBe(0x0000);
    expect(refFloat16Bits(3 * 2 ** -25)).toBe(0x0002);
    expect(refFloat16Bits(2 ** -14)).toBe(0x0400);
    expect(refFloat16Bits(1023.5 * 2 ** -24)).toBe(0x0400);
    expect(refFloat16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(refFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(refFloat16Bits(-0)).toBe(0x8000);
    expect(refFloat16Value(0x7bff)).toBe(65504);
    expect(refFloat16Value(0x0001)).toBe(2 ** -24);
  });
  test('known bfloat16 encodings', () => {
    expect(refBFloat16Bits(1)).toBe(0x3f80);
    expect(refBFloat16Bits(f32FromBits(0x3f808000))).toBe(0x3f80); // tie, even stays
    expect(refBFloat16Bits(f32FromBits(0x3f818000))).toBe(0x3f82); // tie, odd rounds up
    expect(refBFloat16Bits(f32FromBits(0x7f7fffff))).toBe(0x7f80); // rounds past max: inf
    expect(refBFloat16Bits(f32FromBits(0x00008000))).toBe(0x0000);
    expect(refBFloat16Bits(f32FromBits(0x00018000))).toBe(0x0002);
    expect(refBFloat16Value(0x3f80)).toBe(1);
    expect(refBFloat16Value(0x0001)).toBe(2 ** -133);
  });
});

// ---- float16 ---------------------------------------------------------------------------------
describe('toFloat16', () => {
  test('edge cases', () => check('f16', EDGE16, toFloat16, refFloat16Bits));
  test('exact ties round to even (normal and subnormal), and neighbours of ties', () => check('f16', half16Ties(), toFloat16, refFloat16Bits));
  test('random values across the float16 range', () => check('f16', randomValues(20000, -26, 16), toFloat16, refFloat16Bits));
  test('random float32 bit patterns', () => check('f16', randomBits(20000), toFloat16, refFloat16Bits));
  test('every float32 near the overflow threshold', () => {
    const xs = [];
    for (let u = 0x477fe000 - 64; u <= 0x47800000 + 64; u++) xs.push(f32FromBits(u));
    check('f16', xs, toFloat16, refFloat16Bits);
  });
  test('every float32 around the subnormal/normal boundary and the smallest subnormal', () => {
    const xs = [];
    for (let u = 0x387fc000; u <= 0x38802000; u += 7) xs.push(f32FromBits(u));
    for (let u = 0x32fff000; u <= 0x33001000; u++) xs.push(f32FromBits(u)); // 2^-25: half the smallest subnormal
    for (let u = 0x337ff000; u <= 0x33801000; u++) xs.push(f32FromBits(u)); // 2^-24: the smallest subnormal
    for (let u = 0x33bff000; u <= 0x33c01000; u++) xs.push(f32FromBits(u)); // 1.5 * 2^-24: a tie
    check('f16', xs, toFloat16, refFloat16Bits);
  });
  test('specific expectations', () => {
    const r = toFloat16(Float32Array.of(NaN, -NaN, Infinity, -Infinity, -0, 65504, 65520, 65519.99, 2 ** -25, 3 * 2 ** -25));
    expect(Number.isNaN(fromFloat16(r.subarray(0, 1))[0])).toBe(true);
    expect(Number.isNaN(fromFloat16(r.subarray(1, 2))[0])).toBe(true);
    expect(Array.from(r.subarray(2))).toEqual([0x7c00, 0xfc00, 0x8000, 0x7bff, 0x7c00, 0x7bff, 0x0000, 0x0002]);
  });
  test('accepts an empty array', () => {
    expect(toFloat16(new Float32Array(0)).length).toBe(0);
    expect(fromFloat16(new Uint16Array(0)).length).toBe(0);
  });
});

describe('fromFloat16', () => {
  test('every bit pattern decodes exactly', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const f = fromFloat16(all);
    expect(f).toBeInstanceOf(Float32Array);
    const bad = [];
    for (let h = 0; h < 65536; h++) {
      const want = refFloat16Value(h);
      if (!(Object.is(f[h], want) || (Number.isNaN(want) && Number.isNaN(f[h])))) bad.push(h);
    }
    expect(bad.slice(0, 10)).toEqual([]);
    expect(Object.is(f[0x8000], -0)).toBe(true);
  });
  test('every non-NaN float16 round-trips bit-exactly', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const back = toFloat16(fromFloat16(all));
    const bad = [];
    for (let h = 0; h < 65536; h++) {
      const isNaN16 = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNaN16) { if (!((back[h] & 0x7c00) === 0x7c00 && (back[h] & 0x3ff))) bad.push(h); } else if (back[h] !== h) bad.push(h);
    }
    expect(bad.slice(0, 10)).toEqual([]);
  });
});

// ---- bfloat16 --------------------------------------------------------------------------------
describe('toBFloat16', () => {
  test('edge cases', () => check('bf16', EDGE_BF, toBFloat16, refBFloat16Bits));
  test('exact ties round to even, and neighbours of ties', () => check('bf16', bf16Ties(), toBFloat16, refBFloat16Bits));
  test('random values across the range', () => check('bf16', randomValues(20000, -140, 127), toBFloat16, refBFloat16Bits));
  test('random float32 bit patterns', () => check('bf16', randomBits(20000), toBFloat16, refBFloat16Bits));
  test('NaNs stay NaN, including ones whose payload is only in the low 16 bits', () => {
    const nans = [0x7f800001, 0xff800001, 0x7f80ffff, 0x7fc00000, 0x7fffffff, 0x7f808000].map(f32FromBits);
    // Float32Array.from may canonicalise NaN payloads; write the bits directly
    const x = new Float32Array(new Uint32Array([0x7f800001, 0xff800001, 0x7f80ffff, 0x7fc00000, 0x7fffffff, 0x7f808000]).buffer);
    expect(nans.every(Number.isNaN)).toBe(true);
    const r = toBFloat16(x);
    for (const h of r) {
      expect((h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0).toBe(true);
    }
    expect(fromBFloat16(r).every(Number.isNaN)).toBe(true);
  });
  test('specific expectations', () => {
    const r = toBFloat16(Float32Array.of(1, -0, Infinity, -Infinity, 3.4e38, f32FromBits(0x7f7fffff), 65504, 1 / 3));
    expect(Array.from(r)).toEqual([0x3f80, 0x8000, 0x7f80, 0xff80, 0x7f80, 0x7f80, 0x4780, 0x3eab]);
  });
});

describe('fromBFloat16', () => {
  test('every bit pattern decodes exactly and round-trips', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const f = fromBFloat16(all);
    expect(f).toBeInstanceOf(Float32Array);
    const back = toBFloat16(f);
    const bad = [];
    for (let h = 0; h < 65536; h++) {
      const want = refBFloat16Value(h);
      const isNaNB = Number.isNaN(want);
      if (!(Object.is(f[h], want) || (isNaNB && Number.isNaN(f[h])))) bad.push(`decode 0x${h.toString(16)}`);
      if (!isNaNB && back[h] !== h) bad.push(`roundtrip 0x${h.toString(16)}`);
    }
    expect(bad.slice(0, 10)).toEqual([]);
  });
  test('does not alias its input', () => {
    const src = Uint16Array.of(0x3f80, 0x4000);
    const f = fromBFloat16(src);
    f[0] = 5;
    expect(src[0]).toBe(0x3f80);
    const g = fromFloat16(src);
    g[0] = 5;
    expect(src[0]).toBe(0x3f80);
  });
});
