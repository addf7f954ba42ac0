import { AttnError, asAttnError } from '../errors';
import { Tensor, kNative } from '../tensor';
import { native } from '../native/binding';
import { TENSOR_RECORD, writeTensorRecord } from '../native/descriptor';
import { BlockMask } from '../sparse/block-mask';
import { TopkBlockOptions, topkArgs, topkSelect } from '../sparse/topk';
import { AttentionOptions, AttentionWithLse, callAsync, callSync } from './attention';
import { sameDevice, tensorArg } from './args';

/** topkBlockAttention's options: MoBA's gating, and the score / output options of attention. */
export interface TopkBlockAttentionOptions extends TopkBlockOptions,
  Pick<AttentionOptions, 'scale' | 'softcap' | 'out' | 'returnLse' | 'signal'> {
  /** Also return the selected key blocks: int32 [B, Hq, nQB, topk], ascending, -1 padded. */
  returnIndices?: boolean;
}

/** What topkBlockAttention returns with returnLse or returnIndices. */
export interface TopkBlockResult { out: Tensor; lse?: Tensor; indices?: Tensor }

interface Planned { mask: BlockMask; indices: Tensor; opts: AttentionOptions; returnIndices: boolean }

// The gating where q lives: in float64 JS on the CPU (lib/sparse/topk.ts), or by the library's
// kernel on a device (the same float64 arithmetic: native/cuda/sparse/topk_select.cu), which writes
// the block states and indices in device memory; then block-sparse attention over them.
function deviceSelection(qt: Tensor, kt: Tensor, bs: number, topk: number, causal: boolean): { states: Tensor; indices: Tensor } {
  const [B, Hq, Sq] = qt.shape, Sk = kt.shape[2];
  const nQB = Math.ceil(Sq / bs), nKB = Math.ceil(Sk / bs);
  const states = Tensor.empty([B, Hq, nQB, nKB], { device: qt.device, dtype: 'uint8' });
  let indices: Tensor | undefined;
  try {
    indices = Tensor.empty([B, Hq, nQB, topk], { device: qt.device, dtype: 'int32' });
    const desc = new Float64Array(4 * TENSOR_RECORD + 3);
    [qt, kt, states, indices].forEach((t, slot) => writeTensorRecord(desc, slot, t, ['q', 'k', 'states', 'indices'][slot]));
    desc.set([bs, topk, causal ? 1 : 0], 4 * TENSOR_RECORD);
    native().topkSelect(qt[kNative](), kt[kNative](), states[kNative](), indices[kNative](), desc);
    return { states, indices };
  } catch (e) {
    states.dispose();
    indices?.dispose();
    throw e;
  }
}

function plan(q: unknown, k: unknown, o: TopkBlockAttentionOptions): Planned {
  const qt = tensorArg('q', q), kt = tensorArg('k', k);
  const { bs, topk, causal } = topkArgs('topkBlockAttention', qt, kt, o);
  sameDevice('k', kt, 'q', qt);
  const [B, Hq, Sq] = qt.shape, Sk = kt.shape[2];
  const { scale, softcap, out, returnLse, signal } = o;
  const opts = { scale, softcap, out, returnLse, signal, causal };
  if (qt.device !== 'cpu') {
    const { states, indices } = deviceSelection(qt, kt, bs, topk, causal);
    if (!o.returnIndices) indices.dispose();
    return { mask: BlockMask.fromKernelStates(states, bs, Sq, Sk), indices, opts, returnIndices: !!o.returnIndices };
  }
  const sel = topkSelect(qt, kt, bs, topk, causal);
  const mask = BlockMask.fromDense(Tensor.from(sel.states, [B, Hq, sel.nQB, sel.nKB]), { blockSize: bs, seqLenQ: Sq, seqLenK: Sk });
  return { mask, indices: Tensor.from(sel.indices, [B, Hq, sel.nQB, topk]), opts, returnIndices: !!o.returnIndices };
}

function result(p: Planned, r: Tensor | AttentionWithLse): Tensor | TopkBlockResult {
  if (p.mask.device !== 'cpu') p.mask.dispose();
  if (!p.returnIndices) return r;
  return r instanceof Tensor ? { out: r, indices: p.indices } : { ...r, indices: p.indices };
}

/**
 * MoBA top-k block attention: each query block scores every key block by mean(Q_qb) . mean(K_kb),
 * keeps its topk (under causal only past blocks compete, and its own block is always kept, with
 * causal masking inside it), then attends exactly over the selected blocks (blockSparseAttention).
 */
export function topkBlockAttentionSync(q: Tensor, k: Tensor, v: Tensor, opts: TopkBlockAttentionOptions): Tensor | TopkBlockResult {
  try {
    const p = plan(q, k, opts);
    try {
      return result(p, callSync(q, k, v, p.opts, p.mask, 'topkBlockAttention'));
    } catch (e) {
      if (p.mask.device !== 'cpu') p.mask.dispose();
      throw e;
    }
  } catch (e) {
    throw asAttnError(e);
  }
}

/** topkBlockAttentionSync with the attention off the JS thread. Bad input rejects; never throws. */
export async function topkBlockAttention(q: Tensor, k: Tensor, v: Tensor, opts: TopkBlockAttentionOptions): Promise<Tensor | TopkBlockResult> {
  const p = plan(q, k, opts);
  try {
    return result(p, await callAsync(q, k, v, p.opts, p.mask, 'topkBlockAttention'));
  } catch (e) {
    if (p.mask.device !== 'cpu') p.mask.dispose();
    throw e instanceof AttnError ? e : asAttnError(e);
  }
}
