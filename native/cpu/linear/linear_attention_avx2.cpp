// The chunkwise linear attention kernel built for avx2 (see linear_attention_kernel.h).
#include <cmath>
#include <cstring>

#include "../element_io.h"
#include "../simd/vec_avx2.h"
#include "linear_attention.h"

namespace attnkit {
namespace cpu_avx2 {
using namespace simd_avx2;
#include "../simd/vec_math.h"
#include "../simd/row_io.h"
#include "../simd/transpose8_avx.h"

constexpr int kMmRows = 6;  // rows of A broadcast per micro-tile
constexpr int kMmVecs = 2;  // vectors of B (and C) per micro-tile

#include "linear_attention_kernel.h"

}  // namespace cpu_avx2
}  // namespace attnkit
