// The oracle for block-sparse attention: attentionReference with each pair's block state as its
// override, so the full / partial / skip semantics of BlockMask are written down once, here.
import { AttnError } from '../errors';
import { Tensor } from '../tensor';
import type { AttentionOptions } from '../ops/attention';
import { BlockMask } from '../sparse/block-mask';
import { attentionReference, ReferenceResult } from './attention';

/**
 * Exact block-sparse attention in float64: pairs in skipped blocks are hidden, pairs in full blocks
 * visible without causal / window / sinks / mask, pairs in partial blocks follow every option.
 * Varlen segments and score modifiers apply as in attentionReference.
 */
export function blockSparseAttentionReference(q: Tensor, k: Tensor, v: Tensor, blockMask: BlockMask, opts: AttentionOptions = {}): ReferenceResult {
  if (!(blockMask instanceof BlockMask)) throw new AttnError('ERR_ATTN_ARGUMENT', 'blockMask must be a BlockMask');
  if (q.shape.length !== 4 || k.shape.length !== 4) throw new AttnError('ERR_ATTN_SHAPE', 'q and k must have rank 4');
  const [B, Hq, Sq] = q.shape, Sk = k.shape[2];
  if (blockMask.seqLenQ !== Sq || blockMask.seqLenK !== Sk) {
    throw new AttnError('ERR_ATTN_SHAPE', `blockMask was built for seqLenQ ${blockMask.seqLenQ} x seqLenK ${blockMask.seqLenK}, but q and k have ${Sq} x ${Sk}`);
  }
  const [Bm, Hm, nQB, nKB] = blockMask.blocks.shape;
  if ((Bm !== 1 && Bm !== B) || (Hm !== 1 && Hm !== Hq)) {
    throw new AttnError('ERR_ATTN_SHAPE', `blockMask.blocks [${Bm}, ${Hm}, ${nQB}, ${nKB}] does not broadcast to [B, Hq] = [${B}, ${Hq}] (Bm and Hm must be 1 or equal)`);
  }
  const [bq, bk] = blockMask.blockSize;
  const data = blockMask.toDense().data;
  // element bitmaps of partial blocks: a clear bit hides the pair, a set one leaves the options in charge
  const index = blockMask.elements ? blockMask.elements.index.toSync('cpu').contiguous().data as Int32Array : undefined;
  const bits = blockMask.elements ? blockMask.elements.bits.toSync('cpu').contiguous().data as Int32Array : undefined;
  const words = Math.ceil(bk / 32);
  const pairState = (b: number, h: number, i: number, j: number): 0 | 1 | 2 => {
    const plane = (Bm === 1 ? 0 : b) * Hm + (Hm === 1 ? 0 : h);
    const block = (plane * nQB + Math.floor(i / bq)) * nKB + Math.floor(j / bk);
    const state = data[block] as 0 | 1 | 2;
    if (state !== 1 || !index || index[block] < 0) return state;
    const c = j % bk, word = bits![(index[block] * bq + (i % bq)) * words + (c >>> 5)];
    return (word >>> (c & 31)) & 1 ? 1 : 0;
  };
  return attentionReference(q, k, v, opts, pairState);
}
