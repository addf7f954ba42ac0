// Measures this machine's memory read bandwidth: a streaming read of a buffer far larger than the
// caches, split across every pool thread (the ceiling a decode step, which reads the KV cache once,
// is reported against).
#pragma once
#include <cstddef>

namespace attnkit {

// Best GB/s (1e9 bytes per second) of `rounds` reads of a `bytes` buffer.
double measure_read_gbps(size_t bytes, int rounds);

}  // namespace attnkit
