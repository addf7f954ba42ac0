// Registration of each feature's bindings, and the wrapper that turns C++ failures into AttnError.
#pragma once
#include <napi.h>

#include <new>
#include <vector>

#include "../core/error.h"
#include "js_errors.h"

namespace attnkit {

void register_attention_bindings(Napi::Env env, Napi::Object exports);
void register_linear_bindings(Napi::Env env, Napi::Object exports);
void register_decode_bindings(Napi::Env env, Napi::Object exports);
void register_info_bindings(Napi::Env env, Napi::Object exports);
void register_device_bindings(Napi::Env env, Napi::Object exports);

// Keeps every JS object argument of a call alive until an async worker is done with its memory.
class ArgumentPins {
 public:
  explicit ArgumentPins(const Napi::CallbackInfo& info) {
    for (size_t i = 0; i < info.Length(); ++i)
      if (info[i].IsObject()) refs_.push_back(Napi::Persistent(info[i].As<Napi::Object>()));
  }

 private:
  std::vector<Napi::ObjectReference> refs_;
};

// Runs body; AttnException and allocation failures become thrown AttnErrors, so no C++ exception
// ever unwinds into Node.
template <class Body>
Napi::Value guarded(Napi::Env env, Body&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const AttnException& e) {
    throw_attn_error(env, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    throw_attn_error(env, ErrorCode::OutOfMemory, "out of memory");
  } catch (const std::exception& e) {
    throw_attn_error(env, ErrorCode::Argument, e.what());
  }
}

}  // namespace attnkit
