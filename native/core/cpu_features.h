// Which SIMD kernels this CPU (and OS) can run. Picked once at load; ATTNKIT_ISA=scalar|avx2|avx512
// forces a lower level (for benchmarks and tests of every path on one machine).
#pragma once

namespace attnkit {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);
Isa detect_best_isa();   // what the hardware supports
Isa active_isa();        // detect_best_isa() capped by ATTNKIT_ISA
void set_active_isa(Isa isa);  // capped by what the hardware supports

}  // namespace attnkit
