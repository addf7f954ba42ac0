// Decode attention over a paged KV cache (see decode_attention.h). Purely memory-bound: each
// (sequence, kv head) streams its keys and values once, and the arithmetic per byte is small (2 *
// rows FMAs per element), so the kernel is built around keeping the memory system busy:
//
// - One CTA = one (sequence, kv head, block of up to 4 or 8 query rows, key chunk). The rows of a
//   block are the GQA group's query heads x the new queries, so K and V are read once for all of
//   them (a group wider than a block re-reads them in a neighbouring CTA, mostly from L2).
// - Keys go through shared memory in tiles of kTile rows, copied with 16-byte cp.async (bypassing
//   L1) kStages tiles ahead: ~96 KB of stages per CTA, two CTAs per SM for 4-row blocks (Little's
//   law asks ~23 KB per SM at 3 TB/s and 1 us; bench/NOTES.md has what limited it in practice).
//   Each row of a tile is located through the page table, so pages of any size and order work.
// - Compute is on CUDA cores in float32 here: float32 caches, head dims other than 64 / 128, and
//   builds without the tensor-core form (decode_attention_sm80.cu takes float16 / bfloat16 with
//   head dims 64 and 128: on an H100 this kernel's instruction issue, not memory, set its pace).
//   kLanes lanes share one key (each lane holds kNv 16-byte vectors of it, and the matching slice
//   of every query row in registers), so a score is a short dot product plus a log2(kLanes)
//   shuffle reduction; the CTA's kGroups lane groups take interleaved keys of the tile, each keeps
//   its own online-softmax state (m, l, acc) in registers, and the groups are combined once at the
//   end through shared memory (FlashInfer's decode kernel splits the work the same way).
// - Split-KV: partial results (float32) go to scratch and the merge kernel combines them.
// - H2O scores (accumulateScores): a separate, simple kernel over K once the lse is final.
#include "decode_attention.h"

#include <algorithm>
#include <type_traits>

#include "../merge/merge_states.h"
#include "async_copy.cuh"
#include "decode_common.cuh"

namespace attnkit {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxHeadDim = 256;
// Keys below which a split chunk is not worth its own CTA (its setup and merge cost more).
constexpr int64_t kMinChunkKeys = 512;
constexpr int kMaxSplits = 1024;

struct alignas(16) Vec16 {
  uint32_t w[4];
};

// Compile-time shape of one kernel instance: element type, head dim padded to NVT 16-byte vectors
// (a power of two), RB query rows per CTA.
template <int DT, int NVT, int RB>
struct Config {
  using Storage = typename std::conditional<DT == kF32, float, uint16_t>::type;
  static constexpr int kElemBytes = sizeof(Storage);
  static constexpr int kVec = 16 / kElemBytes;  // elements per 16-byte vector
  static constexpr int kLanes = NVT < 32 ? NVT : 32;  // lanes that share one key
  static constexpr int kNv = NVT / kLanes;            // 16-byte vectors per lane per key row
  static constexpr int kGroups = kThreads / kLanes;   // keys processed side by side
  // Keys per group per tile: registers hold kKeys x RB scores besides q and acc (RB x kNv x kVec
  // floats each); 8-row blocks keep fewer to stay clear of spills.
  static constexpr int kKeys = (RB == 8 ? 2 : 4) / kNv > 0 ? (RB == 8 ? 2 : 4) / kNv : 1;
  static constexpr int kTile = kGroups * kKeys;
  static constexpr int kDPad = NVT * kVec;
  static constexpr int kRowBytes = kDPad * kElemBytes;
  static constexpr int kTileBytes = kTile * kRowBytes;  // one of K or V
  static constexpr int kStageBytes = 2 * kTileBytes;
  // 4-row blocks: two CTAs per SM, ~96 KB of stages each; 8-row blocks need twice the registers,
  // so one CTA per SM with ~160 KB.
  static constexpr int kMinBlocks = RB == 8 ? 1 : 2;
  static constexpr int kStageBudget = RB == 8 ? 160 * 1024 : 96 * 1024;
  static constexpr int kStages = kStageBudget / kStageBytes < 8 ? kStageBudget / kStageBytes : 8;
  // After the last tile the stages are reused for the groups' partial states.
  static constexpr int kReduceBytes = CombineSmem<kGroups, RB, kDPad>::kBytes;
  static constexpr int kSmemBytes = kStages * kStageBytes > kReduceBytes ? kStages * kStageBytes : kReduceBytes;
  static_assert(kStages >= 2, "a tile must fit twice in the stage budget");
  static_assert(kKeys * kGroups == kTile && kLanes * kGroups == kThreads, "lane mapping");
};

// Starts copying the K and V rows of keys [start, start + count) into one stage.
template <class C>
__device__ __forceinline__ void load_tile(const DecodeProblem& p, bool aligned, int b, int hkv, int start,
                                          int count, unsigned char* k_smem, unsigned char* v_smem) {
  if (aligned) {
    const char* kp = static_cast<const char*>(p.k_pool);
    const char* vp = static_cast<const char*>(p.v_pool);
    const int pieces = p.head_dim * C::kElemBytes / 16;  // 16-byte pieces per row
    for (int c = threadIdx.x; c < count * pieces; c += kThreads) {
      const int t = c / pieces, piece = c % pieces;
      const int64_t at = pool_row(p, b, hkv, start + t) * C::kElemBytes + piece * 16;
      cp_async_16(k_smem + t * C::kRowBytes + piece * 16, kp + at);
      cp_async_16(v_smem + t * C::kRowBytes + piece * 16, vp + at);
    }
  } else {
    // Rows not 16-byte aligned (head dims that are not a multiple of 16 bytes): element copies.
    using T = typename C::Storage;
    const int D = p.head_dim;
    for (int e = threadIdx.x; e < count * D; e += kThreads) {
      const int t = e / D, d = e % D;
      const int64_t at = pool_row(p, b, hkv, start + t) + d;
      reinterpret_cast<T*>(k_smem + t * C::kRowBytes)[d] = static_cast<const T*>(p.k_pool)[at];
      reinterpret_cast<T*>(v_smem + t * C::kRowBytes)[d] = static_cast<const T*>(p.v_pool)[at];
    }
  }
}

// One 16-byte vector as floats: 4 float32, or 8 float16 / bfloat16 (low half of each word first).
template <int DT>
__device__ __forceinline__ void unpack(const Vec16& raw, float* x) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (DT == kF32) {
      x[i] = __uint_as_float(raw.w[i]);
    } else if (DT == kBF16) {
      x[2 * i] = __uint_as_float(raw.w[i] << 16);
      x[2 * i + 1] = __uint_as_float(raw.w[i] & 0xffff0000u);
    } else {
      const unsigned short lo = raw.w[i] & 0xffffu, hi = raw.w[i] >> 16;
      x[2 * i] = load_element(&lo, kF16, 0);
      x[2 * i + 1] = load_element(&hi, kF16, 0);
    }
  }
}

// The floats of this lane's slice of one key row in shared memory (kNv vectors of kVec elements).
template <int DT, class C>
__device__ __forceinline__ void read_row_slice(const unsigned char* row, int lane, float (&x)[C::kNv * C::kVec]) {
#pragma unroll
  for (int v = 0; v < C::kNv; ++v) unpack<DT>(*reinterpret_cast<const Vec16*>(row + (lane + v * C::kLanes) * 16), x + v * C::kVec);
}

template <int DT, int NVT, int RB>
__global__ void __launch_bounds__(kThreads, Config<DT, NVT, RB>::kMinBlocks)
    decode_kernel(const __grid_constant__ DecodeProblem p, const DecodeLaunch launch) {
  using C = Config<DT, NVT, RB>;
  extern __shared__ float4 smem_storage[];
  unsigned char* smem = reinterpret_cast<unsigned char*>(smem_storage);
  const DecodeCta cta = decode_cta<RB, C::kTile>(p, launch);
  const int b = cta.b, hkv = cta.hkv, Sq = p.seq_q, D = p.head_dim;

  const int group = threadIdx.x / C::kLanes, lane = threadIdx.x % C::kLanes;
  constexpr int kSlice = C::kNv * C::kVec;

  auto stage_k = [&](int t) { return smem + (t % C::kStages) * C::kStageBytes; };
  // Prologue: the first kStages - 1 tiles in flight before anything else (an empty commit keeps the group count fixed).
  auto load = [&](int start, int count, int t) {
    load_tile<C>(p, launch.aligned, b, hkv, start, count, stage_k(t), stage_k(t) + C::kTileBytes);
  };
  for (int t = 0; t < C::kStages - 1; ++t) issue_tile(cta, t, C::kTile, load);

  // This lane's slice of each row's query, scaled, in float32; zero past D and past the rows.
  float q[RB][kSlice];
  int head[RB], pos[RB];
#pragma unroll
  for (int r = 0; r < RB; ++r) {
    const int row = cta.r0 + (r < cta.nrows ? r : 0);
    head[r] = hkv * cta.G + row / Sq;
    pos[r] = cta.len - Sq + row % Sq;
    const int64_t base = int64_t(b) * p.q_stride[0] + int64_t(head[r]) * p.q_stride[1] + int64_t(row % Sq) * p.q_stride[2];
#pragma unroll
    for (int v = 0; v < C::kNv; ++v)
#pragma unroll
      for (int e = 0; e < C::kVec; ++e) {
        const int d = (lane + v * C::kLanes) * C::kVec + e;
        q[r][v * C::kVec + e] = (r < cta.nrows && d < D) ? p.scale * load_element(p.q, DT, base + d * p.q_stride[3]) : 0.0f;
      }
  }

  // Pad columns [D, kDPad) of every stage row read as zeros: no copy ever writes them.
  if (D < C::kDPad) {
    const int pad = C::kDPad - D;
    for (int e = threadIdx.x; e < C::kStages * 2 * C::kTile * pad; e += kThreads) {
      const int row = e / pad, d = D + e % pad;
      reinterpret_cast<typename C::Storage*>(smem + row * C::kRowBytes)[d] = 0;
    }
  }

  float m[RB], l[RB], acc[RB][kSlice];
#pragma unroll
  for (int r = 0; r < RB; ++r) {
    m[r] = neg_inf();
    l[r] = 0.0f;
#pragma unroll
    for (int e = 0; e < kSlice; ++e) acc[r][e] = 0.0f;
  }

  for (int t = 0; t < cta.tiles; ++t) {
    int start, count;
    next_tile<C::kStages>(cta, t, C::kTile, load, &start, &count);
    const unsigned char* ks = stage_k(t);
    const unsigned char* vs = ks + C::kTileBytes;

    // Scores of this group's keys (interleaved: key k of the group is tile row group + k * kGroups,
    // so neighbouring groups read neighbouring rows).
    float s[C::kKeys][RB];
#pragma unroll
    for (int k = 0; k < C::kKeys; ++k) {
      float kf[kSlice];
      read_row_slice<DT, C>(ks + (group + k * C::kGroups) * C::kRowBytes, lane, kf);
#pragma unroll
      for (int r = 0; r < RB; ++r) {
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < kSlice; ++e) dot += q[r][e] * kf[e];
        s[k][r] = dot;
      }
    }
#pragma unroll
    for (int off = C::kLanes / 2; off > 0; off /= 2)
#pragma unroll
      for (int k = 0; k < C::kKeys; ++k)
#pragma unroll
        for (int r = 0; r < RB; ++r) s[k][r] += __shfl_xor_sync(0xffffffffu, s[k][r], off);

    // Masks and score modifiers (q carries the scale already).
    const bool plain = plain_tile(p, cta, start, count);
#pragma unroll
    for (int k = 0; k < C::kKeys; ++k) {
      const int row = group + k * C::kGroups;
#pragma unroll
      for (int r = 0; r < RB; ++r) {
        if (row >= count)
          s[k][r] = neg_inf();
        else if (!plain)
          s[k][r] = decode_score(p, pos[r], head[r], start + row, s[k][r]);
      }
    }

    // Online softmax of this group's keys, then acc += p * V.
#pragma unroll
    for (int r = 0; r < RB; ++r) {
      float mt = m[r];
#pragma unroll
      for (int k = 0; k < C::kKeys; ++k) mt = s[k][r] > mt ? s[k][r] : mt;
      if (mt == neg_inf()) {  // nothing visible yet
#pragma unroll
        for (int k = 0; k < C::kKeys; ++k) s[k][r] = 0.0f;
        continue;
      }
      const float alpha = fast_exp(m[r] - mt);  // 0 when m was -inf
      float sum = 0.0f;
#pragma unroll
      for (int k = 0; k < C::kKeys; ++k) {
        s[k][r] = fast_exp(s[k][r] - mt);
        sum += s[k][r];
      }
      m[r] = mt;
      l[r] = l[r] * alpha + sum;
#pragma unroll
      for (int e = 0; e < kSlice; ++e) acc[r][e] *= alpha;
    }
#pragma unroll
    for (int k = 0; k < C::kKeys; ++k) {
      const int row = group + k * C::kGroups;
      if (row >= count) continue;  // same for the whole group: no shuffle below
      float vf[kSlice];
      read_row_slice<DT, C>(vs + row * C::kRowBytes, lane, vf);
#pragma unroll
      for (int r = 0; r < RB; ++r)
#pragma unroll
        for (int e = 0; e < kSlice; ++e) acc[r][e] += s[k][r] * vf[e];
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // every stage is free: reuse shared memory for the groups' states

  using Combine = CombineSmem<C::kGroups, RB, C::kDPad>;
  float* red = reinterpret_cast<float*>(smem);
  float* red_m = red + C::kGroups * RB * C::kDPad;
  float* red_l = red_m + C::kGroups * RB;
#pragma unroll
  for (int r = 0; r < RB; ++r) {
    if (lane == 0) {
      red_m[group * RB + r] = m[r];
      red_l[group * RB + r] = l[r];
    }
#pragma unroll
    for (int v = 0; v < C::kNv; ++v)
#pragma unroll
      for (int e = 0; e < C::kVec; ++e)
        red[(group * RB + r) * C::kDPad + (lane + v * C::kLanes) * C::kVec + e] = acc[r][v * C::kVec + e];
  }
  static_assert(Combine::kBytes <= C::kSmemBytes, "the epilogue reuses the stages");
  __syncthreads();
  combine_and_store<C::kGroups, RB, C::kDPad, kThreads>(p, launch, cta, red);
}

// H2O scores (see decode_attention.h): one warp per key, the lanes splitting D; every row of the
// kv head's group in turn (a documented cost: R dot products per key, as on the CPU).
constexpr int kScoreWarps = 8;
constexpr int kScoreKeysPerWarp = 4;
constexpr int kScoreKeys = kScoreWarps * kScoreKeysPerWarp;  // keys per CTA

__global__ void __launch_bounds__(kScoreWarps * 32)
    decode_scores_kernel(const __grid_constant__ DecodeProblem p, const float* lse, float* scores) {
  const int key_blocks = int(gridDim.x) / (p.batch * p.heads_kv);
  const int kb = int(blockIdx.x) % key_blocks, hkv = (int(blockIdx.x) / key_blocks) % p.heads_kv,
            b = int(blockIdx.x) / (key_blocks * p.heads_kv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int G = p.heads_q / p.heads_kv, Sq = p.seq_q, D = p.head_dim;
  int len = p.lengths[b];
  const int64_t cap = p.table_width * p.page_size;
  len = len < 0 ? 0 : (len > cap ? int(cap) : len);
  for (int k = 0; k < kScoreKeysPerWarp; ++k) {
    const int j = kb * kScoreKeys + warp * kScoreKeysPerWarp + k;
    if (j >= len) break;  // the same for the whole warp
    const int64_t row = pool_row(p, b, hkv, j);
    float mass = 0.0f;
    for (int r = 0; r < G * Sq; ++r) {
      const int h = hkv * G + r / Sq, i = r % Sq;
      const int64_t q0 = int64_t(b) * p.q_stride[0] + int64_t(h) * p.q_stride[1] + int64_t(i) * p.q_stride[2];
      float dot = 0.0f;
      for (int d = lane; d < D; d += 32)
        dot += p.scale * load_element(p.q, p.dtype, q0 + d * p.q_stride[3]) * load_element(p.k_pool, p.dtype, row + d);
      for (int off = 16; off > 0; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);
      const float s = decode_score(p, len - Sq + i, h, j, dot);
      const float l = lse[(int64_t(b) * p.heads_q + h) * Sq + i];
      if (s != neg_inf() && l != neg_inf()) mass += expf(s - l);
    }
    if (lane == 0) {
      const int64_t page = p.page_table[int64_t(b) * p.table_width + j / p.page_size];
      const int64_t clamped = page < 0 ? 0 : (page >= p.pool_pages ? p.pool_pages - 1 : page);
      scores[(clamped * p.heads_kv + hkv) * p.page_size + j % p.page_size] += mass;
    }
  }
}

// ---- host side ----------------------------------------------------------------------------------

int padded_vectors(const DecodeProblem& p) {
  const int vec = p.dtype == kF32 ? 4 : 8;
  int n = (p.head_dim + vec - 1) / vec, nvt = 4;
  while (nvt < n) nvt *= 2;
  return nvt;
}

template <int DT, int NVT, int RB>
cudaError_t launch_instance(const DecodeProblem& p, const DecodeLaunch& launch, unsigned blocks, cudaStream_t stream) {
  using C = Config<DT, NVT, RB>;
  auto kernel = decode_kernel<DT, NVT, RB>;
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes);
  if (e != cudaSuccess) return e;
  kernel<<<blocks, kThreads, C::kSmemBytes, stream>>>(p, launch);
  return cudaGetLastError();
}

template <int DT, int RB>
cudaError_t launch_for_rows(const DecodeProblem& p, const DecodeLaunch& launch, unsigned blocks, cudaStream_t stream) {
  switch (padded_vectors(p)) {
    case 4: return launch_instance<DT, 4, RB>(p, launch, blocks, stream);
    case 8: return launch_instance<DT, 8, RB>(p, launch, blocks, stream);
    case 16: return launch_instance<DT, 16, RB>(p, launch, blocks, stream);
    case 32: return launch_instance<DT, 32, RB>(p, launch, blocks, stream);
    default:
      if constexpr (DT == kF32) return launch_instance<DT, 64, RB>(p, launch, blocks, stream);
      return cudaErrorNotSupported;
  }
}

template <int DT>
cudaError_t launch_for_dtype(const DecodeProblem& p, const DecodePlan& plan, const DecodeLaunch& launch,
                             unsigned blocks, cudaStream_t stream) {
  return plan.rows_per_block == 8 ? launch_for_rows<DT, 8>(p, launch, blocks, stream)
                                  : launch_for_rows<DT, 4>(p, launch, blocks, stream);
}

// CTAs resident per SM for a plan (the instances' launch bounds; shared memory allows them).
int ctas_per_sm(const DecodePlan& plan) {
  if (plan.mma) return kDecodeMmaCtasPerSm;
  return plan.rows_per_block == 8 ? 1 : 2;
}

}  // namespace

bool decode_supports(const DecodeProblem& p, const char** why) {
  if (p.dtype != kF32 && p.dtype != kF16 && p.dtype != kBF16) {
    *why = "q and the pools must be float32, float16 or bfloat16";
    return false;
  }
  if (p.head_dim < 1 || p.head_dim > kMaxHeadDim) {
    *why = "decodeAttention on the GPU takes head dims 1 to 256";
    return false;
  }
  if (p.heads_kv < 1 || p.heads_q % p.heads_kv != 0 || p.page_size < 1 || p.seq_q < 1) {
    *why = "heads_q must be a multiple of heads_kv >= 1, with page_size and seq_q >= 1";
    return false;
  }
  return true;
}

DecodePlan plan_decode(const DecodeProblem& p, int64_t max_length, int64_t splits, const DeviceTraits& dev) {
  DecodePlan plan;
  const int64_t rows = int64_t(p.heads_q / p.heads_kv) * p.seq_q;
  plan.mma = decode_mma_supports(p, dev);
  plan.rows_per_block = plan.mma ? kDecodeMmaRows : (rows <= 4 ? 4 : 8);
  plan.row_blocks = int((rows + plan.rows_per_block - 1) / plan.rows_per_block);
  const int64_t pairs = int64_t(p.batch) * p.heads_kv * plan.row_blocks;
  if (splits <= 0) {
    // The fewest splits whose CTAs fill the resident slots to >= 90% over their waves (the last
    // wave of a long decode is as long as the others), never chunks under kMinChunkKeys.
    const int64_t slots = int64_t(std::max(dev.multiprocessors, 1)) * ctas_per_sm(plan);
    const int64_t most = std::max<int64_t>(1, std::min<int64_t>(kMaxSplits, max_length / kMinChunkKeys));
    int64_t best = 1;
    double best_fill = 0.0;
    for (int64_t s = 1; s <= most; ++s) {
      const int64_t n = pairs * s;
      const double fill = double(n) / double((n + slots - 1) / slots * slots);
      if (fill > best_fill + 1e-9) {
        best = s;
        best_fill = fill;
      }
      if (fill >= 0.9) break;
    }
    splits = best;
  }
  plan.splits = int(std::min<int64_t>(splits, kMaxSplits));
  if (plan.splits > 1) {
    const size_t rows_total = size_t(p.batch) * p.heads_q * p.seq_q;
    const size_t out_bytes = size_t(plan.splits) * rows_total * size_t(p.head_dim) * sizeof(float);
    // [splits][rows][D] outs, [splits][rows] lses, and [rows] for the merged lse when the caller
    // wants none (the merge always writes one).
    plan.scratch_bytes = (out_bytes + 255) / 256 * 256 + size_t(plan.splits + 1) * rows_total * sizeof(float);
  }
  return plan;
}

cudaError_t launch_decode_scores(const DecodeProblem& p, const float* lse, float* scores, int64_t max_length,
                                 cudaStream_t stream) {
  const int64_t key_blocks = (max_length + kScoreKeys - 1) / kScoreKeys;
  const int64_t blocks = int64_t(p.batch) * p.heads_kv * key_blocks;
  if (blocks == 0 || p.pool_pages == 0) return cudaSuccess;
  if (blocks > int64_t(INT32_MAX)) return cudaErrorInvalidValue;
  auto kernel = decode_scores_kernel;
  kernel<<<unsigned(blocks), kScoreWarps * 32, 0, stream>>>(p, lse, scores);
  return cudaGetLastError();
}

cudaError_t launch_decode_attention(const DecodeProblem& p, const DecodePlan& plan, void* scratch,
                                    const DeviceTraits& dev, cudaStream_t stream) {
  const int64_t blocks = int64_t(p.batch) * p.heads_kv * plan.row_blocks * plan.splits;
  if (blocks == 0) return cudaSuccess;
  if (blocks > int64_t(INT32_MAX)) return cudaErrorInvalidValue;
  DecodeLaunch launch;
  launch.splits = plan.splits;
  launch.row_blocks = plan.row_blocks;
  const int elem = p.dtype == kF32 ? 4 : 2;
  launch.aligned = (int64_t(p.head_dim) * elem) % 16 == 0 && reinterpret_cast<uintptr_t>(p.k_pool) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(p.v_pool) % 16 == 0;
  const size_t rows_total = size_t(p.batch) * p.heads_q * p.seq_q;
  const size_t out_bytes = size_t(plan.splits) * rows_total * size_t(p.head_dim) * sizeof(float);
  launch.part_out = plan.splits > 1 ? static_cast<float*>(scratch) : nullptr;
  launch.part_lse =
      plan.splits > 1 ? reinterpret_cast<float*>(static_cast<unsigned char*>(scratch) + (out_bytes + 255) / 256 * 256)
                      : nullptr;
  const unsigned grid = unsigned(blocks);
  cudaError_t e;
  switch (plan.mma ? -1 : p.dtype) {
    case -1: e = launch_decode_mma(p, launch, grid, stream); break;
    case kF32: e = launch_for_dtype<kF32>(p, plan, launch, grid, stream); break;
    case kF16: e = launch_for_dtype<kF16>(p, plan, launch, grid, stream); break;
    default: e = launch_for_dtype<kBF16>(p, plan, launch, grid, stream); break;
  }
  if (e != cudaSuccess || plan.splits == 1) return e;

  // Flash-Decoding's second step: the split partials, merged into out and lse (the caller's, or
  // the scratch's last row of floats: the merge always writes one).
  MergeProblem m;
  m.parts = nullptr;
  m.num_parts = plan.splits;
  m.stacked_out = launch.part_out;
  m.stacked_lse = launch.part_lse;
  m.stacked_out_stride = int64_t(rows_total) * p.head_dim;
  m.stacked_lse_stride = int64_t(rows_total);
  m.out = p.out;
  m.out_dtype = p.out_dtype;
  for (int i = 0; i < 4; ++i) m.out_stride[i] = p.out_stride[i];
  m.lse = p.lse ? p.lse : launch.part_lse + size_t(plan.splits) * rows_total;
  m.batch = p.batch;
  m.heads = p.heads_q;
  m.seq = p.seq_q;
  m.head_dim_v = p.head_dim;
  return launch_merge_attention_states(m, dev.multiprocessors, stream);
}

}  // namespace cuda
}  // namespace attnkit
