// Decode attention on the CPU over a paged KV cache (Flash-Decoding): one work item is a
// (sequence, kv head, key chunk); every query head of the kv head's GQA group and every new query
// share one pass over the chunk's pages. Chunks of one (sequence, kv head) are merged afterwards
// with the attention-state merge (native/cpu/merge).
#pragma once
#include <cstdint>

#include "../../core/decode_params.h"

namespace attnkit {

// One work item: keys [j0, j1) of sequence b, kv head hkv. Writes rows (query head, new query) of
// out (float, any dtype/strides) and lse (row stride 1, [B, Hq, Sq] layout), or adds the keys'
// probabilities into p.scores when `scores_pass` (then out/lse are read: lse must be final).
struct DecodeItem {
  int64_t b, hkv, j0, j1;
  int64_t split;  // which part (split-KV) it writes
  bool first;     // the chunk that carries the sink logit
};
using DecodeKernel = bool (*)(const DecodeParams& p, const DecodeItem& w, const TensorView& out, float* lse,
                              bool scores_pass, float* scratch);

namespace cpu_avx512 { bool decode_item(const DecodeParams&, const DecodeItem&, const TensorView&, float*, bool, float*); }
namespace cpu_avx2 { bool decode_item(const DecodeParams&, const DecodeItem&, const TensorView&, float*, bool, float*); }
namespace cpu_scalar { bool decode_item(const DecodeParams&, const DecodeItem&, const TensorView&, float*, bool, float*); }

// Keys per tile of the kernel; scratch floats one item needs.
constexpr int64_t kDecodeKeyTile = 32;
size_t decode_scratch_floats(const DecodeParams& p);

// Runs the whole call on the global pool; throws AttnException(Aborted) if the flag is raised.
void decode_attention_cpu(const DecodeParams& p);

}  // namespace attnkit
