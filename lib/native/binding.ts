import * as path from 'path';
import { AttnError } from '../errors';
import { TypedArray } from '../dtype';

/** The native addon's surface (native/napi/). Arguments are pre-marshalled by lib/ops. */
export interface NativeBinding {
  init(errorClass: typeof AttnError): void;
  cpuInfo(): { isa: string; bestIsa: string; threads: number };
  setNumThreads(n: number): void;
  setIsa(isa: string): string;
  fmaPeakGflops(millis: number): number;
  attentionSync(...args: AttentionArgs): void;
  attentionAsync(...args: AttentionArgs): Promise<void>;
  mergeStates(outs: TypedArray[], lses: TypedArray[], out: TypedArray, lse: TypedArray, desc: Float64Array): void;
}

/** q, k, v, out, bias, mask, alibiSlopes, sinkLogits, cuSeqlensQ, cuSeqlensK, lse, descriptor,
 *  abortFlag, index of the first argument over a resizable ArrayBuffer (-1: none; async only) */
export type AttentionArgs = [
  TypedArray, TypedArray, TypedArray, TypedArray, TypedArray | null, TypedArray | null,
  Float32Array | null, Float32Array | null, Int32Array | null, Int32Array | null, Float32Array | null,
  Float64Array, Int32Array | null, number,
];

const packageRoot = path.join(__dirname, '..', '..');

function load(): NativeBinding {
  try {
    // node-gyp-build: a local build (build/Release) first, then prebuilds/<platform>-<arch>/.
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const b = require('node-gyp-build')(packageRoot) as NativeBinding;
    b.init(AttnError);
    return b;
  } catch (e) {
    const where = `${process.platform}-${process.arch}`;
    throw new AttnError('ERR_ATTN_NATIVE_LOAD',
      `attnkit could not load its native addon for ${where} (Node ${process.version}, N-API 8).\n` +
      `Tried: ${path.join(packageRoot, 'build', 'Release')} and ${path.join(packageRoot, 'prebuilds', where)}.\n` +
      `Cause: ${e instanceof Error ? e.message : String(e)}\n` +
      `Fix: build it from source with \`npm rebuild attnkit\` (needs python3, make and a C++17 compiler), ` +
      `or install a version that ships a prebuilt binary for ${where}.`, { cause: e });
  }
}

let cached: NativeBinding | undefined;
/** The addon, loaded on first use so that importing attnkit never throws. */
export function native(): NativeBinding {
  return (cached ??= load());
}
