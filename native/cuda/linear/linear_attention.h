// Linear attention on the device: the contract of native/core/linear_params.h (and of the CPU
// kernel, native/cpu/linear/linear_attention_kernel.h), chunkwise, one pass over the sequence.
//
// Per (b, h), phi the feature map and a_t the per-step decay:
//   S_t = a_t S_{t-1} + phi(k_t)^T v_t,  z_t = a_t z_{t-1} + phi(k_t)   (z only with normalize)
//   causal: out_t = scale phi(q_t) S_t (/ (scale phi(q_t) . z_t + 1e-10)); non-causal: S_end.
//
// Two kernels share this problem:
// - linear_attention_tc.cu: float16 / bfloat16, causal, Dk in {64, 128}, Dv a multiple of 64,
//   identity / relu / elu1, no decay, a decay, or log gates per step or per key dimension: one
//   CTA per (b, h, 64 value columns) carries the state across the chunks, products on mma.sync.
// - linear_attention_generic.cu: everything (float32, any Dk / Dv, non-causal, 'efficient'), in
//   float32 on the CUDA cores, with the gate cumsums in double as on the CPU.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace attnkit {
namespace cuda {

// A strided 4-d (or 3-d: stride[3] unused) view: elements, dtype ElementType.
struct LinearTensor {
  const void* data = nullptr;
  int dtype = 0;
  int64_t stride[4] = {0, 0, 0, 0};
};

// Same codes as native/core/linear_params.h (FeatureMap, GateKind).
enum LinearFeatureMap : int { kMapIdentity = 0, kMapElu1 = 1, kMapRelu = 2, kMapEfficient = 3 };
enum LinearGateKind : int { kGateNone = 0, kGateDecay = 1, kGateScalar = 2, kGatePerDim = 3 };

// Log gates below this are clamped to it, as on the CPU (linear_attention.h: kLogGateFloor):
// exp(-1000) is 0 either way, and -Infinity becomes a number whose differences stay finite.
constexpr double kLinearLogGateFloor = -1000.0;
constexpr float kLinearEps = 1e-10f;  // kLinearNormalizeEps

// phi of one value for identity / relu / elu1 (elu(x) + 1 = max(x, 0) + exp(min(x, 0))).
__device__ __forceinline__ float linear_feature(int map, float x) {
  if (map == kMapRelu) return fmaxf(x, 0.0f);
  if (map == kMapElu1) return fmaxf(x, 0.0f) + expf(fminf(x, 0.0f));
  return x;
}

struct LinearProblem {
  LinearTensor q, k, v, out;  // [B, H, S, Dk | Dv]
  int64_t batch = 0, heads = 0, seq = 0, dk = 0, dv = 0;
  int causal = 1, feature_map = kMapIdentity, normalize = 0, gate_kind = kGateNone;
  float scale = 1.0f;
  double log_decay = 0.0;              // kGateDecay, every head (log_decay_per_head null)
  const double* log_decay_per_head = nullptr;  // device [H] log lambda, or null
  LinearTensor gates;                  // kGateScalar [B, H, S] / kGatePerDim [B, H, S, Dk]
  // float32 [B, H, Dk, Dv] / [B, H, Dk]; null: absent. A step passes one state as both.
  const float* state_in = nullptr;
  int64_t state_in_stride[4] = {0, 0, 0, 0};
  float* state_out = nullptr;
  int64_t state_out_stride[4] = {0, 0, 0, 0};
  const float* norm_in = nullptr;  // never aliases norm_out (the library copies it first)
  int64_t norm_in_stride[3] = {0, 0, 0};
  float* norm_out = nullptr;
  int64_t norm_out_stride[3] = {0, 0, 0};
  // Device int set to 1 when a log gate is > 0 or NaN (refused on the CPU by validation, which
  // cannot read device memory); null: not reported. Such a gate counts as 0 (no decay).
  int* bad_gates = nullptr;
  // Scratch of linear_attention_scratch_bytes (device memory the library allocates per call).
  float* gla_diag = nullptr;
};

// Whether the tensor-core kernel takes p on a device of compute capability cc_major.
bool linear_attention_tc_supports(const LinearProblem& p, int cc_major);
// The scratch it needs (GLA's diagonal blocks), bytes; 0: none.
size_t linear_attention_tc_scratch_bytes(const LinearProblem& p);
cudaError_t launch_linear_attention_tc(const LinearProblem& p, int multiprocessors, cudaStream_t stream);

// Every problem. max_shared: the device's opt-in shared memory per block; cudaErrorInvalidValue
// when even its smallest chunk does not fit (a Dk in the thousands).
cudaError_t launch_linear_attention_generic(const LinearProblem& p, size_t max_shared, cudaStream_t stream);

// dst (contiguous [B, H, Dk]) = p.norm_in: a step's normalizer is read by every value-column block
// while the first one writes it back, so an in-place update reads this copy.
cudaError_t launch_linear_copy_normalizer(const LinearProblem& p, float* dst, cudaStream_t stream);

// The scratch launch_linear_attention needs for p (p.gla_diag), bytes; 0: none.
size_t linear_attention_scratch_bytes(const LinearProblem& p, int cc_major);

// The tensor-core kernel when it takes the problem, the generic one otherwise. *kernel names it.
cudaError_t launch_linear_attention(const LinearProblem& p, int cc_major, int multiprocessors, size_t max_shared,
                                    cudaStream_t stream, const char** kernel);

}  // namespace cuda
}  // namespace attnkit
