import { AttnError } from '../errors';
import { Tensor } from '../tensor';
import { NeighborhoodOptions, neighborhoodBlocks, neighborhoodRule } from './neighborhood';

/** A block's state in `BlockMask.blocks` (a plain object, not a TS enum, so JavaScript callers see it too). */
export const BlockState = Object.freeze({ Skip: 0, Partial: 1, Full: 2 } as const);
export type BlockState = 0 | 1 | 2;

/** What a `fromFunction` callback returns for one block. */
export type BlockRule = false | 'partial' | 'full';

/** The geometry every builder takes. */
export interface BlockMaskShape {
  /** Default 1. Builders whose pattern does not depend on the batch store Bm = 1 (it broadcasts). */
  batch?: number;
  /** Query heads, default 1. Builders whose pattern does not depend on the head store Hm = 1. */
  heads?: number;
  seqLenQ: number;
  seqLenK: number;
  /** [bq, bk], or one number for both. Need not divide the lengths: the last blocks are clipped. */
  blockSize: number | [number, number];
}

export interface BlockMaskDenseOptions {
  blockSize: number | [number, number];
  seqLenQ: number;
  seqLenK: number;
}

/** Attention's window (AttentionOptions.window): -1 = unbounded on that side. */
export interface SlidingWindowOptions { window: [left: number, right: number]; causal?: boolean }
export interface DilatedOptions { dilation: number; local?: number }
export interface PerHeadShardsOptions { shards: number; localBlocks?: number }
export interface DocumentsOptions { segmentIds: Int32Array; segmentIdsK?: Int32Array }

/**
 * Element bitmaps of a mask's partial blocks (BlockMask.elements): `index` int32 [Bm, Hm, nQB, nKB]
 * names each block's bitmap (-1: none, the options alone decide); `bits` int32 [n, bq, ceil(bk / 32)]
 * holds them row-major: bit c % 32 of word c / 32 of row r keeps pair (qb*bq + r, kb*bk + c).
 */
export interface BlockElements { index: Tensor; bits: Tensor }

interface Geometry { bq: number; bk: number; seqLenQ: number; seqLenK: number; nQB: number; nKB: number }

function fail(code: 'ERR_ATTN_ARGUMENT' | 'ERR_ATTN_SHAPE' | 'ERR_ATTN_DTYPE' | 'ERR_ATTN_DEVICE', msg: string): never {
  throw new AttnError(code, msg);
}

function intArg(what: string, name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    fail('ERR_ATTN_ARGUMENT', `${what}: ${name} must be an integer >= ${min}, got ${typeof v === 'number' ? v : typeof v}`);
  }
  return v;
}

function optionsArg<T>(what: string, o: unknown): T {
  if (typeof o !== 'object' || o === null) fail('ERR_ATTN_ARGUMENT', `${what}: options must be an object`);
  return o as T;
}

function geometry(what: string, o: { blockSize?: unknown; seqLenQ?: unknown; seqLenK?: unknown }): Geometry {
  const bs = o.blockSize;
  const pair = typeof bs === 'number' ? [bs, bs] : bs;
  if (!Array.isArray(pair) || pair.length !== 2) {
    fail('ERR_ATTN_ARGUMENT', `${what}: blockSize must be a positive integer or [bq, bk], got ${JSON.stringify(bs)}`);
  }
  const bq = intArg(what, 'blockSize[0] (bq)', pair[0], 1);
  const bk = intArg(what, 'blockSize[1] (bk)', pair[1], 1);
  // the kernels index blocks with 32-bit integers
  if (bq > 0x7fffffff || bk > 0x7fffffff) fail('ERR_ATTN_ARGUMENT', `${what}: blockSize must be at most 2^31 - 1, got [${bq}, ${bk}]`);
  const seqLenQ = intArg(what, 'seqLenQ', o.seqLenQ, 1);
  const seqLenK = intArg(what, 'seqLenK', o.seqLenK, 1);
  return { bq, bk, seqLenQ, seqLenK, nQB: Math.ceil(seqLenQ / bq), nKB: Math.ceil(seqLenK / bk) };
}

/** Fills a [1, 1, nQB, nKB] mask (patterns that depend on neither batch nor head) from `state(qb, kb)`. */
function fill2d(g: Geometry, state: (qb: number, kb: number) => BlockState): Uint8Array {
  const a = new Uint8Array(g.nQB * g.nKB);
  for (let qb = 0, n = 0; qb < g.nQB; qb++) for (let kb = 0; kb < g.nKB; kb++) a[n++] = state(qb, kb);
  return a;
}

/**
 * The state of a block under a band rule "key j visible iff a + lo <= j <= a + hi" with
 * a = i + (seqLenK - seqLenQ) (lo <= 0 <= hi; +-Infinity = unbounded). Every row's interval holds
 * its own a and consecutive rows' intervals shift by one, so over the block's rows the visible keys
 * form the one interval [a(r0) + lo, a(r1 - 1) + hi]: both tests need only the block's corners.
 */
function bandState(g: Geometry, qb: number, kb: number, lo: number, hi: number): BlockState {
  const off = g.seqLenK - g.seqLenQ;
  const aFirst = qb * g.bq + off, aLast = Math.min((qb + 1) * g.bq, g.seqLenQ) - 1 + off;
  const kFirst = kb * g.bk, kLast = Math.min((kb + 1) * g.bk, g.seqLenK) - 1;
  if (kLast < aFirst + lo || kFirst > aLast + hi) return BlockState.Skip;
  if (kFirst >= aLast + lo && kLast <= aFirst + hi) return BlockState.Full;
  return BlockState.Partial;
}

/** Sorted distinct ids of each block of `ids` (blocks of `size`): the sets documents() intersects. */
function distinctPerBlock(ids: Int32Array, size: number, n: number): Int32Array[] {
  const out: Int32Array[] = [];
  for (let b = 0; b < n; b++) {
    const part = ids.slice(b * size, Math.min((b + 1) * size, ids.length)).sort();
    let m = 0;
    for (let i = 0; i < part.length; i++) if (i === 0 || part[i] !== part[m - 1]) part[m++] = part[i];
    out.push(part.subarray(0, m));
  }
  return out;
}

/** Whether two sorted distinct lists share an element (a merge walk). */
function intersects(a: Int32Array, b: Int32Array): boolean {
  if (a[a.length - 1] < b[0] || b[b.length - 1] < a[0]) return false; // disjoint ranges: the common case off the diagonal
  let i = 0, j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) return true;
    if (a[i] < b[j]) i++; else j++;
  }
  return false;
}

function ruleState(what: string, r: unknown, at: string): BlockState {
  if (r === false) return BlockState.Skip;
  if (r === 'partial') return BlockState.Partial;
  if (r === 'full') return BlockState.Full;
  return fail('ERR_ATTN_ARGUMENT', `${what}: fn must return false, 'partial' or 'full', got ${typeof r === 'string' ? `'${r}'` : String(r)} at ${at}`);
}

/**
 * Which blocks of the [seqLenQ, seqLenK] score matrix attention computes (FlexAttention's BlockMask).
 *
 * `blocks` is uint8 [Bm, Hm, nQB, nKB] on the CPU (Bm = 1 or the batch, Hm = 1 or the query heads;
 * 1 broadcasts), nQB = ceil(seqLenQ / bq), nKB = ceil(seqLenK / bk). Block (qb, kb) covers query
 * rows [qb*bq, min((qb+1)*bq, seqLenQ)) and keys [kb*bk, min((kb+1)*bk, seqLenK)): indices along
 * dim 2 of q and k, so for a packed varlen batch, packed positions.
 *
 * The blocks select what the kernels compute, and how:
 *  - 0 skip: no pair of the block is computed.
 *  - 1 partial: computed with every element-level option of attention (causal, window, sinks,
 *    mask, varlen segments).
 *  - 2 full: computed WITHOUT the element-level masking options (causal, window, sinks, mask): the
 *    mask promises every pair of the block is visible, which is what lets a kernel skip the
 *    per-element work (FlexAttention's full blocks skip mask_mod). Varlen segment membership still
 *    applies (a query never sees another segment's keys).
 * Score modifiers (softcap, bias, alibiSlopes, sinkLogits) apply to every computed pair.
 *
 * So the exact builders (causal, slidingWindow, documents) mark a block full only when their own
 * rule keeps all of it: `BlockMask.causal(...)` used with `causal: true` reproduces attention's
 * causal result exactly, and skips the blocks above the diagonal. A full block under a different
 * element rule than the one passed to attention overrides that rule for the block.
 *
 * Treat `blocks` as read-only: builders and fromDense own their copy; toDense() returns a new one.
 */
export class BlockMask {
  readonly blocks: Tensor;
  readonly blockSize: readonly [number, number];
  readonly seqLenQ: number;
  readonly seqLenK: number;
  /**
   * Element bitmaps of the partial blocks, or undefined (neighborhood() builds them): a partial
   * block with a bitmap computes a pair iff its bit is set and the options admit it.
   */
  readonly elements?: Readonly<BlockElements>;

  // `blocks`: a Uint8Array [bm, hm, nQB, nKB] (builders), or a finished tensor (device copies).
  private constructor(blocks: Uint8Array | Tensor, bm: number, hm: number, g: Geometry, elements?: BlockElements) {
    this.blocks = blocks instanceof Tensor ? blocks : Tensor.from(blocks, [bm, hm, g.nQB, g.nKB]);
    this.blockSize = Object.freeze([g.bq, g.bk] as [number, number]);
    this.seqLenQ = g.seqLenQ;
    this.seqLenK = g.seqLenK;
    if (elements) this.elements = Object.freeze({ ...elements });
  }

  /** Where `blocks` lives: 'cpu' (every builder) or a device, after to() / toSync(). */
  get device(): string { return this.blocks.device; }

  /**
   * The same mask with its blocks copied to `device` ('cpu', 'cuda:0', ...): blockSparseAttention
   * needs the blocks where q is (an op never copies behind your back). This mask is unchanged; a
   * mask already on `device` is returned as is (as Tensor.to does).
   */
  async to(device: string): Promise<BlockMask> {
    const e = this.elements;
    const [blocks, index, bits] = await Promise.all([this.blocks.to(device), e?.index.to(device), e?.bits.to(device)]);
    return this.#withTensors(blocks, e ? { index: index!, bits: bits! } : undefined);
  }

  /** to(), on the calling thread. */
  toSync(device: string): BlockMask {
    const e = this.elements;
    return this.#withTensors(this.blocks.toSync(device), e ? { index: e.index.toSync(device), bits: e.bits.toSync(device) } : undefined);
  }

  /** Frees a device copy's memory now (a finalizer would, later); the mask is unusable after. */
  dispose(): void {
    this.blocks.dispose();
    this.elements?.index.dispose();
    this.elements?.bits.dispose();
  }

  #withTensors(blocks: Tensor, elements: BlockElements | undefined): BlockMask {
    if (blocks === this.blocks) return this;
    const [bm, hm, nQB, nKB] = blocks.shape;
    return new BlockMask(blocks, bm, hm, { bq: this.blockSize[0], bk: this.blockSize[1], seqLenQ: this.seqLenQ, seqLenK: this.seqLenK, nQB, nKB }, elements);
  }

  // The states as host bytes (a CPU copy of a device mask's).
  #hostStates(): Uint8Array {
    return (this.blocks.device === 'cpu' ? this.blocks : this.blocks.toSync('cpu')).data as Uint8Array;
  }

  get numQueryBlocks(): number { return this.blocks.shape[2]; }
  get numKeyBlocks(): number { return this.blocks.shape[3]; }

  /** A mask holding a copy of `blocks` (uint8 [Bm, Hm, nQB, nKB], any strides, values 0 / 1 / 2). */
  static fromDense(blocks: Tensor, opts: BlockMaskDenseOptions): BlockMask {
    const what = 'BlockMask.fromDense';
    if (!(blocks instanceof Tensor)) fail('ERR_ATTN_ARGUMENT', `${what}: blocks must be a Tensor`);
    const g = geometry(what, optionsArg<BlockMaskDenseOptions>(what, opts));
    if (blocks.dtype !== 'uint8') fail('ERR_ATTN_DTYPE', `${what}: blocks must be uint8 (0 skip, 1 partial, 2 full), got ${blocks.dtype}`);
    if (blocks.device !== 'cpu') fail('ERR_ATTN_DEVICE', `${what}: blocks must be on the CPU, got ${blocks.device} (copy it with .to('cpu'))`);
    const s = blocks.shape;
    if (s.length !== 4 || s[2] !== g.nQB || s[3] !== g.nKB || s[0] < 1 || s[1] < 1) {
      fail('ERR_ATTN_SHAPE', `${what}: blocks must have shape [Bm, Hm, ceil(seqLenQ / bq), ceil(seqLenK / bk)] = [Bm, Hm, ${g.nQB}, ${g.nKB}] with Bm, Hm >= 1, got [${s.join(', ')}]`);
    }
    // Our own copy, so later edits to the caller's memory cannot change the mask.
    const c = blocks.contiguous();
    const copy = (c === blocks ? blocks.data.slice(blocks.offset, blocks.offset + blocks.numel) : c.data) as Uint8Array;
    for (let n = 0; n < copy.length; n++) {
      if (copy[n] > 2) {
        const kb = n % g.nKB, qb = Math.floor(n / g.nKB) % g.nQB, h = Math.floor(n / (g.nKB * g.nQB)) % s[1], b = Math.floor(n / (g.nKB * g.nQB * s[1]));
        fail('ERR_ATTN_ARGUMENT', `${what}: blocks values must be 0 (skip), 1 (partial) or 2 (full), got ${copy[n]} at [${b}, ${h}, ${qb}, ${kb}]`);
      }
    }
    return new BlockMask(copy, s[0], s[1], g);
  }

  /**
   * @internal A mask over states an attnkit kernel wrote where they are (topkBlockAttention's
   * device gating): uint8 [B, H, nQB, nKB] with square blocks of `block` rows. Taken as is, not
   * copied or checked: only attnkit's own kernels make such states.
   */
  static fromKernelStates(states: Tensor, block: number, seqLenQ: number, seqLenK: number): BlockMask {
    const [bm, hm, nQB, nKB] = states.shape;
    return new BlockMask(states, bm, hm, { bq: block, bk: block, seqLenQ, seqLenK, nQB, nKB });
  }

  /** A [batch, heads, nQB, nKB] mask: fn(b, h, qBlock, kBlock) says each block's state. */
  static fromFunction(fn: (b: number, h: number, qBlock: number, kBlock: number) => BlockRule, shape: BlockMaskShape): BlockMask {
    const what = 'BlockMask.fromFunction';
    if (typeof fn !== 'function') fail('ERR_ATTN_ARGUMENT', `${what}: fn must be a function`);
    const o = optionsArg<BlockMaskShape>(what, shape);
    const g = geometry(what, o);
    const batch = intArg(what, 'batch', o.batch ?? 1, 1), heads = intArg(what, 'heads', o.heads ?? 1, 1);
    const a = new Uint8Array(batch * heads * g.nQB * g.nKB);
    let n = 0;
    for (let b = 0; b < batch; b++)
      for (let h = 0; h < heads; h++)
        for (let qb = 0; qb < g.nQB; qb++)
          for (let kb = 0; kb < g.nKB; kb++) a[n++] = ruleState(what, fn(b, h, qb, kb), `[${b}, ${h}, ${qb}, ${kb}]`);
    return new BlockMask(a, batch, heads, g);
  }

  /** Attention's causal rule (bottom-right aligned: row i sees key j iff j <= i + seqLenK - seqLenQ), exact per block. */
  static causal(shape: BlockMaskShape): BlockMask {
    const what = 'BlockMask.causal';
    const g = BlockMask.#shape(what, shape);
    return new BlockMask(fill2d(g, (qb, kb) => bandState(g, qb, kb, -Infinity, 0)), 1, 1, g);
  }

  /**
   * Attention's window rule (a = i + seqLenK - seqLenQ; key j visible iff a - left <= j <= a + right,
   * -1 = unbounded), and with `causal: true` the causal rule as well; exact per block. It knows
   * nothing of `sinks`: with attention's sinks, or() it with a mask that computes the sink keys'
   * column of blocks (partial), or the blocks holding only sink keys are skipped.
   */
  static slidingWindow(shape: BlockMaskShape & SlidingWindowOptions): BlockMask {
    const what = 'BlockMask.slidingWindow';
    const g = BlockMask.#shape(what, shape);
    const w = shape.window;
    if (!Array.isArray(w) || w.length !== 2) fail('ERR_ATTN_ARGUMENT', `${what}: window must be [left, right] (integers >= -1), got ${JSON.stringify(w)}`);
    const left = intArg(what, 'window[0] (left)', w[0], -1), right = intArg(what, 'window[1] (right)', w[1], -1);
    const lo = left < 0 ? -Infinity : -left;
    let hi = right < 0 ? Infinity : right;
    if (shape.causal) hi = Math.min(hi, 0); // causal and window intersect to the window [left, 0]
    return new BlockMask(fill2d(g, (qb, kb) => bandState(g, qb, kb, lo, hi)), 1, 1, g);
  }

  /**
   * A whole-block dilated pattern (Sparse Transformer / LongNet style): key block kb is computed
   * for query block qb iff |qb - kb| < local (default 1: the diagonal block) or qb - kb is a
   * multiple of `dilation` (either sign). Indexed by block numbers from the top left, so with
   * seqLenQ != seqLenK or bq != bk the "diagonal" is qb == kb, not attention's aligned diagonal.
   * Computed blocks are full: intersect with causal(...) (`and`) for a causal model.
   */
  static dilated(shape: BlockMaskShape & DilatedOptions): BlockMask {
    const what = 'BlockMask.dilated';
    const g = BlockMask.#shape(what, shape);
    const dilation = intArg(what, 'dilation', shape.dilation, 1);
    const local = intArg(what, 'local', shape.local ?? 1, 0);
    return new BlockMask(fill2d(g, (qb, kb) => {
      const d = qb - kb;
      return Math.abs(d) < local || d % dilation === 0 ? BlockState.Full : BlockState.Skip;
    }), 1, 1, g);
  }

  /**
   * S2-Attention's per-head sharding: head h computes the key blocks kb with kb % shards ==
   * h % shards (at any position), plus the local band qb - localBlocks < kb <= qb (default 1: the
   * diagonal block). Whole blocks, full; Hm = heads. Intersect with causal(...) for a causal model.
   */
  static perHeadShards(shape: BlockMaskShape & PerHeadShardsOptions): BlockMask {
    const what = 'BlockMask.perHeadShards';
    const g = BlockMask.#shape(what, shape);
    const heads = intArg(what, 'heads', shape.heads ?? 1, 1);
    const shards = intArg(what, 'shards', shape.shards, 1);
    const localBlocks = intArg(what, 'localBlocks', shape.localBlocks ?? 1, 0);
    const a = new Uint8Array(heads * g.nQB * g.nKB);
    let n = 0;
    for (let h = 0; h < heads; h++)
      for (let qb = 0; qb < g.nQB; qb++)
        for (let kb = 0; kb < g.nKB; kb++) {
          const mine = kb % shards === h % shards, local = kb <= qb && kb > qb - localBlocks;
          a[n++] = mine || local ? BlockState.Full : BlockState.Skip;
        }
    return new BlockMask(a, 1, heads, g);
  }

  /**
   * Document masking: query row i sees key j iff segmentIds[i] === segmentIdsK[j] (segmentIdsK
   * defaults to segmentIds; lengths seqLenQ and seqLenK). Exact per block for any ids: a block is
   * full iff its rows and keys all carry one id, skipped iff their id sets are disjoint.
   * Its full blocks skip attention's element rules, so for causal packed self-attention
   * (cuSeqlensQ == cuSeqlensK, where per-segment causal is the packed causal rule) pass
   * documents(...).and(causal(...)) with `causal: true`.
   */
  static documents(shape: BlockMaskShape & DocumentsOptions): BlockMask {
    const what = 'BlockMask.documents';
    const g = BlockMask.#shape(what, shape);
    const idsQ = shape.segmentIds, idsK = shape.segmentIdsK ?? shape.segmentIds;
    for (const [name, ids, n] of [['segmentIds', idsQ, g.seqLenQ], ['segmentIdsK', idsK, g.seqLenK]] as const) {
      if (!(ids instanceof Int32Array)) fail('ERR_ATTN_ARGUMENT', `${what}: ${name} must be an Int32Array`);
      if (ids.length !== n) fail('ERR_ATTN_SHAPE', `${what}: ${name} must hold one id per ${name === 'segmentIds' ? 'query row (seqLenQ' : 'key (seqLenK'} = ${n}), got ${ids.length}`);
    }
    const rows = distinctPerBlock(idsQ, g.bq, g.nQB), keys = distinctPerBlock(idsK, g.bk, g.nKB);
    return new BlockMask(fill2d(g, (qb, kb) => {
      const r = rows[qb], k = keys[kb];
      if (r.length === 1 && k.length === 1 && r[0] === k[0]) return BlockState.Full;
      return intersects(r, k) ? BlockState.Partial : BlockState.Skip;
    }), 1, 1, g);
  }

  /**
   * Neighborhood attention's pattern (NATTEN semantics, see neighborhoodAttention) over the
   * row-major flattening of `spatial`: seqLenQ = seqLenK = its product. Exact: blocks with no
   * neighbor pair are skipped, blocks of neighbors only are full, and every other block is partial
   * with an element bitmap of its neighbor pairs (`elements`). Building costs one bit per neighbor
   * pair (tokens x kernel volume); build once and reuse it.
   */
  static neighborhood(shape: NeighborhoodOptions & { blockSize: number | [number, number] }): BlockMask {
    const what = 'BlockMask.neighborhood';
    const o = optionsArg<NeighborhoodOptions & { blockSize: number | [number, number] }>(what, shape);
    const rule = neighborhoodRule(what, o);
    const g = geometry(what, { blockSize: o.blockSize, seqLenQ: rule.tokens, seqLenK: rule.tokens });
    const nb = neighborhoodBlocks(rule, g.bq, g.bk);
    const elements = {
      index: Tensor.from(nb.index, [1, 1, g.nQB, g.nKB]),
      bits: Tensor.from(nb.bits, [nb.count, g.bq, Math.ceil(g.bk / 32)]),
    };
    return new BlockMask(nb.states, 1, 1, g, elements);
  }

  static #shape(what: string, shape: BlockMaskShape): Geometry {
    const o = optionsArg<BlockMaskShape>(what, shape);
    const g = geometry(what, o);
    intArg(what, 'batch', o.batch ?? 1, 1);
    intArg(what, 'heads', o.heads ?? 1, 1);
    return g;
  }

  /** The fraction of nonzero (computed) entries of `blocks`, over its stored shape. */
  density(): number {
    const a = this.#hostStates();
    let nz = 0;
    for (let i = 0; i < a.length; i++) if (a[i] !== 0) nz++;
    return a.length === 0 ? 0 : nz / a.length;
  }

  /** A fresh uint8 copy of `blocks`, on the CPU. */
  toDense(): Tensor {
    return Tensor.from(this.#hostStates().slice(), this.blocks.shape.slice(), { dtype: 'uint8' });
  }

  /** Both masks compute the block: skip if either skips, full if both are full, else partial.
   *  (Combined on the CPU; the result lives on this mask's device.) */
  and(other: BlockMask): BlockMask {
    return this.#combine('and', other, (x, y) => (x === 0 || y === 0 ? 0 : x === 2 && y === 2 ? 2 : 1));
  }

  /** Either mask computes the block: full if either is full, skip if both skip, else partial. */
  or(other: BlockMask): BlockMask {
    return this.#combine('or', other, (x, y) => (x === 2 || y === 2 ? 2 : x === 0 && y === 0 ? 0 : 1));
  }

  #combine(op: string, other: BlockMask, f: (x: number, y: number) => number): BlockMask {
    const what = `BlockMask.${op}`;
    if (!(other instanceof BlockMask)) fail('ERR_ATTN_ARGUMENT', `${what}: other must be a BlockMask`);
    if (this.elements || other.elements) {
      fail('ERR_ATTN_ARGUMENT', `${what}: masks with element bitmaps (BlockMask.neighborhood) cannot be combined yet; pass the other rule as attention options (causal, window, mask) instead`);
    }
    const [bq, bk] = this.blockSize, [obq, obk] = other.blockSize;
    if (bq !== obq || bk !== obk || this.seqLenQ !== other.seqLenQ || this.seqLenK !== other.seqLenK) {
      fail('ERR_ATTN_ARGUMENT', `${what}: other must have the same blockSize and seqLenQ / seqLenK: [${bq}, ${bk}] for ${this.seqLenQ} x ${this.seqLenK} vs [${obq}, ${obk}] for ${other.seqLenQ} x ${other.seqLenK}`);
    }
    const [b1, h1] = this.blocks.shape, [b2, h2] = other.blocks.shape;
    const dim = (name: string, x: number, y: number): number => {
      if (x !== y && x !== 1 && y !== 1) fail('ERR_ATTN_SHAPE', `${what}: other's ${name} ${y} does not broadcast with this mask's ${x} (each must be 1 or equal)`);
      return Math.max(x, y);
    };
    const B = dim('Bm (dim 0)', b1, b2), H = dim('Hm (dim 1)', h1, h2);
    const nq = this.numQueryBlocks, nk = this.numKeyBlocks, plane = nq * nk;
    const x = this.#hostStates(), y = other.#hostStates();
    const out = new Uint8Array(B * H * plane);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++) {
        const ox = ((b1 === 1 ? 0 : b) * h1 + (h1 === 1 ? 0 : h)) * plane;
        const oy = ((b2 === 1 ? 0 : b) * h2 + (h2 === 1 ? 0 : h)) * plane;
        const o = (b * H + h) * plane;
        for (let n = 0; n < plane; n++) out[o + n] = f(x[ox + n], y[oy + n]);
      }
    const mask = new BlockMask(out, B, H, { bq, bk, seqLenQ: this.seqLenQ, seqLenK: this.seqLenK, nQB: nq, nKB: nk });
    return this.device === 'cpu' ? mask : mask.toSync(this.device);
  }
}
