// The SIMD exp of vector_exp.h as inline functions for the kernels that use it inside their
// own loops (elementwise, softmax, attention). Include only where ACCULLM_HAVE_X86_SIMD is 1;
// every caller must itself be compiled for the same target (GCC inlines across equal
// targets only).
#pragma once

#include "kernels/cpu/cpu_features.h"

#if ACCULLM_HAVE_X86_SIMD
namespace accullm::kernels::simd_exp {

// Cephes expf constants.
inline constexpr float kLog2e = 1.44269504088896341f;
inline constexpr float kLn2Hi = 0.693359375f;  // few mantissa bits: n · kLn2Hi is exact
inline constexpr float kLn2Lo = -2.12194440e-4f;
inline constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f;
inline constexpr float kP3 = 4.1665795894e-2f, kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;
// Inputs are clamped to [kMinInput, kMaxFinite]; from kOverflow up the answer is +inf
// (kOverflow is the first float whose exp exceeds FLT_MAX).
inline constexpr float kMinInput = -104.0f;
inline constexpr float kMaxFinite = 88.72283172607421875f;
inline constexpr float kOverflow = 88.72283935546875f;

__attribute__((target("avx2,fma"))) inline __m256 Exp8(__m256 x) {
  // max(lo, x) and min(hi, ·) return their second operand when it is NaN: NaN flows through.
  __m256 xc = _mm256_min_ps(_mm256_set1_ps(kMaxFinite), _mm256_max_ps(_mm256_set1_ps(kMinInput), x));
  const __m256 n =
      _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kP0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP5));
  const __m256 r2 = _mm256_mul_ps(r, r);
  __m256 y = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n as 2^k1 · 2^k2, k1 = n >> 1: each factor stays a normal float for n in [−150, 128].
  const __m256i k = _mm256_cvtps_epi32(n);
  const __m256i k1 = _mm256_srai_epi32(k, 1), k2 = _mm256_sub_epi32(k, k1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
  y = _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
  const __m256 overflow = _mm256_cmp_ps(x, _mm256_set1_ps(kOverflow), _CMP_GE_OQ);
  return _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), overflow);
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) inline __m512 Exp16(__m512 x) {
  __m512 xc = _mm512_min_ps(_mm512_set1_ps(kMaxFinite), _mm512_max_ps(_mm512_set1_ps(kMinInput), x));
  const __m512 n =
      _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kP0);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP5));
  const __m512 r2 = _mm512_mul_ps(r, r);
  __m512 y = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i k = _mm512_cvtps_epi32(n);
  const __m512i k1 = _mm512_srai_epi32(k, 1), k2 = _mm512_sub_epi32(k, k1);
  const __m512i bias = _mm512_set1_epi32(127);
  const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k1, bias), 23));
  const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k2, bias), 23));
  y = _mm512_mul_ps(_mm512_mul_ps(y, s1), s2);
  const __mmask16 overflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kOverflow), _CMP_GE_OQ);
  return _mm512_mask_mov_ps(y, overflow, _mm512_set1_ps(__builtin_inff()));
}

// Lane masks for a tail of `n` < lanes elements.
__attribute__((target("avx2"))) inline __m256i TailMask8(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __mmask16 TailMask16(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

// Sum of 8 lanes in one fixed order: (l0+l4, l1+l5, ...) then pairs, then the last two.
__attribute__((target("avx2"))) inline float HorizontalSum8(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  return _mm_cvtss_f32(h);
}
// 16 lanes: the two 256-bit halves added, then HorizontalSum8's order.
__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) inline float HorizontalSum16(__m512 v) {
  const __m256 lo = _mm512_castps512_ps256(v);
  const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  __m256 s = _mm256_add_ps(lo, hi);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  return _mm_cvtss_f32(h);
}

}  // namespace accullm::kernels::simd_exp
#endif
