#include "decode_attention.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <vector>

#include "../../core/cpu_features.h"
#include "../../core/error.h"
#include "../../core/thread_pool.h"
#include "../../core/validate.h"
#include "../merge/merge_states.h"
#include "../scratch.h"

namespace attnkit {
namespace {

DecodeKernel kernel_for(Isa isa) {
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::Avx512: return cpu_avx512::decode_item;
    case Isa::Avx2: return cpu_avx2::decode_item;
#endif
    default: return cpu_scalar::decode_item;
  }
}

// Keys below which a chunk is not worth its own item (the merge and the item's setup cost more).
constexpr int64_t kMinChunkKeys = 256;

TensorView f32_view(float* data, int rank, const int64_t* shape) {
  TensorView t;
  t.data = data;
  t.dtype = DType::Float32;
  t.rank = rank;
  int64_t stride = 1;
  for (int i = rank - 1; i >= 0; --i) { t.shape[i] = shape[i]; t.strides[i] = stride; stride *= shape[i]; }
  return t;
}

}  // namespace

size_t decode_scratch_floats(const DecodeParams& p) {
  const int64_t R = p.heads_q / p.heads_kv * p.seq_q, D = p.head_dim;
  return static_cast<size_t>(2 * R * D + 3 * R + R * kDecodeKeyTile + 2 * kDecodeKeyTile * D);
}

void decode_attention_cpu(const DecodeParams& p) {
  const int64_t B = p.batch, Hkv = p.heads_kv, Hq = p.heads_q, Sq = p.seq_q, D = p.head_dim;
  int64_t max_len = 0;
  for (int64_t b = 0; b < B; ++b) max_len = std::max<int64_t>(max_len, p.lengths[b]);
  const int64_t threads = ThreadPool::global().threads();
  // Split-KV (Flash-Decoding): enough items for 4 per pool thread when the batch and kv heads
  // alone do not give them, but no chunk under kMinChunkKeys keys.
  int64_t splits = p.splits;
  if (splits <= 0) {
    splits = std::max<int64_t>(1, (4 * threads + B * Hkv - 1) / (B * Hkv));
    splits = std::min(splits, std::max<int64_t>(1, max_len / kMinChunkKeys));
  }
  std::vector<DecodeItem> items;
  items.reserve(static_cast<size_t>(B * Hkv * splits));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = p.lengths[b], chunk = (len + splits - 1) / splits;
    for (int64_t h = 0; h < Hkv; ++h)
      for (int64_t s = 0; s < splits; ++s)
        items.push_back({b, h, std::min(len, s * chunk), std::min(len, (s + 1) * chunk), s, s == 0});
  }
  // Longest first, so the pool's in-order hand-out ends with short items.
  std::stable_sort(items.begin(), items.end(), [](const DecodeItem& a, const DecodeItem& c) { return a.j1 - a.j0 > c.j1 - c.j0; });

  const int64_t rows = B * Hq * Sq;
  std::vector<float> own_lse;
  float* lse = p.lse;
  if (!lse) { own_lse.resize(static_cast<size_t>(rows)); lse = own_lse.data(); }
  std::vector<float> part_out, part_lse;
  std::vector<TensorView> outs, lses;
  if (splits > 1) {
    part_out.resize(static_cast<size_t>(splits * rows * D));
    part_lse.resize(static_cast<size_t>(splits * rows));
    const int64_t os[4] = {B, Hq, Sq, D}, ls[3] = {B, Hq, Sq};
    for (int64_t s = 0; s < splits; ++s) {
      outs.push_back(f32_view(part_out.data() + s * rows * D, 4, os));
      lses.push_back(f32_view(part_lse.data() + s * rows, 3, ls));
    }
  }
  const DecodeKernel kernel = kernel_for(active_isa());
  const size_t scratch = decode_scratch_floats(p);
  std::atomic<bool> aborted{false};
  ThreadPool::global().parallel_for(static_cast<int64_t>(items.size()), [&](int64_t n, int) {
    if (aborted.load(std::memory_order_relaxed)) return;
    const int64_t s = items[n].split;
    const TensorView& out = splits > 1 ? outs[s] : p.out;
    float* l = splits > 1 ? part_lse.data() + s * rows : lse;
    if (!kernel(p, items[n], out, l, false, thread_scratch(scratch))) aborted.store(true);
  });
  if (aborted.load()) fail(ErrorCode::Aborted, "decodeAttention was aborted by its AbortSignal");
  if (splits > 1) {
    MergeRequest r;
    r.num_parts = splits;
    r.outs = outs.data();
    r.lses = lses.data();
    r.out = p.out;
    const int64_t ls[3] = {B, Hq, Sq};
    r.lse = f32_view(lse, 3, ls);
    merge_attention_states_cpu(r);
  }
  if (p.scores) {
    // H2O: each key's probability under the final lse, a second pass over K only (the split
    // chunks' lse are not final until merged, so the fused pass cannot normalise them).
    ThreadPool::global().parallel_for(static_cast<int64_t>(items.size()), [&](int64_t n, int) {
      kernel(p, items[n], p.out, lse, true, thread_scratch(scratch));
    });
  }
}

}  // namespace attnkit
