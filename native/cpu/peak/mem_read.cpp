#include "mem_read.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <vector>

#include "../../core/thread_pool.h"

namespace attnkit {

double measure_read_gbps(size_t bytes, int rounds) {
  using Clock = std::chrono::steady_clock;
  const size_t words = bytes / sizeof(uint64_t);
  std::vector<uint64_t> buf(words);
  for (size_t i = 0; i < words; ++i) buf[i] = i;  // touched: every page is mapped before timing
  ThreadPool& pool = ThreadPool::global();
  const int threads = pool.threads();
  std::atomic<uint64_t> sink{0};
  double best = 0;
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = Clock::now();
    pool.parallel_for(threads, [&](int64_t t, int) {
      const size_t lo = words * t / threads, hi = words * (t + 1) / threads;
      uint64_t a = 0, b = 0, c = 0, d = 0;  // independent sums: the loop is load-bound, not add-bound
      size_t i = lo;
      for (; i + 4 <= hi; i += 4) { a += buf[i]; b += buf[i + 1]; c += buf[i + 2]; d += buf[i + 3]; }
      for (; i < hi; ++i) a += buf[i];
      sink += a + b + c + d;
    });
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const double gbps = static_cast<double>(words * sizeof(uint64_t)) / secs / 1e9;
    if (gbps > best) best = gbps;
  }
  return sink.load() == 1 ? best + 0 : best;  // sink read: the sums are not dead code
}

}  // namespace attnkit
