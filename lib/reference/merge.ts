// The oracle for mergeAttentionStates, in float64.

export interface ReferenceState { out: Float64Array | Float32Array; lse: Float64Array | Float32Array }

/**
 * Exact merge of attention states over disjoint key sets: per row, lse = log(sum_p exp(lse_p)) and
 * out = sum_p exp(lse_p - lse) * out_p. Parts with lse -Infinity contribute nothing; a row where
 * every part is -Infinity gets zeros and lse -Infinity. `out` arrays are [rows, dv] row-major.
 */
export function mergeReference(parts: ReferenceState[], rows: number, dv: number): { out: Float64Array; lse: Float64Array } {
  for (const [i, p] of parts.entries()) {
    if (p.out.length < rows * dv || p.lse.length < rows) throw new Error(`parts[${i}] is smaller than rows x dv`);
  }
  const out = new Float64Array(rows * dv);
  const lse = new Float64Array(rows).fill(-Infinity);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (const p of parts) if (p.lse[r] > m) m = p.lse[r];
    if (m === -Infinity) continue;
    let sum = 0;
    for (const p of parts) sum += Math.exp(p.lse[r] - m);
    const total = m + Math.log(sum);
    lse[r] = total;
    for (const p of parts) {
      if (p.lse[r] === -Infinity) continue;
      const w = Math.exp(p.lse[r] - total);
      for (let d = 0; d < dv; d++) out[r * dv + d] += w * p.out[r * dv + d];
    }
  }
  return { out, lse };
}
