import { AttnError } from '../errors';
import { Tensor } from '../tensor';
import { AttentionOptions, AttentionWithLse, BlockSparsity, callAsync, callSync } from './attention';

/** What blockSparseAttention needs of a BlockMask (lib/sparse/block-mask.ts builds them). */
export interface BlockMaskLike extends BlockSparsity { seqLenQ: number; seqLenK: number }

// A mask built for other lengths would index the wrong blocks: refuse it by name. Everything else
// (dtype, broadcast of the block grid, device) is checked natively with the rest of the call.
function sparsityArg(blockMask: unknown, q: unknown, k: unknown): BlockMaskLike {
  const m = blockMask as BlockMaskLike | null | undefined;
  if (!m || typeof m !== 'object' || !(m.blocks instanceof Tensor) || !Array.isArray(m.blockSize)) {
    throw new AttnError('ERR_ATTN_ARGUMENT', 'blockMask must be a BlockMask (BlockMask.fromDense, .fromFunction or a builder)');
  }
  const sq = q instanceof Tensor && q.rank === 4 ? q.shape[2] : m.seqLenQ;
  const sk = k instanceof Tensor && k.rank === 4 ? k.shape[2] : m.seqLenK;
  if (m.seqLenQ !== sq || m.seqLenK !== sk) {
    throw new AttnError('ERR_ATTN_SHAPE', `blockMask was built for seqLenQ ${m.seqLenQ} and seqLenK ${m.seqLenK}, but q has ${sq} rows and k ${sk} keys`);
  }
  return m;
}

/**
 * Attention over the blocks a BlockMask selects (FlexAttention's block-sparse attention): skipped
 * blocks cost nothing, full blocks skip the element-level masks, partial blocks apply every option.
 * Every attention option applies as in attentionSync.
 */
export function blockSparseAttentionSync(q: Tensor, k: Tensor, v: Tensor, blockMask: BlockMaskLike, opts: AttentionOptions & { returnLse: true }): AttentionWithLse;
export function blockSparseAttentionSync(q: Tensor, k: Tensor, v: Tensor, blockMask: BlockMaskLike, opts?: AttentionOptions): Tensor;
export function blockSparseAttentionSync(q: Tensor, k: Tensor, v: Tensor, blockMask: BlockMaskLike, opts?: AttentionOptions): Tensor | AttentionWithLse {
  return callSync(q, k, v, opts, sparsityArg(blockMask, q, k), 'blockSparseAttention');
}

/** blockSparseAttentionSync off the JS thread. Bad input rejects; never throws. */
export function blockSparseAttention(q: Tensor, k: Tensor, v: Tensor, blockMask: BlockMaskLike, opts: AttentionOptions & { returnLse: true }): Promise<AttentionWithLse>;
export function blockSparseAttention(q: Tensor, k: Tensor, v: Tensor, blockMask: BlockMaskLike, opts?: AttentionOptions): Promise<Tensor>;
export function blockSparseAttention(q: Tensor, k: Tensor, v: Tensor, blockMask: BlockMaskLike, opts?: AttentionOptions): Promise<Tensor | AttentionWithLse> {
  let sparsity: BlockMaskLike;
  try {
    sparsity = sparsityArg(blockMask, q, k);
  } catch (e) {
    return Promise.reject(e);
  }
  return callAsync(q, k, v, opts, sparsity, 'blockSparseAttention');
}
