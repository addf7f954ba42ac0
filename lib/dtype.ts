/** Element types. float16 and bfloat16 live in Uint16Array. */
export type DType = 'float32' | 'float16' | 'bfloat16' | 'int32' | 'uint8';
export type FloatDType = 'float32' | 'float16' | 'bfloat16';
export type TypedArray = Float32Array | Uint16Array | Int32Array | Uint8Array;

/** Codes shared with native/core/tensor_view.h (enum class DType). */
export const DTYPE_CODE: Record<DType, number> = { float32: 0, float16: 1, bfloat16: 2, int32: 3, uint8: 4 };

export const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16', 'int32', 'uint8'];

type ArrayCtor = Float32ArrayConstructor | Uint16ArrayConstructor | Int32ArrayConstructor | Uint8ArrayConstructor;
export function arrayTypeOf(dtype: DType): ArrayCtor {
  switch (dtype) {
    case 'float32': return Float32Array;
    case 'float16': case 'bfloat16': return Uint16Array;
    case 'int32': return Int32Array;
    case 'uint8': return Uint8Array;
  }
}

/** The dtype a typed array holds by default (Uint16Array: float16 unless told bfloat16). */
export function defaultDTypeOf(a: ArrayBufferView): DType | undefined {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Uint16Array) return 'float16';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Uint8Array) return 'uint8';
  return undefined;
}

export function isDType(x: unknown): x is DType {
  return typeof x === 'string' && (DTYPES as readonly string[]).includes(x);
}

export function isFloatDType(d: DType): d is FloatDType {
  return d === 'float32' || d === 'float16' || d === 'bfloat16';
}

// Scratch views for bit-level conversions.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const u = u32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40; // quiet NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff; // round to nearest even
}

function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const u = u32[0];
  const sign = (u >>> 16) & 0x8000;
  const au = u & 0x7fffffff;
  if (au > 0x7f800000) return sign | 0x7e00;
  if (au >= 0x477ff000) return sign | 0x7c00; // rounds past 65504: infinity
  if (au < 0x38800000) {
    // subnormal half: value / 2^-24, rounded to nearest even
    if (au < 0x33000000) return sign;
    const e = au >>> 23;
    const m = (au & 0x7fffff) | 0x800000;
    const shift = 126 - e;
    let r = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (r & 1))) r++;
    return sign | r;
  }
  let r = au - (112 << 23);
  r += 0x0fff + ((r >>> 13) & 1);
  return sign | (r >>> 13);
}

const F16_TABLE = (() => {
  // Every float16 bit pattern's float32 value: conversions from half are a table lookup.
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const man = h & 0x3ff;
    if (exp === 0) t[h] = sign * man * 2 ** -24;
    else if (exp === 31) t[h] = man ? NaN : sign * Infinity;
    else t[h] = sign * (1 + man / 1024) * 2 ** (exp - 15);
  }
  return t;
})();

export function float16BitsToNumber(h: number): number { return F16_TABLE[h & 0xffff]; }
export function bfloat16BitsToNumber(h: number): number { u32[0] = (h & 0xffff) << 16; return f32[0]; }
export const numberToFloat16Bits = f32ToF16Bits;
export const numberToBFloat16Bits = f32ToBf16Bits;

/** float32 -> float16 bits (round to nearest even). */
export function toFloat16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]);
  return out;
}
/** float32 -> bfloat16 bits (round to nearest even). */
export function toBFloat16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToBf16Bits(src[i]);
  return out;
}
export function fromFloat16(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = F16_TABLE[src[i]];
  return out;
}
export function fromBFloat16(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return out;
}
