// The decode kernel built for avx2 (see decode_attention_kernel.h).
#include <cmath>
#include <cstring>
#include <limits>

#include "../element_io.h"
#include "../simd/vec_avx2.h"
#include "decode_attention.h"

namespace attnkit {
namespace cpu_avx2 {
using namespace simd_avx2;
#include "../simd/vec_math.h"
#include "../simd/row_io.h"

#include "decode_attention_kernel.h"

}  // namespace cpu_avx2
}  // namespace attnkit
