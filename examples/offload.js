'use strict';
// Lamina-style attention offload: a sequence's recent KV lives on the GPU (when there is one), its
// older KV on the CPU. Each side computes attention of the new queries over its own keys with
// returnLse, and mergeAttentionStates combines the two partial results exactly (the LSE merge of
// Flash-Decoding). The result equals attention over the whole sequence.
//   node examples/offload.js [--cpu]    (--cpu: both halves on the CPU, e.g. with no GPU)
const { Tensor, attention, mergeAttentionStates, backendInfo } = require('..');

function randomTensor(shape) {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = Math.random() * 2 - 1;
  return Tensor.from(data, shape);
}

// Keys [j0, j1) of a [B, H, S, D] tensor: a zero-copy view.
const keys = (t, j0, j1) => t.slice(2, j0, j1);

async function main() {
  const B = 1, Hq = 8, Hkv = 2, D = 64, S = 4096, newTokens = 4, onCpu = 3072;
  const gpu = !process.argv.includes('--cpu') && backendInfo().cuda.available ? 'cuda' : 'cpu';
  const q = randomTensor([B, Hq, newTokens, D]);   // the last newTokens positions of the sequence
  const k = randomTensor([B, Hkv, S, D]);
  const v = randomTensor([B, Hkv, S, D]);

  // Older part on the CPU: every new query sees all of it (no mask needed).
  const older = await attention(q, keys(k, 0, onCpu), keys(v, 0, onCpu), { returnLse: true });
  // Recent part where the GPU is: causal among the new tokens, bottom-right aligned as usual.
  const [qd, kd, vd] = await Promise.all([q, keys(k, onCpu, S).contiguous(), keys(v, onCpu, S).contiguous()].map((t) => t.to(gpu)));
  const recentDev = await attention(qd, kd, vd, { causal: true, returnLse: true });
  const recent = { out: await recentDev.out.to('cpu'), lse: await recentDev.lse.to('cpu') };
  const merged = mergeAttentionStates([older, recent]);

  // Check against attention over the whole sequence in one call.
  const full = await attention(q, k, v, { causal: true });
  const a = merged.out.toFloat32Array(), b = full.toFloat32Array();
  let err = 0, ref = 0;
  for (let i = 0; i < a.length; i++) { err = Math.max(err, Math.abs(a[i] - b[i])); ref = Math.max(ref, Math.abs(b[i])); }
  for (const t of [qd, kd, vd, recentDev.out, recentDev.lse]) if (t.device !== 'cpu') t.dispose();
  console.log(`offload: ${onCpu} keys on the CPU, ${S - onCpu} on ${gpu}; merged vs one call: max error ${(err / ref).toExponential(2)} of max|out|`);
  if (!(err / ref <= 1e-5)) process.exitCode = 1;
}

main().catch((e) => { console.error(e); process.exit(1); });
