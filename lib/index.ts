export { AttnError, AttnErrorCode } from './errors';
export { DType, FloatDType, TypedArray, toFloat16, toBFloat16, fromFloat16, fromBFloat16 } from './dtype';
export { Tensor, TensorFromOptions, TensorCreateOptions } from './tensor';
export { attention, attentionSync, AttentionOptions, AttentionWithLse } from './ops/attention';
export { blockSparseAttention, blockSparseAttentionSync, BlockMaskLike } from './ops/block-sparse';
export {
  neighborhoodAttention, neighborhoodAttentionSync, clearNeighborhoodCache, NeighborhoodAttentionOptions,
} from './ops/neighborhood';
export {
  BlockMask, BlockState, BlockRule, BlockMaskShape, BlockMaskDenseOptions, SlidingWindowOptions, DilatedOptions,
  PerHeadShardsOptions, DocumentsOptions, BlockElements,
} from './sparse/block-mask';
export { NeighborhoodOptions } from './sparse/neighborhood';
export { topkBlockAttention, topkBlockAttentionSync, TopkBlockAttentionOptions, TopkBlockResult } from './ops/topk';
export { TopkBlockOptions } from './sparse/topk';
export { mergeAttentionStates, AttentionState } from './ops/merge';
export {
  linearAttention, linearAttentionSync, linearAttentionStep, linearAttentionStepSync, FeatureMap, LinearCommonOptions,
  LinearAttentionOptions, LinearAttentionStepOptions, LinearAttentionResult,
} from './ops/linear';
export {
  KVCache, KVCacheOptions, AppendOptions, EvictionPolicy, StreamingPolicy, H2OPolicy, decodeAttention, decodeAttentionSync,
  DecodeAttentionOptions,
} from './ops/decode';
export { agentAttention, agentAttentionSync, AgentAttentionOptions } from './ops/agent';
export { backendInfo, setNumThreads, BackendInfo } from './info';
export { CudaInfo, CudaDeviceInfo } from './native/binding';
