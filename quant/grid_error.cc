#include "quant/grid_error.h"

#include <cmath>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/isa.h"

namespace accullm::quant {

namespace {

inline double SumLanes(const double* l) { return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])); }

// The float error of one weight, written as the vector code computes it (clamp in float:
// equal to clamping the integer code, and defined for any quotient).
inline float RoundingError(float w, const GridCandidate& g) {
  float c = std::nearbyint(w / g.scale + g.zero);
  c = c > 0.f ? c : 0.f;
  c = c < g.maxq ? c : g.maxq;
  return w - (c - g.zero) * g.scale;
}

}  // namespace

double GridRoundingErrorScalar(const float* w, const bool* skip, const double* importance, int64_t n,
                               const GridCandidate& g) {
  double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < n; ++i) {
    if (skip[i]) continue;
    const double d = RoundingError(w[i], g);
    lanes[i % 8] += (importance != nullptr ? importance[i] * d : d) * d;
  }
  return SumLanes(lanes);
}

#if ACCULLM_HAVE_X86_SIMD
// GCC 12's AVX-512 intrinsics pass an "undefined" register as the masked-off source and then
// warn that it may be uninitialised (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace {

__attribute__((target("avx512f,avx512bw,avx512vl"))) double GridRoundingErrorAvx512(const float* w, const bool* skip,
                                                                                    const double* importance, int64_t n,
                                                                                    const GridCandidate& g) {
  const __m512 scale = _mm512_set1_ps(g.scale), zero = _mm512_set1_ps(g.zero), maxq = _mm512_set1_ps(g.maxq);
  const __m512 fzero = _mm512_setzero_ps();
  __m512d acc = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 x = _mm512_loadu_ps(w + i);
    __m512 c = _mm512_roundscale_ps(_mm512_add_ps(_mm512_div_ps(x, scale), zero),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    c = _mm512_min_ps(_mm512_max_ps(c, fzero), maxq);
    __m512 d = _mm512_sub_ps(x, _mm512_mul_ps(_mm512_sub_ps(c, zero), scale));
    // Skipped weights add +0 to their lane: the lane sum is unchanged, as when skipped.
    const __m128i s = _mm_loadu_si128(reinterpret_cast<const __m128i*>(skip + i));
    const __mmask16 keep = _mm_cmpeq_epi8_mask(s, _mm_setzero_si128());
    d = _mm512_maskz_mov_ps(keep, d);
    const __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(d));
    const __m512d d1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d), 1)));
    if (importance != nullptr) {
      acc = _mm512_add_pd(acc, _mm512_mul_pd(_mm512_mul_pd(_mm512_loadu_pd(importance + i), d0), d0));
      acc = _mm512_add_pd(acc, _mm512_mul_pd(_mm512_mul_pd(_mm512_loadu_pd(importance + i + 8), d1), d1));
    } else {
      acc = _mm512_add_pd(acc, _mm512_mul_pd(d0, d0));
      acc = _mm512_add_pd(acc, _mm512_mul_pd(d1, d1));
    }
  }
  alignas(64) double lanes[8];
  _mm512_store_pd(lanes, acc);
  for (; i < n; ++i) {
    if (skip[i]) continue;
    const double d = RoundingError(w[i], g);
    lanes[i % 8] += (importance != nullptr ? importance[i] * d : d) * d;
  }
  return SumLanes(lanes);
}

}  // namespace
#endif

double GridRoundingError(const float* w, const bool* skip, const double* importance, int64_t n,
                         const GridCandidate& g) {
#if ACCULLM_HAVE_X86_SIMD
  if (kernels::ActiveIsa() >= kernels::Isa::kAvx512) return GridRoundingErrorAvx512(w, skip, importance, n, g);
#endif
  return GridRoundingErrorScalar(w, skip, importance, n, g);
}

}  // namespace accullm::quant
