#!/usr/bin/env node
'use strict';
// The GPU suite, under plain node (the device machine has no jest): the CPU suite's fused-attention
// parity cases (test/helpers/parity-cases.js, the very same table) run on a CUDA device against
// the float64 oracle, plus device-tensor tests (copies, views, dispose, finalizer, external memory,
// OOM, device-mix and disposed errors, merge on device), and blockSparseAttention(Sync) on the
// device against the float64 blockSparseAttentionReference (block sizes that divide the lengths
// and that do not, every dtype, options, varlen, strided views of q / k / v and of the block
// states) with its device-mix, disposed and older-library errors; decodeAttention(Sync) over a
// KVCache on the device against the float64 decodeAttentionReference (issue 6).
//
//   node test/gpu/run.js [--filter <substring>] [--device cuda:N] [--list]
//
// Needs only the built package (dist/ and the addon) and libattnkit_cuda.so beside the addon (or
// ATTNKIT_CUDA_LIB). Prints `GPU: N passed, M failed, K skipped`; exits 1 if anything failed.
// Without CUDA it prints the reason, counts every test as skipped and exits 0.
// Replay a parity failure: ATTNKIT_SEED=<printed seed> node test/gpu/run.js --filter '<name>'
const path = require('path');
const assert = require('assert');
const { spawnSync } = require('child_process');

const root = path.join(__dirname, '..', '..');
const attnkit = require(root);
const {
  Tensor, AttnError, attention, attentionSync, blockSparseAttention, blockSparseAttentionSync, BlockMask, mergeAttentionStates,
  neighborhoodAttention, neighborhoodAttentionSync, clearNeighborhoodCache, topkBlockAttention, topkBlockAttentionSync,
  backendInfo, toFloat16, toBFloat16, KVCache, decodeAttention, decodeAttentionSync,
} = attnkit;
const {
  attentionReference, blockSparseAttentionReference, neighborhoodAttentionReference, topkBlockAttentionReference,
  decodeAttentionReference, decodeScoresReference,
} = require(path.join(root, 'dist', 'reference'));
const { native } = require(path.join(root, 'dist', 'native', 'binding'));
const R = require('../helpers/random');
const { TOL, tolFor, relErr, lseErr, worst } = require('../helpers/compare');
const { cases, prepareCase, buildInputs, buildOptions, DTYPES: BLOCK_DTYPES } = require('../helpers/parity-cases');
const { makeCache, appendRandom, seqsOf } = require('../helpers/decode-rows');

const LSE_TOL = TOL.float32;

function argValue(flag, fallback) {
  const i = process.argv.indexOf(flag);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const FILTER = argValue('--filter', '');
const DEV = argValue('--device', 'cuda:0');

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------
const tests = [];
const test = (name, fn) => tests.push({ name, fn });

function check(what, err, tol, detail) {
  if (!(err <= tol)) throw new Error(`${what}: error ${err} exceeds tolerance ${tol}${detail ? `\n  ${detail()}` : ''}\n  replay: ATTNKIT_SEED=${R.BASE_SEED}`);
}

function expectCode(fn, code, re) {
  let err;
  try { fn(); } catch (e) { err = e; }
  assertAttnError(err, code, re);
  return err;
}
async function expectRejects(fn, code, re) {
  let p;
  try { p = fn(); } catch (e) { throw new Error(`threw synchronously instead of rejecting: ${e && e.message}`); }
  let err;
  try { await p; } catch (e) { err = e; }
  assertAttnError(err, code, re);
  return err;
}
function assertAttnError(err, code, re) {
  if (!err) throw new Error(`expected ${code}, but nothing was thrown`);
  if (!(err instanceof AttnError)) throw new Error(`expected an AttnError ${code}, got ${err && err.stack}`);
  assert.strictEqual(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
  if (re) assert.match(err.message, re);
}

const stats = () => native().cudaMemoryStats();
const numel = (s) => s.reduce((a, b) => a * b, 1);

/** The same view on the device: the whole backing array is copied, then viewed with the same
 *  shape, strides and offset, so strided layouts (and the poison around them) reach the GPU. */
function toDev(t) {
  if (!t) return t;
  return Tensor.from(t.data, [t.data.length], { dtype: t.dtype }).toSync(DEV).asStrided(t.shape.slice(), t.strides.slice(), t.offset);
}
function disposeAll(...ts) { for (const t of ts) if (t && typeof t.dispose === 'function') t.dispose(); }

function randomCpu(r, shape, dtype = 'float32') { return R.randomTensor(r, shape, dtype).t; }
function bitsEqual(a, b) {
  assert.strictEqual(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) throw new Error(`element ${i}: ${a[i]} != ${b[i]}`);
}

// ---------------------------------------------------------------------------------------------
// parity: every CPU parity case, on the device, sync and async, into poisoned device outputs
// ---------------------------------------------------------------------------------------------
// Runs op(mode, call) sync and async into fresh poisoned outputs (`outMode`: none, contig or
// strided) and checks out, and lse where the case asks for it, against the reference.
async function checkBothModes(c, outMode, outShape, outDtype, devOpts, ref, tol, op) {
  for (const mode of ['sync', 'async']) {
    const outCpu = outMode === 'none' ? undefined
      : outMode === 'contig' ? R.poisonedOut(outShape, outDtype) : R.stridedOut(outShape, outDtype);
    const out = toDev(outCpu);
    const call = { ...devOpts, out, returnLse: !!c.lse };
    const res = await op(mode, call);
    const o = c.lse ? res.out : res;
    try {
      if (out) assert.strictEqual(o, out, 'the given out is returned');
      assert.strictEqual(o.device, DEV);
      assert.strictEqual(o.dtype, outDtype);
      assert.deepStrictEqual([...o.shape], outShape);
      const oh = o.toSync('cpu');
      check(`${mode} out (${c.dtype} -> ${outDtype})`, relErr(oh, ref.out), tol, () => worst(oh, ref.out));
      if (c.lse) {
        assert.strictEqual(res.lse.device, DEV);
        assert.strictEqual(res.lse.dtype, 'float32');
        assert.deepStrictEqual([...res.lse.shape], [c.B, c.Hq, c.Sq]);
        const lh = res.lse.toSync('cpu');
        check(`${mode} lse`, lseErr(lh, ref.lse), LSE_TOL, () => worst(lh, ref.lse));
      }
    } finally {
      disposeAll(o, c.lse ? res.lse : undefined);
    }
  }
}

async function runCase(c) {
  const { q, k, v, opts, ref, outShape, outMode, outDtype, tol } = prepareCase(c, attentionReference);
  const qd = toDev(q.t), kd = toDev(k.t), vd = toDev(v.t);
  const devOpts = { ...opts, bias: toDev(opts.bias), mask: toDev(opts.mask) };
  try {
    await checkBothModes(c, outMode, outShape, outDtype, devOpts, ref, tol,
      (mode, call) => (mode === 'sync' ? attentionSync(qd, kd, vd, call) : attention(qd, kd, vd, call)));
  } finally {
    disposeAll(qd, kd, vd, devOpts.bias, devOpts.mask);
  }
}

for (const c of cases) test(`parity: ${c.name}`, () => runCase(c));

// ---------------------------------------------------------------------------------------------
// device tensors
// ---------------------------------------------------------------------------------------------
const DTYPES = ['float32', 'float16', 'bfloat16', 'int32', 'uint8'];
function cpuOf(r, dtype, shape) {
  const n = numel(shape);
  const f = r.randn(n, 3);
  if (dtype === 'float32') return Tensor.from(f, shape);
  if (dtype === 'float16') return Tensor.from(toFloat16(f), shape, { dtype });
  if (dtype === 'bfloat16') return Tensor.from(toBFloat16(f), shape, { dtype });
  if (dtype === 'int32') return Tensor.from(Int32Array.from(f, (x) => Math.round(x * 1000)), shape);
  return Tensor.from(Uint8Array.from(f, (x) => Math.abs(Math.round(x * 40)) & 255), shape);
}

test('device: round trips of every dtype, sync and async, bit for bit', async () => {
  const r = R.rng('round trips');
  for (const dtype of DTYPES) {
    const t = cpuOf(r, dtype, [3, 5, 7]);
    const d = t.toSync(DEV);
    assert.strictEqual(d.device, DEV);
    assert.strictEqual(d.dtype, dtype);
    assert.deepStrictEqual([...d.shape], [3, 5, 7]);
    assert.deepStrictEqual([...d.strides], [35, 7, 1]);
    const back = d.toSync('cpu');
    assert.strictEqual(back.device, 'cpu');
    bitsEqual(back.data, t.data);
    const d2 = await t.to(DEV);
    const back2 = await d2.to('cpu');
    bitsEqual(back2.data, t.data);
    assert.strictEqual(d.toSync(DEV), d, 'to(own device) is the tensor itself');
    assert.strictEqual(await d.to(DEV), d);
    disposeAll(d, d2);
  }
});

test("device: 'cuda' means cuda:0; empty, zeros, 0-element and rank-0 tensors", async () => {
  const e = Tensor.empty([4, 4], { device: 'cuda' });
  assert.strictEqual(e.device, 'cuda:0');
  const z = Tensor.zeros([3, 1000], { device: DEV, dtype: 'bfloat16' });
  assert.ok(z.toSync('cpu').data.every((x) => x === 0));
  const none = Tensor.empty([0, 5], { device: DEV });
  assert.strictEqual(none.toSync('cpu').numel, 0);
  assert.strictEqual((await none.to('cpu')).numel, 0);
  const scalar = Tensor.from(Float32Array.of(2.5), []).toSync(DEV);
  assert.deepStrictEqual(Array.from(scalar.toFloat32Array()), [2.5]);
  const emptyCpu = Tensor.from(new Float32Array(0), [2, 0]).toSync(DEV);
  assert.strictEqual(emptyCpu.numel, 0);
  disposeAll(e, z, none, scalar, emptyCpu);
});

test('device: non-contiguous CPU tensors arrive contiguous, in logical order', async () => {
  const r = R.rng('noncontig');
  const t = cpuOf(r, 'float32', [4, 6, 5]).transpose(0, 2).slice(1, 1, 5); // [5, 4, 4]
  const d = t.toSync(DEV);
  assert.ok(d.isContiguous());
  bitsEqual(d.toFloat32Array(), t.toFloat32Array());
  const d2 = await t.to(DEV);
  bitsEqual((await d2.to('cpu')).data, t.toFloat32Array());
  disposeAll(d, d2);
});

test('device: transpose / slice / view / asStrided share the storage; to(cpu) reads logical order', () => {
  const r = R.rng('views');
  for (const dtype of ['float32', 'float16', 'uint8']) {
    const t = cpuOf(r, dtype, [2, 3, 4, 5]);
    const d = t.toSync(DEV);
    const before = stats().liveAllocations;
    const views = [
      [d.transpose(1, 2), t.transpose(1, 2)],
      [d.slice(3, 1, 4), t.slice(3, 1, 4)],
      [d.transpose(0, 3).slice(1, 2, 3), t.transpose(0, 3).slice(1, 2, 3)],
      [d.view([6, 20]), t.view([6, 20])],
      [d.asStrided([3, 4], [5, 1], 7), t.asStrided([3, 4], [5, 1], 7)],
      [d.asStrided([4, 3], [0, 2], 1), t.asStrided([4, 3], [0, 2], 1)],
    ];
    assert.strictEqual(stats().liveAllocations, before, 'views allocate nothing');
    for (const [dv, cv] of views) {
      assert.strictEqual(dv.device, DEV);
      const h = dv.toSync('cpu');
      assert.ok(h.isContiguous());
      bitsEqual(h.data, cv.contiguous().data);
      bitsEqual(dv.toFloat32Array(), cv.toFloat32Array());
    }
    expectCode(() => d.asStrided([200], [1], 0), 'ERR_ATTN_ARGUMENT', /asStrided/);
    expectCode(() => d.transpose(1, 2).view([-1]), 'ERR_ATTN_SHAPE', /contiguous/);
    d.dispose();
  }
});

test('device: contiguous() of a strided device view copies through the host, stays on the device', () => {
  const r = R.rng('contig');
  const t = cpuOf(r, 'bfloat16', [3, 4, 5]);
  const d = t.toSync(DEV);
  assert.strictEqual(d.contiguous(), d);
  const v = d.transpose(0, 2);
  const c = v.contiguous();
  assert.notStrictEqual(c, v);
  assert.strictEqual(c.device, DEV);
  assert.ok(c.isContiguous());
  bitsEqual(c.toSync('cpu').data, t.transpose(0, 2).contiguous().data);
  disposeAll(d, c);
});

test('device: data throws ERR_ATTN_DEVICE pointing at to(cpu); toFloat32Array copies', () => {
  const t = Tensor.from(Float32Array.of(1, 2, 3, 4), [2, 2]);
  const d = t.toSync(DEV);
  expectCode(() => d.data, 'ERR_ATTN_DEVICE', /to\('cpu'\)/);
  assert.deepStrictEqual(Array.from(d.transpose(0, 1).toFloat32Array()), [1, 3, 2, 4]);
  d.dispose();
});

test('device: dispose frees now; every view of the storage is then ERR_ATTN_DISPOSED; Symbol.dispose', async () => {
  const s0 = stats();
  const d = Tensor.zeros([256, 1024], { device: DEV });
  const bytes = 256 * 1024 * 4;
  assert.strictEqual(stats().liveBytes - s0.liveBytes, bytes);
  const view = d.transpose(0, 1);
  const slice = d.slice(0, 3, 9);
  view.dispose();
  assert.strictEqual(stats().liveBytes, s0.liveBytes, 'freed at once');
  for (const t of [d, view, slice]) {
    assert.strictEqual(t.disposed, true);
    expectCode(() => t.toSync('cpu'), 'ERR_ATTN_DISPOSED');
    await expectRejects(() => t.to('cpu'), 'ERR_ATTN_DISPOSED');
    expectCode(() => t.data, 'ERR_ATTN_DISPOSED');
    expectCode(() => t.toFloat32Array(), 'ERR_ATTN_DISPOSED');
    expectCode(() => t.transpose(0, 1), 'ERR_ATTN_DISPOSED');
    expectCode(() => t.contiguous(), 'ERR_ATTN_DISPOSED');
    assert.deepStrictEqual([...t.shape].length, 2); // metadata stays readable
  }
  d.dispose(); // twice is harmless
  const sym = Symbol.dispose ?? Symbol.for('nodejs.dispose');
  const e = Tensor.empty([10], { device: DEV });
  e[sym]();
  assert.strictEqual(e.disposed, true);
  assert.strictEqual(stats().liveAllocations, s0.liveAllocations);
});

test('device: external memory is reported to V8 (+ at allocation, - at dispose, exactly once)', () => {
  // V8's external total also moves when dead ArrayBuffers are swept (possibly concurrently), so
  // compare with a margin far below the 64 MiB being accounted.
  const n = 64 << 20, margin = n / 8;
  for (let round = 0; round < 3; round++) {
    const s0 = stats();
    const t = Tensor.empty([n], { device: DEV, dtype: 'uint8' });
    const s1 = stats();
    assert.ok(Math.abs(s1.externalBytes - s0.externalBytes - n) < margin, `+${s1.externalBytes - s0.externalBytes} after allocating ${n}`);
    const v = t.view([n / 2, 2]);
    t.dispose();
    v.dispose(); // the same storage: no second release
    const s2 = stats();
    assert.ok(Math.abs(s2.externalBytes - s0.externalBytes) < margin, `${s2.externalBytes - s0.externalBytes} after dispose`);
    assert.strictEqual(s2.liveBytes, s0.liveBytes);
  }
});

test('device: the finalizer frees what JS dropped (child process with --expose-gc)', () => {
  const script = `
    const { Tensor } = require(${JSON.stringify(root)});
    const { native } = require(${JSON.stringify(path.join(root, 'dist', 'native', 'binding'))});
    const s0 = native().cudaMemoryStats();
    (() => { for (let i = 0; i < 20; i++) Tensor.zeros([1 << 20], { device: ${JSON.stringify(DEV)} }).transpose(0, 0); })();
    const s1 = native().cudaMemoryStats();
    const settle = (n) => new Promise((res) => { global.gc(); setImmediate(() => (n ? settle(n - 1).then(res) : res())); });
    settle(5).then(() => {
      const s2 = native().cudaMemoryStats();
      console.log(JSON.stringify({ grew: s1.liveBytes - s0.liveBytes, left: s2.liveBytes - s0.liveBytes, ext: s2.externalBytes - s0.externalBytes }));
    });`;
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) throw new Error(`child failed (${r.status} ${r.signal}): ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  assert.strictEqual(out.grew, 20 * 4 * (1 << 20));
  assert.strictEqual(out.left, 0, 'every dropped allocation was freed by its finalizer');
  assert.ok(Math.abs(out.ext) < 1 << 20, `external memory back to where it was (${out.ext})`);
});

test('gc: device tensors made in an async loop and never disposed (~100 GB allocated, more than the GPU holds) are reclaimed by the GC', () => {
  // Issue 7's GC check on the GPU: every round uploads q, k, v (16 MiB each), runs attention into
  // a new device output and drops all four, awaiting each step as a service would. V8 learns of
  // the memory through the external size the handles report and collects them; Node runs the
  // finalizers that free device memory between event-loop turns, so they keep up with an async
  // loop. (A synchronous loop that never yields cannot be reclaimed in time: Node 20 defers N-API
  // finalizers to the event loop. The first run of this check was such a loop and ran the H100 out
  // of memory: README says to dispose() there.)
  // Real GPUs only: the fake library's float64 loops would take hours over these sizes.
  if (/^fake attnkit_cuda/.test(backendInfo().cuda.buildInfo || '')) return 'skip';
  const script = `
    const { Tensor, attention } = require(${JSON.stringify(root)});
    const { native } = require(${JSON.stringify(path.join(root, 'dist', 'native', 'binding'))});
    const host = new Float32Array(1 * 8 * 4096 * 128).fill(0.01);
    const up = () => Tensor.from(host, [1, 8, 4096, 128]).to(${JSON.stringify(DEV)});
    const round = async () => { await attention(await up(), await up(), await up(), { causal: true }); };
    const settle = (n) => new Promise((res) => { global.gc(); setImmediate(() => (n ? settle(n - 1).then(res) : res())); });
    (async () => {
      for (let i = 0; i < 20; i++) await round();
      await settle(5);
      const s0 = native().cudaMemoryStats();
      let peak = 0;
      for (let i = 0; i < 1600; i++) { await round(); if (i % 50 === 0) peak = Math.max(peak, native().cudaMemoryStats().liveBytes); }
      await settle(5);
      const s1 = native().cudaMemoryStats();
      console.log(JSON.stringify({ base: s0.liveBytes, peak, left: s1.liveBytes - s0.liveBytes, ext: s1.externalBytes - s0.externalBytes, allocatedGB: 1600 * 4 * 16 / 1024 }));
    })();`;
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 240000 });
  if (r.status !== 0) throw new Error(`child failed (${r.status} ${r.signal}): ${r.stderr.slice(-2000)}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  console.log(`    GPU GC loop: ${out.allocatedGB} GB allocated and dropped, peak live ${(out.peak / 2 ** 30).toFixed(2)} GiB, left ${out.left} bytes`);
  assert.strictEqual(out.left, 0, 'live device bytes back to the baseline');
  assert.ok(Math.abs(out.ext) < 1 << 20, `external memory back to where it was (${out.ext})`);
});

test('device: an OOM-sized request (1e15 bytes) is ERR_ATTN_OOM naming the size, and the process goes on', async () => {
  const s0 = stats();
  const err = expectCode(() => Tensor.empty([1e15], { device: DEV, dtype: 'uint8' }), 'ERR_ATTN_OOM', /1000000000000000 bytes/);
  assert.match(err.message, /Tensor\.empty/);
  expectCode(() => Tensor.zeros([250e12], { device: DEV }), 'ERR_ATTN_OOM', /1000000000000000 bytes/);
  expectCode(() => native().cudaAlloc(Number(DEV.split(':')[1] || 0), 1e15, false), 'ERR_ATTN_OOM', /1000000000000000 bytes/);
  await expectRejects(() => Tensor.from(new Float32Array(4), [4]).to(DEV).then((t) => { t.dispose(); return Tensor.empty([1e15], { device: DEV, dtype: 'uint8' }); }), 'ERR_ATTN_OOM');
  assert.strictEqual(stats().liveBytes, s0.liveBytes);
  const ok = Tensor.zeros([16], { device: DEV });
  assert.deepStrictEqual(Array.from(ok.toFloat32Array()), new Array(16).fill(0));
  ok.dispose();
});

test('device: bad device strings are ERR_ATTN_DEVICE', async () => {
  const n = backendInfo().cuda.devices.length;
  const t = Tensor.from(Float32Array.of(1), [1]);
  for (const dev of ['cuda:x', 'gpu', 'CUDA', 'cuda:', 'cuda:-1', ' cuda', `cuda:${n}`, 'cuda:99']) {
    expectCode(() => Tensor.empty([2], { device: dev }), 'ERR_ATTN_DEVICE');
    expectCode(() => t.toSync(dev), 'ERR_ATTN_DEVICE');
    await expectRejects(() => t.to(dev), 'ERR_ATTN_DEVICE');
  }
  expectCode(() => t.toSync(7), 'ERR_ATTN_DEVICE');
});

// A small problem whose tensors can be put anywhere.
function small(r, dtype = 'float32') {
  return {
    q: randomCpu(r, [1, 4, 9, 16], dtype), k: randomCpu(r, [1, 2, 11, 16], dtype), v: randomCpu(r, [1, 2, 11, 8], dtype),
    bias: randomCpu(r, [9, 11]), mask: Tensor.from(new Uint8Array(99).fill(1), [9, 11]), out: Tensor.empty([1, 4, 9, 8]),
  };
}

test('device: mixing devices in one call is ERR_ATTN_DEVICE naming the argument (TS and native)', async () => {
  const r = R.rng('mix');
  const c = small(r);
  const d = Object.fromEntries(Object.entries(c).map(([n, t]) => [n, t.toSync(DEV)]));
  const mixes = [
    ['k', () => [d.q, c.k, d.v, {}]], ['v', () => [d.q, d.k, c.v, {}]], ['bias', () => [d.q, d.k, d.v, { bias: c.bias }]],
    ['mask', () => [d.q, d.k, d.v, { mask: c.mask }]], ['out', () => [d.q, d.k, d.v, { out: c.out }]],
    ['k', () => [c.q, d.k, c.v, {}]], ['out', () => [c.q, c.k, c.v, { out: d.out }]], ['bias', () => [c.q, c.k, c.v, { bias: d.bias }]],
  ];
  for (const [name, args] of mixes) {
    const re = new RegExp(`\\b${name}\\b.*(cpu|cuda)`);
    expectCode(() => attentionSync(...args()), 'ERR_ATTN_DEVICE', re);
    await expectRejects(() => attention(...args()), 'ERR_ATTN_DEVICE', re);
  }
  // native refuses a mix on its own too (bypassing the TS checks)
  const { ATTENTION_DESCRIPTOR_LENGTH } = require(path.join(root, 'dist', 'native', 'descriptor'));
  const desc = new Float64Array(ATTENTION_DESCRIPTOR_LENGTH);
  const { writeTensorRecord } = require(path.join(root, 'dist', 'native', 'descriptor'));
  const { kNative } = require(path.join(root, 'dist', 'tensor'));
  [d.q, c.k, d.v, d.out].forEach((t, i) => writeTensorRecord(desc, i, t, 'x'));
  expectCode(() => native().attentionSync(d.q[kNative](), c.k.data, d.v[kNative](), d.out[kNative](), null, null, null, null, null, null, null, null, null, null, desc, null, -1),
    'ERR_ATTN_DEVICE', /\bk\b is on cpu but q is on cuda/);
  // merge: parts on different devices
  const part = attentionSync(d.q, d.k, d.v, { returnLse: true });
  const cpuPart = attentionSync(c.q, c.k, c.v, { returnLse: true });
  expectCode(() => mergeAttentionStates([part, cpuPart]), 'ERR_ATTN_DEVICE', /parts\[1\]\.out/);
  expectCode(() => mergeAttentionStates([part, { out: part.out, lse: cpuPart.lse }]), 'ERR_ATTN_DEVICE', /parts\[1\]\.lse/);
  disposeAll(...Object.values(d), part.out, part.lse);
});

test('device: disposed tensors in ops are ERR_ATTN_DISPOSED (TS and native)', async () => {
  const r = R.rng('disposed');
  const c = small(r);
  for (const name of ['q', 'k', 'v', 'bias', 'mask', 'out']) {
    const d = Object.fromEntries(Object.entries(c).map(([n, t]) => [n, t.toSync(DEV)]));
    d[name].dispose();
    const re = new RegExp(`\\b${name}\\b`);
    expectCode(() => attentionSync(d.q, d.k, d.v, { bias: d.bias, mask: d.mask, out: d.out }), 'ERR_ATTN_DISPOSED', re);
    await expectRejects(() => attention(d.q, d.k, d.v, { bias: d.bias, mask: d.mask, out: d.out }), 'ERR_ATTN_DISPOSED', re);
    disposeAll(...Object.values(d));
  }
  const d = Object.fromEntries(Object.entries(c).map(([n, t]) => [n, t.toSync(DEV)]));
  const part = attentionSync(d.q, d.k, d.v, { returnLse: true });
  part.lse.dispose();
  expectCode(() => mergeAttentionStates([part, part]), 'ERR_ATTN_DISPOSED', /parts\[0\]\.lse/);
  // native refuses a freed handle on its own
  const { ATTENTION_DESCRIPTOR_LENGTH, writeTensorRecord } = require(path.join(root, 'dist', 'native', 'descriptor'));
  const { kNative } = require(path.join(root, 'dist', 'tensor'));
  const desc = new Float64Array(ATTENTION_DESCRIPTOR_LENGTH);
  [d.q, d.k, d.v, d.out].forEach((t, i) => writeTensorRecord(desc, i, t, 'x'));
  const handles = [d.q, d.k, d.v, d.out].map((t) => t[kNative]());
  d.v.dispose();
  expectCode(() => native().attentionSync(...handles, null, null, null, null, null, null, null, null, null, null, desc, null, -1), 'ERR_ATTN_DISPOSED', /\bv\b/);
  expectCode(() => native().cudaCopyToHost(new Uint8Array(4), 0, handles[2], 0, 4), 'ERR_ATTN_DISPOSED', /src/);
  disposeAll(...Object.values(d), part.out);
});

test('device: copies outside a handle or a host array are ERR_ATTN_ARGUMENT', async () => {
  const d = Tensor.zeros([8], { device: DEV });
  const { kNative } = require(path.join(root, 'dist', 'tensor'));
  const h = d[kNative]();
  const host = new Float32Array(8);
  expectCode(() => native().cudaCopyToDevice(h, 4, host, 0, 32), 'ERR_ATTN_ARGUMENT', /dst/);
  expectCode(() => native().cudaCopyToDevice(h, 0, host, 4, 32), 'ERR_ATTN_ARGUMENT', /src/);
  expectCode(() => native().cudaCopyToHost(host, 0, h, 1, 32), 'ERR_ATTN_ARGUMENT', /src/);
  expectCode(() => native().cudaCopyOnDevice(h, 0, h, 2 ** 53, 1), 'ERR_ATTN_ARGUMENT', /src/);
  expectCode(() => native().cudaCopyToHost(host, -1, h, 0, 4), 'ERR_ATTN_ARGUMENT', /dstByteOffset/);
  expectCode(() => native().cudaCopyToHost(host, 0, {}, 0, 4), 'ERR_ATTN_ARGUMENT', /handle/);
  expectCode(() => native().cudaCopyToHost(host, 0, Object.create(h), 0, 4), 'ERR_ATTN_ARGUMENT', /handle/);
  expectCode(() => new (h.constructor)(), 'ERR_ATTN_ARGUMENT', /not with new/);
  // (the raw async bindings throw bad arguments synchronously; lib/ turns that into a rejection)
  expectCode(() => native().cudaCopyToHostAsync(host, 0, h, 0, 64), 'ERR_ATTN_ARGUMENT', /dst|src/);
  // a device-to-device copy, sync and async
  const src = Tensor.from(Float32Array.from({ length: 8 }, (_, i) => i), [8]).toSync(DEV);
  native().cudaCopyOnDevice(h, 0, src[kNative](), 16, 16);
  await native().cudaCopyOnDeviceAsync(h, 16, src[kNative](), 0, 8);
  assert.deepStrictEqual(Array.from(d.toFloat32Array()), [4, 5, 6, 7, 0, 1, 0, 0]);
  disposeAll(d, src);
});

test('device: out and lse default to new device tensors; the given out is written in place', async () => {
  const r = R.rng('defaults');
  for (const dtype of ['float16', 'bfloat16', 'float32']) {
    const c = small(r, dtype);
    const ref = attentionReference(c.q, c.k, c.v, { causal: true });
    const [q, k, v] = [c.q, c.k, c.v].map((t) => t.toSync(DEV));
    const res = await attention(q, k, v, { causal: true, returnLse: true });
    assert.strictEqual(res.out.device, DEV);
    assert.strictEqual(res.out.dtype, dtype);
    assert.strictEqual(res.lse.device, DEV);
    check('out', relErr(res.out.toSync('cpu'), ref.out), TOL[dtype]);
    check('lse', lseErr(res.lse.toSync('cpu'), ref.lse), LSE_TOL);
    const out = Tensor.empty([1, 4, 9, 8], { device: DEV, dtype: 'float32' });
    assert.strictEqual(attentionSync(q, k, v, { causal: true, out }), out);
    check('given out', relErr(out.toSync('cpu'), ref.out), TOL[dtype]);
    disposeAll(q, k, v, res.out, res.lse, out);
  }
});

test('device: mergeAttentionStates on the device equals attention over all keys', async () => {
  const r = R.rng('merge');
  for (const dtype of ['float32', 'bfloat16']) {
    const B = 2, H = 4, S = 13, Sk = 40, D = 32;
    const q = randomCpu(r, [B, H, S, D], dtype), k = randomCpu(r, [B, H, Sk, D], dtype), v = randomCpu(r, [B, H, Sk, D], dtype);
    const ref = attentionReference(q, k, v, {});
    const [qd, kd, vd] = [q, k, v].map((t) => t.toSync(DEV));
    const split = [[0, 9], [9, 30], [30, 40]];
    const parts = split.map(([a, b]) => attentionSync(qd, kd.slice(2, a, b), vd.slice(2, a, b), { returnLse: true, out: Tensor.empty([B, H, S, D], { device: DEV }) }));
    // a strided part: lse non-contiguous is accepted (made contiguous for the GPU)
    parts[1] = { out: parts[1].out, lse: parts[1].lse.transpose(0, 0) };
    const m = mergeAttentionStates(parts);
    assert.strictEqual(m.out.device, DEV);
    assert.strictEqual(m.lse.device, DEV);
    check(`merged out ${dtype}`, relErr(m.out.toSync('cpu'), ref.out), TOL[dtype]);
    check(`merged lse ${dtype}`, lseErr(m.lse.toSync('cpu'), ref.lse), LSE_TOL);
    disposeAll(qd, kd, vd, m.out, m.lse, ...parts.flatMap((p) => [p.out, p.lse]));
  }
});

test('device: an AbortSignal aborted before the call rejects ERR_ATTN_ABORTED', async () => {
  const r = R.rng('abort');
  const c = small(r);
  const [q, k, v] = [c.q, c.k, c.v].map((t) => t.toSync(DEV));
  const s0 = stats();
  const ac = new AbortController();
  ac.abort();
  await expectRejects(() => attention(q, k, v, { signal: ac.signal, returnLse: true }), 'ERR_ATTN_ABORTED');
  expectCode(() => attentionSync(q, k, v, { signal: ac.signal }), 'ERR_ATTN_ABORTED');
  assert.strictEqual(stats().liveAllocations, s0.liveAllocations, 'the out/lse it allocated were released');
  // not aborted: completes
  const live = new AbortController();
  const out = await attention(q, k, v, { signal: live.signal });
  assert.strictEqual(out.device, DEV);
  disposeAll(q, k, v, out);
});

test('device: a tensor disposed while an async call uses it stays allocated until the call settles', async () => {
  const r = R.rng('busy');
  const c = small(r);
  const ref = attentionReference(c.q, c.k, c.v, {});
  const [q, k, v] = [c.q, c.k, c.v].map((t) => t.toSync(DEV));
  const s0 = stats();
  const { kNative } = require(path.join(root, 'dist', 'tensor'));
  const qh = q[kNative]();
  const p = attention(q, k, v);
  q.dispose();
  const info = native().cudaStorageInfo(qh);
  assert.deepStrictEqual([info.disposed, info.freed, info.busy], [true, false, 1]);
  assert.strictEqual(q.disposed, true);
  expectCode(() => attentionSync(q, k, v), 'ERR_ATTN_DISPOSED', /\bq\b/);
  const out = await p;
  check('out', relErr(out.toSync('cpu'), ref.out), TOL.float32);
  await new Promise((res) => setImmediate(res));
  assert.strictEqual(stats().liveBytes, s0.liveBytes - 1 * 4 * 9 * 16 * 4 + 1 * 4 * 9 * 8 * 4, 'q freed once the call settled; out is new');
  // an async copy holds its source the same way
  const big = Tensor.zeros([1 << 16], { device: DEV });
  const pending = big.to('cpu');
  big.dispose();
  assert.ok((await pending).data.every((x) => x === 0));
  disposeAll(k, v, out);
});

test('device: backendInfo().cuda describes the devices', () => {
  const c = backendInfo().cuda;
  assert.strictEqual(c.available, true);
  assert.ok(c.devices.length >= 1);
  for (const d of c.devices) {
    assert.strictEqual(typeof d.name, 'string');
    assert.match(d.cc, /^\d+\.\d+$/);
    assert.ok(d.memoryBytes > 0);
    assert.ok(d.multiprocessors > 0);
  }
  assert.strictEqual(typeof c.buildInfo, 'string');
});

test('device: copies between two devices go through the host (skipped with one device)', async () => {
  const n = backendInfo().cuda.devices.length;
  if (n < 2) return 'skip';
  const t = Tensor.from(Float32Array.from({ length: 24 }, (_, i) => i * 0.5), [2, 3, 4]);
  const a = t.toSync('cuda:0').transpose(0, 2);
  const b = a.toSync('cuda:1');
  const b2 = await a.to('cuda:1');
  assert.strictEqual(b.device, 'cuda:1');
  bitsEqual(b.toFloat32Array(), t.transpose(0, 2).toFloat32Array());
  bitsEqual(b2.toFloat32Array(), t.transpose(0, 2).toFloat32Array());
  const q0 = t.view([1, 2, 3, 4]).toSync('cuda:0'), k1 = t.view([1, 2, 3, 4]).toSync('cuda:1');
  expectCode(() => attentionSync(q0, k1, q0), 'ERR_ATTN_DEVICE', /\bk\b is on cuda:1 but q is on cuda:0/);
  const h0 = Tensor.zeros([4], { device: 'cuda:0' }), h1 = Tensor.zeros([4], { device: 'cuda:1' });
  const { kNative } = require(path.join(root, 'dist', 'tensor'));
  expectCode(() => native().cudaCopyOnDevice(h0[kNative](), 0, h1[kNative](), 0, 4), 'ERR_ATTN_DEVICE');
  disposeAll(a, b, b2, q0, k1, h0, h1);
  return undefined;
});

// ---------------------------------------------------------------------------------------------
// block-sparse attention: blockSparseAttention(Sync) on the device against the float64
// blockSparseAttentionReference, sync and async, into poisoned device outputs
// ---------------------------------------------------------------------------------------------
// A case is a parity case (test/helpers/parity-cases.js: shapes, dtype, layout, out, lse, varlen,
// options spec `o`) plus the block mask:
//   bq, bk   block size (need not divide Sq / Sk)
//   blocks   { kind: 'random' (p: [skip, partial, full] weights, perBatch, perHead) | 'causal' |
//              'window' (window, causal) | 'documents' (varlen: ids from cuSeqlens) | 'dilated'
//              (dilation, local) | 'shards' (perHeadShards: shards) | 'none' (every block skipped),
//              and: 'causal' | 'random' (intersected with that mask) }
//   view     how the states sit in device memory: 'contig' | 'expanded' (stride 0 on every
//            broadcast dim, [B, Hq, nQB, nKB]) | 'transposed' (storage [.., nKB, nQB]) |
//            'padded' (gapped strides with an offset; the gaps hold 2 = full, so a kernel reading
//            them shows)
// BlockMask.blocks is created on the CPU; a device call takes `{ ...mask, blocks: <device tensor> }`
// (blockSparseAttention reads blocks, blockSize, seqLenQ and seqLenK of a BlockMaskLike).
const blockCases = [];
const bs = (name, c) => blockCases.push({ name: `block-sparse: ${name}`, B: 2, Hq: 4, Hkv: 2, dtype: 'float32', lse: true, view: 'contig', ...c });

/** Segment id of each packed position, from cumulative lengths. */
function segmentIds(cu, n) {
  const ids = new Int32Array(n);
  for (let s = 0; s + 1 < cu.length; s++) ids.fill(s, cu[s], cu[s + 1]);
  return ids;
}

function buildBlockMask(r, c, opts) {
  const geom = { seqLenQ: c.Sq, seqLenK: c.Sk, blockSize: [c.bq, c.bk] };
  const random = (spec) => {
    const [ps, pp, pf] = spec.p || [1, 1, 1];
    const total = ps + pp + pf;
    return BlockMask.fromFunction(() => {
      const x = r.random() * total;
      return x < ps ? false : x < ps + pp ? 'partial' : 'full';
    }, { ...geom, batch: spec.perBatch ? c.B : 1, heads: spec.perHead ? c.Hq : 1 });
  };
  const s = c.blocks;
  let m;
  switch (s.kind) {
    case 'random': m = random(s); break;
    case 'none': m = BlockMask.fromFunction(() => false, geom); break;
    case 'causal': m = BlockMask.causal(geom); break;
    case 'window': m = BlockMask.slidingWindow({ ...geom, window: s.window, causal: s.causal }); break;
    case 'documents':
      m = BlockMask.documents({ ...geom, segmentIds: segmentIds(opts.cuSeqlensQ, c.Sq), segmentIdsK: segmentIds(opts.cuSeqlensK, c.Sk) });
      break;
    case 'dilated': m = BlockMask.dilated({ ...geom, dilation: s.dilation, local: s.local }); break;
    case 'shards': m = BlockMask.perHeadShards({ ...geom, heads: c.Hq, shards: s.shards }); break;
    default: throw new Error(`unknown block mask kind ${s.kind}`);
  }
  if (s.and === 'causal') m = m.and(BlockMask.causal(geom));
  if (s.and === 'random') m = m.and(random({ p: [1, 2, 4], perHead: true }));
  return m;
}

/** The mask's states as a CPU tensor of the same logical values in view `view` (see above). */
function blocksView(mask, view, B, Hq) {
  const t = mask.blocks;
  const [Bm, Hm, nQ, nK] = t.shape;
  const vals = t.data;
  if (view === 'contig') return t;
  if (view === 'expanded') {
    return Tensor.from(vals, [Bm === 1 ? B : Bm, Hm === 1 ? Hq : Hm, nQ, nK],
      { dtype: 'uint8', strides: [Bm === 1 ? 0 : Hm * nQ * nK, Hm === 1 ? 0 : nQ * nK, nK, 1] });
  }
  if (view === 'transposed') {
    const st = new Uint8Array(vals.length);
    for (let p = 0; p < Bm * Hm; p++)
      for (let a = 0; a < nQ; a++)
        for (let b = 0; b < nK; b++) st[p * nQ * nK + b * nQ + a] = vals[p * nQ * nK + a * nK + b];
    return Tensor.from(st, [Bm, Hm, nK, nQ]).transpose(2, 3);
  }
  if (view === 'padded') {
    const row = nK + 3, plane = nQ * row + 2, batch = Hm * plane + 1, offset = 5;
    const st = new Uint8Array(offset + Bm * batch + 4).fill(2);
    for (let b = 0; b < Bm; b++)
      for (let h = 0; h < Hm; h++)
        for (let a = 0; a < nQ; a++)
          for (let k = 0; k < nK; k++) st[offset + b * batch + h * plane + a * row + k] = vals[((b * Hm + h) * nQ + a) * nK + k];
    return Tensor.from(st, [Bm, Hm, nQ, nK], { dtype: 'uint8', strides: [batch, plane, row, 1], offset });
  }
  throw new Error(`unknown block view ${view}`);
}

async function runBlockCase(c) {
  const r = R.rng(c.name);
  const { q, k, v } = buildInputs(r, c);
  const opts = buildOptions(r, c);
  const mask = buildBlockMask(r, c, opts);
  const ref = blockSparseAttentionReference(q.t, k.t, v.t, mask, opts);
  const outShape = [c.B, c.Hq, c.Sq, c.Dv ?? c.D];
  const outMode = c.out || 'strided';
  const outDtype = outMode === 'none' ? c.dtype : (c.outDtype || c.dtype);
  const tol = tolFor(c.dtype, outDtype);
  const qd = toDev(q.t), kd = toDev(k.t), vd = toDev(v.t);
  const devMask = { ...mask, blocks: toDev(blocksView(mask, c.view, c.B, c.Hq)) };
  const devOpts = { ...opts, bias: toDev(opts.bias), mask: toDev(opts.mask) };
  try {
    await checkBothModes(c, outMode, outShape, outDtype, devOpts, ref, tol,
      (mode, call) => (mode === 'sync' ? blockSparseAttentionSync(qd, kd, vd, devMask, call) : blockSparseAttention(qd, kd, vd, devMask, call)));
  } finally {
    disposeAll(qd, kd, vd, devMask.blocks, devOpts.bias, devOpts.mask);
  }
}

{
  const ALL_BS = {
    causal: true, window: [24, 0], sinks: 3, softcap: 6, alibi: 0.5, sinkLogits: true,
    bias: { shape: 'B1QK', dtype: 'float16' }, mask: { shape: 'BHQK', keep: 0.85, zeroRows: [2] },
  };
  const VL = { q: [5, 0, 1, 17, 9, 0, 70, 3], k: [7, 3, 0, 17, 4, 0, 66, 1] };
  const sum = (a) => a.reduce((x, y) => x + y, 0);
  for (const dtype of BLOCK_DTYPES) {
    bs(`causal blocks [128, 128] dividing Sq = Sk = 256, causal ${dtype}`, { B: 1, D: 64, Sq: 256, Sk: 256, bq: 128, bk: 128, dtype, blocks: { kind: 'causal' }, o: { causal: true } });
    bs(`random blocks [48, 32] not dividing Sq = 100, Sk = 130, per head ${dtype}`, { D: 32, Sq: 100, Sk: 130, bq: 48, bk: 32, dtype, blocks: { kind: 'random', perHead: true } });
    bs(`sliding-window blocks [128, 128] not dividing 300, window [100, 0] + causal, bshd ${dtype}`, { B: 1, Hq: 2, Hkv: 1, D: 64, Sq: 300, Sk: 300, bq: 128, bk: 128, dtype, layout: 'bshd', blocks: { kind: 'window', window: [100, 0], causal: true }, o: { window: [100, 0], causal: true } });
    bs(`full blocks override causal / window / sinks / mask, all options, GQA bshd ${dtype}`, { Hq: 8, Hkv: 2, D: 64, Sq: 90, Sk: 120, bq: 16, bk: 32, dtype, layout: 'bshd', blocks: { kind: 'random', p: [0.2, 0.4, 0.4], perBatch: true, perHead: true }, o: ALL_BS });
    bs(`varlen documents.and(causal) + causal, blocks [16, 16] ${dtype}`, { B: 1, D: 32, Sq: sum(VL.q), Sk: sum(VL.k), varlen: VL, bq: 16, bk: 16, dtype, blocks: { kind: 'documents', and: 'causal' }, o: { causal: true } });
  }
  bs('varlen random blocks [32, 8] + window [10, 4] sinks=2 softcap, GQA fp16 bshd', { B: 1, Hq: 8, Hkv: 2, D: 64, dtype: 'float16', layout: 'bshd', varlen: { q: [40, 1, 0, 60], k: [100, 1, 5, 30] }, Sq: 101, Sk: 136, bq: 32, bk: 8, blocks: { kind: 'random', perHead: true }, o: { window: [10, 4], sinks: 2, softcap: 5 } });
  bs('varlen all options, documents.and(random) [8, 24]', { B: 1, Hq: 4, Hkv: 1, D: 32, Sq: sum(VL.q), Sk: sum(VL.k), varlen: VL, bq: 8, bk: 24, blocks: { kind: 'documents', and: 'random' }, o: { ...ALL_BS, bias: { shape: 'QK' }, mask: { shape: '1HQK', keep: 0.85 } } });
  bs('GQA Hq=8 Hkv=1 perHeadShards [32, 32] Sq = Sk = 128 fp16', { B: 1, Hq: 8, Hkv: 1, D: 64, Sq: 128, Sk: 128, bq: 32, bk: 32, dtype: 'float16', blocks: { kind: 'shards', shards: 3 } });
  bs('dilated.and(causal) [64, 64] Sq = Sk = 200 + causal, padded bf16', { B: 1, D: 32, Sq: 200, Sk: 200, bq: 64, bk: 64, dtype: 'bfloat16', layout: 'padded', blocks: { kind: 'dilated', dilation: 2, local: 1, and: 'causal' }, o: { causal: true } });
  for (const view of ['expanded', 'transposed', 'padded']) {
    bs(`block states as a ${view} device view, causal + alibi`, { D: 32, Sq: 70, Sk: 90, bq: 16, bk: 20, view, blocks: { kind: 'random', p: [1, 1, 1] }, o: { causal: true, alibi: true } });
    bs(`per-head per-batch block states as a ${view} device view, mask`, { D: 16, Sq: 50, Sk: 61, bq: 7, bk: 9, view, blocks: { kind: 'random', perBatch: true, perHead: true }, o: { mask: { shape: 'QK', keep: 0.7 } } });
  }
  bs('every block skipped: out 0, lse -inf', { D: 32, Sq: 40, Sk: 50, bq: 16, bk: 16, blocks: { kind: 'none' } });
  bs('every block skipped + sinkLogits: out 0, lse = sink logit', { D: 32, Sq: 40, Sk: 50, bq: 16, bk: 16, blocks: { kind: 'none' }, o: { sinkLogits: true } });
  bs('blocks [1, 1] (per pair) + window [3, 3]', { D: 16, Sq: 20, Sk: 30, bq: 1, bk: 1, blocks: { kind: 'random', perHead: true }, o: { window: [3, 3] } });
  bs('one block [128, 128] larger than Sq = 5, Sk = 9', { D: 32, Sq: 5, Sk: 9, bq: 128, bk: 128, blocks: { kind: 'random', p: [0, 1, 1], perHead: true }, o: { causal: true } });
  bs('Dv != D, library-allocated out, no lse, bf16', { D: 64, Dv: 32, Sq: 60, Sk: 77, bq: 32, bk: 16, dtype: 'bfloat16', out: 'none', lse: false, blocks: { kind: 'random', perHead: true }, o: { softcap: 3 } });
  bs('fp16 -> float32 contiguous out, qkv projection layout, causal blocks', { Hq: 4, Hkv: 2, D: 32, Sq: 90, Sk: 90, bq: 32, bk: 32, dtype: 'float16', outDtype: 'float32', out: 'contig', layout: 'qkv', blocks: { kind: 'causal' }, o: { causal: true } });

  // random shapes, block sizes, masks, views and options (drawn from the seed: names carry them)
  const r = R.rng('block-sparse-cases');
  for (let n = 0; n < 20; n++) {
    const Hkv = r.int(1, 2), Hq = Hkv * r.pick([1, 2, 4]);
    const D = r.pick([16, 32, 64, 128]);
    const c = { Hq, Hkv, D, dtype: r.pick(BLOCK_DTYPES), layout: r.pick(['bhsd', 'bshd', 'padded']), lse: r.random() < 0.6, o: {} };
    if (r.random() < 0.15) c.Dv = r.pick([16, 48]);
    const size = () => r.pick([16, 32, 64, 128, r.int(1, 50)]);
    c.bq = size();
    c.bk = size();
    const smax = D >= 128 ? 100 : 160;
    if (r.random() < 0.25) {
      const segs = r.int(1, 4);
      c.varlen = { q: Array.from({ length: segs }, () => r.int(0, 60)), k: Array.from({ length: segs }, () => r.int(0, 60)) };
      c.varlen.q[0] += 1; // seqLenQ and seqLenK >= 1
      c.varlen.k[0] += 1;
      c.B = 1;
      c.Sq = sum(c.varlen.q);
      c.Sk = sum(c.varlen.k);
    } else {
      c.B = r.int(1, 2);
      c.Sq = r.int(1, smax);
      c.Sk = r.int(1, smax);
    }
    const kinds = c.varlen ? ['documents', 'random', 'random'] : ['random', 'random', 'causal', 'window', 'dilated', 'shards'];
    const kind = r.pick(kinds);
    if (kind === 'random') c.blocks = { kind, p: [r.uniform(0, 1), r.uniform(0, 1), r.uniform(0, 1)], perBatch: r.random() < 0.3, perHead: r.random() < 0.4 };
    else if (kind === 'window') c.blocks = { kind, window: [r.pick([-1, 0, r.int(1, 60)]), r.pick([-1, 0, r.int(1, 20)])], causal: r.random() < 0.5 };
    else if (kind === 'dilated') c.blocks = { kind, dilation: r.int(1, 3), local: r.int(0, 2) };
    else if (kind === 'shards') c.blocks = { kind, shards: r.int(1, 3) };
    else c.blocks = { kind };
    if (kind !== 'random' && r.random() < 0.3) c.blocks.and = 'causal';
    c.view = r.pick(['contig', 'contig', 'expanded', 'transposed', 'padded']);
    c.out = r.pick(['strided', 'strided', 'contig', 'none']);
    if (c.out !== 'none' && r.random() < 0.25) c.outDtype = r.pick(BLOCK_DTYPES);
    if (r.random() < 0.4) c.o.causal = true;
    if (r.random() < 0.3) c.o.window = [r.pick([-1, 0, r.int(1, 40)]), r.pick([-1, 0, r.int(1, 40)])];
    if (c.o.window && r.random() < 0.5) c.o.sinks = r.int(1, 8);
    if (r.random() < 0.25) c.o.softcap = r.uniform(1, 10);
    if (r.random() < 0.2) c.o.alibi = r.uniform(0.05, 1);
    if (r.random() < 0.25) c.o.sinkLogits = true;
    if (r.random() < 0.2) c.o.bias = { shape: r.pick(['BHQK', 'QK', '1H1K', 'K']), dtype: r.pick(BLOCK_DTYPES) };
    if (r.random() < 0.25) c.o.mask = { shape: r.pick(['BHQK', 'QK', 'B11K']), keep: r.uniform(0.3, 0.95) };
    if (r.random() < 0.15) c.o.scale = r.uniform(0, 0.4);
    const opts = Object.entries(c.o).map(([key, val]) => (val === true ? key : `${key}=${JSON.stringify(val)}`)).join(' ');
    const blocks = Object.entries(c.blocks).map(([key, val]) => `${key}=${JSON.stringify(val)}`).join(' ');
    bs(`random #${n} B=${c.B} Hq=${Hq} Hkv=${Hkv} Sq=${c.Sq} Sk=${c.Sk} D=${D}${c.Dv ? ` Dv=${c.Dv}` : ''} ${c.dtype}->${c.outDtype || c.dtype} ${c.layout} out=${c.out}${c.varlen ? ` varlen=${JSON.stringify(c.varlen)}` : ''} blocks [${c.bq}, ${c.bk}] ${blocks} view=${c.view} ${opts}`, c);
  }
}
for (const c of blockCases) test(c.name, () => runBlockCase(c));

// ---------------------------------------------------------------------------------------------
// neighborhood attention: neighborhoodAttention(Sync) on the device (element bitmaps over 128 x 128
// blocks: the sm_90 kernels' row-load path at D64 / D128, the generic kernel elsewhere) and
// blockSparseAttention with neighborhood masks of odd block sizes (the per-element path), against
// the float64 oracles
// ---------------------------------------------------------------------------------------------
const naCases = [];
{
  const na = (name, c) => naCases.push({ name: `neighborhood device: ${name}`, B: 1, Hq: 2, Hkv: 1, D: 64, dtype: 'bfloat16', lse: true, layout: 'bhsd', ...c });
  for (const dtype of BLOCK_DTYPES) {
    na(`2D 24x40 k=[7,13] D64 ${dtype}`, { rule: { spatial: [24, 40], kernelSize: [7, 13] }, dtype });
    na(`1D L=700 k=65 dilation 2 causal D128 ${dtype}`, { rule: { spatial: [700], kernelSize: 65, dilation: 2, causal: true }, D: 128, dtype });
  }
  na('3D 8x8x12 k=[3,5,5] causal [f,t,f] D32 GQA 4/2', { rule: { spatial: [8, 8, 12], kernelSize: [3, 5, 5], causal: [false, true, false] }, D: 32, Hq: 4, Hkv: 2 });
  na('2D 30x30 k=9 dilation [2,3] D128 bshd, softcap', { rule: { spatial: [30, 30], kernelSize: 9, dilation: [2, 3] }, D: 128, layout: 'bshd', o: { softcap: 4 } });
  na('2D 16x33 k=5 D64 padded B=2, no lse', { rule: { spatial: [16, 33], kernelSize: 5 }, B: 2, layout: 'padded', lse: false, dtype: 'float16' });
  for (const [D, bs] of [[64, [48, 80]], [128, [128, 64]], [64, [256, 128]]]) {
    na(`blockSparse, neighborhood mask blocks ${JSON.stringify(bs)} D${D} + causal`, { rule: { spatial: [20, 30], kernelSize: [5, 7] }, D, blockSize: bs, o: { causal: true } });
  }
}

async function runNeighborhoodCase(c) {
  const r = R.rng(c.name);
  const N = c.rule.spatial.reduce((a, b) => a * b, 1);
  const q = R.randomTensor(r, [c.B, c.Hq, N, c.D], c.dtype, { layout: c.layout }).t;
  const k = R.randomTensor(r, [c.B, c.Hkv, N, c.D], c.dtype, { layout: c.layout }).t;
  const v = R.randomTensor(r, [c.B, c.Hkv, N, c.D], c.dtype, { layout: c.layout }).t;
  const qd = toDev(q), kd = toDev(k), vd = toDev(v);
  const shape = [c.B, c.Hq, N, c.D];
  const cc = { ...c, Sq: N };
  try {
    if (c.blockSize) {
      const mask = BlockMask.neighborhood({ ...c.rule, blockSize: c.blockSize });
      const ref = blockSparseAttentionReference(q, k, v, mask, c.o || {});
      const dm = mask.toSync(DEV);
      try {
        await checkBothModes(cc, 'strided', shape, c.dtype, { ...(c.o || {}) }, ref, tolFor(c.dtype),
          (mode, call) => (mode === 'sync' ? blockSparseAttentionSync(qd, kd, vd, dm, call) : blockSparseAttention(qd, kd, vd, dm, call)));
      } finally {
        dm.dispose();
      }
    } else {
      const ref = neighborhoodAttentionReference(q, k, v, { ...c.rule, ...(c.o || {}) });
      await checkBothModes(cc, 'strided', shape, c.dtype, { ...c.rule, ...(c.o || {}) }, ref, tolFor(c.dtype),
        (mode, call) => (mode === 'sync' ? neighborhoodAttentionSync(qd, kd, vd, call) : neighborhoodAttention(qd, kd, vd, call)));
    }
  } finally {
    disposeAll(qd, kd, vd);
    clearNeighborhoodCache();
  }
}
for (const c of naCases) test(c.name, () => runNeighborhoodCase(c));

// top-k block attention (MoBA) on the device: gating on the host, block-sparse attention on the
// device; the output and the selected blocks against the float64 oracle
const topkCases = [
  { name: 'topk device: bs 128 topk 3 causal S=700 D128 bf16', B: 1, Hq: 4, Hkv: 2, D: 128, S: 700, bs: 128, topk: 3, causal: true, dtype: 'bfloat16' },
  { name: 'topk device: bs 64 topk 4 S=500 D64 fp16 bshd', B: 2, Hq: 2, Hkv: 1, D: 64, S: 500, bs: 64, topk: 4, causal: false, dtype: 'float16', layout: 'bshd' },
  { name: 'topk device: bs 48 topk 2 causal S=300 D32 fp32', B: 1, Hq: 2, Hkv: 2, D: 32, S: 300, bs: 48, topk: 2, causal: true, dtype: 'float32' },
  { name: 'topk device: bs 64 topk 6 causal S=3000 D32 bf16 GQA 4 (47 blocks)', B: 1, Hq: 4, Hkv: 1, D: 32, S: 3000, bs: 64, topk: 6, causal: true, dtype: 'bfloat16' },
];
for (const c of topkCases) {
  test(c.name, async () => {
    const r = R.rng(c.name);
    const [q, k, v] = [c.Hq, c.Hkv, c.Hkv].map((h) => R.randomTensor(r, [c.B, h, c.S, c.D], c.dtype, { layout: c.layout || 'bhsd' }).t);
    const o = { blockSize: c.bs, topk: c.topk, causal: c.causal };
    const ref = topkBlockAttentionReference(q, k, v, o);
    const qd = toDev(q), kd = toDev(k), vd = toDev(v);
    try {
      await checkBothModes({ ...c, Sq: c.S, lse: true }, 'strided', [c.B, c.Hq, c.S, c.D], c.dtype, o, ref, tolFor(c.dtype), async (mode, call) => {
        const res = mode === 'sync' ? topkBlockAttentionSync(qd, kd, vd, { ...call, returnIndices: true })
          : await topkBlockAttention(qd, kd, vd, { ...call, returnIndices: true });
        assert.strictEqual(res.indices.device, DEV);
        assert.deepStrictEqual(Array.from(res.indices.toSync('cpu').data), Array.from(ref.indices));
        res.indices.dispose();
        return { out: res.out, lse: res.lse };
      });
    } finally {
      disposeAll(qd, kd, vd);
    }
  });
}

// A small problem with a block mask: [1, 4, 9, 16] x [1, 2, 11, 16], blocks [4, 4] (3 x 3 blocks).
function smallBlocks(r) {
  const c = small(r);
  const mask = BlockMask.fromFunction((b, h, qb, kb) => (qb === kb ? 'full' : kb < qb ? 'partial' : false), { seqLenQ: 9, seqLenK: 11, blockSize: 4, heads: 4 });
  return { ...c, blockMask: mask };
}

test('block-sparse device: BlockMask.to / toSync move the mask; results, density, toDense and and/or match the CPU mask', async () => {
  const r = R.rng('block-sparse to device');
  const c = smallBlocks(r);
  const s0 = stats();
  const onDev = c.blockMask.toSync(DEV);
  const onDevAsync = await c.blockMask.to(DEV);
  assert.strictEqual(onDev.device, DEV);
  assert.strictEqual(c.blockMask.device, 'cpu', 'the CPU mask is unchanged');
  assert.deepStrictEqual([...onDev.blockSize], [...c.blockMask.blockSize]);
  assert.strictEqual(onDev.density(), c.blockMask.density());
  assert.deepStrictEqual([...onDev.toDense().data], [...c.blockMask.toDense().data]);
  const either = onDevAsync.or(onDev);
  const both = onDev.and(either);
  assert.strictEqual(both.device, DEV, 'and / or keep the device');
  assert.deepStrictEqual([...both.toDense().data], [...c.blockMask.and(c.blockMask.or(c.blockMask)).toDense().data]);
  const [q, k, v] = [c.q, c.k, c.v].map((t) => t.toSync(DEV));
  const opts = { causal: true, returnLse: true };
  const ref = blockSparseAttentionReference(c.q, c.k, c.v, c.blockMask, opts);
  const res = blockSparseAttentionSync(q, k, v, onDevAsync, opts);
  const oh = res.out.toSync('cpu');
  check('out through a BlockMask moved with to()', relErr(oh, ref.out), tolFor('float32', 'float32'), () => worst(oh, ref.out));
  disposeAll(res.out, res.lse, q, k, v);
  onDev.dispose();
  onDevAsync.dispose();
  either.dispose();
  both.dispose();
  assert.strictEqual(stats().liveAllocations, s0.liveAllocations, 'dispose() freed every device copy');
  expectCode(() => onDev.density(), 'ERR_ATTN_DISPOSED', /./);
});

test('block-sparse device: a blockMask on another device than q is ERR_ATTN_DEVICE naming blockMask (TS and native)', async () => {
  const r = R.rng('block-sparse mix');
  const c = smallBlocks(r);
  const [q, k, v, out] = [c.q, c.k, c.v, c.out].map((t) => t.toSync(DEV));
  const s0 = stats();
  // blocks on the CPU (as every BlockMask builder makes them), q on the device
  const onCpu = new RegExp(`\\bblockMask\\b is on cpu but q is on ${DEV}.*\\.to\\('${DEV}'\\)`);
  expectCode(() => blockSparseAttentionSync(q, k, v, c.blockMask), 'ERR_ATTN_DEVICE', onCpu);
  await expectRejects(() => blockSparseAttention(q, k, v, c.blockMask, { returnLse: true }), 'ERR_ATTN_DEVICE', onCpu);
  // blocks on the device, q on the CPU
  const devMask = { ...c.blockMask, blocks: c.blockMask.blocks.toSync(DEV) };
  const onDev = new RegExp(`\\bblockMask\\b is on ${DEV} but q is on cpu`);
  expectCode(() => blockSparseAttentionSync(c.q, c.k, c.v, devMask), 'ERR_ATTN_DEVICE', onDev);
  await expectRejects(() => blockSparseAttention(c.q, c.k, c.v, devMask), 'ERR_ATTN_DEVICE', onDev);
  // blocks on a second device (with two)
  if (backendInfo().cuda.devices.length >= 2 && DEV === 'cuda:0') {
    const other = { ...c.blockMask, blocks: c.blockMask.blocks.toSync('cuda:1') };
    expectCode(() => blockSparseAttentionSync(q, k, v, other), 'ERR_ATTN_DEVICE', /\bblockMask\b is on cuda:1 but q is on cuda:0/);
    other.blocks.dispose();
  }
  assert.strictEqual(stats().liveAllocations, s0.liveAllocations + 1, 'only the device blocks are live: the refused calls freed their out / lse');
  // native refuses a mix on its own too (bypassing the TS checks); lib/native/descriptor.ts:
  // slot 6 is the block mask's record (7, 8 its element bitmaps'), the last four options are
  // HasBlockMask, BlockQ, BlockK, HasElementMask.
  const { ATTENTION_DESCRIPTOR_LENGTH, ATTENTION_OPTIONS, TENSOR_RECORD, writeTensorRecord } = require(path.join(root, 'dist', 'native', 'descriptor'));
  assert.strictEqual(ATTENTION_OPTIONS, 9 * TENSOR_RECORD, 'descriptor layout changed: update this test');
  const { kNative } = require(path.join(root, 'dist', 'tensor'));
  const desc = new Float64Array(ATTENTION_DESCRIPTOR_LENGTH);
  [q, k, v, out, null, null, c.blockMask.blocks].forEach((t, i) => { if (t) writeTensorRecord(desc, i, t, 'x'); });
  desc[ATTENTION_DESCRIPTOR_LENGTH - 4] = 1;
  desc[ATTENTION_DESCRIPTOR_LENGTH - 3] = 4;
  desc[ATTENTION_DESCRIPTOR_LENGTH - 2] = 4;
  const handles = [q, k, v, out].map((t) => t[kNative]());
  expectCode(() => native().attentionSync(...handles, null, null, c.blockMask.blocks.data, null, null, null, null, null, null, null, desc, null, -1),
    'ERR_ATTN_DEVICE', /\bblockMask\b is on cpu but q is on cuda/);
  // the same call with the device blocks goes through
  writeTensorRecord(desc, 6, devMask.blocks, 'x');
  native().attentionSync(...handles, null, null, devMask.blocks[kNative](), null, null, null, null, null, null, null, desc, null, -1);
  const ref = blockSparseAttentionReference(c.q, c.k, c.v, c.blockMask);
  check('native call out', relErr(out.toSync('cpu'), ref.out), TOL.float32);
  disposeAll(q, k, v, out, devMask.blocks);
});

test('block-sparse: device blocks of the wrong dtype, disposed blocks, and blocks for other lengths are refused by name', async () => {
  const r = R.rng('block-sparse refusals');
  const c = smallBlocks(r);
  const [q, k, v] = [c.q, c.k, c.v].map((t) => t.toSync(DEV));
  const s0 = stats();
  const f32 = { ...c.blockMask, blocks: Tensor.zeros([1, 4, 3, 3], { device: DEV }) };
  expectCode(() => blockSparseAttentionSync(q, k, v, f32), 'ERR_ATTN_DTYPE', /blockMask blocks must be uint8/);
  await expectRejects(() => blockSparseAttention(q, k, v, f32), 'ERR_ATTN_DTYPE', /blockMask blocks must be uint8/);
  const wrongGrid = { ...c.blockMask, blocks: Tensor.zeros([1, 4, 3, 4], { device: DEV, dtype: 'uint8' }) };
  expectCode(() => blockSparseAttentionSync(q, k, v, wrongGrid), 'ERR_ATTN_SHAPE', /blockMask/);
  const gone = { ...c.blockMask, blocks: c.blockMask.blocks.toSync(DEV) };
  gone.blocks.dispose();
  expectCode(() => blockSparseAttentionSync(q, k, v, gone), 'ERR_ATTN_DISPOSED', /blockMask/);
  await expectRejects(() => blockSparseAttention(q, k, v, gone, { returnLse: true }), 'ERR_ATTN_DISPOSED', /blockMask/);
  const other = BlockMask.causal({ seqLenQ: 10, seqLenK: 11, blockSize: 4 });
  const otherDev = { ...other, blocks: other.blocks.toSync(DEV) };
  expectCode(() => blockSparseAttentionSync(q, k, v, otherDev), 'ERR_ATTN_SHAPE', /seqLenQ 10/);
  disposeAll(f32.blocks, wrongGrid.blocks, otherDev.blocks);
  assert.strictEqual(stats().liveAllocations, s0.liveAllocations, 'the refused calls freed their out / lse');
  disposeAll(q, k, v);
});

test('block-sparse: block states disposed while an async call uses them stay allocated until it settles', async () => {
  const r = R.rng('block-sparse busy');
  const c = smallBlocks(r);
  const ref = blockSparseAttentionReference(c.q, c.k, c.v, c.blockMask, { causal: true });
  const [q, k, v] = [c.q, c.k, c.v].map((t) => t.toSync(DEV));
  const blocks = c.blockMask.blocks.toSync(DEV);
  const s0 = stats();
  const { kNative } = require(path.join(root, 'dist', 'tensor'));
  const handle = blocks[kNative]();
  const p = blockSparseAttention(q, k, v, { ...c.blockMask, blocks }, { causal: true });
  blocks.dispose();
  const info = native().cudaStorageInfo(handle);
  assert.deepStrictEqual([info.disposed, info.freed, info.busy], [true, false, 1]);
  const out = await p;
  check('out', relErr(out.toSync('cpu'), ref.out), TOL.float32);
  await new Promise((res) => setImmediate(res));
  assert.strictEqual(stats().liveBytes, s0.liveBytes - 4 * 3 * 3 + 1 * 4 * 9 * 8 * 4, 'blocks freed once the call settled; out is new');
  disposeAll(q, k, v, out);
});

test('block-sparse: a CUDA library from before block_sparse_attention is ERR_ATTN_CUDA_UNAVAILABLE saying so (fake library)', () => {
  // FAKE_CUDA_TABLE_DELTA=0: the fake reports the table through attention_on_stream, the table of a
  // library built before block_sparse_attention was appended (test/fixtures/fake_cuda.c). A real
  // library ignores the variable: skipped there.
  if (!/^fake attnkit_cuda/.test(backendInfo().cuda.buildInfo || '')) return 'skip';
  const script = `
    const { Tensor, BlockMask, blockSparseAttention, blockSparseAttentionSync, attentionSync, backendInfo } = require(${JSON.stringify(root)});
    const { native } = require(${JSON.stringify(path.join(root, 'dist', 'native', 'binding'))});
    const DEV = ${JSON.stringify(DEV)};
    const err = (e) => ({ code: e && e.code, message: e && e.message, attn: !!e && e.name === 'AttnError' });
    (async () => {
      const q = Tensor.from(Float32Array.from({ length: 2 * 3 * 8 }, (_, i) => Math.sin(i)), [1, 2, 3, 8]).toSync(DEV);
      const m = BlockMask.causal({ seqLenQ: 3, seqLenK: 3, blockSize: 2 });
      const dm = { ...m, blocks: m.blocks.toSync(DEV) };
      const live0 = native().cudaMemoryStats().liveAllocations;
      let sync = null, async_ = null, plain = null;
      try { blockSparseAttentionSync(q, q, q, dm, { returnLse: true }); } catch (e) { sync = err(e); }
      try { await blockSparseAttention(q, q, q, dm, { returnLse: true }); } catch (e) { async_ = err(e); }
      const leaked = native().cudaMemoryStats().liveAllocations - live0;
      try { attentionSync(q, q, q).dispose(); } catch (e) { plain = err(e); }
      q.dispose(); dm.blocks.dispose();
      console.log(JSON.stringify({ available: backendInfo().cuda.available, sync, async: async_, plain, leaked, left: native().cudaMemoryStats().liveAllocations }));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const runWith = (extra) => {
    const env = { ...process.env };
    for (const key of Object.keys(env)) if (key.startsWith('FAKE_CUDA_')) delete env[key];
    const res = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60000, env: { ...env, ...extra } });
    if (res.status !== 0) throw new Error(`child failed (${res.status} ${res.signal}): ${res.stderr}`);
    return JSON.parse(res.stdout.trim().split('\n').pop());
  };
  const old = runWith({ FAKE_CUDA_TABLE_DELTA: '0' });
  assert.strictEqual(old.available, true, 'a library without the entry still loads (it serves everything else)');
  for (const e of [old.sync, old.async]) {
    assert.ok(e && e.attn, `an AttnError, got ${JSON.stringify(e)}`);
    assert.strictEqual(e.code, 'ERR_ATTN_CUDA_UNAVAILABLE', e.message);
    assert.match(e.message, new RegExp(`^blockSparseAttention on ${DEV}: the CUDA library .* is too old for blockSparseAttention`));
    assert.match(e.message, /npm run build:cuda/);
    assert.match(e.message, /ATTNKIT_CUDA_LIB/);
  }
  assert.strictEqual(old.plain, null, 'attention itself still runs');
  assert.strictEqual(old.leaked, 0, 'the refused calls freed their out / lse');
  assert.strictEqual(old.left, 0);
  // the library's own failure reaches the caller under the op's name
  const forced = runWith({ FAKE_CUDA_ATTENTION: 'argument' });
  for (const e of [forced.sync, forced.async]) {
    assert.strictEqual(e && e.code, 'ERR_ATTN_ARGUMENT', JSON.stringify(e));
    assert.match(e.message, new RegExp(`^blockSparseAttention on ${DEV}: fake_cuda: forced argument failure`));
  }
  assert.strictEqual(forced.leaked, 0);
  assert.strictEqual(forced.left, 0);
  return undefined;
});

// ---------------------------------------------------------------------------------------------
// linearAttention(Sync) / linearAttentionStep(Sync) on the device
// ---------------------------------------------------------------------------------------------
// The CPU suite's linear cases (test/helpers/linear-cases.js, the same table and inputs) on the
// device, plus cases for the tensor-core kernel (float16 / bfloat16, causal, Dk 64 or 128, Dv a
// multiple of 64, no normalize), against the float64 recurrence; into poisoned device outputs,
// sync and async (bitwise equal: the same kernel). Out is held to the dtype's tolerance. The
// returned state is held to float32's, except from 16-bit inputs: the tensor-core kernel forms
// K^T V from 16-bit operands (a gated key rounded to 16 bits), as flash-linear-attention does.
const { linearAttention, linearAttentionSync, linearAttentionStepSync } = attnkit;
const { linearAttentionReference } = require(path.join(root, 'dist', 'reference'));
const LC = require('../helpers/linear-cases');

const linearGpuCases = [];
const lg = (name, c) => linearGpuCases.push({ name: `linear tc: ${name}`, ...c });
for (const dtype of ['bfloat16', 'float16']) {
  for (const Dk of [64, 128]) {
    for (const g of LC.GATES) lg(`${dtype} Dk${Dk} ${LC.gateName(g)}`, { dtype, B: 2, H: 2, S: 200, Dk, Dv: 128, o: { ...g, returnState: true } });
  }
  lg(`${dtype} elu1 GLA initialState bshd`, { dtype, layout: 'bshd', B: 1, H: 3, S: 130, Dk: 64, Dv: 64, o: { gates: 'perDim', featureMap: 'elu1', initialState: true, returnState: true } });
  lg(`${dtype} relu per-head decay scale initialState`, { dtype, B: 2, H: 2, S: 77, Dk: 128, Dv: 64, o: { decay: 'perHead', featureMap: 'relu', scale: true, initialState: true, returnState: true } });
  lg(`${dtype} strong scalar gates (down to -8)`, { dtype, B: 1, H: 2, S: 300, Dk: 64, Dv: 64, o: { gates: 'scalar', gateScale: 8, returnState: true } });
  lg(`${dtype} strong GLA gates (down to -8)`, { dtype, B: 1, H: 2, S: 300, Dk: 128, Dv: 64, o: { gates: 'perDim', gateScale: 8, returnState: true } });
  lg(`${dtype} GLA gates ${dtype} out float32 contiguous`, { dtype, outDtype: 'float32', out: 'contig', B: 1, H: 2, S: 100, Dk: 64, Dv: 192, o: { gates: 'perDim', gateDtype: dtype } });
  lg(`${dtype} S=64 exactly, library-allocated out`, { dtype, out: 'none', B: 1, H: 1, S: 64, Dk: 64, Dv: 64, o: { gates: 'scalar' } });
  lg(`${dtype} S=1`, { dtype, B: 1, H: 2, S: 1, Dk: 128, Dv: 64, o: { gates: 'perDim', initialState: true, returnState: true } });
  lg(`${dtype} padded layout (generic kernel: rows not 16-byte aligned)`, { dtype, layout: 'padded', B: 1, H: 2, S: 90, Dk: 64, Dv: 64, o: { gates: 'scalar', returnState: true } });
}

function linearOnDevice(opts) {
  return { ...opts, logGates: toDev(opts.logGates), initialState: toDev(opts.initialState), initialNormalizer: toDev(opts.initialNormalizer) };
}

async function runLinearCase(c) {
  const { s, q, k, v, opts, ref, outMode, outDtype, tol } = LC.prepare(c);
  const outShape = [s.B, s.H, s.S, s.Dv];
  const dtype = c.dtype || 'float32';
  const stateTol = dtype === 'float32' ? TOL.float32 : tol;
  const qd = toDev(q.t), kd = toDev(k.t), vd = toDev(v.t);
  const devOpts = linearOnDevice(opts);
  const detail = (a, b) => () => `${worst(a, b)}\n  case: ${LC.describeCase(c, s)}`;
  let first;
  try {
    for (const mode of ['sync', 'async']) {
      const out = toDev(outMode === 'none' ? undefined : outMode === 'contig' ? R.poisonedOut(outShape, outDtype) : R.stridedOut(outShape, outDtype));
      const call = { ...devOpts, out };
      const res = mode === 'sync' ? linearAttentionSync(qd, kd, vd, call) : await linearAttention(qd, kd, vd, call);
      const o = opts.returnState ? res.out : res;
      try {
        if (out) assert.strictEqual(o, out, 'the given out is returned');
        assert.strictEqual(o.device, DEV);
        assert.strictEqual(o.dtype, outDtype);
        assert.deepStrictEqual([...o.shape], outShape);
        const got = o.toFloat32Array();
        const state = opts.returnState ? res.state.toFloat32Array() : undefined;
        const z = opts.returnState && opts.normalize ? res.normalizer.toFloat32Array() : undefined;
        if (opts.returnState) assert.strictEqual(res.state.device, DEV);
        if (!first) {
          first = { mode, got, state };
          check(`${mode} out (${dtype} -> ${outDtype})`, relErr(got, ref.out), tol, detail(got, ref.out));
          if (state) check(`${mode} state`, relErr(state, ref.state), stateTol, detail(state, ref.state));
          if (z) check(`${mode} normalizer`, relErr(z, ref.normalizer), stateTol, detail(z, ref.normalizer));
        } else {
          bitsEqual(got, first.got);
          if (state) bitsEqual(state, first.state);
        }
      } finally {
        disposeAll(o, opts.returnState ? res.state : undefined, opts.returnState ? res.normalizer : undefined);
      }
    }
  } finally {
    disposeAll(qd, kd, vd, devOpts.logGates, devOpts.initialState, devOpts.initialNormalizer);
  }
}

for (const c of LC.cases) test(`linear: ${c.name}`, () => runLinearCase(c));
for (const c of linearGpuCases) test(c.name, () => runLinearCase(c));

// Inputs for the forms that must agree: values of `dtype`, GLA / per-step gates, on the device.
function linearProblem(label, { B = 2, H = 2, S = 150, Dk = 64, Dv = 64, dtype = 'float32', gates = 'perDim', normalize = false, featureMap = 'identity', gateLow = -0.5 } = {}) {
  const r = R.rng(`gpu linear ${label}`);
  const T = (shape, positive) => LC.input(r, shape, dtype, 'bhsd', positive).t;
  const q = T([B, H, S, Dk], normalize), k = T([B, H, S, Dk], normalize), v = T([B, H, S, Dv]);
  const gshape = gates === 'perDim' ? [B, H, S, Dk] : [B, H, S];
  const logGates = gates ? Tensor.from(Float32Array.from({ length: numel(gshape) }, () => r.uniform(gateLow, 0)), gshape) : undefined;
  return { B, H, S, Dk, Dv, dtype, q, k, v, logGates, opts: { featureMap, normalize, logGates } };
}
const seqSlice = (t, t0, t1) => (t ? t.slice(2, t0, t1) : undefined);

for (const [label, shape] of [
  ['bfloat16 GLA (tensor cores)', { dtype: 'bfloat16' }], ['float16 per-step gates (tensor cores)', { dtype: 'float16', gates: 'scalar', Dk: 128 }],
  ['float32 GLA normalize elu1 (generic)', { Dk: 24, Dv: 40, normalize: true, featureMap: 'elu1' }],
]) {
  test(`linear: state handed across two device calls == one call, ${label}`, async () => {
    const p = linearProblem(`two calls ${label}`, shape);
    const tol = tolFor(p.dtype, p.dtype), stateTol = p.dtype === 'float32' ? TOL.float32 : tol;
    const ref = linearAttentionReference(p.q, p.k, p.v, p.opts);
    const dev = [p.q, p.k, p.v].map(toDev), g = toDev(p.logGates);
    const cut = 77;  // inside a chunk of either kernel
    const part = (t0, t1, init) => linearAttentionSync(seqSlice(dev[0], t0, t1), seqSlice(dev[1], t0, t1), seqSlice(dev[2], t0, t1), {
      ...p.opts, logGates: seqSlice(g, t0, t1), returnState: true, initialState: init && init.state, initialNormalizer: init && init.normalizer,
    });
    const one = part(0, p.S), a = part(0, cut), b = part(cut, p.S, a);
    try {
      const ha = a.out.toFloat32Array(), hb = b.out.toFloat32Array(), both = new Float32Array(ref.out.length);
      const rows = (x, n, at) => {
        for (let bh = 0; bh < p.B * p.H; bh++) both.set(x.subarray(bh * n * p.Dv, (bh + 1) * n * p.Dv), (bh * p.S + at) * p.Dv);
      };
      rows(ha, cut, 0);
      rows(hb, p.S - cut, cut);
      check('two calls vs float64', relErr(both, ref.out), tol, () => worst(both, ref.out));
      check('one call vs float64', relErr(one.out.toFloat32Array(), ref.out), tol);
      check('state after two calls', relErr(b.state.toFloat32Array(), ref.state), stateTol);
      if (p.opts.normalize) check('normalizer after two calls', relErr(b.normalizer.toFloat32Array(), ref.normalizer), stateTol);
    } finally {
      for (const x of [one, a, b]) disposeAll(x.out, x.state, x.normalizer);
      disposeAll(...dev, g);
    }
  });

  test(`linear: linearAttention (chunked) == linearAttentionStep token by token on the device, ${label}`, async () => {
    const p = linearProblem(`steps ${label}`, { ...shape, S: 70 });
    const tol = tolFor(p.dtype, p.dtype), stateTol = p.dtype === 'float32' ? TOL.float32 : tol;
    const ref = linearAttentionReference(p.q, p.k, p.v, p.opts);
    const dev = [p.q, p.k, p.v].map(toDev), g = toDev(p.logGates);
    const state = Tensor.zeros([p.B, p.H, p.Dk, p.Dv], { device: DEV });
    const z = p.opts.normalize ? Tensor.zeros([p.B, p.H, p.Dk], { device: DEV }) : undefined;
    const outs = [];
    try {
      for (let t = 0; t < p.S; t++) {
        outs.push(linearAttentionStepSync(seqSlice(dev[0], t, t + 1), seqSlice(dev[1], t, t + 1), seqSlice(dev[2], t, t + 1), state,
          { ...p.opts, logGates: seqSlice(g, t, t + 1), normalizer: z }));
      }
      const stepped = new Float32Array(ref.out.length);
      outs.forEach((o, t) => {
        const h = o.toFloat32Array();
        for (let bh = 0; bh < p.B * p.H; bh++) stepped.set(h.subarray(bh * p.Dv, (bh + 1) * p.Dv), (bh * p.S + t) * p.Dv);
      });
      check('steps vs float64', relErr(stepped, ref.out), tol, () => worst(stepped, ref.out));
      check('stepped state vs float64', relErr(state.toFloat32Array(), ref.state), stateTol);
      if (z) check('stepped normalizer vs float64', relErr(z.toFloat32Array(), ref.normalizer), stateTol);
    } finally {
      disposeAll(...outs, state, z, ...dev, g);
    }
  });
}

// The issue's stability requirement: log gates of -20 per step over 65536 steps stay finite.
for (const [label, shape] of [
  ['bfloat16 GLA Dk 64 (tensor cores)', { dtype: 'bfloat16', gates: 'perDim' }], ['bfloat16 per-step Dk 128 (tensor cores)', { dtype: 'bfloat16', gates: 'scalar', Dk: 128 }],
  ['float32 GLA normalize (generic)', { Dk: 16, Dv: 16, normalize: true, featureMap: 'elu1' }],
]) {
  test(`linear: log gates down to -20 per step over 65536 steps stay finite and exact, ${label}`, () => {
    const p = linearProblem(`strong ${label}`, { B: 1, H: 1, S: 65536, gateLow: -20, ...shape });
    const ref = linearAttentionReference(p.q, p.k, p.v, p.opts);
    const dev = [p.q, p.k, p.v].map(toDev), g = toDev(p.logGates);
    const res = linearAttentionSync(...dev, { ...p.opts, logGates: g, returnState: true });
    try {
      const out = res.out.toFloat32Array(), st = res.state.toFloat32Array();
      assert.ok(out.every(Number.isFinite) && st.every(Number.isFinite), 'every output and state element finite');
      check('out vs float64', relErr(out, ref.out), tolFor(p.dtype, p.dtype), () => worst(out, ref.out));
    } finally {
      disposeAll(res.out, res.state, res.normalizer, ...dev, g);
    }
  });
}

test('linear: a device log gate > 0 is ERR_ATTN_ARGUMENT; mixed devices are ERR_ATTN_DEVICE naming the argument', async () => {
  const p = linearProblem('bad', { B: 1, H: 1, S: 20, Dk: 64, Dv: 64, dtype: 'bfloat16', gates: 'scalar' });
  const dev = [p.q, p.k, p.v].map(toDev);
  const bad = Tensor.from(Float32Array.from({ length: 20 }, (_, i) => (i === 13 ? 0.25 : -0.1)), [1, 1, 20]).toSync(DEV);
  try {
    expectCode(() => linearAttentionSync(...dev, { logGates: bad }), 'ERR_ATTN_ARGUMENT', /logGates must be log forget gates/);
    await expectRejects(() => linearAttention(...dev, { logGates: bad }), 'ERR_ATTN_ARGUMENT', /logGates must be log forget gates/);
    expectCode(() => linearAttentionSync(dev[0], p.k, dev[2]), 'ERR_ATTN_DEVICE', /^k is on cpu but q is on cuda/);
    expectCode(() => linearAttentionSync(...dev, { logGates: p.logGates }), 'ERR_ATTN_DEVICE', /^logGates is on cpu/);
  } finally {
    disposeAll(...dev, bad);
  }
});

// decodeAttention over a KVCache on the device (issue 6)
// ---------------------------------------------------------------------------------------------
// A device cache and a test-side copy of every row appended (host rows for one append, strided
// device rows for the next), then decodeAttention(Sync) into poisoned outputs against the float64
// oracle over those rows and against the cache's own contents. Ragged batches, page sizes that do
// not divide the lengths, every dtype, GQA 1-8, several new queries, every option, split-KV.

/** decode-rows' appendRandom into a device cache: host rows, or (onDevice) a strided device view. */
function decodeAppend(r, st, T, lengths, onDevice) {
  appendRandom(r, st, T, lengths, onDevice ? 'bshd' : 'bhsd', onDevice ? { place: toDev, release: (t) => t.dispose() } : {});
}

const decodeCases = [];
const dc = (name, c) => decodeCases.push({ name: `decode: ${name}`, Sq: 1, P: 16, appends: [[40, null], [9, [9, 0, 5]]], opts: {}, ...c });
for (const dtype of ['float32', 'float16', 'bfloat16']) {
  for (const [Hq, Hkv] of [[4, 4], [4, 2], [8, 2], [8, 1]]) {
    dc(`${dtype} GQA ${Hq / Hkv} (Hq ${Hq}, Hkv ${Hkv}), page 7, ragged`, { dtype, B: 3, Hq, Hkv, D: 64, P: 7, opts: { returnLse: true } });
  }
  dc(`${dtype} Sq 3 (bottom-right causal), page 16`, { dtype, B: 3, Hq: 4, Hkv: 2, D: 64, Sq: 3, opts: { returnLse: true } });
  dc(`${dtype} window + sinks, forced splits`, { dtype, B: 3, Hq: 4, Hkv: 1, D: 32, Sq: 2, P: 5, opts: { window: [12, 0], sinks: 3, splits: 3, returnLse: true } });
  dc(`${dtype} softcap, alibi, sink logits`, { dtype, B: 3, Hq: 4, Hkv: 2, D: 128, opts: { softcap: 4, alibiSlopes: Float32Array.from([0.5, 0.25, 0.1, 0.05]), sinkLogits: Float32Array.from([0.3, -1, 2, 0]), returnLse: true } });
  dc(`${dtype} long sequence, automatic split-KV`, { dtype, B: 1, Hq: 8, Hkv: 1, D: 128, P: 64, appends: [[2500, null], [3, null]], opts: { returnLse: true } });
}

async function runDecodeCase(c) {
  const r = R.rng(c.name);
  const cfg = { batch: c.B, kvHeads: c.Hkv, headDim: c.D, pageSize: c.P, dtype: c.dtype, device: DEV };
  let pages = 0;
  const total = c.appends.reduce((acc, [T]) => acc + T, 0);
  pages = c.B * (Math.ceil(total / c.P) + 1) + 2;
  const st = makeCache({ ...cfg, maxPages: pages });
  try {
    assert.strictEqual(st.cache.device, DEV);
    c.appends.forEach(([T, lengths], i) => decodeAppend(r, st, T, lengths, i % 2 === 1));
    const q = R.randomTensor(r, [c.B, c.Hq, c.Sq, c.D], c.dtype, { layout: c.Sq > 1 ? 'bshd' : 'bhsd' });  // strided q too
    const qd = toDev(q.t);
    const ref = decodeAttentionReference(q.t, seqsOf(st), c.Hkv, c.opts);
    const tol = tolFor(c.dtype, c.dtype);
    try {
      for (const mode of ['sync', 'async']) {
        const out = toDev(R.stridedOut([c.B, c.Hq, c.Sq, c.D], c.dtype));
        const opts = { ...c.opts, out };
        const res = mode === 'sync' ? decodeAttentionSync(qd, st.cache, opts) : await decodeAttention(qd, st.cache, opts);
        try {
          const o = c.opts.returnLse ? res.out : res;
          assert.strictEqual(o, out, 'the given out is returned');
          const oh = o.toSync('cpu');
          check(`${mode} out`, relErr(oh, ref.out), tol, () => worst(oh, ref.out));
          if (c.opts.returnLse) {
            assert.strictEqual(res.lse.device, DEV);
            const lh = res.lse.toSync('cpu');
            check(`${mode} lse`, lseErr(lh, ref.lse), LSE_TOL * 4, () => worst(lh, ref.lse));
          }
        } finally {
          disposeAll(out, c.opts.returnLse ? res.lse : undefined);
        }
      }
      // The cache's own contents hold exactly the rows appended (the kernel's view of the pages).
      expectContents(st);
    } finally {
      disposeAll(qd);
    }
  } finally {
    st.cache.dispose();
  }
}
for (const c of decodeCases) test(c.name, () => runDecodeCase(c));

/** The device cache holds exactly the test's rows (bitwise), sequence by sequence. */
function expectContents(st) {
  const seqs = seqsOf(st);
  for (let b = 0; b < st.cfg.batch; b++) {
    const { k, v } = st.cache.contents(b);
    try {
      assert.strictEqual(k.device, DEV);
      bitsEqual(k.toSync('cpu').toFloat32Array(), seqs[b].k);
      bitsEqual(v.toSync('cpu').toFloat32Array(), seqs[b].v);
    } finally {
      disposeAll(k, v);
    }
  }
}

/** The test's rows of sequence b after streaming eviction keeps `sinks` + `window` of them. */
function streamRows(st, b, sinks, window) {
  const s = st.rows[b], n = s.k[0].length;
  if (n <= sinks + window) return;
  for (const side of ['k', 'v']) s[side] = s[side].map((rows) => [...rows.slice(0, sinks), ...rows.slice(n - window)]);
}

test('decode: streaming eviction on the device compacts in place (== decode over exactly the kept rows), pages reused', async () => {
  const r = R.rng('decode device eviction');
  for (const dtype of ['float32', 'bfloat16']) {
    const cfg = { batch: 3, kvHeads: 2, headDim: 64, pageSize: 5, dtype, device: DEV };
    const st = makeCache({ ...cfg, maxPages: 3 * 12 + 2 }), cache = st.cache;
    const q = toDev(randomCpu(r, [3, 4, 2, 64], dtype));
    try {
      decodeAppend(r, st, 50, [50, 7, 31], false);
      decodeAppend(r, st, 6, null, true);  // lengths 56, 13, 37
      const used = cache.pagesUsed;
      cache.evict({ kind: 'streaming', sinks: 3, window: 10 }, { batch: 0 });  // sequence 0 only
      streamRows(st, 0, 3, 10);
      assert.deepStrictEqual([0, 1, 2].map((b) => cache.length(b)), [13, 13, 37]);
      expectContents(st);
      assert.strictEqual(cache.pagesUsed, used - (Math.ceil(56 / 5) - Math.ceil(13 / 5)));
      cache.evict({ kind: 'streaming', sinks: 2, window: 9 });  // every sequence (13 -> 11, 37 -> 11)
      for (let b = 0; b < 3; b++) streamRows(st, b, 2, 9);
      assert.deepStrictEqual([0, 1, 2].map((b) => cache.length(b)), [11, 11, 11]);
      expectContents(st);
      const expectDecode = async (what) => {
        for (const mode of ['sync', 'async']) {
          const res = mode === 'sync' ? decodeAttentionSync(q, cache, { returnLse: true }) : await decodeAttention(q, cache, { returnLse: true });
          try {
            const ref = decodeAttentionReference(q.toSync('cpu'), seqsOf(st), 2, {});
            const oh = res.out.toSync('cpu'), lh = res.lse.toSync('cpu');
            check(`${dtype} ${mode} out ${what}`, relErr(oh, ref.out), tolFor(dtype, dtype), () => worst(oh, ref.out));
            check(`${dtype} ${mode} lse ${what}`, lseErr(lh, ref.lse), LSE_TOL * 4, () => worst(lh, ref.lse));
          } finally {
            disposeAll(res.out, res.lse);
          }
        }
      };
      decodeAppend(r, st, 8, null, true);  // into pages freed above
      await expectDecode('after eviction');
      cache.reset(1);  // the kernels must see sequence 1 empty at once (their copy of the lengths)
      st.rows[1] = { k: [[], []], v: [[], []] };
      await expectDecode('after a reset');
      decodeAppend(r, st, 4, [0, 4, 0], false);  // and its pages reused
      await expectDecode('after appending to the reset sequence');
      expectContents(st);
    } finally {
      q.dispose();
      cache.dispose();
    }
  }
});

test('decode: accumulateScores on the device == the oracle\'s column sums; h2o eviction keeps the heaviest, scores move with rows', async () => {
  const r = R.rng('decode device h2o');
  for (const dtype of ['float32', 'float16']) {
    const cfg = { batch: 2, kvHeads: 2, headDim: 64, pageSize: 5, dtype, device: DEV };
    const st = makeCache({ ...cfg, maxPages: 40 }), cache = st.cache;
    const heavy = 6, recent = 4, H = 2;
    const q = R.randomTensor(r, [2, 4, 2, 64], dtype), qd = toDev(q.t);
    try {
      decodeAppend(r, st, 30, [30, 8], false);
      const opts = { window: [20, 0], sinks: 2, softcap: 6 };
      const ref = decodeScoresReference(q.t, seqsOf(st), H, opts);
      const out = decodeAttentionSync(qd, cache, { ...opts, accumulateScores: true });
      out.dispose();
      const res = await decodeAttention(qd, cache, { ...opts, accumulateScores: true, returnLse: true });  // adds a second time
      disposeAll(res.out, res.lse);
      const before = [0, 1].map((b) => cache.scores(b));
      for (let b = 0; b < 2; b++) {
        const twice = Float64Array.from(ref[b], (x) => 2 * x);
        check(`${dtype} scores of sequence ${b}`, relErr(before[b], twice), 1e-4, () => worst(before[b], twice));
      }
      // The keep set H2O must choose, from the cache's own scores (ties keep the earlier token).
      const kept = [0, 1].map((b) => {
        const n = st.rows[b].k[0].length;
        if (n <= heavy + recent) return null;
        const mass = Array.from({ length: n - recent }, (_, t) => before[b][t] + before[b][n + t]);
        const top = mass.map((m, t) => t).sort((x, y) => mass[y] - mass[x] || x - y).slice(0, heavy).sort((x, y) => x - y);
        return [...top, ...Array.from({ length: recent }, (_, i) => n - recent + i)];
      });
      const used = cache.pagesUsed;
      cache.evict({ kind: 'h2o', heavy, recent });
      kept.forEach((k, b) => {
        if (!k) return;
        const n = st.rows[b].k[0].length;
        st.rows[b].k = st.rows[b].k.map((hr) => k.map((t) => hr[t]));
        st.rows[b].v = st.rows[b].v.map((hr) => k.map((t) => hr[t]));
        const now = cache.scores(b);
        for (let h = 0; h < H; h++) k.forEach((t, i) => assert.strictEqual(now[h * k.length + i], before[b][h * n + t]));
      });
      assert.deepStrictEqual([cache.length(0), cache.length(1)], [heavy + recent, 8]);
      assert.ok(cache.pagesUsed < used);
      expectContents(st);
      decodeAppend(r, st, 3, null, true);  // new pages' scores start at 0
      const fresh = cache.scores(0);
      for (let h = 0; h < H; h++) for (let t = heavy + recent; t < heavy + recent + 3; t++) assert.strictEqual(fresh[h * (heavy + recent + 3) + t], 0);
    } finally {
      qd.dispose();
      cache.dispose();
    }
  }
});

test('decode: device cache errors (devices mixed, pool full, disposed)', async () => {
  const r = R.rng('decode errors');
  const cfg = { batch: 2, kvHeads: 2, headDim: 16, pageSize: 4, maxPages: 3, dtype: 'float32', device: DEV };
  const st = makeCache(cfg), cache = st.cache;
  const q = toDev(randomCpu(r, [2, 4, 1, 16]));
  try {
    decodeAppend(r, st, 4, null, false);
    expectCode(() => decodeAttentionSync(randomCpu(r, [2, 4, 1, 16]), cache), 'ERR_ATTN_DEVICE', /q is on cpu/);
    // The pool (3 pages of 4) holds 2 + 1: five more tokens for each sequence need 4 -> refused, nothing changed.
    const k = randomCpu(r, [2, 2, 5, 16]);
    expectCode(() => cache.append(k, k), 'ERR_ATTN_CACHE_FULL');
    assert.strictEqual(cache.length(0), 4);
    assert.strictEqual(cache.pagesUsed, 2);
    const out = decodeAttentionSync(q, cache);
    const ref = decodeAttentionReference(q.toSync('cpu'), seqsOf(st), 2, {});
    check('after a refused append', relErr(out.toSync('cpu'), ref.out), TOL.float32);
    out.dispose();
  } finally {
    q.dispose();
    cache.dispose();
  }
  expectCode(() => decodeAttentionSync(randomCpu(r, [2, 4, 1, 16]), cache), 'ERR_ATTN_DISPOSED');
  expectCode(() => new KVCache({ ...cfg, device: 'cuda:99' }), 'ERR_ATTN_DEVICE', /does not exist/);
});

// ---------------------------------------------------------------------------------------------
// runner
// ---------------------------------------------------------------------------------------------
function selected() { return tests.filter((t) => !FILTER || t.name.includes(FILTER)); }

async function main() {
  const list = selected();
  if (process.argv.includes('--list')) {
    for (const t of list) console.log(t.name);
    console.log(`GPU: ${list.length} tests`);
    return 0;
  }
  const cuda = backendInfo().cuda;
  if (!cuda.available) {
    console.log(`GPU: CUDA unavailable: ${cuda.reason}`);
    console.log(`GPU: 0 passed, 0 failed, ${list.length + 1} skipped`); // + the leak check
    return 0;
  }
  process.stdout.write(`[attnkit] gpu: ATTNKIT_SEED=${R.BASE_SEED} (set it to replay); ${DEV}: ${JSON.stringify(cuda.devices[Number(DEV.split(':')[1] || 0)])}\n[attnkit] ${cuda.buildInfo}\n`);
  const baseline = stats();
  let passed = 0, failed = 0, skipped = 0;
  const t0 = Date.now();
  for (const t of list) {
    try {
      const r = await t.fn();
      if (r === 'skip') { skipped++; console.log(`  skip ${t.name}`); } else passed++;
    } catch (e) {
      failed++;
      console.log(`  FAIL ${t.name}\n    ${String(e && e.stack || e).split('\n').join('\n    ')}`);
    }
  }
  // Every device allocation of the suite was disposed: nothing leaked.
  const end = stats();
  if (end.liveAllocations !== baseline.liveAllocations) {
    failed++;
    console.log(`  FAIL device memory leak: ${end.liveAllocations - baseline.liveAllocations} allocations (${end.liveBytes - baseline.liveBytes} bytes) still live after the suite`);
  } else {
    passed++;
  }
  console.log(`GPU: ${passed} passed, ${failed} failed, ${skipped} skipped (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  return failed ? 1 : 0;
}

if (require.main === module) {
  main().then((code) => { process.exitCode = code; }, (e) => { console.error(e); process.exitCode = 1; });
} else {
  module.exports = { names: () => selected().map((t) => t.name).concat(['device memory leak check']) };
}
