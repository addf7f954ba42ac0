'use strict';
// backendInfo() and setNumThreads().
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { backendInfo, setNumThreads, AttnError, Tensor, attentionSync } = require('..');
const pkg = require('../package.json');

const original = backendInfo().cpu.threads;
const cpuFlags = () => ((fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m) || ['', ''])[1]).split(/\s+/);
afterAll(() => setNumThreads(original));

describe('backendInfo()', () => {
  test('shape and values', () => {
    const info = backendInfo();
    expect(Object.keys(info).sort()).toEqual(['cpu', 'cuda', 'version']);
    expect(info.version).toBe(pkg.version);
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/);
    const isas = process.arch === 'arm64' ? ['neon', 'scalar'] : ['avx512', 'avx2', 'scalar'];
    expect(isas).toContain(info.cpu.isa);
    expect(Number.isInteger(info.cpu.threads)).toBe(true);
    expect(info.cpu.threads).toBeGreaterThanOrEqual(1);
    expect(typeof info.cuda.available).toBe('boolean');
    if (!info.cuda.available) {
      expect(typeof info.cuda.reason).toBe('string');
      expect(info.cuda.reason.length).toBeGreaterThan(10);
      expect(info.cuda.devices === undefined || (Array.isArray(info.cuda.devices) && info.cuda.devices.length === 0)).toBe(true);
    } else {
      expect(Array.isArray(info.cuda.devices)).toBe(true);
      for (const d of info.cuda.devices) {
        expect(typeof d.name).toBe('string');
        expect(d.cc).toMatch(/^\d+\.\d+$/);
        expect(d.memoryBytes).toBeGreaterThan(0);
      }
    }
    // serialisable plain data
    expect(JSON.parse(JSON.stringify(info))).toEqual(info);
  });

  test('no CUDA on a machine without an NVIDIA driver', () => {
    if (fs.existsSync('/dev/nvidiactl')) return; // the GPU suite covers machines with one
    const info = backendInfo();
    expect(info.cuda.available).toBe(false);
    expect(info.cuda.reason).toMatch(/\S/);
  });

  test('the ISA it reports is one this CPU supports', () => {
    const { isa } = backendInfo().cpu;
    if (process.platform !== 'linux' || !fs.existsSync('/proc/cpuinfo')) return;
    const flags = cpuFlags();
    if (isa === 'avx512') expect(flags).toContain('avx512f');
    if (isa === 'avx2') { expect(flags).toContain('avx2'); expect(flags).toContain('fma'); }
  });

  test('a fresh process: backendInfo works before any op, and the default pool is sized to the machine', () => {
    const env = { ...process.env };
    delete env.ATTNKIT_NUM_THREADS;
    const r = spawnSync(process.execPath, ['-e', `
      const { backendInfo } = require(${JSON.stringify(path.join(__dirname, '..'))});
      const os = require('os');
      console.log(JSON.stringify({ info: backendInfo(), cpus: os.cpus().length, par: os.availableParallelism() }));
    `], { encoding: 'utf8', env, timeout: 30000 });
    if (r.status !== 0) throw new Error(r.stderr);
    const { info, cpus, par } = JSON.parse(r.stdout.trim());
    expect(info.version).toBe(pkg.version);
    expect(info.cpu.threads).toBeGreaterThanOrEqual(1);
    expect(info.cpu.threads).toBeLessThanOrEqual(Math.max(cpus, par));
    expect(info.cpu.threads).toBeGreaterThanOrEqual(Math.min(cpus, par));
    // by default the best ISA this CPU has is used
    if (process.platform === 'linux' && process.arch === 'x64' && fs.existsSync('/proc/cpuinfo')) {
      const flags = cpuFlags();
      const best = flags.includes('avx512f') ? 'avx512' : flags.includes('avx2') && flags.includes('fma') ? 'avx2' : 'scalar';
      expect(info.cpu.isa).toBe(best);
    }
  });

  test('returns a fresh object: mutating one does not change the next', () => {
    const a = backendInfo();
    a.cpu.threads = -5;
    a.version = 'x';
    const b = backendInfo();
    expect(b.cpu.threads).toBe(original);
    expect(b.version).toBe(pkg.version);
  });
});

describe('setNumThreads()', () => {
  test.each([
    ['0', 0], ['-1', -1], ['1.5', 1.5], ['NaN', NaN], ['Infinity', Infinity], ['a string', '2'],
    ['undefined', undefined], ['null', null], ['an object', { n: 2 }], ['2^31', 2 ** 31], ['1e9', 1e9],
  ])('rejects %s with an AttnError and leaves the pool as it was', (_, n) => {
    let err;
    try { setNumThreads(n); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(AttnError);
    expect(err.code).toBe('ERR_ATTN_ARGUMENT');
    expect(err.message).toMatch(/setNumThreads|\bn\b|threads/);
    expect(backendInfo().cpu.threads).toBe(original);
  });

  test('accepts integers >= 1 and reports them; attention works at each size', () => {
    const x = Float32Array.from({ length: 2 * 64 * 16 }, (_, i) => Math.sin(i));
    const t = Tensor.from(x, [1, 2, 64, 16]);
    const ref = attentionSync(t, t, t, { causal: true }).data;
    for (const n of [1, 2, 3, 8, original]) {
      setNumThreads(n);
      expect(backendInfo().cpu.threads).toBe(n);
      const out = attentionSync(t, t, t, { causal: true }).data;
      expect(out.every((v, i) => Object.is(v, ref[i]))).toBe(true);
    }
    // setting the current size again is a no-op
    setNumThreads(original);
    expect(backendInfo().cpu.threads).toBe(original);
  });
});
