'use strict';
// Zero-copy: out lands in the caller's own memory (any strides), and strided inputs such as
// Tensor.from(bshd, [B, S, H, D]).transpose(1, 2) are read in place, never copied whole.
const path = require('path');
const { spawnSync } = require('child_process');
const { Tensor, attention, attentionSync, toFloat16, toBFloat16 } = require('..');
const { memoryTest } = require('./helpers/memory-test');

let seed = 777;
function rand() { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; return seed / 4294967296 * 2 - 1; }
const f32 = (n) => Float32Array.from({ length: n }, rand);
const bitsEqual = (a, b) => {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
};
const SENTINEL = -31337.5;

// Logical element offsets of a view (row-major), independent of the library.
function offsets(t) {
  const out = [];
  const rec = (d, o) => {
    if (d === t.shape.length) { out.push(o); return; }
    for (let i = 0; i < t.shape[d]; i++) rec(d + 1, o + i * t.strides[d]);
  };
  rec(0, t.offset);
  return out;
}

const B = 2, HQ = 4, HKV = 2, S = 37, SK = 45, D = 16, DV = 24;
function bshdInputs(dtype = 'float32') {
  const conv = dtype === 'float16' ? toFloat16 : dtype === 'bfloat16' ? toBFloat16 : (x) => x;
  const qd = conv(f32(B * S * HQ * D)), kd = conv(f32(B * SK * HKV * D)), vd = conv(f32(B * SK * HKV * DV));
  return {
    arrays: { qd, kd, vd },
    q: Tensor.from(qd, [B, S, HQ, D], { dtype }).transpose(1, 2),
    k: Tensor.from(kd, [B, SK, HKV, D], { dtype }).transpose(1, 2),
    v: Tensor.from(vd, [B, SK, HKV, DV], { dtype }).transpose(1, 2),
  };
}

describe('out is written in place', () => {
  test('into the caller\'s own Float32Array (sync and async)', async () => {
    const { q, k, v } = bshdInputs();
    const ref = attentionSync(q, k, v, { causal: true }).toFloat32Array();
    for (const run of [(o) => attentionSync(q, k, v, o), (o) => attention(q, k, v, o)]) {
      const mem = new Float32Array(B * HQ * S * DV).fill(NaN); // poisoned
      const out = Tensor.from(mem, [B, HQ, S, DV]);
      const r = await run({ causal: true, out });
      expect(r).toBe(out);
      expect(r.data).toBe(mem);
      expect(mem.every(Number.isFinite)).toBe(true);
      expect(bitsEqual(mem, ref)).toBe(true);
    }
  });

  test('into a strided view of a bigger array; elements outside the view are untouched', async () => {
    const { q, k, v } = bshdInputs();
    const ref = attentionSync(q, k, v).toFloat32Array();
    for (const run of [(o) => attentionSync(q, k, v, o), (o) => attention(q, k, v, o)]) {
      // BSHD storage with 5 padding columns per row, 3 lead elements and a tail: view [B, H, S, DV]
      const PAD = 5, LEAD = 3;
      const big = new Float32Array(LEAD + B * S * HQ * (DV + PAD) + 11).fill(SENTINEL);
      const out = Tensor.from(big, [B, S, HQ, DV + PAD], { offset: LEAD }).slice(3, 2, 2 + DV).transpose(1, 2);
      expect(out.isContiguous()).toBe(false);
      const inView = new Uint8Array(big.length);
      for (const o of offsets(out)) inView[o] = 1;
      const r = await run({ out });
      expect(r).toBe(out);
      expect(r.data).toBe(big);
      for (let i = 0; i < big.length; i++) if (!inView[i] && big[i] !== SENTINEL) throw new Error(`element ${i} outside the out view was written`);
      expect(bitsEqual(out.toFloat32Array(), ref)).toBe(true);
    }
  });

  test('into a subarray (byteOffset) of a shared buffer, and into a SharedArrayBuffer', async () => {
    const { q, k, v } = bshdInputs();
    const ref = attentionSync(q, k, v).toFloat32Array();
    const n = B * HQ * S * DV;
    const buf = new ArrayBuffer((n + 16) * 4);
    const whole = new Float32Array(buf).fill(SENTINEL);
    const sub = new Float32Array(buf, 8 * 4, n);
    const out = Tensor.from(sub, [B, HQ, S, DV]);
    await attention(q, k, v, { out });
    expect(bitsEqual(sub, ref)).toBe(true);
    for (let i = 0; i < 8; i++) expect(whole[i]).toBe(SENTINEL);
    for (let i = 8 + n; i < whole.length; i++) expect(whole[i]).toBe(SENTINEL);

    const sab = new SharedArrayBuffer(n * 4);
    const sout = Tensor.from(sab, [B, HQ, S, DV]);
    attentionSync(q, k, v, { out: sout });
    expect(bitsEqual(new Float32Array(sab), ref)).toBe(true);
  });

  test('a 16-bit out view in a bigger Uint16Array', () => {
    const { q, k, v } = bshdInputs();
    const big = new Uint16Array(B * HQ * S * DV * 2 + 7).fill(0xabcd);
    const out = Tensor.from(big, [B, HQ, S, DV * 2], { offset: 7, dtype: 'bfloat16' }).slice(3, DV, 2 * DV);
    const inView = new Uint8Array(big.length);
    for (const o of offsets(out)) inView[o] = 1;
    attentionSync(q, k, v, { out });
    for (let i = 0; i < big.length; i++) if (!inView[i] && big[i] !== 0xabcd) throw new Error(`element ${i} outside the out view was written`);
    const ref = attentionSync(q, k, v).toFloat32Array();
    const got = out.toFloat32Array();
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]) / (Math.abs(ref[i]) + 1e-6));
    expect(worst).toBeLessThanOrEqual(2 ** -8); // bfloat16 rounding of the float32 result
  });

  test('inputs are never written', () => {
    const { arrays, q, k, v } = bshdInputs();
    const copies = Object.fromEntries(Object.entries(arrays).map(([n, a]) => [n, a.slice()]));
    attentionSync(q, k, v, { causal: true, returnLse: true });
    for (const n of Object.keys(arrays)) expect(bitsEqual(arrays[n], copies[n])).toBe(true);
  });
});

describe('strided inputs give the results of contiguous copies', () => {
  test.each(['float32', 'float16', 'bfloat16'])('%s BSHD views (GQA, causal, window, softcap)', async (dtype) => {
    const { q, k, v } = bshdInputs(dtype);
    expect(q.isContiguous()).toBe(false);
    const qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
    expect(qc.data).not.toBe(q.data);
    for (const opts of [{}, { causal: true }, { window: [6, 2], softcap: 20 }, { returnLse: true }]) {
      const a = attentionSync(q, k, v, opts);
      const b = attentionSync(qc, kc, vc, opts);
      const [ao, bo] = opts.returnLse ? [a.out, b.out] : [a, b];
      expect(bitsEqual(ao.toFloat32Array(), bo.toFloat32Array())).toBe(true);
      if (opts.returnLse) expect(bitsEqual(a.lse.toFloat32Array(), b.lse.toFloat32Array())).toBe(true);
      const c = await attention(q, k, v, opts);
      expect(bitsEqual((opts.returnLse ? c.out : c).toFloat32Array(), bo.toFloat32Array())).toBe(true);
    }
  });

  test.each([['float32', 64], ['float32', 128], ['float16', 64], ['bfloat16', 96]])('%s D=%i views at unaligned addresses (odd byteOffset / element offsets)', (dtype, Dh) => {
    const H = 2, Sq = 67, Sk = 71;
    const elt = dtype === 'float32' ? 4 : 2;
    const Ctor = dtype === 'float32' ? Float32Array : Uint16Array;
    const conv = dtype === 'float16' ? toFloat16 : dtype === 'bfloat16' ? toBFloat16 : (x) => x;
    const place = (vals, lead) => { // copy vals into a buffer at byteOffset `lead` elements (unaligned)
      const buf = new ArrayBuffer((vals.length + lead + 3) * elt);
      const arr = new Ctor(buf, lead * elt, vals.length + 3);
      arr.set(vals);
      return arr;
    };
    const qv = conv(f32(H * Sq * Dh)), kv = conv(f32(H * Sk * Dh + 3)), vv = conv(f32(Sk * H * Dh + 1));
    const q = Tensor.from(place(qv, 1), [1, H, Sq, Dh], { dtype });
    const k = Tensor.from(place(kv, 0), [1, H, Sk, Dh], { dtype, offset: 3 });
    const v = Tensor.from(place(vv, 3), [1, Sk, H, Dh], { dtype, offset: 1 }).transpose(1, 2);
    const outMem = new Ctor(new ArrayBuffer((H * Sq * Dh + 2) * elt), elt, H * Sq * Dh + 1);
    const out = Tensor.from(outMem, [1, H, Sq, Dh], { dtype, offset: 1 });
    attentionSync(q, k, v, { out, causal: true });
    // the same call on fresh (aligned, contiguous) copies
    const kc = Tensor.from(k.data.slice(3, 3 + H * Sk * Dh), [1, H, Sk, Dh], { dtype });
    const ref = attentionSync(q.contiguous(), kc, v.contiguous(), { causal: true });
    expect(q.contiguous()).toBe(q); // q itself is contiguous, only unaligned
    expect(bitsEqual(out.toFloat32Array(), ref.toFloat32Array())).toBe(true);
    expect(outMem[0]).toBe(0); // the element before the view is untouched
  });

  test('sliced, offset and broadcast (stride-0) views', () => {
    // heads sliced out of a bigger tensor, D padded, batch broadcast from one copy of k/v
    const qd = f32(B * S * (HQ + 2) * (D + 3));
    const q = Tensor.from(qd, [B, S, HQ + 2, D + 3]).transpose(1, 2).slice(1, 1, 1 + HQ).slice(3, 2, 2 + D);
    const kd = f32(SK * HKV * D + 5), vd = f32(SK * HKV * DV);
    const k = Tensor.from(kd, [B, HKV, SK, D], { strides: [0, SK * D, D, 1], offset: 5 });
    const v = Tensor.from(vd, [B, HKV, SK, DV], { strides: [0, DV, HKV * DV, 1] });
    const a = attentionSync(q, k, v, { causal: true });
    const b = attentionSync(q.contiguous(), k.contiguous(), v.contiguous(), { causal: true });
    expect(bitsEqual(a.toFloat32Array(), b.toFloat32Array())).toBe(true);
    // both batches read the same k/v: with q's batches swapped the outputs swap
    const per = HQ * S * DV;
    const qs = Tensor.from(q.contiguous().data.slice(per / DV * D), [1, HQ, S, D]);
    const k1 = Tensor.from(kd, [1, HKV, SK, D], { offset: 5 }), v1 = Tensor.from(vd, [1, HKV, SK, DV], { strides: [0, DV, HKV * DV, 1] });
    const one = attentionSync(qs, k1, v1, { causal: true }).toFloat32Array();
    expect(bitsEqual(one, a.toFloat32Array().subarray(per))).toBe(true);
  });
});

describe('large strided inputs are not copied (child process, peak RSS)', () => {
  const probe = (cfg) => {
    const r = spawnSync(process.execPath, ['--expose-gc', path.join(__dirname, 'fixtures', 'rss-probe.js'), JSON.stringify(cfg)],
      { encoding: 'utf8', timeout: 100000, cwd: path.join(__dirname, '..') });
    if (r.status !== 0) throw new Error(`probe failed (${r.status} ${r.signal}): ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop());
  };
  const MiB = 1 << 20;
  // B1 S16384 H8 D64 float32 = 32 MiB per input. Causal with a 1024 window keeps it fast; every
  // q/k/v row is still read through the BSHD strides.
  const base = { S: 16384, H: 8, D: 64, layout: 'bshd', opts: { causal: true, window: [1024, 0] } };

  memoryTest('sync, preallocated out: growth < 0.25 x one input', () => {
    const r = probe({ ...base, out: 'prealloc', mode: 'sync', control: true });
    expect(r.inputBytes).toBe(32 * MiB);
    expect(r.finite).toBe(true);
    expect(r.outIsPrealloc).toBe(true);
    // the method sees a copy of one input (so a copying implementation would fail below)
    expect(r.controlCopied).toBe(true);
    expect(r.controlGrowth).toBeGreaterThan(0.9 * r.inputBytes);
    expect(r.slack).toBeLessThan(4 * MiB); // baseline was at its peak: the delta is meaningful
    if (r.growth >= 0.25 * r.inputBytes) throw new Error(`peak RSS grew ${(r.growth / MiB).toFixed(1)} MiB (limit ${(0.25 * r.inputBytes / MiB).toFixed(1)} MiB): ${JSON.stringify(r)}`);
  });

  memoryTest('async, library-allocated out: growth < out + 0.25 x one input', () => {
    const r = probe({ ...base, out: 'auto', mode: 'async' });
    expect(r.finite).toBe(true);
    expect(r.slack).toBeLessThan(4 * MiB);
    const limit = r.outBytes + 0.25 * r.inputBytes;
    if (r.growth >= limit) throw new Error(`peak RSS grew ${(r.growth / MiB).toFixed(1)} MiB (limit ${(limit / MiB).toFixed(1)} MiB): ${JSON.stringify(r)}`);
  });
});
