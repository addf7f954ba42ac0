// The oracle for neighborhood attention: the NATTEN rule tested pair by pair (a window start per
// dim and a membership test), independent of the bitmap builder in lib/sparse/neighborhood.ts.
import { Tensor } from '../tensor';
import { NeighborhoodOptions, neighborhoodRule } from '../sparse/neighborhood';
import { attentionReference, ReferenceResult } from './attention';

/** Whether query coordinate c sees key coordinate t along one dim. */
function seesAlong(length: number, kernel: number, dil: number, causal: boolean, c: number, t: number): boolean {
  if ((t - c) % dil !== 0) return false;
  // positions inside the dilation group of c
  const group = c % dil;
  const ci = (c - group) / dil, ti = (t - group) / dil;
  const members = Math.ceil((length - group) / dil);
  if (causal) return ti <= ci && ti > ci - kernel;
  let start = ci - Math.floor(kernel / 2);
  if (start < 0) start = 0;
  if (start + kernel > members) start = members - kernel;
  return ti >= start && ti < start + kernel;
}

/** The coordinates of flat token i over `spatial` (row-major, last dim fastest). */
function coords(spatial: number[], i: number): number[] {
  const c = new Array<number>(spatial.length);
  for (let d = spatial.length - 1; d >= 0; d--) { c[d] = i % spatial[d]; i = Math.floor(i / spatial[d]); }
  return c;
}

/** Exact neighborhood attention in float64 (score options scale and softcap apply). */
export function neighborhoodAttentionReference(q: Tensor, k: Tensor, v: Tensor,
                                               opts: NeighborhoodOptions & { scale?: number; softcap?: number }): ReferenceResult {
  const rule = neighborhoodRule('neighborhoodAttentionReference', opts);
  const n = rule.spatial.length;
  const visible = (i: number, j: number): boolean => {
    const a = coords(rule.spatial, i), b = coords(rule.spatial, j);
    for (let d = 0; d < n; d++) {
      if (!seesAlong(rule.spatial[d], rule.kernel[d], rule.dilation[d], rule.causal[d], a[d], b[d])) return false;
    }
    return true;
  };
  return attentionReference(q, k, v, { scale: opts.scale, softcap: opts.softcap }, (_b, _h, i, j) => (visible(i, j) ? 2 : 0));
}
