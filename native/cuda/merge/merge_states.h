// mergeAttentionStates on the device: the exact combination of attention results over disjoint
// key sets from their (out, lse) pairs, with the semantics of native/cpu/merge/merge_states.cpp:
//   lse = log(sum_p exp(lse_p)),  out = sum_p exp(lse_p - lse) * out_p,
// and a row whose every lse_p is -inf gets out = 0, lse = -inf.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace attnkit {
namespace cuda {

// One partial result: out_p [B, H, S, Dv] any strides (elements, (b, h, s, d)) and dtype
// (ElementType), lse_p contiguous [B, H, S] float32.
struct MergePart {
  const void* out;
  int dtype;
  int64_t stride[4];
  const float* lse;
};

struct MergeProblem {
  const MergePart* parts;  // device array of num_parts entries, or nullptr: the stacked parts below
  int num_parts;
  // Parts stacked in one float32 buffer (split-KV decode): part p's out is contiguous
  // [B, H, S, Dv] at stacked_out + p * stacked_out_stride and its lse at stacked_lse +
  // p * stacked_lse_stride. Used when parts == nullptr: no per-call table of parts to upload.
  const float* stacked_out = nullptr;
  const float* stacked_lse = nullptr;
  int64_t stacked_out_stride = 0, stacked_lse_stride = 0;
  void* out;  // [B, H, S, Dv], any strides and dtype
  int out_dtype;
  int64_t out_stride[4];
  float* lse;  // contiguous [B, H, S]
  int64_t batch, heads, seq, head_dim_v;
};

cudaError_t launch_merge_attention_states(const MergeProblem& p, int multiprocessors, cudaStream_t stream);

// Attributes of the merge kernel on the current device: fails with cudaErrorNoKernelImageForDevice
// (or cudaErrorInvalidDeviceFunction) when this library holds no code the device can run. The
// library is built for one set of architectures, so one kernel answers for all of them.
cudaError_t merge_kernel_attributes(cudaFuncAttributes* attributes);

}  // namespace cuda
}  // namespace attnkit
