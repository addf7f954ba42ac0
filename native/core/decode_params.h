// Everything the decode kernel (attention of a few new queries over a paged KV cache) needs,
// already validated by validate_decode(). Backend-neutral.
#pragma once
#include <atomic>
#include <cstdint>

#include "tensor_view.h"

namespace attnkit {

struct DecodeParams {
  // q [B, Hq, Sq, D], out [B, Hq, Sq, D] (any strides); pools [pages, Hkv, P, D] contiguous (HND pages).
  TensorView q, out, k_pool, v_pool;
  int64_t batch = 0, heads_q = 0, heads_kv = 0, seq_q = 0, head_dim = 0, page_size = 0, pool_pages = 0;
  // page_table[b * table_width + i]: the page holding tokens [i * P, (i + 1) * P) of sequence b;
  // lengths[b]: tokens of sequence b. Entries a sequence uses were checked to be in [0, pool_pages).
  const int32_t* page_table = nullptr;
  int64_t table_width = 0;
  const int32_t* lengths = nullptr;

  float scale = 1.0f;
  int64_t window_left = -1, window_right = -1;  // -1: unbounded
  int64_t sinks = 0;
  float softcap = 0.0f;
  const float* alibi_slopes = nullptr;  // [Hq]
  const float* sink_logits = nullptr;   // [Hq]

  float* lse = nullptr;     // optional, contiguous [B, Hq, Sq]
  float* scores = nullptr;  // optional, [pool_pages, Hkv, P]: each key's probability mass is added here
  int64_t splits = 0;       // key chunks per (b, kv head); 0: chosen by the planner
  int64_t max_length = 0;   // the longest sequence (sizes the GPU's split-KV plan)

  // A device cache (every tensor on q.device >= 0): page_table and lengths above are the host
  // mirror that validation read; the kernel reads these device copies of them.
  const int32_t* device_page_table = nullptr;
  const int32_t* device_lengths = nullptr;

  const std::atomic<int32_t>* abort_flag = nullptr;
};

// Rows between k / v [B, Hkv, T, D] and a device cache's pools, through the page table: KVCache
// .append writes row t < counts[b] of sequence b to position starts[b] + t; eviction reads it from
// position positions[b * T + t] (gather). Validated against the host mirror of the table (every
// position lands in a page of the pool), applied through its device copy.
struct KvRowsParams {
  TensorView k, v, k_pool, v_pool;
  int64_t batch = 0, heads_kv = 0, head_dim = 0, page_size = 0, pool_pages = 0, table_width = 0;
  bool gather = false;
  const int32_t* counts = nullptr;     // host [B]
  const int32_t* starts = nullptr;     // host [B] (append)
  const int32_t* positions = nullptr;  // host [B, T] (gather)
  const int32_t* device_page_table = nullptr;
};

}  // namespace attnkit
