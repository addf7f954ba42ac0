'use strict';
// Error measures and the per-dtype acceptance tolerances (DESIGN.md "Testing"). Do not loosen them.

/** max|out-ref| / max|ref| tolerances, by dtype. With a 16-bit output its own rounding counts. */
const TOL = Object.freeze({ float32: 1e-5, float16: 2e-3, bfloat16: 1.6e-2 });

/** The tolerance of a run: the loosest of the dtypes involved (inputs and output). */
function tolFor(...dtypes) {
  let t = 0;
  for (const d of dtypes) {
    if (d === undefined) continue;
    if (!(d in TOL)) throw new Error(`no tolerance for dtype ${d}`);
    t = Math.max(t, TOL[d]);
  }
  return t;
}

function asArray(x) {
  if (x && typeof x.toFloat32Array === 'function') return x.toFloat32Array(); // a Tensor, in logical order
  return x;
}

// max|a - ref| and max|ref| (the latter at least `floor`) over the entries. null when anything is
// NaN, the lengths differ, or a non-finite entry does not match exactly (-Infinity = -Infinity).
function maxErrors(actual, ref, floor) {
  const a = asArray(actual);
  if (a.length !== ref.length) return null;
  let num = 0, den = floor;
  for (let i = 0; i < ref.length; i++) {
    const x = a[i], r = ref[i];
    if (Number.isNaN(x) || Number.isNaN(r)) return null;
    if (!Number.isFinite(x) || !Number.isFinite(r)) {
      if (x === r) continue;
      return null;
    }
    num = Math.max(num, Math.abs(x - r));
    den = Math.max(den, Math.abs(r));
  }
  return { num, den };
}

/**
 * max|out - ref| / max|ref| over all elements. NaN (or a length mismatch) anywhere is a failure:
 * Infinity. If ref is all zeros the absolute error max|out| is returned (0 when out is zeros too).
 */
function relErr(actual, ref) {
  const m = maxErrors(actual, ref, 0);
  if (!m) return Infinity;
  return m.den === 0 ? m.num : m.num / m.den;
}

/**
 * Error of a log-sum-exp vector: -Infinity must match exactly (a row that sees nothing), NaN fails;
 * on the finite entries max|lse - ref| / max(1, max|ref|) (lse is a log, so it is an absolute error
 * once its values are of order 1).
 */
function lseErr(actual, ref) {
  const m = maxErrors(actual, ref, 1);
  return m ? m.num / m.den : Infinity;
}

/** Where the worst element is, for failure messages. */
function worst(actual, ref) {
  const a = asArray(actual);
  let at = -1, e = -1;
  for (let i = 0; i < Math.min(a.length, ref.length); i++) {
    const d = Number.isNaN(a[i]) ? Infinity : Math.abs(a[i] - ref[i]);
    if (d > e && !(a[i] === ref[i])) { e = d; at = i; }
  }
  if (at < 0) return 'no differing element';
  const nan = Array.prototype.reduce.call(a, (n, x) => n + (Number.isNaN(x) ? 1 : 0), 0);
  return `worst at flat index ${at}: got ${a[at]}, want ${ref[at]} (${nan} NaN of ${a.length})`;
}

/**
 * check(what, err, tol, detail?) for a test file: throws (with the seed to replay) when err > tol.
 * Registers an afterAll that, with ATTNKIT_REPORT=1, prints the largest err/tol seen (the margin).
 */
function toleranceChecker(seed) {
  const margin = { ratio: 0, what: '' };
  afterAll(() => {
    if (process.env.ATTNKIT_REPORT) process.stdout.write(`\n[attnkit] worst error/tolerance ratio ${margin.ratio.toFixed(3)} (${margin.what})\n`);
  });
  return function check(what, err, tol, detail) {
    if (err / tol > margin.ratio && err <= tol) { margin.ratio = err / tol; margin.what = `${expect.getState().currentTestName}: ${what}`; }
    if (!(err <= tol)) {
      throw new Error(`${what}: error ${err} exceeds tolerance ${tol}${detail ? `\n  ${detail()}` : ''}\n  replay: ATTNKIT_SEED=${seed}`);
    }
  };
}

module.exports = { toleranceChecker, TOL, tolFor, relErr, lseErr, worst };
