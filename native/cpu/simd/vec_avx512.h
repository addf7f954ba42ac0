// 16-lane float vector over AVX-512F. Include only from translation units built with -mavx512f.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace attnkit {
namespace simd_avx512 {

constexpr int kWidth = 16;
struct Vec { __m512 v; };

static inline Vec vzero() { return {_mm512_setzero_ps()}; }
static inline Vec vset1(float x) { return {_mm512_set1_ps(x)}; }
static inline Vec vload(const float* p) { return {_mm512_loadu_ps(p)}; }
static inline void vstore(float* p, Vec a) { _mm512_storeu_ps(p, a.v); }
static inline Vec vadd(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
static inline Vec vsub(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
static inline Vec vmul(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
static inline Vec vdiv(Vec a, Vec b) { return {_mm512_div_ps(a.v, b.v)}; }
static inline Vec vmax(Vec a, Vec b) { return {_mm512_max_ps(a.v, b.v)}; }
static inline Vec vmin(Vec a, Vec b) { return {_mm512_min_ps(a.v, b.v)}; }
static inline Vec vfma(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }  // a*b + c
// Sum of the 16 lanes.
static inline float vhsum(Vec a) { return _mm512_reduce_add_ps(a.v); }
// The four lane sums of a, b, c, d at once (out[0..3]): pairs of rows interleaved within each
// 128-bit lane, then the lanes added; ~9 instructions where four vhsum take ~32.
static inline void vhsum4(Vec a, Vec b, Vec c, Vec d, float* out) {
  const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a.v, b.v), _mm512_unpackhi_ps(a.v, b.v));
  const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c.v, d.v), _mm512_unpackhi_ps(c.v, d.v));
  const __m512 s = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}
static inline Vec vabs(Vec a) { return {_mm512_abs_ps(a.v)}; }
static inline Vec vcopysign(Vec mag, Vec sgn) {
  const __m512i m = _mm512_set1_epi32(0x80000000);
  return {_mm512_castsi512_ps(_mm512_ternarylogic_epi32(m, _mm512_castps_si512(sgn.v), _mm512_castps_si512(mag.v), 0xca))};  // mask ? sgn : mag
}
// round to nearest integer; integer -> exponent bits
static inline Vec vround(Vec a) { return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
static inline Vec vpow2i(Vec n) {  // 2^n for integral n in [-127, 127]; n = -127 gives exactly 0
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127)), 23);
  return {_mm512_castsi512_ps(e)};
}

// p * 2^n for integral n (one instruction on AVX-512)
static inline Vec vscale2(Vec p, Vec n) { return {_mm512_scalef_ps(p.v, n.v)}; }

static inline void cvt_f16_row(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  for (; i < n; ++i) dst[i] = f16_to_float(src[i]);
}
static inline void cvt_bf16_row(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
  }
  for (; i < n; ++i) dst[i] = bits_to_float(static_cast<uint32_t>(src[i]) << 16);
}

}  // namespace simd_avx512
}  // namespace attnkit
