import { AttnError, asAttnError } from '../errors';
import { Tensor, kNative } from '../tensor';
import { native, AttentionArg, AttentionArgs } from '../native/binding';
import {
  ATTENTION_DESCRIPTOR_LENGTH, ATTENTION_OPTIONS, AttentionOption, AttentionSlot, writeTensorRecord,
} from '../native/descriptor';
import {
  abortedError, disposeAll, float32ArrayArg, startNativeAsync, int32ArrayArg, numberArg, optionalTensorArg, sameDevice, signalArg,
  tensorArg,
} from './args';

export interface AttentionOptions {
  /** Default 1/sqrt(D). */
  scale?: number;
  /** Bottom-right aligned: query i sees key j iff j <= i + (Sk - Sq). */
  causal?: boolean;
  /** Key j visible iff a-left <= j <= a+right with a = i + Sk - Sq; -1 = unbounded on that side. */
  window?: [left: number, right: number];
  /** Keys j < sinks are exempt from the window (StreamingLLM), not from causal. */
  sinks?: number;
  /** s = softcap * tanh(s / softcap) on the scaled score; 0 = off. */
  softcap?: number;
  /** [Hq]: s -= slope[h] * |a - j| (after softcap). */
  alibiSlopes?: Float32Array;
  /** Additive float score bias broadcastable to [B, Hq, Sq, Sk] (after softcap). */
  bias?: Tensor;
  /** uint8 broadcastable to [B, Hq, Sq, Sk]; 0 = masked out. */
  mask?: Tensor;
  /** [Hq]: adds exp(sink[h]) to the softmax denominator only. */
  sinkLogits?: Float32Array;
  /** Packed variable-length batch (B = 1): segment b is query rows [cuQ[b], cuQ[b+1]). */
  cuSeqlensQ?: Int32Array;
  /** Segment b attends keys [cuK[b], cuK[b+1]); causal and window align per segment. */
  cuSeqlensK?: Int32Array;
  /** Written in place (any strides, any float dtype) and returned. Default: a new tensor of q's dtype on q's device. */
  out?: Tensor;
  /** Also return lse [B, Hq, Sq] float32 (a new tensor on q's device): natural log of the softmax denominator. */
  returnLse?: boolean;
  /** Aborts a call that has not started. A running GPU call is not interrupted; a CPU call stops at its next tile. */
  signal?: AbortSignal;
}

export interface AttentionWithLse { out: Tensor; lse: Tensor }

// One descriptor reused by every call: native reads it synchronously, before the call returns.
const descriptor = new Float64Array(ATTENTION_DESCRIPTOR_LENGTH);
const EMPTY = new Float32Array(0);

interface Marshalled { args: AttentionArgs; out: Tensor; lse: Tensor | undefined; signal: AbortSignal | undefined }

/**
 * What the kernels read of a BlockMask (lib/sparse/block-mask.ts): its block states and block size,
 * and optionally element bitmaps for its partial blocks (BlockMask.elements).
 */
export interface BlockSparsity {
  blocks: Tensor;
  blockSize: readonly [number, number];
  elements?: { index: Tensor; bits: Tensor };
}

// Device tensors this call allocated (out, lse): disposed again if the call fails.
function marshal(q_: unknown, k_: unknown, v_: unknown, opts: AttentionOptions | undefined, owned: Tensor[],
                 sparsity: BlockSparsity | undefined, op: string): Marshalled {
  if (opts !== undefined && (typeof opts !== 'object' || opts === null)) {
    throw new AttnError('ERR_ATTN_ARGUMENT', `${op} options must be an object`);
  }
  const o = opts ?? {};
  const q = tensorArg('q', q_), k = tensorArg('k', k_), v = tensorArg('v', v_);
  sameDevice('k', k, 'q', q);
  sameDevice('v', v, 'q', q);
  const bias = optionalTensorArg('bias', o.bias);
  const mask = optionalTensorArg('mask', o.mask);
  const given = optionalTensorArg('out', o.out);
  const blocks = sparsity ? tensorArg('blockMask.blocks', sparsity.blocks) : undefined;
  if (blocks) sameDevice('blockMask', blocks, 'q', q);
  const elements = sparsity?.elements;
  const elementIndex = elements ? tensorArg('blockMask.elementIndex', elements.index) : undefined;
  const elementBits = elements ? tensorArg('blockMask.elementBits', elements.bits) : undefined;
  if (elementIndex) sameDevice('blockMask.elementIndex', elementIndex, 'q', q);
  if (elementBits) sameDevice('blockMask.elementBits', elementBits, 'q', q);
  if (bias) sameDevice('bias', bias, 'q', q);
  if (mask) sameDevice('mask', mask, 'q', q);
  if (given) sameDevice('out', given, 'q', q);
  const device = q.device;
  const onDevice = device !== 'cpu';
  const ranksOk = q.rank === 4 && k.rank === 4 && v.rank === 4;
  const [B, Hq, Sq] = ranksOk ? q.shape : [0, 0, 0];
  const own = (t: Tensor): Tensor => { if (onDevice) owned.push(t); return t; };
  // With bad ranks the native side reports the error on q/k/v before it looks at out.
  const out = given ?? (ranksOk ? own(Tensor.empty([B, Hq, Sq, v.shape[3]], { dtype: q.dtype, device }))
    : onDevice ? own(Tensor.empty([0], { device })) : Tensor.from(EMPTY, [0]));
  const lse = o.returnLse ? own(Tensor.empty([B, Hq, Sq], { dtype: 'float32', device })) : undefined;

  const d = descriptor;
  writeTensorRecord(d, AttentionSlot.Q, q, 'q');
  writeTensorRecord(d, AttentionSlot.K, k, 'k');
  writeTensorRecord(d, AttentionSlot.V, v, 'v');
  writeTensorRecord(d, AttentionSlot.Out, out, 'out');
  if (bias) writeTensorRecord(d, AttentionSlot.Bias, bias, 'bias');
  if (mask) writeTensorRecord(d, AttentionSlot.Mask, mask, 'mask');
  if (blocks) writeTensorRecord(d, AttentionSlot.BlockMask, blocks, 'blockMask');
  if (elementIndex) writeTensorRecord(d, AttentionSlot.ElementIndex, elementIndex, 'blockMask.elementIndex');
  if (elementBits) writeTensorRecord(d, AttentionSlot.ElementBits, elementBits, 'blockMask.elementBits');
  const opt = ATTENTION_OPTIONS;
  d[opt + AttentionOption.HasScale] = o.scale === undefined ? 0 : 1;
  d[opt + AttentionOption.Scale] = numberArg('scale', o.scale, 0);
  d[opt + AttentionOption.Causal] = o.causal ? 1 : 0;
  if (o.window !== undefined) {
    const w = o.window;
    if (!Array.isArray(w) || w.length !== 2 || typeof w[0] !== 'number' || typeof w[1] !== 'number') {
      throw new AttnError('ERR_ATTN_ARGUMENT', `window must be [left, right] (numbers, -1 = unbounded), got ${JSON.stringify(w)}`);
    }
    d[opt + AttentionOption.HasWindow] = 1;
    d[opt + AttentionOption.WindowLeft] = w[0];
    d[opt + AttentionOption.WindowRight] = w[1];
  } else {
    d[opt + AttentionOption.HasWindow] = 0;
  }
  d[opt + AttentionOption.Sinks] = numberArg('sinks', o.sinks, 0);
  d[opt + AttentionOption.Softcap] = numberArg('softcap', o.softcap, 0);
  d[opt + AttentionOption.HasBias] = bias ? 1 : 0;
  d[opt + AttentionOption.HasMask] = mask ? 1 : 0;
  d[opt + AttentionOption.HasBlockMask] = blocks ? 1 : 0;
  d[opt + AttentionOption.BlockQ] = sparsity ? sparsity.blockSize[0] : 0;
  d[opt + AttentionOption.BlockK] = sparsity ? sparsity.blockSize[1] : 0;
  d[opt + AttentionOption.HasElementMask] = elementIndex ? 1 : 0;

  // alibiSlopes, sinkLogits and cuSeqlens stay host arrays for device calls too (the CUDA library copies them).
  const args: AttentionArgs = [
    q[kNative](), k[kNative](), v[kNative](), out[kNative](), bias ? bias[kNative]() : null, mask ? mask[kNative]() : null,
    blocks ? blocks[kNative]() : null, elementIndex ? elementIndex[kNative]() : null, elementBits ? elementBits[kNative]() : null,
    float32ArrayArg('alibiSlopes', o.alibiSlopes), float32ArrayArg('sinkLogits', o.sinkLogits),
    int32ArrayArg('cuSeqlensQ', o.cuSeqlensQ), int32ArrayArg('cuSeqlensK', o.cuSeqlensK),
    lse ? (lse[kNative]() as Float32Array) : null, d, null, -1,
  ];
  return { args, out, lse, signal: signalArg(o.signal) };
}

function result(m: Marshalled): Tensor | AttentionWithLse {
  return m.lse ? { out: m.out, lse: m.lse } : m.out;
}

/** Exact fused attention, on the calling thread. */
export function attentionSync(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions & { returnLse: true }): AttentionWithLse;
export function attentionSync(q: Tensor, k: Tensor, v: Tensor, opts?: AttentionOptions): Tensor;
export function attentionSync(q: Tensor, k: Tensor, v: Tensor, opts?: AttentionOptions): Tensor | AttentionWithLse {
  return callSync(q, k, v, opts, undefined, 'attention');
}

/** The one synchronous call path of attention and blockSparseAttention (attention with a block mask). */
export function callSync(q: unknown, k: unknown, v: unknown, opts: AttentionOptions | undefined,
                         sparsity: BlockSparsity | undefined, op: string): Tensor | AttentionWithLse {
  const owned: Tensor[] = [];
  try {
    const m = marshal(q, k, v, opts, owned, sparsity, op);
    if (m.signal?.aborted) throw abortedError(op);
    native().attentionSync(...m.args);
    return result(m);
  } catch (e) {
    disposeAll(owned);
    throw asAttnError(e);
  }
}

/**
 * Exact fused attention off the JS thread (attnkit's pool, or the GPU for device tensors: the
 * promise settles when the GPU is done). Bad input rejects; never throws.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions & { returnLse: true }): Promise<AttentionWithLse>;
export function attention(q: Tensor, k: Tensor, v: Tensor, opts?: AttentionOptions): Promise<Tensor>;
export function attention(q: Tensor, k: Tensor, v: Tensor, opts?: AttentionOptions): Promise<Tensor | AttentionWithLse> {
  return callAsync(q, k, v, opts, undefined, 'attention');
}

/** The one asynchronous call path of attention and blockSparseAttention. */
export function callAsync(q: unknown, k: unknown, v: unknown, opts: AttentionOptions | undefined,
                          sparsity: BlockSparsity | undefined, op: string): Promise<Tensor | AttentionWithLse> {
  const owned: Tensor[] = [];
  try {
    const m = marshal(q, k, v, opts, owned, sparsity, op);
    // The CPU kernels poll the abort flag between tiles; a device call reads it once, before it starts.
    const slots = { lastData: AttentionArg.LastData, abortFlag: AttentionArg.AbortFlag, resizable: AttentionArg.Resizable };
    return startNativeAsync(m.args, slots, m.signal, op, () => native().attentionAsync(...m.args))
      .then(() => result(m), (e: unknown) => { disposeAll(owned); throw asAttnError(e); });
  } catch (e) {
    disposeAll(owned);
    return Promise.reject(asAttnError(e));
  }
}
