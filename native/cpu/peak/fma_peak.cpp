#include "fma_peak.h"

#include <atomic>
#include <chrono>

#include "../../core/cpu_features.h"
#include "../../core/thread_pool.h"

namespace attnkit {

double measure_fma_peak_gflops(int millis) {
  using Clock = std::chrono::steady_clock;
  double (*loop)(int64_t, float) = cpu_scalar::fma_loop;
#if defined(__x86_64__) || defined(_M_X64)
  if (active_isa() == Isa::Avx512) loop = cpu_avx512::fma_loop;
  else if (active_isa() == Isa::Avx2) loop = cpu_avx2::fma_loop;
#endif
  // Calibrate on one thread, then run the same work on every thread at once.
  int64_t iters = 1 << 16;
  for (;;) {
    const auto t0 = Clock::now();
    loop(iters, 1.0f);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (ms > millis / 4.0 || iters > (int64_t(1) << 40)) {
      iters = static_cast<int64_t>(iters * (millis / (ms > 0.01 ? ms : 0.01)));
      break;
    }
    iters *= 4;
  }
  ThreadPool& pool = ThreadPool::global();
  const int threads = pool.threads();
  std::atomic<int64_t> flops_bits{0};
  const auto t0 = Clock::now();
  pool.parallel_for(threads, [&](int64_t t, int) { flops_bits += static_cast<int64_t>(loop(iters, 1.0f + t)); });
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  return static_cast<double>(flops_bits.load()) / secs / 1e9;
}

}  // namespace attnkit
