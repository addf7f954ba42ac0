#include "../simd/half.h"
#include "../simd/vec_avx2.h"
#include "fma_peak.h"

namespace attnkit {
namespace cpu_avx2 {
using namespace simd_avx2;
#include "fma_peak_kernel.h"
}  // namespace cpu_avx2
}  // namespace attnkit
