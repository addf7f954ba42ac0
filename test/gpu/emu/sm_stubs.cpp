// The sm_80 / sm_90a kernels need real GPUs: the emulator routes everything to the generic kernels.
#include "decode/decode_attention.h"
#include "fused/fused_attention.h"

namespace attnkit {
namespace cuda {
bool fused_attention_sm80_supports(const FusedAttentionProblem&, const DeviceTraits&) { return false; }
cudaError_t launch_fused_attention_sm80(const FusedAttentionProblem&, const DeviceTraits&, cudaStream_t) { return cudaErrorNotSupported; }
bool fused_attention_sm90_supports(const FusedAttentionProblem&, const DeviceTraits&) { return false; }
cudaError_t launch_fused_attention_sm90(const FusedAttentionProblem&, const DeviceTraits&, cudaStream_t) { return cudaErrorNotSupported; }
bool decode_mma_supports(const DecodeProblem&, const DeviceTraits&) { return false; }
cudaError_t launch_decode_mma(const DecodeProblem&, const DecodeLaunch&, unsigned, cudaStream_t) { return cudaErrorNotSupported; }
}  // namespace cuda
}  // namespace attnkit
