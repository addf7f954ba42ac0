// Twelve independent FMA chains (enough to cover FMA latency x ports on current x86 cores).
// Returns flops performed; the sum keeps the compiler from deleting the loop.
double fma_loop(int64_t iters, float seed) {
  constexpr int kChains = 12;
  Vec acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = vset1(seed + 0.001f * c);
  const Vec a = vset1(0.999999f), b = vset1(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = vfma(acc[c], a, b);
  Vec s = vzero();
  for (int c = 0; c < kChains; ++c) s = vadd(s, acc[c]);
  float out[kWidth];
  vstore(out, s);
  volatile float sink = out[0];
  (void)sink;
  return 2.0 * kWidth * kChains * static_cast<double>(iters);
}
