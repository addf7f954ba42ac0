// JS values -> the core's untrusted request structs. Only conversions here: every range and shape
// check lives in core/validate.cpp.
#pragma once
#include <napi.h>

#include "../core/validate.h"

namespace attnkit {

// A typed array argument; `name` is used in error messages.
CallerBuffer caller_buffer(Napi::Env env, const Napi::Value& v, const char* name);
// Reads tensor record `slot` of a descriptor array and checks it against buf.
TensorView tensor_arg(const char* name, const CallerBuffer& buf, const double* desc, int slot);
// The same for an argument that is a TypedArray or a device storage handle (a freed handle is
// ERR_ATTN_DISPOSED); the view's extents are checked against the handle's bytes like an array's.
TensorView tensor_slot(Napi::Env env, const Napi::Value& v, const char* name, const double* desc, int slot);
// attention's lse: a whole Float32Array, a float32 device handle, or null/undefined (absent).
struct LseArg {
  float* data = nullptr;
  size_t length = 0;
  int device = -1;
};
LseArg lse_arg(Napi::Env env, const Napi::Value& v);
// The device handles among `values`, for an async call to mark busy (see device_storage.h).
class BusyHandles;
void mark_busy(Napi::Env env, const Napi::Value& v, BusyHandles* busy);
FloatArray float_array_arg(Napi::Env env, const Napi::Value& v, const char* name);
Int32Array int32_array_arg(Napi::Env env, const Napi::Value& v, const char* name);
// The Float64Array descriptor; fails unless it has exactly `length` entries.
const double* descriptor_arg(Napi::Env env, const Napi::Value& v, size_t length);

}  // namespace attnkit
