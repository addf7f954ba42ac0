// The layout of the Float64Array that lib/native/descriptor.ts fills for each call: one fixed-size record
// per tensor, then the scalar options. Keep in step
// with that file. A tensor's memory travels as its own argument: a TypedArray, or for a device
// tensor its storage handle (the record is checked against the handle's bytes the same way).
#pragma once

namespace attnkit {
namespace desc {

constexpr int kTensorRecord = 15;  // dtype, rank, shape[6], strides[6], offset
constexpr int kDType = 0, kRank = 1, kShape = 2, kStrides = 8, kOffset = 14;

// attention(): tensor records in this order, then the options
enum AttentionSlot { kQ = 0, kK, kV, kOut, kBias, kMask, kBlockMask, kElementIndex, kElementBits, kAttentionSlots };
constexpr int kOptions = kAttentionSlots * kTensorRecord;
enum AttentionOption {
  kScale = 0, kHasScale, kCausal, kWindowLeft, kWindowRight, kHasWindow, kSinks, kSoftcap, kHasBias, kHasMask,
  kHasBlockMask, kBlockQ, kBlockK, kHasElementMask, kOptionCount
};
constexpr int kAttentionLength = kOptions + kOptionCount;

// linearAttention() and linearAttentionStep(): tensor records in this order, then the options.
// A step sends its state (and normalizer) as both the initial and the output record.
enum LinearSlot {
  kLinQ = 0, kLinK, kLinV, kLinOut, kLinGates, kLinInitialState, kLinInitialNormalizer, kLinStateOut, kLinNormalizerOut,
  kLinearSlots
};
constexpr int kLinearOptions = kLinearSlots * kTensorRecord;
enum LinearOption {
  kLinStep = 0, kLinCausal, kLinFeatureMap, kLinScale, kLinNormalize, kLinChunk, kLinDecayKind, kLinDecay, kLinHasGates,
  kLinHasInitialState, kLinHasInitialNormalizer, kLinHasStateOut, kLinHasNormalizerOut, kLinearOptionCount
};
constexpr int kLinearLength = kLinearOptions + kLinearOptionCount;

// decodeAttention() over a paged KV cache: tensor records in this order, then the options.
enum DecodeSlot { kDecQ = 0, kDecOut, kDecKPool, kDecVPool, kDecodeSlots };
constexpr int kDecodeOptions = kDecodeSlots * kTensorRecord;
enum DecodeOption {
  kDecScale = 0, kDecHasScale, kDecWindowLeft, kDecWindowRight, kDecHasWindow, kDecSinks, kDecSoftcap, kDecSplits,
  kDecodeOptionCount
};
constexpr int kDecodeLength = kDecodeOptions + kDecodeOptionCount;

// Rows between k, v and a device cache's pools (kvAppendSync, kvGatherSync): tensor records only.
enum KvAppendSlot { kAppK = 0, kAppV, kAppKPool, kAppVPool, kKvAppendSlots };
constexpr int kKvAppendLength = kKvAppendSlots * kTensorRecord;

}  // namespace desc
}  // namespace attnkit
