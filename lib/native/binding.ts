import * as path from 'path';
import { AttnError } from '../errors';
import { TypedArray } from '../dtype';
import { findCudaPackage } from './cuda-package';

/** A native device storage handle (native/napi/device_storage.h): owns {device, ptr, bytes}. Opaque to JS. */
export interface DeviceHandle { readonly __attnkitDeviceStorage: never }

export interface CudaDeviceInfo { name: string; cc: string; memoryBytes: number; multiprocessors: number; kernelImage: boolean }
export interface CudaInfo { available: boolean; reason?: string; devices?: CudaDeviceInfo[]; buildInfo?: string; libraryPath?: string }

/** A tensor argument: a CPU tensor's TypedArray, or a device tensor's storage handle. */
export type NativeTensorData = TypedArray | DeviceHandle;

/** The native addon's surface (native/napi/). Arguments are pre-marshalled by lib/ops. */
export interface NativeBinding {
  init(errorClass: typeof AttnError): void;
  cpuInfo(): { isa: string; bestIsa: string; threads: number };
  setNumThreads(n: number): void;
  setIsa(isa: string): string;
  fmaPeakGflops(millis: number): number;
  /** Streaming read bandwidth, GB/s, of a `megabytes` buffer on every pool thread (best of `rounds`). */
  memReadGBps(megabytes: number, rounds: number): number;
  attentionSync(...args: AttentionArgs): void;
  attentionAsync(...args: AttentionArgs): Promise<void>;
  linearAttentionSync(...args: LinearArgs): void;
  linearAttentionAsync(...args: LinearArgs): Promise<void>;
  decodeAttentionSync(...args: DecodeArgs): void;
  decodeAttentionAsync(...args: DecodeArgs): Promise<void>;
  kvAppendSync(kPool: DeviceHandle, vPool: DeviceHandle, deviceTable: DeviceHandle, k: DeviceHandle, v: DeviceHandle,
    table: Int32Array, counts: Int32Array, starts: Int32Array, desc: Float64Array): void;
  kvGatherSync(kPool: DeviceHandle, vPool: DeviceHandle, deviceTable: DeviceHandle, k: DeviceHandle, v: DeviceHandle,
    table: Int32Array, counts: Int32Array, positions: Int32Array, desc: Float64Array): void;
  mergeStates(outs: NativeTensorData[], lses: NativeTensorData[], out: NativeTensorData, lse: NativeTensorData, desc: Float64Array): void;
  /** topkBlockAttention's gating on a device: records for q, k, states, indices, then blockSize, topk, causal. */
  topkSelect(q: NativeTensorData, k: NativeTensorData, states: NativeTensorData, indices: NativeTensorData, desc: Float64Array): void;

  // CUDA (native/napi/device_binding.cpp). The first call of any of these loads the CUDA library.
  cudaInfo(): CudaInfo;
  /** The optional CUDA package's library and what its lookup found; taken only before the library's first load. */
  cudaSetPackageLibrary(path: string, note: string): boolean;
  cudaAlloc(device: number, bytes: number, zero: boolean): DeviceHandle;
  cudaDispose(h: DeviceHandle): void;
  cudaStorageInfo(h: DeviceHandle): { device: number; bytes: number; disposed: boolean; freed: boolean; busy: number };
  cudaMemoryStats(): { liveBytes: number; liveAllocations: number; externalBytes: number };
  // (dst, dstByteOffset, src, srcByteOffset, bytes); host offsets count from the TypedArray's first byte.
  cudaCopyToDevice(dst: DeviceHandle, dstByteOffset: number, src: ArrayBufferView, srcByteOffset: number, bytes: number): void;
  cudaCopyToHost(dst: ArrayBufferView, dstByteOffset: number, src: DeviceHandle, srcByteOffset: number, bytes: number): void;
  cudaCopyOnDevice(dst: DeviceHandle, dstByteOffset: number, src: DeviceHandle, srcByteOffset: number, bytes: number): void;
  cudaCopyToDeviceAsync(dst: DeviceHandle, dstByteOffset: number, src: ArrayBufferView, srcByteOffset: number, bytes: number): Promise<void>;
  cudaCopyToHostAsync(dst: ArrayBufferView, dstByteOffset: number, src: DeviceHandle, srcByteOffset: number, bytes: number): Promise<void>;
  cudaCopyOnDeviceAsync(dst: DeviceHandle, dstByteOffset: number, src: DeviceHandle, srcByteOffset: number, bytes: number): Promise<void>;
}

/** q, k, v, out, bias, mask, blockMask, elementIndex, elementBits, alibiSlopes, sinkLogits, cuSeqlensQ,
 *  cuSeqlensK, lse, descriptor, abortFlag, index of the first argument over a resizable ArrayBuffer
 *  (-1: none; async only). Tensor slots (q, k, v, out, bias, mask, blockMask, elementIndex,
 *  elementBits, lse) hold a device handle for device tensors. */
export type AttentionArgs = [
  NativeTensorData, NativeTensorData, NativeTensorData, NativeTensorData, NativeTensorData | null, NativeTensorData | null,
  NativeTensorData | null, NativeTensorData | null, NativeTensorData | null, Float32Array | null, Float32Array | null,
  Int32Array | null, Int32Array | null, Float32Array | DeviceHandle | null, Float64Array, Int32Array | null, number,
];

/** Where attention's argument list keeps the last tensor-or-array argument, the abort flag and the resizable index. */
export const enum AttentionArg { LastData = 13, AbortFlag = 15, Resizable = 16 }

/** q, k, v, out, logGates, initialState, initialNormalizer, stateOut, normalizerOut, decay (a
 *  Float32Array [H], or null: a single lambda travels in the descriptor), descriptor, abortFlag, index
 *  of the first argument over a resizable ArrayBuffer (-1: none; async only). CPU tensors only. */
export type LinearArgs = [
  NativeTensorData, NativeTensorData, NativeTensorData, NativeTensorData, NativeTensorData | null, NativeTensorData | null,
  NativeTensorData | null, NativeTensorData | null, NativeTensorData | null, Float32Array | null, Float64Array, Int32Array | null, number,
];

/** Where linear attention's argument list keeps the last data argument, the abort flag and the resizable index. */
export const enum LinearArg { LastData = 9, AbortFlag = 11, Resizable = 12 }

/** q, out, kPool, vPool (typed arrays, or device handles for a device cache), pageTable [B, width],
 *  lengths [B] (the host mirror), alibiSlopes, sinkLogits, lse [B, Hq, Sq] and scores [pages, Hkv,
 *  P] (each a Float32Array or device handle) or null, descriptor, abortFlag, index of the first
 *  argument over a resizable ArrayBuffer (-1: none; async only), then a device cache's copies of
 *  pageTable and lengths (null for a CPU cache). */
export type DecodeArgs = [
  NativeTensorData, NativeTensorData, NativeTensorData, NativeTensorData, Int32Array, Int32Array, Float32Array | null,
  Float32Array | null, Float32Array | DeviceHandle | null, Float32Array | DeviceHandle | null, Float64Array, Int32Array | null,
  number, DeviceHandle | null, DeviceHandle | null,
];

/** Where decode's argument list keeps the last data argument, the abort flag and the resizable index. */
export const enum DecodeArg { LastData = 9, AbortFlag = 11, Resizable = 12 }

const packageRoot = path.join(__dirname, '..', '..');
// eslint-disable-next-line @typescript-eslint/no-var-requires
const version: string = require('../../package.json').version;

/** ATTNKIT_ADDON: the full path of an attnkit.node to load instead (a sanitizer or debug build). */
function addonOverride(): string | undefined {
  return process.env.ATTNKIT_ADDON || undefined;
}

function load(): NativeBinding {
  const override = addonOverride();
  try {
    // node-gyp-build: a local build (build/Release) first, then prebuilds/<platform>-<arch>/.
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const b = (override ? require(path.resolve(override)) : require('node-gyp-build')(packageRoot)) as NativeBinding;
    b.init(AttnError);
    const cuda = findCudaPackage(packageRoot, version);
    b.cudaSetPackageLibrary(cuda.libraryPath ?? '', cuda.note);
    return b;
  } catch (e) {
    const where = `${process.platform}-${process.arch}`;
    throw new AttnError('ERR_ATTN_NATIVE_LOAD',
      `attnkit could not load its native addon for ${where} (Node ${process.version}, N-API 8).\n` +
      (override ? `Tried: ${path.resolve(override)} (ATTNKIT_ADDON; unset it to load the package's own addon).\n`
        : `Tried: ${path.join(packageRoot, 'build', 'Release')} and ${path.join(packageRoot, 'prebuilds', where)}.\n`) +
      `Cause: ${e instanceof Error ? e.message : String(e)}\n` +
      `Fix: build it from source with \`npm rebuild attnkit\` (needs python3, make and a C++17 compiler), ` +
      `or install a version that ships a prebuilt binary for ${where}.`, { cause: e });
  }
}

/** The addon file node-gyp-build picks (a local build first, then prebuilds/), or why none. */
export function addonPath(): { path?: string; error?: string } {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const override = addonOverride();
    return { path: override ? path.resolve(override) : require('node-gyp-build').resolve(packageRoot) as string };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}

let cached: NativeBinding | undefined;
/** The addon, loaded on first use so that importing attnkit never throws. */
export function native(): NativeBinding {
  return (cached ??= load());
}
