// Turning native failures into the JS AttnError class that lib/ registers at load time.
#pragma once
#include <napi.h>

#include <string>

#include "../core/error.h"

namespace attnkit {

struct AddonState {
  Napi::FunctionReference attn_error;  // lib/errors.ts AttnError: new AttnError(code, message)
  Napi::FunctionReference device_storage;  // the DeviceStorage handle class (device_binding.cpp)
};

Napi::Value make_attn_error(Napi::Env env, ErrorCode code, const std::string& message);
[[noreturn]] void throw_attn_error(Napi::Env env, ErrorCode code, const std::string& message);

}  // namespace attnkit
