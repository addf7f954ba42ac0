#include "js_errors.h"

namespace attnkit {

Napi::Value make_attn_error(Napi::Env env, ErrorCode code, const std::string& message) {
  AddonState* state = env.GetInstanceData<AddonState>();
  if (state && !state->attn_error.IsEmpty()) {
    return state->attn_error.New({Napi::String::New(env, error_code_name(code)), Napi::String::New(env, message)});
  }
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, error_code_name(code)));
  return e.Value();
}

void throw_attn_error(Napi::Env env, ErrorCode code, const std::string& message) {
  throw Napi::Error(env, make_attn_error(env, code, message));
}

}  // namespace attnkit
