// Pure-JS float32 attention for the native-vs-JS benchmark (bench/). Both take contiguous BHSD
// Float32Arrays (q [B, Hq, Sq, D], k and v [B, Hkv, Sk, D]) and return out [B, Hq, Sq, D].
// Causal is bottom-right aligned like attnkit's: query i sees key j iff j <= i + Sk - Sq.

export interface FastJsShape {
  batch: number;
  headsQ: number;
  headsKv: number;
  seqQ: number;
  seqK: number;
  headDim: number;
  causal?: boolean;
  /** Default 1/sqrt(headDim). */
  scale?: number;
}

function checkShape(name: string, q: Float32Array, k: Float32Array, v: Float32Array, s: FastJsShape): void {
  const { batch: B, headsQ: Hq, headsKv: Hkv, seqQ: Sq, seqK: Sk, headDim: D } = s;
  if (!(Hkv > 0) || Hq % Hkv !== 0) throw new Error(`${name}: headsQ (${Hq}) must be a multiple of headsKv (${Hkv})`);
  if (q.length !== B * Hq * Sq * D) throw new Error(`${name}: q must hold B*Hq*Sq*D = ${B * Hq * Sq * D} floats, got ${q.length}`);
  if (k.length !== B * Hkv * Sk * D) throw new Error(`${name}: k must hold B*Hkv*Sk*D = ${B * Hkv * Sk * D} floats, got ${k.length}`);
  if (v.length !== B * Hkv * Sk * D) throw new Error(`${name}: v must hold B*Hkv*Sk*D = ${B * Hkv * Sk * D} floats, got ${v.length}`);
}

/**
 * What a typical JS programmer writes: a full score row as a JS array, Math.max / Math.exp, a second
 * array of weights, then the weighted sum of V. No tiling, no scratch reuse.
 */
export function attentionNaiveJs(q: Float32Array, k: Float32Array, v: Float32Array, shape: FastJsShape): Float32Array {
  checkShape('attentionNaiveJs', q, k, v, shape);
  const { batch: B, headsQ: Hq, headsKv: Hkv, seqQ: Sq, seqK: Sk, headDim: D } = shape;
  const scale = shape.scale ?? 1 / Math.sqrt(D);
  const group = Hq / Hkv;
  const out = new Float32Array(B * Hq * Sq * D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      for (let i = 0; i < Sq; i++) {
        const qRow = ((b * Hq + h) * Sq + i) * D;
        const scores: number[] = [];
        for (let j = 0; j < Sk; j++) {
          if (shape.causal && j > i + Sk - Sq) {
            scores.push(-Infinity);
            continue;
          }
          const kRow = ((b * Hkv + hk) * Sk + j) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qRow + d] * k[kRow + d];
          scores.push(dot * scale);
        }
        const max = scores.reduce((a, s) => Math.max(a, s), -Infinity);
        if (max === -Infinity) continue; // no visible key: the row stays 0
        const weights = scores.map((s) => Math.exp(s - max));
        const sum = weights.reduce((a, w) => a + w, 0);
        for (let j = 0; j < Sk; j++) {
          const p = weights[j] / sum;
          if (p === 0) continue;
          const vRow = ((b * Hkv + hk) * Sk + j) * D;
          for (let d = 0; d < D; d++) out[qRow + d] += p * v[vRow + d];
        }
      }
    }
  }
  return out;
}

const KEY_BLOCK = 64;

/**
 * What a good JS programmer writes for speed: typed scratch allocated once, online softmax per
 * query row over blocks of keys (one rescale per block, not per key), 4-way unrolled dot products
 * and axpys with independent accumulators, GQA by index arithmetic, causal loop bounds instead of
 * masked scores, and no allocation inside the loops.
 */
export function attentionTunedJs(q: Float32Array, k: Float32Array, v: Float32Array, shape: FastJsShape): Float32Array {
  checkShape('attentionTunedJs', q, k, v, shape);
  const { batch: B, headsQ: Hq, headsKv: Hkv, seqQ: Sq, seqK: Sk, headDim: D } = shape;
  const causal = !!shape.causal;
  const scale = shape.scale ?? 1 / Math.sqrt(D);
  const group = Hq / Hkv;
  const out = new Float32Array(B * Hq * Sq * D);
  const qs = new Float64Array(D);        // the scaled query row
  const acc = new Float64Array(D);       // unnormalised output row
  const sc = new Float64Array(KEY_BLOCK); // one block of scores, then weights
  const D4 = D - (D & 3);
  const off = Sk - Sq;

  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = (h / group) | 0;
      const kvHead = (b * Hkv + hk) * Sk * D;
      for (let i = 0; i < Sq; i++) {
        const end = causal ? Math.min(Sk, i + off + 1) : Sk;
        const qRow = ((b * Hq + h) * Sq + i) * D;
        if (end <= 0) continue; // no visible key: the row stays 0
        for (let d = 0; d < D; d++) { qs[d] = q[qRow + d] * scale; acc[d] = 0; }
        let m = -Infinity, l = 0;
        for (let j0 = 0; j0 < end; j0 += KEY_BLOCK) {
          const j1 = j0 + KEY_BLOCK < end ? j0 + KEY_BLOCK : end;
          // scores for the block and its max
          let bm = -Infinity;
          for (let j = j0, kr = kvHead + j0 * D; j < j1; j++, kr += D) {
            let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            let d = 0;
            for (; d < D4; d += 4) {
              s0 += qs[d] * k[kr + d];
              s1 += qs[d + 1] * k[kr + d + 1];
              s2 += qs[d + 2] * k[kr + d + 2];
              s3 += qs[d + 3] * k[kr + d + 3];
            }
            for (; d < D; d++) s0 += qs[d] * k[kr + d];
            const s = (s0 + s1) + (s2 + s3);
            sc[j - j0] = s;
            if (s > bm) bm = s;
          }
          // rescale the running state once per block
          if (bm > m) {
            const corr = Math.exp(m - bm); // 0 on the first block (m = -Infinity)
            l *= corr;
            for (let d = 0; d < D; d++) acc[d] *= corr;
            m = bm;
          }
          // acc += p_j v_j
          for (let j = j0, vr = kvHead + j0 * D; j < j1; j++, vr += D) {
            const p = Math.exp(sc[j - j0] - m);
            l += p;
            let d = 0;
            for (; d < D4; d += 4) {
              acc[d] += p * v[vr + d];
              acc[d + 1] += p * v[vr + d + 1];
              acc[d + 2] += p * v[vr + d + 2];
              acc[d + 3] += p * v[vr + d + 3];
            }
            for (; d < D; d++) acc[d] += p * v[vr + d];
          }
        }
        const inv = 1 / l;
        for (let d = 0; d < D; d++) out[qRow + d] = acc[d] * inv;
      }
    }
  }
  return out;
}
