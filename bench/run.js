#!/usr/bin/env node
'use strict';
// attnkit CPU benchmark: attnkit vs onnxruntime-node vs tuned JS vs naive JS, in one process, on the
// same inputs, interleaved, with every peer's output verified before it is timed.
//
//   npm run bench                 (= npm run build:ts && node bench/run.js)
//   node bench/run.js --quick     smaller sizes, fewer repeats: a smoke run
//   node bench/run.js --threads N attnkit pool and ORT intra-op threads (default: attnkit's pool size)
//   node bench/run.js --only causal   only cases whose name contains the substring ('overhead', 'sparse', 'linear', 'decode' too)
//   node bench/run.js --layout bshd   feed attnkit only zero-copy BSHD views of onnxruntime's buffers
//
// Writes bench/results/cpu-latest.json and bench/results/cpu-latest.svg; table and acceptance
// checks on stdout, progress on stderr. bench/NOTES.md explains the method.

const os = require('os');
const fs = require('fs');
const path = require('path');

const attn = require('..');
const { native } = require('../dist/native/binding');
const stats = require('./lib/stats');
const verify = require('./lib/verify');
const { formatTable, fmt, fmtPct, fmtErr, fmtRatio } = require('./lib/table');
const { barChart } = require('./lib/svg');
const { createProgress } = require('./lib/progress');
const { runSparseCpu } = require('./sparse-cpu');
const { runLinearCpu } = require('./linear-cpu');
const { runDecodeCpu } = require('./decode-cpu');

// ---------------------------------------------------------------------------------------------
// options

function usage(code) {
  const text = `usage: node bench/run.js [--quick] [--threads N] [--only SUBSTRING] [--layout bshd|bhsd] [--out DIR]
  --quick          small sizes and short timing, for a smoke run (results go to cpu-quick.*)
  --threads N      threads for attnkit's pool and for onnxruntime (default: attnkit's pool size)
  --only S         only the cases whose name contains S (case-insensitive); 'overhead' selects the
                   call-overhead measurement, 'sparse', 'linear' and 'decode' those sections; may be given more than once
  --layout L       how attnkit gets q/k/v: 'bhsd' (default) = contiguous [B,H,S,D], its natural
                   layout, with an extra interleaved 'attnkit bshd views' row on the float32 cases;
                   'bshd' = only zero-copy transposed views of the [B,S,H*D] buffers onnxruntime reads
  --out DIR        where to write the JSON and SVG (default bench/results)\n`;
  (code ? process.stderr : process.stdout).write(text);
  process.exit(code);
}

function parseArgs(argv) {
  const o = { quick: false, threads: 0, only: [], layout: 'bhsd', out: path.join(__dirname, 'results') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) { process.stderr.write(`${a} needs a value\n`); usage(2); }
      return argv[++i];
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--threads') o.threads = Number(val());
    else if (a.startsWith('--threads=')) o.threads = Number(a.slice(10));
    else if (a === '--only') o.only.push(val().toLowerCase());
    else if (a.startsWith('--only=')) o.only.push(a.slice(7).toLowerCase());
    else if (a === '--layout') o.layout = val();
    else if (a.startsWith('--layout=')) o.layout = a.slice(9);
    else if (a === '--out') o.out = path.resolve(val());
    else if (a === '-h' || a === '--help') usage(0);
    else { process.stderr.write(`unknown argument ${a}\n`); usage(2); }
  }
  if (o.threads && !(Number.isInteger(o.threads) && o.threads >= 1)) {
    process.stderr.write('--threads must be a positive integer\n');
    usage(2);
  }
  if (o.layout !== 'bshd' && o.layout !== 'bhsd') { process.stderr.write('--layout must be bshd or bhsd\n'); usage(2); }
  return o;
}

const opts = parseArgs(process.argv.slice(2));

// Timing policy. Group A: the native peers (attnkit, onnxruntime), interleaved. Group B: the JS peers.
const TIMING = opts.quick
  ? { native: { warmup: 1, minReps: 3, minTimeMs: 200, maxReps: 20, maxTimeMs: 3000 },
      js: { warmup: 1, minReps: 2, minTimeMs: 200, maxReps: 5, maxTimeMs: 2000 } }
  : { native: { warmup: 2, minReps: 5, minTimeMs: 1000, maxReps: 40, maxTimeMs: 20000 },
      js: { warmup: 1, minReps: 3, minTimeMs: 1000, maxReps: 10, maxTimeMs: 8000 } };
// Lone calls: every timed run starts after an idle gap with nothing warmed, as a service's
// request-by-request call would. Only for the cases marked `isolated`.
TIMING.isolated = { warmup: 0, minReps: opts.quick ? 3 : 9, minTimeMs: 0, maxReps: opts.quick ? 3 : 9, maxTimeMs: 60000,
  block: 1, warmBlock: false, settleMs: 150 };
const NAIVE_SEQ = opts.quick ? 256 : Infinity; // naive JS runs at most this sequence length (then scaled)
const JS_HEADS = 1;                       // JS peers run this many query heads (then scaled)
const TOL = { float32: 1e-3, float16: 1e-2, bfloat16: 3e-2 }; // max rel error vs float64 reference

// ---------------------------------------------------------------------------------------------
// cases

function defineCases(quick) {
  const S = quick ? { long: 512, mid: 256, xl: 2048 } : { long: 2048, mid: 1024, xl: 8192 };
  const c = (o) => ({ batch: 1, headsKv: o.headsQ, causal: false, dtype: 'float32', ort: true, js: true, ...o });
  return [
    c({ id: 'nc-d64', name: `H8 S${S.long} D64`, headsQ: 8, seq: S.long, headDim: 64, isolated: true }),
    c({ id: 'nc-d128', name: `H8 S${S.mid} D128`, headsQ: 8, seq: S.mid, headDim: 128, isolated: true }),
    c({ id: 'causal', name: `H8 S${S.long} D64 causal`, headsQ: 8, seq: S.long, headDim: 64, causal: true }),
    c({ id: 'dense-xl', name: `H8 S${S.xl} D64`, headsQ: 8, seq: S.xl, headDim: 64, js: false }),
    c({ id: 'window', name: `H8 S${S.xl} D64 causal window [256,0]`, headsQ: 8, seq: S.xl, headDim: 64,
      causal: true, window: [256, 0], ort: false, js: false, needs: 'dense-xl' }),
    c({ id: 'f16', name: `H8 S${S.long} D64 float16`, headsQ: 8, seq: S.long, headDim: 64, dtype: 'float16',
      ort: false, js: false, withF32: true }),
    c({ id: 'bf16', name: `H8 S${S.long} D64 bfloat16`, headsQ: 8, seq: S.long, headDim: 64, dtype: 'bfloat16',
      ort: false, js: false, withF32: true }),
    c({ id: 'gqa', name: `GQA Hq32 Hkv8 S${S.mid} D128`, headsQ: 32, headsKv: 8, seq: S.mid, headDim: 128,
      informational: true }),
  ];
}

let cases = defineCases(opts.quick);
let runOverhead = true;
if (opts.only.length) {
  const hit = (s) => opts.only.some((o) => s.toLowerCase().includes(o));
  const chosen = new Set(cases.filter((cs) => hit(cs.name) || hit(cs.id)).map((cs) => cs.id));
  for (const cs of cases) if (chosen.has(cs.id) && cs.needs) chosen.add(cs.needs);
  cases = cases.filter((cs) => chosen.has(cs.id));
  runOverhead = hit('overhead');
  if (!cases.length && !runOverhead && !hit('sparse') && !hit('linear') && !hit('decode')) {
    process.stderr.write(`--only ${opts.only.join(', ')}: no case matches; cases are:\n` +
      defineCases(opts.quick).map((cs) => `  ${cs.name}\n`).join('') + '  overhead\n  sparse\n  linear\n  decode\n');
    process.exit(2);
  }
}

// ---------------------------------------------------------------------------------------------
// peers that may be missing

let ortPeer = null, ortVersion = null, ortError = null;
try {
  ortPeer = require('./peers/onnxruntime');
  ortVersion = require('onnxruntime-node/package.json').version;
} catch (e) {
  ortError = e instanceof Error ? e.message.split('\n')[0] : String(e);
}

let jsPeers = null, jsError = null;
try {
  const ref = require('../dist/reference');
  if (typeof ref.attentionTunedJs !== 'function' || typeof ref.attentionNaiveJs !== 'function') {
    throw new Error('dist/reference does not export attentionTunedJs / attentionNaiveJs');
  }
  jsPeers = { tuned: ref.attentionTunedJs, naive: ref.attentionNaiveJs };
} catch (e) {
  jsError = e instanceof Error ? e.message.split('\n')[0] : String(e);
}

// ---------------------------------------------------------------------------------------------
// data

function rng(seed) { // mulberry32
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomArray(n, seed) {
  const r = rng(seed), x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = 2 * r() - 1;
  return x;
}

/** [B, S, H, D] -> contiguous [B, H', S', D] for heads [h0, h0+nh) and rows [0, s). */
function extractBhsd(bshd, B, S, H, D, h0, nh, s) {
  const out = new Float32Array(B * nh * s * D);
  for (let b = 0; b < B; b++) for (let h = 0; h < nh; h++) for (let i = 0; i < s; i++) {
    const src = ((b * S + i) * H + h0 + h) * D, dst = ((b * nh + h) * s + i) * D;
    out.set(bshd.subarray(src, src + D), dst);
  }
  return out;
}

/** [B, S, Hkv, D] -> [B, S, Hq, D] with kv head h / (Hq/Hkv) copied into query head h (for MHA). */
function repeatKvHeads(x, B, S, Hkv, Hq, D) {
  const out = new Float32Array(B * S * Hq * D), g = Hq / Hkv;
  for (let bs = 0; bs < B * S; bs++) for (let h = 0; h < Hq; h++) {
    const src = (bs * Hkv + Math.floor(h / g)) * D;
    out.set(x.subarray(src, src + D), (bs * Hq + h) * D);
  }
  return out;
}

const half = {
  float16: { to: attn.toFloat16, from: attn.fromFloat16 },
  bfloat16: { to: attn.toBFloat16, from: attn.fromBFloat16 },
};

// ---------------------------------------------------------------------------------------------
// helpers

const info = attn.backendInfo();
const threads = opts.threads || info.cpu.threads;
attn.setNumThreads(threads);
const binding = native();
const cpuInfo = binding.cpuInfo();

const progress = createProgress({ total: cases.length + (runOverhead ? 1 : 0) + 1 });

function caseFlops(cs) {
  const { batch: B, headsQ: H, seq: S, headDim: D } = cs;
  const pairs = verify.visiblePairs(S, S, { causal: cs.causal, window: cs.window });
  // Convention (DESIGN.md): 4*B*H*Sq*Sk*D, halved for causal; windows count visible pairs exactly.
  const effPairs = cs.window ? pairs : cs.causal ? (S * S) / 2 : S * S;
  return { flops: 4 * B * H * D * effPairs, visiblePairs: pairs, visibleFraction: pairs / (S * S) };
}

function shapeOf(cs, seq = cs.seq, headsQ = cs.headsQ, headsKv = cs.headsKv) {
  return { batch: cs.batch, headsQ, headsKv, seqQ: seq, seqK: seq, headDim: cs.headDim, causal: cs.causal };
}

const errLine = (e) => (e instanceof Error ? `${e.code ? `${e.code}: ` : ''}${e.message.split('\n')[0]}` : String(e));

// ---------------------------------------------------------------------------------------------
// one case

async function runCase(cs) {
  const { batch: B, headsQ: Hq, headsKv: Hkv, seq: S, headDim: D } = cs;
  const shape = shapeOf(cs);
  const mask = { causal: cs.causal, window: cs.window };
  const attnOpts = { causal: cs.causal || undefined, window: cs.window };
  const { flops, visiblePairs, visibleFraction } = caseFlops(cs);
  const result = {
    id: cs.id, name: cs.name, informational: !!cs.informational,
    shape: { batch: B, headsQ: Hq, headsKv: Hkv, seqQ: S, seqK: S, headDim: D, causal: cs.causal,
      window: cs.window || null, dtype: cs.dtype },
    flops, visiblePairs, visibleFraction, layout: opts.layout, peers: [], notes: [],
  };
  const peers = []; // { name, run, scale, scaledNote, errRef, errVsAttnkit, group }

  // inputs: [B, S, H, D] float32 (onnxruntime's [B, S, H*D] layout)
  progress.update('inputs...');
  const seed = 1000 * Hq + 10 * S + D;
  const q32 = randomArray(B * S * Hq * D, seed + 1);
  const k32 = randomArray(B * S * Hkv * D, seed + 2);
  const v32 = randomArray(B * S * Hkv * D, seed + 3);

  const dtype = cs.dtype;
  let qd = q32, kd = k32, vd = v32;          // what attnkit gets (float32 or Uint16Array)
  let qr = q32, kr = k32, vr = v32;          // what the reference sees (rounded for 16-bit types)
  if (dtype !== 'float32') {
    qd = half[dtype].to(q32); kd = half[dtype].to(k32); vd = half[dtype].to(v32);
    qr = half[dtype].from(qd); kr = half[dtype].from(kd); vr = half[dtype].from(vd);
  }
  const makeTensors = (q, k, v, dt) => {
    if (opts.layout === 'bshd') {
      return [attn.Tensor.from(q, [B, S, Hq, D], { dtype: dt }).transpose(1, 2),
        attn.Tensor.from(k, [B, S, Hkv, D], { dtype: dt }).transpose(1, 2),
        attn.Tensor.from(v, [B, S, Hkv, D], { dtype: dt }).transpose(1, 2)];
    }
    const toBhsd = (x, H) => {
      const t = attn.Tensor.from(x, [B, S, H, D], { dtype: dt }).transpose(1, 2).contiguous();
      return t;
    };
    return [toBhsd(q, Hq), toBhsd(k, Hkv), toBhsd(v, Hkv)];
  };
  const [tq, tk, tv] = makeTensors(qd, kd, vd, dtype);
  const refViews = [verify.bshd(qr, Hq, S, D), verify.bshd(kr, Hkv, S, D), verify.bshd(vr, Hkv, S, D)];
  const rows = verify.sampleRows(shape, 24);
  const refRows = verify.referenceRows(...refViews, shape, rows, mask);
  const tol = TOL[dtype];

  // attnkit
  progress.update('attnkit: verify...');
  let attnOut = null;
  {
    const peer = { name: 'attnkit', label: `attnkit (${dtype}, ${threads} threads)`, group: 'native', scale: 1 };
    try {
      const out = attn.attentionSync(tq, tk, tv, attnOpts);
      attnOut = out.toFloat32Array(); // logical [B, Hq, S, D]
      peer.errRef = verify.maxRelError(verify.gatherRows(verify.bhsd(attnOut, Hq, S, D), rows, D), refRows);
      if (!(peer.errRef <= tol)) peer.failed = `output differs from the float64 reference: max rel err ${fmtErr(peer.errRef)} > ${tol}`;
    } catch (e) {
      peer.failed = `threw ${errLine(e)}`;
    }
    // Timed runs write into a preallocated output, as a serving loop would (onnxruntime too: its
    // output is pre-bound): no per-run allocation or page faults in either peer.
    const outT = attn.Tensor.empty([B, Hq, S, D], { dtype });
    peer.run = () => { attn.attentionSync(tq, tk, tv, { ...attnOpts, out: outT }); };
    peers.push(peer);
  }

  // With contiguous inputs (the default), the float32 cases also time attnkit on zero-copy views
  // of onnxruntime's own [B, S, H, D] buffers, interleaved, so the cost of the strided layout shows.
  if (opts.layout === 'bhsd' && dtype === 'float32' && cs.ort) {
    const vq = attn.Tensor.from(q32, [B, S, Hq, D]).transpose(1, 2);
    const vk = attn.Tensor.from(k32, [B, S, Hkv, D]).transpose(1, 2);
    const vv = attn.Tensor.from(v32, [B, S, Hkv, D]).transpose(1, 2);
    const peer = { name: 'attnkit bshd views', label: `attnkit on [B,S,H,D] views (${threads} threads)`, group: 'native', scale: 1 };
    try {
      const o = attn.attentionSync(vq, vk, vv, attnOpts).toFloat32Array();
      peer.errRef = verify.maxRelError(verify.gatherRows(verify.bhsd(o, Hq, S, D), rows, D), refRows);
      if (attnOut) peer.errVsAttnkit = verify.compareViews(verify.bhsd(o, Hq, S, D), verify.bhsd(attnOut, Hq, S, D), [B, Hq, S, D]);
      if (!(peer.errRef <= tol)) peer.failed = `output differs from the float64 reference: max rel err ${fmtErr(peer.errRef)}`;
    } catch (e) {
      peer.failed = `threw ${errLine(e)}`;
    }
    const outV = attn.Tensor.from(new Float32Array(B * S * Hq * D), [B, S, Hq, D]).transpose(1, 2);
    peer.run = () => { attn.attentionSync(vq, vk, vv, { ...attnOpts, out: outV }); };
    peers.push(peer);
  }

  if (cs.withF32) {
    const [fq, fk, fv] = makeTensors(q32, k32, v32, 'float32');
    const peer = { name: 'attnkit float32', label: `attnkit (float32, ${threads} threads, interleaved baseline)`, group: 'native', scale: 1 };
    const refF32 = verify.referenceRows(verify.bshd(q32, Hq, S, D), verify.bshd(k32, Hkv, S, D), verify.bshd(v32, Hkv, S, D), shape, rows, mask);
    try {
      const o = attn.attentionSync(fq, fk, fv, attnOpts).toFloat32Array();
      peer.errRef = verify.maxRelError(verify.gatherRows(verify.bhsd(o, Hq, S, D), rows, D), refF32);
      if (attnOut) peer.errVsAttnkit = verify.compareViews(verify.bhsd(o, Hq, S, D), verify.bhsd(attnOut, Hq, S, D), [B, Hq, S, D]);
      if (!(peer.errRef <= TOL.float32)) peer.failed = `output differs from the float64 reference: max rel err ${fmtErr(peer.errRef)}`;
    } catch (e) {
      peer.failed = `threw ${errLine(e)}`;
    }
    const outF = attn.Tensor.empty([B, Hq, S, D]);
    peer.run = () => { attn.attentionSync(fq, fk, fv, { ...attnOpts, out: outF }); };
    peers.push(peer);
  }

  // onnxruntime
  let ortSession = null;
  if (cs.ort && ortPeer && dtype === 'float32') {
    progress.update('onnxruntime: session + verify...');
    const peer = { name: 'onnxruntime', label: `onnxruntime-node ${ortVersion} MultiHeadAttention (intraOpNumThreads ${threads})`, group: 'native', scale: 1 };
    try {
      const kk = Hkv === Hq ? k32 : repeatKvHeads(k32, B, S, Hkv, Hq, D);
      const vv = Hkv === Hq ? v32 : repeatKvHeads(v32, B, S, Hkv, Hq, D);
      if (Hkv !== Hq) peer.note = `MHA has no GQA: K/V repeated to ${Hq} heads (same FLOPs)`;
      ortSession = await ortPeer.createOrtAttention({ batch: B, heads: Hq, seqQ: S, seqK: S, headDim: D, causal: cs.causal, threads });
      const o = await ortSession.run(q32, kk, vv); // [B, S, Hq*D]
      const ov = verify.bshd(o, Hq, S, D);
      peer.errRef = verify.maxRelError(verify.gatherRows(ov, rows, D), refRows);
      if (attnOut) peer.errVsAttnkit = verify.compareViews(ov, verify.bhsd(attnOut, Hq, S, D), [B, Hq, S, D]);
      if (!(peer.errRef <= tol)) peer.failed = `output differs from the float64 reference: max rel err ${fmtErr(peer.errRef)}`;
      const ortOut = new Float32Array(B * S * Hq * D);
      peer.run = () => ortSession.run(q32, kk, vv, ortOut);
    } catch (e) {
      peer.failed = `onnxruntime failed: ${errLine(e)}`;
    }
    if (cs.causal && !peer.note) peer.note = 'masking moves ORT off its flash path';
    peers.push(peer);
  } else if (cs.ort && !ortPeer) {
    result.notes.push(`onnxruntime skipped: ${ortError}`);
  }

  // JS peers: JS_HEADS query heads (and the kv heads they read); naive also at a shorter sequence.
  if (cs.js && jsPeers) {
    progress.update('JS: verify...');
    const nh = Math.min(JS_HEADS, Hq), nkv = Math.max(1, Math.ceil(nh / (Hq / Hkv)));
    const fullPairs = verify.visiblePairs(S, S, mask);
    for (const kind of ['tuned', 'naive']) {
      const s = kind === 'naive' ? Math.min(S, NAIVE_SEQ) : S;
      const jq = extractBhsd(q32, B, S, Hq, D, 0, nh, s);
      const jk = extractBhsd(k32, B, S, Hkv, D, 0, nkv, s);
      const jv = extractBhsd(v32, B, S, Hkv, D, 0, nkv, s);
      const jshape = shapeOf(cs, s, nh, nkv);
      const runPairs = verify.visiblePairs(s, s, mask);
      const scale = (Hq / nh) * (fullPairs / runPairs);
      const fn = jsPeers[kind];
      const peer = {
        name: `${kind} JS`, label: `${kind} JS (1 thread)`, group: 'js', scale,
        scaled: { headsRun: nh, headsTotal: Hq, seqRun: s, seq: S, pairsRun: runPairs, pairsFull: fullPairs, factor: scale },
        scaledNote: s === S
          ? `ran ${nh} of ${Hq} heads, time x${fmt(scale)}`
          : `ran ${nh} of ${Hq} heads at S${s}, time x${fmt(Hq / nh)} (heads) x${fmt(fullPairs / runPairs)} (FLOPs S${S}/S${s})`,
      };
      try {
        const o = fn(jq, jk, jv, jshape);
        const jrows = verify.sampleRows(jshape, 12);
        const jref = verify.referenceRows(verify.bhsd(jq, nh, s, D), verify.bhsd(jk, nkv, s, D), verify.bhsd(jv, nkv, s, D), jshape, jrows, mask);
        peer.errRef = verify.maxRelError(verify.gatherRows(verify.bhsd(o, nh, s, D), jrows, D), jref);
        if (s === S && attnOut) {
          peer.errVsAttnkit = verify.compareViews(verify.bhsd(o, nh, S, D), verify.bhsd(attnOut, Hq, S, D), [B, nh, S, D]);
        }
        if (!(peer.errRef <= TOL.float32)) peer.failed = `output differs from the float64 reference: max rel err ${fmtErr(peer.errRef)}`;
      } catch (e) {
        peer.failed = `threw ${errLine(e)}`;
      }
      peer.run = () => { fn(jq, jk, jv, jshape); };
      peers.push(peer);
    }
  } else if (cs.js && !jsPeers) {
    result.notes.push(`JS peers skipped: ${jsError}`);
  }

  if (cs.isolated) {
    for (const name of ['attnkit', 'onnxruntime']) {
      const base = peers.find((p) => p.name === name && !p.failed);
      if (base) peers.push({ ...base, name: `${name} lone calls`, label: `${base.label}, lone calls after idle`, group: 'isolated' });
    }
  }

  // timing: each group interleaved
  for (const group of ['native', 'isolated', 'js']) {
    const timed = peers.filter((p) => p.group === group && !p.failed);
    if (!timed.length) continue;
    const names = timed.map((p) => p.name).join(', ');
    const samples = await stats.timeInterleaved(timed, {
      ...TIMING[group],
      onRound: (r) => (r < 0 ? progress.update(`warm-up ${names}...`) : progress.update(`timing ${names}...`, `round ${r + 1}`)),
    });
    for (const p of timed) p.samples = samples[p.name];
  }
  if (ortSession) await ortSession.dispose();

  // results
  const peakGflops = machine.fmaPeakGflops;
  for (const p of peers) {
    const r = { name: p.name, label: p.label, errRef: p.errRef ?? null, errVsAttnkit: p.errVsAttnkit ?? null };
    if (p.note) r.note = p.note;
    if (p.failed) {
      r.failed = p.failed;
      progress.note(`  ${cs.name}: ${p.name} not timed: ${p.failed}`);
    } else {
      const s = stats.summarize(p.samples);
      r.samplesMs = p.samples;
      r.runMinMs = s.minMs;
      r.runMedianMs = s.medianMs;
      r.iqrRel = s.iqrRel;
      r.scale = p.scale;
      if (p.scaled) { r.scaled = p.scaled; r.scaledNote = p.scaledNote; }
      r.ms = s.medianMs * p.scale;       // estimated time for the whole case
      r.minMs = s.minMs * p.scale;
      r.gflops = flops / (r.ms * 1e6);
      r.peakFraction = r.gflops / peakGflops;
    }
    result.peers.push(r);
  }
  const a = result.peers.find((p) => p.name === 'attnkit');
  for (const p of result.peers) {
    if (a && a.ms && p.ms) p.attnkitSpeedup = p.ms / a.ms; // > 1: attnkit is faster
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// call overhead

async function runOverheadCase() {
  const D = 64;
  const mk = (seed) => attn.Tensor.from(randomArray(D, seed), [1, 1, 1, D]);
  const q = mk(1), k = mk(2), v = mk(3);
  const out = attn.Tensor.empty([1, 1, 1, D]);
  const res = { shape: 'B1 H1 S1 D64 float32' };
  const summary = ({ us, meanUs }) => ({
    calls: us.length, medianUs: stats.median(us), p10Us: stats.quantile(us, 0.1), p90Us: stats.quantile(us, 0.9),
    p99Us: stats.quantile(us, 0.99), minUs: stats.quantile(us, 0), meanUs,
  });
  const n = opts.quick ? { sync: 5000, async: 1000 } : { sync: 30000, async: 6000 };
  progress.update('attentionSync...');
  res.sync = summary(await stats.timeCalls(() => attn.attentionSync(q, k, v), { calls: n.sync }));
  progress.update('attentionSync with out...');
  res.syncWithOut = summary(await stats.timeCalls(() => attn.attentionSync(q, k, v, { out }), { calls: n.sync }));
  progress.update('attention (async)...');
  res.async = summary(await stats.timeCalls(() => attn.attention(q, k, v), { calls: n.async, warmupCalls: 500, isAsync: true }));
  return res;
}

// ---------------------------------------------------------------------------------------------
// acceptance

function acceptance(results, overhead) {
  const byId = Object.fromEntries(results.map((r) => [r.id, r]));
  const ms = (id, peer = 'attnkit') => byId[id]?.peers.find((p) => p.name === peer)?.ms;
  const checks = [];
  const add = (name, value, op, target, detail = '') => {
    const ok = value === undefined || value === null || Number.isNaN(value)
      ? null : op === '>=' ? value >= target : value <= target;
    checks.push({ name, value: value ?? null, op, target, pass: ok, detail });
  };
  for (const id of ['nc-d64', 'nc-d128']) {
    const n = byId[id]?.name ?? id;
    add(`attnkit vs onnxruntime speed, ${n}`, ms(id, 'onnxruntime') / ms(id), '>=', 1.15, 'ORT time / attnkit time, back to back');
    add(`attnkit vs onnxruntime speed, ${n}, lone calls`, ms(id, 'onnxruntime lone calls') / ms(id, 'attnkit lone calls'), '>=', 1.15,
      'each call after 150 ms idle');
  }
  for (const id of ['nc-d64', 'nc-d128']) {
    const n = byId[id]?.name ?? id;
    const p = byId[id]?.peers.find((x) => x.name === 'attnkit');
    add(`fraction of FMA peak, ${n}`, p?.peakFraction, '>=', 0.75, `of ${fmt(machine.fmaPeakGflops)} GFLOP/s`);
  }
  add(`causal speed-up, ${byId.causal?.name ?? 'causal'}`, ms('nc-d64') / ms('causal'), '>=', 1.8, 'non-causal time / causal time');
  {
    const w = byId.window;
    const dense = ms('dense-xl');
    const ideal = w && dense ? w.visibleFraction * dense : undefined;
    if (w) { w.idealMs = ideal; w.idealRatio = ms('window') / ideal; }
    add(`window measured / ideal, ${w?.name ?? 'window'}`, w ? ms('window') / ideal : undefined, '<=', 1.4,
      w ? `ideal = ${fmt(w.visibleFraction, 3)} visible x ${fmt(dense)} ms dense = ${fmt(ideal)} ms` : '');
  }
  for (const id of ['f16', 'bf16']) {
    add(`${byId[id]?.shape.dtype ?? id} time / float32 time, ${byId[id]?.name ?? id}`, ms(id) / ms(id, 'attnkit float32'), '<=', 1.3, 'interleaved in one case');
  }
  const core = ['nc-d64', 'nc-d128', 'causal'].filter((id) => byId[id]);
  for (const [peer, target] of [['naive JS', 200], ['tuned JS', 30]]) {
    const ratios = core.map((id) => ({ id, r: ms(id, peer) / ms(id) })).filter((x) => Number.isFinite(x.r));
    const worst = ratios.length ? ratios.reduce((a, b) => (b.r < a.r ? b : a)) : null;
    add(`attnkit vs ${peer} (worst of the core fp32 cases)`, worst?.r, '>=', target,
      worst ? ratios.map((x) => `${byId[x.id].name}: ${fmt(x.r)}x`).join('; ') : '');
  }
  add('attentionSync overhead, µs (median, B1 H1 S1 D64)', overhead?.sync.medianUs, '<=', 5);
  add('attention (async) overhead, µs (median, B1 H1 S1 D64)', overhead?.async.medianUs, '<=', 50);
  return checks;
}

// ---------------------------------------------------------------------------------------------
// main

const machine = {};

async function main() {
  const t0 = Date.now();
  progress.start('machine: fp32 FMA peak');
  machine.cpuModel = os.cpus()[0]?.model ?? 'unknown';
  machine.logicalCpus = os.cpus().length;
  machine.threads = threads;
  machine.isa = info.cpu.isa;
  machine.bestIsa = cpuInfo.bestIsa;
  machine.node = process.version;
  machine.platform = `${process.platform}-${process.arch}`;
  machine.attnkitVersion = info.version;
  machine.onnxruntimeVersion = ortVersion;
  machine.date = new Date().toISOString();
  machine.loadavg = os.loadavg();
  machine.fmaPeakGflopsStart = binding.fmaPeakGflops(300);
  machine.fmaPeakGflops = machine.fmaPeakGflopsStart;

  if (!ortPeer) progress.note(`note: onnxruntime-node peer skipped (${ortError}); run npm install to get it`);
  if (!jsPeers) progress.note(`note: JS peers skipped (${jsError}); run npm run build:ts first`);

  const results = [];
  machine.fmaPeakSamples = [machine.fmaPeakGflopsStart];
  for (const cs of cases) {
    progress.start(cs.name);
    results.push(await runCase(cs));
    // Sampled again after every case: on a busy machine one sample can land in someone else's burst.
    machine.fmaPeakSamples.push(binding.fmaPeakGflops(150));
  }
  let overhead = null;
  if (runOverhead) {
    progress.start('call overhead B1 H1 S1 D64');
    overhead = await runOverheadCase();
  }
  // The sparse family (bench/sparse-cpu.js): block-sparse, neighborhood and top-k against dense.
  let sparse = null;
  if (opts.only.length === 0 || opts.only.some((o) => 'sparse'.includes(o))) {
    progress.start('sparse: block-sparse, neighborhood, top-k vs dense');
    sparse = runSparseCpu(opts.quick ? { S: 2048, rounds: 3, side: 32, topk: 4 } : {});
  }
  // Linear attention (bench/linear-cpu.js): its cost against the length and against causal softmax attention.
  let linear = null;
  if (opts.only.length === 0 || opts.only.some((o) => 'linear'.includes(o))) {
    progress.start('linear: chunked linear attention vs its length and vs causal softmax attention');
    linear = runLinearCpu(opts.quick ? { short: 2048, long: 16384, compareS: 4096, rounds: 2 } : {});
  }
  // Decode over a paged KV cache (bench/decode-cpu.js): one step against the machine's read bandwidth.
  let decode = null;
  if (opts.only.length === 0 || opts.only.some((o) => 'decode'.includes(o))) {
    progress.start('decode: one decoding step over a paged KV cache vs memory read bandwidth');
    decode = runDecodeCpu(opts.quick ? { L: 2048, rounds: 3, readMiB: 128 } : {});
  }
  // Peak again at the end: the largest sample is the machine's peak, the spread is noise.
  machine.fmaPeakGflopsEnd = binding.fmaPeakGflops(300);
  machine.fmaPeakSamples.push(machine.fmaPeakGflopsEnd);
  machine.fmaPeakGflops = Math.max(...machine.fmaPeakSamples);
  machine.loadavgEnd = os.loadavg();
  for (const r of results) for (const p of r.peers) if (p.gflops) p.peakFraction = p.gflops / machine.fmaPeakGflops;
  const checks = acceptance(results, overhead);
  for (const r of (sparse ?? []).filter((x) => x.kind === 'density')) {
    checks.push({ name: `${r.name}: time / (d x dense)`, value: r.ratio, op: '<=', target: r.target, pass: r.ratio <= r.target,
      detail: `${fmt(r.ms)} ms vs ${fmt(r.denseMs)} ms dense, d = ${fmt(r.computed, 3)} computed` });
  }
  for (const r of (linear ?? []).filter((x) => x.target !== undefined)) {
    checks.push({ name: r.name, value: r.ratio, op: r.op, target: r.target, pass: r.op === '<=' ? r.ratio <= r.target : r.ratio >= r.target, detail: r.detail });
  }
  for (const r of (decode ?? []).filter((x) => x.target !== undefined)) {
    checks.push({ name: `${r.name}: fraction of read bandwidth`, value: r.ratio, op: r.op, target: r.target, pass: r.ratio >= r.target, detail: r.detail });
  }
  progress.done();

  // ----- stdout: table
  const out = [];
  out.push(`attnkit CPU benchmark${opts.quick ? ' (--quick: small sizes, short timing)' : ''}`);
  out.push(`machine: ${machine.cpuModel}, ${machine.logicalCpus} logical CPUs; ${threads} thread${threads === 1 ? "" : "s"} for attnkit and onnxruntime; ` +
    `ISA ${machine.isa}; fp32 FMA peak ${fmt(machine.fmaPeakGflops)} GFLOP/s (${threads} thread${threads === 1 ? "" : "s"}; max of ${machine.fmaPeakSamples.length} samples, ` +
    `min ${fmt(Math.min(...machine.fmaPeakSamples))}); ` +
    `node ${machine.node}; onnxruntime-node ${ortVersion ?? 'n/a'}; load avg ${machine.loadavg.map((x) => x.toFixed(2)).join(' ')}`);
  out.push(`attnkit inputs: ${opts.layout === 'bshd' ? 'zero-copy [B,H,S,D] views of the [B,S,H,D] buffers onnxruntime reads' : 'contiguous [B,H,S,D]'}; ` +
    `times are medians over interleaved runs; GFLOP/s = 4*B*H*Sq*Sk*D/t (halved for causal; windows: visible pairs).`);
  out.push('');
  const rows = [];
  for (const r of results) {
    if (rows.length) rows.push('-');
    for (const p of r.peers) {
      rows.push({
        case: r.peers[0] === p ? r.name + (r.informational ? ' (info)' : '') : '',
        peer: p.name, ms: p.ms, minMs: p.minMs, gflops: p.gflops, peak: p.peakFraction,
        speedup: p.name === 'attnkit' ? undefined : p.attnkitSpeedup,
        errRef: p.errRef, errVsAttnkit: p.errVsAttnkit,
        note: p.failed ? `NOT TIMED: ${p.failed}` : [p.scaledNote, p.note].filter(Boolean).join('; '),
      });
    }
  }
  out.push(formatTable([
    { key: 'case', title: 'case', align: 'left' },
    { key: 'peer', title: 'peer', align: 'left' },
    { key: 'ms', title: 'ms (median)', format: (x) => fmt(x, 4) },
    { key: 'minMs', title: 'min ms', format: (x) => fmt(x, 4) },
    { key: 'gflops', title: 'GFLOP/s', format: (x) => fmt(x, 3) },
    { key: 'peak', title: '% peak', format: fmtPct },
    { key: 'speedup', title: 'attnkit speed-up', format: fmtRatio },
    { key: 'errRef', title: 'err vs f64 ref', format: fmtErr },
    { key: 'errVsAttnkit', title: 'diff vs attnkit', format: fmtErr },
    { key: 'note', title: 'note', align: 'left' },
  ], rows));
  out.push('');
  out.push('attnkit speed-up = peer time / attnkit time (> 1: attnkit faster). err vs f64 ref = max|out - ref| / max|ref| over');
  out.push('24 sampled query rows against a float64 reference on the same (rounded) inputs; diff vs attnkit = the same metric over');
  out.push('the whole output against attnkit\'s. JS peers run single-threaded on a subset of the heads (heads are independent) and');
  out.push('their time is multiplied by (heads total / heads run); naive JS also runs at a shorter sequence and is scaled by the');
  out.push('exact ratio of visible (query, key) pairs, i.e. of FLOPs. Those rows are estimates; the note column says what was scaled.');
  for (const r of results) for (const n of r.notes) out.push(`note: ${r.name}: ${n}`);
  const w = results.find((r) => r.id === 'window');
  if (w && w.idealMs) {
    out.push(`window: visible fraction ${fmt(w.visibleFraction, 4)} (${w.visiblePairs} of ${w.shape.seqQ}^2 pairs per head); ideal = fraction x dense ` +
      `${w.shape.seqQ} non-causal attnkit time = ${fmt(w.idealMs)} ms; measured ${fmt(w.peers[0].ms)} ms = ${fmt(w.idealRatio)}x ideal`);
  }
  if (overhead) {
    out.push('');
    out.push(`call overhead, ${overhead.shape} (per-call times, each call timed on its own):`);
    const o = (name, s) => `  ${name.padEnd(28)} median ${fmt(s.medianUs)} µs   p10 ${fmt(s.p10Us)}   p90 ${fmt(s.p90Us)}   p99 ${fmt(s.p99Us)}   mean ${fmt(s.meanUs)} µs   (${s.calls} calls)`;
    out.push(o('attentionSync', overhead.sync));
    out.push(o('attentionSync({ out })', overhead.syncWithOut));
    out.push(o('await attention', overhead.async));
  }
  if (sparse) {
    out.push('');
    out.push('sparse (float32, each against dense attention on its own inputs, interleaved):');
    for (const r of sparse) {
      out.push(`  ${r.name.padEnd(84)} ${fmt(r.ms).padStart(8)} ms   dense ${fmt(r.denseMs)} ms   computed ${fmt(r.computed, 3)}   ` +
        `time / (computed x dense) ${fmt(r.ratio)}`);
    }
  }
  if (linear) {
    out.push('');
    out.push('linear attention (float32, B1, one set of inputs: shorter lengths are prefixes; forms at the short length):');
    for (const r of linear.filter((x) => x.target === undefined)) {
      const time = r.ms < 1 ? `${fmt(r.ms * 1000)} µs` : `${fmt(r.ms)} ms`;
      out.push(`  ${r.name.padEnd(84)} ${time.padStart(10)}${r.kind === 'info' && r.refMs ? `   ${fmt(r.ms / r.refMs)}x the plain causal form` : ''}`);
    }
  }
  if (decode) {
    out.push('');
    out.push('decode over a paged KV cache (one step, Sq_new = 1):');
    for (const r of decode) out.push(`  ${r.name.padEnd(84)} ${r.detail}`);
  }
  out.push('');
  out.push(`acceptance${opts.quick ? ' (--quick sizes: not the real targets\' sizes, indicative only)' : ''}:`);
  out.push(formatTable([
    { key: 'name', title: 'check', align: 'left' },
    { key: 'value', title: 'measured', format: (x) => fmt(x, 3) },
    { key: 'target', title: 'target', format: (x, r) => `${r.op} ${x}` },
    { key: 'pass', title: 'result', align: 'left', format: (x) => (x === null ? 'n/a' : x ? 'PASS' : 'FAIL') },
    { key: 'detail', title: 'detail', align: 'left' },
  ], checks));
  const passed = checks.filter((c) => c.pass === true).length, failed = checks.filter((c) => c.pass === false).length;
  out.push(`${passed} PASS, ${failed} FAIL, ${checks.length - passed - failed} not measured`);
  out.push(`total time ${((Date.now() - t0) / 1000).toFixed(0)} s`);

  // ----- files
  const stem = opts.quick ? 'cpu-quick' : 'cpu-latest';
  fs.mkdirSync(opts.out, { recursive: true });
  const json = {
    benchmark: 'attnkit CPU', quick: opts.quick, only: opts.only, layout: opts.layout, machine, timing: TIMING,
    naiveSeq: NAIVE_SEQ, jsHeads: JS_HEADS, tolerances: TOL, cases: results, overhead, sparse, linear, decode, acceptance: checks,
    skipped: { onnxruntime: ortPeer ? null : ortError, js: jsPeers ? null : jsError },
  };
  const write = (file, text) => {
    const tmp = `${file}.tmp`;
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file);
  };
  const jsonFile = path.join(opts.out, `${stem}.json`), svgFile = path.join(opts.out, `${stem}.svg`);
  write(jsonFile, JSON.stringify(json, null, 1) + '\n');
  write(svgFile, barChart({
    title: `attnkit CPU attention, GFLOP/s (higher is better)${opts.quick ? ' [quick]' : ''}`,
    subtitle: `${machine.cpuModel}, ${threads} threads, ${machine.isa}, node ${machine.node}, ${machine.date.slice(0, 10)}; JS peers scaled from a subset (see JSON)`,
    groups: results.map((r) => ({
      name: r.name,
      bars: r.peers.filter((p) => p.gflops).map((p) => ({ peer: p.name, value: p.gflops, note: `${fmt(p.ms)} ms${p.scaledNote ? `, ${p.scaledNote}` : ''}` })),
    })).filter((g) => g.bars.length),
    peak: machine.fmaPeakGflops,
    peakLabel: `fp32 FMA peak (${threads} threads)`,
  }));
  out.push(`wrote ${path.relative(process.cwd(), jsonFile)} and ${path.relative(process.cwd(), svgFile)}`);
  process.stdout.write(out.join('\n') + '\n');
}

main().catch((e) => {
  process.stderr.write(`\nbench failed: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
