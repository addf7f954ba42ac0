// Everything a linear-attention kernel needs, already validated (validate_linear). Backend-neutral
// like AttentionParams; only the CPU reads it today.
//
// Per (b, h), with phi the feature map and a_t the per-step decay (1 without decay or gates):
//   S_t = a_t S_{t-1} + phi(k_t)^T v_t        (a_t a scalar, or diag(a_t) over Dk for GLA gates)
//   z_t = a_t z_{t-1} + phi(k_t)              (only with normalize)
//   causal:     out_t = scale phi(q_t) S_t     (/ (scale phi(q_t) . z_t + eps) with normalize)
//   non-causal: out_t = scale phi(q_t) S_end  (every query reads the state after the whole sequence)
// S_0 is the initial state (zeros when absent), z_0 the initial normalizer.
#pragma once
#include <atomic>
#include <cstdint>

#include "tensor_view.h"

namespace attnkit {

// Codes shared with lib/ops/linear.ts (FEATURE_MAP).
enum class FeatureMap : int { Identity = 0, Elu1 = 1, Relu = 2, Efficient = 3 };

// How a_t is given: none, lambda per head (decay), or log gates per step ([B, H, S]) or per step
// and key dimension ([B, H, S, Dk], GLA).
enum class GateKind : int { None = 0, Decay = 1, Scalar = 2, PerDim = 3 };

// Added to the normalizer's denominator, as flash-linear-attention's normalize_output does (1e-10).
constexpr float kLinearNormalizeEps = 1e-10f;

struct LinearParams {
  // q, k [B, H, S, Dk]; v [B, H, S, Dv]; out [B, H, S, Dv] (strides in elements).
  TensorView q, k, v, out;
  int64_t batch = 0, heads = 0, seq = 0, dk = 0, dv = 0;

  bool causal = true;
  FeatureMap feature_map = FeatureMap::Identity;
  float scale = 1.0f;     // multiplies phi(q)
  bool normalize = false;
  int64_t chunk = 64;     // rows per chunk: quadratic inside, state recurrence across

  GateKind gate_kind = GateKind::None;
  double decay = 1.0;                 // GateKind::Decay, one lambda for every head (decay_per_head null)
  const float* decay_per_head = nullptr;  // GateKind::Decay: [H] lambdas in (0, 1]
  TensorView gates;                   // GateKind::Scalar [B, H, S] / PerDim [B, H, S, Dk]: log gates, finite, <= 0

  // float32 [B, H, Dk, Dv] and [B, H, Dk]. A step passes its state as both initial_state and
  // state_out (updated in place).
  bool has_initial_state = false, has_initial_normalizer = false;
  TensorView initial_state, initial_normalizer;
  bool has_state_out = false, has_normalizer_out = false;
  TensorView state_out, normalizer_out;

  const std::atomic<int32_t>* abort_flag = nullptr;  // nonzero: stop at the next chunk
};

}  // namespace attnkit
