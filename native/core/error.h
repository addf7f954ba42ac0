// Errors raised anywhere in native code. The N-API layer turns them into JS AttnError objects with
// the same stable code; kernels and validation never know about JavaScript.
#pragma once
#include <stdexcept>
#include <string>

namespace attnkit {

enum class ErrorCode {
  Shape,
  DType,
  Device,
  Argument,
  Aborted,
  Disposed,
  OutOfMemory,
  CudaUnavailable,
  NativeLoad,
};

inline const char* error_code_name(ErrorCode c) {
  switch (c) {
    case ErrorCode::Shape: return "ERR_ATTN_SHAPE";
    case ErrorCode::DType: return "ERR_ATTN_DTYPE";
    case ErrorCode::Device: return "ERR_ATTN_DEVICE";
    case ErrorCode::Argument: return "ERR_ATTN_ARGUMENT";
    case ErrorCode::Aborted: return "ERR_ATTN_ABORTED";
    case ErrorCode::Disposed: return "ERR_ATTN_DISPOSED";
    case ErrorCode::OutOfMemory: return "ERR_ATTN_OOM";
    case ErrorCode::CudaUnavailable: return "ERR_ATTN_CUDA_UNAVAILABLE";
    case ErrorCode::NativeLoad: return "ERR_ATTN_NATIVE_LOAD";
  }
  return "ERR_ATTN_ARGUMENT";
}

class AttnException : public std::runtime_error {
 public:
  AttnException(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] inline void fail(ErrorCode code, const std::string& message) { throw AttnException(code, message); }

}  // namespace attnkit
