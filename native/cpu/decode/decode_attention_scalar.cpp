// The decode kernel built for scalar (see decode_attention_kernel.h).
#include <cmath>
#include <cstring>
#include <limits>

#include "../element_io.h"
#include "../simd/vec_scalar.h"
#include "decode_attention.h"

namespace attnkit {
namespace cpu_scalar {
using namespace simd_scalar;
#include "../simd/vec_math.h"
#include "../simd/row_io.h"

#include "decode_attention_kernel.h"

}  // namespace cpu_scalar
}  // namespace attnkit
