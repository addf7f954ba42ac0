// A strided view over memory the caller owns. Extents and strides are in elements; `data` already
// points at element [0, 0, ...] (the view's offset applied). Only validate_view() builds these, after
// checking that every reachable element lies inside the caller's buffer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace attnkit {

enum class DType : int { Float32 = 0, Float16 = 1, BFloat16 = 2, Int32 = 3, UInt8 = 4 };

constexpr int kMaxRank = 6;

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32: case DType::Int32: return 4;
    case DType::Float16: case DType::BFloat16: return 2;
    case DType::UInt8: return 1;
  }
  return 1;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Int32: return "int32";
    case DType::UInt8: return "uint8";
  }
  return "?";
}

// "cpu" or "cuda:N", for messages.
inline std::string device_name(int device) { return device < 0 ? std::string("cpu") : "cuda:" + std::to_string(device); }

inline bool is_float(DType t) { return t == DType::Float32 || t == DType::Float16 || t == DType::BFloat16; }

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::Float32;
  int device = -1;  // -1: host memory; N >= 0: memory on CUDA device N
  int rank = 0;
  int64_t shape[kMaxRank] = {0};
  int64_t strides[kMaxRank] = {0};
};

// A 4-d view broadcast to [B, H, Sq, Sk] (bias and mask): broadcast dims carry stride 0.
struct Broadcast4 {
  const void* data = nullptr;
  DType dtype = DType::Float32;
  int64_t strides[4] = {0, 0, 0, 0};
};

}  // namespace attnkit
