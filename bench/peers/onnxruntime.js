'use strict';
// Benchmark peer: scaled-dot-product attention on onnxruntime-node's CPU EP via the
// contrib op com.microsoft.MultiHeadAttention, on a one-node model built in memory.
//
// Layout: query [B, Sq, H*D], key/value [B, Sk, H*D] ("BSD", heads interleaved in the
// last axis), output [B, Sq, H*D]. No projection bias; scale is MHA's default 1/sqrt(D).
//
// Causal masking, and what it costs:
//  - Sq == Sk: attribute unidirectional=1 (MHA has it; no separate causal attribute).
//  - Sq != Sk: ORT 1.30's CPU kernel aligns unidirectional top-left (query i sees keys
//    j <= i) and leaves the last query row unmasked (measured), which is right only
//    for square shapes. So a constant attention_bias [1, 1, Sq, Sk] initializer
//    carries the bottom-right mask instead (j > i + Sk - Sq gets -1e30: finite rather
//    than -inf so that a fully masked row cannot make NaNs).
//  Either way ORT leaves its MLAS flash-attention path, which it only takes with no
//  mask and no bias, for the unfused kernel: it materializes B*H*Sq*Sk float scores,
//  computes the masked half of Q*K^T too, and softmaxes whole rows. So causal runs at
//  least as slowly as non-causal on the same shape while doing half the useful work.
//  With Sq > Sk, rows i < Sq - Sk see no key at all; ORT then averages V uniformly
//  where mhaReference returns zeros, so those shapes will not verify.

const ort = require('onnxruntime-node');
const { encodeModel } = require('./onnx-model');

// Finite "minus infinity": far below any real score, yet adding a score cannot overflow.
const MASKED = -1e30;

function bottomRightCausalBias(seqQ, seqK) {
  const bias = new Float32Array(seqQ * seqK);
  for (let i = 0; i < seqQ; i++) {
    bias.fill(MASKED, i * seqK + Math.max(0, i + seqK - seqQ + 1), (i + 1) * seqK);
  }
  return bias;
}

function buildMhaModel({ batch, heads, seqQ, seqK, headDim, causal }) {
  const hidden = heads * headDim;
  const useBias = causal && seqQ !== seqK;
  const attributes = { num_heads: heads };
  if (causal && !useBias) attributes.unidirectional = 1;
  return encodeModel({
    // Inputs 3 and 4 (bias, key_padding_mask) are omitted; 5 is attention_bias.
    nodes: [{
      opType: 'MultiHeadAttention',
      domain: 'com.microsoft',
      inputs: useBias ? ['query', 'key', 'value', '', '', 'causal_bias'] : ['query', 'key', 'value'],
      outputs: ['output'],
      attributes,
    }],
    inputs: [
      { name: 'query', dims: [batch, seqQ, hidden] },
      { name: 'key', dims: [batch, seqK, hidden] },
      { name: 'value', dims: [batch, seqK, hidden] },
    ],
    outputs: [{ name: 'output', dims: [batch, seqQ, hidden] }],
    initializers: useBias
      ? [{ name: 'causal_bias', dims: [1, 1, seqQ, seqK], data: bottomRightCausalBias(seqQ, seqK) }]
      : [],
    opsets: { '': 17, 'com.microsoft': 1 },
  });
}

/**
 * @param {{batch:number, heads:number, seqQ:number, seqK:number, headDim:number,
 *          causal?:boolean, threads?:number}} shape threads: ORT intra-op threads
 *          (the calling thread included); omitted means ORT's default.
 * @returns {Promise<{run(q:Float32Array,k:Float32Array,v:Float32Array,out?:Float32Array):Promise<Float32Array>,
 *                    dispose():Promise<void>}>}
 */
async function createOrtAttention({ batch, heads, seqQ, seqK, headDim, causal = false, threads }) {
  const shape = { batch, heads, seqQ, seqK, headDim, causal };
  const options = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    interOpNumThreads: 1,
  };
  if (threads) options.intraOpNumThreads = threads;
  const session = await ort.InferenceSession.create(buildMhaModel(shape), options);

  const hidden = heads * headDim;
  const qDims = [batch, seqQ, hidden];
  const kvDims = [batch, seqK, hidden];
  const tensor = (name, data, dims) => {
    const want = dims[0] * dims[1] * dims[2];
    if (!(data instanceof Float32Array) || data.length !== want) {
      throw new TypeError(`${name}: expected Float32Array of ${want} elements [${dims}]`);
    }
    return new ort.Tensor('float32', data, dims); // wraps, does not copy
  };

  return {
    // out (optional): a preallocated Float32Array [B, Sq, H*D] that ORT writes into (a pre-bound
    // output, no allocation per run), as attnkit's `out` option does.
    async run(q, k, v, out) {
      const feeds = { query: tensor('query', q, qDims), key: tensor('key', k, kvDims), value: tensor('value', v, kvDims) };
      if (out) {
        await session.run(feeds, { output: tensor('output', out, qDims) });
        return out;
      }
      const { output } = await session.run(feeds);
      return output.data;
    },
    async dispose() {
      await session.release();
    },
  };
}

/**
 * Plain float64 attention in the same BSD layout, to check the peer's numbers.
 * Scale 1/sqrt(D); causal is bottom-right aligned (query i sees key j iff
 * j <= i + Sk - Sq). A query that sees no key yields zeros.
 * @returns {Float64Array} [B, Sq, H*D]
 */
function mhaReference(q, k, v, { batch, heads, seqQ, seqK, headDim, causal = false }) {
  const hidden = heads * headDim;
  const scale = 1 / Math.sqrt(headDim);
  const out = new Float64Array(batch * seqQ * hidden);
  const p = new Float64Array(seqK);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < seqQ; i++) {
        const last = causal ? Math.min(seqK - 1, i + seqK - seqQ) : seqK - 1;
        if (last < 0) continue;
        const qOff = (b * seqQ + i) * hidden + h * headDim;
        let max = -Infinity;
        for (let j = 0; j <= last; j++) {
          const kOff = (b * seqK + j) * hidden + h * headDim;
          let s = 0;
          for (let d = 0; d < headDim; d++) s += q[qOff + d] * k[kOff + d];
          p[j] = s * scale;
          if (p[j] > max) max = p[j];
        }
        let sum = 0;
        for (let j = 0; j <= last; j++) sum += (p[j] = Math.exp(p[j] - max));
        for (let j = 0; j <= last; j++) {
          const w = p[j] / sum;
          const vOff = (b * seqK + j) * hidden + h * headDim;
          for (let d = 0; d < headDim; d++) out[qOff + d] += w * v[vOff + d];
        }
      }
    }
  }
  return out;
}

module.exports = { createOrtAttention, mhaReference };
