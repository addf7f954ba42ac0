// Neighborhood attention's rule (NATTEN semantics, 1-3 dims) and the block mask with element
// bitmaps that carries it to the kernels. Tokens are the row-major flattening of `spatial` (the
// last dim fastest), so a neighborhood is a box of rows, not a band: block states alone cannot say
// which pairs of a partial block are neighbors, each partial block carries a bitmap of them.
import { AttnError } from '../errors';

export interface NeighborhoodOptions {
  /** The token grid, outermost first: [L] (1D), [H, W] (2D) or [D, H, W] (3D); N = product. */
  spatial: number[];
  /** Window size per dim (one number: every dim). At most spatial / dilation per dim. */
  kernelSize: number | number[];
  /** Per dim, default 1: a token sees only tokens whose coordinate is congruent mod dilation. */
  dilation?: number | number[];
  /** Per dim, default false: the window ends at the token (its kernelSize - 1 predecessors). */
  causal?: boolean | boolean[];
}

/** A validated rule: one entry per dim, outermost first. */
export interface NeighborhoodRule {
  spatial: number[];
  kernel: number[];
  dilation: number[];
  causal: boolean[];
  /** Tokens: the product of spatial. */
  tokens: number;
}

function bad(msg: string): never {
  throw new AttnError('ERR_ATTN_ARGUMENT', msg);
}

function perDim<T>(what: string, name: string, v: T | T[] | undefined, dims: number, fallback: T, ok: (x: unknown) => boolean, want: string): T[] {
  const list = v === undefined ? new Array<T>(dims).fill(fallback) : Array.isArray(v) ? v : new Array<T>(dims).fill(v);
  if (list.length !== dims) bad(`${what}: ${name} must have one entry per spatial dim (${dims}), got ${list.length}`);
  list.forEach((x, d) => { if (!ok(x)) bad(`${what}: ${name}[${d}] must be ${want}, got ${JSON.stringify(x)}`); });
  return list.slice();
}

const positiveInt = (x: unknown): boolean => typeof x === 'number' && Number.isSafeInteger(x) && x >= 1;

/** Checks NeighborhoodOptions and resolves the per-dim lists. */
export function neighborhoodRule(what: string, o: NeighborhoodOptions): NeighborhoodRule {
  if (typeof o !== 'object' || o === null) bad(`${what}: options must be an object`);
  const spatial = o.spatial;
  if (!Array.isArray(spatial) || spatial.length < 1 || spatial.length > 3) {
    bad(`${what}: spatial must be [L], [H, W] or [D, H, W] (1 to 3 dims), got ${JSON.stringify(spatial)}`);
  }
  spatial.forEach((x, d) => { if (!positiveInt(x)) bad(`${what}: spatial[${d}] must be an integer >= 1, got ${JSON.stringify(x)}`); });
  const dims = spatial.length;
  if (o.kernelSize === undefined) bad(`${what}: kernelSize is required`);
  const kernel = perDim(what, 'kernelSize', o.kernelSize, dims, 1, positiveInt, 'an integer >= 1');
  const dilation = perDim(what, 'dilation', o.dilation, dims, 1, positiveInt, 'an integer >= 1');
  const causal = perDim(what, 'causal', o.causal, dims, false, (x) => typeof x === 'boolean', 'a boolean');
  for (let d = 0; d < dims; d++) {
    // NATTEN's rule: every dilation group of the dim must hold a whole window
    if (kernel[d] * dilation[d] > spatial[d]) {
      bad(`${what}: kernelSize[${d}] * dilation[${d}] = ${kernel[d]} * ${dilation[d]} exceeds spatial[${d}] = ${spatial[d]}: the kernel must fit in the spatial extent`);
    }
  }
  const tokens = spatial.reduce((a, b) => a * b, 1);
  if (tokens > 0x7fffffff) bad(`${what}: spatial holds ${tokens} tokens; at most 2^31 - 1`);
  return { spatial: spatial.slice(), kernel, dilation, causal, tokens };
}

/**
 * The coordinates token coordinate c sees along one dim: start, start + dil, ... (count of them).
 * Within its dilation group (the coordinates congruent to c mod dil, numbered c / dil) the window
 * is kernel consecutive members: centred (floor(kernel / 2) before c) and shifted inward at the
 * borders so it always holds `kernel` of them; causal: c and up to kernel - 1 members before it.
 */
export function neighborhoodWindow(length: number, kernel: number, dil: number, causal: boolean, c: number): { start: number; count: number } {
  const g = c % dil, idx = Math.floor(c / dil);
  const members = Math.floor((length - 1 - g) / dil) + 1;
  let first: number, count: number;
  if (causal) {
    first = Math.max(idx - kernel + 1, 0);
    count = idx - first + 1;
  } else {
    first = Math.min(Math.max(idx - Math.floor(kernel / 2), 0), members - kernel);
    count = kernel;
  }
  return { start: g + first * dil, count };
}

/** A neighborhood rule as block states plus element bitmaps of the partial blocks (BlockMask.elements). */
export interface NeighborhoodBlocks {
  states: Uint8Array;  // [nQB, nKB]: 0 skip, 1 partial (with a bitmap), 2 full
  index: Int32Array;   // [nQB, nKB]: bitmap of each partial block, else -1
  bits: Int32Array;    // [count, bq, ceil(bk / 32)]
  count: number;
}

/**
 * Enumerates every token's neighbors (tokens x prod(kernel) bit sets) into per-block bitmaps; a
 * block whose bitmap is all set becomes full and drops it.
 */
export function neighborhoodBlocks(rule: NeighborhoodRule, bq: number, bk: number): NeighborhoodBlocks {
  const N = rule.tokens, dims = rule.spatial.length;
  const nQB = Math.ceil(N / bq), nKB = Math.ceil(N / bk), words = Math.ceil(bk / 32);
  // pad to 3 dims (outer dims of extent 1, kernel 1) so one loop nest serves 1D to 3D
  const pad = 3 - dims;
  const L = [1, 1, 1], K = [1, 1, 1], Dl = [1, 1, 1], C = [false, false, false];
  for (let d = 0; d < dims; d++) {
    L[pad + d] = rule.spatial[d]; K[pad + d] = rule.kernel[d]; Dl[pad + d] = rule.dilation[d]; C[pad + d] = rule.causal[d];
  }
  const states = new Uint8Array(nQB * nKB);
  const index = new Int32Array(nQB * nKB).fill(-1);
  const chunks: Uint32Array[] = [];
  let count = 0;
  for (let qb = 0; qb < nQB; qb++) {
    const r0 = qb * bq, r1 = Math.min(r0 + bq, N);
    const maps = new Map<number, Uint32Array>();
    for (let i = r0; i < r1; i++) {
      const x = i % L[2], y = Math.floor(i / L[2]) % L[1], z = Math.floor(i / (L[1] * L[2]));
      const wz = neighborhoodWindow(L[0], K[0], Dl[0], C[0], z);
      const wy = neighborhoodWindow(L[1], K[1], Dl[1], C[1], y);
      const wx = neighborhoodWindow(L[2], K[2], Dl[2], C[2], x);
      const rowWord = (i - r0) * words;
      let kbLast = -1, map: Uint32Array | undefined;
      for (let a = 0; a < wz.count; a++) {
        const kz = wz.start + a * Dl[0];
        for (let b = 0; b < wy.count; b++) {
          const base = (kz * L[1] + wy.start + b * Dl[1]) * L[2];
          for (let c = 0; c < wx.count; c++) {
            const j = base + wx.start + c * Dl[2];
            const kb = Math.floor(j / bk);
            if (kb !== kbLast) {
              map = maps.get(kb);
              if (!map) { map = new Uint32Array(bq * words); maps.set(kb, map); }
              kbLast = kb;
            }
            const col = j - kb * bk;
            map![rowWord + (col >>> 5)] |= 1 << (col & 31);
          }
        }
      }
    }
    for (const kb of [...maps.keys()].sort((p, q) => p - q)) {
      const map = maps.get(kb)!;
      let set = 0;
      for (let w = 0; w < map.length; w++) set += popcount(map[w]);
      const keys = Math.min(bk, N - kb * bk);
      if (set === (r1 - r0) * keys) {
        states[qb * nKB + kb] = 2;
      } else {
        states[qb * nKB + kb] = 1;
        index[qb * nKB + kb] = count++;
        chunks.push(map);
      }
    }
  }
  const bits = new Int32Array(count * bq * words);
  chunks.forEach((m, n) => bits.set(new Int32Array(m.buffer, m.byteOffset, m.length), n * bq * words));
  return { states, index, bits, count };
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
