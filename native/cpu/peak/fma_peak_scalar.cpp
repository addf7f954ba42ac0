#include "../simd/half.h"
#include "../simd/vec_scalar.h"
#include "fma_peak.h"

namespace attnkit {
namespace cpu_scalar {
using namespace simd_scalar;
#include "fma_peak_kernel.h"
}  // namespace cpu_scalar
}  // namespace attnkit
