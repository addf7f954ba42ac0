import { AttnError } from './errors';
import { native, CudaInfo, DeviceHandle } from './native/binding';

// Devices: 'cpu', 'cuda' (= 'cuda:0') and 'cuda:N'. CUDA lives in a separate library
// (libattnkit_cuda.so) that the addon loads the first time anything here asks for it.

export type ParsedDevice = { kind: 'cpu' } | { kind: 'cuda'; index: number };

function describe(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  if (v === null) return 'null';
  return typeof v === 'object' ? (v as object).constructor?.name ?? 'object' : String(v);
}

/** Parses a device string; ERR_ATTN_DEVICE unless it is 'cpu', 'cuda' or 'cuda:N' (whether N exists is checked later). */
export function parseDevice(device: unknown, what: string): ParsedDevice {
  if (device === undefined || device === 'cpu') return { kind: 'cpu' };
  if (typeof device === 'string') {
    const m = /^cuda(?::(\d{1,9}))?$/.exec(device);
    if (m) return { kind: 'cuda', index: m[1] === undefined ? 0 : Number(m[1]) };
  }
  throw new AttnError('ERR_ATTN_DEVICE', `${what}: device must be 'cpu', 'cuda' or 'cuda:N', got ${describe(device)}`);
}

let info: CudaInfo | undefined;
/** The CUDA library's state: loads it on the first call; the outcome never changes in a process. */
export function cudaInfo(): CudaInfo {
  return (info ??= native().cudaInfo());
}

/** ERR_ATTN_CUDA_UNAVAILABLE (with the reason) unless CUDA works, ERR_ATTN_DEVICE unless cuda:index exists. */
export function requireCudaDevice(index: number, what: string): void {
  const c = cudaInfo();
  if (!c.available) throw new AttnError('ERR_ATTN_CUDA_UNAVAILABLE', `${what}: CUDA is unavailable: ${c.reason}`);
  const n = c.devices!.length;
  if (index >= n) {
    throw new AttnError('ERR_ATTN_DEVICE', `${what}: device 'cuda:${index}' does not exist; this machine has ${n} CUDA device${n === 1 ? '' : 's'} (cuda:0${n > 1 ? ` .. cuda:${n - 1}` : ''})`);
  }
}

function prefixed(e: unknown, what: string): unknown {
  return e instanceof AttnError ? new AttnError(e.code, `${what}: ${e.message}`, { cause: e }) : e;
}

/**
 * Device memory shared by every view of one device tensor. Disposing it (through any view) frees
 * it now; a finalizer on the native handle frees it if nobody does.
 */
export class DeviceStorage {
  readonly handle: DeviceHandle;
  readonly index: number;
  readonly bytes: number;
  /** 'cuda:N' */
  readonly device: string;
  #disposed = false;

  private constructor(handle: DeviceHandle, index: number, bytes: number) {
    this.handle = handle;
    this.index = index;
    this.bytes = bytes;
    this.device = `cuda:${index}`;
  }

  /** Allocates `bytes` on cuda:index (zero-filled if asked); ERR_ATTN_OOM when the GPU is full. */
  static alloc(index: number, bytes: number, zero: boolean, what: string): DeviceStorage {
    let h: DeviceHandle;
    try {
      h = native().cudaAlloc(index, bytes, zero);
    } catch (e) {
      throw prefixed(e, what);
    }
    return new DeviceStorage(h, index, bytes);
  }

  get disposed(): boolean { return this.#disposed; }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    native().cudaDispose(this.handle);
  }
}
