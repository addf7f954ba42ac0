'use strict';
// The fused-attention parity cases, shared by the CPU suite (test/attention.parity.test.js, jest)
// and the GPU suite (test/gpu/run.js, plain node), so the two never drift: the case table, and
// the builders that turn a case into seeded random inputs and options. No jest here.
const { Tensor } = require('../..');
const R = require('./random');
const { tolFor } = require('./compare');

// ---------------------------------------------------------------------------------------------
// Case description -> tensors and options
// ---------------------------------------------------------------------------------------------
// A case: { name, B, Hq, Hkv, Sq, Sk, D, Dv?, dtype, layout, out, outDtype, lse, varlen, o }
//   layout:  'bhsd' | 'bshd' (BSHD storage, transpose(1,2)) | 'padded' (gapped strides) |
//            'qkv' (slices of one [B,S,Hq+2Hkv,D] projection) | 'qkv5' ([B,S,3,H,D] with offsets)
//   out:     'strided' (poisoned, non-contiguous) | 'contig' (poisoned) | 'none' (library allocates)
//   varlen:  { q: [segment lengths], k: [...] }  (B must be 1; Sq/Sk are the sums)
//   o:       options spec: causal, window, sinks, softcap, scale, alibi, sinkLogits,
//            bias: { shape, dtype, view }, mask: { shape, keep, zeroRows, view }
// Broadcast shapes are strings over B (batch), H (Hq), Q (Sq), K (Sk) and 1, e.g. '1H1K', 'QK'.

function dims(spec, c) {
  return [...spec].map((ch) => ({ B: c.B, H: c.Hq, Q: c.Sq, K: c.Sk, 1: 1 })[ch]);
}

/** A float or uint8 tensor of logical `shape` holding `vals` (row-major), in a given view kind. */
function auxTensor(vals, shape, dtype, view) {
  if (view === 'transposed' && shape.length >= 2) {
    // storage with the last two dims swapped, viewed back with transpose: non-contiguous strides
    const n = shape.length, Sr = shape[n - 2], Sc = shape[n - 1];
    const lead = vals.length / (Sr * Sc);
    const sw = new Float32Array(vals.length);
    for (let l = 0; l < lead; l++)
      for (let a = 0; a < Sr; a++)
        for (let b = 0; b < Sc; b++) sw[l * Sr * Sc + b * Sr + a] = vals[l * Sr * Sc + a * Sc + b];
    const sshape = shape.slice(0, n - 2).concat([Sc, Sr]);
    return auxTensor(sw, sshape, dtype, 'contig').transpose(n - 2, n - 1);
  }
  if (view === 'expanded') {
    // the full 4-d shape given with a 0 stride on dim 1 (an "expand"ed view)
    const [b, h, q, k] = shape;
    const one = new Float32Array(b * q * k);
    for (let bi = 0; bi < b; bi++) one.set(vals.subarray((bi * h) * q * k, (bi * h + 1) * q * k), bi * q * k);
    const base = auxTensor(one, [b, q, k], dtype, 'contig');
    return Tensor.from(base.data, shape, { dtype, strides: [q * k, 0, k, 1] });
  }
  if (dtype === 'uint8') return Tensor.from(Uint8Array.from(vals), shape);
  return R.tensorFrom(vals, shape, dtype).t;
}

function buildOptions(r, c) {
  const s = c.o || {};
  const o = {};
  for (const key of ['causal', 'window', 'sinks', 'softcap', 'scale']) if (s[key] !== undefined) o[key] = s[key];
  if (s.alibi) {
    // the usual geometric ALiBi slopes, scaled so the penalty matters at these lengths
    o.alibiSlopes = Float32Array.from({ length: c.Hq }, (_, h) => (s.alibi === true ? 1 : s.alibi) * 2 ** (-(8 * (h + 1)) / c.Hq));
  }
  if (s.sinkLogits) o.sinkLogits = r.randn(c.Hq, s.sinkLogits === true ? 1 : s.sinkLogits);
  if (s.bias) {
    const shape = dims(s.bias.shape, c);
    const n = shape.reduce((a, b) => a * b, 1);
    const vals = r.randn(n, s.bias.scale ?? 1);
    // The view kind is built from rounded values; the oracle reads the tensor, so rounding is exact.
    o.bias = auxTensor(vals, shape, s.bias.dtype || 'float32', s.bias.view || 'contig');
  }
  if (s.mask) {
    const shape = dims(s.mask.shape, c);
    const n = shape.reduce((a, b) => a * b, 1);
    const keep = s.mask.keep ?? 0.75;
    const vals = new Float32Array(n);
    for (let i = 0; i < n; i++) vals[i] = r.random() < keep ? 1 + Math.floor(r.random() * 3) : 0; // nonzero != 1 too
    if (s.mask.zeroRows) {
      // whole rows of zeros: those queries see no key at all
      const cols = shape[shape.length - 1], rows = n / cols;
      for (const zr of s.mask.zeroRows) if (zr < rows) vals.fill(0, zr * cols, (zr + 1) * cols);
    }
    o.mask = auxTensor(vals, shape, 'uint8', s.mask.view || 'contig');
  }
  if (c.varlen) {
    const cum = (a) => Int32Array.from([0, ...a.map(((t) => (x) => (t += x))(0))]);
    o.cuSeqlensQ = cum(c.varlen.q);
    o.cuSeqlensK = cum(c.varlen.k);
  }
  return o;
}

function buildInputs(r, c) {
  const Dv = c.Dv ?? c.D;
  if (c.layout === 'qkv') return R.packedQkv(r, c.B, c.Sq, c.Hq, c.Hkv, c.D, c.dtype);
  if (c.layout === 'qkv5') return R.packedQkv5(r, c.B, c.Sq, c.Hq, c.D, c.dtype);
  const layout = c.layout || 'bhsd';
  return {
    q: R.randomTensor(r, [c.B, c.Hq, c.Sq, c.D], c.dtype, { layout }),
    k: R.randomTensor(r, [c.B, c.Hkv, c.Sk, c.D], c.dtype, { layout }),
    v: R.randomTensor(r, [c.B, c.Hkv, c.Sk, Dv], c.dtype, { layout }),
  };
}


// ---------------------------------------------------------------------------------------------
// The case tables
// ---------------------------------------------------------------------------------------------
const DTYPES = ['float32', 'float16', 'bfloat16'];
const cases = [];
const add = (name, c) => { cases.push({ name, B: 2, Hq: 4, Hkv: 2, dtype: 'float32', ...c }); };

// Shapes x dtypes (no options): every D, Sq < Sk, Sq > Sk, multi-tile lengths.
for (const D of [16, 32, 64, 80, 128, 256]) {
  for (const dtype of DTYPES) {
    const big = D === 256;
    add(`plain D=${D} ${dtype}`, { D, dtype, Sq: big ? 33 : 45, Sk: big ? 70 : 131, lse: true });
  }
}
add('plain Sq>Sk', { D: 64, Sq: 130, Sk: 37 });
add('plain Sq=Sk=1', { D: 32, Sq: 1, Sk: 1, lse: true });
add('plain Sq=1 decode', { D: 128, Sq: 1, Sk: 150, lse: true });
add('plain Sk=1', { D: 64, Sq: 9, Sk: 1, lse: true });
add('Dv<D', { D: 64, Dv: 32, Sq: 40, Sk: 77 });
add('Dv>D', { D: 32, Dv: 80, Sq: 40, Sk: 77, dtype: 'float16' });

// GQA ratios 1/2/4/8 (and MQA)
for (const [Hq, Hkv] of [[4, 4], [4, 2], [8, 2], [8, 1], [16, 2]]) {
  add(`GQA Hq=${Hq} Hkv=${Hkv}`, { Hq, Hkv, D: 32, Sq: 29, Sk: 66, o: { causal: true }, lse: true });
}

// causal, bottom-right aligned
for (const dtype of DTYPES) add(`causal Sq<Sk ${dtype}`, { D: 64, Sq: 70, Sk: 140, dtype, o: { causal: true }, lse: true });
add('causal Sq=Sk', { D: 64, Sq: 150, Sk: 150, o: { causal: true }, lse: true });
add('causal Sq>Sk (fully masked rows)', { D: 32, Sq: 140, Sk: 67, o: { causal: true }, lse: true });
add('causal Sq>Sk bf16 (fully masked rows)', { D: 80, Sq: 90, Sk: 20, dtype: 'bfloat16', o: { causal: true }, lse: true });

// sliding windows
const windows = [[-1, 0], [0, 0], [8, -1], [-1, 5], [6, 3], [40, 0], [-1, -1], [0, 70]];
for (const w of windows) add(`window [${w}]`, { D: 32, Sq: 100, Sk: 140, o: { window: w }, lse: true });
add('window [0,0] Sq>Sk (rows past the keys)', { D: 32, Sq: 80, Sk: 50, o: { window: [0, 0] }, lse: true });
add('window [5,5] Sq>Sk', { D: 16, Sq: 120, Sk: 45, o: { window: [5, 5] }, lse: true });
add('window [3,3]+causal', { D: 64, Sq: 100, Sk: 100, o: { window: [3, 3], causal: true }, lse: true });
add('window [20,-1]+causal (sliding)', { D: 64, Sq: 150, Sk: 150, o: { window: [20, -1], causal: true }, lse: true });
add('window [-1,4]+causal (= causal)', { D: 32, Sq: 60, Sk: 90, o: { window: [-1, 4], causal: true } });
add('window [10,0] fp16 bshd', { D: 64, Sq: 70, Sk: 130, dtype: 'float16', layout: 'bshd', o: { window: [10, 0] }, lse: true });

// attention sinks (StreamingLLM): exempt from the window, not from causal
add('sinks=4 window [8,0]', { D: 32, Sq: 100, Sk: 140, o: { sinks: 4, window: [8, 0] }, lse: true });
add('sinks=4 window [8,0]+causal', { D: 32, Sq: 100, Sk: 100, o: { sinks: 4, window: [8, 0], causal: true }, lse: true });
add('sinks=3 window [0,0]+causal Sq>Sk', { D: 32, Sq: 80, Sk: 40, o: { sinks: 3, window: [0, 0], causal: true }, lse: true });
add('sinks=70 window [5,5] (sinks span tiles)', { D: 32, Sq: 60, Sk: 150, o: { sinks: 70, window: [5, 5] }, lse: true });
add('sinks=6 without window (no effect)', { D: 32, Sq: 50, Sk: 90, o: { sinks: 6, causal: true }, lse: true });
add('sinks=500 > Sk window [2,2]', { D: 16, Sq: 30, Sk: 40, o: { sinks: 500, window: [2, 2] } });

// softcap
add('softcap=2', { D: 64, Sq: 60, Sk: 100, o: { softcap: 2 }, lse: true });
add('softcap=8 scale=0.5', { D: 16, Sq: 60, Sk: 100, o: { softcap: 8, scale: 0.5 }, lse: true });
add('softcap=0 (off)', { D: 32, Sq: 30, Sk: 50, o: { softcap: 0 } });
add('softcap bf16', { D: 128, Sq: 40, Sk: 90, dtype: 'bfloat16', o: { softcap: 3, causal: true }, lse: true });

// ALiBi
add('alibi', { Hq: 8, Hkv: 2, D: 32, Sq: 60, Sk: 110, o: { alibi: true }, lse: true });
add('alibi+causal', { Hq: 8, Hkv: 8, D: 32, Sq: 110, Sk: 110, o: { alibi: true, causal: true }, lse: true });
add('alibi Sq>Sk', { Hq: 4, Hkv: 1, D: 32, Sq: 90, Sk: 30, o: { alibi: 0.2 }, lse: true });
add('alibi+softcap fp16', { D: 64, Sq: 50, Sk: 80, dtype: 'float16', o: { alibi: true, softcap: 4 }, lse: true });

// additive bias, broadcast shapes and dtypes
for (const [shape, dtype, view] of [
  ['BHQK', 'float32'], ['QK', 'float32'], ['1H1K', 'float32'], ['B1Q1', 'float32'], ['K', 'float32'],
  ['1111', 'float32'], ['HQK', 'float16'], ['B1QK', 'bfloat16'], ['QK', 'float32', 'transposed'],
  ['BHQK', 'float16', 'expanded'], ['1QK', 'bfloat16'],
]) {
  add(`bias ${shape} ${dtype}${view ? ' ' + view : ''}`, { D: 32, Sq: 50, Sk: 90, o: { bias: { shape, dtype, view } }, lse: true });
}
add('bias large (-30..30) + causal', { D: 32, Sq: 70, Sk: 70, o: { causal: true, bias: { shape: 'BHQK', scale: 10 } }, lse: true });
add('bias fp16 q bf16', { D: 64, Sq: 40, Sk: 70, dtype: 'bfloat16', o: { bias: { shape: 'QK', dtype: 'float16' } } });

// uint8 masks, broadcast shapes, fully masked rows
for (const shape of ['BHQK', 'QK', 'B11K', '1H1K', 'BHQ1', 'K']) {
  add(`mask ${shape}`, { D: 32, Sq: 50, Sk: 90, o: { mask: { shape } }, lse: true });
}
add('mask QK transposed', { D: 32, Sq: 50, Sk: 90, o: { mask: { shape: 'QK', view: 'transposed' } }, lse: true });
add('mask BHQK expanded', { D: 32, Sq: 50, Sk: 90, o: { mask: { shape: 'BHQK', view: 'expanded' } }, lse: true });
add('mask zero rows (fully masked)', { D: 32, Sq: 70, Sk: 90, o: { mask: { shape: 'QK', zeroRows: [0, 5, 63, 64, 69] } }, lse: true });
add('mask sparse (keep 5%)', { D: 32, Sq: 70, Sk: 140, o: { mask: { shape: 'BHQK', keep: 0.05 } }, lse: true });
add('mask+causal', { D: 32, Sq: 70, Sk: 100, o: { causal: true, mask: { shape: 'B1QK' } }, lse: true });
add('mask all zero', { D: 16, Sq: 20, Sk: 30, o: { mask: { shape: 'QK', keep: 0 } }, lse: true });

// learned sink logits
add('sinkLogits', { D: 32, Sq: 50, Sk: 90, o: { sinkLogits: true }, lse: true });
add('sinkLogits large', { D: 32, Sq: 50, Sk: 90, o: { sinkLogits: 4 }, lse: true });
add('sinkLogits + fully masked rows (causal Sq>Sk)', { D: 32, Sq: 80, Sk: 30, o: { sinkLogits: true, causal: true }, lse: true });
add('sinkLogits + mask zero rows', { D: 32, Sq: 30, Sk: 40, o: { sinkLogits: true, mask: { shape: 'QK', zeroRows: [1, 2, 29] } }, lse: true });

// explicit scale
add('scale=0 (uniform)', { D: 32, Sq: 40, Sk: 77, o: { scale: 0 }, lse: true });
add('scale=0 causal', { D: 32, Sq: 40, Sk: 77, o: { scale: 0, causal: true }, lse: true });
add('scale=0.3', { D: 32, Sq: 40, Sk: 77, o: { scale: 0.3 }, lse: true });
add('scale=1 D=16', { D: 16, Sq: 40, Sk: 77, o: { scale: 1 }, lse: true });

// out: strides, dtype other than q's, contiguous, library-allocated
for (const [dtype, outDtype] of [['float32', 'bfloat16'], ['float32', 'float16'], ['float16', 'float32'], ['bfloat16', 'float32'], ['float16', 'bfloat16'], ['bfloat16', 'float16']]) {
  add(`out ${outDtype} from q ${dtype}`, { D: 64, Sq: 40, Sk: 80, dtype, outDtype, o: { causal: true } });
}
for (const dtype of DTYPES) add(`out contiguous ${dtype}`, { D: 32, Sq: 40, Sk: 80, dtype, out: 'contig', lse: true });
for (const dtype of DTYPES) add(`out allocated ${dtype}`, { D: 32, Sq: 40, Sk: 80, dtype, out: 'none', lse: true });

// input layouts: BSHD transposed views, padded strides, QKV projection slices
for (const dtype of DTYPES) {
  add(`layout bshd ${dtype}`, { Hq: 8, Hkv: 2, D: 64, Sq: 70, Sk: 100, dtype, layout: 'bshd', o: { causal: true }, lse: true });
  add(`layout padded ${dtype}`, { D: 80, Sq: 66, Sk: 90, dtype, layout: 'padded', o: { window: [12, 0] }, lse: true });
  add(`layout qkv GQA ${dtype}`, { Hq: 8, Hkv: 2, D: 64, Sq: 90, Sk: 90, dtype, layout: 'qkv', o: { causal: true }, lse: true });
  add(`layout qkv5 [B,S,3,H,D] ${dtype}`, { Hq: 4, Hkv: 4, D: 32, Sq: 80, Sk: 80, dtype, layout: 'qkv5', o: { causal: true } });
}

// varlen (B = 1): empty segments, length-1 segments, Sq != Sk per segment
const VL = { q: [5, 0, 1, 17, 9, 0, 70, 3], k: [7, 3, 0, 17, 4, 0, 66, 1] };
const vl = (name, c) => add(name, {
  B: 1, Sq: c.varlen.q.reduce((a, b) => a + b, 0), Sk: c.varlen.k.reduce((a, b) => a + b, 0), ...c,
});
vl('varlen', { D: 32, varlen: VL, lse: true });
vl('varlen causal', { D: 32, varlen: VL, o: { causal: true }, lse: true });
vl('varlen causal+window [4,0]', { D: 32, varlen: VL, o: { causal: true, window: [4, 0] }, lse: true });
vl('varlen window [2,3]+sinks=2', { D: 32, varlen: VL, o: { window: [2, 3], sinks: 2 }, lse: true });
vl('varlen alibi+causal', { D: 32, varlen: VL, o: { alibi: true, causal: true }, lse: true });
vl('varlen bias QK (packed indices)', { D: 32, varlen: VL, o: { bias: { shape: 'QK' } }, lse: true });
vl('varlen bias 1H1K', { D: 32, varlen: VL, o: { bias: { shape: '1H1K', dtype: 'float16' } }, lse: true });
vl('varlen mask QK (packed indices)', { D: 32, varlen: VL, o: { mask: { shape: 'QK', keep: 0.6 } }, lse: true });
vl('varlen sinkLogits+causal', { D: 32, varlen: VL, o: { sinkLogits: true, causal: true }, lse: true });
vl('varlen GQA fp16 bshd', { Hq: 8, Hkv: 2, D: 64, dtype: 'float16', layout: 'bshd', varlen: { q: [40, 1, 0, 60], k: [100, 1, 5, 30] }, o: { causal: true }, lse: true });
vl('varlen bf16 softcap window', { D: 128, dtype: 'bfloat16', varlen: { q: [33, 65, 2], k: [65, 33, 2] }, o: { softcap: 5, window: [16, 16] }, lse: true });
vl('varlen one segment (= dense)', { D: 32, varlen: { q: [64], k: [100] }, o: { causal: true }, lse: true });
vl('varlen all segments empty q', { D: 16, varlen: { q: [0, 0], k: [5, 6] } });
vl('varlen all k empty (fully masked)', { D: 16, varlen: { q: [3, 4], k: [0, 0] }, lse: true });

// everything at once
const ALL = {
  causal: true, window: [24, 0], sinks: 3, softcap: 6, alibi: 0.5, sinkLogits: true,
  bias: { shape: 'B1QK', dtype: 'float16' }, mask: { shape: 'BHQK', keep: 0.85, zeroRows: [2] },
};
for (const dtype of DTYPES) {
  add(`all options ${dtype}`, { Hq: 8, Hkv: 2, D: 64, Sq: 100, Sk: 140, dtype, layout: 'bshd', o: ALL, lse: true });
}
vl('all options varlen', { Hq: 4, Hkv: 1, D: 32, varlen: VL, o: { ...ALL, bias: { shape: 'QK' }, mask: { shape: '1HQK', keep: 0.85 } }, lse: true });
add('all options D=256 bf16', { B: 1, Hq: 4, Hkv: 1, D: 256, Sq: 40, Sk: 90, dtype: 'bfloat16', o: ALL, lse: true });
add('causal+softcap D=256 fp32', { B: 1, Hq: 2, Hkv: 1, D: 256, Sq: 70, Sk: 130, o: { causal: true, softcap: 5 }, lse: true });
add('window D=256 fp16', { B: 1, Hq: 2, Hkv: 2, D: 256, Sq: 100, Sk: 100, dtype: 'float16', o: { window: [30, 0], sinks: 2 }, lse: true });

// degenerate sizes
add('Sk=0 (every row sees nothing)', { D: 16, Sq: 5, Sk: 0, lse: true });
add('Sq=0', { D: 16, Sq: 0, Sk: 7, lse: true });

// random shapes and option mixes (drawn from the seed: names carry the shapes)
{
  const r = R.rng('random-cases');
  for (let n = 0; n < 24; n++) {
    const ratio = r.pick([1, 2, 4, 8]);
    const Hkv = r.int(1, 2);
    const D = r.pick([16, 32, 64, 80, 128, n % 8 === 0 ? 256 : 64]);
    const smax = D >= 128 ? 80 : 150;
    const c = {
      B: r.int(1, 3), Hq: Hkv * ratio, Hkv, D, Sq: r.int(1, smax), Sk: r.int(1, smax),
      dtype: r.pick(DTYPES), layout: r.pick(['bhsd', 'bshd', 'padded']), lse: r.random() < 0.6, o: {},
    };
    c.outDtype = r.random() < 0.3 ? r.pick(DTYPES) : c.dtype;
    if (r.random() < 0.5) c.o.causal = true;
    if (r.random() < 0.4) c.o.window = [r.pick([-1, 0, r.int(1, 40)]), r.pick([-1, 0, r.int(1, 40)])];
    if (c.o.window && r.random() < 0.5) c.o.sinks = r.int(1, 8);
    if (r.random() < 0.3) c.o.softcap = r.uniform(1, 10);
    if (r.random() < 0.3) c.o.alibi = r.uniform(0.05, 1);
    if (r.random() < 0.3) c.o.bias = { shape: r.pick(['BHQK', 'QK', '1H1K', 'B1Q1', 'K']), dtype: r.pick(DTYPES) };
    if (r.random() < 0.3) c.o.mask = { shape: r.pick(['BHQK', 'QK', 'B11K', 'BHQ1']), keep: r.uniform(0.3, 0.95) };
    if (r.random() < 0.3) c.o.sinkLogits = true;
    if (r.random() < 0.2) c.o.scale = r.uniform(0, 0.4);
    const opts = Object.entries(c.o).map(([k, v]) => (v === true ? k : `${k}=${JSON.stringify(v)}`)).join(' ');
    add(`random #${n} B=${c.B} Hq=${c.Hq} Hkv=${Hkv} Sq=${c.Sq} Sk=${c.Sk} D=${D} ${c.dtype}->${c.outDtype} ${c.layout} ${opts}`, c);
  }
}

const byName = new Map(cases.map((c) => [c.name, c]));
if (byName.size !== cases.length) throw new Error('duplicate case names');

/**
 * Everything one run of case `c` needs, drawn from its own seeded stream: inputs, options, the
 * float64 oracle's answer, and the out shape / dtype / tolerance. Shared by the jest parity suite
 * and the GPU runner so both check the very same thing.
 */
function prepareCase(c, attentionReference) {
  const r = R.rng(c.name);
  const { q, k, v } = buildInputs(r, c);
  const opts = buildOptions(r, c);
  const ref = attentionReference(q.t, k.t, v.t, opts);
  const outShape = [c.B, c.Hq, c.Sq, c.Dv ?? c.D];
  const outMode = c.out || 'strided';
  const outDtype = outMode === 'none' ? c.dtype : (c.outDtype || c.dtype);
  return { q, k, v, opts, ref, outShape, outMode, outDtype, tol: tolFor(c.dtype, outDtype) };
}

module.exports = { cases, byName, buildInputs, buildOptions, prepareCase, dims, auxTensor, DTYPES };
