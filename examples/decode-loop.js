'use strict';
// A toy decoding loop over a paged KV cache with an eviction policy: a random "model" (fixed
// random projections, no training) produces each step's query, key and value from the previous
// step's attention output; the cache keeps StreamingLLM's sinks + window, or H2O's heavy hitters.
//   node examples/decode-loop.js [steps] [streaming|h2o]
const { Tensor, KVCache, decodeAttentionSync } = require('..');

const steps = Number(process.argv[2] || 256);
const policyKind = process.argv[3] || 'streaming';
const B = 2, Hq = 8, Hkv = 2, D = 64, prompt = 96, budget = 128;

let seed = 7;
const rand = () => { seed = (seed * 1664525 + 1013904223) >>> 0; return seed / 2 ** 32 * 2 - 1; };
const projection = (rows, cols) => Float32Array.from({ length: rows * cols }, () => rand() / Math.sqrt(cols));
const Wq = projection(Hq * D, Hq * D), Wk = projection(Hkv * D, Hq * D), Wv = projection(Hkv * D, Hq * D);

// x [B, T, Hq*D] -> [B, H, T, D] (heads of W's rows).
function project(W, heads, x, T) {
  const out = new Float32Array(B * heads * T * D);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++)
      for (let r = 0; r < heads * D; r++) {
        let s = 0;
        const xr = (b * T + t) * Hq * D;
        for (let c = 0; c < Hq * D; c++) s += W[r * Hq * D + c] * x[xr + c];
        out[((b * heads + Math.floor(r / D)) * T + t) * D + (r % D)] = s;
      }
  return Tensor.from(out, [B, heads, T, D]);
}

const cache = new KVCache({ batch: B, kvHeads: Hkv, headDim: D, pageSize: 16, maxPages: 64, dtype: 'float32' });
const policy = policyKind === 'h2o' ? { kind: 'h2o', heavy: budget / 2, recent: budget / 2 } : { kind: 'streaming', sinks: 4, window: budget - 4 };

// Prefill: the prompt's keys and values go into the cache at once.
let x = Float32Array.from({ length: B * prompt * Hq * D }, rand);
cache.append(project(Wk, Hkv, x, prompt), project(Wv, Hkv, x, prompt));
// each sequence's last prompt token starts the loop: [B, 1, Hq*D]
x = Float32Array.from({ length: B * Hq * D }, (_, i) => x[(Math.floor(i / (Hq * D)) * prompt + prompt - 1) * Hq * D + (i % (Hq * D))]);

const t0 = process.hrtime.bigint();
for (let step = 0; step < steps; step++) {
  cache.append(project(Wk, Hkv, x, 1), project(Wv, Hkv, x, 1));  // the new token first
  const out = decodeAttentionSync(project(Wq, Hq, x, 1), cache, { accumulateScores: policy.kind === 'h2o' });
  // next state: the attention output, [B, Hq, 1, D] read as [B, 1, Hq*D], squashed
  x = out.toFloat32Array().map(Math.tanh);
  if (cache.length(0) > budget) cache.evict(policy);
}
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
console.log(`decode loop (${policy.kind}): ${steps} steps, ${(ms / steps).toFixed(3)} ms a step, cache ${cache.length(0)} tokens ` +
  `per sequence (budget ${budget}), ${cache.pagesUsed} of ${cache.pagesUsed + cache.pagesFree} pages in use`);
cache.dispose();
