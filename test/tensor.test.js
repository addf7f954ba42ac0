'use strict';
// Tensor: zero-copy views over caller memory, exactly as in API.md.
const { Tensor, AttnError, toFloat16, toBFloat16, fromFloat16, fromBFloat16 } = require('..');

function expectAttnError(fn, code) {
  let err;
  try { fn(); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(AttnError);
  expect(err).toBeInstanceOf(Error);
  expect(err.code).toBe(code);
  return err;
}

async function expectRejects(fn, code) {
  let p, threw;
  try { p = fn(); } catch (e) { threw = e; }
  expect(threw).toBeUndefined();
  expect(require('util').types.isPromise(p)).toBe(true);
  const err = await p.then(() => undefined, (e) => e);
  expect(err).toBeInstanceOf(AttnError);
  expect(err.code).toBe(code);
  return err;
}

const iota = (n, C = Float32Array) => C.from({ length: n }, (_, i) => i);

// Row-major logical read of any strided view, independent of the library.
function logical(data, shape, strides, offset) {
  const out = [];
  const rec = (d, o) => {
    if (d === shape.length) { out.push(data[o]); return; }
    for (let i = 0; i < shape[d]; i++) rec(d + 1, o + i * strides[d]);
  };
  if (shape.every((n) => n > 0)) rec(0, offset);
  return out;
}

describe('Tensor.from', () => {
  test('typed arrays keep their identity and infer their dtype', () => {
    const cases = [
      [new Float32Array(6), 'float32'],
      [new Uint16Array(6), 'float16'],
      [new Int32Array(6), 'int32'],
      [new Uint8Array(6), 'uint8'],
    ];
    for (const [arr, dtype] of cases) {
      const t = Tensor.from(arr, [2, 3]);
      expect(t.data).toBe(arr);
      expect(t.dtype).toBe(dtype);
      expect(t.device).toBe('cpu');
      expect([...t.shape]).toEqual([2, 3]);
      expect([...t.strides]).toEqual([3, 1]);
      expect(t.offset).toBe(0);
    }
    const bf = new Uint16Array(4);
    const t = Tensor.from(bf, [4], { dtype: 'bfloat16' });
    expect(t.dtype).toBe('bfloat16');
    expect(t.data).toBe(bf);
  });

  test('a typed array with a byteOffset is viewed, not copied', () => {
    const buf = new ArrayBuffer(64);
    const sub = new Float32Array(buf, 16, 8);
    const t = Tensor.from(sub, [2, 4]);
    expect(t.data).toBe(sub);
    new Float32Array(buf)[4] = 7; // element 0 of sub
    expect(t.toFloat32Array()[0]).toBe(7);
  });

  test('ArrayBuffer: same memory, default float32, dtype picks the element type', () => {
    const buf = new ArrayBuffer(32);
    const t = Tensor.from(buf, [8]);
    expect(t.dtype).toBe('float32');
    expect(t.data).toBeInstanceOf(Float32Array);
    expect(t.data.buffer).toBe(buf);
    expect(t.data.byteOffset).toBe(0);
    new Float32Array(buf)[3] = 2.5;
    expect(t.toFloat32Array()[3]).toBe(2.5);
    t.data[5] = -1.25;
    expect(new Float32Array(buf)[5]).toBe(-1.25);

    const h = Tensor.from(buf, [16], { dtype: 'float16' });
    expect(h.dtype).toBe('float16');
    expect(h.data).toBeInstanceOf(Uint16Array);
    expect(h.data.buffer).toBe(buf);
    const b = Tensor.from(buf, [4, 4], { dtype: 'bfloat16' });
    expect(b.data).toBeInstanceOf(Uint16Array);
    const i = Tensor.from(buf, [8], { dtype: 'int32' });
    expect(i.data).toBeInstanceOf(Int32Array);
    const u = Tensor.from(buf, [32], { dtype: 'uint8' });
    expect(u.data).toBeInstanceOf(Uint8Array);
    u.data[0] = 0xff;
    expect(new Uint8Array(buf)[0]).toBe(0xff);
  });

  test('SharedArrayBuffer: same memory', () => {
    const sab = new SharedArrayBuffer(24);
    const t = Tensor.from(sab, [2, 3]);
    expect(t.dtype).toBe('float32');
    expect(t.data.buffer).toBe(sab);
    new Float32Array(sab)[4] = 9;
    expect(t.toFloat32Array()[4]).toBe(9);
    const h = Tensor.from(sab, [3, 4], { dtype: 'float16' });
    expect(h.data.buffer).toBe(sab);
    // a typed array over shared memory keeps its identity too
    const f = new Float32Array(sab);
    expect(Tensor.from(f, [6]).data).toBe(f);
  });

  test('dtype mismatches are ERR_ATTN_DTYPE', () => {
    expectAttnError(() => Tensor.from(new Float32Array(4), [4], { dtype: 'float16' }), 'ERR_ATTN_DTYPE');
    expectAttnError(() => Tensor.from(new Uint16Array(4), [4], { dtype: 'float32' }), 'ERR_ATTN_DTYPE');
    expectAttnError(() => Tensor.from(new Int32Array(4), [4], { dtype: 'uint8' }), 'ERR_ATTN_DTYPE');
    expectAttnError(() => Tensor.from(new Uint8Array(4), [4], { dtype: 'int32' }), 'ERR_ATTN_DTYPE');
    expectAttnError(() => Tensor.from(new Float64Array(4), [4]), 'ERR_ATTN_DTYPE');
    expectAttnError(() => Tensor.from(new Int16Array(4), [4]), 'ERR_ATTN_DTYPE');
    expectAttnError(() => Tensor.from(new Uint8ClampedArray(4), [4]), 'ERR_ATTN_DTYPE');
    expectAttnError(() => Tensor.from(new Float32Array(4), [4], { dtype: 'float64' }), 'ERR_ATTN_DTYPE');
    expectAttnError(() => Tensor.from(new ArrayBuffer(16), [4], { dtype: 'int8' }), 'ERR_ATTN_DTYPE');
  });

  test('data that is not a typed array or buffer is an AttnError', () => {
    for (const bad of [[1, 2, 3, 4], null, undefined, 'abcd', 4, { length: 4 }, new DataView(new ArrayBuffer(16))]) {
      let err;
      try { Tensor.from(bad, [4]); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(AttnError);
      expect(typeof err.code).toBe('string');
    }
  });

  test('explicit strides and offset', () => {
    const a = iota(12);
    const t = Tensor.from(a, [3, 2], { strides: [1, 4], offset: 2 });
    expect([...t.strides]).toEqual([1, 4]);
    expect(t.offset).toBe(2);
    expect(t.data).toBe(a);
    expect(Array.from(t.toFloat32Array())).toEqual([2, 6, 3, 7, 4, 8]);
    // broadcast (stride 0) inputs are legal views
    const b = Tensor.from(a, [3, 4], { strides: [0, 1], offset: 8 });
    expect(Array.from(b.toFloat32Array())).toEqual([8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11]);
  });

  test('shape/strides/offset that reach past the buffer are AttnErrors', () => {
    const a = new Float32Array(6);
    expectAttnError(() => Tensor.from(a, [7]), 'ERR_ATTN_ARGUMENT');
    expectAttnError(() => Tensor.from(a, [2, 3], { strides: [3, 2] }), 'ERR_ATTN_ARGUMENT'); // reaches 7
    expectAttnError(() => Tensor.from(a, [2, 3], { strides: [4, 1] }), 'ERR_ATTN_ARGUMENT'); // reaches 6
    expectAttnError(() => Tensor.from(a, [6], { offset: 1 }), 'ERR_ATTN_ARGUMENT');
    expectAttnError(() => Tensor.from(a, [1], { offset: 6 }), 'ERR_ATTN_ARGUMENT');
    expectAttnError(() => Tensor.from(new ArrayBuffer(8), [3]), 'ERR_ATTN_ARGUMENT');
    expectAttnError(() => Tensor.from(new ArrayBuffer(10), [3], { dtype: 'float32' }), 'ERR_ATTN_ARGUMENT');
    expectAttnError(() => Tensor.from(new SharedArrayBuffer(8), [5], { dtype: 'float16' }), 'ERR_ATTN_ARGUMENT');
    // exactly at the end is fine
    expect(Tensor.from(a, [2, 3], { strides: [3, 1] }).numel).toBe(6);
    expect(Tensor.from(a, [1], { offset: 5 }).toFloat32Array().length).toBe(1);
    expect(Tensor.from(a, [2, 2], { strides: [2, 1], offset: 2 }).toFloat32Array().length).toBe(4);
  });

  test('malformed shape, strides and offset are AttnErrors', () => {
    const a = new Float32Array(16);
    for (const [shape, opts] of [
      [[-1, 4], {}], [[2.5, 2], {}], [[NaN], {}], ['4', {}], [[4], { strides: [1, 1] }],
      [[4], { strides: [-1] }], [[4], { strides: [0.5] }], [[4], { offset: -1 }], [[4], { offset: 1.5 }],
      [[4], { offset: NaN }], [[Infinity], {}],
    ]) {
      let err;
      try { Tensor.from(a, shape, opts); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(AttnError);
      expect(['ERR_ATTN_SHAPE', 'ERR_ATTN_ARGUMENT']).toContain(err.code);
    }
  });

  test('empty shapes need no memory', () => {
    const t = Tensor.from(new Float32Array(0), [0, 4]);
    expect(t.numel).toBe(0);
    expect(t.toFloat32Array().length).toBe(0);
    const u = Tensor.from(new Float32Array(2), [3, 0, 5], { offset: 1 });
    expect(u.toFloat32Array().length).toBe(0);
  });

  test('shape and strides are read-only', () => {
    const t = Tensor.from(new Float32Array(6), [2, 3]);
    try { t.shape[0] = 100; } catch { /* frozen */ }
    try { t.strides[0] = 100; } catch { /* frozen */ }
    try { t.shape.push(1); } catch { /* frozen */ }
    expect([...t.shape]).toEqual([2, 3]);
    expect([...t.strides]).toEqual([3, 1]);
  });
});

describe('views share memory', () => {
  test('transpose swaps shape and strides and writes through', () => {
    const a = iota(24);
    const t = Tensor.from(a, [2, 3, 4]);
    const tt = t.transpose(0, 2);
    expect([...tt.shape]).toEqual([4, 3, 2]);
    expect([...tt.strides]).toEqual([1, 4, 12]);
    expect(tt.data).toBe(a);
    expect(Array.from(tt.toFloat32Array())).toEqual(logical(a, [4, 3, 2], [1, 4, 12], 0));
    // write through the view's data at the view's [1, 2, 1] and read the base [1, 2, 1] (transposed)
    const o = tt.offset + 1 * tt.strides[0] + 2 * tt.strides[1] + 1 * tt.strides[2];
    tt.data[o] = -5;
    expect(a[1 * 12 + 2 * 4 + 1]).toBe(-5);
    expect(t.toFloat32Array()[1 * 12 + 2 * 4 + 1]).toBe(-5);
    // negative dims
    const n = t.transpose(-1, -3);
    expect([...n.shape]).toEqual([4, 3, 2]);
    expectAttnError(() => t.transpose(0, 3), 'ERR_ATTN_ARGUMENT');
    expectAttnError(() => t.transpose(-4, 0), 'ERR_ATTN_ARGUMENT');
    expectAttnError(() => t.transpose(0.5, 1), 'ERR_ATTN_ARGUMENT');
  });

  test('BSHD -> BHSD transpose is the logical permutation', () => {
    const [B, S, H, D] = [2, 3, 4, 5];
    const a = iota(B * S * H * D);
    const t = Tensor.from(a, [B, S, H, D]).transpose(1, 2);
    expect([...t.shape]).toEqual([B, H, S, D]);
    const got = t.toFloat32Array();
    let i = 0;
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let s = 0; s < S; s++) for (let d = 0; d < D; d++) {
      expect(got[i++]).toBe(a[((b * S + s) * H + h) * D + d]);
    }
    expect(t.isContiguous()).toBe(false);
  });

  test('view(-1) and view(shape) alias the same memory', () => {
    const a = iota(24);
    const t = Tensor.from(a, [2, 3, 4]);
    const flat = t.view([-1]);
    expect([...flat.shape]).toEqual([24]);
    expect(flat.data).toBe(a);
    const v = t.view([4, -1]);
    expect([...v.shape]).toEqual([4, 6]);
    expect([...v.strides]).toEqual([6, 1]);
    v.data[v.offset + 3 * 6 + 5] = 100;
    expect(a[23]).toBe(100);
    expect(t.toFloat32Array()[23]).toBe(100);
    expectAttnError(() => t.view([5, -1]), 'ERR_ATTN_SHAPE');
    expectAttnError(() => t.view([5, 5]), 'ERR_ATTN_SHAPE');
    expectAttnError(() => t.transpose(0, 1).view([-1]), 'ERR_ATTN_SHAPE');
    // a view of an offset slice keeps the offset
    const s = Tensor.from(a, [6, 4]).slice(0, 2, 4).view([-1]);
    expect(s.offset).toBe(8);
    expect(Array.from(s.toFloat32Array())).toEqual(Array.from(a.slice(8, 16)));
  });

  test('slice with negative indices shares memory', () => {
    const a = iota(20);
    const t = Tensor.from(a, [4, 5]);
    const s = t.slice(1, -3, -1); // columns 2, 3
    expect([...s.shape]).toEqual([4, 2]);
    expect(s.data).toBe(a);
    expect(Array.from(s.toFloat32Array())).toEqual([2, 3, 7, 8, 12, 13, 17, 18]);
    s.data[s.offset + 2 * s.strides[0] + 1 * s.strides[1]] = -1;
    expect(a[13]).toBe(-1);
    const r = t.slice(-1, 1, 3).slice(0, -2, 4); // rows 2..3, cols 1..2
    expect(Array.from(r.toFloat32Array())).toEqual([11, 12, 16, 17]);
    // clamped and empty slices
    expect([...t.slice(0, -100, 100).shape]).toEqual([4, 5]);
    expect([...t.slice(0, 3, 1).shape]).toEqual([0, 5]);
    expect(t.slice(0, 3, 1).toFloat32Array().length).toBe(0);
    expectAttnError(() => t.slice(2, 0, 1), 'ERR_ATTN_ARGUMENT');
    expectAttnError(() => t.slice(0, 0.5, 1), 'ERR_ATTN_ARGUMENT');
  });

  test('a slice of a transpose reads the right elements', () => {
    const a = iota(2 * 3 * 4 * 5);
    const t = Tensor.from(a, [2, 3, 4, 5]).transpose(1, 2).slice(3, 1, -1).slice(2, -2, 3);
    expect([...t.shape]).toEqual([2, 4, 2, 3]);
    expect(Array.from(t.toFloat32Array())).toEqual(logical(a, t.shape, t.strides, t.offset));
    expect(t.toFloat32Array()[0]).toBe(0 * 60 + 1 * 20 + 0 * 5 + 1); // b0, s1, h0, d1
  });
});

describe('contiguous()', () => {
  test('returns the same tensor when already contiguous', () => {
    const a = iota(12);
    const t = Tensor.from(a, [3, 4]);
    expect(t.contiguous()).toBe(t);
    // size-1 dims with odd strides still count as contiguous
    const r = Tensor.from(a, [3, 4]).slice(0, 1, 2);
    expect(r.contiguous().data).toBe(a);
  });

  test('copies strided views in logical order, detached from the base', () => {
    const a = iota(12);
    const t = Tensor.from(a, [3, 4]).transpose(0, 1);
    const c = t.contiguous();
    expect(c).not.toBe(t);
    expect(c.data).not.toBe(a);
    expect(c.data.buffer).not.toBe(a.buffer);
    expect([...c.shape]).toEqual([4, 3]);
    expect([...c.strides]).toEqual([3, 1]);
    expect(c.offset).toBe(0);
    expect(c.dtype).toBe('float32');
    expect(Array.from(c.data)).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    a[1] = 99;
    expect(c.data[3]).toBe(1);
    // 16-bit dtypes keep their dtype and bits
    const h = Tensor.from(Uint16Array.from([1, 2, 3, 4, 5, 6]), [2, 3], { dtype: 'bfloat16' }).transpose(0, 1).contiguous();
    expect(h.dtype).toBe('bfloat16');
    expect(h.data).toBeInstanceOf(Uint16Array);
    expect(Array.from(h.data)).toEqual([1, 4, 2, 5, 3, 6]);
  });

  test('an offset slice copies only the slice', () => {
    const a = iota(20);
    const c = Tensor.from(a, [4, 5]).slice(1, 1, 3).contiguous();
    expect(c.data.length).toBe(8);
    expect(Array.from(c.data)).toEqual([1, 2, 6, 7, 11, 12, 16, 17]);
  });
});

describe('toFloat32Array', () => {
  test('is a copy in logical order for strided float32 views', () => {
    const a = iota(2 * 3 * 4);
    const t = Tensor.from(a, [2, 3, 4]).transpose(0, 2).slice(1, 1, 3);
    const f = t.toFloat32Array();
    expect(f).toBeInstanceOf(Float32Array);
    expect(f.buffer).not.toBe(a.buffer);
    expect(Array.from(f)).toEqual(logical(a, t.shape, t.strides, t.offset));
    f[0] = 1234;
    expect(a.includes(1234)).toBe(false);
  });

  test('converts float16 and bfloat16 strided views', () => {
    const vals = Float32Array.from({ length: 24 }, (_, i) => (i - 11) * 0.375);
    const h = toFloat16(vals);
    const b = toBFloat16(vals);
    const th = Tensor.from(h, [2, 3, 4], { dtype: 'float16' }).transpose(1, 2);
    const tb = Tensor.from(b, [2, 3, 4], { dtype: 'bfloat16' }).transpose(1, 2);
    const expectH = logical(fromFloat16(h), th.shape, th.strides, th.offset);
    const expectB = logical(fromBFloat16(b), tb.shape, tb.strides, tb.offset);
    expect(Array.from(th.toFloat32Array())).toEqual(expectH);
    expect(Array.from(tb.toFloat32Array())).toEqual(expectB);
    // these values are exact in both formats: check against the float32 originals
    expect(Array.from(th.toFloat32Array())).toEqual(logical(vals, th.shape, th.strides, th.offset));
    expect(Array.from(tb.toFloat32Array())).toEqual(logical(vals, tb.shape, tb.strides, tb.offset));
    // bits with different meanings in the two formats are decoded per dtype
    const bits = Uint16Array.from([0x3c00, 0x3f80]);
    expect(Array.from(Tensor.from(bits, [2], { dtype: 'float16' }).toFloat32Array())).toEqual([1, 1.875]);
    expect(Array.from(Tensor.from(bits, [2], { dtype: 'bfloat16' }).toFloat32Array())).toEqual([0.0078125, 1]);
  });

  test('int32 and uint8', () => {
    const i = Tensor.from(Int32Array.from([-3, 7, 1 << 20, 0]), [2, 2]).transpose(0, 1);
    expect(Array.from(i.toFloat32Array())).toEqual([-3, 1 << 20, 7, 0]);
    const u = Tensor.from(Uint8Array.from([0, 255, 1, 2]), [4]).slice(0, 1, 3);
    expect(Array.from(u.toFloat32Array())).toEqual([255, 1]);
  });
});

describe('empty / zeros', () => {
  test.each(['float32', 'float16', 'bfloat16', 'int32', 'uint8'])('%s', (dtype) => {
    const Ctor = { float32: Float32Array, float16: Uint16Array, bfloat16: Uint16Array, int32: Int32Array, uint8: Uint8Array }[dtype];
    for (const make of [Tensor.empty, Tensor.zeros]) {
      const t = make([2, 3, 4], { dtype });
      expect(t.dtype).toBe(dtype);
      expect(t.device).toBe('cpu');
      expect(t.data).toBeInstanceOf(Ctor);
      expect(t.data.length).toBe(24);
      expect([...t.shape]).toEqual([2, 3, 4]);
      expect([...t.strides]).toEqual([12, 4, 1]);
      expect(t.offset).toBe(0);
    }
    const z = Tensor.zeros([5, 7], { dtype });
    expect(z.data.every((x) => x === 0)).toBe(true);
    expect(Array.from(z.toFloat32Array()).every((x) => Object.is(x, 0))).toBe(true);
  });

  test('defaults, device and bad arguments', () => {
    const t = Tensor.zeros([3]);
    expect(t.dtype).toBe('float32');
    expect(Tensor.empty([0, 3]).numel).toBe(0);
    expect(Tensor.zeros([]).numel).toBe(1);
    expect(Tensor.empty([2], { device: 'cpu' }).device).toBe('cpu');
    expectAttnError(() => Tensor.empty([2], { device: 'cuda' }), 'ERR_ATTN_CUDA_UNAVAILABLE');
    expectAttnError(() => Tensor.zeros([2], { device: 'cuda:0' }), 'ERR_ATTN_CUDA_UNAVAILABLE');
    expectAttnError(() => Tensor.zeros([2], { device: 'tpu' }), 'ERR_ATTN_DEVICE');
    expectAttnError(() => Tensor.zeros([2], { dtype: 'float64' }), 'ERR_ATTN_DTYPE');
    expectAttnError(() => Tensor.zeros([-2]), 'ERR_ATTN_SHAPE');
    expectAttnError(() => Tensor.zeros([1.5]), 'ERR_ATTN_SHAPE');
    expectAttnError(() => Tensor.zeros(3), 'ERR_ATTN_SHAPE');
  });
});

describe('dispose', () => {
  test('use after dispose() is ERR_ATTN_DISPOSED', async () => {
    const a = iota(12);
    const t = Tensor.from(a, [3, 4]);
    const view = t.transpose(0, 1);
    t.dispose();
    expectAttnError(() => t.data, 'ERR_ATTN_DISPOSED');
    expectAttnError(() => t.toFloat32Array(), 'ERR_ATTN_DISPOSED');
    expectAttnError(() => t.transpose(0, 1), 'ERR_ATTN_DISPOSED');
    expectAttnError(() => t.view([-1]), 'ERR_ATTN_DISPOSED');
    expectAttnError(() => t.slice(0, 0, 1), 'ERR_ATTN_DISPOSED');
    expectAttnError(() => t.toSync('cpu'), 'ERR_ATTN_DISPOSED');
    await expectRejects(() => t.to('cpu'), 'ERR_ATTN_DISPOSED');
    expectAttnError(() => t.transpose(0, 1).contiguous(), 'ERR_ATTN_DISPOSED');
    // metadata stays readable; the caller's array and other views are untouched
    expect([...t.shape]).toEqual([3, 4]);
    expect(a[5]).toBe(5);
    expect(view.toFloat32Array()[1]).toBe(4);
    // dispose twice is harmless
    expect(() => t.dispose()).not.toThrow();
  });

  test('Symbol.dispose disposes', () => {
    expect(typeof Symbol.dispose).toBe('symbol');
    const t = Tensor.zeros([2, 2]);
    expect(typeof t[Symbol.dispose]).toBe('function');
    t[Symbol.dispose]();
    expectAttnError(() => t.data, 'ERR_ATTN_DISPOSED');
    expectAttnError(() => t.toFloat32Array(), 'ERR_ATTN_DISPOSED');
  });
});

describe('buffers that are detached or shrunk', () => {
  const detach = (buf) => structuredClone(buf, { transfer: [buf] });

  test('from() over an already detached buffer is an AttnError', () => {
    const buf = new ArrayBuffer(16);
    detach(buf);
    expectAttnError(() => Tensor.from(buf, [4]), 'ERR_ATTN_ARGUMENT');
    const f = new Float32Array(4);
    detach(f.buffer);
    expectAttnError(() => Tensor.from(f, [4]), 'ERR_ATTN_ARGUMENT');
  });

  test('reading a tensor whose buffer was detached after from() is an AttnError, not silent NaNs', () => {
    const f = Float32Array.of(1, 2, 3, 4);
    const t = Tensor.from(f, [2, 2]);
    detach(f.buffer);
    expectAttnError(() => t.toFloat32Array(), 'ERR_ATTN_ARGUMENT');
    expectAttnError(() => t.transpose(0, 1).contiguous(), 'ERR_ATTN_ARGUMENT');
  });

  test('reading a tensor whose resizable buffer shrank below its extent is an AttnError', () => {
    const rab = new ArrayBuffer(16, { maxByteLength: 16 });
    const t = Tensor.from(rab, [2, 2]);
    new Float32Array(rab).set([1, 2, 3, 4]);
    expect(Array.from(t.toFloat32Array())).toEqual([1, 2, 3, 4]);
    rab.resize(8);
    expectAttnError(() => t.toFloat32Array(), 'ERR_ATTN_ARGUMENT');
    expectAttnError(() => t.transpose(0, 1).contiguous(), 'ERR_ATTN_ARGUMENT');
  });
});

describe('to(device)', () => {
  test("to('cpu') of a cpu tensor is that tensor", async () => {
    const a = iota(6);
    const t = Tensor.from(a, [2, 3]);
    const u = await t.to('cpu');
    expect(u.device).toBe('cpu');
    expect(u.data).toBe(a);
    expect(Array.from(u.toFloat32Array())).toEqual([0, 1, 2, 3, 4, 5]);
    expect(t.toSync('cpu').data).toBe(a);
  });

  test("to('cuda') is ERR_ATTN_CUDA_UNAVAILABLE: rejects, never throws", async () => {
    const t = Tensor.from(iota(6), [2, 3]);
    for (const dev of ['cuda', 'cuda:0', 'cuda:3']) {
      const err = await expectRejects(() => t.to(dev), 'ERR_ATTN_CUDA_UNAVAILABLE');
      expect(err.message).toMatch(/cuda/i);
      expectAttnError(() => t.toSync(dev), 'ERR_ATTN_CUDA_UNAVAILABLE');
    }
    await expectRejects(() => t.to('gpu'), 'ERR_ATTN_DEVICE');
    expectAttnError(() => t.toSync('cuda:x'), 'ERR_ATTN_DEVICE');
    expectAttnError(() => t.toSync(7), 'ERR_ATTN_DEVICE');
  });
});
