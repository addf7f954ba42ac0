// The one shape of every async binding: a libuv worker that settles a promise.
#pragma once
#include <napi.h>

#include <exception>

#include "../core/error.h"
#include "bindings.h"
#include "device_storage.h"
#include "js_errors.h"

namespace attnkit {

// Runs work() on a libuv thread and resolves the promise with undefined, or rejects it with an
// AttnError: an AttnException keeps its code, any other exception gets `fallback`. Every JS
// object argument of the call stays pinned, and the device handles added to busy() stay
// allocated, until the promise settles.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* name, const Napi::CallbackInfo& info, ErrorCode fallback)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)), pins_(info), code_(fallback) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  BusyHandles& busy() { return busy_; }

 protected:
  virtual void work() = 0;

 private:
  void Execute() final {
    try {
      work();
    } catch (const AttnException& e) {
      code_ = e.code();
      SetError(e.what());
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() final { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) final { deferred_.Reject(make_attn_error(Env(), code_, e.Message())); }

  Napi::Promise::Deferred deferred_;
  ArgumentPins pins_;
  BusyHandles busy_;  // declared after pins_: released first, while the handles are still pinned
  ErrorCode code_;
};

// Below this many multiply-adds a call finishes in microseconds: cheaper to run it on the JS thread
// and hand back a settled promise than to pay a round trip through libuv's queue (tens of µs).
constexpr double kInlineAsyncMacs = 1 << 18;

// run() on the calling thread, as a promise already settled: resolved with undefined, or rejected
// with the AttnError of its AttnException.
template <class Run>
Napi::Promise settled_promise(Napi::Env env, Run run) {
  Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
  try {
    run();
    d.Resolve(env.Undefined());
  } catch (const AttnException& e) {
    d.Reject(make_attn_error(env, e.code(), e.what()));
  }
  return d.Promise();
}

}  // namespace attnkit
