// Portable 4-lane "vector" of plain floats: the fallback for any CPU (the compiler maps it onto
// SSE2 or NEON where it can). Same interface as vec_avx2.h / vec_avx512.h.
#pragma once
#include <cmath>
#include <cstdint>

namespace attnkit {
namespace simd_scalar {

constexpr int kWidth = 4;
struct Vec { float v[4]; };

#define ATTNKIT_LANES(expr) Vec r; for (int i = 0; i < 4; ++i) r.v[i] = (expr); return r
static inline Vec vzero() { ATTNKIT_LANES(0.0f); }
static inline Vec vset1(float x) { ATTNKIT_LANES(x); }
static inline Vec vload(const float* p) { ATTNKIT_LANES(p[i]); }
static inline void vstore(float* p, Vec a) { for (int i = 0; i < 4; ++i) p[i] = a.v[i]; }
static inline Vec vadd(Vec a, Vec b) { ATTNKIT_LANES(a.v[i] + b.v[i]); }
static inline Vec vsub(Vec a, Vec b) { ATTNKIT_LANES(a.v[i] - b.v[i]); }
static inline Vec vmul(Vec a, Vec b) { ATTNKIT_LANES(a.v[i] * b.v[i]); }
static inline Vec vdiv(Vec a, Vec b) { ATTNKIT_LANES(a.v[i] / b.v[i]); }
static inline Vec vmax(Vec a, Vec b) { ATTNKIT_LANES(a.v[i] > b.v[i] ? a.v[i] : b.v[i]); }
static inline Vec vmin(Vec a, Vec b) { ATTNKIT_LANES(a.v[i] < b.v[i] ? a.v[i] : b.v[i]); }
static inline Vec vfma(Vec a, Vec b, Vec c) { ATTNKIT_LANES(a.v[i] * b.v[i] + c.v[i]); }
// Sum of the 4 lanes.
static inline float vhsum(Vec a) { return (a.v[0] + a.v[1]) + (a.v[2] + a.v[3]); }
static inline void vhsum4(Vec a, Vec b, Vec c, Vec d, float* out) {
  out[0] = vhsum(a); out[1] = vhsum(b); out[2] = vhsum(c); out[3] = vhsum(d);
}
static inline Vec vabs(Vec a) { ATTNKIT_LANES(std::fabs(a.v[i])); }
static inline Vec vcopysign(Vec mag, Vec sgn) { ATTNKIT_LANES(std::copysign(mag.v[i], sgn.v[i])); }
static inline Vec vround(Vec a) { ATTNKIT_LANES(std::nearbyint(a.v[i])); }
static inline Vec vpow2i(Vec n) { ATTNKIT_LANES(bits_to_float(static_cast<uint32_t>(static_cast<int32_t>(n.v[i]) + 127) << 23)); }
static inline Vec vscale2(Vec p, Vec n) { return vmul(p, vpow2i(n)); }  // p * 2^n, n integral
#undef ATTNKIT_LANES

static inline void cvt_f16_row(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_float(src[i]);
}
static inline void cvt_bf16_row(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(src[i]);
}

}  // namespace simd_scalar
}  // namespace attnkit

namespace attnkit {
namespace simd_scalar {
// Same contract as transpose8_avx.h.
static inline void transpose8x8(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                                const float* row_scale) {
  for (int r = 0; r < 8; ++r) {
    const float s = row_scale ? row_scale[r] : 1.0f;
    for (int c = 0; c < 8; ++c) dst[c * dst_stride + r] = src[r * src_stride + c] * s;
  }
}
}  // namespace simd_scalar
}  // namespace attnkit
