import { AttnError } from '../errors';
import { DTYPE_CODE } from '../dtype';
import type { Tensor } from '../tensor';

// Layout of the Float64Array each native call reads: one record per tensor, then options.
// Mirrors native/napi/descriptor.h; keep the two in step.
export const TENSOR_RECORD = 15; // dtype, rank, shape[6], strides[6], offset
const MAX_RANK = 6;

export const enum AttentionSlot { Q = 0, K, V, Out, Bias, Mask, BlockMask, ElementIndex, ElementBits, Count }
export const enum AttentionOption {
  Scale = 0, HasScale, Causal, WindowLeft, WindowRight, HasWindow, Sinks, Softcap, HasBias, HasMask,
  HasBlockMask, BlockQ, BlockK, HasElementMask, Count,
}
export const ATTENTION_OPTIONS = AttentionSlot.Count * TENSOR_RECORD;
export const ATTENTION_DESCRIPTOR_LENGTH = ATTENTION_OPTIONS + AttentionOption.Count;

// linearAttention / linearAttentionStep (native/napi/descriptor.h LinearSlot, LinearOption).
export const enum LinearSlot { Q = 0, K, V, Out, Gates, InitialState, InitialNormalizer, StateOut, NormalizerOut, Count }
export const enum LinearOption {
  Step = 0, Causal, FeatureMap, Scale, Normalize, Chunk, DecayKind, Decay, HasGates,
  HasInitialState, HasInitialNormalizer, HasStateOut, HasNormalizerOut, Count,
}
export const LINEAR_OPTIONS = LinearSlot.Count * TENSOR_RECORD;
export const LINEAR_DESCRIPTOR_LENGTH = LINEAR_OPTIONS + LinearOption.Count;

// decodeAttention over a paged KV cache (native/napi/descriptor.h DecodeSlot, DecodeOption).
export const enum DecodeSlot { Q = 0, Out, KPool, VPool, Count }
export const enum DecodeOption { Scale = 0, HasScale, WindowLeft, WindowRight, HasWindow, Sinks, Softcap, Splits, Count }
export const DECODE_OPTIONS = DecodeSlot.Count * TENSOR_RECORD;
export const DECODE_DESCRIPTOR_LENGTH = DECODE_OPTIONS + DecodeOption.Count;

// KVCache.append on a device cache (native/napi/descriptor.h KvAppendSlot): tensor records only.
export const enum KvAppendSlot { K = 0, V, KPool, VPool, Count }
export const KV_APPEND_DESCRIPTOR_LENGTH = KvAppendSlot.Count * TENSOR_RECORD;

export function writeTensorRecord(desc: Float64Array, slot: number, t: Tensor, name: string): void {
  const r = t.shape.length;
  if (r > MAX_RANK) throw new AttnError('ERR_ATTN_SHAPE', `${name} has rank ${r}; attnkit tensors have rank <= ${MAX_RANK}`);
  const base = slot * TENSOR_RECORD;
  desc[base] = DTYPE_CODE[t.dtype];
  desc[base + 1] = r;
  for (let i = 0; i < r; i++) {
    desc[base + 2 + i] = t.shape[i];
    desc[base + 8 + i] = t.strides[i];
  }
  desc[base + 14] = t.offset;
}
