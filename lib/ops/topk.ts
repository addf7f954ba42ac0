import { AttnError, asAttnError } from '../errors';
import { Tensor } from '../tensor';
import { BlockMask } from '../sparse/block-mask';
import { TopkBlockOptions, topkArgs, topkSelect } from '../sparse/topk';
import { AttentionOptions, AttentionWithLse, callAsync, callSync } from './attention';
import { tensorArg } from './args';

/** topkBlockAttention's options: MoBA's gating, and the score / output options of attention. */
export interface TopkBlockAttentionOptions extends TopkBlockOptions,
  Pick<AttentionOptions, 'scale' | 'softcap' | 'out' | 'returnLse' | 'signal'> {
  /** Also return the selected key blocks: int32 [B, Hq, nQB, topk], ascending, -1 padded. */
  returnIndices?: boolean;
}

/** What topkBlockAttention returns with returnLse or returnIndices. */
export interface TopkBlockResult { out: Tensor; lse?: Tensor; indices?: Tensor }

interface Planned { mask: BlockMask; indices: Tensor; opts: AttentionOptions; returnIndices: boolean }

// Gating on the host (float64), then block-sparse attention where q lives. For device tensors the
// gating reads q and k back to the host: correct, but a device gating kernel is still to come.
function plan(q: unknown, k: unknown, o: TopkBlockAttentionOptions): Planned {
  const qt = tensorArg('q', q), kt = tensorArg('k', k);
  const { bs, topk, causal } = topkArgs('topkBlockAttention', qt, kt, o);
  const sel = topkSelect(qt, kt, bs, topk, causal);
  const [B, Hq, Sq] = qt.shape, Sk = kt.shape[2];
  let mask = BlockMask.fromDense(Tensor.from(sel.states, [B, Hq, sel.nQB, sel.nKB]), { blockSize: bs, seqLenQ: Sq, seqLenK: Sk });
  let indices = Tensor.from(sel.indices, [B, Hq, sel.nQB, topk]);
  if (qt.device !== 'cpu') {
    mask = mask.toSync(qt.device);
    if (o.returnIndices) indices = indices.toSync(qt.device);
  }
  const { scale, softcap, out, returnLse, signal } = o;
  return { mask, indices, opts: { scale, softcap, out, returnLse, signal, causal }, returnIndices: !!o.returnIndices };
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
