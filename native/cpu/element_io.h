// Reading and writing one element of any float dtype as float32. `static inline` so each ISA's
// translation unit keeps its own copy (see half.h).
#pragma once
#include <cstdint>

#include "../core/tensor_view.h"
#include "simd/half.h"

namespace attnkit {

static inline float load_as_float(const void* base, DType dt, int64_t idx) {
  switch (dt) {
    case DType::Float32: return static_cast<const float*>(base)[idx];
    case DType::Float16: return f16_to_float(static_cast<const uint16_t*>(base)[idx]);
    case DType::BFloat16: return bf16_to_float(static_cast<const uint16_t*>(base)[idx]);
    default: return 0.0f;
  }
}

static inline void store_from_float(void* base, DType dt, int64_t idx, float v) {
  switch (dt) {
    case DType::Float32: static_cast<float*>(base)[idx] = v; break;
    case DType::Float16: static_cast<uint16_t*>(base)[idx] = float_to_f16(v); break;
    case DType::BFloat16: static_cast<uint16_t*>(base)[idx] = float_to_bf16(v); break;
    default: break;
  }
}

}  // namespace attnkit
