// The chunkwise linear attention kernel built for scalar (see linear_attention_kernel.h).
#include <cmath>
#include <cstring>

#include "../element_io.h"
#include "../simd/vec_scalar.h"
#include "linear_attention.h"

namespace attnkit {
namespace cpu_scalar {
using namespace simd_scalar;
#include "../simd/vec_math.h"
#include "../simd/row_io.h"

constexpr int kMmRows = 4;  // rows of A broadcast per micro-tile
constexpr int kMmVecs = 2;  // vectors of B (and C) per micro-tile

#include "linear_attention_kernel.h"

}  // namespace cpu_scalar
}  // namespace attnkit
