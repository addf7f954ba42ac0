'use strict';
// The GPU suite (test/gpu/run.js) under jest: on a machine with CUDA it runs the suite in a child
// process; without CUDA every GPU test is listed here as skipped, with the reason, so the count of
// what did not run stays visible. (The device machine has no jest: it runs `node test/gpu/run.js`.)
const path = require('path');
const { spawnSync } = require('child_process');
const { backendInfo } = require('..');
const { names } = require('./gpu/run');

const cuda = backendInfo().cuda;
const gpuTests = names();

if (!cuda.available) {
  describe(`GPU suite: ${gpuTests.length} tests skipped (CUDA unavailable)`, () => {
    test('reports the skipped count and the reason', () => {
      process.stdout.write(`\n[attnkit] GPU suite: ${gpuTests.length} cases skipped: ${cuda.reason}\n`);
      expect(gpuTests.length).toBeGreaterThan(150);
      expect(cuda.reason).toMatch(/\S/);
    });
    for (const name of gpuTests) test.skip(name, () => {});
  });
} else {
  test(`GPU suite on ${cuda.devices[0].name}: ${gpuTests.length} tests`, () => {
    const r = spawnSync(process.execPath, [path.join(__dirname, 'gpu', 'run.js')], { encoding: 'utf8', timeout: 600000 });
    process.stdout.write(r.stdout.split('\n').filter((l) => /^(GPU:| {2}FAIL)/.test(l)).join('\n') + '\n');
    expect(r.stdout).toMatch(/^GPU: \d+ passed, 0 failed/m);
    expect(r.status).toBe(0);
  }, 600000);
}
