import { AttnError, asAttnError } from './errors';
import {
  DType, TypedArray, arrayTypeOf, defaultDTypeOf, isDType,
  float16BitsToNumber, bfloat16BitsToNumber,
} from './dtype';
import { DeviceStorage, parseDevice, requireCudaDevice } from './device';
import { native, NativeTensorData } from './native/binding';

/** Internal (lib/ops): a tensor's memory as native calls take it, its TypedArray or device handle. */
export const kNative = Symbol('attnkit.native');

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

/** Index of the highest element a view reaches (offset for an empty view). */
function lastElement(shape: readonly number[], strides: readonly number[], offset: number): number {
  let last = offset;
  for (let i = 0; i < shape.length; i++) last += (shape[i] - 1) * strides[i];
  return last;
}

/**
 * An n-d strided view over memory: on the CPU, the caller's TypedArray; on a GPU, a device
 * allocation shared by every view of it. Views (transpose, view, slice) never copy; native ops
 * read them in place. Copies between devices are explicit: to() / toSync().
 */
export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** In elements. */
  readonly strides: readonly number[];
  /** In elements, into `data` (or into the device storage). */
  readonly offset: number;
  /** 'cpu' | 'cuda:0' | ... */
  readonly device: string;
  #data: TypedArray | null;
  #storage: DeviceStorage | null;

  private constructor(backing: TypedArray | DeviceStorage, dtype: DType, shape: number[], strides: number[], offset: number) {
    if (backing instanceof DeviceStorage) {
      this.device = backing.device;
      this.#storage = backing;
      this.#data = null;
    } else {
      this.device = 'cpu';
      this.#storage = null;
      this.#data = backing;
    }
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

  /** A new contiguous tensor; on a GPU (device 'cuda' / 'cuda:N') its contents are undefined. */
  static empty(shape: number[], opts: TensorCreateOptions = {}): Tensor {
    return Tensor.#create('Tensor.empty', shape, opts, false);
  }

  /** A new contiguous tensor of zeros. */
  static zeros(shape: number[], opts: TensorCreateOptions = {}): Tensor {
    return Tensor.#create('Tensor.zeros', shape, opts, true);
  }

  static #create(what: string, shape: number[], opts: TensorCreateOptions, zero: boolean): Tensor {
    const dtype = opts.dtype ?? 'float32';
    if (!isDType(dtype)) throw new AttnError('ERR_ATTN_DTYPE', `${what}: unknown dtype ${String(dtype)}`);
    const device = parseDevice(opts.device, what);
    if (device.kind === 'cuda') requireCudaDevice(device.index, what);
    const dims = checkDims(what, shape, 'shape');
    const Ctor = arrayTypeOf(dtype);
    if (device.kind === 'cuda') {
      const storage = DeviceStorage.alloc(device.index, product(dims) * Ctor.BYTES_PER_ELEMENT, zero, what);
      return new Tensor(storage, dtype, dims, contiguousStrides(dims), 0);
    }
    return new Tensor(new Ctor(product(dims)), dtype, dims, contiguousStrides(dims), 0); // fresh arrays are zero-filled
  }

  /** The very memory passed to from(). CPU only: a device tensor throws ERR_ATTN_DEVICE (copy it with to('cpu')). */
  get data(): TypedArray {
    if (this.disposed) throw new AttnError('ERR_ATTN_DISPOSED', 'this tensor was disposed');
    if (this.#data === null) {
      throw new AttnError('ERR_ATTN_DEVICE', `data: this tensor lives on ${this.device}, where JavaScript cannot read it; call .to('cpu') (or .toSync('cpu')) for a CPU copy`);
    }
    return this.#data;
  }
  /** True once dispose() was called on this tensor (CPU) or on any view of its device storage. */
  get disposed(): boolean { return this.#storage ? this.#storage.disposed : this.#data === null; }

  /** The TypedArray or device storage behind this view; ERR_ATTN_DISPOSED after dispose(). */
  #backing(): TypedArray | DeviceStorage {
    if (this.disposed) throw new AttnError('ERR_ATTN_DISPOSED', 'this tensor was disposed');
    return this.#storage ?? this.#data!;
  }

  /** @internal What native calls take: the TypedArray, or the device storage handle. */
  [kNative](): NativeTensorData {
    const b = this.#backing();
    return b instanceof DeviceStorage ? b.handle : b;
  }
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
    return new Tensor(this.#backing(), this.dtype, shape, strides, this.offset);
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
    return new Tensor(this.#backing(), this.dtype, dims, contiguousStrides(dims), this.offset);
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
    return new Tensor(this.#backing(), this.dtype, shape, this.strides.slice(), this.offset + (e > s ? s * this.strides[dim] : 0));
  }

  /**
   * Another view of the same memory (CPU array or device storage) with any shape, strides and
   * offset (in elements, from the start of the memory), checked to stay inside it. No copy.
   */
  asStrided(shape: number[], strides: number[], offset: number = this.offset): Tensor {
    const backing = this.#backing();
    const dims = checkDims('asStrided', shape, 'shape');
    const st = checkDims('asStrided', strides, 'strides');
    if (st.length !== dims.length) {
      throw new AttnError('ERR_ATTN_SHAPE', `asStrided: strides [${st.join(', ')}] must have one entry per dim of shape [${dims.join(', ')}]`);
    }
    if (!Number.isSafeInteger(offset) || offset < 0) throw new AttnError('ERR_ATTN_ARGUMENT', `asStrided: offset must be an integer >= 0, got ${offset}`);
    const capacity = backing instanceof DeviceStorage
      ? Math.floor(backing.bytes / arrayTypeOf(this.dtype).BYTES_PER_ELEMENT) : backing.length;
    const last = lastElement(dims, st, offset);
    if (product(dims) > 0 && last >= capacity) {
      throw new AttnError('ERR_ATTN_ARGUMENT', `asStrided: shape [${dims.join(', ')}] with strides [${st.join(', ')}] and offset ${offset} reaches element ${last}, but the ${this.device} memory holds ${capacity}`);
    }
    return new Tensor(backing, this.dtype, dims, st, offset);
  }

  /** Throws unless every element of the view is still inside data (the buffer may have been
   *  detached or shrunk since from()). Native ops check this themselves. */
  private requireLive(op: string): TypedArray {
    const data = this.data;
    if (this.numel > 0) {
      const last = lastElement(this.shape, this.strides, this.offset);
      if (last >= data.length) {
        throw new AttnError('ERR_ATTN_ARGUMENT', `${op}: the tensor's buffer was detached or shrunk (it holds ${data.length} elements, the view reaches element ${last})`);
      }
    }
    return data;
  }

  /** This tensor if already contiguous, else a contiguous copy (on the same device). */
  contiguous(): Tensor {
    if (this.#backing() instanceof DeviceStorage) {
      if (this.isContiguous()) return this;
      // The CUDA library has no strided gather yet, so a non-contiguous device tensor is gathered
      // through the host: a contiguous CPU copy in logical order, copied back. Correct, not fast.
      return this.toSync('cpu').toSync(this.device);
    }
    this.requireLive('contiguous');
    if (this.isContiguous()) return this;
    const out = Tensor.empty(this.shape.slice(), { dtype: this.dtype });
    const dst = out.data;
    const src = this.data;
    let i = 0;
    forEachOffset(this, (o) => { dst[i++] = src[o]; });
    return out;
  }

  /**
   * Explicit device copies. A tensor already on `device` is returned as is. cpu -> cuda copies a
   * contiguous tensor (a non-contiguous one is made contiguous first); cuda -> cpu returns a
   * contiguous CPU tensor in logical order; cuda:M -> cuda:N goes through the host.
   */
  toSync(device: string): Tensor {
    const target = parseDevice(device, 'Tensor.to');
    const backing = this.#backing();
    if (target.kind === 'cpu') return backing instanceof DeviceStorage ? this.#toHost(backing) : this;
    requireCudaDevice(target.index, 'Tensor.to');
    if (backing instanceof DeviceStorage) {
      return backing.index === target.index ? this : this.#toHost(backing).toSync(device);
    }
    return this.#toDevice(target.index);
  }

  /** The async form of toSync: the copy runs off the JS thread. Never throws; errors reject. */
  to(device: string): Promise<Tensor> {
    try {
      const target = parseDevice(device, 'Tensor.to');
      const backing = this.#backing();
      if (target.kind === 'cpu') return backing instanceof DeviceStorage ? this.#toHostAsync(backing) : Promise.resolve(this);
      requireCudaDevice(target.index, 'Tensor.to');
      if (backing instanceof DeviceStorage) {
        return backing.index === target.index ? Promise.resolve(this) : this.#toHostAsync(backing).then((t) => t.to(device));
      }
      return this.#toDeviceAsync(target.index);
    } catch (e) {
      return Promise.reject(asAttnError(e));
    }
  }

  /** The contiguous CPU source of a host -> device copy, and the new device storage for it. */
  #deviceTarget(index: number): { src: Tensor; storage: DeviceStorage; byteOffset: number; bytes: number } {
    const src = this.contiguous();
    const es = arrayTypeOf(this.dtype).BYTES_PER_ELEMENT;
    const bytes = src.numel * es;
    return { src, storage: DeviceStorage.alloc(index, bytes, false, 'Tensor.to'), byteOffset: src.offset * es, bytes };
  }

  #onDevice(storage: DeviceStorage): Tensor {
    return new Tensor(storage, this.dtype, this.shape.slice(), contiguousStrides(this.shape), 0);
  }

  #toDevice(index: number): Tensor {
    const { src, storage, byteOffset, bytes } = this.#deviceTarget(index);
    try {
      native().cudaCopyToDevice(storage.handle, 0, src.data, byteOffset, bytes);
    } catch (e) {
      storage.dispose();
      throw e;
    }
    return this.#onDevice(storage);
  }

  async #toDeviceAsync(index: number): Promise<Tensor> {
    const { src, storage, byteOffset, bytes } = this.#deviceTarget(index);
    try {
      const data = src.data;
      // A resizable buffer could shrink under an off-thread copy: copy it on this thread instead.
      if ((data.buffer as ArrayBuffer & { resizable?: boolean }).resizable === true) {
        native().cudaCopyToDevice(storage.handle, 0, data, byteOffset, bytes);
      } else {
        await native().cudaCopyToDeviceAsync(storage.handle, 0, data, byteOffset, bytes);
      }
    } catch (e) {
      storage.dispose();
      throw asAttnError(e);
    }
    return this.#onDevice(storage);
  }

  /** The elements [first, first + count) of the storage that this view reaches. */
  #span(): { first: number; count: number } {
    if (this.numel === 0) return { first: this.offset, count: 0 };
    return { first: this.offset, count: lastElement(this.shape, this.strides, this.offset) - this.offset + 1 };
  }

  /** A host copy of the span, viewed with this tensor's strides, made contiguous. */
  #gather(host: TypedArray, first: number): Tensor {
    const view = new Tensor(host, this.dtype, this.shape.slice(), this.strides.slice(), this.offset - first);
    return view.isContiguous() ? Tensor.from(host, this.shape.slice(), { dtype: this.dtype }) : view.contiguous();
  }

  #toHost(storage: DeviceStorage): Tensor {
    const { first, count } = this.#span();
    const Ctor = arrayTypeOf(this.dtype);
    const host = new Ctor(count);
    native().cudaCopyToHost(host, 0, storage.handle, first * Ctor.BYTES_PER_ELEMENT, count * Ctor.BYTES_PER_ELEMENT);
    return this.#gather(host, first);
  }

  async #toHostAsync(storage: DeviceStorage): Promise<Tensor> {
    const { first, count } = this.#span();
    const Ctor = arrayTypeOf(this.dtype);
    const host = new Ctor(count);
    try {
      await native().cudaCopyToHostAsync(host, 0, storage.handle, first * Ctor.BYTES_PER_ELEMENT, count * Ctor.BYTES_PER_ELEMENT);
    } catch (e) {
      throw asAttnError(e);
    }
    return this.#gather(host, first);
  }

  /** A float32 copy in logical (row-major) order. A device tensor is copied to the host first (synchronously). */
  toFloat32Array(): Float32Array {
    const backing = this.#backing();
    if (backing instanceof DeviceStorage) return this.#toHost(backing).toFloat32Array();
    const src = this.requireLive('toFloat32Array');
    const out = new Float32Array(this.numel);
    const read = elementReader(this.dtype);
    let i = 0;
    forEachOffset(this, (o) => { out[i++] = read(src, o); });
    return out;
  }

  /**
   * CPU: releases this tensor's reference to the data; later use of it throws ERR_ATTN_DISPOSED.
   * GPU: frees the device memory now; every view of it then throws ERR_ATTN_DISPOSED (an async
   * call already using it keeps it until the call settles). Idempotent.
   */
  dispose(): void {
    if (this.#storage) this.#storage.dispose();
    else this.#data = null;
  }
  [Symbol.dispose](): void { this.dispose(); }
}

// Node 20 before 20.4 has no Symbol.dispose: `using` support through Symbol.for('nodejs.dispose').
{
  const sym: symbol = (Symbol as { dispose?: symbol }).dispose ?? Symbol.for('nodejs.dispose');
  if (!(sym in Tensor.prototype)) {
    Object.defineProperty(Tensor.prototype, sym, { value: Tensor.prototype.dispose, writable: true, configurable: true });
  }
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
