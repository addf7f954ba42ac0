'use strict';
// `npx attnkit doctor`: its report matches what the process and the library say about this machine.
const { execFileSync, spawnSync } = require('child_process');
const path = require('path');
const attnkit = require('..');

const root = path.join(__dirname, '..');
const cli = path.join(root, 'bin', 'attnkit.js');
const run = (args, env = {}) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });

describe('attnkit doctor', () => {
  test('--json reports this platform, Node, the addon node-gyp-build loads, the CPU kernels and CUDA as backendInfo does', () => {
    const r = JSON.parse(execFileSync(process.execPath, [cli, 'doctor', '--json'], { encoding: 'utf8' }));
    expect(r.attnkit).toBe(require('../package.json').version);
    expect(r.platform.os).toBe(process.platform);
    expect(r.platform.arch).toBe(process.arch);
    expect(r.node.version).toBe(process.version);
    expect(r.node.napi).toBe(Number(process.versions.napi));
    expect(r.addon.path).toBe(process.env.ATTNKIT_ADDON ? path.resolve(process.env.ATTNKIT_ADDON) : require('node-gyp-build').resolve(root));
    const info = attnkit.backendInfo();
    expect(r.cpu.isa).toBe(info.cpu.isa);
    expect(r.cpu.threads).toBe(info.cpu.threads);
    expect(r.cuda.available).toBe(info.cuda.available);
    if (!info.cuda.available) {
      expect(r.cuda.reason).toBe(info.cuda.reason);
      expect(r.advice.some((a) => a.startsWith('CUDA:'))).toBe(true);
    }
  });

  test('the glibc / libstdc++ versions the addon needs match its ELF symbol versions (objdump -T)', () => {
    const r = JSON.parse(run(['doctor', '--json']).stdout);
    const dump = spawnSync('objdump', ['-T', r.addon.path], { encoding: 'utf8' });
    if (dump.status !== 0) return; // no binutils here: nothing to compare with
    const key = (v) => v.split('_').pop().split('.').map(Number);
    const cmp = (a, b) => { const x = key(a), y = key(b); for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] || 0) !== (y[i] || 0)) return (x[i] || 0) - (y[i] || 0); return 0; };
    const newest = (names, prefix) => names.filter((v) => new RegExp(`^${prefix}_[0-9.]+$`).test(v)).sort(cmp).pop();
    const dumped = dump.stdout.match(/\b(GLIBC|GLIBCXX)_[0-9.]+/g) || [];
    const reported = Object.values(r.addon.needs);
    for (const prefix of ['GLIBC', 'GLIBCXX']) expect(newest(reported, prefix)).toBe(newest(dumped, prefix));
  });

  test('text form: exit 0, one line per part', () => {
    const out = run(['doctor']);
    expect(out.status).toBe(0);
    for (const part of ['doctor', 'platform', 'node', 'addon', 'cpu', 'cuda']) expect(out.stdout).toContain(part);
  });

  test('a missing CUDA library is named, with how to build it', () => {
    const r = JSON.parse(run(['doctor', '--json'], { ATTNKIT_CUDA_LIB: '/nonexistent/libattnkit_cuda.so' }).stdout);
    expect(r.cuda.available).toBe(false);
    expect(r.cuda.library).toContain('/nonexistent/libattnkit_cuda.so');
    expect(r.advice.join('\n')).toMatch(/no CUDA library.*@attnkit\/linux-x64-cuda@\d+\.\d+\.\d+.*npx attnkit build --cuda/);
  });

  test('an unknown command prints the usage and exits 2', () => {
    const out = run(['frobnicate']);
    expect(out.status).toBe(2);
    expect(out.stderr).toContain('usage: attnkit doctor');
  });
});
