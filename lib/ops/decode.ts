// Decode attention over a paged KV cache (issue 6, CPU side).
//
// KVCache keeps K and V in a pool of fixed-size pages, as vLLM's PagedAttention and FlashInfer do:
// maxPages pages, each [kvHeads, pageSize, headDim] for K and the same for V, and a page table per
// sequence. Page layout [Hkv, P, D] (FlashInfer's "HND" layout) rather than [P, Hkv, D] ("NHD"):
// the decode kernel walks one kv head's keys at a time (every query head of the GQA group shares
// that pass), and in HND a page holds each head's P rows as one contiguous P*D block, so a page is
// one streaming read per head instead of P reads strided by Hkv*D.
//
// Memory: on the CPU the pools are ordinary JS typed arrays (Float32Array, or Uint16Array for
// float16 and bfloat16) owned by the cache object; the page tables, free list and lengths are TS
// data. The GC frees them; dispose() drops them at once and makes every later use an
// ERR_ATTN_DISPOSED. A cache on a GPU (device 'cuda' / 'cuda:N') keeps its pools in device memory
// (device tensors) together with device copies of the page table and lengths, which the GPU
// kernels read (native/cuda/decode); the TS page table stays the one the cache decides with and
// validation reads, and each append uploads the entries it changed. Eviction compacts on the device
// too (the kept rows gathered out, then written back from position 0); accumulateScores adds into a
// device score array, which H2O's ranking and the compaction's score moves read through a host copy.
//
// decodeAttention: the new queries q [B, Hq, Sq_new, D] are the last Sq_new positions of each
// sequence (bottom-right aligned, causal among themselves). The native kernel (native/cpu/decode)
// walks the page table in place: one work item per (sequence, kv head, key chunk) in which every
// query head of the GQA group and every new query share one pass over the pages; long sequences
// with few (sequence, kv head) pairs are split into chunks on different pool threads and merged by
// their LSE (Flash-Decoding), with the attention-state merge of native/cpu/merge.
//
// Scores (H2O): with accumulateScores, each key's softmax probability, summed over the query heads
// of its kv head and the new queries, is added to the cache's per-slot score array
// [maxPages, kvHeads, pageSize] float32. The split chunks only know their own partial LSE, so the
// probabilities are computed after the merge, in a second pass that re-reads K only (no V, no
// attention matrix); scores live beside their rows and move with them on compaction.
import { AttnError, asAttnError } from '../errors';
import { FloatDType, TypedArray, arrayTypeOf, isFloatDType } from '../dtype';
import { Tensor, kNative } from '../tensor';
import type { AttentionOptions, AttentionWithLse } from './attention';
import { native, DecodeArg, DecodeArgs, DeviceHandle } from '../native/binding';
import {
  DECODE_DESCRIPTOR_LENGTH, DECODE_OPTIONS, DecodeOption, DecodeSlot, KV_APPEND_DESCRIPTOR_LENGTH, KvAppendSlot,
  writeTensorRecord,
} from '../native/descriptor';
import { parseDevice, requireCudaDevice } from '../device';
import {
  abortedError, float32ArrayArg, startNativeAsync, int32ArrayArg, numberArg, signalArg, tensorArg,
} from './args';

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
  /** 'cpu' (default), 'cuda' or 'cuda:N': where the pools live and decodeAttention runs. */
  device?: string;
}

/**
 * StreamingLLM: keep the first `sinks` tokens and the last `window` tokens of a sequence; the kept
 * tokens become a contiguous sequence (positions re-numbered 0..kept-1, as StreamingLLM does with
 * its rolling cache), and pages no longer needed go back to the pool.
 */
export interface StreamingPolicy { kind: 'streaming'; sinks: number; window: number }
/**
 * H2O (heavy hitters): keep the last `recent` tokens plus the `heavy` earlier tokens with the
 * largest accumulated attention mass (decodeAttention with accumulateScores). The cache keeps one
 * token set per sequence for all kv heads (every head has the same length), so a token's mass is
 * its scores summed over the kv heads; ties keep the earlier token.
 */
export interface H2OPolicy { kind: 'h2o'; heavy: number; recent: number }
export type EvictionPolicy = StreamingPolicy | H2OPolicy;

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
  /** 'cpu' or 'cuda:N'. */
  readonly device: string;

  #disposed = false;
  /** CPU pools. */
  #k: TypedArray | null = null;
  #v: TypedArray | null = null;
  /** Device pools, the device copies of #table and #len, and the scores once used (a cache on a GPU). */
  #dev: { k: Tensor; v: Tensor; table: Tensor; lengths: Tensor; scores: Tensor | null } | null = null;
  /** Stack of free page ids; #free[0..#freeTop) are free. */
  #free: Int32Array;
  #freeTop: number;
  /** Page table: #pages[b][i] holds tokens [i * pageSize, (i + 1) * pageSize) of sequence b. */
  #pages: number[][];
  /** The same page table as [batch, maxPages] int32, for the kernel. */
  #table: Int32Array;
  #len: Int32Array;
  /** Accumulated attention mass per slot, [maxPages, kvHeads, pageSize]; made on first use. */
  #scores: Float32Array | null = null;
  /** Async decode calls in flight: eviction and reset wait for none. */
  #inFlight = 0;

  constructor(opts: KVCacheOptions) {
    if (typeof opts !== 'object' || opts === null) throw new AttnError('ERR_ATTN_ARGUMENT', 'KVCache options must be an object');
    const where = parseDevice(opts.device, 'KVCache');
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
    if (where.kind === 'cuda') {
      requireCudaDevice(where.index, 'KVCache');
      this.device = `cuda:${where.index}`;
      const shape = [this.maxPages, this.kvHeads, this.pageSize, this.headDim], device = this.device;
      const made: Tensor[] = [];
      try {
        // Zero-filled so a pool never holds stale device memory; ERR_ATTN_OOM when the GPU is full.
        for (const [dims, dt] of [[shape, dtype], [shape, dtype], [[this.batch, this.maxPages], 'int32'], [[this.batch], 'int32']] as const) {
          made.push(Tensor.zeros([...dims], { dtype: dt, device }));
        }
      } catch (e) {
        for (const t of made) t.dispose();
        throw e;
      }
      this.#dev = { k: made[0], v: made[1], table: made[2], lengths: made[3], scores: null };
    } else {
      this.device = 'cpu';
      const Ctor = arrayTypeOf(dtype) as Float32ArrayConstructor | Uint16ArrayConstructor;
      try {
        this.#k = new Ctor(elems);
        this.#v = new Ctor(elems);
      } catch (e) {
        throw new AttnError('ERR_ATTN_OOM', `KVCache: could not allocate 2 x ${elems} ${dtype} elements (maxPages ${this.maxPages} x kvHeads ${this.kvHeads} x pageSize ${this.pageSize} x headDim ${this.headDim})`, { cause: e });
      }
    }
    this.#free = new Int32Array(this.maxPages);
    // Lowest page ids are handed out first.
    for (let i = 0; i < this.maxPages; i++) this.#free[i] = this.maxPages - 1 - i;
    this.#freeTop = this.maxPages;
    this.#pages = Array.from({ length: this.batch }, () => []);
    this.#len = new Int32Array(this.batch);
    this.#table = new Int32Array(this.batch * this.maxPages);
  }

  get disposed(): boolean { return this.#disposed; }
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
    this.#idle('reset');
    this.#release(s, 0);
    this.#len[s] = 0;
    this.#uploadLengths();
  }

  /** A device cache's kernels read their own copy of the lengths: sent after every change of #len. */
  #uploadLengths(): void {
    if (this.#dev) native().cudaCopyToDevice(this.#dev.lengths[kNative]() as DeviceHandle, 0, this.#len, 0, this.batch * 4);
  }

  dispose(): void {
    if (this.#dev) for (const t of Object.values(this.#dev)) t?.dispose();
    this.#disposed = true;
    this.#dev = null;
    this.#k = null;
    this.#v = null;
    this.#scores = null;
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
    // A device cache's append writes the device table and lengths that an async decode still
    // running on the GPU may read: refused until it settles.
    if (this.#dev) this.#idle('append');
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
    if (this.#dev) {
      this.#appendOnDevice(k, v, lengths);
      return;
    }
    for (let b = 0; b < this.batch; b++) {
      const n = lengths ? lengths[b] : T;
      this.#grow(b, n);
      const pages = this.#pages[b];
      for (let t = 0; t < n; t++) {
        const pos = this.#len[b] + t;
        this.#writeRow(this.#k!, k, b, t, pages[(pos / P) | 0], pos % P);
        this.#writeRow(this.#v!, v, b, t, pages[(pos / P) | 0], pos % P);
      }
      this.#len[b] += n;
    }
  }

  /** Takes pages from the pool until sequence b holds room for n more tokens (the caller checked there are enough). */
  #grow(b: number, n: number): void {
    const P = this.pageSize, pages = this.#pages[b];
    while (pages.length * P < this.#len[b] + n) {
      const page = this.#free[--this.#freeTop];
      this.#table[b * this.maxPages + pages.length] = page;
      pages.push(page);
      this.#scores?.fill(0, page * this.kvHeads * P, (page + 1) * this.kvHeads * P);
      const ds = this.#dev?.scores;
      if (ds) {
        const bytes = this.kvHeads * P * 4;
        native().cudaCopyToDevice(ds[kNative]() as DeviceHandle, page * bytes, new Float32Array(this.kvHeads * P), 0, bytes);
      }
    }
  }

  /**
   * append on a device cache: the new pages' table entries go to the device copy, the rows are
   * scattered into their pages by one kernel (host rows are copied to the device first), then the
   * lengths are uploaded. If the kernel fails, the pages taken are returned and nothing changed.
   */
  #appendOnDevice(k: Tensor, v: Tensor, lengths: Int32Array | null): void {
    const dev = this.#dev!, B = this.batch, W = this.maxPages;
    const starts = this.#len.slice(), counts = new Int32Array(B), had = this.#pages.map((p) => p.length);
    for (let b = 0; b < B; b++) counts[b] = lengths ? lengths[b] : k.shape[2];
    const temps: Tensor[] = [];
    try {
      for (let b = 0; b < B; b++) {
        this.#grow(b, counts[b]);
        const added = this.#pages[b].length - had[b];
        if (added > 0) {
          const at = (b * W + had[b]) * 4;
          native().cudaCopyToDevice(dev.table[kNative]() as DeviceHandle, at, this.#table, at, added * 4);
        }
      }
      const onDevice = (t: Tensor): Tensor => {
        if (t.device !== 'cpu') return t;
        const d = t.toSync(this.device);
        temps.push(d);
        return d;
      };
      const kd = onDevice(k), vd = onDevice(v);
      const desc = new Float64Array(KV_APPEND_DESCRIPTOR_LENGTH);
      writeTensorRecord(desc, KvAppendSlot.K, kd, 'k');
      writeTensorRecord(desc, KvAppendSlot.V, vd, 'v');
      writeTensorRecord(desc, KvAppendSlot.KPool, dev.k, 'cache.k');
      writeTensorRecord(desc, KvAppendSlot.VPool, dev.v, 'cache.v');
      native().kvAppendSync(dev.k[kNative]() as DeviceHandle, dev.v[kNative]() as DeviceHandle, dev.table[kNative]() as DeviceHandle,
        kd[kNative]() as DeviceHandle, vd[kNative]() as DeviceHandle, this.#table, counts, starts, desc);
      for (let b = 0; b < B; b++) this.#len[b] += counts[b];
      this.#uploadLengths();
    } catch (e) {
      this.#len.set(starts);
      for (let b = 0; b < B; b++) this.#release(b, had[b]);
      throw e;
    } finally {
      for (const t of temps) t.dispose();
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
    this.#idle('evict');
    if (typeof policy !== 'object' || policy === null) throw new AttnError('ERR_ATTN_ARGUMENT', 'KVCache.evict: policy must be an object');
    const count = (name: string, v: unknown): number => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new AttnError('ERR_ATTN_ARGUMENT', `KVCache.evict: policy.${name} must be an integer >= 0, got ${String(v)}`);
      return v;
    };
    let keep: (b: number, len: number) => number[] | null;
    if (policy.kind === 'streaming') {
      const sinks = count('sinks', policy.sinks ?? 0), window = count('window', policy.window);
      keep = (_b, len) => len <= sinks + window ? null : [...range(0, sinks), ...range(len - window, len)];
    } else if (policy.kind === 'h2o') {
      const heavy = count('heavy', policy.heavy), recent = count('recent', policy.recent);
      keep = (b, len) => {
        if (len <= heavy + recent) return null;
        const older = len - recent, mass = new Float64Array(older);
        for (let t = 0; t < older; t++) mass[t] = this.#mass(b, t, scores);
        const top = range(0, older).sort((x, y) => mass[y] - mass[x] || x - y).slice(0, heavy).sort((x, y) => x - y);
        return [...top, ...range(older, len)];
      };
    } else {
      throw new AttnError('ERR_ATTN_ARGUMENT', `KVCache.evict: policy.kind must be 'streaming' or 'h2o', got ${String((policy as { kind?: unknown }).kind)}`);
    }
    const seqs = opts?.batch === undefined ? range(0, this.batch) : [this.#seq('evict', opts.batch)];
    const scores = this.#scoresHost();  // H2O's ranking reads it; on a GPU, a host copy
    if (this.#dev) {
      this.#compactOnDevice(range(0, this.batch).map((b) => (seqs.includes(b) ? keep(b, this.#len[b]) : null)), scores);
      return;
    }
    for (const b of seqs) {
      const kept = keep(b, this.#len[b]);
      if (!kept) continue;
      // kept is increasing, so kept[i] >= i: every move goes down (or stays), safe in place.
      kept.forEach((from, to) => this.#moveRow(b, from, to));
      this.#len[b] = kept.length;
      this.#release(b, Math.ceil(this.#len[b] / this.pageSize));
    }
  }

  /**
   * Eviction on a device cache: kept[b] lists the positions sequence b keeps (null: all of them).
   * The kept rows are gathered into a scratch [B, kvHeads, T, headDim] by one kernel and written
   * back from position 0 by the append kernel (two launches in stream order, so a row is read
   * before anything overwrites it), then the pages past the kept rows return to the pool. The
   * scores (a host copy, if the cache has any) move with their rows and go back to the device.
   */
  #compactOnDevice(kept: (number[] | null)[], scores: Float32Array | null): void {
    const dev = this.#dev!, B = this.batch;
    if (kept.every((k) => k === null)) return;
    const T = kept.reduce((n, k) => Math.max(n, k ? k.length : 0), 0);
    const counts = new Int32Array(B), positions = new Int32Array(B * T), starts = new Int32Array(B);
    kept.forEach((k, b) => {
      if (!k) return;
      counts[b] = k.length;
      positions.set(k, b * T);
    });
    if (T > 0) {
      const shape = [B, this.kvHeads, T, this.headDim];
      const k = Tensor.empty(shape, { dtype: this.dtype, device: this.device });
      const v = Tensor.empty(shape, { dtype: this.dtype, device: this.device });
      try {
        const desc = new Float64Array(KV_APPEND_DESCRIPTOR_LENGTH);
        writeTensorRecord(desc, KvAppendSlot.K, k, 'k');
        writeTensorRecord(desc, KvAppendSlot.V, v, 'v');
        writeTensorRecord(desc, KvAppendSlot.KPool, dev.k, 'cache.k');
        writeTensorRecord(desc, KvAppendSlot.VPool, dev.v, 'cache.v');
        const args = [dev.k[kNative]() as DeviceHandle, dev.v[kNative]() as DeviceHandle, dev.table[kNative]() as DeviceHandle,
          k[kNative]() as DeviceHandle, v[kNative]() as DeviceHandle, this.#table, counts] as const;
        native().kvGatherSync(...args, positions, desc);
        native().kvAppendSync(...args, starts, desc);
      } finally {
        k.dispose();
        v.dispose();
      }
    }
    const H = this.kvHeads, P = this.pageSize;
    kept.forEach((k, b) => {
      if (!k) return;
      // kept is increasing, so every score moves down (or stays): safe in place, as #moveRow does.
      const pages = this.#pages[b];
      if (scores) {
        k.forEach((from, to) => {
          const pf = pages[(from / P) | 0], pt = pages[(to / P) | 0];
          for (let h = 0; h < H; h++) scores[(pt * H + h) * P + (to % P)] = scores[(pf * H + h) * P + (from % P)];
        });
      }
      this.#len[b] = k.length;
      this.#release(b, Math.ceil(k.length / P));
    });
    this.#uploadLengths();
    if (scores && dev.scores) native().cudaCopyToDevice(dev.scores[kNative]() as DeviceHandle, 0, scores, 0, scores.byteLength);
  }

  /** Accumulated attention mass of sequence b's tokens, [kvHeads, length(b)] (zeros before any accumulateScores call). */
  scores(b: number): Float32Array {
    this.#live('scores');
    const s = this.#seq('scores', b), n = this.#len[s], P = this.pageSize, H = this.kvHeads;
    const out = new Float32Array(H * n);
    const scores = this.#scoresHost();
    if (!scores) return out;
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < n; t++) out[h * n + t] = scores[(this.#pages[s][(t / P) | 0] * H + h) * P + (t % P)];
    }
    return out;
  }

  /** The per-slot scores in host memory: the CPU cache's own array, a device cache's copied over, or null before any accumulateScores. */
  #scoresHost(): Float32Array | null {
    if (!this.#dev) return this.#scores;
    return this.#dev.scores ? (this.#dev.scores.toSync('cpu').data as Float32Array) : null;
  }

  /**
   * @internal What the kernel reads: pools as [maxPages, kvHeads, pageSize, headDim] tensors, the
   * page table and lengths (host mirror), and for a device cache their device copies.
   */
  nativeState(withScores: boolean): {
    k: Tensor; v: Tensor; table: Int32Array; lengths: Int32Array; scores: Float32Array | DeviceHandle | null;
    deviceTable: DeviceHandle | null; deviceLengths: DeviceHandle | null;
  } {
    if (this.#dev) {
      const d = this.#dev;
      if (withScores && !d.scores) d.scores = Tensor.zeros([this.maxPages, this.kvHeads, this.pageSize], { dtype: 'float32', device: this.device });
      return {
        k: d.k, v: d.v, table: this.#table, lengths: this.#len, scores: withScores ? (d.scores![kNative]() as DeviceHandle) : null,
        deviceTable: d.table[kNative]() as DeviceHandle, deviceLengths: d.lengths[kNative]() as DeviceHandle,
      };
    }
    const shape = [this.maxPages, this.kvHeads, this.pageSize, this.headDim];
    if (withScores && !this.#scores) this.#scores = new Float32Array(this.maxPages * this.kvHeads * this.pageSize);
    return {
      k: Tensor.from(this.#k!, shape, { dtype: this.dtype }), v: Tensor.from(this.#v!, shape, { dtype: this.dtype }),
      table: this.#table, lengths: this.#len, scores: withScores ? this.#scores : null, deviceTable: null, deviceLengths: null,
    };
  }

  /** @internal */
  track(delta: number): void { this.#inFlight += delta; }

  /**
   * Copies of sequence b's keys and values as contiguous tensors [1, kvHeads, length(b), headDim],
   * on the cache's device (a device cache gathers them through a host copy of its pools: a
   * debugging and testing aid, not a fast path).
   */
  contents(b: number): { k: Tensor; v: Tensor } {
    this.#live('contents');
    const s = this.#seq('contents', b);
    const n = this.#len[s];
    const Ctor = arrayTypeOf(this.dtype) as Float32ArrayConstructor | Uint16ArrayConstructor;
    const k = new Ctor(this.kvHeads * n * this.headDim), v = new Ctor(this.kvHeads * n * this.headDim);
    const pools = this.#dev ? { k: this.#dev.k.toSync('cpu').data, v: this.#dev.v.toSync('cpu').data } : { k: this.#k!, v: this.#v! };
    this.#gatherInto(s, k, v, pools.k, pools.v);
    const shape = [1, this.kvHeads, n, this.headDim];
    const kt = Tensor.from(k, shape, { dtype: this.dtype }), vt = Tensor.from(v, shape, { dtype: this.dtype });
    return this.#dev ? { k: kt.toSync(this.device), v: vt.toSync(this.device) } : { k: kt, v: vt };
  }

  /** Sequence b's rows from pools kPool, vPool into k, v laid out [kvHeads, length(b), headDim]. */
  #gatherInto(b: number, k: TypedArray, v: TypedArray, kPool: TypedArray, vPool: TypedArray): void {
    const n = this.#len[b], P = this.pageSize, D = this.headDim, H = this.kvHeads;
    const pages = this.#pages[b];
    for (let i = 0; i * P < n; i++) {
      const rows = Math.min(P, n - i * P);
      for (let h = 0; h < H; h++) {
        const src = ((pages[i] * H + h) * P) * D, dst = (h * n + i * P) * D;
        k.set(kPool.subarray(src, src + rows * D), dst);
        v.set(vPool.subarray(src, src + rows * D), dst);
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
      if (this.#scores) this.#scores[(pt * H + h) * P + (to % P)] = this.#scores[(pf * H + h) * P + (from % P)];
    }
  }

  /** Returns sequence b's pages from index `keep` on to the pool. */
  #release(b: number, keep: number): void {
    const pages = this.#pages[b];
    while (pages.length > keep) this.#free[this.#freeTop++] = pages.pop()!;
  }

  #mass(b: number, t: number, scores: Float32Array | null): number {
    if (!scores) return 0;
    const P = this.pageSize, H = this.kvHeads, page = this.#pages[b][(t / P) | 0];
    let m = 0;
    for (let h = 0; h < H; h++) m += scores[(page * H + h) * P + (t % P)];
    return m;
  }

  #idle(what: string): void {
    if (this.#inFlight > 0) throw new AttnError('ERR_ATTN_ARGUMENT', `KVCache.${what}: an async decodeAttention on this cache is still running; await it first`);
  }

  #live(what: string): void {
    if (this.#disposed) throw new AttnError('ERR_ATTN_DISPOSED', `KVCache.${what}: the cache was disposed`);
  }

  #seq(what: string, b: unknown): number {
    if (typeof b !== 'number' || !Number.isInteger(b) || b < 0 || b >= this.batch) {
      throw new AttnError('ERR_ATTN_ARGUMENT', `KVCache.${what}: sequence index b must be an integer in [0, ${this.batch}), got ${String(b)}`);
    }
    return b;
  }

  #rowsArg(name: string, t_: unknown): Tensor {
    const t = tensorArg(name, t_);
    // A device cache takes rows from the host too (copied over first); a CPU cache only host rows.
    if (t.device !== this.device && !(this.#dev && t.device === 'cpu')) {
      throw new AttnError('ERR_ATTN_DEVICE', `KVCache.append: ${name} is on ${t.device} but the cache is on ${this.device}`);
    }
    if (t.dtype !== this.dtype) throw new AttnError('ERR_ATTN_DTYPE', `KVCache.append: ${name} must have the cache's dtype ${this.dtype}, got ${t.dtype}`);
    const s = t.shape;
    if (s.length !== 4 || s[0] !== this.batch || s[1] !== this.kvHeads || s[3] !== this.headDim) {
      throw new AttnError('ERR_ATTN_SHAPE', `KVCache.append: ${name} must have shape [B=${this.batch}, kvHeads=${this.kvHeads}, T, headDim=${this.headDim}], got [${s.join(', ')}]`);
    }
    return t;
  }
}

function range(a: number, b: number): number[] {
  const r: number[] = [];
  for (let i = a; i < b; i++) r.push(i);
  return r;
}

export interface DecodeAttentionOptions extends Pick<AttentionOptions,
  'scale' | 'window' | 'sinks' | 'softcap' | 'alibiSlopes' | 'sinkLogits' | 'out' | 'returnLse' | 'signal'> {
  /** H2O: add each key's attention probability (summed over its kv head's query heads and the new queries) to the cache's scores. */
  accumulateScores?: boolean;
  /** Key chunks per (sequence, kv head) (split-KV); default chosen from the pool size and the lengths. */
  splits?: number;
}

interface Marshalled { args: DecodeArgs; out: Tensor; lse: Tensor | undefined; signal: AbortSignal | undefined }

function marshal(q_: unknown, cache: unknown, opts: DecodeAttentionOptions | undefined, snapshot: boolean): Marshalled {
  if (opts !== undefined && (typeof opts !== 'object' || opts === null)) throw new AttnError('ERR_ATTN_ARGUMENT', 'decodeAttention options must be an object');
  const o = opts ?? {};
  if (!(cache instanceof KVCache)) throw new AttnError('ERR_ATTN_ARGUMENT', 'decodeAttention: cache must be a KVCache');
  if (cache.disposed) throw new AttnError('ERR_ATTN_DISPOSED', 'decodeAttention: the cache was disposed');
  const q = tensorArg('q', q_);
  if (q.device !== cache.device) throw new AttnError('ERR_ATTN_DEVICE', `decodeAttention: q is on ${q.device} but the cache is on ${cache.device}`);
  if (q.dtype !== cache.dtype) throw new AttnError('ERR_ATTN_DTYPE', `decodeAttention: q must have the cache's dtype ${cache.dtype}, got ${q.dtype}`);
  const s = q.shape;
  if (s.length !== 4 || s[0] !== cache.batch || s[3] !== cache.headDim || s[1] % cache.kvHeads !== 0 || s[1] === 0) {
    throw new AttnError('ERR_ATTN_SHAPE', `decodeAttention: q must have shape [B=${cache.batch}, Hq (a multiple of kvHeads=${cache.kvHeads}), Sq, headDim=${cache.headDim}], got [${s.join(', ')}]`);
  }
  const signal = signalArg(o.signal);
  let out: Tensor;
  if (o.out !== undefined && o.out !== null) {
    out = tensorArg('out', o.out);
    if (out.device !== cache.device) throw new AttnError('ERR_ATTN_DEVICE', `decodeAttention: out is on ${out.device} but the cache is on ${cache.device}`);
    if (out.shape.length !== 4 || out.shape.some((n, i) => n !== s[i])) {
      throw new AttnError('ERR_ATTN_SHAPE', `decodeAttention: out must have shape [${s.join(', ')}], got [${out.shape.join(', ')}]`);
    }
  } else {
    out = Tensor.empty([...s], { dtype: q.dtype, device: cache.device });
  }
  const lse = o.returnLse ? Tensor.empty([s[0], s[1], s[2]], { dtype: 'float32', device: cache.device }) : undefined;
  const st = cache.nativeState(o.accumulateScores === true);
  const d = new Float64Array(DECODE_DESCRIPTOR_LENGTH);
  writeTensorRecord(d, DecodeSlot.Q, q, 'q');
  writeTensorRecord(d, DecodeSlot.Out, out, 'out');
  writeTensorRecord(d, DecodeSlot.KPool, st.k, 'cache.k');
  writeTensorRecord(d, DecodeSlot.VPool, st.v, 'cache.v');
  const opt = DECODE_OPTIONS;
  if (o.scale !== undefined) { d[opt + DecodeOption.HasScale] = 1; d[opt + DecodeOption.Scale] = numberArg('scale', o.scale, 0); }
  if (o.window !== undefined && o.window !== null) {
    if (!Array.isArray(o.window) || o.window.length !== 2) throw new AttnError('ERR_ATTN_ARGUMENT', 'window must be [left, right]');
    d[opt + DecodeOption.HasWindow] = 1;
    d[opt + DecodeOption.WindowLeft] = numberArg('window[0]', o.window[0], -1);
    d[opt + DecodeOption.WindowRight] = numberArg('window[1]', o.window[1], -1);
  }
  d[opt + DecodeOption.Sinks] = numberArg('sinks', o.sinks, 0);
  d[opt + DecodeOption.Softcap] = numberArg('softcap', o.softcap, 0);
  d[opt + DecodeOption.Splits] = numberArg('splits', o.splits, 0);
  // An async call reads the page table and lengths as they are now (appends may follow while it
  // runs; eviction and reset are refused until it settles).
  const table = snapshot ? st.table.slice() : st.table, lengths = snapshot ? st.lengths.slice() : st.lengths;
  const args: DecodeArgs = [
    q[kNative](), out[kNative](), st.k[kNative](), st.v[kNative](), table, lengths, float32ArrayArg('alibiSlopes', o.alibiSlopes),
    float32ArrayArg('sinkLogits', o.sinkLogits), lse ? (lse[kNative]() as Float32Array | DeviceHandle) : null, st.scores, d, null, -1,
    st.deviceTable, st.deviceLengths,
  ];
  return { args, out, lse, signal };
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
    const m = marshal(q, cache, opts, false);
    if (m.signal?.aborted) throw abortedError('decodeAttention');
    native().decodeAttentionSync(...m.args);
    return m.lse ? { out: m.out, lse: m.lse } : m.out;
  } catch (e) {
    throw asAttnError(e);
  }
}

/** decodeAttentionSync off the JS thread (attnkit's pool). Bad input rejects; never throws. */
export function decodeAttention(q: Tensor, cache: KVCache, opts: DecodeAttentionOptions & { returnLse: true }): Promise<AttentionWithLse>;
export function decodeAttention(q: Tensor, cache: KVCache, opts?: DecodeAttentionOptions): Promise<Tensor>;
export function decodeAttention(q: Tensor, cache: KVCache, opts?: DecodeAttentionOptions): Promise<Tensor | AttentionWithLse> {
  try {
    const m = marshal(q, cache, opts, true);
    const slots = { lastData: DecodeArg.LastData, abortFlag: DecodeArg.AbortFlag, resizable: DecodeArg.Resizable };
    const pending = startNativeAsync(m.args, slots, m.signal, 'decodeAttention', () => native().decodeAttentionAsync(...m.args));
    cache.track(1);
    return pending.then(() => { cache.track(-1); return m.lse ? { out: m.out, lse: m.lse } : m.out; },
      (e: unknown) => { cache.track(-1); throw asAttnError(e); });
  } catch (e) {
    return Promise.reject(asAttnError(e));
  }
}
