// attnkit/reference: plain-TS oracles (float64) for every op, and the pure-JS baselines of the
// native-vs-JS benchmark.
export { attentionReference, ReferenceResult, PairState } from './attention';
export { blockSparseAttentionReference } from './sparse';
export { neighborhoodAttentionReference } from './neighborhood';
export { topkBlockAttentionReference } from './topk';
export { decodeAttentionReference, decodeScoresReference, DecodeReferenceSequence } from './decode';
export { mergeReference, ReferenceState } from './merge';
export {
  linearAttentionReference, linearAttentionQuadraticReference, agentAttentionReference, LinearReferenceResult,
} from './linear';
export { attentionNaiveJs, attentionTunedJs, FastJsShape } from './fast-js';
