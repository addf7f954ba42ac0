// 8-lane float vector over AVX2 + FMA + F16C. Include only from TUs built with -mavx2 -mfma -mf16c.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace attnkit {
namespace simd_avx2 {

constexpr int kWidth = 8;
struct Vec { __m256 v; };

static inline Vec vzero() { return {_mm256_setzero_ps()}; }
static inline Vec vset1(float x) { return {_mm256_set1_ps(x)}; }
static inline Vec vload(const float* p) { return {_mm256_loadu_ps(p)}; }
static inline void vstore(float* p, Vec a) { _mm256_storeu_ps(p, a.v); }
static inline Vec vadd(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
static inline Vec vsub(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
static inline Vec vmul(Vec a, Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
static inline Vec vdiv(Vec a, Vec b) { return {_mm256_div_ps(a.v, b.v)}; }
static inline Vec vmax(Vec a, Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
static inline Vec vmin(Vec a, Vec b) { return {_mm256_min_ps(a.v, b.v)}; }
static inline Vec vfma(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
// Sum of the 8 lanes.
static inline float vhsum(Vec a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// The four lane sums of a, b, c, d at once (out[0..3]): pairs of rows interleaved within each
// 128-bit lane, then the two lanes added.
static inline void vhsum4(Vec a, Vec b, Vec c, Vec d, float* out) {
  const __m256 ab = _mm256_add_ps(_mm256_unpacklo_ps(a.v, b.v), _mm256_unpackhi_ps(a.v, b.v));
  const __m256 cd = _mm256_add_ps(_mm256_unpacklo_ps(c.v, d.v), _mm256_unpackhi_ps(c.v, d.v));
  const __m256 s = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)));
}
static inline Vec vabs(Vec a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
static inline Vec vcopysign(Vec mag, Vec sgn) {
  const __m256 m = _mm256_set1_ps(-0.0f);
  return {_mm256_or_ps(_mm256_andnot_ps(m, mag.v), _mm256_and_ps(m, sgn.v))};
}
static inline Vec vround(Vec a) { return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
static inline Vec vpow2i(Vec n) {
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127)), 23);
  return {_mm256_castsi256_ps(e)};
}

// p * 2^n for integral n in [-126, 127]
static inline Vec vscale2(Vec p, Vec n) { return vmul(p, vpow2i(n)); }

static inline void cvt_f16_row(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = f16_to_float(src[i]);
}
static inline void cvt_bf16_row(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  }
  for (; i < n; ++i) dst[i] = bits_to_float(static_cast<uint32_t>(src[i]) << 16);
}

}  // namespace simd_avx2
}  // namespace attnkit
