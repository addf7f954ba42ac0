// Standalone check of the sm80 mma.sync kernel against a float64 host reference written from
// API.md (not from attention_problem.cuh): every option, both 16-bit dtypes, every head dim.
// Build and run on a GPU machine from the repository root:
//   nvcc -std=c++17 -O3 -arch=sm_90a -I native/include -o /tmp/sm80_selftest test/gpu/sm80_selftest.cu
//   /tmp/sm80_selftest [quick|bench]
// Exit status 0 when every case passes.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../../native/cuda/fused/fused_attention_sm80.cu"

using namespace attnkit::cuda;

static uint16_t f2h(float f) {  // round to nearest even fp16
  uint32_t x; memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000; int e = ((x >> 23) & 0xff) - 127 + 15; uint32_t m = x & 0x7fffff;
  if (((x >> 23) & 0xff) == 0xff) return sign | 0x7c00 | (m ? 0x200 : 0);
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) { if (e < -10) return sign; m |= 0x800000; int sh = 14 - e; uint32_t r = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
    if (rem > half || (rem == half && (r & 1))) r++; return sign | r; }
  uint32_t r = (e << 10) | (m >> 13); uint32_t rem = m & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
  return sign | r;
}
static float h2f(uint16_t h) {
  uint32_t sign = (h & 0x8000) << 16; int e = (h >> 10) & 0x1f; uint32_t m = h & 0x3ff; uint32_t x;
  if (e == 0) { if (!m) x = sign; else { e = 1; while (!(m & 0x400)) { m <<= 1; e--; } m &= 0x3ff; x = sign | ((e + 112) << 23) | (m << 13); } }
  else if (e == 31) x = sign | 0x7f800000 | (m << 13);
  else x = sign | ((e + 112) << 23) | (m << 13);
  float f; memcpy(&f, &x, 4); return f;
}
static uint16_t f2b(float f) { uint32_t x; memcpy(&x, &f, 4); uint32_t r = x + 0x7fff + ((x >> 16) & 1); return r >> 16; }
static float b2f(uint16_t b) { uint32_t x = uint32_t(b) << 16; float f; memcpy(&f, &x, 4); return f; }

struct Case {
  std::string name;
  int dtype = kF16, out_dtype = kF32, D = 64;
  int B = 2, Hq = 4, Hkv = 2, Sq = 200, Sk = 200;
  bool causal = false; int wl = -1, wr = -1, sinks = 0; float softcap = 0;
  bool alibi = false, sink_logits = false, lse = true;
  int bias = -1;  // dtype or -1
  bool bias_bcast = false;  // broadcast over batch and rows
  bool mask = false;
  bool bshd = false;      // q/k/v physical [B, S, H, D]
  bool out_odd = false;   // out physical [B, S, D, H]-ish: non-unit d stride
  std::vector<int> cu_q, cu_k;  // varlen
  size_t optin_override = 0;
  float scale = 0;
};

static std::mt19937 rng(1234);
static float urand() { return std::uniform_real_distribution<float>(-1, 1)(rng); }

template <class T> T* to_dev(const std::vector<T>& v) { T* d = nullptr; cudaMalloc(&d, v.size() * sizeof(T) + 16); cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice); return d; }

static bool run_case(const Case& c, const cudaDeviceProp& prop) {
  const bool varlen = !c.cu_q.empty();
  const int B = varlen ? 1 : c.B, D = c.D;
  const int Sq = varlen ? c.cu_q.back() : c.Sq, Sk = varlen ? c.cu_k.back() : c.Sk;
  const int Hq = c.Hq, Hkv = c.Hkv;
  auto round16 = [&](float x) { return c.dtype == kF16 ? h2f(f2h(x)) : b2f(f2b(x)); };
  auto enc16 = [&](float x) { return c.dtype == kF16 ? f2h(x) : f2b(x); };
  // logical arrays (as doubles of the 16-bit values)
  std::vector<double> q(size_t(B) * Hq * Sq * D), k(size_t(B) * Hkv * Sk * D), v(size_t(B) * Hkv * Sk * D);
  for (auto& x : q) x = round16(urand() * 2);
  for (auto& x : k) x = round16(urand() * 2);
  for (auto& x : v) x = round16(urand());
  // physical layouts
  auto make_strides = [&](int H, int S, int64_t* st) {
    if (c.bshd) { st[3] = 1; st[1] = D; st[2] = int64_t(H) * D; st[0] = int64_t(S) * H * D; }
    else { st[3] = 1; st[2] = D; st[1] = int64_t(S) * D; st[0] = int64_t(H) * S * D; }
  };
  FusedAttentionProblem p{};
  make_strides(Hq, Sq, p.q_stride); make_strides(Hkv, Sk, p.k_stride); make_strides(Hkv, Sk, p.v_stride);
  auto phys = [&](const std::vector<double>& L, int H, int S, const int64_t* st) {
    std::vector<uint16_t> P(L.size());
    for (int b = 0; b < B; ++b) for (int h = 0; h < H; ++h) for (int s = 0; s < S; ++s) for (int d = 0; d < D; ++d)
      P[b * st[0] + h * st[1] + s * st[2] + d] = enc16(float(L[((size_t(b) * H + h) * S + s) * D + d]));
    return P;
  };
  p.q = to_dev(phys(q, Hq, Sq, p.q_stride)); p.k = to_dev(phys(k, Hkv, Sk, p.k_stride)); p.v = to_dev(phys(v, Hkv, Sk, p.v_stride));
  // out
  const int oes = c.out_dtype == kF32 ? 4 : 2;
  if (c.out_odd) { p.o_stride[2] = int64_t(D) * Hq; p.o_stride[3] = Hq; p.o_stride[1] = 1; p.o_stride[0] = int64_t(Sq) * D * Hq; }
  else { p.o_stride[3] = 1; p.o_stride[2] = D; p.o_stride[1] = int64_t(Sq) * D; p.o_stride[0] = int64_t(Hq) * Sq * D; }
  const size_t out_elems = size_t(B) * Hq * Sq * D;
  void* out_d; cudaMalloc(&out_d, out_elems * oes); cudaMemset(out_d, 0xff, out_elems * oes);  // NaN fill
  p.out = out_d;
  p.dtype = c.dtype; p.out_dtype = c.out_dtype;
  p.batch = B; p.heads_q = Hq; p.heads_kv = Hkv; p.seq_q = Sq; p.seq_k = Sk; p.head_dim = D; p.head_dim_v = D; p.group = Hq / Hkv;
  p.scale = c.scale != 0 ? c.scale : 1.0f / std::sqrt(float(D));
  p.softcap = c.softcap; p.causal = c.causal; p.window_left = c.wl; p.window_right = c.wr; p.sinks = c.sinks;
  std::vector<float> slopes(Hq), sinkl(Hq);
  for (int h = 0; h < Hq; ++h) { slopes[h] = 0.05f * (h + 1); sinkl[h] = urand() * 3; }
  p.alibi_slopes = c.alibi ? to_dev(slopes) : nullptr;
  p.sink_logits = c.sink_logits ? to_dev(sinkl) : nullptr;
  // bias: logical [B, Hq, Sq, Sk] (or broadcast [1, Hq, 1, Sk])
  std::vector<double> biasv;
  int64_t bst[4] = {0, 0, 0, 0};
  if (c.bias >= 0) {
    int bb = c.bias_bcast ? 1 : B, bs = c.bias_bcast ? 1 : Sq;
    biasv.resize(size_t(bb) * Hq * bs * Sk);
    std::vector<float> f32(biasv.size()); std::vector<uint16_t> u16(biasv.size());
    for (size_t i = 0; i < biasv.size(); ++i) {
      float x = urand() * 2;
      if (c.bias == kF32) { f32[i] = x; biasv[i] = x; }
      else if (c.bias == kF16) { u16[i] = f2h(x); biasv[i] = h2f(u16[i]); }
      else { u16[i] = f2b(x); biasv[i] = b2f(u16[i]); }
    }
    bst[3] = 1; bst[2] = c.bias_bcast ? 0 : Sk; bst[1] = int64_t(bs) * Sk; bst[0] = c.bias_bcast ? 0 : int64_t(Hq) * bs * Sk;
    p.bias = c.bias == kF32 ? (const void*)to_dev(f32) : (const void*)to_dev(u16);
    p.bias_dtype = c.bias;
  }
  memcpy(p.bias_stride, bst, sizeof bst);
  std::vector<uint8_t> maskv;
  int64_t mst[4] = {0, 0, 0, 0};
  if (c.mask) {  // [B, 1, Sq, Sk] broadcast over heads
    maskv.resize(size_t(B) * Sq * Sk);
    for (auto& x : maskv) x = (rng() % 5) != 0;
    mst[3] = 1; mst[2] = Sk; mst[1] = 0; mst[0] = int64_t(Sq) * Sk;
    p.mask = to_dev(maskv);
  }
  memcpy(p.mask_stride, mst, sizeof mst);
  int nseg = varlen ? int(c.cu_q.size()) - 1 : B;
  if (varlen) { p.cu_seqlens_q = to_dev(c.cu_q); p.cu_seqlens_k = to_dev(c.cu_k); p.num_segments = nseg; }
  float* lse_d = nullptr;
  if (c.lse) { cudaMalloc(&lse_d, size_t(B) * Hq * Sq * 4); cudaMemset(lse_d, 0xff, size_t(B) * Hq * Sq * 4); }
  p.lse = lse_d;

  DeviceTraits dev; dev.cc_major = prop.major; dev.cc_minor = prop.minor; dev.multiprocessors = prop.multiProcessorCount;
  dev.max_shared_per_block_optin = c.optin_override ? c.optin_override : prop.sharedMemPerBlockOptin;
  if (!fused_attention_sm80_supports(p, dev)) { printf("%-60s UNSUPPORTED\n", c.name.c_str()); return false; }
  cudaError_t err = launch_fused_attention_sm80(p, dev, 0);
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  if (err != cudaSuccess) { printf("%-60s CUDA ERROR %s\n", c.name.c_str(), cudaGetErrorString(err)); exit(1); }
  std::vector<uint8_t> outh(out_elems * oes); cudaMemcpy(outh.data(), out_d, outh.size(), cudaMemcpyDeviceToHost);
  std::vector<float> lseh(size_t(B) * Hq * Sq); if (c.lse) cudaMemcpy(lseh.data(), lse_d, lseh.size() * 4, cudaMemcpyDeviceToHost);

  // reference
  double max_err = 0, max_ref = 0, max_lse_err = 0; long bad_lse = 0, nan_out = 0;
  std::vector<double> srow(Sk);
  for (int sgi = 0; sgi < nseg; ++sgi) {
    const int b = varlen ? 0 : sgi;
    const int q0 = varlen ? c.cu_q[sgi] : 0, k0 = varlen ? c.cu_k[sgi] : 0;
    const int ql = varlen ? c.cu_q[sgi + 1] - q0 : Sq, kl = varlen ? c.cu_k[sgi + 1] - k0 : Sk;
    for (int h = 0; h < Hq; ++h) {
      const int hk = h / (Hq / Hkv);
      for (int i = 0; i < ql; ++i) {
        const int a = i + kl - ql;
        double m = -INFINITY;
        std::vector<char> vis(kl);
        for (int j = 0; j < kl; ++j) {
          double s = 0;
          for (int d = 0; d < D; ++d) s += q[((size_t(b) * Hq + h) * Sq + q0 + i) * D + d] * k[((size_t(b) * Hkv + hk) * Sk + k0 + j) * D + d];
          s *= double(p.scale);
          if (c.softcap > 0) s = c.softcap * std::tanh(s / c.softcap);
          if (c.bias >= 0) {
            int bb = c.bias_bcast ? 0 : b, bi = c.bias_bcast ? 0 : q0 + i;
            s += biasv[bst[0] * bb + bst[1] * h + bst[2] * bi + (k0 + j)];
          }
          if (c.alibi) s -= double(slopes[h]) * std::fabs(double(a - j));
          bool ok = true;
          if (c.causal && j > a) ok = false;
          if (j >= c.sinks) { if (c.wl >= 0 && j < a - c.wl) ok = false; if (c.wr >= 0 && j > a + c.wr) ok = false; }
          if (c.mask && !maskv[mst[0] * b + mst[2] * (q0 + i) + (k0 + j)]) ok = false;
          vis[j] = ok; srow[j] = s;
          if (ok) m = std::max(m, s);
        }
        double l = 0;
        double mf = m;
        if (c.sink_logits) mf = std::max(m, double(sinkl[h]));
        for (int j = 0; j < kl; ++j) if (vis[j]) l += std::exp(srow[j] - mf);
        if (c.sink_logits) l += std::exp(double(sinkl[h]) - mf);
        const double lse = l > 0 ? mf + std::log(l) : -INFINITY;
        for (int d = 0; d < D; ++d) {
          double o = 0;
          if (l > 0) for (int j = 0; j < kl; ++j) if (vis[j]) o += std::exp(srow[j] - mf) / l * v[((size_t(b) * Hkv + hk) * Sk + k0 + j) * D + d];
          const int64_t at = b * p.o_stride[0] + h * p.o_stride[1] + int64_t(q0 + i) * p.o_stride[2] + d * p.o_stride[3];
          double got;
          if (c.out_dtype == kF32) { float f; memcpy(&f, &outh[at * 4], 4); got = f; }
          else { uint16_t u; memcpy(&u, &outh[at * 2], 2); got = c.out_dtype == kF16 ? h2f(u) : b2f(u); }
          if (std::isnan(got)) nan_out++;
          max_err = std::max(max_err, std::fabs(got - o));
          max_ref = std::max(max_ref, std::fabs(o));
        }
        if (c.lse) {
          const double got = lseh[(size_t(b) * Hq + h) * Sq + q0 + i];
          if (std::isinf(lse) || std::isinf(got)) { if (!(std::isinf(lse) && std::isinf(got) && got < 0)) bad_lse++; }
          else max_lse_err = std::max(max_lse_err, std::fabs(got - lse));
        }
      }
    }
  }
  const double tol = c.dtype == kBF16 ? 2e-2 : 4e-3;
  const bool pass = nan_out == 0 && bad_lse == 0 && max_err <= tol * std::max(1.0, max_ref) && max_lse_err < 1e-2;
  printf("%-62s %s err %.2e (ref max %.2f) lse_err %.1e bad_lse %ld nan %ld\n", c.name.c_str(), pass ? "ok  " : "FAIL", max_err,
         max_ref, max_lse_err, bad_lse, nan_out);
  cudaFree((void*)p.q); cudaFree((void*)p.k); cudaFree((void*)p.v); cudaFree(out_d);
  if (lse_d) cudaFree(lse_d);
  if (p.bias) cudaFree((void*)p.bias);
  if (p.mask) cudaFree((void*)p.mask);
  if (p.alibi_slopes) cudaFree((void*)p.alibi_slopes);
  if (p.sink_logits) cudaFree((void*)p.sink_logits);
  if (varlen) { cudaFree((void*)p.cu_seqlens_q); cudaFree((void*)p.cu_seqlens_k); }
  return pass;
}

static double bench(int dtype, int D, bool causal, int B, int H, int S, const cudaDeviceProp& prop) {
  FusedAttentionProblem p{};
  size_t n = size_t(B) * H * S * D;
  void *q, *k, *v, *o; cudaMalloc(&q, n * 2); cudaMalloc(&k, n * 2); cudaMalloc(&v, n * 2); cudaMalloc(&o, n * 2);
  cudaMemset(q, 0x11, n * 2); cudaMemset(k, 0x11, n * 2); cudaMemset(v, 0x11, n * 2);
  int64_t st[4] = {int64_t(H) * S * D, int64_t(S) * D, D, 1};
  memcpy(p.q_stride, st, 32); memcpy(p.k_stride, st, 32); memcpy(p.v_stride, st, 32); memcpy(p.o_stride, st, 32);
  p.q = q; p.k = k; p.v = v; p.out = o; p.dtype = dtype; p.out_dtype = dtype;
  p.batch = B; p.heads_q = H; p.heads_kv = H; p.seq_q = S; p.seq_k = S; p.head_dim = D; p.head_dim_v = D; p.group = 1;
  p.scale = 0.1f; p.causal = causal; p.window_left = -1; p.window_right = -1;
  DeviceTraits dev; dev.cc_major = prop.major; dev.max_shared_per_block_optin = prop.sharedMemPerBlockOptin;
  launch_fused_attention_sm80(p, dev, 0);
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  cudaEventRecord(e0);
  const int iters = 10;
  for (int i = 0; i < iters; ++i) launch_fused_attention_sm80(p, dev, 0);
  cudaEventRecord(e1); cudaEventSynchronize(e1);
  float ms; cudaEventElapsedTime(&ms, e0, e1); ms /= iters;
  double flops = 4.0 * B * H * double(S) * S * D * (causal ? 0.5 : 1.0);
  cudaFree(q); cudaFree(k); cudaFree(v); cudaFree(o);
  return flops / (ms * 1e-3) / 1e12;
}

int main(int argc, char** argv) {
  cudaDeviceProp prop; cudaGetDeviceProperties(&prop, 0);
  printf("%s cc %d.%d optin %zu\n", prop.name, prop.major, prop.minor, prop.sharedMemPerBlockOptin);
  const bool quick = argc > 1 && !strcmp(argv[1], "quick");
  std::vector<Case> cases;
  int dims[] = {32, 64, 96, 128, 256};
  for (int D : dims)
    for (int dt : {kF16, kBF16}) {
      const char* tn = dt == kF16 ? "f16" : "bf16";
      auto base = [&](const char* what) { Case c; c.D = D; c.dtype = dt; c.name = std::string(tn) + " D" + std::to_string(D) + " " + what; return c; };
      { Case c = base("plain gqa out f32"); cases.push_back(c); }
      { Case c = base("causal Sq<Sk out f16"); c.causal = true; c.Sq = 130; c.Sk = 300; c.out_dtype = kF16; cases.push_back(c); }
      { Case c = base("causal Sq>Sk (empty rows) out bf16"); c.causal = true; c.Sq = 300; c.Sk = 130; c.out_dtype = kBF16; cases.push_back(c); }
      if (quick) continue;
      { Case c = base("window+sinks+causal"); c.causal = true; c.wl = 50; c.wr = 10; c.sinks = 4; c.Sq = 260; c.Sk = 333; cases.push_back(c); }
      { Case c = base("window only (no causal), sinks 70"); c.wl = 20; c.wr = 100; c.sinks = 70; c.Sq = 300; c.Sk = 280; cases.push_back(c); }
      { Case c = base("softcap+alibi+bias f32+mask+sinklogits"); c.softcap = 5; c.alibi = true; c.bias = kF32; c.mask = true; c.sink_logits = true; c.causal = true; cases.push_back(c); }
      { Case c = base("bias f16 bcast + softcap"); c.bias = kF16; c.bias_bcast = true; c.softcap = 3; cases.push_back(c); }
      { Case c = base("bias bf16 + window"); c.bias = kBF16; c.wl = 30; c.wr = 30; cases.push_back(c); }
      { Case c = base("varlen causal"); c.cu_q = {0, 5, 155, 155, 232, 500}; c.cu_k = {0, 10, 150, 155, 245, 380}; c.causal = true; cases.push_back(c); }
      { Case c = base("varlen mask+bias+sinklogits"); c.cu_q = {0, 70, 71, 200}; c.cu_k = {0, 3, 150, 290}; c.mask = true; c.bias = kF32; c.sink_logits = true; cases.push_back(c); }
      { Case c = base("bshd layout, out strided"); c.bshd = true; c.out_odd = true; c.causal = true; c.out_dtype = kF16; cases.push_back(c); }
      { Case c = base("all masked window + sink logits"); c.wl = 0; c.wr = -1; c.causal = true; c.Sq = 100; c.Sk = 40; c.sink_logits = true; cases.push_back(c); }
      { Case c = base("negative scale, mha, long"); c.scale = -0.2f; c.Hq = 2; c.Hkv = 2; c.Sq = 513; c.Sk = 1100; cases.push_back(c); }
      if (D == 128) { Case c = base("one stage (optin 160KB)"); c.optin_override = 160 * 1024; c.causal = true; cases.push_back(c); }
    }
  int fails = 0;
  for (auto& c : cases) fails += !run_case(c, prop);
  printf("%d passed, %d failed\n", int(cases.size()) - fails, fails);
  if (argc > 2 || (argc > 1 && !strcmp(argv[1], "bench"))) {
    for (int D : dims)
      for (bool causal : {false, true})
        printf("bench f16 D=%d causal=%d B=4 H=16 S=4096: %.1f TFLOP/s\n", D, causal, bench(kF16, D, causal, 4, 16, 4096, prop));
  }
  return fails != 0;
}
