// The chunkwise linear attention kernel built for avx512 (see linear_attention_kernel.h).
#include <cmath>
#include <cstring>

#include "../element_io.h"
#include "../simd/vec_avx512.h"
#include "linear_attention.h"

namespace attnkit {
namespace cpu_avx512 {
using namespace simd_avx512;
#include "../simd/vec_math.h"
#include "../simd/row_io.h"
#include "../simd/transpose8_avx.h"

constexpr int kMmRows = 6;  // rows of A broadcast per micro-tile
constexpr int kMmVecs = 4;  // vectors of B (and C) per micro-tile

#include "linear_attention_kernel.h"

}  // namespace cpu_avx512
}  // namespace attnkit
