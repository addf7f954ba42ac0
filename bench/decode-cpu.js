#!/usr/bin/env node
// Decode attention over a paged KV cache on the CPU (issue 6): one decoding step (Sq_new = 1) at
// B4 Hq32 Hkv8 D128 with 32k cached keys per sequence, against the machine's streaming read
// bandwidth (measured natively on every pool thread: memReadGBps). A step reads each K and V row of
// the cache once, so its ceiling is bytes / bandwidth; the target is >= 0.7 of it. Page size 16.
// A part of `npm run bench` (bench/run.js), or alone:
//   node bench/decode-cpu.js [L=32768] [--quick]
'use strict';
const attn = require('..');
const { native } = require('../dist/native/binding');

const ms = (f) => { const t0 = process.hrtime.bigint(); f(); return Number(process.hrtime.bigint() - t0) / 1e6; };
const median = (x) => x.slice().sort((a, b) => a - b)[x.length >> 1];

/**
 * Rows { name, kind, ms, ratio?, target?, op?, detail }. kind 'bandwidth': ratio = (bytes / ms) /
 * measured bandwidth, target >= 0.7; 'info': the bandwidth itself, or a variant's time.
 */
function runDecodeCpu({ B = 4, Hq = 32, Hkv = 8, D = 128, L = 32768, pageSize = 16, rounds = 7, dtypes = ['float16', 'float32'], readMiB = 512 } = {}) {
  const gbps = native().memReadGBps(readMiB, 5);
  const rows = [{ name: `memory read bandwidth, ${attn.backendInfo().cpu.threads} threads (streaming uint64 read of ${readMiB} MiB)`, kind: 'info', ms: 0, gbps, detail: `${gbps.toFixed(1)} GB/s` }];
  for (const dtype of dtypes) {
    const cache = new attn.KVCache({ batch: B, kvHeads: Hkv, headDim: D, pageSize, maxPages: B * Math.ceil(L / pageSize), dtype });
    const chunk = 1024;
    const Ctor = dtype === 'float32' ? Float32Array : Uint16Array;
    const fill = (n) => {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
      return dtype === 'float32' ? a : dtype === 'float16' ? attn.toFloat16(a) : attn.toBFloat16(a);
    };
    const kc = attn.Tensor.from(fill(B * Hkv * chunk * D), [B, Hkv, chunk, D], { dtype });
    const vc = attn.Tensor.from(fill(B * Hkv * chunk * D), [B, Hkv, chunk, D], { dtype });
    for (let t = 0; t < L; t += chunk) {
      const n = Math.min(chunk, L - t);
      cache.append(kc, vc, n === chunk ? undefined : { lengths: new Int32Array(B).fill(n) });
    }
    const q = attn.Tensor.from(fill(B * Hq * D), [B, Hq, 1, D], { dtype });
    const out = attn.Tensor.empty([B, Hq, 1, D], { dtype });
    attn.decodeAttentionSync(q, cache, { out });  // warm-up
    const t = [];
    for (let r = 0; r < rounds; r++) t.push(ms(() => attn.decodeAttentionSync(q, cache, { out })));
    const stepMs = median(t);
    const bytes = 2 * B * Hkv * L * D * (Ctor.BYTES_PER_ELEMENT);
    const achieved = bytes / (stepMs / 1e3) / 1e9;
    rows.push({
      name: `decodeAttention one step, B${B} Hq${Hq} Hkv${Hkv} D${D}, ${L} keys, ${dtype}, page ${pageSize}`, kind: 'bandwidth', ms: stepMs,
      ratio: achieved / gbps, op: '>=', target: 0.7,
      detail: `${stepMs.toFixed(2)} ms: ${(bytes / 1e6).toFixed(0)} MB of K/V at ${achieved.toFixed(1)} GB/s of ${gbps.toFixed(1)} GB/s`,
    });
    cache.dispose();
  }
  return rows;
}

function printRows(rows) {
  for (const r of rows) {
    if (r.target !== undefined) console.log(`  ${r.name}: ${r.ratio.toFixed(2)} of bandwidth (target ${r.op} ${r.target}): ${r.detail}`);
    else console.log(`  ${r.name}: ${r.detail}`);
  }
}

module.exports = { runDecodeCpu, printDecodeRows: printRows };

if (require.main === module) {
  const quick = process.argv.includes('--quick');
  const L = +(process.argv.slice(2).find((a) => /^\d+$/.test(a)) || (quick ? 2048 : 32768));
  console.log(`decode attention on the CPU, ${attn.backendInfo().cpu.threads} threads, ISA ${attn.backendInfo().cpu.isa}${quick ? ' (--quick: small sizes)' : ''}`);
  printRows(runDecodeCpu(quick ? { L, rounds: 3, readMiB: 128 } : { L }));
}
