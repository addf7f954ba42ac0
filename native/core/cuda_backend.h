// The CUDA backend as the core sees it: libattnkit_cuda.so, loaded with dlopen the first time
// anything CUDA is asked for (never at addon load), and C++ wrappers over its C ABI
// (native/include/attnkit/attnkit_cuda.h) that turn a failed attnkit_cuda_status into an
// AttnException. No N-API here; no CUDA headers either (the addon builds without the toolkit).
//
// Where the library is looked for: $ATTNKIT_CUDA_LIB (a full path) if set, else
// libattnkit_cuda.so in the directory of the loaded attnkit.node (build/Release, where a source
// build puts it), else the one of the optional package @attnkit/linux-x64-cuda, which JS finds
// (lib/native/cuda-package.ts) and names through cuda_set_package_library. The outcome, success
// or a reason, is cached for the life of the process; the library is never unloaded.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../include/attnkit/attnkit_cuda.h"
#include "attention_params.h"
#include "validate.h"

namespace attnkit {

struct CudaDevice {
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int multiprocessors = 0;
  uint64_t memory_bytes = 0;
  bool has_kernel_image = false;
};

struct CudaStatus {
  bool available = false;   // library loaded, ABI matched, at least one device it can run on
  std::string reason;       // why not, when !available
  std::string library_path; // the file loaded (or looked for)
  std::string build_info;   // the library's own description, once loaded
  std::vector<CudaDevice> devices;  // every device the driver reports (empty when unavailable)
};

// The optional package's library path ("" when none) and what its lookup found (for the reason
// when nothing loads). Only before the first load: returns false, changing nothing, after it.
bool cuda_set_package_library(const std::string& path, const std::string& note);

// Loads the library on the first call (thread-safe), then returns the cached outcome.
const CudaStatus& cuda_status();

// The entry points; fails with ERR_ATTN_CUDA_UNAVAILABLE (carrying the reason) unless available.
const attnkit_cuda_api& cuda_api();

// Fails with ERR_ATTN_DEVICE unless `device` names an existing device, and with
// ERR_ATTN_CUDA_UNAVAILABLE if this library has no kernel image for it (or CUDA is unavailable).
void cuda_require_device(int device, const char* what);

// Non-OK status -> AttnException: OOM -> ERR_ATTN_OOM, UNAVAILABLE and INTERNAL ->
// ERR_ATTN_CUDA_UNAVAILABLE, ARGUMENT -> ERR_ATTN_ARGUMENT. `what` prefixes the library's message.
void cuda_check(attnkit_cuda_status status, const std::string& what, const char* message);

// Wrappers over the table. Sizes of 0 never reach the library (malloc of 0 bytes gives nullptr).
void* cuda_malloc(int device, size_t bytes);
void cuda_free(int device, void* ptr) noexcept;
void cuda_memset_zero(int device, void* ptr, size_t bytes);
void cuda_copy_to_device(int device, void* dst, const void* src, size_t bytes);
void cuda_copy_to_host(int device, void* dst, const void* src, size_t bytes);
void cuda_copy_on_device(int device, void* dst, const void* src, size_t bytes);

// Validated params (every tensor on `device`) -> attnkit_cuda_attention_args -> the library:
// `attention`, or `block_sparse_attention` (blocking) when p.has_block_mask; a library whose table
// predates that entry fails with ERR_ATTN_CUDA_UNAVAILABLE saying it is too old and how to fix it.
// Blocks until the GPU is done; call it off the JS thread for async ops.
void cuda_attention(const AttentionParams& p, int device);
// Validated merge request (every tensor on `device`, lses contiguous) -> the library.
void cuda_merge_states(const MergeRequest& r, int device);
// Validated linear-attention params (every tensor on `device`) -> attnkit_cuda_linear_args -> the
// library's linear_attention, blocking. A library without that entry: ERR_ATTN_CUDA_UNAVAILABLE
// naming it (op: linearAttention or linearAttentionStep).
void cuda_linear_attention(const LinearParams& p, int device, const char* op);
// Validated top-k gating request (every tensor on `device`) -> the library's topk_block_select.
void cuda_topk_select(const TopkSelectRequest& r, int device);

// Validated decode over a device cache (p.device_page_table / device_lengths set) -> the
// library's decode_attention (blocking); a library older than that entry fails with
// ERR_ATTN_CUDA_UNAVAILABLE saying so. cuda_kv_rows likewise: kv_append (KVCache.append) or
// kv_gather (eviction).
void cuda_decode_attention(const DecodeParams& p, int device);
void cuda_kv_rows(const KvRowsParams& p, int device);

}  // namespace attnkit
