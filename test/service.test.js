'use strict';
// Issue 7: the HTTP service of examples/server under a bounded load on loopback for a minute
// (ATTNKIT_LOADTEST_SECONDS to change it): no errors, no non-2xx answers, no timeouts, a checked
// answer, and an event loop that never stalls (the script's own criteria; it prints the figures).
const { execFile } = require('node:child_process');
const path = require('node:path');

const seconds = Number(process.env.ATTNKIT_LOADTEST_SECONDS ?? 60);

test(`examples/server under load for ${seconds} s: no errors, event loop healthy`, async () => {
  const script = path.join(__dirname, '..', 'examples', 'server', 'loadtest.js');
  const { code, stdout, stderr } = await new Promise((resolve) => {
    execFile(process.execPath, [script, String(seconds), '8'], { timeout: (seconds + 60) * 1000 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code ?? 1 : 0, stdout, stderr }));
  });
  const summary = JSON.parse(stdout);
  console.log(`service load test: ${summary.requests} requests in ${seconds} s (${summary.requestsPerSecond}/s), ` +
    `latency p50 ${summary.latencyMs.p50} ms p99 ${summary.latencyMs.p99} ms, event-loop delay p99 ${summary.eventLoopDelayMs.p99} ms`);
  expect(stderr).toBe('');
  expect(summary.requests).toBeGreaterThan(0);
  expect({ errors: summary.errors, timeouts: summary.timeouts, non2xx: summary.non2xx, serviceErrors: summary.serviceErrors })
    .toEqual({ errors: 0, timeouts: 0, non2xx: 0, serviceErrors: 0 });
  expect(code).toBe(0);
}, (seconds + 90) * 1000);
