#include "cuda_backend.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <mutex>
#include <sstream>

#include "error.h"

namespace attnkit {
namespace {

constexpr const char* kLibraryName = "libattnkit_cuda.so";

struct Backend {
  CudaStatus status;
  const attnkit_cuda_api* api = nullptr;
};

// The directory of the shared object this code lives in (attnkit.node), found with dladdr.
std::string addon_directory() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&cuda_status), &info) == 0 || info.dli_fname == nullptr) return ".";
  const std::string path = info.dli_fname;
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// A NUL-terminated message from the library's error buffer (never trusts it to terminate).
std::string message_of(char* err, size_t len) {
  err[len - 1] = '\0';
  return err[0] ? std::string(err) : std::string("no message");
}

// Whether the table reaches and fills every entry this addon needs. Entries appended later within
// the ABI version (attention_on_stream, block_sparse_attention) are not among them: a library
// built before them still serves this addon (cuda_attention asks ATTNKIT_CUDA_API_HAS before it
// calls block_sparse_attention), and one built after them (a larger struct_size) does too.
bool table_complete(const attnkit_cuda_api* a) {
  return ATTNKIT_CUDA_API_HAS(a, merge_states) && a->device_count && a->device_info && a->malloc && a->free &&
         a->memset_zero && a->copy_to_device && a->copy_to_host && a->copy_on_device && a->attention && a->merge_states;
}

// The @attnkit/linux-x64-cuda package's library and what its lookup found (set from JS before the
// first load; guarded by the load's once_flag ordering: set_package_library refuses after it).
struct PackageCandidate {
  std::mutex mutex;
  bool loaded = false;
  std::string path, note;
};
PackageCandidate& package_candidate() {
  static PackageCandidate c;
  return c;
}

bool file_exists(const std::string& path) {
  struct stat sb{};
  return !path.empty() && stat(path.c_str(), &sb) == 0;
}

void load(Backend& b) {
  CudaStatus& st = b.status;
  const char* env = std::getenv("ATTNKIT_CUDA_LIB");
  std::string package_path, package_note;
  {
    PackageCandidate& c = package_candidate();
    std::lock_guard<std::mutex> lock(c.mutex);
    c.loaded = true;
    package_path = c.path;
    package_note = c.note;
  }
  std::string path;
  if (env != nullptr && env[0] != '\0') {
    path = env;
    if (!file_exists(path)) {
      st.library_path = path;
      st.reason = "the CUDA library was not found: ATTNKIT_CUDA_LIB=" + path +
                  " names no file; set it to the full path of " + kLibraryName + " or unset it";
      return;
    }
  } else {
    // A local build beside attnkit.node first (build/Release), then the optional package.
    const std::string dir = addon_directory();
    const std::string beside = dir + "/" + kLibraryName;
    path = file_exists(beside) ? beside : file_exists(package_path) ? package_path : std::string();
    if (path.empty()) {
      st.library_path = beside;
      st.reason = std::string("the CUDA library ") + kLibraryName + " was not found: looked in " + dir +
                  " (beside attnkit.node)" + (package_note.empty() ? std::string() : "; " + package_note) +
                  ". Install the CUDA package (npm install @attnkit/linux-x64-cuda, the same version as attnkit), "
                  "build it with `npx attnkit build --cuda` (needs nvcc), or set ATTNKIT_CUDA_LIB to its full path";
      return;
    }
  }
  st.library_path = path;
  dlerror();
  // Never dlclosed: a CUDA runtime must not be unloaded under live allocations.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* e = dlerror();
    st.reason = "could not load the CUDA library " + path + ": " + (e ? e : "dlopen failed");
    return;
  }
  auto get_api = reinterpret_cast<attnkit_cuda_get_api_fn>(dlsym(handle, ATTNKIT_CUDA_GET_API_SYMBOL));
  if (get_api == nullptr) {
    st.reason = path + " does not export " + ATTNKIT_CUDA_GET_API_SYMBOL + ": it is not an attnkit CUDA library";
    return;
  }
  const attnkit_cuda_api* api = get_api(ATTNKIT_CUDA_ABI_VERSION);
  if (api == nullptr || api->abi_version != ATTNKIT_CUDA_ABI_VERSION || !table_complete(api)) {
    st.reason = "ABI version mismatch: " + path + " does not serve attnkit CUDA ABI version " +
                std::to_string(ATTNKIT_CUDA_ABI_VERSION) +
                ", which this addon needs; rebuild both from one checkout (npm run build:cuda)";
    return;
  }
  st.build_info = api->build_info ? api->build_info : "";

  char err[512] = {0};
  int32_t count = 0;
  attnkit_cuda_status s = api->device_count(&count, err, sizeof err);
  if (s != ATTNKIT_CUDA_OK) {
    st.reason = "no usable CUDA driver or device: " + message_of(err, sizeof err) + " (" + path + ")";
    return;
  }
  if (count <= 0) {
    st.reason = "no CUDA device found: the driver reports 0 devices (" + path + ")";
    return;
  }
  std::vector<CudaDevice> devices;
  for (int32_t i = 0; i < count; ++i) {
    attnkit_cuda_device_info info{};
    err[0] = '\0';
    s = api->device_info(i, &info, err, sizeof err);
    if (s != ATTNKIT_CUDA_OK) {
      st.reason = "could not query CUDA device " + std::to_string(i) + ": " + message_of(err, sizeof err);
      return;
    }
    info.name[sizeof info.name - 1] = '\0';
    CudaDevice d;
    d.name = info.name;
    d.cc_major = info.cc_major;
    d.cc_minor = info.cc_minor;
    d.multiprocessors = info.multiprocessors;
    d.memory_bytes = info.memory_bytes;
    d.has_kernel_image = info.has_kernel_image != 0;
    devices.push_back(d);
  }
  bool any = false;
  for (const CudaDevice& d : devices) any = any || d.has_kernel_image;
  if (!any) {
    const CudaDevice& d = devices[0];
    const std::string sm = std::to_string(d.cc_major) + std::to_string(d.cc_minor);
    st.reason = "no kernel image for this GPU: " + path + " (" + st.build_info + ") holds no code for " + d.name +
                " (compute capability " + std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor) +
                "); rebuild it with -DATTNKIT_CUDA_GENCODE=\"arch=compute_" + sm + ",code=sm_" + sm + "\"";
    return;
  }
  st.devices = devices;
  st.available = true;
  b.api = api;
}

}  // namespace

bool cuda_set_package_library(const std::string& path, const std::string& note) {
  PackageCandidate& c = package_candidate();
  std::lock_guard<std::mutex> lock(c.mutex);
  if (c.loaded) return false;
  c.path = path;
  c.note = note;
  return true;
}

namespace {

Backend& backend() {
  static Backend b;
  static std::once_flag once;
  std::call_once(once, [] { load(b); });
  return b;
}

attnkit_cuda_tensor to_cuda(const TensorView& t) {
  attnkit_cuda_tensor c{};
  c.data = t.data;
  c.dtype = static_cast<int32_t>(t.dtype);
  c.rank = t.rank;
  for (int i = 0; i < t.rank && i < ATTNKIT_CUDA_MAX_RANK; ++i) {
    c.shape[i] = t.shape[i];
    c.strides[i] = t.strides[i];
  }
  return c;
}

static_assert(kMaxRank == ATTNKIT_CUDA_MAX_RANK, "TensorView and attnkit_cuda_tensor ranks differ");
static_assert(static_cast<int>(DType::Float16) == ATTNKIT_CUDA_FLOAT16 && static_cast<int>(DType::BFloat16) == ATTNKIT_CUDA_BFLOAT16 &&
                  static_cast<int>(DType::UInt8) == ATTNKIT_CUDA_UINT8 && static_cast<int>(DType::Int32) == ATTNKIT_CUDA_INT32,
              "DType and attnkit_cuda_dtype numbering differ");

}  // namespace

const CudaStatus& cuda_status() { return backend().status; }

const attnkit_cuda_api& cuda_api() {
  const Backend& b = backend();
  if (!b.status.available) fail(ErrorCode::CudaUnavailable, "CUDA is unavailable: " + b.status.reason);
  return *b.api;
}

void cuda_require_device(int device, const char* what) {
  const CudaStatus& st = cuda_status();
  if (!st.available) fail(ErrorCode::CudaUnavailable, std::string(what) + ": CUDA is unavailable: " + st.reason);
  const int n = static_cast<int>(st.devices.size());
  if (device < 0 || device >= n) {
    fail(ErrorCode::Device, std::string(what) + ": device cuda:" + std::to_string(device) + " does not exist; this machine has " +
                                std::to_string(n) + " CUDA device" + (n == 1 ? "" : "s") + " (cuda:0" +
                                (n > 1 ? " .. cuda:" + std::to_string(n - 1) : std::string()) + ")");
  }
  const CudaDevice& d = st.devices[device];
  if (!d.has_kernel_image) {
    fail(ErrorCode::CudaUnavailable, std::string(what) + ": no kernel image for cuda:" + std::to_string(device) + " (" + d.name +
                                         ", compute capability " + std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor) +
                                         ") in " + st.library_path + " (" + st.build_info + ")");
  }
}

void cuda_check(attnkit_cuda_status status, const std::string& what, const char* message) {
  if (status == ATTNKIT_CUDA_OK) return;
  const std::string m = what + ": " + (message && message[0] ? message : "CUDA error");
  switch (status) {
    case ATTNKIT_CUDA_OOM: fail(ErrorCode::OutOfMemory, m);
    case ATTNKIT_CUDA_ARGUMENT: fail(ErrorCode::Argument, m);
    case ATTNKIT_CUDA_UNAVAILABLE:
    case ATTNKIT_CUDA_INTERNAL:
    default: fail(ErrorCode::CudaUnavailable, m);
  }
}

namespace {
// One call into the library with its error buffer.
template <class Fn>
void call(const std::string& what, Fn&& fn) {
  char err[512] = {0};
  const attnkit_cuda_status s = fn(err, sizeof err);
  err[sizeof err - 1] = '\0';
  cuda_check(s, what, err);
}

std::string gib(size_t bytes) {
  std::ostringstream s;
  s.precision(3);
  s << static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0) << " GiB";
  return s.str();
}
}  // namespace

void* cuda_malloc(int device, size_t bytes) {
  const attnkit_cuda_api& api = cuda_api();
  if (bytes == 0) return nullptr;
  void* ptr = nullptr;
  call("cuda:" + std::to_string(device) + ": could not allocate " + std::to_string(bytes) + " bytes (" + gib(bytes) + ") of device memory",
       [&](char* err, size_t len) { return api.malloc(device, bytes, &ptr, err, len); });
  if (ptr == nullptr) fail(ErrorCode::OutOfMemory, "cuda:" + std::to_string(device) + ": allocating " + std::to_string(bytes) + " bytes returned no memory");
  return ptr;
}

void cuda_free(int device, void* ptr) noexcept {
  if (ptr == nullptr) return;
  const Backend& b = backend();
  if (b.api) b.api->free(device, ptr);
}

void cuda_memset_zero(int device, void* ptr, size_t bytes) {
  const attnkit_cuda_api& api = cuda_api();
  if (bytes == 0) return;
  call("cuda:" + std::to_string(device) + ": zeroing " + std::to_string(bytes) + " bytes",
       [&](char* err, size_t len) { return api.memset_zero(device, ptr, bytes, err, len); });
}

void cuda_copy_to_device(int device, void* dst, const void* src, size_t bytes) {
  const attnkit_cuda_api& api = cuda_api();
  if (bytes == 0) return;
  call("copy of " + std::to_string(bytes) + " bytes to cuda:" + std::to_string(device),
       [&](char* err, size_t len) { return api.copy_to_device(device, dst, src, bytes, err, len); });
}

void cuda_copy_to_host(int device, void* dst, const void* src, size_t bytes) {
  const attnkit_cuda_api& api = cuda_api();
  if (bytes == 0) return;
  call("copy of " + std::to_string(bytes) + " bytes from cuda:" + std::to_string(device),
       [&](char* err, size_t len) { return api.copy_to_host(device, dst, src, bytes, err, len); });
}

void cuda_copy_on_device(int device, void* dst, const void* src, size_t bytes) {
  const attnkit_cuda_api& api = cuda_api();
  if (bytes == 0) return;
  call("copy of " + std::to_string(bytes) + " bytes on cuda:" + std::to_string(device),
       [&](char* err, size_t len) { return api.copy_on_device(device, dst, src, bytes, err, len); });
}

// A library built before `entry` was appended to the table loads (it serves everything else), so
// an op that needs the entry is refused here, by name, before any work: never a call through a
// pointer past its table.
[[noreturn]] void fail_library_too_old(int device, const std::string& op, const char* entry) {
  const CudaStatus& st = cuda_status();
  fail(ErrorCode::CudaUnavailable,
       op + " on cuda:" + std::to_string(device) + ": the CUDA library " + st.library_path +
           (st.build_info.empty() ? std::string() : " (" + st.build_info + ")") + " is too old for " + op +
           ": its table has no " + entry + " entry; rebuild it from this checkout (npm run build:cuda), or set "
           "ATTNKIT_CUDA_LIB to a libattnkit_cuda.so built from it, or run " + op + " on CPU tensors");
}

void cuda_attention(const AttentionParams& p, int device) {
  const attnkit_cuda_api& api = cuda_api();
  // Checked ahead of the empty-problem return so the answer does not depend on the shapes.
  if (p.has_block_mask && !(ATTNKIT_CUDA_API_HAS(&api, block_sparse_attention) && api.block_sparse_attention))
    fail_library_too_old(device, "blockSparseAttention", "block_sparse_attention");
  if (p.has_element_mask &&
      !(ATTNKIT_CUDA_API_HAS(&api, block_sparse_attention_elements) && api.block_sparse_attention_elements))
    fail_library_too_old(device, "blockSparseAttention with element bitmaps (neighborhoodAttention)",
                         "block_sparse_attention_elements");
  // No output element: nothing to do (and zero-sized tensors may hold no device pointer).
  if (p.batch == 0 || p.heads_q == 0 || p.seq_q == 0) return;
  attnkit_cuda_attention_args a{};
  a.device = device;
  a.q = to_cuda(p.q);
  a.k = to_cuda(p.k);
  a.v = to_cuda(p.v);
  a.out = to_cuda(p.out);
  a.batch = p.batch;
  a.heads_q = p.heads_q;
  a.heads_kv = p.heads_kv;
  a.seq_q = p.seq_q;
  a.seq_k = p.seq_k;
  a.head_dim = p.head_dim;
  a.head_dim_v = p.head_dim_v;
  a.scale = p.scale;
  a.causal = p.causal ? 1 : 0;
  a.window_left = p.window_left;
  a.window_right = p.window_right;
  a.sinks = p.sinks;
  a.softcap = p.softcap;
  a.alibi_slopes = p.alibi_slopes;
  a.sink_logits = p.sink_logits;
  if (p.has_bias) {
    a.bias = p.bias.data;
    a.bias_dtype = static_cast<int32_t>(p.bias.dtype);
    for (int d = 0; d < 4; ++d) a.bias_strides[d] = p.bias.strides[d];
  }
  if (p.has_mask) {
    a.mask = static_cast<const uint8_t*>(p.mask.data);
    for (int d = 0; d < 4; ++d) a.mask_strides[d] = p.mask.strides[d];
  }
  a.cu_seqlens_q = p.cu_seqlens_q;
  a.cu_seqlens_k = p.cu_seqlens_k;
  a.num_segments = p.num_segments;
  a.lse = p.lse;
  if (p.has_block_mask) {
    // States in device memory (validation put them on q's device), strides over [B, Hq, nQB, nKB].
    attnkit_cuda_block_mask blocks{};
    blocks.states = static_cast<const uint8_t*>(p.block_mask.data);
    for (int d = 0; d < 4; ++d) blocks.strides[d] = p.block_mask.strides[d];
    blocks.block_q = p.block_q;
    blocks.block_k = p.block_k;
    attnkit_cuda_element_mask elements{};
    if (p.has_element_mask) {
      elements.index = static_cast<const int32_t*>(p.element_index.data);
      for (int d = 0; d < 4; ++d) elements.index_strides[d] = p.element_index.strides[d];
      elements.bits = p.element_bits;
      elements.bitmaps = p.element_bitmaps;
    }
    // blocking = 1: the library's stream for `device`, then a wait, as `attention` does. The
    // older entry serves masks without bitmaps, so a library from before bitmaps still runs them.
    call("blockSparseAttention on cuda:" + std::to_string(device), [&](char* err, size_t len) {
      return p.has_element_mask ? api.block_sparse_attention_elements(&a, &blocks, &elements, nullptr, 1, err, len)
                                : api.block_sparse_attention(&a, &blocks, nullptr, 1, err, len);
    });
    return;
  }
  call("attention on cuda:" + std::to_string(device), [&](char* err, size_t len) { return api.attention(&a, err, len); });
}

void cuda_topk_select(const TopkSelectRequest& r, int device) {
  const attnkit_cuda_api& api = cuda_api();
  if (!(ATTNKIT_CUDA_API_HAS(&api, topk_block_select) && api.topk_block_select))
    fail_library_too_old(device, "topkBlockAttention's gating", "topk_block_select");
  if (r.q.shape[0] == 0 || r.q.shape[1] == 0 || r.q.shape[2] == 0) return;
  attnkit_cuda_topk_args a{};
  a.device = device;
  a.q = to_cuda(r.q);
  a.k = to_cuda(r.k);
  a.block_size = r.block;
  a.topk = r.topk;
  a.causal = r.causal ? 1 : 0;
  a.states = static_cast<uint8_t*>(r.states.data);
  a.indices = static_cast<int32_t*>(r.indices.data);
  call("topkBlockAttention's gating on cuda:" + std::to_string(device),
       [&](char* err, size_t len) { return api.topk_block_select(&a, err, len); });
}

void cuda_merge_states(const MergeRequest& r, int device) {
  const attnkit_cuda_api& api = cuda_api();
  const TensorView& o = r.out;
  if (o.shape[0] == 0 || o.shape[1] == 0 || o.shape[2] == 0) return;
  std::vector<attnkit_cuda_tensor> outs(static_cast<size_t>(r.num_parts));
  std::vector<const float*> lses(static_cast<size_t>(r.num_parts));
  for (int64_t i = 0; i < r.num_parts; ++i) {
    outs[i] = to_cuda(r.outs[i]);
    lses[i] = static_cast<const float*>(r.lses[i].data);
  }
  attnkit_cuda_merge_args a{};
  a.device = device;
  a.parts = static_cast<int32_t>(r.num_parts);
  a.outs = outs.data();
  a.lses = lses.data();
  a.out = to_cuda(r.out);
  a.lse = static_cast<float*>(r.lse.data);
  call("mergeAttentionStates on cuda:" + std::to_string(device), [&](char* err, size_t len) { return api.merge_states(&a, err, len); });
}

void cuda_linear_attention(const LinearParams& p, int device, const char* op) {
  const attnkit_cuda_api& api = cuda_api();
  if (!(ATTNKIT_CUDA_API_HAS(&api, linear_attention) && api.linear_attention)) fail_library_too_old(device, op, "linear_attention");
  if (p.batch == 0 || p.heads == 0) return;
  attnkit_cuda_linear_args a{};
  a.device = device;
  a.q = to_cuda(p.q);
  a.k = to_cuda(p.k);
  a.v = to_cuda(p.v);
  a.out = to_cuda(p.out);
  a.batch = p.batch;
  a.heads = p.heads;
  a.seq = p.seq;
  a.dk = p.dk;
  a.dv = p.dv;
  a.causal = p.causal ? 1 : 0;
  a.feature_map = static_cast<int32_t>(p.feature_map);
  a.normalize = p.normalize ? 1 : 0;
  a.scale = p.scale;
  a.gate_kind = static_cast<int32_t>(p.gate_kind);
  a.decay = p.decay;
  a.decay_per_head = p.decay_per_head;
  if (p.gate_kind == GateKind::Scalar || p.gate_kind == GateKind::PerDim) a.gates = to_cuda(p.gates);
  if (p.has_initial_state) a.initial_state = to_cuda(p.initial_state);
  if (p.has_initial_normalizer) a.initial_normalizer = to_cuda(p.initial_normalizer);
  if (p.has_state_out) a.state_out = to_cuda(p.state_out);
  if (p.has_normalizer_out) a.normalizer_out = to_cuda(p.normalizer_out);
  call(std::string(op) + " on cuda:" + std::to_string(device), [&](char* err, size_t len) { return api.linear_attention(&a, nullptr, 1, err, len); });
}

void cuda_decode_attention(const DecodeParams& p, int device) {
  const attnkit_cuda_api& api = cuda_api();
  if (!(ATTNKIT_CUDA_API_HAS(&api, decode_attention) && api.decode_attention))
    fail_library_too_old(device, "decodeAttention", "decode_attention");
  if (p.batch == 0 || p.heads_q == 0 || p.seq_q == 0) return;
  attnkit_cuda_decode_args a{};
  a.device = device;
  a.q = to_cuda(p.q);
  a.out = to_cuda(p.out);
  a.k_pool = p.k_pool.data;
  a.v_pool = p.v_pool.data;
  a.pool_pages = p.pool_pages;
  a.page_table = p.device_page_table;
  a.table_width = p.table_width;
  a.lengths = p.device_lengths;
  a.max_length = p.max_length;
  a.batch = p.batch;
  a.heads_q = p.heads_q;
  a.heads_kv = p.heads_kv;
  a.seq_q = p.seq_q;
  a.head_dim = p.head_dim;
  a.page_size = p.page_size;
  a.scale = p.scale;
  a.window_left = p.window_left;
  a.window_right = p.window_right;
  a.sinks = p.sinks;
  a.softcap = p.softcap;
  a.alibi_slopes = p.alibi_slopes;
  a.sink_logits = p.sink_logits;
  a.lse = p.lse;
  a.splits = p.splits;
  a.scores = p.scores;
  call("decodeAttention on cuda:" + std::to_string(device),
       [&](char* err, size_t len) { return api.decode_attention(&a, nullptr, 1, err, len); });
}

void cuda_kv_rows(const KvRowsParams& p, int device) {
  const attnkit_cuda_api& api = cuda_api();
  if (p.gather ? !(ATTNKIT_CUDA_API_HAS(&api, kv_gather) && api.kv_gather) : !(ATTNKIT_CUDA_API_HAS(&api, kv_append) && api.kv_append))
    fail_library_too_old(device, p.gather ? "KVCache.evict" : "KVCache.append", p.gather ? "kv_gather" : "kv_append");
  if (p.batch == 0 || p.k.shape[2] == 0) return;
  attnkit_cuda_kv_rows_args a{};
  a.device = device;
  a.k = to_cuda(p.k);
  a.v = to_cuda(p.v);
  a.k_pool = p.k_pool.data;
  a.v_pool = p.v_pool.data;
  a.pool_pages = p.pool_pages;
  a.page_table = p.device_page_table;
  a.table_width = p.table_width;
  a.counts = p.counts;
  a.index = p.gather ? p.positions : p.starts;
  a.batch = p.batch;
  a.heads_kv = p.heads_kv;
  a.head_dim = p.head_dim;
  a.page_size = p.page_size;
  const std::string what = std::string(p.gather ? "KVCache.evict" : "KVCache.append") + " on cuda:" + std::to_string(device);
  call(what, [&](char* err, size_t len) { return (p.gather ? api.kv_gather : api.kv_append)(&a, nullptr, 1, err, len); });
}

}  // namespace attnkit
