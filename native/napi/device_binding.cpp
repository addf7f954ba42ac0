// Device memory bindings: cudaInfo, the DeviceStorage handle (alloc / dispose / finalizer /
// external-memory accounting) and host<->device<->device copies, sync and async. Glue only: the
// library calls and their error mapping live in core/cuda_backend, range checks in core/validate.
#include <napi.h>

#include <atomic>
#include <cmath>
#include <string>

#include "../core/cuda_backend.h"
#include "../core/validate.h"
#include "bindings.h"
#include "device_storage.h"
#include "js_errors.h"
#include "promise_worker.h"

namespace attnkit {
namespace {

// Marks our handles so no other object (or another addon's wrapped object) passes for one.
const napi_type_tag kStorageTag = {0x6174746e6b697400ULL, 0x6465766963653031ULL};
// Only create() holds this address, so `new` from JS cannot make a handle.
int kConstructToken = 0;

std::atomic<int64_t> g_live_bytes{0};
std::atomic<int64_t> g_live_allocations{0};

// A byte count or offset from JS: an integer in [0, 2^53].
uint64_t byte_count(const Napi::Value& v, const char* name) {
  const double x = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(x >= 0) || x != std::floor(x) || x > 9007199254740992.0) {
    fail(ErrorCode::Argument, std::string(name) + " must be an integer number of bytes >= 0");
  }
  return static_cast<uint64_t>(x);
}

int device_index(const Napi::Value& v) {
  const double x = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(x >= 0) || x != std::floor(x) || x > 1 << 20) fail(ErrorCode::Device, "device must be an integer index >= 0");
  return static_cast<int>(x);
}

DeviceStorage& storage_arg(Napi::Env env, const Napi::Value& v, const char* name) {
  DeviceStorage* s = device_storage_of(env, v);
  if (s == nullptr) fail(ErrorCode::Argument, std::string(name) + " must be a device storage handle");
  if (s->disposed()) fail(ErrorCode::Disposed, std::string(name) + "'s device memory was disposed");
  return *s;
}

struct HostRange {
  uint8_t* data = nullptr;
  uint64_t bytes = 0;
};

HostRange host_arg(Napi::Env env, const Napi::Value& v, const char* name) {
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) fail(ErrorCode::Argument, std::string(name) + " must be a TypedArray");
  napi_typedarray_type type;
  size_t length = 0, byte_offset = 0;
  void* data = nullptr;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, &ab, &byte_offset) != napi_ok) {
    fail(ErrorCode::Argument, std::string(name) + ": could not read the TypedArray");
  }
  size_t elem = 1;
  switch (type) {
    case napi_int16_array: case napi_uint16_array: elem = 2; break;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: elem = 4; break;
    case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: elem = 8; break;
    default: elem = 1;
  }
  if (length == 0) {
    bool detached = false;
    if (napi_is_detached_arraybuffer(env, ab, &detached) == napi_ok && detached) {
      fail(ErrorCode::Argument, std::string(name) + "'s ArrayBuffer is detached (transferred or freed)");
    }
  }
  return HostRange{static_cast<uint8_t*>(data), static_cast<uint64_t>(length) * elem};
}

// ---- cudaInfo -------------------------------------------------------------------------------

Napi::Value cuda_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaStatus& st = cuda_status();
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", st.available);
  if (!st.available) o.Set("reason", st.reason);
  if (st.available) {
    Napi::Array devices = Napi::Array::New(env, st.devices.size());
    for (size_t i = 0; i < st.devices.size(); ++i) {
      const CudaDevice& d = st.devices[i];
      Napi::Object x = Napi::Object::New(env);
      x.Set("name", d.name);
      x.Set("cc", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor));
      x.Set("memoryBytes", static_cast<double>(d.memory_bytes));
      x.Set("multiprocessors", d.multiprocessors);
      x.Set("kernelImage", d.has_kernel_image);
      devices.Set(static_cast<uint32_t>(i), x);
    }
    o.Set("devices", devices);
  }
  if (!st.build_info.empty()) o.Set("buildInfo", st.build_info);
  if (!st.library_path.empty()) o.Set("libraryPath", st.library_path);
  return o;
}

// cudaSetPackageLibrary(path, note) -> whether it was taken (only before the library's first load)
Napi::Value cuda_set_package_library_js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsString() || !info[1].IsString()) {
    fail(ErrorCode::Argument, "cudaSetPackageLibrary(path, note): two strings");
  }
  return Napi::Boolean::New(env, cuda_set_package_library(info[0].As<Napi::String>(), info[1].As<Napi::String>()));
}

// ---- handles ----------------------------------------------------------------------------------

// cudaAlloc(device, bytes, zero) -> handle
Napi::Value cuda_alloc(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const int device = device_index(info[0]);
    const uint64_t bytes = byte_count(info[1], "bytes");
    return DeviceStorage::create(info.Env(), device, static_cast<double>(bytes), info[2].ToBoolean().Value());
  });
}

// cudaDispose(handle): frees now (or when the async calls using it settle); idempotent.
Napi::Value cuda_dispose(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    DeviceStorage* s = device_storage_of(info.Env(), info[0]);
    if (s == nullptr) fail(ErrorCode::Argument, "dispose: not a device storage handle");
    s->dispose();
    return info.Env().Undefined();
  });
}

// cudaStorageInfo(handle) -> { device, bytes, disposed, freed, busy }
Napi::Value cuda_storage_info(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    DeviceStorage* s = device_storage_of(info.Env(), info[0]);
    if (s == nullptr) fail(ErrorCode::Argument, "not a device storage handle");
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("device", s->device());
    o.Set("bytes", static_cast<double>(s->bytes()));
    o.Set("disposed", s->disposed());
    o.Set("freed", s->freed());
    o.Set("busy", s->busy());
    return o;
  });
}

// cudaMemoryStats() -> { liveBytes, liveAllocations, externalBytes }: live handles of the process,
// and V8's external-memory total for this isolate (what napi_adjust_external_memory reports).
Napi::Value cuda_memory_stats(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("liveBytes", static_cast<double>(DeviceStorage::live_bytes()));
  o.Set("liveAllocations", static_cast<double>(DeviceStorage::live_allocations()));
  int64_t external = 0;
  napi_adjust_external_memory(info.Env(), 0, &external);
  o.Set("externalBytes", static_cast<double>(external));
  return o;
}

// ---- copies -----------------------------------------------------------------------------------

enum class CopyKind { ToDevice, ToHost, OnDevice };

// A checked copy: pointers and sizes resolved on the JS thread, the library called on any thread.
struct Copy {
  CopyKind kind;
  int device = -1;
  void* dst = nullptr;
  const void* src = nullptr;
  size_t bytes = 0;
  void run() const {
    switch (kind) {
      case CopyKind::ToDevice: cuda_copy_to_device(device, dst, src, bytes); break;
      case CopyKind::ToHost: cuda_copy_to_host(device, dst, src, bytes); break;
      case CopyKind::OnDevice: cuda_copy_on_device(device, dst, src, bytes); break;
    }
  }
};

// Arguments of every copy binding: (dst, dstByteOffset, src, srcByteOffset, bytes), dst/src a
// TypedArray on the host side and a handle on the device side.
Copy copy_from(const Napi::CallbackInfo& info, CopyKind kind, BusyHandles* busy) {
  Napi::Env env = info.Env();
  const uint64_t dst_off = byte_count(info[1], "dstByteOffset");
  const uint64_t src_off = byte_count(info[3], "srcByteOffset");
  const uint64_t bytes = byte_count(info[4], "bytes");
  Copy c{kind};
  c.bytes = static_cast<size_t>(bytes);
  if (kind == CopyKind::ToDevice) {
    DeviceStorage& d = storage_arg(env, info[0], "dst");
    const HostRange s = host_arg(env, info[2], "src");
    check_byte_range("dst", dst_off, bytes, d.bytes());
    check_byte_range("src", src_off, bytes, s.bytes);
    c.device = d.device();
    c.dst = static_cast<uint8_t*>(d.ptr()) + dst_off;
    c.src = s.data + src_off;
    if (busy) busy->add(&d);
  } else if (kind == CopyKind::ToHost) {
    const HostRange d = host_arg(env, info[0], "dst");
    DeviceStorage& s = storage_arg(env, info[2], "src");
    check_byte_range("dst", dst_off, bytes, d.bytes);
    check_byte_range("src", src_off, bytes, s.bytes());
    c.device = s.device();
    c.dst = d.data + dst_off;
    c.src = static_cast<const uint8_t*>(s.ptr()) + src_off;
    if (busy) busy->add(&s);
  } else {
    DeviceStorage& d = storage_arg(env, info[0], "dst");
    DeviceStorage& s = storage_arg(env, info[2], "src");
    if (d.device() != s.device()) {
      fail(ErrorCode::Device, "src is on " + device_name(s.device()) + " but dst is on " + device_name(d.device()) +
                                  "; a device-to-device copy stays on one device");
    }
    check_byte_range("dst", dst_off, bytes, d.bytes());
    check_byte_range("src", src_off, bytes, s.bytes());
    c.device = d.device();
    c.dst = static_cast<uint8_t*>(d.ptr()) + dst_off;
    c.src = static_cast<const uint8_t*>(s.ptr()) + src_off;
    if (busy) { busy->add(&d); busy->add(&s); }
  }
  return c;
}

class CopyWorker : public PromiseWorker {
 public:
  CopyWorker(Napi::Env env, const Napi::CallbackInfo& info)
      : PromiseWorker(env, "attnkit.cudaCopy", info, ErrorCode::CudaUnavailable) {}
  void set(const Copy& c) { copy_ = c; }

 private:
  void work() override { copy_.run(); }

  Copy copy_{CopyKind::ToDevice};
};

template <CopyKind kKind>
Napi::Value copy_sync(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    copy_from(info, kKind, nullptr).run();
    return info.Env().Undefined();
  });
}

template <CopyKind kKind>
Napi::Value copy_async(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto* w = new CopyWorker(info.Env(), info);
    try {
      w->set(copy_from(info, kKind, &w->busy()));
    } catch (...) {
      delete w;
      throw;
    }
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  });
}

}  // namespace

// ---- DeviceStorage ------------------------------------------------------------------------------

Napi::Function DeviceStorage::define(Napi::Env env) { return DefineClass(env, "DeviceStorage", {}); }

DeviceStorage::DeviceStorage(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceStorage>(info), env_(info.Env()) {
  if (info.Length() < 1 || !info[0].IsExternal() || info[0].As<Napi::External<int>>().Data() != &kConstructToken) {
    throw_attn_error(info.Env(), ErrorCode::Argument, "DeviceStorage handles are made by attnkit (Tensor.empty / to('cuda')), not with new");
  }
  napi_type_tag_object(info.Env(), info.This(), &kStorageTag);
}

DeviceStorage::~DeviceStorage() {
  // The finalizer (or env teardown): the safety net when JS never called dispose().
  if (!freed_) free_now();
}

Napi::Object DeviceStorage::create(Napi::Env env, int device, double bytes_d, bool zero) {
  cuda_require_device(device, "device memory");
  const size_t bytes = static_cast<size_t>(bytes_d);
  void* ptr = cuda_malloc(device, bytes);
  Napi::Object obj;
  try {
    if (zero) cuda_memset_zero(device, ptr, bytes);
    AddonState* st = env.GetInstanceData<AddonState>();
    obj = st->device_storage.New({Napi::External<int>::New(env, &kConstructToken)});
  } catch (...) {
    cuda_free(device, ptr);
    throw;
  }
  DeviceStorage* s = Unwrap(obj);
  s->device_ = device;
  s->ptr_ = ptr;
  s->bytes_ = bytes;
  s->disposed_ = false;
  s->freed_ = false;
  int64_t ignored = 0;
  napi_adjust_external_memory(env, static_cast<int64_t>(bytes), &ignored);
  g_live_bytes += static_cast<int64_t>(bytes);
  ++g_live_allocations;
  return obj;
}

void DeviceStorage::dispose() {
  if (disposed_) return;
  disposed_ = true;
  if (busy_ == 0 && !freed_) free_now();
}

void DeviceStorage::release() {
  if (busy_ > 0) --busy_;
  if (busy_ == 0 && disposed_ && !freed_) free_now();
}

void DeviceStorage::free_now() {
  cuda_free(device_, ptr_);
  freed_ = true;
  disposed_ = true;
  ptr_ = nullptr;
  int64_t ignored = 0;
  napi_adjust_external_memory(env_, -static_cast<int64_t>(bytes_), &ignored);
  g_live_bytes -= static_cast<int64_t>(bytes_);
  --g_live_allocations;
}

int64_t DeviceStorage::live_bytes() { return g_live_bytes.load(); }
int64_t DeviceStorage::live_allocations() { return g_live_allocations.load(); }

DeviceStorage* device_storage_of(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject()) return nullptr;
  bool tagged = false;
  if (napi_check_object_type_tag(env, v, &kStorageTag, &tagged) != napi_ok || !tagged) return nullptr;
  void* p = nullptr;
  if (napi_unwrap(env, v, &p) != napi_ok) return nullptr;
  return static_cast<DeviceStorage*>(p);
}

BusyHandles::~BusyHandles() {
  for (DeviceStorage* s : items_) s->release();
}

void BusyHandles::add(DeviceStorage* s) {
  s->acquire();
  items_.push_back(s);
}

void register_device_bindings(Napi::Env env, Napi::Object exports) {
  env.GetInstanceData<AddonState>()->device_storage = Napi::Persistent(DeviceStorage::define(env));
  exports.Set("cudaInfo", Napi::Function::New(env, cuda_info, "cudaInfo"));
  exports.Set("cudaSetPackageLibrary", Napi::Function::New(env, cuda_set_package_library_js, "cudaSetPackageLibrary"));
  exports.Set("cudaAlloc", Napi::Function::New(env, cuda_alloc, "cudaAlloc"));
  exports.Set("cudaDispose", Napi::Function::New(env, cuda_dispose, "cudaDispose"));
  exports.Set("cudaStorageInfo", Napi::Function::New(env, cuda_storage_info, "cudaStorageInfo"));
  exports.Set("cudaMemoryStats", Napi::Function::New(env, cuda_memory_stats, "cudaMemoryStats"));
  exports.Set("cudaCopyToDevice", Napi::Function::New(env, copy_sync<CopyKind::ToDevice>, "cudaCopyToDevice"));
  exports.Set("cudaCopyToHost", Napi::Function::New(env, copy_sync<CopyKind::ToHost>, "cudaCopyToHost"));
  exports.Set("cudaCopyOnDevice", Napi::Function::New(env, copy_sync<CopyKind::OnDevice>, "cudaCopyOnDevice"));
  exports.Set("cudaCopyToDeviceAsync", Napi::Function::New(env, copy_async<CopyKind::ToDevice>, "cudaCopyToDeviceAsync"));
  exports.Set("cudaCopyToHostAsync", Napi::Function::New(env, copy_async<CopyKind::ToHost>, "cudaCopyToHostAsync"));
  exports.Set("cudaCopyOnDeviceAsync", Napi::Function::New(env, copy_async<CopyKind::OnDevice>, "cudaCopyOnDeviceAsync"));
}

}  // namespace attnkit
