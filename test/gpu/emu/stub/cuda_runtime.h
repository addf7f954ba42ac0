// CPU emulation of the few CUDA runtime / device features that c_api.cu and the generic and merge
// kernels use (see README.md). Not a general CUDA emulator.
#pragma once
#include <math.h>
#include <barrier>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __grid_constant__

enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorInitializationError = 3,
  cudaErrorStubLibrary = 34, cudaErrorInsufficientDriver = 35, cudaErrorDevicesUnavailable = 46, cudaErrorInvalidDeviceFunction = 98,
  cudaErrorNoDevice = 100, cudaErrorInvalidDevice = 101, cudaErrorNoKernelImageForDevice = 209, cudaErrorUnsupportedPtxVersion = 222,
  cudaErrorNotSupported = 801, cudaErrorSystemDriverMismatch = 803, cudaErrorCompatNotSupportedOnDevice = 804 };
#define CUDART_VERSION 13000
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
#define cudaStreamNonBlocking 1
enum cudaDeviceAttr { cudaDevAttrComputeCapabilityMajor = 75, cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMultiProcessorCount = 16, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
struct cudaDeviceProp { char name[256]; int major, minor, multiProcessorCount; size_t totalGlobalMem; };
typedef void* cudaStream_t;
#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)
typedef void* cudaMemPool_t;
enum cudaMemAllocationType { cudaMemAllocationTypePinned = 1 };
enum cudaMemAllocationHandleType { cudaMemHandleTypeNone = 0 };
enum cudaMemLocationType { cudaMemLocationTypeDevice = 1 };
struct cudaMemLocation { cudaMemLocationType type; int id; };
struct cudaMemPoolProps { cudaMemAllocationType allocType; cudaMemAllocationHandleType handleTypes; cudaMemLocation location; };
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 4 };
cudaError_t cudaGetDeviceCount(int*);
cudaError_t cudaSetDevice(int);
cudaError_t cudaDeviceGetAttribute(int*, cudaDeviceAttr, int);
cudaError_t cudaStreamCreateWithFlags(void**, unsigned);
cudaError_t cudaStreamSynchronize(void*);
cudaError_t cudaMalloc(void**, size_t);
template <class T> inline cudaError_t cudaMalloc(T** p, size_t bytes) { return cudaMalloc(reinterpret_cast<void**>(p), bytes); }
cudaError_t cudaFree(void*);
cudaError_t cudaMemsetAsync(void*, int, size_t, void*);
cudaError_t cudaMemcpyAsync(void*, const void*, size_t, cudaMemcpyKind, void*);
const char* cudaGetErrorString(cudaError_t);
const char* cudaGetErrorName(cudaError_t);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp*, int);
cudaError_t cudaStreamGetDevice(cudaStream_t, int*);
cudaError_t cudaMemPoolCreate(cudaMemPool_t*, const cudaMemPoolProps*);
cudaError_t cudaMemPoolDestroy(cudaMemPool_t);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*);
cudaError_t cudaMallocFromPoolAsync(void**, size_t, cudaMemPool_t, cudaStream_t);
cudaError_t cudaFreeAsync(void*, cudaStream_t);
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
template <class F> inline cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) { return cudaSuccess; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
struct cudaFuncAttributes { int x; };
template <class F> inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes*, F) { return cudaSuccess; }

struct alignas(16) float4 { float x, y, z, w; };
struct uint3 { unsigned x, y, z; };
struct alignas(8) uint2 { unsigned x, y; };
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }

extern thread_local uint3 threadIdx, blockIdx;
extern uint3 gridDim, blockDim;

void __syncthreads();
float __shfl_xor_sync(unsigned mask, float x, int offset);
float4* emu_shared_memory(size_t bytes);
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
float emu_half_to_float(unsigned short h);
unsigned short emu_float_to_half(float f);
unsigned short emu_float_to_bf16(float f);

struct EmuLaunch {
  static void run(unsigned grid, unsigned threads, size_t smem, const std::function<void()>& body);
};
template <class K, class... A>
void emu_launch(K kernel, unsigned grid, unsigned threads, size_t smem, cudaStream_t, const A&... args) {
  EmuLaunch::run(grid, threads, smem, [&]() { kernel(args...); });
}
