// Decode attention over a paged KV cache (issue 6, CPU side).
//
// KVCache keeps K and V in a pool of fixed-size pages, as vLLM's PagedAttention and FlashInfer do:
// maxPages pages, each [kvHeads, pageSize, headDim] for K and the same for V, and a page table per
// sequence. Page layout [Hkv, P, D] (FlashInfer's "HND" layout) rather than [P, Hkv, D] ("NHD"):
// the decode kernel walks one kv head's keys at a time (every query head of the GQA group shares
// that pass), and in HND a page holds each head's P rows as one contiguous P*D block, so a page is
// one streaming read per head instead of P reads strided by Hkv*D.
//
// Memory: the pools are ordinary JS typed arrays (Float32Array, or Uint16Array for float16 and
// bfloat16) owned by the cache object; the page tables, free list and lengths are TS data. The GC
// frees them; dispose() drops them at once and makes every later use an ERR_ATTN_DISPOSED.
//
// decodeAttention: the new queries q [B, Hq, Sq_new, D] are the last Sq_new positions of each
// sequence (bottom-right aligned, causal among themselves). This first version gathers each
// sequence's pages into a contiguous [1, Hkv, len, D] buffer (reused across the batch in the sync
// form) and runs the native fused kernel (native/cpu/fused) on it, so every option, dtype, GQA
// ratio and the LSE come from the one kernel that the dense op uses. A native page-walking kernel
// with split-KV (Flash-Decoding) would read the pages in place; that is not written yet.
import { AttnError, asAttnError } from '../errors';
import { FloatDType, TypedArray, arrayTypeOf, isFloatDType } from '../dtype';
import { Tensor } from '../tensor';
import { attention, attentionSync, AttentionOptions, AttentionWithLse } from './attention';
import { abortedError, int32ArrayArg, signalArg, tensorArg } from './args';

export interface KVCacheOptions {
  batch: number;
  kvHeads: number;
  headDim: number;
  /** Tokens per page. */
  pageSize: number;
  /** Pages in the pool, shared by every sequence. */
  maxPages: number;
  /** Default 'float32'. */
  dtype?: FloatDType;
  /** Only 'cpu' for now. */
  device?: string;
}

/**
 * StreamingLLM: keep the first `sinks` tokens and the last `window` tokens of a sequence; the kept
 * tokens become a contiguous sequence (positions re-numbered 0..kept-1, as StreamingLLM does with
 * its rolling cache), and pages no longer needed go back to the pool.
 */
export interface StreamingPolicy { kind: 'streaming'; sinks: number; window: number }
export type EvictionPolicy = StreamingPolicy;

export interface AppendOptions {
  /** [B]: sequence b appends the first lengths[b] of the T rows (ragged append). */
  lengths?: Int32Array;
}

function intOption(name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new AttnError('ERR_ATTN_ARGUMENT', `KVCache: ${name} must be an integer >= ${min}, got ${String(v)}`);
  }
  return v;
}

export class KVCache {
  readonly batch: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly pageSize: number;
  readonly maxPages: number;
  readonly dtype: FloatDType;
  readonly device = 'cpu';

  #k: TypedArray | null;
  #v: TypedArray | null;
  /** Stack of free page ids; #free[0..#freeTop) are free. */
  #free: Int32Array;
  #freeTop: number;
  /** Page table: #pages[b][i] holds tokens [i * pageSize, (i + 1) * pageSize) of sequence b. */
  #pages: number[][];
  #len: Int32Array;

  constructor(opts: KVCacheOptions) {
    if (typeof opts !== 'object' || opts === null) throw new AttnError('ERR_ATTN_ARGUMENT', 'KVCache options must be an object');
    const device = opts.device ?? 'cpu';
    if (device !== 'cpu') {
      throw new AttnError('ERR_ATTN_DEVICE', `KVCache: device must be 'cpu' for now, got ${String(device)}; the GPU cache comes later`);
    }
    const dtype = opts.dtype ?? 'float32';
    if (typeof dtype !== 'string' || !isFloatDType(dtype as FloatDType)) {
      throw new AttnError('ERR_ATTN_DTYPE', `KVCache: dtype must be 'float32', 'float16' or 'bfloat16', got ${String(dtype)}`);
    }
    this.batch = intOption('batch', opts.batch, 1);
    this.kvHeads = intOption('kvHeads', opts.kvHeads, 1);
    this.headDim = intOption('headDim', opts.headDim, 1);
    this.pageSize = intOption('pageSize', opts.pageSize, 1);
    this.maxPages = intOption('maxPages', opts.maxPages, 1);
    this.dtype = dtype;
    const elems = this.maxPages * this.kvHeads * this.pageSize * this.headDim;
    const Ctor = arrayTypeOf(dtype) as Float32ArrayConstructor | Uint16ArrayConstructor;
    try {
      this.#k = new Ctor(elems);
      this.#v = new Ctor(elems);
    } catch (e) {
      throw new AttnError('ERR_ATTN_OOM', `KVCache: could not allocate 2 x ${elems} ${dtype} elements (maxPages ${this.maxPages} x kvHeads ${this.kvHeads} x pageSize ${this.pageSize} x headDim ${this.headDim})`, { cause: e });
    }
    this.#free = new Int32Array(this.maxPages);
    // Lowest page ids are handed out first.
    for (let i = 0; i < this.maxPages; i++) this.#free[i] = this.maxPages - 1 - i;
    this.#freeTop = this.maxPages;
    this.#pages = Array.from({ length: this.batch }, () => []);
    this.#len = new Int32Array(this.batch);
  }

  get disposed(): boolean { return this.#k === null; }
  get pagesFree(): number { this.#live('pagesFree'); return this.#freeTop; }
  get pagesUsed(): number { this.#live('pagesUsed'); return this.maxPages - this.#freeTop; }

  /** Tokens held for sequence b. */
  length(b: number): number {
    this.#live('length');
    return this.#len[this.#seq('length', b)];
  }

  /** Empties sequence b and returns its pages to the pool. */
  reset(b: number): void {
    this.#live('reset');
    const s = this.#seq('reset', b);
    this.#release(s, 0);
    this.#len[s] = 0;
  }

  dispose(): void {
    this.#k = null;
    this.#v = null;
    this.#pages = [];
  }

  [Symbol.dispose](): void { this.dispose(); }

  /**
   * Appends k, v [B, kvHeads, T, headDim] (any strides, the cache's dtype): T tokens to every
   * sequence, or lengths[b] of them to sequence b. All or nothing: when the pool cannot hold every
   * sequence's new tokens, nothing is written and ERR_ATTN_CACHE_FULL is thrown.
   */
  append(k_: Tensor, v_: Tensor, opts?: AppendOptions): void {
    this.#live('append');
    const k = this.#rowsArg('k', k_), v = this.#rowsArg('v', v_);
    const T = k.shape[2];
    if (v.shape[2] !== T) throw new AttnError('ERR_ATTN_SHAPE', `KVCache.append: v has ${v.shape[2]} tokens but k has ${T}`);
    if (opts !== undefined && (typeof opts !== 'object' || opts === null)) throw new AttnError('ERR_ATTN_ARGUMENT', 'KVCache.append options must be an object');
    const lengths = int32ArrayArg('lengths', opts?.lengths);
    if (lengths) {
      if (lengths.length !== this.batch) throw new AttnError('ERR_ATTN_ARGUMENT', `KVCache.append: lengths must have ${this.batch} entries (one per sequence), got ${lengths.length}`);
      for (let b = 0; b < this.batch; b++) {
        if (!(lengths[b] >= 0 && lengths[b] <= T)) throw new AttnError('ERR_ATTN_ARGUMENT', `KVCache.append: lengths[${b}] must be in [0, ${T}], got ${lengths[b]}`);
      }
    }
    const P = this.pageSize;
    // Pages needed, before anything is written.
    let need = 0;
    for (let b = 0; b < this.batch; b++) {
      const n = lengths ? lengths[b] : T;
      need += Math.ceil((this.#len[b] + n) / P) - this.#pages[b].length;
    }
    if (need > this.#freeTop) {
      throw new AttnError('ERR_ATTN_CACHE_FULL', `KVCache.append: needs ${need} free pages but the pool has ${this.#freeTop} of ${this.maxPages} (pageSize ${P}); nothing was appended. Evict or reset sequences, or make a larger cache`);
    }
    for (let b = 0; b < this.batch; b++) {
      const n = lengths ? lengths[b] : T;
      const pages = this.#pages[b];
      while (pages.length * P < this.#len[b] + n) pages.push(this.#free[--this.#freeTop]);
      for (let t = 0; t < n; t++) {
        const pos = this.#len[b] + t;
        this.#writeRow(this.#k!, k, b, t, pages[(pos / P) | 0], pos % P);
        this.#writeRow(this.#v!, v, b, t, pages[(pos / P) | 0], pos % P);
      }
      this.#len[b] += n;
    }
  }

  /**
   * Applies an eviction policy to sequence `batch` (default: every sequence). Compaction: the kept
   * tokens are copied down, in order, to positions 0..kept-1 of the sequence's own pages (a copy
   * only ever moves a row to a lower position, so it is safe in place), and the pages past the
   * last kept token return to the pool. After it, decodeAttention sees exactly the kept tokens as
   * a contiguous sequence (causal and window alignment count kept tokens, as StreamingLLM does).
   */
  evict(policy: EvictionPolicy, opts?: { batch?: number }): void {
    this.#live('evict');
    if (typeof policy !== 'object' || policy === null) throw new AttnError('ERR_ATTN_ARGUMENT', 'KVCache.evict: policy must be an object');
    if (policy.kind !== 'streaming') {
      throw new AttnError('ERR_ATTN_ARGUMENT', `KVCache.evict: policy.kind must be 'streaming', got ${String((policy as { kind?: unknown }).kind)}`);
    }
    const sinks = policy.sinks ?? 0;
    if (!Number.isInteger(sinks) || sinks < 0) throw new AttnError('ERR_ATTN_ARGUMENT', `KVCache.evict: policy.sinks must be an integer >= 0, got ${String(sinks)}`);
    if (!Number.isInteger(policy.window) || policy.window < 0) throw new AttnError('ERR_ATTN_ARGUMENT', `KVCache.evict: policy.window must be an integer >= 0, got ${String(policy.window)}`);
    const seqs = opts?.batch === undefined ? [...Array(this.batch).keys()] : [this.#seq('evict', opts.batch)];
    for (const b of seqs) {
      const len = this.#len[b];
      if (len <= sinks + policy.window) continue;
      const from = len - policy.window;  // first kept token after the sinks
      for (let t = 0; t < policy.window; t++) this.#moveRow(b, from + t, sinks + t);
      this.#len[b] = sinks + policy.window;
      this.#release(b, Math.ceil(this.#len[b] / this.pageSize));
    }
  }

  /** Copies of sequence b's keys and values as contiguous tensors [1, kvHeads, length(b), headDim]. */
  contents(b: number): { k: Tensor; v: Tensor } {
    this.#live('contents');
    const s = this.#seq('contents', b);
    const n = this.#len[s];
    const Ctor = arrayTypeOf(this.dtype) as Float32ArrayConstructor | Uint16ArrayConstructor;
    const k = new Ctor(this.kvHeads * n * this.headDim), v = new Ctor(this.kvHeads * n * this.headDim);
    this.gatherInto(s, k, v);
    const shape = [1, this.kvHeads, n, this.headDim];
    return { k: Tensor.from(k, shape, { dtype: this.dtype }), v: Tensor.from(v, shape, { dtype: this.dtype }) };
  }

  /** @internal Sequence b's rows into k, v laid out [kvHeads, length(b), headDim] (arrays at least that long). */
  gatherInto(b: number, k: TypedArray, v: TypedArray): void {
    const n = this.#len[b], P = this.pageSize, D = this.headDim, H = this.kvHeads;
    const pages = this.#pages[b];
    for (let i = 0; i * P < n; i++) {
      const rows = Math.min(P, n - i * P);
      for (let h = 0; h < H; h++) {
        const src = ((pages[i] * H + h) * P) * D, dst = (h * n + i * P) * D;
        k.set(this.#k!.subarray(src, src + rows * D), dst);
        v.set(this.#v!.subarray(src, src + rows * D), dst);
      }
    }
  }

  #writeRow(pool: TypedArray, t: Tensor, b: number, row: number, page: number, slot: number): void {
    const D = this.headDim, H = this.kvHeads, P = this.pageSize;
    const data = t.data, [s0, s1, s2, s3] = t.strides;
    for (let h = 0; h < H; h++) {
      const dst = ((page * H + h) * P + slot) * D;
      const src = t.offset + b * s0 + h * s1 + row * s2;
      if (s3 === 1) pool.set(data.subarray(src, src + D), dst);
      else for (let d = 0; d < D; d++) pool[dst + d] = data[src + d * s3];
    }
  }

  #moveRow(b: number, from: number, to: number): void {
    if (from === to) return;
    const D = this.headDim, H = this.kvHeads, P = this.pageSize, pages = this.#pages[b];
    const pf = pages[(from / P) | 0], pt = pages[(to / P) | 0];
    for (let h = 0; h < H; h++) {
      const src = ((pf * H + h) * P + (from % P)) * D, dst = ((pt * H + h) * P + (to % P)) * D;
      this.#k!.copyWithin(dst, src, src + D);
      this.#v!.copyWithin(dst, src, src + D);
    }
  }

  /** Returns sequence b's pages from index `keep` on to the pool. */
  #release(b: number, keep: number): void {
    const pages = this.#pages[b];
    while (pages.length > keep) this.#free[this.#freeTop++] = pages.pop()!;
  }

  #live(what: string): void {
    if (this.#k === null) throw new AttnError('ERR_ATTN_DISPOSED', `KVCache.${what}: the cache was disposed`);
  }

  #seq(what: string, b: unknown): number {
    if (typeof b !== 'number' || !Number.isInteger(b) || b < 0 || b >= this.batch) {
      throw new AttnError('ERR_ATTN_ARGUMENT', `KVCache.${what}: sequence index b must be an integer in [0, ${this.batch}), got ${String(b)}`);
    }
    return b;
  }

  #rowsArg(name: string, t_: unknown): Tensor {
    const t = tensorArg(name, t_);
    if (t.device !== 'cpu') throw new AttnError('ERR_ATTN_DEVICE', `KVCache.append: ${name} is on ${t.device} but the cache is on cpu`);
    if (t.dtype !== this.dtype) throw new AttnError('ERR_ATTN_DTYPE', `KVCache.append: ${name} must have the cache's dtype ${this.dtype}, got ${t.dtype}`);
    const s = t.shape;
    if (s.length !== 4 || s[0] !== this.batch || s[1] !== this.kvHeads || s[3] !== this.headDim) {
      throw new AttnError('ERR_ATTN_SHAPE', `KVCache.append: ${name} must have shape [B=${this.batch}, kvHeads=${this.kvHeads}, T, headDim=${this.headDim}], got [${s.join(', ')}]`);
    }
    return t;
  }
}

export type DecodeAttentionOptions = Pick<AttentionOptions,
  'scale' | 'window' | 'sinks' | 'softcap' | 'alibiSlopes' | 'sinkLogits' | 'out' | 'returnLse' | 'signal'>;

interface DecodePlan { q: Tensor; cache: KVCache; out: Tensor; lse: Tensor | undefined; per: AttentionOptions; signal: AbortSignal | undefined }

function plan(q_: unknown, cache: unknown, opts: DecodeAttentionOptions | undefined): DecodePlan {
  if (opts !== undefined && (typeof opts !== 'object' || opts === null)) throw new AttnError('ERR_ATTN_ARGUMENT', 'decodeAttention options must be an object');
  const o = opts ?? {};
  if (!(cache instanceof KVCache)) throw new AttnError('ERR_ATTN_ARGUMENT', 'decodeAttention: cache must be a KVCache');
  if (cache.disposed) throw new AttnError('ERR_ATTN_DISPOSED', 'decodeAttention: the cache was disposed');
  const q = tensorArg('q', q_);
  if (q.device !== 'cpu') throw new AttnError('ERR_ATTN_DEVICE', `decodeAttention: q is on ${q.device} but the cache is on cpu`);
  if (q.dtype !== cache.dtype) throw new AttnError('ERR_ATTN_DTYPE', `decodeAttention: q must have the cache's dtype ${cache.dtype}, got ${q.dtype}`);
  const s = q.shape;
  if (s.length !== 4 || s[0] !== cache.batch || s[3] !== cache.headDim || s[1] % cache.kvHeads !== 0 || s[1] === 0) {
    throw new AttnError('ERR_ATTN_SHAPE', `decodeAttention: q must have shape [B=${cache.batch}, Hq (a multiple of kvHeads=${cache.kvHeads}), Sq, headDim=${cache.headDim}], got [${s.join(', ')}]`);
  }
  const signal = signalArg(o.signal);
  let out: Tensor;
  if (o.out !== undefined && o.out !== null) {
    out = tensorArg('out', o.out);
    if (out.shape.length !== 4 || out.shape.some((n, i) => n !== s[i])) {
      throw new AttnError('ERR_ATTN_SHAPE', `decodeAttention: out must have shape [${s.join(', ')}], got [${out.shape.join(', ')}]`);
    }
    if (out.device !== 'cpu') throw new AttnError('ERR_ATTN_DEVICE', `decodeAttention: out is on ${out.device} but the cache is on cpu`);
  } else {
    out = Tensor.empty([...s], { dtype: q.dtype });
  }
  const lse = o.returnLse ? Tensor.empty([s[0], s[1], s[2]], { dtype: 'float32' }) : undefined;
  const per: AttentionOptions = {
    causal: true, scale: o.scale, window: o.window, sinks: o.sinks, softcap: o.softcap, alibiSlopes: o.alibiSlopes,
    sinkLogits: o.sinkLogits, returnLse: o.returnLse,
  };
  return { q, cache, out, lse, per, signal };
}

function sequenceCall(m: DecodePlan, b: number, k: TypedArray, v: TypedArray): [Tensor, Tensor, Tensor, AttentionOptions] {
  const c = m.cache, n = c.length(b);
  const shape = [1, c.kvHeads, n, c.headDim];
  const kt = Tensor.from(k.subarray(0, c.kvHeads * n * c.headDim), shape, { dtype: c.dtype });
  const vt = Tensor.from(v.subarray(0, c.kvHeads * n * c.headDim), shape, { dtype: c.dtype });
  return [m.q.slice(0, b, b + 1), kt, vt, { ...m.per, out: m.out.slice(0, b, b + 1) }];
}

function storeLse(m: DecodePlan, b: number, r: Tensor | AttentionWithLse): void {
  if (!m.lse) return;
  const rows = m.q.shape[1] * m.q.shape[2];
  (m.lse.data as Float32Array).set((r as AttentionWithLse).lse.data as Float32Array, b * rows);
}

function buffers(c: KVCache, n: number): [TypedArray, TypedArray] {
  const Ctor = arrayTypeOf(c.dtype) as Float32ArrayConstructor | Uint16ArrayConstructor;
  const size = c.kvHeads * Math.max(n, 1) * c.headDim;
  return [new Ctor(size), new Ctor(size)];
}

function maxLength(c: KVCache): number {
  let n = 0;
  for (let b = 0; b < c.batch; b++) n = Math.max(n, c.length(b));
  return n;
}

/**
 * Attention of the new queries q [B, Hq, Sq_new, D] over each sequence's cached keys and values,
 * on the calling thread. Query i of sequence b sits at position length(b) - Sq_new + i (the new
 * tokens must already be appended) and sees keys j <= that position (causal, bottom-right).
 */
export function decodeAttentionSync(q: Tensor, cache: KVCache, opts: DecodeAttentionOptions & { returnLse: true }): AttentionWithLse;
export function decodeAttentionSync(q: Tensor, cache: KVCache, opts?: DecodeAttentionOptions): Tensor;
export function decodeAttentionSync(q: Tensor, cache: KVCache, opts?: DecodeAttentionOptions): Tensor | AttentionWithLse {
  try {
    const m = plan(q, cache, opts);
    if (m.signal?.aborted) throw abortedError('decodeAttention');
    const [k, v] = buffers(m.cache, maxLength(m.cache));
    for (let b = 0; b < m.cache.batch; b++) {
      m.cache.gatherInto(b, k, v);
      storeLse(m, b, attentionSync(...sequenceCall(m, b, k, v)));
    }
    return m.lse ? { out: m.out, lse: m.lse } : m.out;
  } catch (e) {
    throw asAttnError(e);
  }
}

/** decodeAttentionSync off the JS thread (attnkit's pool). Bad input rejects; never throws. */
export function decodeAttention(q: Tensor, cache: KVCache, opts: DecodeAttentionOptions & { returnLse: true }): Promise<AttentionWithLse>;
export function decodeAttention(q: Tensor, cache: KVCache, opts?: DecodeAttentionOptions): Promise<Tensor>;
export async function decodeAttention(q: Tensor, cache: KVCache, opts?: DecodeAttentionOptions): Promise<Tensor | AttentionWithLse> {
  try {
    const m = plan(q, cache, opts);
    if (m.signal?.aborted) throw abortedError('decodeAttention');
    // Gathered now, so that appends made while the call runs do not change what it reads.
    const calls = [];
    for (let b = 0; b < m.cache.batch; b++) {
      const [k, v] = buffers(m.cache, m.cache.length(b));
      m.cache.gatherInto(b, k, v);
      const [qb, kb, vb, o] = sequenceCall(m, b, k, v);
      calls.push(attention(qb, kb, vb, { ...o, signal: m.signal }).then((r) => storeLse(m, b, r)));
    }
    await Promise.all(calls);
    return m.lse ? { out: m.out, lse: m.lse } : m.out;
  } catch (e) {
    throw asAttnError(e);
  }
}
