#include "tensor_args.h"

#include <cmath>
#include <string>

#include "descriptor.h"
#include "device_storage.h"
#include "js_errors.h"

namespace attnkit {
namespace {

bool array_dtype(napi_typedarray_type t, DType* out) {
  switch (t) {
    case napi_float32_array: *out = DType::Float32; return true;
    case napi_uint16_array: *out = DType::Float16; return true;
    case napi_int32_array: *out = DType::Int32; return true;
    case napi_uint8_array: *out = DType::UInt8; return true;
    default: return false;
  }
}

struct RawTyped {
  napi_typedarray_type type;
  size_t length;
  void* data;
  bool detached;
};

// v is known to be a TypedArray.
RawTyped read_typed(Napi::Env env, const Napi::Value& v, const char* name) {
  RawTyped r{};
  napi_value ab;
  size_t byte_offset;
  if (napi_get_typedarray_info(env, v, &r.type, &r.length, &r.data, &ab, &byte_offset) != napi_ok) {
    throw_attn_error(env, ErrorCode::Argument, std::string(name) + ": could not read the TypedArray");
  }
  r.detached = false;
  if (r.length == 0) {
    bool det = false;
    if (napi_is_detached_arraybuffer(env, ab, &det) == napi_ok) r.detached = det;
  }
  return r;
}

RawTyped raw_typed(Napi::Env env, const Napi::Value& v, const char* name) {
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) {
    throw_attn_error(env, ErrorCode::Argument, std::string(name) + " must be a TypedArray");
  }
  return read_typed(env, v, name);
}

CallerBuffer buffer_of(Napi::Env env, const RawTyped& r, const char* name) {
  CallerBuffer b;
  if (!array_dtype(r.type, &b.array_dtype)) {
    throw_attn_error(env, ErrorCode::DType, std::string(name) + "'s data must be a Float32Array, Uint16Array, Int32Array or Uint8Array");
  }
  b.base = r.data;
  b.length = r.length;
  b.detached = r.detached;
  return b;
}

}  // namespace

CallerBuffer caller_buffer(Napi::Env env, const Napi::Value& v, const char* name) {
  return buffer_of(env, raw_typed(env, v, name), name);
}

namespace {

[[noreturn]] __attribute__((noinline, cold)) void non_integer_field(const char* name, const char* what, double x) {
  fail(ErrorCode::Argument, std::string(name) + "." + what + " must hold integers, got " + std::to_string(x));
}

TensorDesc tensor_desc(const char* name, const double* d, int slot) {
  const double* rec = d + slot * desc::kTensorRecord;
  TensorDesc t;
  const double dt = rec[desc::kDType];
  if (!(dt >= 0 && dt <= 4) || dt != std::floor(dt)) fail(ErrorCode::DType, std::string(name) + " has an unknown dtype code");
  t.dtype = static_cast<DType>(static_cast<int>(dt));
  const double rank = rec[desc::kRank];
  if (!(rank >= 0 && rank <= kMaxRank) || rank != std::floor(rank)) fail(ErrorCode::Shape, std::string(name) + " has unsupported rank");
  t.rank = static_cast<int>(rank);
  auto integer = [&](double x, const char* what) -> int64_t {
    // |x| <= 9e15 first (false for NaN and infinities), so the cast is defined; then exactness.
    if (__builtin_expect(std::fabs(x) <= 9.0e15 && static_cast<double>(static_cast<int64_t>(x)) == x, 1)) return static_cast<int64_t>(x);
    non_integer_field(name, what, x);
  };
  for (int i = 0; i < t.rank; ++i) {
    t.shape[i] = integer(rec[desc::kShape + i], "shape");
    t.strides[i] = integer(rec[desc::kStrides + i], "strides");
  }
  t.offset = integer(rec[desc::kOffset], "offset");
  return t;
}

// A live device handle as the caller's buffer: as many elements of the tensor's dtype as its bytes hold.
CallerBuffer device_buffer(const DeviceStorage& s, const char* name, DType dtype) {
  if (s.disposed()) fail(ErrorCode::Disposed, std::string(name) + "'s device memory was disposed");
  CallerBuffer b;
  b.base = s.ptr();
  b.length = s.bytes() / dtype_size(dtype);
  b.array_dtype = dtype;
  b.device = s.device();
  return b;
}

}  // namespace

TensorView tensor_arg(const char* name, const CallerBuffer& buf, const double* d, int slot) {
  return make_view(name, buf, tensor_desc(name, d, slot));
}

TensorView tensor_slot(Napi::Env env, const Napi::Value& v, const char* name, const double* d, int slot) {
  const TensorDesc t = tensor_desc(name, d, slot);
  // Host tensors are the common case (and the per-call cost of a tiny call): ask for a typed array first.
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) == napi_ok && is_typed) return make_view(name, buffer_of(env, read_typed(env, v, name), name), t);
  if (const DeviceStorage* s = device_storage_of(env, v)) return make_view(name, device_buffer(*s, name, t.dtype), t);
  return make_view(name, caller_buffer(env, v, name), t);  // throws: neither a typed array nor a device handle
}

LseArg lse_arg(Napi::Env env, const Napi::Value& v) {
  LseArg a;
  if (const DeviceStorage* s = device_storage_of(env, v)) {
    const CallerBuffer b = device_buffer(*s, "lse", DType::Float32);
    a.data = static_cast<float*>(b.base);
    a.length = b.length;
    a.device = b.device;
    return a;
  }
  const FloatArray f = float_array_arg(env, v, "lse");
  a.data = const_cast<float*>(f.data);
  a.length = f.length;
  return a;
}

CallerBuffer device_array_arg(Napi::Env env, const Napi::Value& v, const char* name, DType dtype) {
  if (v.IsNull() || v.IsUndefined()) return CallerBuffer{};
  const DeviceStorage* s = device_storage_of(env, v);
  if (s == nullptr) fail(ErrorCode::Argument, std::string(name) + " must be a device storage handle");
  return device_buffer(*s, name, dtype);
}

void mark_busy(Napi::Env env, const Napi::Value& v, BusyHandles* busy) {
  if (DeviceStorage* s = device_storage_of(env, v)) busy->add(s);
}

namespace {

// An optional whole typed array of one element type (null/undefined: absent).
template <class Array, class Element>
Array typed_array_arg(Napi::Env env, const Napi::Value& v, const char* name, napi_typedarray_type want, const char* type_name) {
  Array a;
  if (v.IsNull() || v.IsUndefined()) return a;
  const RawTyped r = raw_typed(env, v, name);
  if (r.type != want) throw_attn_error(env, ErrorCode::Argument, std::string(name) + " must be " + type_name);
  if (r.detached) throw_attn_error(env, ErrorCode::Argument, std::string(name) + "'s ArrayBuffer is detached");
  a.data = static_cast<const Element*>(r.data);
  a.length = r.length;
  a.present = true;
  return a;
}

}  // namespace

FloatArray float_array_arg(Napi::Env env, const Napi::Value& v, const char* name) {
  return typed_array_arg<FloatArray, float>(env, v, name, napi_float32_array, "a Float32Array");
}

Int32Array int32_array_arg(Napi::Env env, const Napi::Value& v, const char* name) {
  return typed_array_arg<Int32Array, int32_t>(env, v, name, napi_int32_array, "an Int32Array");
}

const double* descriptor_arg(Napi::Env env, const Napi::Value& v, size_t length) {
  const RawTyped r = raw_typed(env, v, "descriptor");
  if (r.type != napi_float64_array || r.length != length) {
    throw_attn_error(env, ErrorCode::Argument, "internal: call descriptor must be a Float64Array of " + std::to_string(length));
  }
  return static_cast<const double*>(r.data);
}

const std::atomic<int32_t>* abort_flag_arg(Napi::Env env, const Napi::Value& v) {
  if (v.IsNull() || v.IsUndefined()) return nullptr;
  const Int32Array flag = int32_array_arg(env, v, "abort flag");
  if (flag.length < 1) throw_attn_error(env, ErrorCode::Argument, "internal: abort flag must hold one int32");
  // The flag lives in a JS Int32Array; an aligned int32 is lock-free, so reading it as an atomic is sound.
  return reinterpret_cast<const std::atomic<int32_t>*>(flag.data);
}

void refuse_resizable(const Napi::Value& index, const char* const* names, int count, const char* sync_form) {
  const double i = index.IsNumber() ? index.As<Napi::Number>().DoubleValue() : -1;
  if (i >= 0 && i < count) {
    fail(ErrorCode::Argument, std::string(names[static_cast<int>(i)]) +
                                  " is backed by a resizable ArrayBuffer, which could shrink while the async call runs; use a fixed-length buffer or " +
                                  sync_form);
  }
}

}  // namespace attnkit
