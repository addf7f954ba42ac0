// The fused attention tile kernel built for scalar (see fused_attention_kernel.h).
#include <cmath>
#include <cstring>
#include <limits>

#include "../element_io.h"
#include "../simd/vec_scalar.h"
#include "fused_attention.h"

namespace attnkit {
namespace cpu_scalar {
using namespace simd_scalar;
#include "../simd/vec_math.h"
#include "../simd/row_io.h"

constexpr int kTileRows = 4;  // rows of K (or V^T) broadcast per micro-tile
constexpr int kTileCols = 2;  // vectors of queries per micro-tile

#include "fused_attention_kernel.h"

}  // namespace cpu_scalar
}  // namespace attnkit
