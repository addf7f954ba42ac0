import { AttnError, asAttnError } from '../errors';
import { Tensor } from '../tensor';
import { BlockMask } from '../sparse/block-mask';
import { NeighborhoodOptions, NeighborhoodRule, neighborhoodRule } from '../sparse/neighborhood';
import { AttentionOptions, AttentionWithLse, callAsync, callSync } from './attention';
import { tensorArg } from './args';

/** neighborhoodAttention's options: the NATTEN rule, and the score / output options of attention. */
export interface NeighborhoodAttentionOptions extends NeighborhoodOptions,
  Pick<AttentionOptions, 'scale' | 'softcap' | 'out' | 'returnLse' | 'signal'> {}

// Block sizes the kernels take their fast path with: the CPU kernel's 64 x 64 tiles, the GPU
// kernels' 128 x 128 (a bitmap row is then one 16-byte load per row and tile).
function blockSizeFor(device: string): [number, number] {
  return device === 'cpu' ? [64, 64] : [128, 128];
}

// Built masks, per rule, block size and device: building one costs a bit per neighbor pair
// (milliseconds at 16k tokens), so a model calling every layer with one shape builds it once, as
// FlexAttention users keep their BlockMask. Least recently used first out, its memory freed at
// once (a call still running holds its device memory until it settles).
const kCacheSize = 8;
const cache = new Map<string, BlockMask>();

function cacheKey(rule: NeighborhoodRule, device: string): string {
  return `${device}|${rule.spatial}|${rule.kernel}|${rule.dilation}|${rule.causal}`;
}

function cached(key: string): BlockMask | undefined {
  const m = cache.get(key);
  if (m) { cache.delete(key); cache.set(key, m); }
  return m;
}

function remember(key: string, m: BlockMask): BlockMask {
  cache.set(key, m);
  if (cache.size > kCacheSize) {
    const oldest = cache.keys().next().value as string;
    cache.get(oldest)!.dispose();
    cache.delete(oldest);
  }
  return m;
}

/**
 * Drops the masks neighborhoodAttention keeps per shape and device, freeing their device memory
 * now (a call still running keeps its own until it settles).
 */
export function clearNeighborhoodCache(): void {
  for (const m of cache.values()) m.dispose();
  cache.clear();
}

interface Prepared { rule: NeighborhoodRule; key: string; device: string; opts: AttentionOptions }

function prepare(q: unknown, k: unknown, opts: NeighborhoodAttentionOptions): Prepared {
  if (typeof opts !== 'object' || opts === null) throw new AttnError('ERR_ATTN_ARGUMENT', 'neighborhoodAttention: options with spatial and kernelSize are required');
  const qt = tensorArg('q', q), kt = tensorArg('k', k);
  const rule = neighborhoodRule('neighborhoodAttention', opts);
  for (const [name, t] of [['q', qt], ['k', kt]] as const) {
    if (t.rank === 4 && t.shape[2] !== rule.tokens) {
      throw new AttnError('ERR_ATTN_SHAPE', `neighborhoodAttention: ${name} has ${t.shape[2]} tokens (dim 2), but spatial [${rule.spatial.join(', ')}] holds ${rule.tokens}; the product of spatial must equal N`);
    }
  }
  const { scale, softcap, out, returnLse, signal } = opts;
  return { rule, key: cacheKey(rule, qt.device), device: qt.device, opts: { scale, softcap, out, returnLse, signal } };
}

function hostMask(p: Prepared): BlockMask {
  const [bq, bk] = blockSizeFor(p.device);
  const r = p.rule;
  return BlockMask.neighborhood({ spatial: r.spatial, kernelSize: r.kernel, dilation: r.dilation, causal: r.causal, blockSize: [bq, bk] });
}

/**
 * Neighborhood attention (NATTEN) over q, k, v [B, H, N, D] whose N tokens are the row-major
 * flattening of `spatial` (1 to 3 dims): each token attends the kernelSize window around it per dim
 * (shifted inward at the borders, so every token sees exactly the kernel's volume of keys; with
 * dilation, only tokens congruent to it mod dilation; with causal, the window ends at the token).
 * Runs as block-sparse attention over BlockMask.neighborhood (cached per shape and device).
 */
export function neighborhoodAttentionSync(q: Tensor, k: Tensor, v: Tensor, opts: NeighborhoodAttentionOptions & { returnLse: true }): AttentionWithLse;
export function neighborhoodAttentionSync(q: Tensor, k: Tensor, v: Tensor, opts: NeighborhoodAttentionOptions): Tensor;
export function neighborhoodAttentionSync(q: Tensor, k: Tensor, v: Tensor, opts: NeighborhoodAttentionOptions): Tensor | AttentionWithLse {
  try {
    const p = prepare(q, k, opts);
    const mask = cached(p.key) ?? remember(p.key, hostMask(p).toSync(p.device));
    return callSync(q, k, v, p.opts, mask, 'neighborhoodAttention');
  } catch (e) {
    throw asAttnError(e);
  }
}

/** neighborhoodAttentionSync off the JS thread. Bad input rejects; never throws. */
export function neighborhoodAttention(q: Tensor, k: Tensor, v: Tensor, opts: NeighborhoodAttentionOptions & { returnLse: true }): Promise<AttentionWithLse>;
export function neighborhoodAttention(q: Tensor, k: Tensor, v: Tensor, opts: NeighborhoodAttentionOptions): Promise<Tensor>;
export async function neighborhoodAttention(q: Tensor, k: Tensor, v: Tensor, opts: NeighborhoodAttentionOptions): Promise<Tensor | AttentionWithLse> {
  const p = prepare(q, k, opts);
  const mask = cached(p.key) ?? remember(p.key, await hostMask(p).to(p.device));
  return callAsync(q, k, v, p.opts, mask, 'neighborhoodAttention');
}
