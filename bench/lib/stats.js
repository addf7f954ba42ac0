'use strict';
// Timing statistics and the interleaved measuring loop used by bench/run.js.

function sorted(xs) {
  return Float64Array.from(xs).sort();
}

function quantile(xs, q) {
  if (xs.length === 0) return NaN;
  const s = sorted(xs);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

const median = (xs) => quantile(xs, 0.5);
const min = (xs) => (xs.length ? Math.min(...xs) : NaN);
const max = (xs) => (xs.length ? Math.max(...xs) : NaN);
const mean = (xs) => (xs.length ? xs.reduce((a, x) => a + x, 0) / xs.length : NaN);

/** Summary of a list of samples (milliseconds). */
function summarize(samples) {
  return {
    n: samples.length,
    minMs: min(samples),
    medianMs: median(samples),
    meanMs: mean(samples),
    maxMs: max(samples),
    // relative spread: (p75 - p25) / median
    iqrRel: samples.length >= 4 ? (quantile(samples, 0.75) - quantile(samples, 0.25)) / median(samples) : NaN,
  };
}

const now = () => performance.now();

/**
 * Times several implementations of the same work side by side, interleaved in short blocks
 * (a a a, b b b, c c c, a a a, ...) so that machine noise (other processes, frequency changes)
 * lands on all of them alike.
 *
 * peers: [{ name, run: () => (void | Promise) }]
 * Stops after a round once every peer has >= minReps samples and >= minTimeMs of samples, or after
 * maxReps rounds, or once maxTimeMs of wall time went by (but never before 3 rounds, or minReps when
 * that is smaller).
 * block: timed runs per peer per round, after one untimed run (unless warmBlock is false: then
 * every timed run starts from idle, like a lone call); settleMs: idle time before each block
 * (not counted), so one peer's lingering threads do not slow the next.
 * onRound(round) is called before each round (progress reporting).
 * Returns { [name]: samples (ms) }.
 */
async function timeInterleaved(peers, opts = {}) {
  const { warmup = 1, minReps = 5, maxReps = 50, minTimeMs = 1000, maxTimeMs = 15000, block = 3, warmBlock = true, settleMs = 150, onRound } = opts;
  const samples = Object.fromEntries(peers.map((p) => [p.name, []]));
  const settle = () => (settleMs > 0 ? new Promise((r) => setTimeout(r, settleMs)) : null);
  for (let w = 0; w < warmup; w++) {
    if (onRound) onRound(-1 - w);
    for (const p of peers) await p.run();
  }
  const start = now();
  const floor = Math.min(3, minReps);
  for (let round = 0; round < maxReps; round += block) {
    if (onRound) onRound(round);
    for (const p of peers) {
      // Each peer runs `block` times back to back after an idle gap: onnxruntime's pool threads
      // keep spinning for a while after a run, which helps its own next run but would eat the
      // cores of whichever peer ran next; the gap lets them park before another peer starts.
      await settle();
      if (warmBlock) await p.run(); // untimed: the first run after the gap wakes threads and refills caches
      for (let b = 0; b < block; b++) {
        const t0 = now();
        await p.run();
        samples[p.name].push(now() - t0);
      }
    }
    const reps = round + block;
    const enough = peers.every((p) => samples[p.name].length >= minReps &&
      samples[p.name].reduce((a, x) => a + x, 0) >= minTimeMs);
    if (enough) break;
    if (now() - start >= maxTimeMs && reps >= floor) break;
  }
  return samples;
}

/**
 * Latency of a tiny call, each call timed on its own (process.hrtime.bigint, ~50 ns of its own).
 * Runs `warmupCalls` untimed calls, then `calls` timed ones. Returns { us: per-call samples in
 * microseconds, meanUs: total time / calls, so GC pauses and the like are counted there }.
 */
async function timeCalls(fn, { calls = 20000, warmupCalls = 2000, isAsync = false } = {}) {
  for (let i = 0; i < warmupCalls; i++) {
    if (isAsync) await fn(); else fn();
  }
  const us = new Float64Array(calls);
  const t0 = process.hrtime.bigint();
  if (isAsync) {
    for (let i = 0; i < calls; i++) {
      const a = process.hrtime.bigint();
      await fn();
      us[i] = Number(process.hrtime.bigint() - a) / 1000;
    }
  } else {
    for (let i = 0; i < calls; i++) {
      const a = process.hrtime.bigint();
      fn();
      us[i] = Number(process.hrtime.bigint() - a) / 1000;
    }
  }
  const meanUs = Number(process.hrtime.bigint() - t0) / 1000 / calls;
  return { us: Array.from(us), meanUs };
}

module.exports = { quantile, median, min, max, mean, summarize, timeInterleaved, timeCalls };
