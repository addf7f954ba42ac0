'use strict';
// attention() runs off the JS thread: a Promise, a responsive event loop, AbortSignal support,
// concurrency with bitwise-identical results, and thread-count changes.
const { monitorEventLoopDelay } = require('perf_hooks');
const { getEventListeners } = require('events');
const { isPromise } = require('util').types; // realm-independent (jest's sandbox has its own Promise)
const { Tensor, AttnError, attention, attentionSync, backendInfo, setNumThreads, toFloat16, toBFloat16 } = require('..');

let seed = 4242;
function rand() { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; return seed / 4294967296 * 2 - 1; }
// Random values; large arrays tile a random block (globals such as Math are slow inside jest's vm
// context, so per-element random generation of tens of millions of values would take seconds).
function f32(n) {
  const a = new Float32Array(n);
  const m = Math.min(n, 65521); // prime block: tiles do not align with rows
  for (let i = 0; i < m; i++) a[i] = rand();
  for (let filled = m; filled < n; filled *= 2) a.copyWithin(filled, 0, Math.min(filled, n - filled));
  return a;
}
function bitsEqual(a, b) {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const S = 2048, D = 64;
function qkv(H) {
  const n = H * S * D;
  return { q: Tensor.from(f32(n), [1, H, S, D]), k: Tensor.from(f32(n), [1, H, S, D]), v: Tensor.from(f32(n), [1, H, S, D]) };
}

const originalThreads = backendInfo().cpu.threads;
let H1s; // heads for a call of about one second on this machine
let big; // { q, k, v } of that size

beforeAll(() => {
  const { q, k, v } = qkv(4);
  attentionSync(q, k, v); // warm-up
  const t0 = performance.now();
  attentionSync(q, k, v);
  const perHead = (performance.now() - t0) / 4;
  H1s = Math.max(2, Math.min(256, Math.round(1000 / perHead)));
  big = qkv(H1s);
});
afterAll(() => setNumThreads(originalThreads));

test('attention returns a Promise that resolves to the output tensor', async () => {
  const { q, k, v } = qkv(2);
  const p = attention(q, k, v);
  expect(isPromise(p)).toBe(true);
  const out = await p;
  expect(out).toBeInstanceOf(Tensor);
  expect([...out.shape]).toEqual([1, 2, S, D]);
  expect(bitsEqual(out.data, attentionSync(q, k, v).data)).toBe(true);
  const r = await attention(q, k, v, { returnLse: true });
  expect(r.out).toBeInstanceOf(Tensor);
  expect([...r.lse.shape]).toEqual([1, 2, S]);
});

test('a ~1 s call does not block the event loop (p99 delay <= 10 ms)', async () => {
  // Up to three attempts: a call that ran on the JS thread would show ~1 s delays every time;
  // one attempt can be spoiled by other processes competing for this machine's cores.
  const attempts = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const h = monitorEventLoopDelay({ resolution: 1 });
    let ticks = 0;
    const timer = setInterval(() => { ticks++; }, 5);
    h.enable();
    const t0 = performance.now();
    const p = attention(big.q, big.k, big.v);
    const afterCall = performance.now() - t0; // time the call itself held the JS thread
    await p;
    const ms = performance.now() - t0;
    h.disable();
    clearInterval(timer);
    const p99 = h.percentile(99) / 1e6;
    attempts.push({ ms: Math.round(ms), p99, max: h.max / 1e6, ticks, afterCall });
    expect(afterCall).toBeLessThan(50); // returns at once
    expect(ticks).toBeGreaterThan((ms / 5) * 0.5); // the loop really kept running timers
    if (p99 <= 10) break;
  }
  const best = Math.min(...attempts.map((a) => a.p99));
  if (!(best <= 10)) throw new Error(`event loop p99 delay above 10 ms in every attempt: ${JSON.stringify(attempts)}`);
  expect(attempts[0].ms).toBeGreaterThan(200); // the call was long enough to mean something
});

describe('AbortSignal', () => {
  test('abort mid-run rejects with ERR_ATTN_ABORTED well before the call would finish', async () => {
    const t0 = performance.now();
    await attention(big.q, big.k, big.v);
    const full = performance.now() - t0;

    const ac = new AbortController();
    const out = Tensor.empty([1, H1s, S, D]);
    const t1 = performance.now();
    const p = attention(big.q, big.k, big.v, { signal: ac.signal, out });
    setTimeout(() => ac.abort(), Math.min(100, full / 5));
    const err = await p.then(() => null, (e) => e);
    const took = performance.now() - t1;
    expect(err).toBeInstanceOf(AttnError);
    expect(err.code).toBe('ERR_ATTN_ABORTED');
    if (!(took < full * 0.5)) throw new Error(`aborted call took ${took.toFixed(0)} ms; the full call takes ${full.toFixed(0)} ms`);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);

    // the pool is not wedged: the next call is complete and correct
    const { q, k, v } = qkv(2);
    expect(bitsEqual((await attention(q, k, v, { signal: new AbortController().signal })).data, attentionSync(q, k, v).data)).toBe(true);
  });

  test('abort() with a reason still rejects with ERR_ATTN_ABORTED', async () => {
    const ac = new AbortController();
    const p = attention(big.q, big.k, big.v, { signal: ac.signal });
    await sleep(20);
    ac.abort(new Error('user went away'));
    const err = await p.then(() => null, (e) => e);
    expect(err).toBeInstanceOf(AttnError);
    expect(err.code).toBe('ERR_ATTN_ABORTED');
  });

  test('an AbortSignal.timeout() signal aborts a long call', async () => {
    const t0 = performance.now();
    const err = await attention(big.q, big.k, big.v, { signal: AbortSignal.timeout(50) }).then(() => null, (e) => e);
    expect(err).toBeInstanceOf(AttnError);
    expect(err.code).toBe('ERR_ATTN_ABORTED');
    expect(performance.now() - t0).toBeLessThan(800);
  });

  test('abort after completion is harmless', async () => {
    const unhandled = [];
    const onUnhandled = (e) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const { q, k, v } = qkv(2);
      const ac = new AbortController();
      const out = await attention(q, k, v, { signal: ac.signal });
      const snapshot = out.data.slice();
      expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0); // the library removed its listener
      ac.abort();
      await sleep(20);
      expect(bitsEqual(out.data, snapshot)).toBe(true);
      expect(bitsEqual(out.data, attentionSync(q, k, v).data)).toBe(true);
      expect(unhandled).toEqual([]);
      // the same (now aborted) signal makes later calls reject, sync and async
      const err = await attention(q, k, v, { signal: ac.signal }).then(() => null, (e) => e);
      expect(err && err.code).toBe('ERR_ATTN_ABORTED');
      expect(() => attentionSync(q, k, v, { signal: ac.signal })).toThrow(expect.objectContaining({ code: 'ERR_ATTN_ABORTED' }));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  test('a signal shared by many calls: all abort, none leak listeners', async () => {
    const ac = new AbortController();
    const ps = [];
    for (let i = 0; i < 4; i++) ps.push(attention(big.q, big.k, big.v, { signal: ac.signal }).then(() => 'ok', (e) => e.code));
    await sleep(30);
    ac.abort();
    const codes = await Promise.all(ps);
    expect(codes.every((c) => c === 'ERR_ATTN_ABORTED')).toBe(true);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });
});

test('50 concurrent async calls of mixed sizes and options equal the sync results bitwise', async () => {
  const jobs = [];
  for (let i = 0; i < 50; i++) {
    const dtype = ['float32', 'float32', 'float16', 'bfloat16'][i % 4];
    const conv = dtype === 'float16' ? toFloat16 : dtype === 'bfloat16' ? toBFloat16 : (x) => x;
    const B = 1 + (i % 2), Hkv = 1 + (i % 3), Hq = Hkv * (1 + (i % 2)), Sq = 1 + ((i * 37) % 130), Sk = Sq + ((i * 11) % 40), Dh = [16, 32, 64, 80][i % 4];
    const mk = (shape, bshd) => {
      const a = conv(f32(shape.reduce((x, y) => x * y, 1)));
      if (!bshd) return Tensor.from(a, shape, { dtype });
      const [b, h, s, d] = shape;
      return Tensor.from(a, [b, s, h, d], { dtype }).transpose(1, 2);
    };
    const q = mk([B, Hq, Sq, Dh], i % 3 === 0), k = mk([B, Hkv, Sk, Dh], i % 5 === 0), v = mk([B, Hkv, Sk, Dh], i % 3 === 1);
    const opts = {};
    if (i % 2) opts.causal = true;
    if (i % 7 === 0) opts.window = [5 + i, i % 3 ? 0 : -1];
    if (i % 5 === 1) opts.softcap = 15;
    if (i % 6 === 2) opts.alibiSlopes = Float32Array.from({ length: Hq }, (_, h) => 2 ** -(h + 1));
    if (i % 8 === 3) opts.sinkLogits = f32(Hq);
    if (i % 4 === 1) opts.returnLse = true;
    if (i % 9 === 4) opts.mask = Tensor.from(Uint8Array.from({ length: Sq * Sk }, () => (rand() > -0.6 ? 1 : 0)), [Sq, Sk]);
    if (i % 10 === 6) opts.bias = Tensor.from(f32(Hq * Sk), [1, Hq, 1, Sk]);
    if (i % 11 === 7) opts.scale = 0.05;
    jobs.push({ q, k, v, opts });
  }
  const syncOut = jobs.map(({ q, k, v, opts }) => {
    const r = attentionSync(q, k, v, opts);
    return opts.returnLse ? { out: r.out.data.slice(), lse: r.lse.data.slice() } : { out: r.data.slice() };
  });
  const asyncOut = await Promise.all(jobs.map(({ q, k, v, opts }) => attention(q, k, v, opts)));
  jobs.forEach(({ opts }, i) => {
    const a = asyncOut[i];
    const out = opts.returnLse ? a.out : a;
    const as16 = out.data instanceof Uint16Array;
    const same = as16 ? out.data.every((x, j) => x === syncOut[i].out[j]) && out.data.length === syncOut[i].out.length : bitsEqual(out.data, syncOut[i].out);
    if (!same) throw new Error(`job ${i} (${out.dtype}, ${JSON.stringify(Object.keys(opts))}) differs from its sync result`);
    if (opts.returnLse && !bitsEqual(a.lse.data, syncOut[i].lse)) throw new Error(`job ${i}: lse differs`);
  });
});

describe('setNumThreads', () => {
  test('setNumThreads(1) and back: same results, the pool follows', async () => {
    const { q, k, v } = qkv(4);
    const ref = attentionSync(q, k, v, { causal: true }).data;
    setNumThreads(1);
    expect(backendInfo().cpu.threads).toBe(1);
    expect(bitsEqual(attentionSync(q, k, v, { causal: true }).data, ref)).toBe(true);
    expect(bitsEqual((await attention(q, k, v, { causal: true })).data, ref)).toBe(true);
    setNumThreads(originalThreads);
    expect(backendInfo().cpu.threads).toBe(originalThreads);
    expect(bitsEqual((await attention(q, k, v, { causal: true })).data, ref)).toBe(true);
    setNumThreads(originalThreads + 2); // more threads than cores is allowed
    expect(backendInfo().cpu.threads).toBe(originalThreads + 2);
    expect(bitsEqual((await attention(q, k, v, { causal: true })).data, ref)).toBe(true);
    setNumThreads(originalThreads);
  });

  test('changing the thread count while async calls are in flight neither crashes nor corrupts results', async () => {
    const { q, k, v } = qkv(8);
    const ref = attentionSync(q, k, v).data.slice();
    const ps = [];
    for (let i = 0; i < 6; i++) ps.push(attention(q, k, v));
    for (const n of [1, 3, originalThreads]) { await sleep(5); setNumThreads(n); }
    const outs = await Promise.all(ps);
    for (const o of outs) expect(bitsEqual(o.data, ref)).toBe(true);
    expect(backendInfo().cpu.threads).toBe(originalThreads);
  });

  test('setNumThreads does not block the event loop while a long async call runs', async () => {
    const p = attention(big.q, big.k, big.v);
    await sleep(20);
    const t0 = performance.now();
    setNumThreads(1);
    const blocked = performance.now() - t0;
    await p;
    setNumThreads(originalThreads);
    if (blocked > 50) throw new Error(`setNumThreads(1) blocked the JS thread for ${blocked.toFixed(0)} ms, until the running call finished`);
  });
});
