// The CPU side of the emulator (see README.md): CTAs run one after another, each as blockDim.x
// std::threads with a real barrier for __syncthreads and one per warp for shuffles; "device"
// memory is host memory; kernel launches are serialised by a mutex.
#include <mutex>

#include "stub/cuda_runtime.h"

thread_local uint3 threadIdx, blockIdx;
uint3 gridDim, blockDim;

namespace {
std::unique_ptr<std::barrier<>> g_cta;
std::vector<std::unique_ptr<std::barrier<>>> g_warps;
float g_lanes[32][32];
std::vector<float4> g_shared;
std::mutex g_launch_mutex;
}  // namespace

void __syncthreads() { g_cta->arrive_and_wait(); }

float __shfl_xor_sync(unsigned, float x, int offset) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  g_lanes[warp][lane] = x;
  g_warps[warp]->arrive_and_wait();
  const float y = g_lanes[warp][lane ^ offset];
  g_warps[warp]->arrive_and_wait();
  return y;
}

float4* emu_shared_memory(size_t bytes) {
  if (bytes || g_shared.empty()) g_shared.assign(bytes / 16 + 1, float4{NAN, NAN, NAN, NAN});  // garbage, as on a GPU
  return g_shared.data();
}

void EmuLaunch::run(unsigned grid, unsigned threads, size_t shared_bytes, const std::function<void()>& body) {
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  emu_shared_memory(shared_bytes);
  gridDim = {grid, 1, 1};
  blockDim = {threads, 1, 1};
  for (unsigned b = 0; b < grid; ++b) {
    g_cta = std::make_unique<std::barrier<>>(threads);
    g_warps.clear();
    for (unsigned w = 0; w < (threads + 31) / 32; ++w) g_warps.push_back(std::make_unique<std::barrier<>>(32));
    std::vector<std::thread> team;
    for (unsigned t = 0; t < threads; ++t)
      team.emplace_back([&, t, b]() {
        threadIdx = {t, 0, 0};
        blockIdx = {b, 0, 0};
        body();
      });
    for (auto& t : team) t.join();
  }
}

float emu_half_to_float(unsigned short h) {
  const unsigned sign = (h >> 15) & 1, exponent = (h >> 10) & 31, mantissa = h & 1023;
  float v;
  if (exponent == 0) v = ldexpf(float(mantissa), -24);
  else if (exponent == 31) v = mantissa ? NAN : INFINITY;
  else v = ldexpf(float(mantissa | 1024), int(exponent) - 25);
  return sign ? -v : v;
}

// Round to nearest even by search over the (monotonic) finite halves: slow, exact, test-only.
unsigned short emu_float_to_half(float f) {
  if (std::isnan(f)) return 0x7e00;
  const unsigned sign = std::signbit(f) ? 0x8000 : 0;
  const float a = fabsf(f);
  if (a >= 65520.0f) return sign | 0x7c00;
  unsigned lo = 0, hi = 0x7bff;
  while (lo < hi) {
    const unsigned mid = (lo + hi + 1) / 2;
    if (emu_half_to_float(mid) <= a) lo = mid; else hi = mid - 1;
  }
  if (lo < 0x7bff) {
    const float below = a - emu_half_to_float(lo), above = emu_half_to_float(lo + 1) - a;
    if (above < below || (above == below && (lo & 1))) ++lo;
  }
  return static_cast<unsigned short>(sign | lo);
}

unsigned short emu_float_to_bf16(float f) {
  if (std::isnan(f)) return 0x7fc0;
  unsigned u;
  memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<unsigned short>(u >> 16);
}

// The runtime API as c_api.cu uses it: one device, host memory, nothing asynchronous.
cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  switch (a) {
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    case cudaDevAttrMultiProcessorCount: *v = 4; break;
    default: *v = 227 * 1024;
  }
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(void** s, unsigned) { static int stream; *s = &stream; return cudaSuccess; }
cudaError_t cudaStreamSynchronize(void*) { return cudaSuccess; }
cudaError_t cudaMalloc(void** p, size_t n) {
  *p = n > (size_t(1) << 40) ? nullptr : malloc(n);
  return *p || n == 0 ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void* p) { free(p); return cudaSuccess; }
// One device, so every stream is device 0's; pool memory is host memory freed at once (the work
// that reads it has already run: launches are synchronous here).
cudaError_t cudaStreamGetDevice(cudaStream_t, int* d) { *d = 0; return cudaSuccess; }
cudaError_t cudaMemPoolCreate(cudaMemPool_t* pool, const cudaMemPoolProps* props) {
  if (props->location.id != 0) return cudaErrorInvalidDevice;
  static int the_pool;
  *pool = &the_pool;
  return cudaSuccess;
}
cudaError_t cudaMemPoolDestroy(cudaMemPool_t) { return cudaSuccess; }
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*) { return cudaSuccess; }
cudaError_t cudaMallocFromPoolAsync(void** p, size_t n, cudaMemPool_t, cudaStream_t) { return cudaMalloc(p, n); }
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, void*) { memset(p, v, n); return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, void*) { memcpy(d, s, n); return cudaSuccess; }
const char* cudaGetErrorString(cudaError_t e) { return e == cudaErrorMemoryAllocation ? "out of memory" : "emulated error"; }
const char* cudaGetErrorName(cudaError_t e) { return e == cudaErrorMemoryAllocation ? "cudaErrorMemoryAllocation" : "cudaErrorEmulated"; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  strcpy(p->name, "attnkit CPU emulator");
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 4;
  p->totalGlobalMem = size_t(1) << 34;
  return cudaSuccess;
}
