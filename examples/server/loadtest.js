'use strict';
// Load test of examples/server on loopback (issue 7): the service runs in its own process (so its
// event-loop delay is its own), one answer is checked against the float64 reference first, then
// autocannon drives it with a bounded number of connections for `seconds`, and the service's
// /health gives its event-loop delay afterwards.
//   node examples/server/loadtest.js [seconds=60] [connections=8]
// Prints one JSON summary; exits 1 on any error, non-2xx answer, timeout, wrong answer, or an
// event loop that stalled (p99 delay over 50 ms).
const { spawn } = require('node:child_process');
const path = require('node:path');
const autocannon = require('autocannon');
const { Tensor } = require('../..');
const { attentionReference } = require('../../dist/reference');

const seconds = Number(process.argv[2] ?? 60);
const connections = Number(process.argv[3] ?? 8);
const shape = { batch: 1, heads: 8, kvHeads: 2, seqQ: 128, seqK: 128, dim: 64, causal: 1 };
const MAX_LOOP_P99_MS = 50;

function startService() {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'server.js'), '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`service exited early (code ${code})`)));
    child.stdout.on('data', (chunk) => {
      const m = /http:\/\/127\.0\.0\.1:(\d+)/.exec(String(chunk));
      if (m) resolve({ child, base: `http://127.0.0.1:${m[1]}` });
    });
  });
}

function requestBody() {
  const { batch, heads, kvHeads, seqQ, seqK, dim } = shape;
  const n = batch * (heads * seqQ + 2 * kvHeads * seqK) * dim;
  let seed = 12345 + Date.now() % 1000;
  const rand = () => { seed = (seed * 1664525 + 1013904223) >>> 0; return seed / 2 ** 32 * 2 - 1; };
  return Buffer.from(Float32Array.from({ length: n }, rand).buffer);
}

async function checkOneAnswer(url, body) {
  const { batch, heads, kvHeads, seqQ, seqK, dim, causal } = shape;
  const res = await fetch(url, { method: 'POST', body });
  if (res.status !== 200) throw new Error(`check request answered ${res.status}: ${await res.text()}`);
  const got = new Float32Array(await res.arrayBuffer());
  const f = new Float32Array(body.buffer, body.byteOffset, body.length / 4);
  const qn = batch * heads * seqQ * dim, kn = batch * kvHeads * seqK * dim;
  const ref = attentionReference(
    Tensor.from(f.slice(0, qn), [batch, heads, seqQ, dim]), Tensor.from(f.slice(qn, qn + kn), [batch, kvHeads, seqK, dim]),
    Tensor.from(f.slice(qn + kn), [batch, kvHeads, seqK, dim]), { causal: causal === 1 }).out;
  let maxErr = 0, maxRef = 0;
  for (let i = 0; i < ref.length; i++) { maxErr = Math.max(maxErr, Math.abs(got[i] - ref[i])); maxRef = Math.max(maxRef, Math.abs(ref[i])); }
  if (got.length !== ref.length || !(maxErr <= 1e-5 * maxRef)) throw new Error(`wrong answer: ${got.length} values, error ${maxErr / maxRef} of max|ref|`);
  return maxErr / maxRef;
}

async function main() {
  const { child, base } = await startService();
  child.removeAllListeners('exit');
  try {
    const query = new URLSearchParams(Object.entries(shape).map(([k, v]) => [k, String(v)]));
    const url = `${base}/v1/attention?${query}`;
    const body = requestBody();
    const checkError = await checkOneAnswer(url, body);
    const result = await autocannon({ url, method: 'POST', body, connections, duration: seconds, timeout: 10 });
    const health = await (await fetch(`${base}/health`)).json();
    const summary = {
      seconds, connections, shape,
      requests: result.requests.total, requestsPerSecond: result.requests.average,
      latencyMs: { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max },
      errors: result.errors, timeouts: result.timeouts, non2xx: result.non2xx,
      serviceErrors: health.errors, eventLoopDelayMs: health.eventLoopDelayMs, checkRelError: checkError,
    };
    console.log(JSON.stringify(summary, null, 1));
    const healthy = result.requests.total > 0 && result.errors === 0 && result.timeouts === 0 && result.non2xx === 0 &&
      health.errors === 0 && health.eventLoopDelayMs.p99 <= MAX_LOOP_P99_MS;
    process.exitCode = healthy ? 0 : 1;
  } finally {
    child.kill();
  }
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
