#include "../simd/half.h"
#include "../simd/vec_avx512.h"
#include "fma_peak.h"

namespace attnkit {
namespace cpu_avx512 {
using namespace simd_avx512;
#include "fma_peak_kernel.h"
}  // namespace cpu_avx512
}  // namespace attnkit
