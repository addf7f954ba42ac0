'use strict';
// Lamina-style offload (issue 6): a sequence's KV split into an older part and a recent part (on
// the GPU in the example; here both on the CPU), attention over each with its LSE, merged with
// mergeAttentionStates: equal to attention over the whole sequence. Plus the two examples run.
const path = require('path');
const { spawnSync } = require('child_process');
const { Tensor, attentionSync, mergeAttentionStates } = require('..');
const { attentionReference } = require('../dist/reference');

function randomTensor(shape) {
  const d = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < d.length; i++) d[i] = Math.random() * 2 - 1;
  return Tensor.from(d, shape);
}
const poisoned = (shape) => Tensor.from(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(NaN), shape);

describe('offload: attention over two parts of the KV, merged by LSE, equals attention over all of it', () => {
  test.each([
    [1, 8, 2, 64, 300, 1, 200], [2, 4, 4, 32, 129, 3, 64], [1, 8, 1, 80, 77, 5, 1], [1, 6, 3, 16, 512, 2, 510],
  ])('B%i Hq%i Hkv%i D%i S%i, %i new tokens, %i keys in the older part', (B, Hq, Hkv, D, S, newTokens, split) => {
    const q = randomTensor([B, Hq, newTokens, D]), k = randomTensor([B, Hkv, S, D]), v = randomTensor([B, Hkv, S, D]);
    const lseShape = [B, Hq, newTokens], outShape = [B, Hq, newTokens, D];
    // older part: every new query sees all of it; recent part: causal, bottom-right aligned
    const older = attentionSync(q, k.slice(2, 0, split), v.slice(2, 0, split), { returnLse: true, out: poisoned(outShape) });
    const recent = attentionSync(q, k.slice(2, split, S), v.slice(2, split, S), { causal: true, returnLse: true, out: poisoned(outShape) });
    const merged = mergeAttentionStates([older, recent]);
    const ref = attentionReference(q, k, v, { causal: true }).out;
    const got = merged.out.toFloat32Array();
    let err = 0, max = 0;
    for (let i = 0; i < got.length; i++) { err = Math.max(err, Math.abs(got[i] - ref[i])); max = Math.max(max, Math.abs(ref[i])); }
    expect(err / max).toBeLessThanOrEqual(1e-5);
    expect(merged.lse.shape).toEqual(lseShape);
  });
});

describe('examples', () => {
  const run = (file, args) => spawnSync(process.execPath, [path.join(__dirname, '..', 'examples', file), ...args], { encoding: 'utf8', timeout: 60000 });
  test('offload.js: merged equals one call', () => {
    const r = run('offload.js', ['--cpu']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/max error [0-9.e+-]+ of max\|out\|/);
  });
  test.each(['streaming', 'h2o'])('decode-loop.js with %s: the cache stays within its budget', (kind) => {
    const r = run('decode-loop.js', ['40', kind]);
    expect(r.status).toBe(0);
    const m = /cache (\d+) tokens per sequence \(budget (\d+)\)/.exec(r.stdout);
    expect(m).not.toBeNull();
    expect(Number(m[1])).toBeLessThanOrEqual(Number(m[2]));
  });
});
