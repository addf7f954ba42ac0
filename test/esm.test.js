'use strict';
// The package resolves by its own name ("exports" self-reference) from ESM and CommonJS, and both
// entry points share one module instance.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.join(__dirname, '..');
const pkg = require('../package.json');

function node(args, cwd) {
  const r = spawnSync(process.execPath, args, { cwd, encoding: 'utf8', timeout: 60000 });
  return r;
}
function json(r) {
  if (r.status !== 0) throw new Error(`child exited ${r.status} ${r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

// Runs a small attention problem and checks it against a float64 computation in the child.
const CHECK = `
  const S = 9, D = 8, H = 2;
  const data = (o) => Float32Array.from({ length: H * S * D }, (_, i) => Math.sin(i * 0.37 + o));
  const qd = data(0), kd = data(1), vd = data(2);
  const q = Tensor.from(qd, [1, H, S, D]), k = Tensor.from(kd, [1, H, S, D]), v = Tensor.from(vd, [1, H, S, D]);
  const out = attentionSync(q, k, v, { causal: true });
  let err = 0;
  for (let h = 0; h < H; h++) for (let i = 0; i < S; i++) {
    const base = h * S * D, sc = [];
    for (let j = 0; j <= i; j++) { let s = 0; for (let d = 0; d < D; d++) s += qd[base + i * D + d] * kd[base + j * D + d]; sc.push(s / Math.sqrt(D)); }
    const m = Math.max(...sc), w = sc.map((s) => Math.exp(s - m)), z = w.reduce((a, b) => a + b, 0);
    for (let d = 0; d < D; d++) {
      let o = 0; for (let j = 0; j <= i; j++) o += w[j] / z * vd[base + j * D + d];
      err = Math.max(err, Math.abs(o - out.data[base + i * D + d]));
    }
  }
`;

describe('ESM: import { ... } from "attnkit"', () => {
  const script = `
    import { Tensor, attention, attentionSync, backendInfo, AttnError, mergeAttentionStates, setNumThreads, toFloat16, fromFloat16 } from 'attnkit';
    import * as ns from 'attnkit';
    import def from 'attnkit';
    import { createRequire } from 'node:module';
    const require = createRequire(import.meta.url);
    const cjs = require('attnkit');
    ${CHECK}
    const asyncOut = await attention(q, k, v, { causal: true });
    let asyncSame = asyncOut.data.every((x, i) => Object.is(x, out.data[i]));
    let err2;
    try { attentionSync(q, k, Tensor.from(new Float32Array(3), [3])); } catch (e) { err2 = e; }
    const rejected = await attention(q, q, q, { scale: -1 }).then(() => null, (e) => e);
    const p = attention(q, k, v);
    console.log(JSON.stringify({
      err, asyncSame, version: backendInfo().version,
      isPromise: p instanceof Promise,
      sameInstance: Tensor === cjs.Tensor && attention === cjs.attention && AttnError === cjs.AttnError && def === cjs,
      errIsAttnError: err2 instanceof AttnError && err2 instanceof cjs.AttnError, errCode: err2 && err2.code,
      rejectedCode: rejected && rejected.code, rejectedIsAttnError: rejected instanceof AttnError,
      esmNames: Object.keys(ns).filter((n) => n !== 'default').sort(),
      cjsNames: Object.keys(cjs).filter((n) => n !== '__esModule').sort(),
      half: fromFloat16(toFloat16(Float32Array.of(1.5)))[0],
      merge: typeof mergeAttentionStates, threads: typeof setNumThreads,
    }));
    await p;
  `;

  test.each([['the package root', root], ['a folder inside the package', path.join(root, 'test', 'fixtures')]])('from %s', (_, cwd) => {
    const r = json(node(['--input-type=module', '-e', script], cwd));
    expect(r.err).toBeLessThan(1e-5);
    expect(r.asyncSame).toBe(true);
    expect(r.isPromise).toBe(true);
    expect(r.version).toBe(pkg.version);
    expect(r.sameInstance).toBe(true);
    expect(r.errIsAttnError).toBe(true);
    expect(r.errCode).toBe('ERR_ATTN_SHAPE');
    expect(r.rejectedIsAttnError).toBe(true);
    expect(r.rejectedCode).toBe('ERR_ATTN_ARGUMENT');
    expect(r.half).toBe(1.5);
    expect(r.merge).toBe('function');
    expect(r.threads).toBe('function');
    // every CommonJS export is a named ESM export
    expect(r.esmNames).toEqual(r.cjsNames);
    for (const n of ['Tensor', 'attention', 'attentionSync', 'mergeAttentionStates', 'backendInfo', 'setNumThreads', 'AttnError', 'toFloat16', 'toBFloat16', 'fromFloat16', 'fromBFloat16']) {
      expect(r.esmNames).toContain(n);
    }
  });

  test('a .mjs file inside the package imports it by name', () => {
    const file = path.join(root, 'test', 'fixtures', 'esm-entry.mjs');
    const r = json(node([file], os.tmpdir()));
    expect(r.ok).toBe(true);
    expect(r.err).toBeLessThan(1e-5);
  });

  test('outside the package the name does not resolve (the tests above really use self-reference)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'attnkit-esm-'));
    try {
      const r = node(['--input-type=module', '-e', "import { Tensor } from 'attnkit'; console.log('resolved');"], dir);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/ERR_MODULE_NOT_FOUND|Cannot find package/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('CommonJS: require("attnkit")', () => {
  test('by name from the package, runs attention', () => {
    const script = `
      const { Tensor, attention, attentionSync, backendInfo, AttnError } = require('attnkit');
      ${CHECK}
      const p = attention(q, k, v, { causal: true });
      p.then((o) => {
        console.log(JSON.stringify({
          err, version: backendInfo().version, isPromise: p instanceof Promise,
          same: o.data.every((x, i) => Object.is(x, out.data[i])),
          resolvedTo: require.resolve('attnkit'),
        }));
      });
    `;
    const r = json(node(['-e', script], root));
    expect(r.err).toBeLessThan(1e-5);
    expect(r.version).toBe(pkg.version);
    expect(r.isPromise).toBe(true);
    expect(r.same).toBe(true);
    expect(r.resolvedTo).toBe(path.join(root, 'dist', 'index.js'));
  });

  test('package.json "exports" maps import and require to built files that exist', () => {
    const dot = pkg.exports['.'];
    for (const cond of ['import', 'require', 'types']) {
      expect(typeof dot[cond]).toBe('string');
      expect(fs.existsSync(path.join(root, dot[cond]))).toBe(true);
    }
    expect(pkg.name).toBe('attnkit');
  });
});
