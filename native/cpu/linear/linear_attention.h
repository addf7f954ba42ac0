// Linear attention on the CPU: the planner splits a call into work items (batch, head, a block of
// value columns) and hands each to the ISA-specific chunkwise kernel picked at run time
// (linear_attention_kernel.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "../../core/linear_params.h"

namespace attnkit {

// One work item: batch b, head h, value columns [c0, c1). Items of one (b, h) repeat the
// column-independent work (feature maps, Q K^T); they exist only when B * H alone cannot keep
// every pool thread busy.
struct LinearItem {
  int64_t b, h, c0, c1;
};

// Rows of GLA's sub-chunks (per-dimension gates): pairs inside one are summed pair by pair, pairs
// across are matmuls (flash-linear-attention's chunk_gla uses 16 too).
constexpr int64_t kGlaSubChunk = 16;

// Log gates below this are clamped to it: exp(-1000) is 0 in float32 and float64 alike, so the
// result does not change, while chunk cumsums stay small enough (<= 1024 * 1000 in double) that
// their differences keep every digit of the small gates beside a huge one (or -Infinity).
constexpr double kLogGateFloor = -1000.0;

static inline int64_t round_up16(int64_t n) { return (n + 15) / 16 * 16; }

// Scratch of one work item with `cols` value columns, in floats; each buffer starts on a
// 64-byte boundary. Row strides are multiples of 16 floats, so every ISA's vectors tile them.
struct LinearLayout {
  int64_t ldk;  // row stride of [rows][Dk] buffers (zero padded)
  int64_t lds;  // row stride of the state and of [rows][cols (+1 with normalize)] buffers (zero padded)
  int64_t cp;   // row stride of [..][chunk] buffers
  size_t state, q, qt, kr, krs, kt, kht, qh, v, a, o, stage, g, fq, fk, rs, tmp, em, el, total;
};

static inline LinearLayout linear_layout(const LinearParams& p, int64_t cols) {
  LinearLayout L;
  const int64_t C = p.chunk, Dk = p.dk;
  L.ldk = round_up16(Dk);
  L.lds = round_up16(cols + (p.normalize ? 1 : 0));
  L.cp = round_up16(C);
  const bool per_dim = p.gate_kind == GateKind::PerDim;
  size_t at = 0;
  auto take = [&](int64_t floats) {
    const size_t here = at;
    at += static_cast<size_t>(round_up16(floats));
    return here;
  };
  L.state = take(Dk * L.lds);
  L.q = take(C * L.ldk);
  L.qt = take(C * L.ldk);
  L.kr = take(C * L.ldk);
  L.krs = take(C * L.ldk);
  L.kt = take(Dk * L.cp);
  L.kht = take(per_dim ? Dk * L.cp : 0);
  L.qh = take(per_dim ? kGlaSubChunk * L.ldk : 0);
  L.v = take(C * L.lds);
  L.a = take(C * L.cp);
  L.o = take(C * L.lds);
  L.stage = take(C * (Dk > cols ? Dk : cols));
  L.g = take(2 * (per_dim ? C * L.ldk : C));  // doubles
  L.fq = take(L.cp);
  L.fk = take(L.cp);
  L.rs = take(L.ldk);
  L.tmp = take(L.cp > L.ldk ? L.cp : L.ldk);
  L.em = take(L.ldk);
  L.el = take(L.ldk);
  L.total = at;
  return L;
}

// init_z: the initial normalizer as a contiguous [B, H, Dk] copy, or null. Returns false if aborted.
using LinearItemKernel = bool (*)(const LinearParams& p, const LinearItem& item, const float* init_z, float* scratch);

namespace cpu_avx512 { bool linear_attention_item(const LinearParams&, const LinearItem&, const float*, float*); }
namespace cpu_avx2 { bool linear_attention_item(const LinearParams&, const LinearItem&, const float*, float*); }
namespace cpu_scalar { bool linear_attention_item(const LinearParams&, const LinearItem&, const float*, float*); }

// Runs the whole call on the global thread pool; throws AttnException(Aborted) if the flag is raised.
void linear_attention_cpu(const LinearParams& p);

}  // namespace attnkit
