// Kernel-level probe for the CUDA attention kernels, without Node or the C ABI: checks each fast
// kernel against a plain float32 reference kernel on random data (every option through the shared
// semantics in attention_problem.cuh) and times the acceptance shapes with CUDA events.
// Built by bench/gpu/build-probe.sh; run on the GPU machine: ./kernel_probe [check|time|all]
// [name filter]: `time "S4096 D128"` times only the shapes whose name contains the filter (for ncu).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../../native/cuda/fused/fused_attention.h"

using namespace attnkit::cuda;

#define CHECK(x)                                                                                 \
  do {                                                                                           \
    cudaError_t e_ = (x);                                                                        \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(2);                                                                              \
    }                                                                                            \
  } while (0)

// One thread per (batch, head, query row): two passes over the keys in float32.
__global__ void reference_attention_kernel(FusedAttentionProblem p) {
  const int segments = p.cu_seqlens_q ? p.num_segments : p.batch;
  const int64_t rows = int64_t(segments) * p.heads_q * p.seq_q;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows) return;
  const int i = idx % p.seq_q, h = (idx / p.seq_q) % p.heads_q, sg = idx / (int64_t(p.seq_q) * p.heads_q);
  const Segment seg = segment_of(p, sg);
  if (i >= seg.q_len) return;
  const int hk = h / p.group;
  auto q_at = [&](int d) {
    return load_element(p.q, p.dtype, seg.batch * p.q_stride[0] + h * p.q_stride[1] + int64_t(seg.q_start + i) * p.q_stride[2] + d * p.q_stride[3]);
  };
  auto score = [&](int j) {
    float acc = 0.f;
    for (int d = 0; d < p.head_dim; ++d)
      acc += q_at(d) * load_element(p.k, p.dtype, seg.batch * p.k_stride[0] + hk * p.k_stride[1] + int64_t(seg.k_start + j) * p.k_stride[2] + d * p.k_stride[3]);
    return modified_score(p, seg, h, i, j, acc * p.scale);
  };
  float m = -INFINITY;
  for (int j = 0; j < seg.k_len; ++j) m = fmaxf(m, score(j));
  float l = 0.f;
  float* o = static_cast<float*>(p.out) + ((int64_t(seg.batch) * p.heads_q + h) * p.seq_q + seg.q_start + i) * p.head_dim_v;
  for (int d = 0; d < p.head_dim_v; ++d) o[d] = 0.f;
  if (m != -INFINITY) {
    for (int j = 0; j < seg.k_len; ++j) {
      const float w = expf(score(j) - m);
      l += w;
      for (int d = 0; d < p.head_dim_v; ++d)
        o[d] += w * load_element(p.v, p.dtype, seg.batch * p.v_stride[0] + hk * p.v_stride[1] + int64_t(seg.k_start + j) * p.v_stride[2] + d * p.v_stride[3]);
    }
  }
  float factor, lse;
  finish_row(p, h, m, l, &factor, &lse);
  for (int d = 0; d < p.head_dim_v; ++d) o[d] *= factor;
  if (p.lse) p.lse[(int64_t(seg.batch) * p.heads_q + h) * p.seq_q + seg.q_start + i] = lse;
}

struct Case {
  std::string name;
  int B, Hq, Hkv, Sq, Sk, D;
  bool bf16 = true, causal = false, bshd = false;
  int wl = -1, wr = -1, sinks = 0;
  float softcap = 0.f;
  bool alibi = false, sink_logits = false, mask = false, bias = false, varlen = false;
  int bq = 0, bk = 0;     // block mask [1, Hq, nQB, nKB] with these block sizes (0: none)
  float density = 0.5f;   // its computed share: computed blocks are full or partial at random
  bool all_full = false;  // ... or all full (the timed rows)
  bool balanced = false;  // every row of blocks computes the same number of blocks (round(density x row))
  // 2D neighborhood attention over a na_h x na_w map (Sq = Sk = na_h * na_w), kernel na_k, as
  // 128 x 128 blocks (bq = bk = 128) with element bitmaps; na_mode 1: the same blocks without
  // bitmaps (partial: only the bitmap cost differs), 2: all computed blocks full.
  int na_h = 0, na_w = 0, na_k = 0, na_mode = 0;
};

// NATTEN's window start along one dim (centred, shifted inward at the borders).
static int na_start(int c, int length, int kernel) { return std::min(std::max(c - kernel / 2, 0), length - kernel); }

template <typename Fn>
static void* device_copy(const std::vector<Fn>& host) {
  void* d;
  CHECK(cudaMalloc(&d, host.size() * sizeof(Fn)));
  CHECK(cudaMemcpy(d, host.data(), host.size() * sizeof(Fn), cudaMemcpyHostToDevice));
  return d;
}

static void set_strides(int64_t* s, int B, int H, int S, int D, bool bshd) {
  if (bshd) { s[0] = int64_t(S) * H * D; s[1] = D; s[2] = int64_t(H) * D; s[3] = 1; }
  else { s[0] = int64_t(H) * S * D; s[1] = int64_t(S) * D; s[2] = D; s[3] = 1; }
}

struct Built {
  FusedAttentionProblem p;
  std::vector<void*> owned;
};

// Fills n 16-bit values with roughly normal numbers (sum of four uniforms, scaled to unit
// variance) from a per-element hash: the timed shapes hold 200M elements, which a host-side
// std::normal_distribution takes most of a minute to draw.
__global__ void fill_random_16bit(uint16_t* x, size_t n, uint32_t seed, bool bf16) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    float sum = 0.f;
    for (uint32_t k = 0; k < 4; ++k) {
      uint32_t h = uint32_t(i) * 0x9E3779B1u ^ uint32_t(i >> 32) * 0x85EBCA77u ^ (seed + k) * 0xC2B2AE3Du;
      h ^= h >> 15; h *= 0x2C1B3C6Du; h ^= h >> 12; h *= 0x297A2D39u; h ^= h >> 15;
      sum += float(h) * (1.0f / 4294967296.0f) - 0.5f;
    }
    const float v = sum * 1.7320508f;  // 4 uniforms on [-0.5, 0.5): variance 1/3
    x[i] = bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(v)) : __half_as_ushort(__float2half_rn(v));
  }
}

static Built build(const Case& c, std::mt19937& rng) {
  Built b{};
  FusedAttentionProblem& p = b.p;
  std::memset(&p, 0, sizeof(p));
  std::normal_distribution<float> nd(0.f, 1.f);
  auto tensor = [&](int H, int S, int D) {
    const size_t n = size_t(c.B) * H * S * D;
    void* d = nullptr;
    CHECK(cudaMalloc(&d, n * 2));
    fill_random_16bit<<<1024, 256>>>(static_cast<uint16_t*>(d), n, uint32_t(rng()), c.bf16);
    CHECK(cudaGetLastError());
    b.owned.push_back(d);
    return d;
  };
  p.q = tensor(c.Hq, c.Sq, c.D);
  p.k = tensor(c.Hkv, c.Sk, c.D);
  p.v = tensor(c.Hkv, c.Sk, c.D);
  set_strides(p.q_stride, c.B, c.Hq, c.Sq, c.D, c.bshd);
  set_strides(p.k_stride, c.B, c.Hkv, c.Sk, c.D, c.bshd);
  set_strides(p.v_stride, c.B, c.Hkv, c.Sk, c.D, c.bshd);
  p.dtype = c.bf16 ? kBF16 : kF16;
  p.batch = c.B; p.heads_q = c.Hq; p.heads_kv = c.Hkv; p.seq_q = c.Sq; p.seq_k = c.Sk;
  p.head_dim = p.head_dim_v = c.D; p.group = c.Hq / c.Hkv;
  p.max_seqlen_q = c.Sq; p.max_seqlen_k = c.Sk;
  p.scale = 1.0f / std::sqrt(float(c.D));
  p.softcap = c.softcap; p.causal = c.causal; p.window_left = c.wl; p.window_right = c.wr; p.sinks = c.sinks;
  if (c.alibi || c.sink_logits) {
    std::vector<float> t(c.Hq);
    for (auto& x : t) x = std::fabs(nd(rng)) * 0.1f;
    if (c.alibi) { p.alibi_slopes = static_cast<float*>(device_copy(t)); b.owned.push_back((void*)p.alibi_slopes); }
    if (c.sink_logits) { p.sink_logits = static_cast<float*>(device_copy(t)); b.owned.push_back((void*)p.sink_logits); }
  }
  if (c.bias) {  // [Sq, Sk] broadcast over batch and heads
    std::vector<float> t(size_t(c.Sq) * c.Sk);
    for (auto& x : t) x = nd(rng);
    p.bias = device_copy(t); b.owned.push_back((void*)p.bias);
    p.bias_dtype = kF32; p.bias_stride[2] = c.Sk; p.bias_stride[3] = 1;
  }
  if (c.mask) {  // [B, 1, Sq, Sk]
    std::vector<uint8_t> t(size_t(c.B) * c.Sq * c.Sk);
    for (auto& x : t) x = (rng() % 4) != 0;
    p.mask = static_cast<uint8_t*>(device_copy(t)); b.owned.push_back((void*)p.mask);
    p.mask_stride[0] = int64_t(c.Sq) * c.Sk; p.mask_stride[2] = c.Sk; p.mask_stride[3] = 1;
  }
  if (c.na_k > 0) {
    const int n = c.na_h * c.na_w, nb = (n + 127) / 128, words = 4;
    std::vector<uint8_t> states(size_t(nb) * nb, 0);
    std::vector<int32_t> index(size_t(nb) * nb, -1);
    std::vector<uint32_t> bits;
    for (int qb = 0; qb < nb; ++qb) {
      std::vector<std::vector<uint32_t>> maps(nb);
      for (int i = qb * 128; i < std::min(n, qb * 128 + 128); ++i) {
        const int y0 = na_start(i / c.na_w, c.na_h, c.na_k), x0 = na_start(i % c.na_w, c.na_w, c.na_k);
        for (int y = y0; y < y0 + c.na_k; ++y)
          for (int x = x0; x < x0 + c.na_k; ++x) {
            const int j = y * c.na_w + x, kb = j / 128, col = j % 128;
            if (maps[kb].empty()) maps[kb].assign(128 * words, 0u);
            maps[kb][(i - qb * 128) * words + col / 32] |= 1u << (col % 32);
          }
      }
      for (int kb = 0; kb < nb; ++kb) {
        if (maps[kb].empty()) continue;
        states[size_t(qb) * nb + kb] = c.na_mode == 2 ? 2 : 1;
        if (c.na_mode != 0) continue;
        index[size_t(qb) * nb + kb] = int32_t(bits.size() / (128 * words));
        bits.insert(bits.end(), maps[kb].begin(), maps[kb].end());
      }
    }
    p.block_mask = static_cast<uint8_t*>(device_copy(states)); b.owned.push_back((void*)p.block_mask);
    p.block_mask_stride[2] = nb; p.block_mask_stride[3] = 1;
    p.block_q = p.block_k = 128;
    if (c.na_mode == 0) {
      p.element_index = static_cast<int32_t*>(device_copy(index)); b.owned.push_back((void*)p.element_index);
      p.element_index_stride[2] = nb; p.element_index_stride[3] = 1;
      p.element_bits = static_cast<uint32_t*>(device_copy(bits)); b.owned.push_back((void*)p.element_bits);
      p.element_bitmaps = int(bits.size() / (128 * words)); p.element_words = words;
    }
  }
  if (c.bq > 0) {
    const int nqb = (c.Sq + c.bq - 1) / c.bq, nkb = (c.Sk + c.bk - 1) / c.bk;
    std::vector<uint8_t> t(size_t(c.Hq) * nqb * nkb);
    std::uniform_real_distribution<float> u(0.f, 1.f);
    for (auto& x : t) x = u(rng) < c.density ? (c.all_full || rng() % 2 ? 2 : 1) : 0;
    if (c.balanced) {  // the same count in every row, at random places: no row is heavier than another
      const int per_row = int(c.density * nkb + 0.5f);
      std::vector<int> order(nkb);
      for (size_t row = 0; row < t.size() / nkb; ++row) {
        for (int j = 0; j < nkb; ++j) order[j] = j;
        std::shuffle(order.begin(), order.end(), rng);
        for (int j = 0; j < nkb; ++j) t[row * nkb + order[j]] = j < per_row ? 2 : 0;
      }
    }
    p.block_mask = static_cast<uint8_t*>(device_copy(t)); b.owned.push_back((void*)p.block_mask);
    p.block_mask_stride[1] = int64_t(nqb) * nkb; p.block_mask_stride[2] = nkb; p.block_mask_stride[3] = 1;
    p.block_q = c.bq; p.block_k = c.bk;
  }
  if (p.block_mask) {  // zeroed before each launch
    CHECK(cudaMalloc(&p.work_counter, sizeof(int))); b.owned.push_back((void*)p.work_counter);
  }
  if (c.varlen) {  // B must be 1: segments of random lengths (some 0 and 1)
    std::vector<int> cq{0}, ck{0};
    int lens_q[] = {c.Sq / 2, 0, 1, c.Sq - c.Sq / 2 - 1};
    int lens_k[] = {c.Sk / 3, 5, 1, c.Sk - c.Sk / 3 - 6};
    for (int s = 0; s < 4; ++s) { cq.push_back(cq.back() + lens_q[s]); ck.push_back(ck.back() + lens_k[s]); }
    p.cu_seqlens_q = static_cast<int32_t*>(device_copy(cq)); b.owned.push_back((void*)p.cu_seqlens_q);
    p.cu_seqlens_k = static_cast<int32_t*>(device_copy(ck)); b.owned.push_back((void*)p.cu_seqlens_k);
    p.num_segments = 4;
    p.max_seqlen_q = *std::max_element(lens_q, lens_q + 4);
    p.max_seqlen_k = *std::max_element(lens_k, lens_k + 4);
  }
  return b;
}

static double check_case(const Case& c, std::mt19937& rng, const DeviceTraits& dev) {
  Built b = build(c, rng);
  FusedAttentionProblem p = b.p;
  const size_t n_out = size_t(c.B) * c.Hq * c.Sq * c.D, n_lse = size_t(c.B) * c.Hq * c.Sq;
  float *out, *ref, *lse, *ref_lse;
  CHECK(cudaMalloc(&out, n_out * 4)); CHECK(cudaMalloc(&ref, n_out * 4));
  CHECK(cudaMalloc(&lse, n_lse * 4)); CHECK(cudaMalloc(&ref_lse, n_lse * 4));
  CHECK(cudaMemset(out, 0xff, n_out * 4)); CHECK(cudaMemset(lse, 0xff, n_lse * 4));  // NaN poison
  CHECK(cudaMemset(ref, 0, n_out * 4)); CHECK(cudaMemset(ref_lse, 0, n_lse * 4));
  p.out_dtype = kF32;
  set_strides(p.o_stride, c.B, c.Hq, c.Sq, c.D, false);
  FusedAttentionProblem r = p;
  p.out = out; p.lse = lse;
  r.out = ref; r.lse = ref_lse;
  const char* path = "sm90";
  cudaError_t err;
  if (p.work_counter) CHECK(cudaMemsetAsync(p.work_counter, 0, sizeof(int), 0));
  if (fused_attention_sm90_supports(p, dev)) err = launch_fused_attention_sm90(p, dev, 0);
  else if (fused_attention_sm80_supports(p, dev)) { path = "sm80"; err = launch_fused_attention_sm80(p, dev, 0); }
  else { path = "none"; err = cudaSuccess; }
  CHECK(err);
  const int threads = 128;
  const int64_t rows = int64_t(p.cu_seqlens_q ? p.num_segments : p.batch) * p.heads_q * p.seq_q;  // reference: one thread per packed row and segment
  reference_attention_kernel<<<(rows + threads - 1) / threads, threads>>>(r);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  std::vector<float> ho(n_out), hr(n_out), hl(n_lse), hrl(n_lse);
  CHECK(cudaMemcpy(ho.data(), out, n_out * 4, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(hr.data(), ref, n_out * 4, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(hl.data(), lse, n_lse * 4, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(hrl.data(), ref_lse, n_lse * 4, cudaMemcpyDeviceToHost));
  // Varlen rows past the last segment are never written by either: skip them.
  size_t valid_rows = n_lse;
  if (c.varlen) { int32_t last; CHECK(cudaMemcpy(&last, p.cu_seqlens_q + 4, 4, cudaMemcpyDeviceToHost)); valid_rows = last; }
  double max_ref = 0, max_err = 0, lse_err = 0;
  for (size_t i = 0; i < valid_rows * c.D; ++i) max_ref = std::max(max_ref, double(std::fabs(hr[i])));
  for (size_t i = 0; i < valid_rows * c.D; ++i) {
    const double e = std::isnan(ho[i]) ? INFINITY : std::fabs(double(ho[i]) - hr[i]);
    max_err = std::max(max_err, e);
  }
  for (size_t i = 0; i < valid_rows; ++i) {
    if (std::isinf(hrl[i]) && hl[i] == hrl[i]) continue;
    const double e = std::isnan(hl[i]) ? INFINITY : std::fabs(double(hl[i]) - hrl[i]);
    lse_err = std::max(lse_err, e);
  }
  const double rel = max_ref > 0 ? max_err / max_ref : max_err;
  const double tol = c.bf16 ? 1.6e-2 : 2e-3;
  const bool ok = rel <= tol && lse_err <= 1e-2;
  std::printf("%-4s %-6s %-44s rel %.2e lse %.2e\n", ok ? "ok" : "FAIL", path, c.name.c_str(), rel, lse_err);
  cudaFree(out); cudaFree(ref); cudaFree(lse); cudaFree(ref_lse);
  for (void* d : b.owned) cudaFree(d);
  return ok ? 0 : 1;
}

static void time_case(const Case& c, std::mt19937& rng, const DeviceTraits& dev) {
  Built b = build(c, rng);
  FusedAttentionProblem p = b.p;
  void* out;
  const size_t n_out = size_t(c.B) * c.Hq * c.Sq * c.D;
  CHECK(cudaMalloc(&out, n_out * 2));
  p.out = out; p.out_dtype = p.dtype;
  set_strides(p.o_stride, c.B, c.Hq, c.Sq, c.D, c.bshd);
  const bool sm90 = fused_attention_sm90_supports(p, dev);
  auto run = [&] {
    // (a block mask's work counter starts at 0 each launch, as the C ABI's table upload does)
    if (p.work_counter) CHECK(cudaMemsetAsync(p.work_counter, 0, sizeof(int), 0));
    CHECK(sm90 ? launch_fused_attention_sm90(p, dev, 0) : launch_fused_attention_sm80(p, dev, 0));
  };
  for (int i = 0; i < 3; ++i) run();
  CHECK(cudaDeviceSynchronize());
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0)); CHECK(cudaEventCreate(&e1));
  std::vector<float> ms;
  for (int rep = 0; rep < 20; ++rep) {
    CHECK(cudaEventRecord(e0));
    run();
    CHECK(cudaEventRecord(e1));
    CHECK(cudaEventSynchronize(e1));
    float t; CHECK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  double flops = 4.0 * c.B * c.Hq * double(c.Sq) * c.Sk * c.D;
  if (c.causal) flops /= 2;
  if (c.wl >= 0) flops = 4.0 * c.B * c.Hq * double(c.Sq) * std::min(c.Sk, c.wl + 1) * c.D;
  if (c.bq > 0) flops *= c.density;  // about: the realised share of computed blocks varies a little
  if (c.na_k > 0) flops = 4.0 * c.B * c.Hq * double(c.Sq) * c.na_k * c.na_k * c.D;  // useful pairs only
  std::printf("time %-5s %-44s %8.3f ms  %6.1f TFLOP/s\n", sm90 ? "sm90" : "sm80", c.name.c_str(), med, flops / med / 1e9);
  cudaFree(out);
  for (void* d : b.owned) cudaFree(d);
}

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "all";
  const std::string filter = argc > 2 ? argv[2] : "";
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  DeviceTraits dev;
  dev.cc_major = prop.major; dev.cc_minor = prop.minor; dev.multiprocessors = prop.multiProcessorCount;
  dev.max_shared_per_block_optin = prop.sharedMemPerBlockOptin;
  std::printf("device %s cc %d.%d SMs %d\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
  std::mt19937 rng(1234);
  int failures = 0;
  if (what == "check" || what == "all") {
    std::vector<Case> cases;
    for (int D : {64, 128})
      for (bool bf16 : {true, false}) {
        auto base = [&](const char* n, int B, int Hq, int Hkv, int Sq, int Sk) {
          Case c; c.name = std::string(n) + " D" + std::to_string(D) + (bf16 ? " bf16" : " f16");
          c.B = B; c.Hq = Hq; c.Hkv = Hkv; c.Sq = Sq; c.Sk = Sk; c.D = D; c.bf16 = bf16; return c;
        };
        cases.push_back(base("dense 1x2x300x300", 1, 2, 2, 300, 300));
        { Case c = base("dense 2x4/1 x200x517 bshd", 2, 4, 1, 200, 517); c.bshd = true; cases.push_back(c); }
        { Case c = base("causal 1x2x517x517", 1, 2, 2, 517, 517); c.causal = true; cases.push_back(c); }
        { Case c = base("causal Sq<Sk 1x2x100x700", 1, 2, 2, 100, 700); c.causal = true; cases.push_back(c); }
        { Case c = base("causal Sq>Sk 1x2x700x100", 1, 2, 2, 700, 100); c.causal = true; cases.push_back(c); }
        { Case c = base("window[64,16]+sinks4 1x2x600x600", 1, 2, 2, 600, 600); c.wl = 64; c.wr = 16; c.sinks = 4; cases.push_back(c); }
        { Case c = base("causal window[200,0] sinks3 1x4/2x800", 1, 4, 2, 800, 800); c.causal = true; c.wl = 200; c.wr = 0; c.sinks = 3; cases.push_back(c); }
        { Case c = base("softcap+alibi+sinklogit 1x2x300x333", 1, 2, 2, 300, 333); c.softcap = 5.f; c.alibi = true; c.sink_logits = true; cases.push_back(c); }
        { Case c = base("bias+mask 2x2x150x260", 2, 2, 2, 150, 260); c.bias = true; c.mask = true; cases.push_back(c); }
        { Case c = base("varlen causal 1x2x400x500", 1, 2, 2, 400, 500); c.varlen = true; c.causal = true; cases.push_back(c); }
        // more work items than SMs: a persistent CTA walks several items and reuses its Q buffer
        cases.push_back(base("dense 4x40/8 x1000x1000 (many items)", 4, 40, 8, 1000, 1000));
        // Sk a multiple of 176: the wide-key-tile kernel at D128 (and bshd strides through it)
        { Case c = base("dense 2x4/2 x333x1760 bshd (176-key tiles)", 2, 4, 2, 333, 1760); c.bshd = true; cases.push_back(c); }
        { Case c = base("causal 4x40x1001x1001 (many items)", 4, 40, 40, 1001, 1001); c.causal = true; cases.push_back(c); }
        // block masks: aligned to the kernel's tiles, and not (mixed tiles), with every option
        { Case c = base("blocks 128x128 2x2x600x700", 2, 2, 2, 600, 700); c.bq = c.bk = 128; cases.push_back(c); }
        { Case c = base("blocks 64x96 causal 1x4/2x517x517", 1, 4, 2, 517, 517); c.bq = 64; c.bk = 96; c.causal = true; cases.push_back(c); }
        { Case c = base("blocks 100x50 window[64,16]+sinks4 1x2x600x600", 1, 2, 2, 600, 600); c.bq = 100; c.bk = 50; c.wl = 64; c.wr = 16; c.sinks = 4; c.density = 0.7f; cases.push_back(c); }
        { Case c = base("blocks 128 varlen causal 1x2x400x500", 1, 2, 2, 400, 500); c.bq = c.bk = 128; c.varlen = true; c.causal = true; cases.push_back(c); }
        { Case c = base("blocks 128 sparse 0.1 4x40x1000x1000 (many items)", 4, 40, 8, 1000, 1000); c.bq = c.bk = 128; c.density = 0.1f; cases.push_back(c); }
        if (D == 128) { Case c = base("blocks 96x128 softcap+alibi 1x2x300x333", 1, 2, 2, 300, 333); c.bq = 96; c.bk = 128; c.softcap = 5.f; c.alibi = true; cases.push_back(c); }
        // element bitmaps (2D neighborhood, kernel 13 on a 24 x 40 map): the row-load path
        { Case c = base("neighborhood 24x40 k13 1x4/2 (bitmaps)", 1, 4, 2, 960, 960); c.na_h = 24; c.na_w = 40; c.na_k = 13; cases.push_back(c); }
      }
    for (const Case& c : cases) failures += check_case(c, rng, dev);
    std::printf("kernel_probe check: %d failed of %zu\n", failures, cases.size());
  }
  if (what == "time" || what == "all") {
    for (int D : {128, 64})
      for (int S : {4096, 16384})
        for (bool causal : {false, true}) {
          Case c; c.B = 32768 / S; c.Hq = c.Hkv = 16; c.Sq = c.Sk = S; c.D = D; c.causal = causal;
          c.name = "bf16 B" + std::to_string(c.B) + " H16 S" + std::to_string(S) + " D" + std::to_string(D) + (causal ? " causal" : "");
          if (c.name.find(filter) != std::string::npos) time_case(c, rng, dev);
        }
    // block-sparse at density d (128 x 128 full blocks, random), against the dense row above
    for (float d : {0.5f, 0.25f, 0.1f}) {
      Case c; c.B = 1; c.Hq = c.Hkv = 16; c.Sq = c.Sk = 16384; c.D = 128; c.bq = c.bk = 128; c.density = d; c.all_full = true;
      c.name = "bf16 B1 H16 S16384 D128 blocks 128 density " + std::to_string(d).substr(0, 4);
      if (c.name.find(filter) != std::string::npos) time_case(c, rng, dev);
    }
    // the same at d 0.1 with an equal count per row (what row-to-row imbalance costs), and at D64
    {
      Case c; c.B = 1; c.Hq = c.Hkv = 16; c.Sq = c.Sk = 16384; c.D = 128; c.bq = c.bk = 128; c.density = 0.1f; c.all_full = true;
      c.balanced = true;
      c.name = "bf16 B1 H16 S16384 D128 blocks 128 density 0.1 balanced";
      if (c.name.find(filter) != std::string::npos) time_case(c, rng, dev);
      c.D = 64; c.balanced = false;
      c.name = "bf16 B1 H16 S16384 D64 blocks 128 density 0.1";
      if (c.name.find(filter) != std::string::npos) time_case(c, rng, dev);
    }
    // 2D neighborhood attention, 128 x 128 map, kernel 13, D64 H8: with bitmaps, the same blocks
    // partial without bitmaps, and all full (what the bitmaps and the masking cost)
    for (int mode : {0, 1, 2}) {
      Case c; c.B = 1; c.Hq = c.Hkv = 8; c.Sq = c.Sk = 16384; c.D = 64; c.na_h = c.na_w = 128; c.na_k = 13; c.na_mode = mode;
      c.name = std::string("bf16 B1 H8 128x128 D64 neighborhood k13 ") + (mode == 0 ? "bitmaps" : mode == 1 ? "partial, no bitmaps" : "full blocks");
      if (c.name.find(filter) != std::string::npos) time_case(c, rng, dev);
    }
    Case w; w.B = 1; w.Hq = w.Hkv = 16; w.Sq = w.Sk = 16384; w.D = 128; w.causal = true; w.wl = 1024; w.wr = 0;
    w.name = "bf16 B1 H16 S16384 D128 causal window[1024,0]";
    if (w.name.find(filter) != std::string::npos) time_case(w, rng, dev);
  }
  return failures ? 1 : 0;
}
