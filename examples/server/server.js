'use strict';
// A small HTTP service that runs attention per request (issue 7): the shape of a serving endpoint,
// kept to node:http so nothing hides what attnkit does.
//
//   POST /v1/attention?batch=1&heads=8&kvHeads=8&seqQ=64&seqK=64&dim=64&causal=1
//     body: q, k, v as raw little-endian float32, back to back ([B, H, S, D] each, k and v with
//     kvHeads heads); answer: the output [B, H, seqQ, D] as raw float32 (application/octet-stream).
//   GET /health -> JSON: requests served, errors, and the event loop's delay (p50 / p99 / max, ms,
//     beyond perf_hooks.monitorEventLoopDelay's sampling interval).
//
// The body is read into one Buffer and the tensors are views over it (no copies); the output is
// written straight into the response Buffer. Calls are async (attnkit's thread pool), so the event
// loop keeps accepting while kernels run. Bad requests get a 400 with attnkit's error code.
//   node examples/server/server.js [port]      (port 0: any free port; the chosen one is printed)
const http = require('node:http');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const { Tensor, attention, AttnError } = require('../..');

const MAX_BODY_BYTES = 64 << 20;
const SAMPLE_MS = 5;
const LIMITS = { batch: 16, heads: 64, kvHeads: 64, seqQ: 8192, seqK: 8192, dim: 256 };

class BadRequest extends Error {}

function shapeOf(url) {
  const shape = {};
  for (const [name, max] of Object.entries(LIMITS)) {
    const text = url.searchParams.get(name) ?? (name === 'kvHeads' ? url.searchParams.get('heads') : null);
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new BadRequest(`${name} must be an integer in [1, ${max}], got ${text}`);
    shape[name] = n;
  }
  shape.causal = url.searchParams.get('causal') === '1';
  return shape;
}

function readBody(req, bytes) {
  return new Promise((resolve, reject) => {
    // Its own ArrayBuffer (never a slice of Node's shared pool), so float32 views line up.
    const body = Buffer.allocUnsafeSlow(bytes);
    let filled = 0;
    req.on('data', (chunk) => {
      if (filled + chunk.length > bytes) { reject(new BadRequest(`body is longer than the ${bytes} bytes the shape needs`)); req.destroy(); return; }
      chunk.copy(body, filled);
      filled += chunk.length;
    });
    req.on('end', () => (filled === bytes ? resolve(body) : reject(new BadRequest(`body has ${filled} bytes, the shape needs ${bytes}`))));
    req.on('error', reject);
  });
}

function createServer() {
  // The histogram holds the time between samples, so each value includes the sampling interval
  // itself; /health reports what lies beyond it.
  const loopDelay = monitorEventLoopDelay({ resolution: SAMPLE_MS });
  loopDelay.enable();
  const stats = { served: 0, errors: 0 };

  async function runAttention(req, res, url) {
    const s = shapeOf(url);
    const qElems = s.batch * s.heads * s.seqQ * s.dim;
    const kvElems = s.batch * s.kvHeads * s.seqK * s.dim;
    const bytes = 4 * (qElems + 2 * kvElems);
    if (bytes > MAX_BODY_BYTES) throw new BadRequest(`the shape needs ${bytes} bytes, more than this service takes (${MAX_BODY_BYTES})`);
    const body = await readBody(req, bytes);
    const f32 = new Float32Array(body.buffer, body.byteOffset, bytes / 4);
    const q = Tensor.from(f32.subarray(0, qElems), [s.batch, s.heads, s.seqQ, s.dim]);
    const k = Tensor.from(f32.subarray(qElems, qElems + kvElems), [s.batch, s.kvHeads, s.seqK, s.dim]);
    const v = Tensor.from(f32.subarray(qElems + kvElems), [s.batch, s.kvHeads, s.seqK, s.dim]);
    const reply = Buffer.allocUnsafeSlow(4 * qElems);
    const out = Tensor.from(new Float32Array(reply.buffer, reply.byteOffset, qElems), [s.batch, s.heads, s.seqQ, s.dim]);
    await attention(q, k, v, { causal: s.causal, out });
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': reply.length });
    res.end(reply);
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    if (req.method === 'GET' && url.pathname === '/health') {
      const ms = (ns) => Number(Math.max(0, ns / 1e6 - SAMPLE_MS).toFixed(3));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        served: stats.served, errors: stats.errors,
        eventLoopDelayMs: { p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) },
      }));
      return;
    }
    if (req.method !== 'POST' || url.pathname !== '/v1/attention') {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'not found: POST /v1/attention or GET /health' }));
      return;
    }
    runAttention(req, res, url).then(() => { stats.served++; }, (e) => {
      const client = e instanceof BadRequest || e instanceof AttnError;
      if (!client) stats.errors++;
      if (!res.headersSent) {
        res.writeHead(client ? 400 : 500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: e.message, code: e.code ?? null }));
      }
    });
  });
  server.on('close', () => loopDelay.disable());
  return server;
}

module.exports = { createServer };

if (require.main === module) {
  const server = createServer();
  server.listen(Number(process.argv[2] ?? 8080), '127.0.0.1', () => {
    console.log(`attnkit service on http://127.0.0.1:${server.address().port}/v1/attention`);
  });
}
