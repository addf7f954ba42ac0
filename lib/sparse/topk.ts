// MoBA's block gating (Mixture of Block Attention): which key blocks each query block attends.
// Written once and used by both topkBlockAttention and its float64 oracle, so the selection they
// make is the same; the attention over the selection is what the kernels and the oracle compute
// independently. JavaScript numbers are float64, so the gating is exact to float64 rounding.
import { AttnError } from '../errors';
import { Tensor } from '../tensor';

export interface TopkBlockOptions {
  /** Tokens per block, for query and key blocks alike (the last block of each may be shorter). */
  blockSize: number;
  /** Key blocks each query block attends, 1 <= topk <= ceil(seqLenK / blockSize). */
  topk: number;
  /** Only past key blocks compete; a query block's own block is always selected (and counts toward
   *  topk) and attended with causal masking inside it. Needs seqLenQ === seqLenK. */
  causal?: boolean;
}

/** The selection: block states for blockSparseAttention and the chosen blocks per query block. */
export interface TopkSelection {
  /** uint8 [B, Hq, nQB, nKB]: 2 (full) for a selected past / any block, 1 (partial, causal inside)
   *  for the own block under causal, 0 otherwise. */
  states: Uint8Array;
  /** int32 [B, Hq, nQB, topk]: the selected key blocks in ascending order, -1 padded (under causal
   *  an early query block has fewer than topk candidates). */
  indices: Int32Array;
  nQB: number;
  nKB: number;
}

function bad(code: 'ERR_ATTN_ARGUMENT' | 'ERR_ATTN_SHAPE', msg: string): never {
  throw new AttnError(code, msg);
}

/** Checks the options against q [B, Hq, Sq, D] and k [B, Hkv, Sk, D]. */
export function topkArgs(what: string, q: Tensor, k: Tensor, o: TopkBlockOptions): { bs: number; topk: number; causal: boolean } {
  if (typeof o !== 'object' || o === null) bad('ERR_ATTN_ARGUMENT', `${what}: options with blockSize and topk are required`);
  const bs = o.blockSize, topk = o.topk, causal = o.causal ?? false;
  if (typeof bs !== 'number' || !Number.isSafeInteger(bs) || bs < 1) bad('ERR_ATTN_ARGUMENT', `${what}: blockSize must be an integer >= 1, got ${JSON.stringify(bs)}`);
  if (typeof causal !== 'boolean') bad('ERR_ATTN_ARGUMENT', `${what}: causal must be a boolean, got ${JSON.stringify(causal)}`);
  if (q.rank !== 4 || k.rank !== 4) bad('ERR_ATTN_SHAPE', `${what}: q and k must have rank 4 [B, H, S, D], got [${q.shape}] and [${k.shape}]`);
  const [B, Hq, Sq, D] = q.shape, [Bk, Hkv, Sk, Dk] = k.shape;
  if (Bk !== B || Dk !== D || Hkv < 1 || Hq % Hkv !== 0) bad('ERR_ATTN_SHAPE', `${what}: k [${k.shape}] does not fit q [${q.shape}] (same B and D, Hq a multiple of Hkv)`);
  if (causal && Sq !== Sk) bad('ERR_ATTN_SHAPE', `${what}: causal needs seqLenQ === seqLenK (self-attention), got ${Sq} and ${Sk}`);
  const nKB = Math.ceil(Sk / bs);
  if (typeof topk !== 'number' || !Number.isSafeInteger(topk) || topk < 1 || topk > nKB) {
    bad('ERR_ATTN_ARGUMENT', `${what}: topk must be an integer in [1, ${nKB}] (the number of key blocks, ceil(${Sk} / ${bs})), got ${JSON.stringify(topk)}`);
  }
  return { bs, topk, causal };
}

/** Per row-block of x [B, H, S, D] (values in logical order): the mean of its rows, [B, H, nBlocks, D]. */
function blockMeans(x: Float32Array, [B, H, S, D]: readonly number[], bs: number): Float64Array {
  const n = Math.ceil(S / bs);
  const out = new Float64Array(B * H * n * D);
  for (let bh = 0; bh < B * H; bh++) {
    for (let blk = 0; blk < n; blk++) {
      const r0 = blk * bs, r1 = Math.min(S, r0 + bs), o = (bh * n + blk) * D;
      for (let r = r0; r < r1; r++) {
        const row = (bh * S + r) * D;
        for (let d = 0; d < D; d++) out[o + d] += x[row + d];
      }
      for (let d = 0; d < D; d++) out[o + d] /= r1 - r0;
    }
  }
  return out;
}

/**
 * MoBA gating: query block qb scores key block kb by mean(Q_qb) . mean(K_kb) (the sum of q . mean(K_kb)
 * over its queries, up to a positive factor: the same order), per query head against its kv
 * head; it keeps the topk best, ties to the lower block index. Under causal only blocks kb < qb
 * compete for topk - 1 places and qb itself is always kept.
 */
export function topkSelect(q: Tensor, k: Tensor, bs: number, topk: number, causal: boolean): TopkSelection {
  const [B, Hq, Sq, D] = q.shape, [, Hkv, Sk] = k.shape;
  const group = Hq / Hkv, nQB = Math.ceil(Sq / bs), nKB = Math.ceil(Sk / bs);
  const mq = blockMeans(q.toFloat32Array(), q.shape, bs), mk = blockMeans(k.toFloat32Array(), k.shape, bs);
  const states = new Uint8Array(B * Hq * nQB * nKB);
  const indices = new Int32Array(B * Hq * nQB * topk).fill(-1);
  const score = new Float64Array(nKB);
  const order: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const kvBase = (b * Hkv + Math.floor(h / group)) * nKB;
      for (let qb = 0; qb < nQB; qb++) {
        const qo = ((b * Hq + h) * nQB + qb) * D;
        order.length = 0;
        const candidates = causal ? qb : nKB; // blocks 0 .. candidates - 1 compete
        for (let kb = 0; kb < candidates; kb++) {
          const ko = (kvBase + kb) * D;
          let s = 0;
          for (let d = 0; d < D; d++) s += mq[qo + d] * mk[ko + d];
          score[kb] = s;
          order.push(kb);
        }
        order.sort((x, y) => score[y] - score[x] || x - y);
        const chosen = order.slice(0, causal ? topk - 1 : topk);
        const plane = ((b * Hq + h) * nQB + qb) * nKB;
        for (const kb of chosen) states[plane + kb] = 2;
        if (causal) { states[plane + qb] = 1; chosen.push(qb); }
        chosen.sort((x, y) => x - y);
        indices.set(chosen, ((b * Hq + h) * nQB + qb) * topk);
      }
    }
  }
  return { states, indices, nQB, nKB };
}
