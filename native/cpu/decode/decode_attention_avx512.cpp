// The decode kernel built for avx512 (see decode_attention_kernel.h).
#include <cmath>
#include <cstring>
#include <limits>

#include "../element_io.h"
#include "../simd/vec_avx512.h"
#include "decode_attention.h"

namespace attnkit {
namespace cpu_avx512 {
using namespace simd_avx512;
#include "../simd/vec_math.h"
#include "../simd/row_io.h"

#include "decode_attention_kernel.h"

}  // namespace cpu_avx512
}  // namespace attnkit
