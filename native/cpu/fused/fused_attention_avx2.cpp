// The fused attention tile kernel built for avx2 (see fused_attention_kernel.h).
#include <cmath>
#include <cstring>
#include <limits>

#include "../element_io.h"
#include "../simd/vec_avx2.h"
#include "fused_attention.h"

namespace attnkit {
namespace cpu_avx2 {
using namespace simd_avx2;
#include "../simd/vec_math.h"
#include "../simd/row_io.h"
#include "../simd/transpose8_avx.h"

constexpr int kTileRows = 6;  // rows of K (or V^T) broadcast per micro-tile
constexpr int kTileCols = 2;  // vectors of queries per micro-tile

#include "fused_attention_kernel.h"

}  // namespace cpu_avx2
}  // namespace attnkit
