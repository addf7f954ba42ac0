// Decode attention on tensor cores (mma.sync m16n8k16, sm_80 and newer, Hopper included): the
// same contract and CTA plan as the CUDA-core kernel (decode_attention.cu, whose shared pieces are
// in decode_common.cuh), for float16 / bfloat16 with head dims 64 and 128.
//
// Why: with a GQA group of 4, the CUDA-core kernel spends ~6k warp instructions per 32 KB of KV
// (dot products, shuffle reductions, softmax replicated across lanes) and issues at ~2.5 IPC per
// SM to keep up with HBM: on an H100 it reached 0.78x of copy bandwidth. On tensor cores a 64-key
// tile costs each warp 32 MMAs and 16 ldmatrix, so the kernel is left waiting on memory only.
//
// - CTA: 4 warps, up to 16 query rows (the GQA group x the new queries, zero-padded to the m16
//   tile), one key chunk; tiles of 64 keys, warp w owning keys [16w, 16w + 16) of each tile, with
//   its own online-softmax state; the warps are combined at the end (combine_and_store).
// - S = Q K^T: Q as A fragments in registers for the whole CTA, K by ldmatrix (keys as the n
//   dimension); P stays in registers, packed to 16 bits as the A fragment of P V (FlashAttention-2),
//   V by ldmatrix.trans. Accumulators float32; P rounded to the input's 16-bit type as FA2 does.
// - Memory: rows pitched D + 8 elements (an odd number of 16-byte units: conflict-free ldmatrix),
//   3 stages of K and V per CTA filled by cp.async (2 in flight while one is used), two CTAs per
//   SM (~210 KB of shared memory).
#include "../fused/mma_sm80.cuh"
#include "async_copy.cuh"
#include "decode_common.cuh"

namespace attnkit {
namespace cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;

template <int D>
struct MmaConfig {
  static constexpr int kTile = 16 * kWarps;  // keys per tile: 16 per warp
  static constexpr int kPitch = D + 8;       // shared-memory row pitch, 16-bit elements
  static constexpr int kRowBytes = 2 * kPitch;
  static constexpr int kTileBytes = kTile * kRowBytes;
  static constexpr int kStageBytes = 2 * kTileBytes;  // K then V
  static constexpr int kStages = D <= 64 ? 6 : 3;  // ~105 KB: two CTAs per SM
  static constexpr int kDSteps = D / 16;  // k16 steps of Q K^T
  static constexpr int kDTiles = D / 8;   // n8 tiles of the output
  static constexpr int kPieces = D / 8;   // 16-byte pieces per row
  static constexpr int kReduceBytes = CombineSmem<kWarps, kDecodeMmaRows, D>::kBytes;
  static constexpr int kSmemBytes = kStages * kStageBytes > kReduceBytes ? kStages * kStageBytes : kReduceBytes;
  static_assert(((kPitch / 8) & 1) == 1, "row pitch must be an odd number of 16-byte units");
  static_assert(kThreads % kPieces == 0, "each thread copies whole pieces");
};

// Starts copying the K and V rows of keys [start, start + count) into one stage; rows past count
// are zeroed (plain stores, ordered by the barrier before the tile is used) so that P V never
// multiplies a zero probability by stale shared memory that could hold a NaN.
template <int D>
__device__ __forceinline__ void load_tile_mma(const DecodeProblem& p, int b, int hkv, int start, int count,
                                              unsigned char* k_smem, unsigned char* v_smem) {
  using C = MmaConfig<D>;
  const int piece = threadIdx.x % C::kPieces;
  const char* kp = static_cast<const char*>(p.k_pool);
  const char* vp = static_cast<const char*>(p.v_pool);
#pragma unroll
  for (int t = threadIdx.x / C::kPieces; t < C::kTile; t += kThreads / C::kPieces) {
    unsigned char* kd = k_smem + t * C::kRowBytes + piece * 16;
    unsigned char* vd = v_smem + t * C::kRowBytes + piece * 16;
    if (t < count) {
      const int64_t at = pool_row(p, b, hkv, start + t) * 2 + piece * 16;
      cp_async_16(kd, kp + at);
      cp_async_16(vd, vp + at);
    } else {
      *reinterpret_cast<uint4*>(kd) = make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(vd) = make_uint4(0, 0, 0, 0);
    }
  }
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads, kDecodeMmaCtasPerSm)
    decode_mma_kernel(const __grid_constant__ DecodeProblem p, const DecodeLaunch launch) {
  using C = MmaConfig<D>;
  constexpr int RB = kDecodeMmaRows;
  extern __shared__ float4 smem_storage[];
  unsigned char* smem = reinterpret_cast<unsigned char*>(smem_storage);
  const DecodeCta cta = decode_cta<RB, C::kTile>(p, launch);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, c4 = lane % 4;  // fragment row and column pair of this lane

  auto stage = [&](int t) { return smem + (t % C::kStages) * C::kStageBytes; };
  // The first kStages - 1 tiles go in flight before anything else, Q's loads included.
  auto load = [&](int start, int count, int t) {
    load_tile_mma<D>(p, cta.b, cta.hkv, start, count, stage(t), stage(t) + C::kTileBytes);
  };
  for (int t = 0; t < C::kStages - 1; ++t) issue_tile(cta, t, C::kTile, load);

  // This lane's two rows (g and g + 8): position, query head, and where q's row starts (padding
  // rows take row 0's position and head, and read as zeros; they are never stored).
  int pos[2], head[2];
  int64_t qrow[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const bool real = g + 8 * h < cta.nrows;
    const int row = cta.r0 + (real ? g + 8 * h : 0);
    pos[h] = cta.len - p.seq_q + row % p.seq_q;
    head[h] = cta.hkv * cta.G + row / p.seq_q;
    qrow[h] = real ? int64_t(cta.b) * p.q_stride[0] + int64_t(head[h]) * p.q_stride[1] + int64_t(row % p.seq_q) * p.q_stride[2]
                   : -1;
  }
  const uint16_t* q16 = static_cast<const uint16_t*>(p.q);
  auto qpair = [&](int h, int d) -> uint32_t {  // elements d, d + 1 of row h as one A register
    if (qrow[h] < 0) return 0u;
    return uint32_t(q16[qrow[h] + int64_t(d) * p.q_stride[3]]) | (uint32_t(q16[qrow[h] + int64_t(d + 1) * p.q_stride[3]]) << 16);
  };
  // Q as A fragments (rows g and g + 8, columns 2 * c4 (+ 1) and + 8), unscaled 16-bit values.
  uint32_t qa[C::kDSteps][4];
#pragma unroll
  for (int ks = 0; ks < C::kDSteps; ++ks) {
    const int d0 = ks * 16 + 2 * c4;
    qa[ks][0] = qpair(0, d0);
    qa[ks][1] = qpair(1, d0);
    qa[ks][2] = qpair(0, d0 + 8);
    qa[ks][3] = qpair(1, d0 + 8);
  }

  float O[C::kDTiles][4];
#pragma unroll
  for (int dt = 0; dt < C::kDTiles; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) O[dt][e] = 0.0f;
  float m[2] = {neg_inf(), neg_inf()}, l[2] = {0.0f, 0.0f};  // l: this lane's partial sums

  // ldmatrix row addresses of this lane inside a stage (see fused_attention_sm80.cu for the maps).
  const uint32_t k_lane_off = 2u * ((warp * 16 + lane % 8 + (lane / 16) * 8) * C::kPitch + ((lane / 8) % 2) * 8);
  const uint32_t v_lane_off = 2u * ((warp * 16 + lane % 8 + ((lane / 8) % 2) * 8) * C::kPitch + (lane / 16) * 8);

  for (int t = 0; t < cta.tiles; ++t) {
    int start, count;
    next_tile<C::kStages>(cta, t, C::kTile, load, &start, &count);
    const uint32_t k_base = smem_address(stage(t)), v_base = k_base + C::kTileBytes;

    // S = Q K^T over this warp's 16 keys: two n8 tiles.
    float S[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
    for (int ks = 0; ks < C::kDSteps; ++ks) {
      uint32_t kb[4];
      ldmatrix_x4(kb, k_base + k_lane_off + 32u * ks);
      T::mma(S[0], qa[ks], kb[0], kb[1]);
      T::mma(S[1], qa[ks], kb[2], kb[3]);
    }

    // Scale, masks and modifiers; element (nt, e) is row g + 8 * (e / 2), tile key
    // 16 * warp + 8 * nt + 2 * c4 + e % 2.
    const bool plain = plain_tile(p, cta, start, count);
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = 16 * warp + 8 * nt + 2 * c4 + (e % 2);
        const float x = S[nt][e] * p.scale;
        S[nt][e] = key >= count ? neg_inf() : (plain ? x : decode_score(p, pos[e / 2], head[e / 2], start + key, x));
      }

    // Online softmax per row (the quad of lanes sharing a row holds its 16 scores).
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mt = fmaxf(fmaxf(S[0][2 * h], S[0][2 * h + 1]), fmaxf(S[1][2 * h], S[1][2 * h + 1]));
      mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
      mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 2));
      const float m_new = fmaxf(m[h], mt);
      float alpha = 1.0f;
      if (m_new == neg_inf()) {  // nothing visible yet
        S[0][2 * h] = S[0][2 * h + 1] = S[1][2 * h] = S[1][2 * h + 1] = 0.0f;
      } else {
        alpha = fast_exp(m[h] - m_new);  // 0 when m was -inf
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
          for (int e = 2 * h; e < 2 * h + 2; ++e) S[nt][e] = fast_exp(S[nt][e] - m_new);
        m[h] = m_new;
      }
      l[h] = l[h] * alpha + S[0][2 * h] + S[0][2 * h + 1] + S[1][2 * h] + S[1][2 * h + 1];
#pragma unroll
      for (int dt = 0; dt < C::kDTiles; ++dt) {
        O[dt][2 * h] *= alpha;
        O[dt][2 * h + 1] *= alpha;
      }
    }

    // O += P V: P's two n8 tiles are the A fragment of one k16 step.
    uint32_t pa[4];
    pa[0] = T::pack(S[0][0], S[0][1]);
    pa[1] = T::pack(S[0][2], S[0][3]);
    pa[2] = T::pack(S[1][0], S[1][1]);
    pa[3] = T::pack(S[1][2], S[1][3]);
#pragma unroll
    for (int dp = 0; dp < C::kDTiles / 2; ++dp) {
      uint32_t vb[4];
      ldmatrix_x4_trans(vb, v_base + v_lane_off + 32u * dp);
      T::mma(O[2 * dp], pa, vb[0], vb[1]);
      T::mma(O[2 * dp + 1], pa, vb[2], vb[3]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // every stage is free: reuse shared memory for the warps' states

  float* red = reinterpret_cast<float*>(smem);  // [kWarps][RB][D], then m, l [kWarps][RB]
  float* red_m = red + kWarps * RB * D;
  float* red_l = red_m + kWarps * RB;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float lsum = l[h];
    lsum += __shfl_xor_sync(0xffffffffu, lsum, 1);
    lsum += __shfl_xor_sync(0xffffffffu, lsum, 2);
    const int r = g + 8 * h;
    if (c4 == 0) {
      red_m[warp * RB + r] = m[h];
      red_l[warp * RB + r] = lsum;
    }
#pragma unroll
    for (int dt = 0; dt < C::kDTiles; ++dt) {
      red[(warp * RB + r) * D + dt * 8 + 2 * c4] = O[dt][2 * h];
      red[(warp * RB + r) * D + dt * 8 + 2 * c4 + 1] = O[dt][2 * h + 1];
    }
  }
  __syncthreads();
  combine_and_store<kWarps, RB, D, kThreads>(p, launch, cta, red);
}

template <class T, int D>
cudaError_t launch_instance(const DecodeProblem& p, const DecodeLaunch& launch, unsigned blocks, cudaStream_t stream) {
  using C = MmaConfig<D>;
  auto kernel = decode_mma_kernel<T, D>;
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes);
  if (e != cudaSuccess) return e;
  kernel<<<blocks, kThreads, C::kSmemBytes, stream>>>(p, launch);
  return cudaGetLastError();
}

}  // namespace

bool decode_mma_supports(const DecodeProblem& p, const DeviceTraits& dev) {
  const size_t smem = p.head_dim == 64 ? MmaConfig<64>::kSmemBytes : MmaConfig<128>::kSmemBytes;
  return (p.dtype == kF16 || p.dtype == kBF16) && (p.head_dim == 64 || p.head_dim == 128) && dev.cc_major >= 8 &&
         dev.max_shared_per_block_optin >= smem && reinterpret_cast<uintptr_t>(p.k_pool) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(p.v_pool) % 16 == 0;
}

cudaError_t launch_decode_mma(const DecodeProblem& p, const DecodeLaunch& launch, unsigned blocks, cudaStream_t stream) {
  if (p.dtype == kBF16) {
    return p.head_dim == 64 ? launch_instance<Bf16, 64>(p, launch, blocks, stream)
                            : launch_instance<Bf16, 128>(p, launch, blocks, stream);
  }
  return p.head_dim == 64 ? launch_instance<Fp16, 64>(p, launch, blocks, stream)
                          : launch_instance<Fp16, 128>(p, launch, blocks, stream);
}

}  // namespace cuda
}  // namespace attnkit
