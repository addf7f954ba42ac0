// The C ABI of libattnkit_cuda (native/include/attnkit/attnkit_cuda.h): the one exported symbol,
// attnkit_cuda_get_api, and the table of entry points behind it.
//
// Every entry point is a thin extern-"C"-safe shell (catch everything, write a message) around a
// small C++ function. Per-device state (one non-blocking stream, the device's traits, a cache of
// scratch buffers) lives in a mutex-guarded table that is never torn down: calls come from several
// libuv threads at once, and at process exit the CUDA runtime may already be gone.
// Every operation enqueues on the device's stream and synchronises it before returning, so a
// successful return means the results are in memory, and any asynchronous error is reported by
// the call that caused it.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "attnkit/attnkit_cuda.h"
#include "fused/fused_attention.h"
#include "merge/merge_states.h"

namespace attnkit {
namespace cuda {
namespace {

// ---- status and messages ----------------------------------------------------------------------

void write_message(char* err, size_t err_len, const char* format, va_list args) {
  if (err == nullptr || err_len == 0) return;
  vsnprintf(err, err_len, format, args);
  err[err_len - 1] = '\0';
}

attnkit_cuda_status fail(char* err, size_t err_len, attnkit_cuda_status status, const char* format, ...) {
  va_list args;
  va_start(args, format);
  write_message(err, err_len, format, args);
  va_end(args);
  return status;
}

attnkit_cuda_status status_of(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return ATTNKIT_CUDA_OK;
    case cudaErrorMemoryAllocation: return ATTNKIT_CUDA_OOM;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInitializationError:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorInvalidDeviceFunction:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorDevicesUnavailable:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorStubLibrary:
      return ATTNKIT_CUDA_UNAVAILABLE;
    default: return ATTNKIT_CUDA_INTERNAL;
  }
}

// A failed CUDA call: its status and message. Also clears the thread's last error, so that a
// non-sticky failure (an allocation, a bad launch) does not resurface in a later, unrelated call.
attnkit_cuda_status cuda_failure(cudaError_t e, const char* what, char* err, size_t err_len) {
  cudaGetLastError();
  return fail(err, err_len, status_of(e), "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

// ---- per-device state -------------------------------------------------------------------------

struct ScratchEntry {
  void* data;
  size_t capacity;
};

struct DeviceSlot {
  bool ready = false;
  cudaStream_t stream = nullptr;
  DeviceTraits traits;
  std::vector<ScratchEntry> idle_scratch;  // buffers no call is using
};

constexpr size_t kMaxIdleScratch = 4;  // per device; beyond that, returned buffers are freed

struct DeviceTable {
  std::mutex mutex;
  std::vector<DeviceSlot> slots;  // sized once, to the device count
};

DeviceTable& device_table() {
  static DeviceTable* table = new DeviceTable;  // never destroyed (see the file comment)
  return *table;
}

cudaError_t read_traits(int device, DeviceTraits* t) {
  int optin = 0;
  cudaError_t e = cudaDeviceGetAttribute(&t->cc_major, cudaDevAttrComputeCapabilityMajor, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&t->cc_minor, cudaDevAttrComputeCapabilityMinor, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&t->multiprocessors, cudaDevAttrMultiProcessorCount, device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  t->max_shared_per_block_optin = size_t(optin);
  return e;
}

// What an entry point works with once it has entered a device.
struct DeviceHandle {
  int device = -1;
  cudaStream_t stream = nullptr;
  DeviceTraits traits;
};

attnkit_cuda_status check_device_index(int device, char* err, size_t err_len) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return cuda_failure(e, "cudaGetDeviceCount", err, err_len);
  if (device < 0 || device >= count)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "device must be in [0, %d), got %d", count, device);
  return ATTNKIT_CUDA_OK;
}

// Makes `device` current on this thread; creates its stream and reads its traits on first use.
attnkit_cuda_status enter_device(int device, DeviceHandle* h, char* err, size_t err_len) {
  const attnkit_cuda_status s = check_device_index(device, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) return cuda_failure(e, "cudaSetDevice", err, err_len);
  DeviceTable& table = device_table();
  std::lock_guard<std::mutex> lock(table.mutex);
  if (table.slots.size() <= size_t(device)) table.slots.resize(size_t(device) + 1);
  DeviceSlot& slot = table.slots[size_t(device)];
  if (!slot.ready) {
    DeviceTraits traits;
    e = read_traits(device, &traits);
    if (e != cudaSuccess) return cuda_failure(e, "reading the device's attributes", err, err_len);
    cudaStream_t stream = nullptr;
    e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) return cuda_failure(e, "cudaStreamCreateWithFlags", err, err_len);
    slot.traits = traits;
    slot.stream = stream;
    slot.ready = true;
  }
  h->device = device;
  h->stream = slot.stream;
  h->traits = slot.traits;
  return ATTNKIT_CUDA_OK;
}

// Waits for the device's stream and reports the first error of the work on it.
attnkit_cuda_status finish_stream(const DeviceHandle& h, const char* what, char* err, size_t err_len) {
  const cudaError_t e = cudaStreamSynchronize(h.stream);
  if (e != cudaSuccess) return cuda_failure(e, what, err, err_len);
  return ATTNKIT_CUDA_OK;
}

// A device buffer for one call's small tables, from the device's idle cache or cudaMalloc. The
// destructor returns it to the cache: only declare one where it outlives the stream's sync.
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer() { release(); }

  cudaError_t acquire(int device, size_t bytes) {
    device_ = device;
    {
      DeviceTable& table = device_table();
      std::lock_guard<std::mutex> lock(table.mutex);
      std::vector<ScratchEntry>& idle = table.slots[size_t(device)].idle_scratch;
      auto best = idle.end();
      for (auto it = idle.begin(); it != idle.end(); ++it)
        if (it->capacity >= bytes && (best == idle.end() || it->capacity < best->capacity)) best = it;
      if (best != idle.end()) {
        entry_ = *best;
        idle.erase(best);
        return cudaSuccess;
      }
    }
    const size_t capacity = std::max<size_t>((bytes + 4095) / 4096 * 4096, 4096);
    void* data = nullptr;
    const cudaError_t e = cudaMalloc(&data, capacity);
    if (e == cudaSuccess) entry_ = ScratchEntry{data, capacity};
    return e;
  }

  void* data() const { return entry_.data; }

 private:
  void release() {
    if (entry_.data == nullptr) return;
    ScratchEntry evicted{nullptr, 0};
    {
      DeviceTable& table = device_table();
      std::lock_guard<std::mutex> lock(table.mutex);
      std::vector<ScratchEntry>& idle = table.slots[size_t(device_)].idle_scratch;
      idle.push_back(entry_);
      if (idle.size() > kMaxIdleScratch) {  // keep the largest few
        auto smallest = std::min_element(idle.begin(), idle.end(), [](const ScratchEntry& a, const ScratchEntry& b) {
          return a.capacity < b.capacity;
        });
        evicted = *smallest;
        idle.erase(smallest);
      }
    }
    if (evicted.data != nullptr && cudaFree(evicted.data) != cudaSuccess) cudaGetLastError();
    entry_ = ScratchEntry{nullptr, 0};
  }

  int device_ = -1;
  ScratchEntry entry_{nullptr, 0};
};

// Host bytes laid out for one copy into a scratch buffer; each piece 256-byte aligned. Held in a
// std::string, not a std::vector<unsigned char>: that instantiation would be emitted here as a
// default-visibility weak symbol and exported from the library.
class TablePack {
 public:
  // Appends `bytes` bytes and returns their offset in the pack.
  size_t add(const void* src, size_t bytes) {
    const size_t at = (bytes_.size() + 255) / 256 * 256;
    bytes_.resize(at + bytes);
    if (bytes > 0) std::memcpy(&bytes_[at], src, bytes);
    return at;
  }
  size_t size() const { return bytes_.size(); }
  const void* data() const { return bytes_.data(); }

 private:
  std::string bytes_;
};

// Copies `pack` into `scratch` (acquired here) on the device's stream.
attnkit_cuda_status upload_tables(const DeviceHandle& h, const TablePack& pack, ScratchBuffer& scratch, char* err,
                                  size_t err_len) {
  if (pack.size() == 0) return ATTNKIT_CUDA_OK;
  cudaError_t e = scratch.acquire(h.device, pack.size());
  if (e != cudaSuccess) return cuda_failure(e, "allocating device scratch for the call's tables", err, err_len);
  e = cudaMemcpyAsync(scratch.data(), pack.data(), pack.size(), cudaMemcpyHostToDevice, h.stream);
  if (e != cudaSuccess) return cuda_failure(e, "copying the call's tables to the device", err, err_len);
  return ATTNKIT_CUDA_OK;
}

template <typename T>
T* at_offset(const ScratchBuffer& scratch, size_t offset) {
  return reinterpret_cast<T*>(static_cast<unsigned char*>(scratch.data()) + offset);
}

// ---- devices and memory -----------------------------------------------------------------------

attnkit_cuda_status device_count_impl(int32_t* count, char* err, size_t err_len) {
  if (count == nullptr) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "count must not be NULL");
  *count = 0;
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return cuda_failure(e, "no usable CUDA driver or device", err, err_len);
  if (n <= 0) return fail(err, err_len, ATTNKIT_CUDA_UNAVAILABLE, "the CUDA driver reports no device");
  *count = n;
  return ATTNKIT_CUDA_OK;
}

// Whether this library holds code the current device can run (kernels are built for one set of
// architectures, so asking about one kernel answers for all).
attnkit_cuda_status probe_kernel_image(int32_t* has_image, char* err, size_t err_len) {
  cudaFuncAttributes attributes;
  const cudaError_t e = merge_kernel_attributes(&attributes);
  if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction ||
      e == cudaErrorUnsupportedPtxVersion) {
    cudaGetLastError();
    *has_image = 0;
    return ATTNKIT_CUDA_OK;
  }
  if (e != cudaSuccess) return cuda_failure(e, "probing the library's kernels (cudaFuncGetAttributes)", err, err_len);
  *has_image = 1;
  return ATTNKIT_CUDA_OK;
}

attnkit_cuda_status device_info_impl(int32_t device, attnkit_cuda_device_info* info, char* err, size_t err_len) {
  if (info == nullptr) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "info must not be NULL");
  std::memset(info, 0, sizeof(*info));
  attnkit_cuda_status s = check_device_index(device, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  cudaDeviceProp prop;
  cudaError_t e = cudaGetDeviceProperties(&prop, device);
  if (e != cudaSuccess) return cuda_failure(e, "cudaGetDeviceProperties", err, err_len);
  std::snprintf(info->name, sizeof(info->name), "%s", prop.name);
  info->cc_major = prop.major;
  info->cc_minor = prop.minor;
  info->multiprocessors = prop.multiProcessorCount;
  info->memory_bytes = uint64_t(prop.totalGlobalMem);
  e = cudaSetDevice(device);
  if (e != cudaSuccess) return cuda_failure(e, "cudaSetDevice", err, err_len);
  return probe_kernel_image(&info->has_kernel_image, err, err_len);
}

attnkit_cuda_status malloc_impl(int32_t device, size_t bytes, void** ptr, char* err, size_t err_len) {
  if (ptr == nullptr) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "ptr must not be NULL");
  *ptr = nullptr;
  DeviceHandle h;
  const attnkit_cuda_status s = enter_device(device, &h, err, err_len);
  if (s != ATTNKIT_CUDA_OK || bytes == 0) return s;
  const cudaError_t e = cudaMalloc(ptr, bytes);
  if (e != cudaSuccess) {
    *ptr = nullptr;
    cudaGetLastError();
    return fail(err, err_len, status_of(e), "cudaMalloc of %zu bytes on device %d failed: %s (%s)", bytes, int(device),
                cudaGetErrorString(e), cudaGetErrorName(e));
  }
  return ATTNKIT_CUDA_OK;
}

void free_impl(int32_t device, void* ptr) {
  if (ptr == nullptr) return;
  DeviceHandle h;
  if (enter_device(device, &h, nullptr, 0) != ATTNKIT_CUDA_OK) return;
  // Let the library's work on this device drain first (cudaFree would also wait, but only for
  // work it can see as using the device; this is explicit).
  cudaStreamSynchronize(h.stream);
  cudaFree(ptr);
  cudaGetLastError();  // a failed free has nobody to tell; keep it from surfacing later
}

attnkit_cuda_status memset_zero_impl(int32_t device, void* ptr, size_t bytes, char* err, size_t err_len) {
  DeviceHandle h;
  const attnkit_cuda_status s = enter_device(device, &h, err, err_len);
  if (s != ATTNKIT_CUDA_OK || bytes == 0) return s;
  const cudaError_t e = cudaMemsetAsync(ptr, 0, bytes, h.stream);
  if (e != cudaSuccess) return cuda_failure(e, "cudaMemsetAsync", err, err_len);
  return finish_stream(h, "cudaMemsetAsync", err, err_len);
}

attnkit_cuda_status copy_impl(int32_t device, void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                              const char* what, char* err, size_t err_len) {
  DeviceHandle h;
  const attnkit_cuda_status s = enter_device(device, &h, err, err_len);
  if (s != ATTNKIT_CUDA_OK || bytes == 0) return s;
  const cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, h.stream);
  if (e != cudaSuccess) return cuda_failure(e, what, err, err_len);
  return finish_stream(h, what, err, err_len);
}

// ---- fused attention --------------------------------------------------------------------------

constexpr int64_t kMaxSequence = int64_t(1) << 28;  // keeps every int in the kernels' index math far from overflow
constexpr int64_t kMaxExtent = int64_t(1) << 30;

bool is_float_dtype(int32_t dtype) { return dtype == ATTNKIT_CUDA_FLOAT32 || dtype == ATTNKIT_CUDA_FLOAT16 || dtype == ATTNKIT_CUDA_BFLOAT16; }

// What only this library must know (the caller validated extents against allocations): dtypes it
// can read, ranks, and sizes that fit the kernels' 32-bit row / head / dim indices.
attnkit_cuda_status check_attention_args(const attnkit_cuda_attention_args& a, char* err, size_t err_len) {
  if (!is_float_dtype(a.q.dtype) || a.k.dtype != a.q.dtype || a.v.dtype != a.q.dtype)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "q, k, v must share one of float32 / float16 / bfloat16 (got dtypes %d, %d, %d)",
                a.q.dtype, a.k.dtype, a.v.dtype);
  if (!is_float_dtype(a.out.dtype)) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "out must be a float dtype (got %d)", a.out.dtype);
  if (a.bias != nullptr && !is_float_dtype(a.bias_dtype))
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "bias must be a float dtype (got %d)", a.bias_dtype);
  if (a.q.rank != 4 || a.k.rank != 4 || a.v.rank != 4 || a.out.rank != 4)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "q, k, v, out must be 4-d (ranks %d, %d, %d, %d)", a.q.rank, a.k.rank,
                a.v.rank, a.out.rank);
  if (a.heads_kv <= 0 || a.heads_q < 0 || a.heads_q % a.heads_kv != 0)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "heads_q (%lld) must be a multiple of heads_kv (%lld)",
                (long long)a.heads_q, (long long)a.heads_kv);
  if (a.batch < 0 || a.seq_q < 0 || a.seq_k < 0 || a.head_dim < 0 || a.head_dim_v < 0 || a.batch > kMaxExtent ||
      a.heads_q > kMaxExtent || a.seq_q > kMaxSequence || a.seq_k > kMaxSequence || a.head_dim > kMaxExtent ||
      a.head_dim_v > kMaxExtent)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT,
                "attention extents out of the CUDA kernels' range (B %lld, Hq %lld, Sq %lld, Sk %lld, D %lld, Dv %lld; "
                "sequences up to 2^28)",
                (long long)a.batch, (long long)a.heads_q, (long long)a.seq_q, (long long)a.seq_k, (long long)a.head_dim,
                (long long)a.head_dim_v);
  return ATTNKIT_CUDA_OK;
}

// Checks cu_seqlens (host) once more, since the kernels index with them, and finds the longest segment.
attnkit_cuda_status check_cu_seqlens(const int32_t* cu, int64_t segments, int64_t total, const char* name, int* max_len,
                                     char* err, size_t err_len) {
  if (cu == nullptr) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "%s must be given with num_segments", name);
  int64_t longest = 0;
  if (cu[0] < 0) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "%s[0] must be >= 0, got %d", name, int(cu[0]));
  for (int64_t s = 0; s < segments; ++s) {
    if (cu[s + 1] < cu[s])
      return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "%s must not decrease (entry %lld)", name, (long long)(s + 1));
    longest = std::max<int64_t>(longest, int64_t(cu[s + 1]) - cu[s]);
  }
  if (cu[segments] > total)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "%s ends at %d, past the %lld packed rows", name, int(cu[segments]),
                (long long)total);
  *max_len = int(longest);
  return ATTNKIT_CUDA_OK;
}

void copy_strides(const attnkit_cuda_tensor& t, int64_t* stride) {
  for (int i = 0; i < 4; ++i) stride[i] = t.strides[i];
}

// A window side or sink count as the kernels' int: anything at least as long as both sequences
// together means the same as that bound, so clamping there is exact.
int clamp_window(int64_t w, int64_t bound) { return w < 0 ? -1 : int(std::min(w, bound)); }

FusedAttentionProblem make_problem(const attnkit_cuda_attention_args& a) {
  FusedAttentionProblem p;
  std::memset(&p, 0, sizeof(p));
  p.q = a.q.data;
  p.k = a.k.data;
  p.v = a.v.data;
  p.out = a.out.data;
  copy_strides(a.q, p.q_stride);
  copy_strides(a.k, p.k_stride);
  copy_strides(a.v, p.v_stride);
  copy_strides(a.out, p.o_stride);
  p.dtype = a.q.dtype;
  p.out_dtype = a.out.dtype;
  p.batch = int(a.batch);
  p.heads_q = int(a.heads_q);
  p.heads_kv = int(a.heads_kv);
  p.seq_q = int(a.seq_q);
  p.seq_k = int(a.seq_k);
  p.head_dim = int(a.head_dim);
  p.head_dim_v = int(a.head_dim_v);
  p.group = int(a.heads_q / a.heads_kv);
  p.scale = a.scale;
  p.softcap = a.softcap > 0.0f ? a.softcap : 0.0f;
  p.causal = a.causal ? 1 : 0;
  const int64_t bound = a.seq_q + a.seq_k + 1;
  p.window_left = clamp_window(a.window_left, bound);
  p.window_right = clamp_window(a.window_right, bound);
  p.sinks = int(std::min(std::max<int64_t>(a.sinks, 0), a.seq_k));
  p.bias = a.bias;
  p.bias_dtype = a.bias_dtype;
  for (int i = 0; i < 4; ++i) p.bias_stride[i] = a.bias_strides[i];
  p.mask = a.mask;
  for (int i = 0; i < 4; ++i) p.mask_stride[i] = a.mask_strides[i];
  p.lse = a.lse;
  p.max_seqlen_q = p.seq_q;
  p.max_seqlen_k = p.seq_k;
  return p;  // device tables (slopes, sink logits, cu_seqlens) are filled in after the upload
}

// The fastest kernel that takes the problem: sm_90a, else sm_80, else the generic one, which
// takes everything. A fast kernel that declines at launch time (cudaErrorNotSupported, before it
// enqueued anything) hands over to the next.
cudaError_t dispatch_attention(const FusedAttentionProblem& p, const DeviceTraits& t, cudaStream_t stream,
                               const char** kernel) {
  const bool keys_exist = p.max_seqlen_k > 0;  // empty key sets: the generic kernel writes zeros / -inf
  if (keys_exist && fused_attention_sm90_supports(p, t)) {
    *kernel = "sm90";
    const cudaError_t e = launch_fused_attention_sm90(p, t, stream);
    if (e != cudaErrorNotSupported) return e;
    cudaGetLastError();
  }
  if (keys_exist && fused_attention_sm80_supports(p, t)) {
    *kernel = "sm80";
    const cudaError_t e = launch_fused_attention_sm80(p, t, stream);
    if (e != cudaErrorNotSupported) return e;
    cudaGetLastError();
  }
  *kernel = "generic";
  return launch_fused_attention_generic(p, t, stream);
}

attnkit_cuda_status attention_impl(const attnkit_cuda_attention_args* args, char* err, size_t err_len) {
  if (args == nullptr) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "args must not be NULL");
  const attnkit_cuda_attention_args& a = *args;
  attnkit_cuda_status s = check_attention_args(a, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  const bool varlen = a.cu_seqlens_q != nullptr || a.cu_seqlens_k != nullptr;
  if (varlen && (a.batch != 1 || a.num_segments < 0 || a.num_segments > kMaxExtent))
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "varlen attention needs batch 1 and 0 <= num_segments (got %lld, %lld)",
                (long long)a.batch, (long long)a.num_segments);
  if (a.batch == 0 || a.heads_q == 0 || a.seq_q == 0 || (varlen && a.num_segments == 0)) return ATTNKIT_CUDA_OK;

  FusedAttentionProblem p = make_problem(a);
  if (varlen) {
    s = check_cu_seqlens(a.cu_seqlens_q, a.num_segments, a.seq_q, "cu_seqlens_q", &p.max_seqlen_q, err, err_len);
    if (s == ATTNKIT_CUDA_OK)
      s = check_cu_seqlens(a.cu_seqlens_k, a.num_segments, a.seq_k, "cu_seqlens_k", &p.max_seqlen_k, err, err_len);
    if (s != ATTNKIT_CUDA_OK) return s;
    p.num_segments = int(a.num_segments);
  }

  DeviceHandle h;
  s = enter_device(a.device, &h, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;

  // The small host tables go to the device in one copy.
  TablePack pack;
  const size_t head_bytes = size_t(a.heads_q) * sizeof(float);
  const size_t cu_bytes = size_t(a.num_segments + 1) * sizeof(int32_t);
  const size_t slopes_at = a.alibi_slopes ? pack.add(a.alibi_slopes, head_bytes) : 0;
  const size_t sinks_at = a.sink_logits ? pack.add(a.sink_logits, head_bytes) : 0;
  const size_t cu_q_at = varlen ? pack.add(a.cu_seqlens_q, cu_bytes) : 0;
  const size_t cu_k_at = varlen ? pack.add(a.cu_seqlens_k, cu_bytes) : 0;
  ScratchBuffer scratch;  // declared before any enqueue: released after the sync below
  s = upload_tables(h, pack, scratch, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  if (a.alibi_slopes) p.alibi_slopes = at_offset<float>(scratch, slopes_at);
  if (a.sink_logits) p.sink_logits = at_offset<float>(scratch, sinks_at);
  if (varlen) {
    p.cu_seqlens_q = at_offset<int32_t>(scratch, cu_q_at);
    p.cu_seqlens_k = at_offset<int32_t>(scratch, cu_k_at);
  }

  const char* kernel = "generic";
  const cudaError_t launched = dispatch_attention(p, h.traits, h.stream, &kernel);
  // Wait even after a failed launch: the table upload may still be in flight.
  const cudaError_t finished = cudaStreamSynchronize(h.stream);
  char what[96];
  std::snprintf(what, sizeof(what), "fused attention (%s kernel)", kernel);
  if (launched != cudaSuccess) return cuda_failure(launched, what, err, err_len);
  if (finished != cudaSuccess) return cuda_failure(finished, what, err, err_len);
  return ATTNKIT_CUDA_OK;
}

// ---- attention-state merge --------------------------------------------------------------------

attnkit_cuda_status merge_states_impl(const attnkit_cuda_merge_args* args, char* err, size_t err_len) {
  if (args == nullptr) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "args must not be NULL");
  const attnkit_cuda_merge_args& a = *args;
  if (a.parts <= 0 || a.outs == nullptr || a.lses == nullptr || a.lse == nullptr)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "merge needs at least one part with out and lse (parts %d)", int(a.parts));
  if (a.out.rank != 4 || !is_float_dtype(a.out.dtype))
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "merge out must be a 4-d float tensor (rank %d, dtype %d)", a.out.rank,
                a.out.dtype);
  std::vector<MergePart> parts(size_t(a.parts));
  for (int32_t i = 0; i < a.parts; ++i) {
    const attnkit_cuda_tensor& t = a.outs[i];
    if (t.rank != 4 || !is_float_dtype(t.dtype) || a.lses[i] == nullptr)
      return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "merge part %d must be a 4-d float out with an lse", int(i));
    for (int d = 0; d < 4; ++d)
      if (t.shape[d] != a.out.shape[d])
        return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "merge part %d has another shape than out", int(i));
    parts[size_t(i)].out = t.data;
    parts[size_t(i)].dtype = t.dtype;
    copy_strides(t, parts[size_t(i)].stride);
    parts[size_t(i)].lse = a.lses[i];
  }
  MergeProblem p;
  p.num_parts = a.parts;
  p.out = a.out.data;
  p.out_dtype = a.out.dtype;
  copy_strides(a.out, p.out_stride);
  p.lse = a.lse;
  p.batch = a.out.shape[0];
  p.heads = a.out.shape[1];
  p.seq = a.out.shape[2];
  p.head_dim_v = a.out.shape[3];
  if (p.batch * p.heads * p.seq == 0) return ATTNKIT_CUDA_OK;

  DeviceHandle h;
  attnkit_cuda_status s = enter_device(a.device, &h, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  TablePack pack;
  const size_t parts_at = pack.add(parts.data(), parts.size() * sizeof(MergePart));
  ScratchBuffer scratch;
  s = upload_tables(h, pack, scratch, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  p.parts = at_offset<const MergePart>(scratch, parts_at);

  const cudaError_t launched = launch_merge_attention_states(p, h.traits.multiprocessors, h.stream);
  const cudaError_t finished = cudaStreamSynchronize(h.stream);
  if (launched != cudaSuccess) return cuda_failure(launched, "mergeAttentionStates kernel", err, err_len);
  if (finished != cudaSuccess) return cuda_failure(finished, "mergeAttentionStates kernel", err, err_len);
  return ATTNKIT_CUDA_OK;
}

// ---- the shells in the table: nothing may throw across the C boundary ---------------------------

#define ATTNKIT_GUARDED(call)                                                                              \
  try {                                                                                                    \
    return call;                                                                                           \
  } catch (const std::bad_alloc&) {                                                                        \
    return fail(err, err_len, ATTNKIT_CUDA_OOM, "out of host memory");                                     \
  } catch (...) {                                                                                          \
    return fail(err, err_len, ATTNKIT_CUDA_INTERNAL, "unexpected C++ exception in libattnkit_cuda");      \
  }

attnkit_cuda_status api_device_count(int32_t* count, char* err, size_t err_len) {
  ATTNKIT_GUARDED(device_count_impl(count, err, err_len))
}
attnkit_cuda_status api_device_info(int32_t device, attnkit_cuda_device_info* info, char* err, size_t err_len) {
  ATTNKIT_GUARDED(device_info_impl(device, info, err, err_len))
}
attnkit_cuda_status api_malloc(int32_t device, size_t bytes, void** ptr, char* err, size_t err_len) {
  ATTNKIT_GUARDED(malloc_impl(device, bytes, ptr, err, err_len))
}
void api_free(int32_t device, void* ptr) {
  try {
    free_impl(device, ptr);
  } catch (...) {
  }
}
attnkit_cuda_status api_memset_zero(int32_t device, void* ptr, size_t bytes, char* err, size_t err_len) {
  ATTNKIT_GUARDED(memset_zero_impl(device, ptr, bytes, err, err_len))
}
attnkit_cuda_status api_copy_to_device(int32_t device, void* dst, const void* src, size_t bytes, char* err,
                                       size_t err_len) {
  ATTNKIT_GUARDED(copy_impl(device, dst, src, bytes, cudaMemcpyHostToDevice, "copy to device", err, err_len))
}
attnkit_cuda_status api_copy_to_host(int32_t device, void* dst, const void* src, size_t bytes, char* err,
                                     size_t err_len) {
  ATTNKIT_GUARDED(copy_impl(device, dst, src, bytes, cudaMemcpyDeviceToHost, "copy to host", err, err_len))
}
attnkit_cuda_status api_copy_on_device(int32_t device, void* dst, const void* src, size_t bytes, char* err,
                                       size_t err_len) {
  ATTNKIT_GUARDED(copy_impl(device, dst, src, bytes, cudaMemcpyDeviceToDevice, "copy on device", err, err_len))
}
attnkit_cuda_status api_attention(const attnkit_cuda_attention_args* args, char* err, size_t err_len) {
  ATTNKIT_GUARDED(attention_impl(args, err, err_len))
}
attnkit_cuda_status api_merge_states(const attnkit_cuda_merge_args* args, char* err, size_t err_len) {
  ATTNKIT_GUARDED(merge_states_impl(args, err, err_len))
}

#define ATTNKIT_STR2(...) #__VA_ARGS__
#define ATTNKIT_STR(...) ATTNKIT_STR2(__VA_ARGS__)
#ifdef __CUDA_ARCH_LIST__
#define ATTNKIT_ARCHS ", virtual archs " ATTNKIT_STR(__CUDA_ARCH_LIST__)
#else
#define ATTNKIT_ARCHS ""
#endif

const char* build_info() {
  static const std::string info = "attnkit_cuda 0.1.0, CUDA " + std::to_string(CUDART_VERSION / 1000) + "." +
                                  std::to_string(CUDART_VERSION % 1000 / 10) + ATTNKIT_ARCHS;
  return info.c_str();
}

}  // namespace
}  // namespace cuda
}  // namespace attnkit

extern "C" __attribute__((visibility("default"))) const attnkit_cuda_api* attnkit_cuda_get_api(uint32_t abi_version) {
  using namespace attnkit::cuda;
  if (abi_version != ATTNKIT_CUDA_ABI_VERSION) return nullptr;
  try {
    static const attnkit_cuda_api api = {
        ATTNKIT_CUDA_ABI_VERSION, sizeof(attnkit_cuda_api), build_info(),
        api_device_count,         api_device_info,          api_malloc,
        api_free,                 api_memset_zero,          api_copy_to_device,
        api_copy_to_host,         api_copy_on_device,       api_attention,
        api_merge_states,
    };
    return &api;
  } catch (...) {
    return nullptr;
  }
}
