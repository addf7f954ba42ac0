// Measures this machine's float32 FMA throughput with a register-only loop on every pool thread:
// the ceiling that benchmark results are reported against.
#pragma once
#include <cstdint>

namespace attnkit {

// Returns GFLOP/s (2 flops per FMA lane) over about `millis` milliseconds.
double measure_fma_peak_gflops(int millis);

namespace cpu_avx512 { double fma_loop(int64_t iters, float seed); }
namespace cpu_avx2 { double fma_loop(int64_t iters, float seed); }
namespace cpu_scalar { double fma_loop(int64_t iters, float seed); }

}  // namespace attnkit
