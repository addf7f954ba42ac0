// Oracles for linear attention and agent attention: plain float64 implementations, written from the
// contract (README "Linear attention") and independently of the chunked kernel. Two forms of linear
// attention check each other: the step-by-step recurrence and the quadratic masked form.
import { Tensor } from '../tensor';
import type { LinearAttentionOptions } from '../ops/linear';
import type { AgentAttentionOptions } from '../ops/agent';

export interface LinearReferenceResult {
  /** Logical [B, H, S, Dv], row-major. */
  out: Float64Array;
  /** [B, H, Dk, Dv]: the state after the last step. */
  state: Float64Array;
  /** [B, H, Dk]: the normalizer z after the last step (normalize only). */
  normalizer?: Float64Array;
}

const EPS = 1e-10; // added to the normalizer's denominator (flash-linear-attention's normalize_output)

interface Prepared {
  B: number; H: number; S: number; Dk: number; Dv: number;
  phiQ: Float64Array;     // [B, H, S, Dk]: scale * phi(q)
  phiK: Float64Array;     // [B, H, S, Dk]
  v: Float32Array;        // [B, H, S, Dv]
  /** log a_t for (b, h, t, d): per step, or per step and key dimension. */
  logGate: (b: number, h: number, t: number, d: number) => number;
  gated: boolean;
  state0: Float64Array;   // [B, H, Dk, Dv]
  z0: Float64Array;       // [B, H, Dk]
}

function prepare(q: Tensor, k: Tensor, v: Tensor, opts: LinearAttentionOptions): Prepared {
  if (q.shape.length !== 4 || k.shape.length !== 4 || v.shape.length !== 4) throw new Error('q, k, v must have rank 4');
  const [B, H, S, Dk] = q.shape;
  const Dv = v.shape[3];
  if (k.shape.join() !== q.shape.join() || v.shape[0] !== B || v.shape[1] !== H || v.shape[2] !== S) {
    throw new Error(`shapes do not agree: q [${q.shape}], k [${k.shape}], v [${v.shape}]`);
  }
  const fm = opts.featureMap ?? 'identity';
  const scale = opts.scale ?? 1;
  const qv = q.toFloat32Array(), kv = k.toFloat32Array();
  const phiQ = new Float64Array(qv.length), phiK = new Float64Array(kv.length);
  const elementwise = (x: number): number => {
    if (fm === 'relu') return Math.max(x, 0);
    if (fm === 'elu1') return x > 0 ? x + 1 : Math.exp(x);
    return x;
  };
  if (fm === 'efficient') {
    // queries: softmax over the features of each row
    for (let r = 0; r < B * H * S; r++) {
      let m = -Infinity, sum = 0;
      for (let d = 0; d < Dk; d++) m = Math.max(m, qv[r * Dk + d]);
      for (let d = 0; d < Dk; d++) sum += Math.exp(qv[r * Dk + d] - m);
      for (let d = 0; d < Dk; d++) phiQ[r * Dk + d] = scale * Math.exp(qv[r * Dk + d] - m) / sum;
    }
    // keys: softmax over the sequence of each (b, h, d)
    for (let bh = 0; bh < B * H; bh++) {
      for (let d = 0; d < Dk; d++) {
        let m = -Infinity, sum = 0;
        for (let t = 0; t < S; t++) m = Math.max(m, kv[(bh * S + t) * Dk + d]);
        for (let t = 0; t < S; t++) sum += Math.exp(kv[(bh * S + t) * Dk + d] - m);
        for (let t = 0; t < S; t++) phiK[(bh * S + t) * Dk + d] = Math.exp(kv[(bh * S + t) * Dk + d] - m) / sum;
      }
    }
  } else {
    for (let i = 0; i < qv.length; i++) phiQ[i] = scale * elementwise(qv[i]);
    for (let i = 0; i < kv.length; i++) phiK[i] = elementwise(kv[i]);
  }

  let logGate = (_b: number, _h: number, _t: number, _d: number): number => 0;
  let gated = false;
  if (opts.decay !== undefined && opts.logGates !== undefined) throw new Error('at most one of decay and logGates');
  if (typeof opts.decay === 'number') {
    const l = Math.log(opts.decay);
    logGate = () => l;
    gated = true;
  } else if (opts.decay !== undefined) {
    const per = Array.from(opts.decay as ArrayLike<number>, (x) => Math.log(x));
    if (per.length !== H) throw new Error(`decay must hold ${H} lambdas`);
    logGate = (_b, h) => per[h];
    gated = true;
  } else if (opts.logGates !== undefined) {
    const g = opts.logGates.toFloat32Array();
    const shape = opts.logGates.shape;
    if (shape.length === 3) logGate = (b, h, t) => g[(b * H + h) * S + t];
    else if (shape.length === 4) logGate = (b, h, t, d) => g[((b * H + h) * S + t) * Dk + d];
    else throw new Error('logGates must be [B, H, S] or [B, H, S, Dk]');
    gated = true;
  }
  const state0 = new Float64Array(B * H * Dk * Dv);
  if (opts.initialState) state0.set(opts.initialState.toFloat32Array());
  const z0 = new Float64Array(B * H * Dk);
  if (opts.initialNormalizer) z0.set(opts.initialNormalizer.toFloat32Array());
  return { B, H, S, Dk, Dv, phiQ, phiK, v: v.toFloat32Array(), logGate, gated, state0, z0 };
}

/**
 * The recurrence, one step at a time, in float64: S_t = a_t S_{t-1} + phi(k_t)^T v_t (a_t = exp(g_t),
 * a scalar or diagonal over Dk), z_t = a_t z_{t-1} + phi(k_t); out_t = scale phi(q_t) S_t (causal) or
 * scale phi(q_t) S_S (non-causal), divided by scale phi(q_t) . z + 1e-10 with normalize.
 * Reads the math options of linearAttention (featureMap, decay, logGates, normalize, scale, causal,
 * initialState, initialNormalizer); for linearAttentionStep pass its state as initialState.
 */
export function linearAttentionReference(q: Tensor, k: Tensor, v: Tensor, opts: LinearAttentionOptions = {}): LinearReferenceResult {
  const p = prepare(q, k, v, opts);
  const { B, H, S, Dk, Dv } = p;
  const causal = opts.causal ?? true;
  const out = new Float64Array(B * H * S * Dv);
  const state = Float64Array.from(p.state0);
  const z = Float64Array.from(p.z0);
  const a = new Float64Array(Dk);
  const read = (b: number, h: number, t: number) => {
    // out row t from the current state
    const row = (b * H + h) * S + t;
    let den = 0;
    for (let d = 0; d < Dk; d++) den += p.phiQ[row * Dk + d] * z[(b * H + h) * Dk + d];
    for (let c = 0; c < Dv; c++) {
      let s = 0;
      for (let d = 0; d < Dk; d++) s += p.phiQ[row * Dk + d] * state[((b * H + h) * Dk + d) * Dv + c];
      out[row * Dv + c] = opts.normalize ? s / (den + EPS) : s;
    }
  };
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const st = (b * H + h) * Dk * Dv, zt = (b * H + h) * Dk;
      for (let t = 0; t < S; t++) {
        const row = (b * H + h) * S + t;
        for (let d = 0; d < Dk; d++) a[d] = p.gated ? Math.exp(p.logGate(b, h, t, d)) : 1;
        for (let d = 0; d < Dk; d++) {
          const kd = p.phiK[row * Dk + d];
          z[zt + d] = a[d] * z[zt + d] + kd;
          for (let c = 0; c < Dv; c++) state[st + d * Dv + c] = a[d] * state[st + d * Dv + c] + kd * p.v[row * Dv + c];
        }
        if (causal) read(b, h, t);
      }
      if (!causal) for (let t = 0; t < S; t++) read(b, h, t);
    }
  }
  return opts.normalize ? { out, state, normalizer: z } : { out, state };
}

/**
 * The quadratic (parallel) form in float64: out_i = sum over visible j of (phi(q_i) D_ij phi(k_j)) v_j
 * plus phi(q_i) D_i0 S_0, with D_ij = prod_{j < l <= i} a_l (diagonal over Dk for per-dimension gates),
 * formed as a running product, never as exp of a difference of cumulative sums. Causal: j <= i;
 * non-causal: every j, with i replaced by the last step. Same options and result as linearAttentionReference.
 */
export function linearAttentionQuadraticReference(q: Tensor, k: Tensor, v: Tensor, opts: LinearAttentionOptions = {}): LinearReferenceResult {
  const p = prepare(q, k, v, opts);
  const { B, H, S, Dk, Dv } = p;
  const causal = opts.causal ?? true;
  const out = new Float64Array(B * H * S * Dv);
  const state = new Float64Array(B * H * Dk * Dv);
  const normalizer = new Float64Array(B * H * Dk);
  const w = new Float64Array(Dk);
  const num = new Float64Array(Dv);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const bh = b * H + h;
      // Decay products from row `end` back to each key j (w over Dk), visiting j = end, end-1, ..., 0,
      // then the initial state: visit(j, w) for keys, visit(-1, w) for S_0.
      const walk = (end: number, visit: (j: number, w: Float64Array) => void) => {
        w.fill(1);
        for (let j = end; j >= 0; j--) {
          visit(j, w);
          for (let d = 0; d < Dk; d++) w[d] *= p.gated ? Math.exp(p.logGate(b, h, j, d)) : 1;
        }
        visit(-1, w);
      };
      const rowOut = (i: number, end: number) => {
        const qi = (bh * S + i) * Dk;
        num.fill(0);
        let den = 0;
        walk(end, (j, wj) => {
          if (j >= 0) {
            let s = 0;
            for (let d = 0; d < Dk; d++) s += p.phiQ[qi + d] * wj[d] * p.phiK[(bh * S + j) * Dk + d];
            den += s;
            for (let c = 0; c < Dv; c++) num[c] += s * p.v[(bh * S + j) * Dv + c];
          } else {
            for (let d = 0; d < Dk; d++) {
              const qw = p.phiQ[qi + d] * wj[d];
              den += qw * p.z0[bh * Dk + d];
              for (let c = 0; c < Dv; c++) num[c] += qw * p.state0[(bh * Dk + d) * Dv + c];
            }
          }
        });
        for (let c = 0; c < Dv; c++) out[(bh * S + i) * Dv + c] = opts.normalize ? num[c] / (den + EPS) : num[c];
      };
      for (let i = 0; i < S; i++) rowOut(i, causal ? i : S - 1);
      // the final state as the same sum over every key
      walk(S - 1, (j, wj) => {
        for (let d = 0; d < Dk; d++) {
          const kd = j >= 0 ? p.phiK[(bh * S + j) * Dk + d] : 1;
          normalizer[bh * Dk + d] += wj[d] * (j >= 0 ? kd : p.z0[bh * Dk + d]);
          for (let c = 0; c < Dv; c++) {
            const x = j >= 0 ? kd * p.v[(bh * S + j) * Dv + c] : p.state0[(bh * Dk + d) * Dv + c];
            state[(bh * Dk + d) * Dv + c] += wj[d] * x;
          }
        }
      });
    }
  }
  return opts.normalize ? { out, state, normalizer } : { out, state };
}

/**
 * Agent attention in float64: agent values = softmax(scale A K^T) V per agent, then
 * out = softmax(scale Q A^T) (agent values). agents [B | 1, Hq | 1, nA, D]; k / v may have fewer
 * heads (query head h reads kv head floor(h / (Hq / Hkv))). Returns out [B, Hq, Sq, Dv] row-major.
 */
export function agentAttentionReference(q: Tensor, k: Tensor, v: Tensor, agents: Tensor, opts: AgentAttentionOptions = {}): Float64Array {
  const [B, Hq, Sq, D] = q.shape;
  const [, Hkv, Sk] = k.shape;
  const Dv = v.shape[3];
  const [Ba, Ha, nA] = agents.shape;
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  const qv = q.toFloat32Array(), kv = k.toFloat32Array(), vv = v.toFloat32Array(), av = agents.toFloat32Array();
  const group = Hq / Hkv;
  const out = new Float64Array(B * Hq * Sq * Dv);
  const values = new Float64Array(nA * Dv);
  const p = new Float64Array(Math.max(Sk, nA));
  // softmax(scale * x . rows) over `n` rows, then sum of weights * vals: into dst[0, Dv)
  const attend = (x: (d: number) => number, n: number, row: (j: number, d: number) => number, val: (j: number, c: number) => number,
    dst: Float64Array, at: number) => {
    let m = -Infinity;
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += x(d) * row(j, d);
      p[j] = scale * s;
      m = Math.max(m, p[j]);
    }
    let sum = 0;
    for (let j = 0; j < n; j++) { p[j] = Math.exp(p[j] - m); sum += p[j]; }
    for (let c = 0; c < Dv; c++) {
      let o = 0;
      for (let j = 0; j < n; j++) o += p[j] * val(j, c);
      dst[at + c] = o / sum;
    }
  };
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      const ab = ((Ba === 1 ? 0 : b) * Ha + (Ha === 1 ? 0 : h)) * nA;
      const kb = (b * Hkv + hk) * Sk;
      for (let a = 0; a < nA; a++) {
        attend((d) => av[(ab + a) * D + d], Sk, (j, d) => kv[(kb + j) * D + d], (j, c) => vv[(kb + j) * Dv + c], values, a * Dv);
      }
      for (let i = 0; i < Sq; i++) {
        const qi = ((b * Hq + h) * Sq + i) * D;
        attend((d) => qv[qi + d], nA, (a, d) => av[(ab + a) * D + d], (a, c) => values[a * Dv + c], out, ((b * Hq + h) * Sq + i) * Dv);
      }
    }
  }
  return out;
}
