import { AttnError } from './errors';
import {
  DType, TypedArray, arrayTypeOf, defaultDTypeOf, isDType,
  float16BitsToNumber, bfloat16BitsToNumber,
} from './dtype';

export interface TensorFromOptions { dtype?: DType; strides?: number[]; offset?: number }
export interface TensorCreateOptions { dtype?: DType; device?: string }

function checkDims(name: string, dims: unknown, what: string): number[] {
  if (!Array.isArray(dims)) throw new AttnError('ERR_ATTN_SHAPE', `${name}: ${what} must be an array of integers, got ${typeof dims}`);
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new AttnError('ERR_ATTN_SHAPE', `${name}: ${what} must hold integers >= 0, got [${dims.join(', ')}]`);
    }
  }
  return dims.slice();
}

function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
  return s;
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function parseDevice(device: string | undefined): 'cpu' | 'cuda' {
  if (device === undefined || device === 'cpu') return 'cpu';
  if (typeof device === 'string' && /^cuda(:\d+)?$/.test(device)) return 'cuda';
  throw new AttnError('ERR_ATTN_DEVICE', `device must be 'cpu', 'cuda' or 'cuda:N', got ${String(device)}`);
}

function cudaUnavailable(what: string): AttnError {
  return new AttnError('ERR_ATTN_CUDA_UNAVAILABLE',
    `${what}: CUDA tensors need the attnkit CUDA library, which this build does not include; use device 'cpu'`);
}

/**
 * An n-d strided view over memory the caller owns (CPU). Views (transpose, view, slice) never copy;
 * native ops read them in place.
 */
export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** In elements. */
  readonly strides: readonly number[];
  /** In elements, into `data`. */
  readonly offset: number;
  readonly device: string = 'cpu';
  #data: TypedArray | null;

  private constructor(data: TypedArray, dtype: DType, shape: number[], strides: number[], offset: number) {
    this.#data = data;
    this.dtype = dtype;
    this.shape = Object.freeze(shape);
    this.strides = Object.freeze(strides);
    this.offset = offset;
  }

  /** A zero-copy view of `data`. Typed arrays keep their identity: `t.data === data`. */
  static from(data: TypedArray | ArrayBuffer | SharedArrayBuffer, shape: number[], opts: TensorFromOptions = {}): Tensor {
    if (opts.dtype !== undefined && !isDType(opts.dtype)) {
      throw new AttnError('ERR_ATTN_DTYPE', `Tensor.from: dtype must be one of float32, float16, bfloat16, int32, uint8, got ${String(opts.dtype)}`);
    }
    let arr: TypedArray;
    let dtype: DType;
    if (data instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && data instanceof SharedArrayBuffer)) {
      dtype = opts.dtype ?? 'float32';
      const Ctor = arrayTypeOf(dtype);
      const bytes = Ctor.BYTES_PER_ELEMENT;
      try {
        arr = new Ctor(data as ArrayBuffer, 0, Math.floor(data.byteLength / bytes));
      } catch (e) {
        throw new AttnError('ERR_ATTN_ARGUMENT', `Tensor.from: data's ArrayBuffer is detached (transferred); pass a live buffer`, { cause: e });
      }
    } else if (ArrayBuffer.isView(data)) {
      const natural = defaultDTypeOf(data);
      if (natural === undefined) {
        throw new AttnError('ERR_ATTN_DTYPE', `Tensor.from: data must be a Float32Array, Uint16Array (float16/bfloat16), Int32Array or Uint8Array, got ${data.constructor.name}`);
      }
      dtype = opts.dtype ?? natural;
      if (arrayTypeOf(dtype) !== data.constructor) {
        throw new AttnError('ERR_ATTN_DTYPE', `Tensor.from: dtype ${dtype} needs a ${arrayTypeOf(dtype).name}, got a ${data.constructor.name}`);
      }
      arr = data as TypedArray;
    } else {
      throw new AttnError('ERR_ATTN_ARGUMENT', `Tensor.from: data must be a TypedArray, ArrayBuffer or SharedArrayBuffer`);
    }
    const dims = checkDims('Tensor.from', shape, 'shape');
    const strides = opts.strides === undefined ? contiguousStrides(dims) : checkDims('Tensor.from', opts.strides, 'strides');
    if (strides.length !== dims.length) {
      throw new AttnError('ERR_ATTN_SHAPE', `Tensor.from: strides [${strides.join(', ')}] must have one entry per dim of shape [${dims.join(', ')}]`);
    }
    const offset = opts.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new AttnError('ERR_ATTN_ARGUMENT', `Tensor.from: offset must be an integer >= 0, got ${offset}`);
    if (product(dims) > 0) {
      let last = offset;
      for (let i = 0; i < dims.length; i++) last += (dims[i] - 1) * strides[i];
      if (last >= arr.length) {
        throw new AttnError('ERR_ATTN_ARGUMENT', `Tensor.from: shape [${dims.join(', ')}] with strides [${strides.join(', ')}] and offset ${offset} reaches element ${last}, but data holds ${arr.length}`);
      }
    }
    return new Tensor(arr, dtype, dims, strides, offset);
  }

  static empty(shape: number[], opts: TensorCreateOptions = {}): Tensor {
    const dtype = opts.dtype ?? 'float32';
    if (!isDType(dtype)) throw new AttnError('ERR_ATTN_DTYPE', `Tensor.empty: unknown dtype ${String(dtype)}`);
    if (parseDevice(opts.device) === 'cuda') throw cudaUnavailable('Tensor.empty');
    const dims = checkDims('Tensor.empty', shape, 'shape');
    const Ctor = arrayTypeOf(dtype);
    return new Tensor(new Ctor(product(dims)), dtype, dims, contiguousStrides(dims), 0);
  }

  static zeros(shape: number[], opts: TensorCreateOptions = {}): Tensor {
    return Tensor.empty(shape, opts); // fresh typed arrays are zero-filled
  }

  /** The very memory passed to from(). */
  get data(): TypedArray {
    if (this.#data === null) throw new AttnError('ERR_ATTN_DISPOSED', 'this tensor was disposed');
    return this.#data;
  }
  get disposed(): boolean { return this.#data === null; }
  get rank(): number { return this.shape.length; }
  get numel(): number { return product(this.shape); }

  isContiguous(): boolean {
    const c = contiguousStrides(this.shape);
    return this.shape.every((n, i) => n <= 1 || this.strides[i] === c[i]);
  }

  private dim(name: string, d: number): number {
    const r = this.shape.length;
    if (!Number.isInteger(d) || d < -r || d >= r) throw new AttnError('ERR_ATTN_ARGUMENT', `${name}: dim ${d} is out of range for rank ${r}`);
    return d < 0 ? d + r : d;
  }

  transpose(a: number, b: number): Tensor {
    a = this.dim('transpose', a);
    b = this.dim('transpose', b);
    const shape = this.shape.slice();
    const strides = this.strides.slice();
    [shape[a], shape[b]] = [shape[b], shape[a]];
    [strides[a], strides[b]] = [strides[b], strides[a]];
    return new Tensor(this.data, this.dtype, shape, strides, this.offset);
  }

  /** Reshape without copying; needs a contiguous tensor. One dim may be -1. */
  view(shape: number[]): Tensor {
    if (!Array.isArray(shape)) throw new AttnError('ERR_ATTN_SHAPE', 'view: shape must be an array');
    const n = this.numel;
    const dims = shape.slice();
    const free = dims.indexOf(-1);
    if (free >= 0) {
      const rest = product(dims.filter((_, i) => i !== free));
      dims[free] = rest === 0 ? 0 : n / rest;
    }
    checkDims('view', dims, 'shape');
    if (product(dims) !== n) throw new AttnError('ERR_ATTN_SHAPE', `view: shape [${shape.join(', ')}] does not hold ${n} elements`);
    if (!this.isContiguous()) throw new AttnError('ERR_ATTN_SHAPE', 'view: tensor is not contiguous; call contiguous() first');
    return new Tensor(this.data, this.dtype, dims, contiguousStrides(dims), this.offset);
  }

  /** Elements [start, end) of `dim`, without copying. Negative indices count from the end. */
  slice(dim: number, start: number, end: number): Tensor {
    dim = this.dim('slice', dim);
    const n = this.shape[dim];
    const clamp = (x: number) => Math.min(Math.max(x < 0 ? x + n : x, 0), n);
    if (!Number.isInteger(start) || !Number.isInteger(end)) throw new AttnError('ERR_ATTN_ARGUMENT', 'slice: start and end must be integers');
    const s = clamp(start);
    const e = Math.max(clamp(end), s);
    const shape = this.shape.slice();
    shape[dim] = e - s;
    return new Tensor(this.data, this.dtype, shape, this.strides.slice(), this.offset + (e > s ? s * this.strides[dim] : 0));
  }

  /** Throws unless every element of the view is still inside data (the buffer may have been
   *  detached or shrunk since from()). Native ops check this themselves. */
  private requireLive(op: string): TypedArray {
    const data = this.data;
    if (this.numel > 0) {
      let last = this.offset;
      for (let i = 0; i < this.shape.length; i++) last += (this.shape[i] - 1) * this.strides[i];
      if (last >= data.length) {
        throw new AttnError('ERR_ATTN_ARGUMENT', `${op}: the tensor's buffer was detached or shrunk (it holds ${data.length} elements, the view reaches element ${last})`);
      }
    }
    return data;
  }

  /** This tensor if already contiguous, else a contiguous copy. */
  contiguous(): Tensor {
    this.requireLive('contiguous');
    if (this.isContiguous()) return this;
    const out = Tensor.empty(this.shape.slice(), { dtype: this.dtype });
    const dst = out.data;
    const src = this.data;
    let i = 0;
    forEachOffset(this, (o) => { dst[i++] = src[o]; });
    return out;
  }

  /** Explicit device copies. A tensor already on `device` is returned as is. */
  toSync(device: string): Tensor {
    if (parseDevice(device) === 'cuda') throw cudaUnavailable('Tensor.to');
    this.data; // throws if disposed
    return this;
  }
  to(device: string): Promise<Tensor> {
    try { return Promise.resolve(this.toSync(device)); } catch (e) { return Promise.reject(e); }
  }

  /** A float32 copy in logical (row-major) order. */
  toFloat32Array(): Float32Array {
    const src = this.requireLive('toFloat32Array');
    const out = new Float32Array(this.numel);
    const read = elementReader(this.dtype);
    let i = 0;
    forEachOffset(this, (o) => { out[i++] = read(src, o); });
    return out;
  }

  /** Releases the reference to the data; later use throws ERR_ATTN_DISPOSED. */
  dispose(): void { this.#data = null; }
  [Symbol.dispose](): void { this.dispose(); }
}

/** Calls fn with the element offset of every logical index, in row-major order. */
export function forEachOffset(t: Tensor, fn: (offset: number) => void): void {
  const shape = t.shape, strides = t.strides, r = shape.length;
  if (shape.some((n) => n === 0)) return;
  if (r === 0) { fn(t.offset); return; }
  const idx = new Array<number>(r).fill(0);
  const last = r - 1, inner = shape[last], innerStride = strides[last];
  let base = t.offset;
  for (;;) {
    for (let i = 0, o = base; i < inner; i++, o += innerStride) fn(o);
    let d = last - 1;
    while (d >= 0) {
      idx[d]++;
      base += strides[d];
      if (idx[d] < shape[d]) break;
      base -= strides[d] * shape[d];
      idx[d] = 0;
      d--;
    }
    if (d < 0) return;
  }
}

/** Element reader as JS numbers for any dtype. */
export function elementReader(dtype: DType): (a: TypedArray, i: number) => number {
  if (dtype === 'float16') return (a, i) => float16BitsToNumber(a[i]);
  if (dtype === 'bfloat16') return (a, i) => bfloat16BitsToNumber(a[i]);
  return (a, i) => a[i];
}
