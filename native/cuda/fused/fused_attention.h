// Host-side entry points of the CUDA fused-attention kernels. c_api.cu builds the problem, then
// picks the fastest kernel that supports it: sm_90a wgmma, else sm_80 mma.sync, else the generic
// kernel (float32, odd head dims, anything else), which supports every valid problem.
#pragma once
#include <cuda_runtime.h>

#include "attention_problem.cuh"

namespace attnkit {
namespace cuda {

// What the dispatcher knows of the device it launches on.
struct DeviceTraits {
  int cc_major = 0, cc_minor = 0;
  int multiprocessors = 0;
  size_t max_shared_per_block_optin = 0;
};

// Every valid problem, any dtype, head dim and strides. Correct first; float32 goes here.
cudaError_t launch_fused_attention_generic(const FusedAttentionProblem& p, const DeviceTraits& dev, cudaStream_t stream);

// float16 / bfloat16, head dims 32/64/96/128/256 (Dv == D), unit stride on d, 16-byte aligned rows.
bool fused_attention_sm80_supports(const FusedAttentionProblem& p, const DeviceTraits& dev);
cudaError_t launch_fused_attention_sm80(const FusedAttentionProblem& p, const DeviceTraits& dev, cudaStream_t stream);

// Hopper (sm_90a): wgmma, TMA, warp specialisation.
bool fused_attention_sm90_supports(const FusedAttentionProblem& p, const DeviceTraits& dev);
cudaError_t launch_fused_attention_sm90(const FusedAttentionProblem& p, const DeviceTraits& dev, cudaStream_t stream);

}  // namespace cuda
}  // namespace attnkit
