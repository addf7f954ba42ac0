// Per-thread scratch memory for kernels: 64-byte aligned, grown on demand, reused across calls so a
// small attention call allocates nothing.
#pragma once
#include <cstddef>

namespace attnkit {

float* thread_scratch(size_t floats);

}  // namespace attnkit
