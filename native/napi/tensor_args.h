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
FloatArray float_array_arg(Napi::Env env, const Napi::Value& v, const char* name);
Int32Array int32_array_arg(Napi::Env env, const Napi::Value& v, const char* name);
// The Float64Array descriptor; fails unless it has exactly `length` entries.
const double* descriptor_arg(Napi::Env env, const Napi::Value& v, size_t length);

}  // namespace attnkit
