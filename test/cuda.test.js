'use strict';
// The CUDA backend's Node side on a machine without a GPU: how the library is found and why it is
// unavailable (each case in a child process, since the outcome is cached per process), device
// strings, and device tensors end to end over a fake CUDA library (test/fixtures/fake_cuda.c:
// the C ABI over host memory, built here with the system cc), which runs the GPU suite
// test/gpu/run.js and checks every pointer the addon hands it.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const { Tensor, AttnError, backendInfo, attentionSync } = require('..');

const root = path.join(__dirname, '..');
const probePath = path.join(__dirname, 'fixtures', 'cuda-probe.js');
// Where the loaded addon lives (build/Release, or ATTNKIT_ADDON's folder in the sanitizer run):
// the library is looked for beside it.
const addonDir = process.env.ATTNKIT_ADDON ? path.dirname(path.resolve(process.env.ATTNKIT_ADDON)) : path.join(root, 'build', 'Release');

function expectAttnError(fn, code, re) {
  let err;
  try { fn(); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(AttnError);
  expect(err.code).toBe(code);
  if (re) expect(err.message).toMatch(re);
  return err;
}

function envWith(extra) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('FAKE_CUDA_') || k === 'ATTNKIT_CUDA_LIB') delete env[k];
  return { ...env, ...extra };
}

function probe(scenario, env, ...args) {
  const r = spawnSync(process.execPath, [probePath, scenario, ...args], { encoding: 'utf8', env: envWith(env), timeout: 60000, cwd: root });
  if (r.status !== 0) throw new Error(`probe ${scenario} failed (${r.status} ${r.signal}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

// ---- this process: no CUDA library next to the addon ------------------------------------------
const builtLibrary = fs.existsSync(path.join(addonDir, 'libattnkit_cuda.so')) || !!process.env.ATTNKIT_CUDA_LIB;

describe('without the CUDA library (this process)', () => {
  test('backendInfo().cuda is unavailable and says where it looked and how to build the library', () => {
    if (builtLibrary) return; // a checkout with the library built: the GPU suite covers it
    const cuda = backendInfo().cuda;
    expect(cuda.available).toBe(false);
    expect(cuda.devices).toBeUndefined();
    expect(cuda.reason).toMatch(/libattnkit_cuda\.so was not found/);
    expect(cuda.reason).toContain(addonDir);
    expect(cuda.reason).toMatch(/@attnkit\/linux-x64-cuda is not installed/);
    expect(cuda.reason).toMatch(/npm install @attnkit\/linux-x64-cuda/);
    expect(cuda.reason).toMatch(/npx attnkit build --cuda/);
    expect(cuda.reason).toMatch(/ATTNKIT_CUDA_LIB/);
  });

  test('asking for a CUDA tensor is ERR_ATTN_CUDA_UNAVAILABLE carrying the reason', async () => {
    if (builtLibrary) return;
    const { reason } = backendInfo().cuda;
    for (const make of [Tensor.empty, Tensor.zeros]) {
      for (const device of ['cuda', 'cuda:0', 'cuda:7']) {
        const e = expectAttnError(() => make([2], { device }), 'ERR_ATTN_CUDA_UNAVAILABLE');
        expect(e.message).toContain(reason);
      }
    }
    const t = Tensor.from(Float32Array.of(1, 2), [2]);
    const p = t.to('cuda');
    expect(p).toBeInstanceOf(Promise);
    await expect(p).rejects.toMatchObject({ code: 'ERR_ATTN_CUDA_UNAVAILABLE', message: expect.stringContaining(reason) });
    expectAttnError(() => t.toSync('cuda:1'), 'ERR_ATTN_CUDA_UNAVAILABLE', /not found/);
  });

  test('malformed device strings are ERR_ATTN_DEVICE, with or without CUDA', async () => {
    const t = Tensor.from(Float32Array.of(1), [1]);
    for (const device of ['cuda:x', 'gpu', 'CUDA', 'cuda:', 'cuda:-1', 'cuda:1.5', ' cuda', 'cpu:0', 'cuda:0 ', '', 'cuda:1234567890']) {
      expectAttnError(() => Tensor.empty([2], { device }), 'ERR_ATTN_DEVICE', /device/);
      expectAttnError(() => t.toSync(device), 'ERR_ATTN_DEVICE', /device/);
      await expect(t.to(device)).rejects.toMatchObject({ code: 'ERR_ATTN_DEVICE' });
    }
    for (const device of [7, null, {}, ['cuda']]) {
      expectAttnError(() => t.toSync(device), 'ERR_ATTN_DEVICE');
      expectAttnError(() => Tensor.zeros([1], { device }), 'ERR_ATTN_DEVICE');
    }
  });

  test('CPU tensors and ops are untouched: device is cpu, to(cpu) is the tensor itself', () => {
    const t = Tensor.from(Float32Array.from({ length: 16 }, (_, i) => i / 16), [1, 1, 2, 8]);
    expect(t.device).toBe('cpu');
    expect(t.toSync('cpu')).toBe(t);
    expect(attentionSync(t, t, t).device).toBe('cpu');
  });
});

// ---- lookup and reasons, each in a fresh process ----------------------------------------------
let tmp;
let fakeLib;
const hasCc = spawnSync('cc', ['--version'], { encoding: 'utf8' }).status === 0;

function cc(args) {
  const r = spawnSync('cc', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc ${args.join(' ')} failed:\n${r.stderr}`);
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'attnkit-cuda-'));
  if (hasCc) {
    fakeLib = path.join(tmp, 'libfake_attnkit_cuda.so');
    cc(['-shared', '-fPIC', '-O2', '-Wall', '-Werror', '-I', path.join(root, 'native', 'include'), '-o', fakeLib,
      path.join(__dirname, 'fixtures', 'fake_cuda.c'), '-lm', '-lpthread']);
  }
});
afterAll(() => { if (tmp) fs.rmSync(tmp, { recursive: true, force: true }); });

// Skips (visibly) what needs the fake library when this machine has no C compiler.
const withCc = hasCc ? test : test.skip;

describe('the optional CUDA package @attnkit/linux-x64-cuda', () => {
  const { version } = require('../package.json');
  // node_modules/@attnkit/linux-x64-cuda under `dir` at `v`, with `library` (a file) copied in.
  function fakePackage(dir, v, library) {
    const pkg = path.join(dir, 'node_modules', '@attnkit', 'linux-x64-cuda');
    fs.mkdirSync(pkg, { recursive: true });
    fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: '@attnkit/linux-x64-cuda', version: v }));
    if (library) fs.copyFileSync(library, path.join(pkg, 'libattnkit_cuda.so'));
    return pkg;
  }

  // In a child process each time: jest's module registry caches resolutions and would not see a
  // package made after the first lookup.
  const lookup = (dir) => JSON.parse(spawnSync(process.execPath, ['-e',
    `const { findCudaPackage } = require(${JSON.stringify(path.join(root, 'dist', 'native', 'cuda-package'))});
     console.log(JSON.stringify(findCudaPackage(${JSON.stringify(dir)}, ${JSON.stringify(version)})));`], { encoding: 'utf8' }).stdout);

  test('is taken only at exactly attnkit\'s version, and says what it found', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'attnkit-pkg-'));
    try {
      expect(lookup(dir)).toEqual({ note: '@attnkit/linux-x64-cuda is not installed' });
      const pkg = fakePackage(dir, version);
      expect(lookup(dir).libraryPath).toBe(path.join(pkg, 'libattnkit_cuda.so'));
      fakePackage(dir, '0.0.1');
      const older = lookup(dir);
      expect(older.libraryPath).toBeUndefined();
      expect(older.note).toContain(`@attnkit/linux-x64-cuda 0.0.1 is installed (${pkg}), but attnkit ${version} needs the same version: npm install @attnkit/linux-x64-cuda@${version}`);
    } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });

  test('the main package pins it as an optional peer at its own version', () => {
    const manifest = require('../package.json');
    expect(manifest.peerDependencies['@attnkit/linux-x64-cuda']).toBe(manifest.version);
    expect(manifest.peerDependenciesMeta['@attnkit/linux-x64-cuda']).toEqual({ optional: true });
    const template = require('../packages/linux-x64-cuda/package.json');
    expect(template).toMatchObject({ name: '@attnkit/linux-x64-cuda', version: manifest.version, os: ['linux'], cpu: ['x64'], libc: ['glibc'] });
  });

  // The addon copied alone to a folder (ATTNKIT_ADDON), so no library sits beside it; the package
  // is found through NODE_PATH, as npm would place it beside attnkit.
  withCc('its library loads when none sits beside the addon; another version is refused by name', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'attnkit-pkg-'));
    try {
      const addon = path.join(dir, 'addon', 'attnkit.node');
      fs.mkdirSync(path.dirname(addon));
      fs.copyFileSync(require('node-gyp-build').resolve(root), addon);
      const pkg = fakePackage(dir, version, fakeLib);
      const env = { ATTNKIT_ADDON: addon, NODE_PATH: path.join(dir, 'node_modules') };
      const r = probe('info', env);
      expect(r.cuda.available).toBe(true);
      expect(r.cuda.libraryPath).toBe(path.join(pkg, 'libattnkit_cuda.so'));
      fakePackage(dir, '0.0.1', fakeLib);
      const old = probe('info', env);
      expect(old.cuda.available).toBe(false);
      expect(old.cuda.reason).toContain('@attnkit/linux-x64-cuda 0.0.1 is installed');
      expect(old.cuda.reason).toContain(`npm install @attnkit/linux-x64-cuda@${version}`);
    } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });
});

describe('finding and loading libattnkit_cuda.so (child processes)', () => {
  test('ATTNKIT_CUDA_LIB naming no file: not found, and which path', () => {
    const r = probe('info', { ATTNKIT_CUDA_LIB: '/nonexistent/libattnkit_cuda.so' });
    expect(r.cuda.available).toBe(false);
    expect(r.cuda.reason).toMatch(/not found: ATTNKIT_CUDA_LIB=\/nonexistent\/libattnkit_cuda\.so names no file/);
    expect(r.empty.code).toBe('ERR_ATTN_CUDA_UNAVAILABLE');
    expect(r.empty.message).toContain(r.cuda.reason);
    expect(r.to.code).toBe('ERR_ATTN_CUDA_UNAVAILABLE');
    expect(r.badIndex.code).toBe('ERR_ATTN_CUDA_UNAVAILABLE');
  });

  test('ATTNKIT_CUDA_LIB naming a file that is not a library: the dlopen error', () => {
    const f = path.join(tmp, 'not-a-library.so');
    fs.writeFileSync(f, 'this is text, not ELF\n'.repeat(100));
    const r = probe('info', { ATTNKIT_CUDA_LIB: f });
    expect(r.cuda.available).toBe(false);
    expect(r.cuda.reason).toContain(`could not load the CUDA library ${f}: `);
    expect(r.cuda.reason).toMatch(/invalid ELF header|file too short|not an ELF/i);
    expect(r.empty.code).toBe('ERR_ATTN_CUDA_UNAVAILABLE');
  });

  test('ATTNKIT_CUDA_LIB naming a directory: the dlopen error', () => {
    const r = probe('info', { ATTNKIT_CUDA_LIB: tmp });
    expect(r.cuda.available).toBe(false);
    expect(r.cuda.reason).toContain(`could not load the CUDA library ${tmp}`);
  });

  withCc('a shared library without attnkit_cuda_get_api: not an attnkit CUDA library', () => {
    const src = path.join(tmp, 'other.c');
    const lib = path.join(tmp, 'libother.so');
    fs.writeFileSync(src, 'int some_other_function(void) { return 42; }\n');
    cc(['-shared', '-fPIC', '-o', lib, src]);
    const r = probe('info', { ATTNKIT_CUDA_LIB: lib });
    expect(r.cuda.available).toBe(false);
    expect(r.cuda.reason).toMatch(/does not export attnkit_cuda_get_api: it is not an attnkit CUDA library/);
  });

  withCc('a library of another ABI version: ABI version mismatch', () => {
    const r = probe('info', { ATTNKIT_CUDA_LIB: fakeLib, FAKE_CUDA_ABI: '2' });
    expect(r.cuda.available).toBe(false);
    expect(r.cuda.reason).toMatch(/^ABI version mismatch: .* ABI version 1/);
    expect(r.empty.code).toBe('ERR_ATTN_CUDA_UNAVAILABLE');
  });

  withCc('tables of other sizes within ABI 1: older (no attention_on_stream) and newer load, truncated does not', () => {
    const pointer = 8; // one entry of the table on 64-bit platforms
    for (const delta of [-pointer, 64]) {
      const env = { ATTNKIT_CUDA_LIB: fakeLib, FAKE_CUDA_TABLE_DELTA: String(delta) };
      expect(probe('info', env).cuda.available).toBe(true);
      const ops = probe('opErrors', env); // no failure forced: attention and merge go through
      expect([ops.sync, ops.async, ops.merge]).toEqual([null, null, null]);
    }
    const r = probe('info', { ATTNKIT_CUDA_LIB: fakeLib, FAKE_CUDA_TABLE_DELTA: String(-2 * pointer) });
    expect(r.cuda.available).toBe(false);
    expect(r.cuda.reason).toMatch(/^ABI version mismatch: /);
  });

  withCc('no driver: the library\'s message', () => {
    const msg = 'CUDA driver version is insufficient for CUDA runtime version';
    const r = probe('info', { ATTNKIT_CUDA_LIB: fakeLib, FAKE_CUDA_ERROR: msg });
    expect(r.cuda.available).toBe(false);
    expect(r.cuda.reason).toMatch(/^no usable CUDA driver or device: /);
    expect(r.cuda.reason).toContain(msg);
    expect(r.cuda.buildInfo).toMatch(/fake attnkit_cuda/);
    expect(r.empty.message).toContain(msg);
  });

  withCc('no device: zero devices reported', () => {
    const r = probe('info', { ATTNKIT_CUDA_LIB: fakeLib, FAKE_CUDA_DEVICES: '0' });
    expect(r.cuda.available).toBe(false);
    expect(r.cuda.reason).toMatch(/no CUDA device found/);
  });

  withCc('no kernel image for this GPU', () => {
    const r = probe('info', { ATTNKIT_CUDA_LIB: fakeLib, FAKE_CUDA_NO_KERNEL: '1' });
    expect(r.cuda.available).toBe(false);
    expect(r.cuda.reason).toMatch(/no kernel image for this GPU: .*Fake GPU 0.*compute capability 9\.0/);
    expect(r.cuda.reason).toMatch(/sm_90/);
    expect(r.cuda.devices).toBeUndefined();
  });

  withCc('a working library: devices, build info; cuda:N past the last device is ERR_ATTN_DEVICE', () => {
    const r = probe('info', { ATTNKIT_CUDA_LIB: fakeLib, FAKE_CUDA_DEVICES: '2' });
    expect(r.cuda).toEqual({
      available: true,
      devices: [0, 1].map((i) => ({ name: `Fake GPU ${i} (host memory)`, cc: '9.0', memoryBytes: 8 * 2 ** 30, multiprocessors: 132, kernelImage: true })),
      buildInfo: 'fake attnkit_cuda for tests (host memory, float64 loops)',
      libraryPath: fakeLib,
    });
    expect(r.empty).toBeNull();
    expect(r.to).toBeNull();
    expect(r.badIndex.code).toBe('ERR_ATTN_DEVICE');
    expect(r.badIndex.message).toMatch(/'cuda:7' does not exist; this machine has 2 CUDA devices/);
  });

  withCc('loaded lazily: not at addon load, not by CPU ops, on the first CUDA question', () => {
    const r = probe('lazy', { ATTNKIT_CUDA_LIB: fakeLib });
    expect(r).toEqual({ beforeCuda: false, afterCuda: true, available: true });
  });

  withCc('found beside the addon when ATTNKIT_CUDA_LIB is not set', () => {
    const dir = path.join(tmp, 'beside');
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(path.join(addonDir, 'attnkit.node'), path.join(dir, 'attnkit.node'));
    fs.copyFileSync(fakeLib, path.join(dir, 'libattnkit_cuda.so'));
    const r = probe('beside', {}, path.join(dir, 'attnkit.node'));
    expect(r.cuda.available).toBe(true);
    expect(r.cuda.buildInfo).toMatch(/fake attnkit_cuda/);
    fs.rmSync(path.join(dir, 'libattnkit_cuda.so'));
    const r2 = probe('beside', {}, path.join(dir, 'attnkit.node'));
    expect(r2.cuda.available).toBe(false);
    expect(r2.cuda.reason).toContain(`looked in ${dir} (beside attnkit.node`);
  });
});

// ---- device tensors over the fake library -----------------------------------------------------
describe('device tensors end to end (fake CUDA library)', () => {
  function runGpuSuite(env, args = []) {
    const r = spawnSync(process.execPath, [path.join(__dirname, 'gpu', 'run.js'), ...args],
      { encoding: 'utf8', env: envWith({ ATTNKIT_CUDA_LIB: fakeLib, ...env }), timeout: 230000, cwd: root });
    const summary = (r.stdout.match(/^GPU: (\d+) passed, (\d+) failed, (\d+) skipped/m) || []).slice(1).map(Number);
    if (r.status !== 0 || summary.length !== 3 || summary[1] !== 0) {
      throw new Error(`test/gpu/run.js failed (${r.status} ${r.signal}):\n${r.stdout.slice(-6000)}\n${r.stderr.slice(-3000)}`);
    }
    return { passed: summary[0], failed: summary[1], skipped: summary[2], stdout: r.stdout };
  }

  // (its linear tests, 65536-step ones among them, take about 45 s of the suite's 90 over the fake library)
  withCc('the GPU suite (every parity case + device tensor tests) passes over the fake library', () => {
    const { names } = require('./gpu/run');
    const r = runGpuSuite({});
    expect(r.passed + r.skipped).toBe(names().length);
    // only the two-device test (one device here) and the GPU GC loop (real GPUs only)
    expect(r.skipped).toBeLessThanOrEqual(2);
  }, 240000);

  withCc('with two devices: cross-device copies and device-mix errors', () => {
    const r = runGpuSuite({ FAKE_CUDA_DEVICES: '2' }, ['--filter', 'device:']);
    expect(r.skipped).toBe(0);
    expect(r.passed).toBeGreaterThan(15);
  });

  withCc('the library\'s failures map to codes; the op frees the out/lse it allocated', () => {
    const cases = { unavailable: 'ERR_ATTN_CUDA_UNAVAILABLE', internal: 'ERR_ATTN_CUDA_UNAVAILABLE', argument: 'ERR_ATTN_ARGUMENT' };
    for (const [mode, code] of Object.entries(cases)) {
      const r = probe('opErrors', { ATTNKIT_CUDA_LIB: fakeLib, FAKE_CUDA_ATTENTION: mode });
      for (const e of [r.sync, r.async, r.merge]) {
        expect(e).toMatchObject({ code, isAttnError: true });
        expect(e.message).toMatch(new RegExp(`fake_cuda: forced ${mode} failure`));
      }
      expect(r.sync.message).toMatch(/^attention on cuda:0: /);
      expect(r.merge.message).toMatch(/^mergeAttentionStates on cuda:0: /);
      expect(r.liveAfterAttention).toBe(0);
      expect(r.liveAfterMerge).toBe(0);
    }
  });

  withCc('linear attention on device tensors runs in the library and matches the CPU op; mixed devices are ERR_ATTN_DEVICE', () => {
    const r = probe('linear', { ATTNKIT_CUDA_LIB: fakeLib });
    expect(r.devices).toEqual(['cuda:0', 'cuda:0', 'cuda:0', 'cuda:0']);
    // GLA gates + initial state + normalize + elu1 + scale; per-head decay async; an in-place step
    for (const [name, diff] of Object.entries(r.diffs)) expect([name, diff]).toEqual([name, expect.any(Number)]);
    for (const diff of Object.values(r.diffs)) expect(diff).toBeLessThan(2e-5);
    expect(r.badGate).toMatchObject({ code: 'ERR_ATTN_ARGUMENT', isAttnError: true });
    expect(r.badGate.message).toMatch(/^linearAttention on cuda:0: logGates must be log forget gates/);
    for (const e of [r.mixed, r.step, r.bypass]) expect(e).toMatchObject({ code: 'ERR_ATTN_DEVICE', isAttnError: true });
    expect(r.mixed.message).toMatch(/^initialState is on cuda:0 but q is on cpu/);
    expect(r.step.message).toMatch(/^state is on cuda:0 but q is on cpu/);
    expect(r.bypass.message).toMatch(/^k is on cpu but q is on cuda:0/);
    expect(r.agent).toBeNull();
  });

  withCc('a library from before linear_attention: device linear attention is ERR_ATTN_CUDA_UNAVAILABLE naming the entry', () => {
    const pointer = 8; // the table through block_sparse_attention_elements, two entries past attention_on_stream
    const r = probe('linearOld', { ATTNKIT_CUDA_LIB: fakeLib, FAKE_CUDA_TABLE_DELTA: String(2 * pointer) });
    expect(r.sync).toMatchObject({ code: 'ERR_ATTN_CUDA_UNAVAILABLE', isAttnError: true });
    expect(r.sync.message).toMatch(/^linearAttention on cuda:0: the CUDA library .* is too old for linearAttention: its table has no linear_attention entry/);
    expect(r.cpu).toBeNull();
  });

  withCc('a full GPU: ERR_ATTN_OOM naming the size, nothing leaked, the process goes on', () => {
    const r = probe('oom', { ATTNKIT_CUDA_LIB: fakeLib, FAKE_CUDA_MAX_ALLOC: '1000' });
    expect(r.empty).toMatchObject({ code: 'ERR_ATTN_OOM', isAttnError: true });
    expect(r.empty.message).toMatch(/^Tensor\.empty: cuda:0: could not allocate 1001 bytes .*out of memory/);
    expect(r.to).toMatchObject({ code: 'ERR_ATTN_OOM' });
    expect(r.to.message).toMatch(/2000 bytes/);
    expect(r.op).toBeNull(); // small enough
    expect(r.leakedBytes).toBe(0);
    expect(r.externalDelta).toBe(0);
    expect(r.ok).toBe(10);
  });

  withCc('disposing during a slow async call or copy: memory stays until it settles, then is freed', () => {
    const r = probe('busy', { ATTNKIT_CUDA_LIB: fakeLib, FAKE_CUDA_DELAY_MS: '150' });
    expect(r.liveDuring).toBe(1); // q, k, v disposed but still allocated while the call runs; + its new out
    expect(r.maxDiff).toBeLessThan(1e-6);
    expect(r.copied).toBe(true);
    expect(r.liveAfter).toBe(-3);
  });

  withCc('a worker thread\'s device tensors are freed when the worker exits', () => {
    const r = probe('worker', { ATTNKIT_CUDA_LIB: fakeLib });
    expect(r.during).toBe(8 * 4096);
    expect(r.after).toBe(0);
  });
});
