// JS values -> the core's untrusted request structs. Only conversions here: every range and shape
// check lives in core/validate.cpp.
#pragma once
#include <napi.h>

#include <atomic>

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
// A device storage handle read as a buffer of `dtype` elements (a device cache's page table and
// lengths), or an absent buffer (base nullptr) for null / undefined.
CallerBuffer device_array_arg(Napi::Env env, const Napi::Value& v, const char* name, DType dtype);
// The device handles among `values`, for an async call to mark busy (see device_storage.h).
class BusyHandles;
void mark_busy(Napi::Env env, const Napi::Value& v, BusyHandles* busy);
FloatArray float_array_arg(Napi::Env env, const Napi::Value& v, const char* name);
Int32Array int32_array_arg(Napi::Env env, const Napi::Value& v, const char* name);
// The Float64Array descriptor; fails unless it has exactly `length` entries.
const double* descriptor_arg(Napi::Env env, const Napi::Value& v, size_t length);
// An async call's abort flag: an Int32Array of one element that JS sets when the signal fires,
// or nullptr for null / undefined.
const std::atomic<int32_t>* abort_flag_arg(Napi::Env env, const Napi::Value& v);
// Async calls refuse an argument over a resizable ArrayBuffer: it could shrink under the kernel
// while the call runs. `index` is what lib/ops found (the first such argument, -1: none; JS can see
// it, N-API cannot); names[0..count) name the arguments it may point at; `sync_form` how to avoid
// the refusal. Called after every other check, so sync and async report the same first error.
void refuse_resizable(const Napi::Value& index, const char* const* names, int count, const char* sync_form);

}  // namespace attnkit
