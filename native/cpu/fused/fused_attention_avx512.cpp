// The fused attention tile kernel built for avx512 (see fused_attention_kernel.h).
#include <cmath>
#include <cstring>
#include <limits>

#include "../element_io.h"
#include "../simd/vec_avx512.h"
#include "fused_attention.h"

namespace attnkit {
namespace cpu_avx512 {
using namespace simd_avx512;
#include "../simd/vec_math.h"
#include "../simd/row_io.h"
#include "../simd/transpose8_avx.h"

constexpr int kTileRows = 6;  // rows of K (or V^T) broadcast per micro-tile
constexpr int kTileCols = 4;  // vectors of queries per micro-tile

#include "fused_attention_kernel.h"

}  // namespace cpu_avx512
}  // namespace attnkit
