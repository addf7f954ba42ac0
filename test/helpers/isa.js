'use strict';
// Runs a subset of a suite's cases under each CPU kernel ISA (setIsa caps at what the machine
// has), checking the ISA stayed in use, and restores the best one afterwards.
const { native } = require('../../dist/native/binding');

const RANK = { scalar: 0, avx2: 1, avx512: 2 };

// run(name): one case. checkReported: also a test that setIsa reports the ISA it put in use.
function describeEachIsa(names, run, { checkReported = false } = {}) {
  describe.each(Object.keys(RANK))('ISA %s', (isa) => {
    const nat = native();
    const best = nat.cpuInfo().bestIsa;
    let active;
    beforeAll(() => { active = nat.setIsa(isa); });
    afterAll(() => { expect(nat.setIsa(best)).toBe(best); });
    if (checkReported) {
      test('setIsa reports the ISA in use', () => {
        expect(nat.cpuInfo().isa).toBe(active);
        // it runs what was asked unless the machine lacks it
        expect(RANK[active]).toBe(Math.min(RANK[isa], RANK[best]));
      });
    }
    test.each(names)(`[${isa}] %s`, async (name) => {
      await run(name);
      expect(nat.cpuInfo().isa).toBe(active);
    });
  });
}

module.exports = { describeEachIsa };
