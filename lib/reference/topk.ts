// The oracle for top-k block attention: the shared gating (lib/sparse/topk.ts) picks the blocks,
// then the float64 block-sparse oracle attends over them.
import { Tensor } from '../tensor';
import { BlockMask } from '../sparse/block-mask';
import { TopkBlockOptions, topkArgs, topkSelect } from '../sparse/topk';
import { ReferenceResult } from './attention';
import { blockSparseAttentionReference } from './sparse';

/** Exact MoBA attention in float64, with the selected blocks ([B, Hq, nQB, topk], -1 padded). */
export function topkBlockAttentionReference(q: Tensor, k: Tensor, v: Tensor,
                                            opts: TopkBlockOptions & { scale?: number; softcap?: number }): ReferenceResult & { indices: Int32Array } {
  const { bs, topk, causal } = topkArgs('topkBlockAttentionReference', q, k, opts);
  const sel = topkSelect(q, k, bs, topk, causal);
  const [B, Hq, Sq] = q.shape;
  const mask = BlockMask.fromDense(Tensor.from(sel.states, [B, Hq, sel.nQB, sel.nKB]), { blockSize: bs, seqLenQ: Sq, seqLenK: k.shape[2] });
  const ref = blockSparseAttentionReference(q, k, v, mask, { causal, scale: opts.scale, softcap: opts.softcap });
  return { ...ref, indices: sel.indices };
}
