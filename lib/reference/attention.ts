// The test oracle for fused attention: a plain, obviously-correct float64 implementation of every
// option in API.md. Speed is not a goal; each rule is written the way the contract states it.
import { Tensor } from '../tensor';
import type { AttentionOptions } from '../ops/attention';

export interface ReferenceResult {
  /** Logical [B, Hq, Sq, Dv], row-major. */
  out: Float64Array;
  /** [B, Hq, Sq]: natural log of the softmax denominator; -Infinity for a row that sees nothing. */
  lse: Float64Array;
}

/** Values of a tensor broadcast (numpy rules, right-aligned) to `target`, read as numbers. */
interface Broadcasted { values: Float32Array; strides: number[] }

function broadcast(name: string, t: Tensor, target: number[]): Broadcasted {
  const rank = t.shape.length;
  if (rank > target.length) {
    throw new Error(`${name}: rank ${rank} does not broadcast to [${target.join(', ')}]`);
  }
  const values = t.toFloat32Array(); // logical, row-major
  // Row-major strides of the logical copy, then 0 for broadcast dims.
  const own = new Array<number>(rank);
  let acc = 1;
  for (let d = rank - 1; d >= 0; d--) { own[d] = acc; acc *= t.shape[d]; }
  const strides = new Array<number>(target.length).fill(0);
  const pad = target.length - rank;
  for (let d = 0; d < rank; d++) {
    const n = t.shape[d], want = target[pad + d];
    if (n === want) strides[pad + d] = own[d];
    else if (n === 1) strides[pad + d] = 0;
    else throw new Error(`${name}: shape [${t.shape.join(', ')}] does not broadcast to [${target.join(', ')}]`);
  }
  return { values, strides };
}

interface Segment { b: number; q0: number; qLen: number; k0: number; kLen: number }

/**
 * Per-pair override of the element rules, for block-sparse attention (reference/sparse.ts): b, query
 * head h, packed row i and packed key j. 0 hides the pair; 2 shows it whatever causal, window,
 * sinks and mask say; 1 leaves those rules in charge. Varlen segments are never overridden.
 */
export type PairState = (b: number, h: number, i: number, j: number) => 0 | 1 | 2;

/**
 * Exact attention in float64. Returns out [B, Hq, Sq, Dv] and lse [B, Hq, Sq] in logical order.
 * Only the math options are read (out, returnLse and signal are ignored). Without `pairState`
 * every pair follows the element rules.
 */
export function attentionReference(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}, pairState?: PairState): ReferenceResult {
  if (q.shape.length !== 4 || k.shape.length !== 4 || v.shape.length !== 4) throw new Error('q, k, v must have rank 4');
  const [B, Hq, Sq, D] = q.shape;
  const [Bk, Hkv, Sk, Dk] = k.shape;
  const [Bv, Hv, Skv, Dv] = v.shape;
  if (Bk !== B || Bv !== B || Hv !== Hkv || Skv !== Sk || Dk !== D) {
    throw new Error(`shapes do not agree: q [${q.shape}], k [${k.shape}], v [${v.shape}]`);
  }
  if (Hkv === 0 || Hq % Hkv !== 0) throw new Error(`Hq ${Hq} must be a multiple of Hkv ${Hkv}`);
  const group = Hq / Hkv;

  const qv = q.toFloat32Array(), kv = k.toFloat32Array(), vv = v.toFloat32Array();
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  const causal = !!opts.causal;
  const wl = opts.window ? opts.window[0] : -1;
  const wr = opts.window ? opts.window[1] : -1;
  const windowed = opts.window !== undefined && (wl >= 0 || wr >= 0);
  const sinks = opts.sinks ?? 0;
  const softcap = opts.softcap ?? 0;
  const alibi = opts.alibiSlopes;
  const sinkLogits = opts.sinkLogits;
  const target = [B, Hq, Sq, Sk];
  const bias = opts.bias ? broadcast('bias', opts.bias, target) : undefined;
  const mask = opts.mask ? broadcast('mask', opts.mask, target) : undefined;

  // Segments: one per batch entry, or the packed varlen segments (B = 1).
  const segments: Segment[] = [];
  if (opts.cuSeqlensQ || opts.cuSeqlensK) {
    const cq = opts.cuSeqlensQ, ck = opts.cuSeqlensK;
    if (!cq || !ck || cq.length !== ck.length || cq.length < 2) throw new Error('cuSeqlensQ/K must be given together, same length >= 2');
    if (B !== 1) throw new Error('varlen needs B = 1');
    if (cq[0] !== 0 || ck[0] !== 0 || cq[cq.length - 1] !== Sq || ck[ck.length - 1] !== Sk) throw new Error('cuSeqlens must run from 0 to Sq / Sk');
    for (let s = 0; s + 1 < cq.length; s++) {
      segments.push({ b: 0, q0: cq[s], qLen: cq[s + 1] - cq[s], k0: ck[s], kLen: ck[s + 1] - ck[s] });
    }
  } else {
    for (let b = 0; b < B; b++) segments.push({ b, q0: 0, qLen: Sq, k0: 0, kLen: Sk });
  }

  const out = new Float64Array(B * Hq * Sq * Dv);
  const lse = new Float64Array(B * Hq * Sq).fill(-Infinity);
  const scores = new Float64Array(Sk);
  const visible = new Uint8Array(Sk);

  for (const sg of segments) {
    const off = sg.kLen - sg.qLen; // bottom-right alignment: local row i sits at local key i + off
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      for (let li = 0; li < sg.qLen; li++) {
        const i = sg.q0 + li; // packed (global) row
        const a = li + off;
        const qBase = ((sg.b * Hq + h) * Sq + i) * D;
        let m = -Infinity;
        for (let lj = 0; lj < sg.kLen; lj++) {
          const j = sg.k0 + lj; // packed (global) key
          // visibility: the pair override, else causal, then window (keys below `sinks` are exempt
          // from the window only), then mask
          const state = pairState === undefined ? 1 : pairState(sg.b, h, i, j);
          let ok = state !== 0;
          if (state === 1) {
            if (causal && lj > a) ok = false;
            if (ok && windowed && lj >= sinks) {
              if (wl >= 0 && lj < a - wl) ok = false;
              if (wr >= 0 && lj > a + wr) ok = false;
            }
            if (ok && mask) {
              const mi = sg.b * mask.strides[0] + h * mask.strides[1] + i * mask.strides[2] + j * mask.strides[3];
              if (mask.values[mi] === 0) ok = false;
            }
          }
          visible[lj] = ok ? 1 : 0;
          if (!ok) continue;
          const kBase = ((sg.b * Hkv + hk) * Sk + j) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += qv[qBase + d] * kv[kBase + d];
          let s = scale * dot;
          if (softcap > 0) s = softcap * Math.tanh(s / softcap);
          if (bias) {
            s += bias.values[sg.b * bias.strides[0] + h * bias.strides[1] + i * bias.strides[2] + j * bias.strides[3]];
          }
          if (alibi) s -= alibi[h] * Math.abs(a - lj);
          scores[lj] = s;
          if (s > m) m = s;
        }
        const sink = sinkLogits ? sinkLogits[h] : -Infinity;
        const mx = Math.max(m, sink);
        const row = (sg.b * Hq + h) * Sq + i;
        if (mx === -Infinity) continue; // nothing visible, no sink: zeros and lse -Infinity
        let denom = sinkLogits ? Math.exp(sink - mx) : 0;
        const o = row * Dv;
        for (let lj = 0; lj < sg.kLen; lj++) {
          if (!visible[lj]) continue;
          const p = Math.exp(scores[lj] - mx);
          denom += p;
          const vBase = ((sg.b * Hkv + hk) * Sk + sg.k0 + lj) * Dv;
          for (let d = 0; d < Dv; d++) out[o + d] += p * vv[vBase + d];
        }
        for (let d = 0; d < Dv; d++) out[o + d] /= denom;
        lse[row] = mx + Math.log(denom);
      }
    }
  }
  return { out, lse };
}
