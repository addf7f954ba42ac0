// The C ABI of libattnkit_cuda (native/include/attnkit/attnkit_cuda.h): the one exported symbol,
// attnkit_cuda_get_api, and the table of entry points behind it.
//
// Every entry point is a thin extern-"C"-safe shell (catch everything, write a message) around a
// small C++ function. Per-device state (one non-blocking stream, the device's traits, a memory
// pool for per-call tables) lives in a mutex-guarded table that is never torn down: calls come
// from several libuv threads at once, and at process exit the CUDA runtime may already be gone.
// Every operation but attention_on_stream enqueues on the device's stream and synchronises it
// before returning, so a successful return means the results are in memory, and any asynchronous
// error is reported by the call that caused it. attention_on_stream takes the same path on the
// caller's stream and returns once the work is enqueued.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "attnkit/attnkit_cuda.h"
#include "decode/decode_attention.h"
#include "fused/fused_attention.h"
#include "linear/linear_attention.h"
#include "merge/merge_states.h"
#include "sparse/topk_select.h"

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

// The sm_90 block-mask kernel deals its work items from a device int that must read 0 when it
// starts (FusedAttentionProblem::work_counter). Each stream that launches it gets its own int,
// zeroed by a memset on that stream before each launch: launches on one stream run in order, so
// they never use a counter at the same time, and launches on different streams use different
// ones. The ints come from one array per device, allocated with the device's other state (a
// per-call allocation and upload cost tens of microseconds of host time per call, which the
// side-by-side benchmark counted). Past kWorkCounters streams the oldest assignment is reused.
constexpr int kWorkCounters = 256;

struct DeviceSlot {
  bool ready = false;
  cudaStream_t stream = nullptr;
  cudaMemPool_t pool = nullptr;  // per-call tables (see upload_tables)
  int* work_counters = nullptr;  // [kWorkCounters]
  std::vector<cudaStream_t> counter_streams;  // the stream each counter serves
  int next_counter = 0;
  DeviceTraits traits;
};

struct DeviceTable {
  std::mutex mutex;
  std::vector<DeviceSlot> slots;   // grown to the highest device used
  std::atomic<int> device_count{-1};  // -1 until read (see device_count_once)
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

// Kept between calls: enough for any call's tables many times over, so that a steady stream of
// calls allocates from memory the pool already holds instead of going back to the driver at every
// synchronisation (the default threshold, 0, returns everything unused whenever a stream syncs).
constexpr uint64_t kPoolKeepBytes = uint64_t(4) << 20;

// The device's pool for per-call tables. Its own pool rather than the device's default one, so
// that setting its release threshold leaves alone the default pool of whatever else shares the
// process (PyTorch, onnxruntime).
cudaError_t create_table_pool(int device, cudaMemPool_t* pool) {
  cudaMemPoolProps props;
  std::memset(&props, 0, sizeof(props));
  props.allocType = cudaMemAllocationTypePinned;
  props.handleTypes = cudaMemHandleTypeNone;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = device;
  cudaError_t e = cudaMemPoolCreate(pool, &props);
  if (e != cudaSuccess) return e;
  uint64_t keep = kPoolKeepBytes;
  e = cudaMemPoolSetAttribute(*pool, cudaMemPoolAttrReleaseThreshold, &keep);
  if (e != cudaSuccess) {
    cudaMemPoolDestroy(*pool);
    *pool = nullptr;
  }
  return e;
}

// What an entry point works with once it has entered a device.
struct DeviceHandle {
  int device = -1;
  cudaStream_t stream = nullptr;
  cudaMemPool_t pool = nullptr;
  DeviceTraits traits;
};

// The driver's device count, read once: devices neither come nor go while a process runs, and
// every call checks its device index. A failed read is not kept, so it is reported again.
cudaError_t device_count_once(int* count) {
  std::atomic<int>& cached = device_table().device_count;
  int n = cached.load(std::memory_order_relaxed);
  if (n < 0) {
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) return e;
    cached.store(n, std::memory_order_relaxed);
  }
  *count = n;
  return cudaSuccess;
}

attnkit_cuda_status check_device_index(int device, char* err, size_t err_len) {
  int count = 0;
  const cudaError_t e = device_count_once(&count);
  if (e != cudaSuccess) return cuda_failure(e, "cudaGetDeviceCount", err, err_len);
  if (device < 0 || device >= count)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "device must be in [0, %d), got %d", count, device);
  return ATTNKIT_CUDA_OK;
}

// A device's state on its first use (the current device is `device`). Each piece is kept as soon
// as it exists, so a retry after a failure creates only what is still missing.
attnkit_cuda_status init_slot(int device, DeviceSlot& slot, char* err, size_t err_len) {
  cudaError_t e = read_traits(device, &slot.traits);
  if (e != cudaSuccess) return cuda_failure(e, "reading the device's attributes", err, err_len);
  if (slot.stream == nullptr) {
    e = cudaStreamCreateWithFlags(&slot.stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
      slot.stream = nullptr;
      return cuda_failure(e, "cudaStreamCreateWithFlags", err, err_len);
    }
  }
  if (slot.pool == nullptr) {
    e = create_table_pool(device, &slot.pool);
    if (e != cudaSuccess) return cuda_failure(e, "creating the device's memory pool (cudaMemPoolCreate)", err, err_len);
  }
  if (slot.work_counters == nullptr) {
    e = cudaMalloc(&slot.work_counters, kWorkCounters * sizeof(int));
    if (e != cudaSuccess) {
      slot.work_counters = nullptr;
      return cuda_failure(e, "allocating the device's work counters", err, err_len);
    }
  }
  slot.ready = true;
  return ATTNKIT_CUDA_OK;
}

// Makes `device` current on this thread; sets up its state on first use.
attnkit_cuda_status enter_device(int device, DeviceHandle* h, char* err, size_t err_len) {
  const attnkit_cuda_status s = check_device_index(device, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  const cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) return cuda_failure(e, "cudaSetDevice", err, err_len);
  DeviceTable& table = device_table();
  std::lock_guard<std::mutex> lock(table.mutex);
  if (table.slots.size() <= size_t(device)) table.slots.resize(size_t(device) + 1);
  DeviceSlot& slot = table.slots[size_t(device)];
  if (!slot.ready) {
    const attnkit_cuda_status init = init_slot(device, slot, err, err_len);
    if (init != ATTNKIT_CUDA_OK) return init;
  }
  h->device = device;
  h->stream = slot.stream;
  h->pool = slot.pool;
  h->traits = slot.traits;
  return ATTNKIT_CUDA_OK;
}

// The work counter of `stream` on h's device (see kWorkCounters), zeroed on that stream.
attnkit_cuda_status stream_work_counter(const DeviceHandle& h, cudaStream_t stream, int** counter, char* err,
                                        size_t err_len) {
  {
    DeviceTable& table = device_table();
    std::lock_guard<std::mutex> lock(table.mutex);
    DeviceSlot& slot = table.slots[size_t(h.device)];
    if (slot.counter_streams.empty()) slot.counter_streams.assign(kWorkCounters, nullptr);
    int index = -1;
    for (int i = 0; i < kWorkCounters && index < 0; ++i)
      if (slot.counter_streams[size_t(i)] == stream && i < slot.next_counter) index = i;
    if (index < 0) {
      index = slot.next_counter++ % kWorkCounters;
      slot.counter_streams[size_t(index)] = stream;
    }
    *counter = slot.work_counters + index;
  }
  const cudaError_t e = cudaMemsetAsync(*counter, 0, sizeof(int), stream);
  if (e != cudaSuccess) return cuda_failure(e, "zeroing the call's work counter", err, err_len);
  return ATTNKIT_CUDA_OK;
}

// Waits for the device's stream and reports the first error of the work on it.
attnkit_cuda_status finish_stream(const DeviceHandle& h, const char* what, char* err, size_t err_len) {
  const cudaError_t e = cudaStreamSynchronize(h.stream);
  if (e != cudaSuccess) return cuda_failure(e, what, err, err_len);
  return ATTNKIT_CUDA_OK;
}

// Where a call's work goes. The stream-ordered entry enqueues on the caller's stream and returns;
// the blocking entries enqueue on the device's own stream and wait for it.
struct CallStream {
  bool blocking;
  cudaStream_t caller;  // when !blocking; NULL: the legacy default stream
};
constexpr CallStream kBlocking{true, nullptr};

// The stream a call enqueues on. A caller's stream must belong to the call's device, where the
// kernels, the pool and the tables are; NULL and the two special handles name a stream of the
// current device, which enter_device has just set.
attnkit_cuda_status call_stream(const CallStream& where, const DeviceHandle& h, cudaStream_t* stream, char* err,
                                size_t err_len) {
  *stream = where.blocking ? h.stream : where.caller;
  if (where.blocking || *stream == nullptr || *stream == cudaStreamLegacy || *stream == cudaStreamPerThread)
    return ATTNKIT_CUDA_OK;
  int owner = -1;
  const cudaError_t e = cudaStreamGetDevice(*stream, &owner);
  if (e != cudaSuccess) return cuda_failure(e, "cudaStreamGetDevice of the caller's stream", err, err_len);
  if (owner != h.device)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "stream belongs to device %d, but args->device is %d", owner,
                h.device);
  return ATTNKIT_CUDA_OK;
}

// How every entry with a CallStream begins: enter_device, then the stream the call enqueues on.
attnkit_cuda_status enter_call(int device, const CallStream& where, DeviceHandle* h, cudaStream_t* stream, char* err,
                               size_t err_len) {
  const attnkit_cuda_status s = enter_device(device, h, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  return call_stream(where, *h, stream, err, err_len);
}

// The end of a call whose kernel launch returned `launched`: a blocking call waits for its stream,
// also after a failed launch, so that nothing of the call is still in flight when it returns.
attnkit_cuda_status finish_call(const CallStream& where, const DeviceHandle& h, cudaError_t launched, const char* what,
                                char* err, size_t err_len) {
  const cudaError_t finished = where.blocking ? cudaStreamSynchronize(h.stream) : cudaSuccess;
  if (launched != cudaSuccess) return cuda_failure(launched, what, err, err_len);
  if (finished != cudaSuccess) return cuda_failure(finished, what, err, err_len);
  return ATTNKIT_CUDA_OK;
}

// ---- per-call device tables ---------------------------------------------------------------------
//
// A call's small host tables (ALiBi slopes, sink logits, cu_seqlens, merge parts) go to memory
// allocated from the device's pool on the call's stream, and are freed on that stream right after
// the kernel: stream order keeps the memory alive exactly as long as the work that reads it, on
// any stream, with nothing for the host to track; under stream capture the pair becomes graph
// allocation / free nodes.
//
// The bytes travel as kernel parameters, not as a cudaMemcpyAsync from host memory: both leave
// the host pack free to die once the call returns, but under stream capture a memcpy becomes a
// graph node that re-reads the host address at every replay (onnxruntime and Paddle keep such
// host buffers alive for the graph's lifetime for that reason), while a kernel node keeps its
// parameters by value.

// Host bytes laid out for one upload of a call's tables; each piece 256-byte aligned. Held in a
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

constexpr size_t kTableChunkBytes = 4000;  // with dst and bytes, under the 4 KB kernel-parameter limit
constexpr unsigned kTableThreads = 256;

struct TableChunk {
  unsigned char* dst;
  uint32_t bytes;
  unsigned char data[kTableChunkBytes];
};

// __grid_constant__: the threads read the parameter where it is, with no local copy.
__global__ void write_table_chunk(const __grid_constant__ TableChunk chunk) {
  for (uint32_t i = threadIdx.x; i < chunk.bytes; i += blockDim.x) chunk.dst[i] = chunk.data[i];
}

cudaError_t write_tables(const TablePack& pack, void* tables, cudaStream_t stream) {
  const unsigned char* src = static_cast<const unsigned char*>(pack.data());
  TableChunk chunk;
  for (size_t at = 0; at < pack.size(); at += kTableChunkBytes) {
    chunk.dst = static_cast<unsigned char*>(tables) + at;
    chunk.bytes = uint32_t(std::min(kTableChunkBytes, pack.size() - at));
    std::memcpy(chunk.data, src + at, chunk.bytes);
    write_table_chunk<<<1, kTableThreads, 0, stream>>>(chunk);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

// Frees a call's tables in stream order, after the work enqueued before (launched or not).
void release_tables(void* tables, cudaStream_t stream) {
  if (tables != nullptr && cudaFreeAsync(tables, stream) != cudaSuccess) cudaGetLastError();
}

// Allocates the call's tables from the device's pool and writes `pack` into them, on `stream`.
// *tables stays NULL when the pack is empty; otherwise release_tables it after the launch.
attnkit_cuda_status upload_tables(const DeviceHandle& h, cudaStream_t stream, const TablePack& pack, void** tables,
                                  char* err, size_t err_len) {
  *tables = nullptr;
  if (pack.size() == 0) return ATTNKIT_CUDA_OK;
  cudaError_t e = cudaMallocFromPoolAsync(tables, pack.size(), h.pool, stream);
  if (e != cudaSuccess) {
    *tables = nullptr;
    return cuda_failure(e, "allocating device memory for the call's tables", err, err_len);
  }
  e = write_tables(pack, *tables, stream);
  if (e != cudaSuccess) {
    release_tables(*tables, stream);
    *tables = nullptr;
    return cuda_failure(e, "writing the call's tables to the device", err, err_len);
  }
  return ATTNKIT_CUDA_OK;
}

template <typename T>
T* at_offset(void* tables, size_t offset) {
  return reinterpret_cast<T*>(static_cast<unsigned char*>(tables) + offset);
}

// ---- devices and memory -----------------------------------------------------------------------

attnkit_cuda_status device_count_impl(int32_t* count, char* err, size_t err_len) {
  if (count == nullptr) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "count must not be NULL");
  *count = 0;
  int n = 0;
  const cudaError_t e = device_count_once(&n);
  if (e != cudaSuccess) return cuda_failure(e, "cudaGetDeviceCount", err, err_len);
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

// The one attention path: `attention` is this on the device's stream with a wait, and
// `attention_on_stream` on the caller's stream without one.
attnkit_cuda_status attention_impl(const attnkit_cuda_attention_args* args, const attnkit_cuda_block_mask* blocks,
                                   const attnkit_cuda_element_mask* elements, const CallStream& where, char* err,
                                   size_t err_len) {
  if (args == nullptr) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "args must not be NULL");
  const attnkit_cuda_attention_args& a = *args;
  attnkit_cuda_status s = check_attention_args(a, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  if (blocks && (blocks->states == nullptr || blocks->block_q < 1 || blocks->block_k < 1 || blocks->block_q > kMaxExtent ||
                 blocks->block_k > kMaxExtent))
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "block mask needs states and block sizes in [1, %lld] (got %lld, %lld)",
                (long long)kMaxExtent, (long long)(blocks ? blocks->block_q : 0), (long long)(blocks ? blocks->block_k : 0));
  const bool varlen = a.cu_seqlens_q != nullptr || a.cu_seqlens_k != nullptr;
  if (varlen && (a.batch != 1 || a.num_segments < 0 || a.num_segments > kMaxExtent))
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "varlen attention needs batch 1 and 0 <= num_segments (got %lld, %lld)",
                (long long)a.batch, (long long)a.num_segments);
  if (a.batch == 0 || a.heads_q == 0 || a.seq_q == 0 || (varlen && a.num_segments == 0)) return ATTNKIT_CUDA_OK;

  FusedAttentionProblem p = make_problem(a);
  if (blocks) {
    p.block_mask = blocks->states;
    for (int i = 0; i < 4; ++i) p.block_mask_stride[i] = blocks->strides[i];
    p.block_q = int(blocks->block_q);
    p.block_k = int(blocks->block_k);
  }
  if (elements) {
    if (!blocks || elements->index == nullptr || elements->bitmaps < 0 || elements->bitmaps > kMaxExtent ||
        (elements->bitmaps > 0 && elements->bits == nullptr))
      return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "element mask needs a block mask, an index and 0 <= bitmaps <= %lld with bits",
                  (long long)kMaxExtent);
    p.element_index = elements->index;
    for (int i = 0; i < 4; ++i) p.element_index_stride[i] = elements->index_strides[i];
    p.element_bits = elements->bits;
    p.element_bitmaps = int(elements->bitmaps);
    p.element_words = (p.block_k + 31) / 32;
    // Without bitmaps every index must be -1 or hides its block: the kernels still need a
    // non-null pointer to know the mask is there.
    if (!p.element_bits) p.element_bits = reinterpret_cast<const uint32_t*>(elements->index);
  }
  if (varlen) {
    s = check_cu_seqlens(a.cu_seqlens_q, a.num_segments, a.seq_q, "cu_seqlens_q", &p.max_seqlen_q, err, err_len);
    if (s == ATTNKIT_CUDA_OK)
      s = check_cu_seqlens(a.cu_seqlens_k, a.num_segments, a.seq_k, "cu_seqlens_k", &p.max_seqlen_k, err, err_len);
    if (s != ATTNKIT_CUDA_OK) return s;
    p.num_segments = int(a.num_segments);
  }

  DeviceHandle h;
  cudaStream_t stream = nullptr;
  s = enter_call(a.device, where, &h, &stream, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;

  // The small host tables go to the device in one upload.
  TablePack pack;
  const size_t head_bytes = size_t(a.heads_q) * sizeof(float);
  const size_t cu_bytes = size_t(a.num_segments + 1) * sizeof(int32_t);
  const size_t slopes_at = a.alibi_slopes ? pack.add(a.alibi_slopes, head_bytes) : 0;
  const size_t sinks_at = a.sink_logits ? pack.add(a.sink_logits, head_bytes) : 0;
  const size_t cu_q_at = varlen ? pack.add(a.cu_seqlens_q, cu_bytes) : 0;
  const size_t cu_k_at = varlen ? pack.add(a.cu_seqlens_k, cu_bytes) : 0;
  void* tables = nullptr;
  s = upload_tables(h, stream, pack, &tables, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  if (a.alibi_slopes) p.alibi_slopes = at_offset<float>(tables, slopes_at);
  if (a.sink_logits) p.sink_logits = at_offset<float>(tables, sinks_at);
  if (varlen) {
    p.cu_seqlens_q = at_offset<int32_t>(tables, cu_q_at);
    p.cu_seqlens_k = at_offset<int32_t>(tables, cu_k_at);
  }
  if (blocks) {
    s = stream_work_counter(h, stream, &p.work_counter, err, err_len);
    if (s != ATTNKIT_CUDA_OK) {
      release_tables(tables, stream);
      return s;
    }
  }

  const char* kernel = "generic";
  const cudaError_t launched = dispatch_attention(p, h.traits, stream, &kernel);
  release_tables(tables, stream);
  char what[96];
  std::snprintf(what, sizeof(what), "fused attention (%s kernel)", kernel);
  return finish_call(where, h, launched, what, err, err_len);
}

// ---- linear attention ---------------------------------------------------------------------------

LinearTensor linear_tensor(const attnkit_cuda_tensor& t) {
  LinearTensor l;
  l.data = t.data;
  l.dtype = t.dtype;
  for (int i = 0; i < 4 && i < t.rank; ++i) l.stride[i] = t.strides[i];
  return l;
}

// What native/core validated, re-checked only as far as the kernels' own safety needs (ranks,
// dtypes, extents that keep their int math in range, the pointers an option implies).
attnkit_cuda_status check_linear_args(const attnkit_cuda_linear_args& a, char* err, size_t err_len) {
  if (!is_float_dtype(a.q.dtype) || a.k.dtype != a.q.dtype || a.v.dtype != a.q.dtype || !is_float_dtype(a.out.dtype))
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "linear attention: q, k, v must share a float dtype and out be float (got %d %d %d %d)",
                a.q.dtype, a.k.dtype, a.v.dtype, a.out.dtype);
  if (a.q.rank != 4 || a.k.rank != 4 || a.v.rank != 4 || a.out.rank != 4)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "linear attention: q, k, v and out must have rank 4");
  if (a.batch < 0 || a.heads < 0 || a.seq < 0 || a.dk < 1 || a.dv < 1 || a.batch > kMaxExtent || a.heads > kMaxExtent ||
      a.seq > kMaxSequence || a.dk > kMaxExtent || a.dv > kMaxExtent || a.batch * a.heads > kMaxExtent)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "linear attention: extents out of range (B %lld, H %lld, S %lld, Dk %lld, Dv %lld)",
                (long long)a.batch, (long long)a.heads, (long long)a.seq, (long long)a.dk, (long long)a.dv);
  if (a.feature_map < 0 || a.feature_map > 3 || a.gate_kind < 0 || a.gate_kind > 3)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "linear attention: unknown feature map %d or gate kind %d", a.feature_map, a.gate_kind);
  if (a.gate_kind >= 2 && (a.gates.data == nullptr || !is_float_dtype(a.gates.dtype) || a.gates.rank != (a.gate_kind == 3 ? 4 : 3)))
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "linear attention: log gates of kind %d need a float tensor of rank %d", a.gate_kind,
                a.gate_kind == 3 ? 4 : 3);
  if (a.gate_kind == 1 && a.decay_per_head == nullptr && !(a.decay > 0.0 && a.decay <= 1.0))
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "linear attention: decay must be in (0, 1], got %g", a.decay);
  const attnkit_cuda_tensor* states[] = {&a.initial_state, &a.initial_normalizer, &a.state_out, &a.normalizer_out};
  for (const attnkit_cuda_tensor* t : states)
    if (t->data != nullptr && t->dtype != ATTNKIT_CUDA_FLOAT32)
      return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "linear attention: states and normalizers must be float32");
  return ATTNKIT_CUDA_OK;
}

attnkit_cuda_status linear_attention_impl(const attnkit_cuda_linear_args* args, const CallStream& where, char* err,
                                          size_t err_len) {
  if (args == nullptr) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "args must not be NULL");
  const attnkit_cuda_linear_args& a = *args;
  attnkit_cuda_status s = check_linear_args(a, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  if (a.batch == 0 || a.heads == 0) return ATTNKIT_CUDA_OK;

  LinearProblem p;
  p.q = linear_tensor(a.q);
  p.k = linear_tensor(a.k);
  p.v = linear_tensor(a.v);
  p.out = linear_tensor(a.out);
  p.batch = a.batch;
  p.heads = a.heads;
  p.seq = a.seq;
  p.dk = a.dk;
  p.dv = a.dv;
  p.causal = a.causal ? 1 : 0;
  p.feature_map = a.feature_map;
  p.normalize = a.normalize ? 1 : 0;
  p.gate_kind = a.gate_kind;
  p.scale = a.scale;
  p.gates = linear_tensor(a.gates);
  if (a.initial_state.data) {
    p.state_in = static_cast<const float*>(a.initial_state.data);
    copy_strides(a.initial_state, p.state_in_stride);
  }
  if (a.state_out.data) {
    p.state_out = static_cast<float*>(a.state_out.data);
    copy_strides(a.state_out, p.state_out_stride);
  }
  if (a.normalize && a.initial_normalizer.data) {
    p.norm_in = static_cast<const float*>(a.initial_normalizer.data);
    for (int i = 0; i < 3; ++i) p.norm_in_stride[i] = a.initial_normalizer.strides[i];
  }
  if (a.normalize && a.normalizer_out.data) {
    p.norm_out = static_cast<float*>(a.normalizer_out.data);
    for (int i = 0; i < 3; ++i) p.norm_out_stride[i] = a.normalizer_out.strides[i];
  }
  if (a.gate_kind == 1 && !a.decay_per_head) p.log_decay = std::log(a.decay);

  DeviceHandle h;
  s = enter_device(a.device, &h, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  cudaStream_t stream = nullptr;
  s = call_stream(where, h, &stream, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;

  // One upload: the per-head log decays (double, as the CPU takes them), the bad-gate flag (a
  // blocking call reads it back), and room for the initial normalizer when a step updates it in
  // place (every value-column block reads it while the first one writes it).
  TablePack pack;
  std::string log_decay;  // doubles [H] (a std::string for the reason TablePack gives)
  if (a.gate_kind == 1 && a.decay_per_head) {
    log_decay.resize(size_t(a.heads) * sizeof(double));
    for (int64_t i = 0; i < a.heads; ++i) {
      const double x = std::log(double(a.decay_per_head[i]));
      std::memcpy(&log_decay[size_t(i) * sizeof(double)], &x, sizeof x);
    }
  }
  const size_t decay_at = log_decay.empty() ? 0 : pack.add(log_decay.data(), log_decay.size());
  const bool check_gates = where.blocking && a.gate_kind >= 2;
  const int32_t zero = 0;
  const size_t flag_at = check_gates ? pack.add(&zero, sizeof zero) : 0;
  void* tables = nullptr;
  s = upload_tables(h, stream, pack, &tables, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  void* norm_copy = nullptr;
  if (p.norm_in && p.norm_in == p.norm_out) {
    const cudaError_t e = cudaMallocFromPoolAsync(&norm_copy, size_t(a.batch * a.heads * a.dk) * sizeof(float), h.pool, stream);
    if (e != cudaSuccess) {
      release_tables(tables, stream);
      return cuda_failure(e, "allocating the copy of the normalizer updated in place", err, err_len);
    }
    const cudaError_t copied = launch_linear_copy_normalizer(p, static_cast<float*>(norm_copy), stream);
    if (copied != cudaSuccess) {
      release_tables(norm_copy, stream);
      release_tables(tables, stream);
      return cuda_failure(copied, "copying the normalizer updated in place", err, err_len);
    }
    p.norm_in = static_cast<const float*>(norm_copy);
    for (int i = 0; i < 3; ++i) p.norm_in_stride[i] = i == 0 ? a.heads * a.dk : i == 1 ? a.dk : 1;
  }
  if (!log_decay.empty()) p.log_decay_per_head = at_offset<const double>(tables, decay_at);
  if (check_gates) p.bad_gates = at_offset<int>(tables, flag_at);

  // GLA on the tensor cores: the diagonal blocks' scratch, in stream order like the tables.
  void* scratch = nullptr;
  const size_t scratch_bytes = linear_attention_scratch_bytes(p, h.traits.cc_major);
  if (scratch_bytes > 0) {
    const cudaError_t e = cudaMallocFromPoolAsync(&scratch, scratch_bytes, h.pool, stream);
    if (e != cudaSuccess) {
      release_tables(norm_copy, stream);
      release_tables(tables, stream);
      return cuda_failure(e, "allocating the scratch of linear attention's diagonal blocks", err, err_len);
    }
    p.gla_diag = static_cast<float*>(scratch);
  }
  const char* kernel = "generic";
  const cudaError_t launched = launch_linear_attention(p, h.traits.cc_major, h.traits.multiprocessors, h.traits.max_shared_per_block_optin, stream, &kernel);
  int32_t bad = 0;
  cudaError_t readback = cudaSuccess;
  if (check_gates && launched == cudaSuccess) readback = cudaMemcpyAsync(&bad, p.bad_gates, sizeof bad, cudaMemcpyDeviceToHost, stream);
  release_tables(tables, stream);
  release_tables(norm_copy, stream);
  release_tables(scratch, stream);
  char what[96];
  std::snprintf(what, sizeof(what), "linear attention (%s kernel)", kernel);
  if (launched == cudaErrorInvalidValue && kernel[0] == 'g') {
    finish_call(where, h, cudaSuccess, what, err, err_len);
    cudaGetLastError();
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "linear attention: key dim Dk %lld needs more shared memory than the device has",
                (long long)a.dk);
  }
  s = finish_call(where, h, launched != cudaSuccess ? launched : readback, what, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  if (bad)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT,
                "logGates must be log forget gates (<= 0, -Infinity allowed; not NaN), got a value > 0 or NaN");
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
  void* tables = nullptr;
  s = upload_tables(h, h.stream, pack, &tables, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  p.parts = at_offset<const MergePart>(tables, parts_at);

  const cudaError_t launched = launch_merge_attention_states(p, h.traits.multiprocessors, h.stream);
  release_tables(tables, h.stream);
  return finish_call(kBlocking, h, launched, "mergeAttentionStates kernel", err, err_len);
}

attnkit_cuda_status topk_block_select_impl(const attnkit_cuda_topk_args* args, char* err, size_t err_len) {
  if (args == nullptr) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "args must not be NULL");
  const attnkit_cuda_topk_args& a = *args;
  if (a.q.rank != 4 || a.k.rank != 4 || !is_float_dtype(a.q.dtype) || !is_float_dtype(a.k.dtype) || a.states == nullptr ||
      a.indices == nullptr || a.block_size < 1 || a.topk < 1)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "topk_block_select needs 4-d float q and k, states, indices, block_size and topk >= 1");
  TopkSelectProblem p;
  p.q = a.q.data;
  p.q_dtype = a.q.dtype;
  copy_strides(a.q, p.q_stride);
  p.k = a.k.data;
  p.k_dtype = a.k.dtype;
  copy_strides(a.k, p.k_stride);
  p.batch = a.q.shape[0];
  p.heads_q = a.q.shape[1];
  p.heads_kv = a.k.shape[1];
  p.seq_q = a.q.shape[2];
  p.seq_k = a.k.shape[2];
  p.head_dim = a.q.shape[3];
  p.block = a.block_size;
  p.topk = a.topk;
  p.causal = a.causal != 0;
  p.states = a.states;
  p.indices = a.indices;
  if (p.heads_kv < 1 || p.heads_q % p.heads_kv != 0 || a.k.shape[0] != p.batch || a.k.shape[3] != p.head_dim)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "topk_block_select: k does not fit q (same B and D, Hq a multiple of Hkv)");
  const int64_t nkb = (p.seq_k + p.block - 1) / p.block;
  if (nkb > topk_select_max_key_blocks())
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT,
                "topkBlockAttention on the device handles at most %lld key blocks (ceil(seqLenK / blockSize) = %lld): use a larger blockSize",
                (long long)topk_select_max_key_blocks(), (long long)nkb);
  if (p.batch * p.heads_q * p.seq_q == 0) return ATTNKIT_CUDA_OK;

  DeviceHandle h;
  attnkit_cuda_status s = enter_device(a.device, &h, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  // The block means (float64) live for the call only: from the device's pool, in stream order.
  void* scratch = nullptr;
  cudaError_t e = cudaMallocFromPoolAsync(&scratch, topk_select_scratch_bytes(p), h.pool, h.stream);
  if (e != cudaSuccess) return cuda_failure(e, "allocating the block means (cudaMallocFromPoolAsync)", err, err_len);
  const cudaError_t launched = launch_topk_select(p, scratch, h.stream);
  cudaFreeAsync(scratch, h.stream);
  return finish_call(kBlocking, h, launched, "topk_block_select kernels", err, err_len);
}

// ---- decode attention over a paged KV cache ------------------------------------------------------

// The stream of a call with a `blocking` flag: the library's (then a wait) or the caller's.
CallStream stream_choice(void* stream, int32_t blocking) {
  return blocking ? kBlocking : CallStream{false, static_cast<cudaStream_t>(stream)};
}

attnkit_cuda_status decode_impl(const attnkit_cuda_decode_args* args, const CallStream& where, char* err,
                                size_t err_len) {
  if (args == nullptr) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "args must not be NULL");
  const attnkit_cuda_decode_args& a = *args;
  if (!is_float_dtype(a.q.dtype) || !is_float_dtype(a.out.dtype) || a.q.rank != 4 || a.out.rank != 4)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "decode q and out must be 4-d float tensors (dtypes %d, %d)",
                a.q.dtype, a.out.dtype);
  if (a.batch < 0 || a.batch > kMaxExtent || a.heads_q < 0 || a.heads_q > kMaxExtent || a.seq_q < 0 ||
      a.seq_q > kMaxSequence || a.pool_pages < 0 || a.table_width < 0 || a.page_size < 1 || a.page_size > kMaxExtent ||
      a.max_length < 0 || a.max_length > INT32_MAX || a.splits < 0 || a.sinks < 0)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT,
                "decode extents out of range (B %lld, Hq %lld, Sq %lld, pages %lld, width %lld, P %lld, max length %lld)",
                (long long)a.batch, (long long)a.heads_q, (long long)a.seq_q, (long long)a.pool_pages,
                (long long)a.table_width, (long long)a.page_size, (long long)a.max_length);
  if (a.batch == 0 || a.heads_q == 0 || a.seq_q == 0) return ATTNKIT_CUDA_OK;
  DecodeProblem p;
  std::memset(&p, 0, sizeof(p));
  p.q = a.q.data;
  copy_strides(a.q, p.q_stride);
  p.out = a.out.data;
  copy_strides(a.out, p.out_stride);
  p.dtype = a.q.dtype;
  p.out_dtype = a.out.dtype;
  p.k_pool = a.k_pool;
  p.v_pool = a.v_pool;
  p.pool_pages = a.pool_pages;
  p.page_table = a.page_table;
  p.table_width = a.table_width;
  p.lengths = a.lengths;
  p.batch = int(a.batch);
  p.heads_q = int(a.heads_q);
  p.heads_kv = int(a.heads_kv);
  p.seq_q = int(a.seq_q);
  p.head_dim = int(a.head_dim);
  p.page_size = int(a.page_size);
  p.scale = a.scale;
  p.softcap = a.softcap > 0.0f ? a.softcap : 0.0f;
  p.window_left = a.window_left < 0 ? -1 : a.window_left;
  p.window_right = a.window_right < 0 ? -1 : a.window_right;
  p.sinks = a.sinks;
  p.lse = a.lse;
  const char* why = "";
  if (a.heads_kv < 1 || a.heads_kv > kMaxExtent || a.head_dim < 0 || a.head_dim > kMaxExtent || !decode_supports(p, &why))
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "decode: %s (dtype %d, Hq %lld, Hkv %lld, D %lld)", why, a.q.dtype,
                (long long)a.heads_q, (long long)a.heads_kv, (long long)a.head_dim);
  // An empty pool holds no key: a table width of 0 clamps every length to 0 in the kernel, which
  // then reads no page (so the pool pointers may be NULL) and writes empty rows.
  if (a.pool_pages == 0) p.table_width = 0;
  if (a.page_table == nullptr || a.lengths == nullptr || (a.pool_pages > 0 && (a.k_pool == nullptr || a.v_pool == nullptr)))
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "decode needs device page_table, lengths and pools");

  DeviceHandle h;
  cudaStream_t stream = nullptr;
  attnkit_cuda_status s = enter_call(a.device, where, &h, &stream, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;

  const DecodePlan plan = plan_decode(p, a.max_length, a.splits, h.traits);
  // One allocation from the pool for the per-head tables and the split partials.
  TablePack pack;
  const size_t head_bytes = size_t(a.heads_q) * sizeof(float);
  const size_t slopes_at = a.alibi_slopes ? pack.add(a.alibi_slopes, head_bytes) : 0;
  const size_t sinks_at = a.sink_logits ? pack.add(a.sink_logits, head_bytes) : 0;
  void* tables = nullptr;
  s = upload_tables(h, stream, pack, &tables, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  if (a.alibi_slopes) p.alibi_slopes = at_offset<float>(tables, slopes_at);
  if (a.sink_logits) p.sink_logits = at_offset<float>(tables, sinks_at);
  void* scratch = nullptr;
  if (plan.scratch_bytes > 0) {
    const cudaError_t e = cudaMallocFromPoolAsync(&scratch, plan.scratch_bytes, h.pool, stream);
    if (e != cudaSuccess) {
      release_tables(tables, stream);
      return cuda_failure(e, "allocating the split-KV partials of decodeAttention", err, err_len);
    }
  }
  // H2O scores need every row's final lse: the caller's, or the call's own.
  float* own_lse = nullptr;
  if (a.scores && !p.lse) {
    const size_t lse_bytes = size_t(a.batch) * size_t(a.heads_q) * size_t(a.seq_q) * sizeof(float);
    const cudaError_t e = cudaMallocFromPoolAsync(reinterpret_cast<void**>(&own_lse), lse_bytes, h.pool, stream);
    if (e != cudaSuccess) {
      release_tables(scratch, stream);
      release_tables(tables, stream);
      return cuda_failure(e, "allocating the lse that decodeAttention's scores need", err, err_len);
    }
    p.lse = own_lse;
  }
  cudaError_t launched = launch_decode_attention(p, plan, scratch, h.traits, stream);
  if (launched == cudaSuccess && a.scores) launched = launch_decode_scores(p, p.lse, a.scores, a.max_length, stream);
  release_tables(own_lse, stream);
  release_tables(scratch, stream);
  release_tables(tables, stream);
  return finish_call(where, h, launched, "decodeAttention kernel", err, err_len);
}

// kv_append and kv_gather: rows between [B, Hkv, T, D] tensors and the pools.
attnkit_cuda_status kv_rows_impl(const attnkit_cuda_kv_rows_args* args, bool gather, const CallStream& where, char* err,
                                 size_t err_len) {
  if (args == nullptr) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "args must not be NULL");
  const attnkit_cuda_kv_rows_args& a = *args;
  const char* what = gather ? "kv_gather" : "kv_append";
  if (!is_float_dtype(a.k.dtype) || a.v.dtype != a.k.dtype || a.k.rank != 4 || a.v.rank != 4 ||
      a.k.shape[2] != a.v.shape[2])
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "%s k and v must be 4-d float tensors of one dtype and length", what);
  if (a.batch < 0 || a.batch > kMaxExtent || a.heads_kv < 1 || a.heads_kv > kMaxExtent || a.head_dim < 1 ||
      a.head_dim > kMaxExtent || a.page_size < 1 || a.page_size > kMaxExtent || a.pool_pages < 0 || a.table_width < 0 ||
      a.k.shape[2] < 0 || a.k.shape[2] > kMaxSequence)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "%s extents out of range", what);
  const int64_t tokens = a.k.shape[2];
  if (a.batch == 0 || tokens == 0) return ATTNKIT_CUDA_OK;
  if (a.counts == nullptr || a.index == nullptr || a.page_table == nullptr || a.k_pool == nullptr || a.v_pool == nullptr)
    return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "%s needs counts, %s, a page table and pools", what,
                gather ? "positions" : "starts");
  DeviceHandle h;
  cudaStream_t stream = nullptr;
  attnkit_cuda_status s = enter_call(a.device, where, &h, &stream, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  TablePack pack;
  const size_t counts_at = pack.add(a.counts, size_t(a.batch) * sizeof(int32_t));
  const size_t index_at = pack.add(a.index, size_t(a.batch) * (gather ? size_t(tokens) : 1) * sizeof(int32_t));
  void* tables = nullptr;
  s = upload_tables(h, stream, pack, &tables, err, err_len);
  if (s != ATTNKIT_CUDA_OK) return s;
  KvRowsProblem p;
  std::memset(&p, 0, sizeof(p));
  p.k = a.k.data;
  p.v = a.v.data;
  copy_strides(a.k, p.k_stride);
  copy_strides(a.v, p.v_stride);
  p.tokens = tokens;
  p.elem_bytes = a.k.dtype == ATTNKIT_CUDA_FLOAT32 ? 4 : 2;
  p.k_pool = a.k_pool;
  p.v_pool = a.v_pool;
  p.pool_pages = a.pool_pages;
  p.page_table = a.page_table;
  p.table_width = a.table_width;
  p.counts = at_offset<int32_t>(tables, counts_at);
  p.batch = int(a.batch);
  p.heads_kv = int(a.heads_kv);
  p.head_dim = int(a.head_dim);
  p.page_size = int(a.page_size);
  cudaError_t launched;
  if (gather) {
    launched = launch_kv_gather(p, at_offset<int32_t>(tables, index_at), h.traits.multiprocessors, stream);
  } else {
    p.starts = at_offset<int32_t>(tables, index_at);
    launched = launch_kv_append(p, h.traits.multiprocessors, stream);
  }
  release_tables(tables, stream);
  return finish_call(where, h, launched, gather ? "KVCache gather kernel" : "KVCache append kernel", err, err_len);
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
  ATTNKIT_GUARDED(attention_impl(args, nullptr, nullptr, kBlocking, err, err_len))
}
attnkit_cuda_status api_attention_on_stream(const attnkit_cuda_attention_args* args, void* stream, char* err,
                                            size_t err_len) {
  ATTNKIT_GUARDED(attention_impl(args, nullptr, nullptr, CallStream{false, static_cast<cudaStream_t>(stream)}, err, err_len))
}
attnkit_cuda_status api_block_sparse_attention(const attnkit_cuda_attention_args* args,
                                               const attnkit_cuda_block_mask* blocks, void* stream, int32_t blocking,
                                               char* err, size_t err_len) {
  if (blocks == nullptr) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "blocks must not be NULL");
  ATTNKIT_GUARDED(attention_impl(args, blocks, nullptr,
                                 blocking ? kBlocking : CallStream{false, static_cast<cudaStream_t>(stream)}, err, err_len))
}
attnkit_cuda_status api_block_sparse_attention_elements(const attnkit_cuda_attention_args* args,
                                                        const attnkit_cuda_block_mask* blocks,
                                                        const attnkit_cuda_element_mask* elements, void* stream,
                                                        int32_t blocking, char* err, size_t err_len) {
  if (blocks == nullptr) return fail(err, err_len, ATTNKIT_CUDA_ARGUMENT, "blocks must not be NULL");
  ATTNKIT_GUARDED(attention_impl(args, blocks, elements,
                                 blocking ? kBlocking : CallStream{false, static_cast<cudaStream_t>(stream)}, err, err_len))
}
attnkit_cuda_status api_merge_states(const attnkit_cuda_merge_args* args, char* err, size_t err_len) {
  ATTNKIT_GUARDED(merge_states_impl(args, err, err_len))
}
attnkit_cuda_status api_linear_attention(const attnkit_cuda_linear_args* args, void* stream, int32_t blocking, char* err,
                                         size_t err_len) {
  ATTNKIT_GUARDED(linear_attention_impl(args, blocking ? kBlocking : CallStream{false, static_cast<cudaStream_t>(stream)}, err,
                                        err_len))
}

attnkit_cuda_status api_topk_block_select(const attnkit_cuda_topk_args* args, char* err, size_t err_len) {
  ATTNKIT_GUARDED(topk_block_select_impl(args, err, err_len))
}

attnkit_cuda_status api_decode_attention(const attnkit_cuda_decode_args* args, void* stream, int32_t blocking, char* err,
                                         size_t err_len) {
  ATTNKIT_GUARDED(decode_impl(args, stream_choice(stream, blocking), err, err_len))
}
attnkit_cuda_status api_kv_append(const attnkit_cuda_kv_rows_args* args, void* stream, int32_t blocking, char* err,
                                  size_t err_len) {
  ATTNKIT_GUARDED(kv_rows_impl(args, false, stream_choice(stream, blocking), err, err_len))
}
attnkit_cuda_status api_kv_gather(const attnkit_cuda_kv_rows_args* args, void* stream, int32_t blocking, char* err,
                                  size_t err_len) {
  ATTNKIT_GUARDED(kv_rows_impl(args, true, stream_choice(stream, blocking), err, err_len))
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
        api_merge_states,         api_attention_on_stream,  api_block_sparse_attention,
        api_block_sparse_attention_elements, api_linear_attention, api_topk_block_select, api_decode_attention,
        api_kv_append, api_kv_gather,
    };
    return &api;
  } catch (...) {
    return nullptr;
  }
}
