// Device memory owned by a JS object: the handle lib/ keeps in a device Tensor's storage. It owns
// {device, ptr, bytes}; dispose() frees it now, the finalizer frees it if JS never did, and the
// bytes are reported to V8 with napi_adjust_external_memory (+ at allocation, - at release, once).
//
// Async operations mark the handles they use as busy (acquire/release on the JS thread); a handle
// disposed while busy is refused to every later call at once but freed when the last operation
// using it settles, so a GPU kernel never reads memory that was handed back.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace attnkit {

class DeviceStorage : public Napi::ObjectWrap<DeviceStorage> {
 public:
  // The JS class; instances are only made by create() (a JS `new` without the native token fails).
  static Napi::Function define(Napi::Env env);
  // Allocates `bytes` on `device` (zeroed if asked); throws AttnError (OOM, device, unavailable).
  static Napi::Object create(Napi::Env env, int device, double bytes, bool zero);

  explicit DeviceStorage(const Napi::CallbackInfo& info);
  ~DeviceStorage() override;

  int device() const { return device_; }
  void* ptr() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  bool disposed() const { return disposed_; }
  bool freed() const { return freed_; }
  int busy() const { return busy_; }

  void dispose();  // idempotent
  void acquire() { ++busy_; }
  void release();  // frees if disposed and no longer busy

  // Process-wide totals of live (not yet freed) allocations, for tests and introspection.
  static int64_t live_bytes();
  static int64_t live_allocations();

 private:
  void free_now();

  napi_env env_ = nullptr;
  int device_ = -1;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  bool disposed_ = true;
  bool freed_ = true;
  int busy_ = 0;
};

// The storage behind `v`, or nullptr if v is not a DeviceStorage handle.
DeviceStorage* device_storage_of(Napi::Env env, const Napi::Value& v);

// Keeps handles busy for the life of an async operation (destroyed on the JS thread).
class BusyHandles {
 public:
  BusyHandles() = default;
  BusyHandles(const BusyHandles&) = delete;
  BusyHandles& operator=(const BusyHandles&) = delete;
  ~BusyHandles();
  void add(DeviceStorage* s);

 private:
  std::vector<DeviceStorage*> items_;
};

}  // namespace attnkit
