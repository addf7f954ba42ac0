// Placeholder until the sm90 kernel lands: supports nothing, so the dispatcher falls through.
#include "fused_attention.h"

namespace attnkit {
namespace cuda {

bool fused_attention_sm90_supports(const FusedAttentionProblem&, const DeviceTraits&) { return false; }
cudaError_t launch_fused_attention_sm90(const FusedAttentionProblem&, const DeviceTraits&, cudaStream_t) {
  return cudaErrorNotSupported;
}

}  // namespace cuda
}  // namespace attnkit
