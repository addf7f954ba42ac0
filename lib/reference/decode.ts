// Float64 oracle of decodeAttention: attention of the new queries over a plain list of K/V rows
// per sequence (no pages), built on attentionReference so that every option means what it means
// for dense attention. The new queries are the last Sq positions of each sequence (causal,
// bottom-right aligned).
import { Tensor } from '../tensor';
import type { DecodeAttentionOptions } from '../ops/decode';
import { attentionReference, ReferenceResult } from './attention';

export interface DecodeReferenceSequence {
  /** Keys [kvHeads, length, D] row-major, as float values. */
  k: ArrayLike<number>;
  /** Values [kvHeads, length, Dv] row-major. */
  v: ArrayLike<number>;
  length: number;
}

/**
 * q [B, Hq, Sq, D]; seqs[b] the keys and values sequence b holds. Returns out [B, Hq, Sq, Dv] and
 * lse [B, Hq, Sq], row-major.
 */
export function decodeAttentionReference(q: Tensor, seqs: readonly DecodeReferenceSequence[], kvHeads: number,
                                         opts: DecodeAttentionOptions = {}): ReferenceResult {
  const [B, Hq, Sq, D] = q.shape;
  if (seqs.length !== B) throw new Error(`decodeAttentionReference: ${seqs.length} sequences for a batch of ${B}`);
  const qv = q.toFloat32Array();
  const outs: Float64Array[] = [], lses: Float64Array[] = [];
  let Dv = 0;
  for (let b = 0; b < B; b++) {
    const s = seqs[b], n = s.length;
    Dv = n > 0 ? s.v.length / (kvHeads * n) : D;
    const qb = Tensor.from(qv.slice(b * Hq * Sq * D, (b + 1) * Hq * Sq * D), [1, Hq, Sq, D]);
    const kb = Tensor.from(Float32Array.from(s.k), [1, kvHeads, n, D]);
    const vb = Tensor.from(Float32Array.from(s.v), [1, kvHeads, n, Dv]);
    const r = attentionReference(qb, kb, vb, { ...opts, out: undefined, signal: undefined, returnLse: undefined, causal: true });
    outs.push(r.out);
    lses.push(r.lse);
  }
  const out = new Float64Array(B * Hq * Sq * Dv), lse = new Float64Array(B * Hq * Sq);
  for (let b = 0; b < B; b++) { out.set(outs[b], b * Hq * Sq * Dv); lse.set(lses[b], b * Hq * Sq); }
  return { out, lse };
}

/**
 * Oracle of decodeAttention's accumulateScores (H2O): for each sequence, [kvHeads, length] the
 * softmax probability of every key summed over the query heads of its kv head and the new
 * queries. Computed as attention with V = the identity (value j = the j-th unit vector), so row
 * i's output is exactly row i of the softmax (every option applied as attentionReference does).
 */
export function decodeScoresReference(q: Tensor, seqs: readonly DecodeReferenceSequence[], kvHeads: number,
                                      opts: DecodeAttentionOptions = {}): Float64Array[] {
  const [B, Hq, Sq, D] = q.shape;
  const G = Hq / kvHeads;
  const qv = q.toFloat32Array();
  const result: Float64Array[] = [];
  for (let b = 0; b < B; b++) {
    const n = seqs[b].length;
    const mass = new Float64Array(kvHeads * n);
    if (n > 0) {
      const eye = new Float32Array(kvHeads * n * n);
      for (let h = 0; h < kvHeads; h++) for (let j = 0; j < n; j++) eye[(h * n + j) * n + j] = 1;
      const qb = Tensor.from(qv.slice(b * Hq * Sq * D, (b + 1) * Hq * Sq * D), [1, Hq, Sq, D]);
      const kb = Tensor.from(Float32Array.from(seqs[b].k), [1, kvHeads, n, D]);
      const r = attentionReference(qb, kb, Tensor.from(eye, [1, kvHeads, n, n]),
        { ...opts, out: undefined, signal: undefined, returnLse: undefined, causal: true });
      for (let h = 0; h < Hq; h++) {
        for (let i = 0; i < Sq; i++) {
          for (let j = 0; j < n; j++) mass[Math.floor(h / G) * n + j] += r.out[(h * Sq + i) * n + j];
        }
      }
    }
    result.push(mass);
  }
  return result;
}
