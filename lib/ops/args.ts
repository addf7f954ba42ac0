import { AttnError } from '../errors';
import { Tensor } from '../tensor';

// Type checks of JS arguments. Ranges, shapes and bounds are checked natively (native/core/validate.cpp),
// the one place that decides what memory may be touched.

export function tensorArg(name: string, t: unknown): Tensor {
  if (!(t instanceof Tensor)) throw new AttnError('ERR_ATTN_ARGUMENT', `${name} must be a Tensor, got ${describe(t)}`);
  if (t.disposed) throw new AttnError('ERR_ATTN_DISPOSED', `${name} was disposed`);
  return t;
}

/** An op runs where its inputs live: every tensor on `ref`'s device, never a silent copy. */
export function sameDevice(name: string, t: Tensor, refName: string, ref: Tensor): void {
  if (t.device !== ref.device) {
    throw new AttnError('ERR_ATTN_DEVICE', `${name} is on ${t.device} but ${refName} is on ${ref.device}; all tensors of one call must be on one device (move it with .to('${ref.device}'))`);
  }
}

/** Disposes the device tensors a failed call allocated for its outputs. */
export function disposeAll(ts: Tensor[]): void {
  for (const t of ts) t.dispose();
}

export function optionalTensorArg(name: string, t: unknown): Tensor | undefined {
  return t === undefined || t === null ? undefined : tensorArg(name, t);
}

export function numberArg(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number') throw new AttnError('ERR_ATTN_ARGUMENT', `${name} must be a number, got ${describe(v)}`);
  return v;
}

export function float32ArrayArg(name: string, v: unknown): Float32Array | null {
  if (v === undefined || v === null) return null;
  if (v instanceof Float32Array) return v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'number')) return Float32Array.from(v);
  throw new AttnError('ERR_ATTN_ARGUMENT', `${name} must be a Float32Array, got ${describe(v)}`);
}

export function int32ArrayArg(name: string, v: unknown): Int32Array | null {
  if (v === undefined || v === null) return null;
  if (v instanceof Int32Array) return v;
  if (Array.isArray(v) && v.every((x) => Number.isInteger(x))) return Int32Array.from(v);
  throw new AttnError('ERR_ATTN_ARGUMENT', `${name} must be an Int32Array, got ${describe(v)}`);
}

export function signalArg(v: unknown): AbortSignal | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || typeof (v as AbortSignal).aborted !== 'boolean' || typeof (v as AbortSignal).addEventListener !== 'function') {
    throw new AttnError('ERR_ATTN_ARGUMENT', `signal must be an AbortSignal, got ${describe(v)}`);
  }
  return v as AbortSignal;
}

/**
 * A resizable ArrayBuffer could shrink under the kernel while an async call runs: native rejects
 * the argument whose index this returns, the first of args[0..last] over one, or -1 (the sync form
 * is safe: no JavaScript runs during the call). Transferring a buffer away while an async call
 * uses it is caller misuse, as with fs.read: see README.
 */
function firstResizable(args: readonly unknown[], last: number): number {
  for (let i = 0; i <= last; i++) {
    const a = args[i];
    if (ArrayBuffer.isView(a) && (a.buffer as ArrayBuffer & { resizable?: boolean }).resizable === true) return i;
  }
  return -1;
}

/**
 * The flag an async call's native side polls (null without a signal): raised when `signal` aborts.
 * release() unhooks the listener once the call has settled.
 */
function abortFlag(signal: AbortSignal | undefined): { flag: Int32Array | null; release: () => void } {
  if (!signal) return { flag: null, release: () => {} };
  const flag = new Int32Array(1);
  const onAbort = () => { Atomics.store(flag, 0, 1); };
  signal.addEventListener('abort', onAbort, { once: true });
  return { flag, release: () => signal.removeEventListener('abort', onAbort) };
}

export function abortedError(op: string): AttnError {
  return new AttnError('ERR_ATTN_ABORTED', `${op} was aborted by its AbortSignal`);
}

/** Where an op's native argument list keeps its last data argument, its abort flag and its resizable index. */
export interface AsyncSlots { lastData: number; abortFlag: number; resizable: number }

/**
 * What every op's async form does around its native call: marks the first argument over a
 * resizable buffer, refuses a signal that has already aborted, hooks up the abort flag the native
 * side polls, starts the call (invoke, on the args as now filled in) and unhooks the flag once it
 * settles. What it refuses it throws, before anything starts.
 */
export function startNativeAsync(args: unknown[], slots: AsyncSlots, signal: AbortSignal | undefined, op: string,
                                 invoke: () => Promise<void>): Promise<void> {
  args[slots.resizable] = firstResizable(args, slots.lastData);
  if (signal?.aborted) throw abortedError(op);
  const watch = abortFlag(signal);
  args[slots.abortFlag] = watch.flag;
  let pending: Promise<void>;
  try {
    pending = invoke();
  } catch (e) {
    watch.release();
    throw e;
  }
  return pending.finally(watch.release);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}
