#include "quant/range_search.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/isa.h"
#include "kernels/low_bit_matrix.h"

namespace accullm::quant {

namespace {

constexpr int kSteps = 16;  // shrink factors per end of the range

// Clipping pays while it buys finer steps: at 4 bits and below the search spans 1 .. 0.7 of
// the range in steps of 0.02; wider codes have finer steps to lose, so the same 16 factors
// span a range narrower in proportion (5 bits 1 .. 0.855, 6 bits 1 .. 0.93).
float SearchStep(int bits) { return 0.02f * std::min(1.f, 15.f / static_cast<float>((1 << bits) - 1)); }

inline double SumLanes(const double* l) { return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])); }

// The float error of one weight, written as the vector code computes it (clamp in float:
// equal to clamping the integer code, and defined for any quotient).
inline float RoundingError(float w, float scale, float zero, float maxq) {
  float c = std::nearbyint(w / scale + zero);
  c = c > 0.f ? c : 0.f;
  c = c < maxq ? c : maxq;
  return w - (c - zero) * scale;
}

}  // namespace

Grid GridForRange(float lo, float hi, const GridFormat& f) {
  Grid g;
  const int half = 1 << (f.bits - 1);
  g.maxq = 2 * half - 1;
  g.stored = half;
  g.zero = static_cast<float>(half);
  if (f.symmetric) {
    // -half is reachable too, but ±(half - 1) keeps the grid symmetric around zero.
    g.scale = kernels::EncodeGroupScale(std::max(-lo, hi) / static_cast<float>(half - 1), f.row_scale, &g.scale_code);
    return g;
  }
  g.scale = kernels::EncodeGroupScale((hi - lo) / static_cast<float>(g.maxq), f.row_scale, &g.scale_code);
  const int unit = 1 << f.frac_bits;
  g.stored = g.scale > 0 ? static_cast<int>(std::lround(-lo * unit / g.scale)) : half * unit;
  g.stored = std::clamp(g.stored, 0, (g.maxq + 1) * unit - 1);
  g.zero = static_cast<float>(g.stored) / static_cast<float>(unit);
  return g;
}

void GroupRange(const float* w, const bool* skip, int64_t n, float* lo, float* hi) {
  float l = 0.f, h = 0.f;  // include 0 so zero is exactly representable
  for (int64_t i = 0; i < n; ++i) {
    if (skip[i]) continue;
    l = std::min(l, w[i]);
    h = std::max(h, w[i]);
  }
  *lo = l;
  *hi = h;
}

int RangeSearchCandidates(const GridFormat& f) { return f.symmetric ? kSteps : kSteps * kSteps; }

Grid CandidateGrid(float lo, float hi, const GridFormat& f, int k) {
  const float step = SearchStep(f.bits);
  const int a = f.symmetric ? k : k / kSteps, b = k % kSteps;
  const float shrink_lo = 1.f - step * static_cast<float>(a);
  const float shrink_hi = f.symmetric ? shrink_lo : 1.f - step * static_cast<float>(b);
  return GridForRange(lo * shrink_lo, hi * shrink_hi, f);
}

double GridRoundingError(const float* w, const bool* skip, const double* importance, int64_t n, const Grid& g) {
  const float maxq = static_cast<float>(g.maxq);
  double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < n; ++i) {
    if (skip[i]) continue;
    const double d = RoundingError(w[i], g.scale, g.zero, maxq);
    lanes[i % 8] += (importance != nullptr ? importance[i] * d : d) * d;
  }
  return SumLanes(lanes);
}

void RangeSearchErrorsScalar(const float* w, const bool* skip, const double* importance, int64_t n, float lo, float hi,
                             const GridFormat& f, double* errors) {
  for (int k = 0; k < RangeSearchCandidates(f); ++k) {
    const Grid g = CandidateGrid(lo, hi, f, k);
    errors[k] = g.scale > 0.f ? GridRoundingError(w, skip, importance, n, g) : std::numeric_limits<double>::infinity();
  }
}

#if ACCULLM_HAVE_X86_SIMD
// GCC 12's AVX-512 intrinsics pass an "undefined" register as the masked-off source and then
// warn that it may be uninitialised (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace {

#define ACCULLM_RANGE_SEARCH_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,f16c")))

ACCULLM_RANGE_SEARCH_TARGET inline __m512 Negate(__m512 x) {
  return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN)));
}

// std::lround for 0 <= x < 2^30 (the caller checks): the truncation plus one where the
// fraction, x - trunc(x) (exact), is at least a half — halves away from zero, as lround.
ACCULLM_RANGE_SEARCH_TARGET inline __m512 RoundHalfAway(__m512 x) {
  const __m512 t = _mm512_roundscale_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __mmask16 up = _mm512_cmp_ps_mask(_mm512_sub_ps(x, t), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  return _mm512_mask_add_ps(t, up, t, _mm512_set1_ps(1.f));
}

// Lanes of x where lround's shortcut above does not hold (negative, huge, NaN).
ACCULLM_RANGE_SEARCH_TARGET inline __mmask16 OutsideRoundRange(__m512 x) {
  return _mm512_kor(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NGE_UQ),
                    _mm512_cmp_ps_mask(x, _mm512_set1_ps(1073741824.f), _CMP_NLT_UQ));
}

// Steps and zero points of candidates 16m .. 16m + 15, one per lane, by GridForRange's
// operations; `valid` marks a positive step. False where a lane leaves the range the
// vector lround handles (the caller then takes the scalar grids).
ACCULLM_RANGE_SEARCH_TARGET bool CandidateBatch(float lo, float hi, const GridFormat& f, int m, __m512* scale,
                                                __m512* zero, __mmask16* valid) {
  const float step = SearchStep(f.bits);
  const __m512 lane = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512 one = _mm512_set1_ps(1.f);
  const __m512 per_lane = _mm512_sub_ps(one, _mm512_mul_ps(_mm512_set1_ps(step), lane));
  const __m512 shrink_lo = f.symmetric ? per_lane : _mm512_set1_ps(1.f - step * static_cast<float>(m));
  const __m512 lo_v = _mm512_mul_ps(_mm512_set1_ps(lo), shrink_lo);
  const __m512 hi_v = _mm512_mul_ps(_mm512_set1_ps(hi), per_lane);
  const int half = 1 << (f.bits - 1), maxq = 2 * half - 1;
  __m512 want;
  if (f.symmetric) {
    const __m512 neg_lo = Negate(lo_v);  // std::max(-lo, hi): hi where -lo < hi, else -lo
    const __m512 mx = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(neg_lo, hi_v, _CMP_LT_OQ), neg_lo, hi_v);
    want = _mm512_div_ps(mx, _mm512_set1_ps(static_cast<float>(half - 1)));
  } else {
    want = _mm512_div_ps(_mm512_sub_ps(hi_v, lo_v), _mm512_set1_ps(static_cast<float>(maxq)));
  }
  __m512 s;
  if (f.row_scale <= 0.f) {  // F16 steps: round-to-nearest-even through F16, as F32ToF16
    s = _mm512_cvtph_ps(_mm512_cvtps_ph(want, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  } else {  // 8-bit steps: code = clamp(lround(want / row · 255), 1, 255)
    const __m512 row = _mm512_set1_ps(f.row_scale);
    const __m512 x = _mm512_mul_ps(_mm512_div_ps(want, row), _mm512_set1_ps(255.f));
    if (OutsideRoundRange(x) != 0) return false;
    const __m512 code = _mm512_min_ps(_mm512_max_ps(RoundHalfAway(x), one), _mm512_set1_ps(255.f));
    s = _mm512_mul_ps(_mm512_mul_ps(row, code), _mm512_set1_ps(1.f / 255.f));
  }
  *valid = _mm512_cmp_ps_mask(s, _mm512_setzero_ps(), _CMP_GT_OQ);
  if (f.symmetric) {
    *zero = _mm512_set1_ps(static_cast<float>(half));
  } else {
    const float unit = static_cast<float>(1 << f.frac_bits);
    const __m512 x = _mm512_div_ps(_mm512_mul_ps(Negate(lo_v), _mm512_set1_ps(unit)), s);
    if ((OutsideRoundRange(x) & *valid) != 0) return false;
    // clamp(stored, 0, top) as the reference: max(-0, +0) is +0, as lround(-0) is 0.
    const float top = static_cast<float>((maxq + 1) * (1 << f.frac_bits) - 1);
    const __m512 stored = _mm512_min_ps(_mm512_max_ps(RoundHalfAway(x), _mm512_setzero_ps()), _mm512_set1_ps(top));
    *zero = _mm512_div_ps(stored, _mm512_set1_ps(unit));
  }
  *scale = s;
  return true;
}

// Candidates 8h .. 8h + 7's sums of their element lanes, in the reference's order
// ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)).
ACCULLM_RANGE_SEARCH_TARGET inline __m512d LaneSums(const __m512d (*acc)[2], int h) {
  return _mm512_add_pd(_mm512_add_pd(_mm512_add_pd(acc[0][h], acc[1][h]), _mm512_add_pd(acc[2][h], acc[3][h])),
                       _mm512_add_pd(_mm512_add_pd(acc[4][h], acc[5][h]), _mm512_add_pd(acc[6][h], acc[7][h])));
}

ACCULLM_RANGE_SEARCH_TARGET void RangeSearchErrorsAvx512(const float* w, const bool* skip, const double* importance,
                                                         int64_t n, float lo, float hi, const GridFormat& f,
                                                         double* errors, bool prune) {
  const int batches = RangeSearchCandidates(f) / 16;
  const __m512d inf = _mm512_set1_pd(std::numeric_limits<double>::infinity());
  double best = std::numeric_limits<double>::infinity();  // least error of the batches before
  const __m512 maxq = _mm512_set1_ps(static_cast<float>((1 << f.bits) - 1)), fzero = _mm512_setzero_ps();
  for (int m = 0; m < batches; ++m) {
    __m512 scale, zero;
    __mmask16 valid;
    if (!CandidateBatch(lo, hi, f, m, &scale, &zero, &valid)) {
      alignas(64) float s[16], z[16];
      valid = 0;
      for (int j = 0; j < 16; ++j) {
        const Grid g = CandidateGrid(lo, hi, f, 16 * m + j);
        s[j] = g.scale;
        z[j] = g.zero;
        if (g.scale > 0.f) valid = static_cast<__mmask16>(valid | (1u << j));
      }
      scale = _mm512_load_ps(s);
      zero = _mm512_load_ps(z);
    }
    // Lanes without a positive step compute on a harmless grid; their result is replaced.
    scale = _mm512_mask_blend_ps(valid, _mm512_set1_ps(1.f), scale);
    // acc[j][h]: element lane j (i mod 8) of candidates 8h .. 8h + 7, as the scalar lanes.
    __m512d acc[8][2];
    for (auto& a : acc) a[0] = a[1] = _mm512_setzero_pd();
    bool pruned = false;
    for (int64_t i0 = 0; i0 < n && !pruned; i0 += 8) {
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        const int64_t i = i0 + j;
        if (i >= n || skip[i]) continue;
        const __m512 x = _mm512_set1_ps(w[i]);
        __m512 c = _mm512_roundscale_ps(_mm512_add_ps(_mm512_div_ps(x, scale), zero),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        c = _mm512_min_ps(_mm512_max_ps(c, fzero), maxq);
        const __m512 d = _mm512_sub_ps(x, _mm512_mul_ps(_mm512_sub_ps(c, zero), scale));
        const __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(d));
        const __m512d d1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d), 1)));
        if (importance != nullptr) {
          const __m512d im = _mm512_set1_pd(importance[i]);
          acc[j][0] = _mm512_add_pd(acc[j][0], _mm512_mul_pd(_mm512_mul_pd(im, d0), d0));
          acc[j][1] = _mm512_add_pd(acc[j][1], _mm512_mul_pd(_mm512_mul_pd(im, d1), d1));
        } else {
          // d is a float: d·d has at most 48 significant bits, exact in double, so the fused
          // multiply-add rounds once where the reference's multiply then add rounds once too.
          acc[j][0] = _mm512_fmadd_pd(d0, d0, acc[j][0]);
          acc[j][1] = _mm512_fmadd_pd(d1, d1, acc[j][1]);
        }
      }
      // Every term is >= 0 and rounding is monotone, so the lane sums so far bound each
      // candidate's error from below: once every lane's bound reaches the least error of the
      // batches before, none of them can be the first of least error (ties keep the earlier).
      if (prune && best < std::numeric_limits<double>::infinity() && i0 + 8 >= 16 && i0 + 8 < n) {
        const __m512d b = _mm512_set1_pd(best);
        const unsigned reached = _mm512_cmp_pd_mask(LaneSums(acc, 0), b, _CMP_GE_OQ) |
                                 (static_cast<unsigned>(_mm512_cmp_pd_mask(LaneSums(acc, 1), b, _CMP_GE_OQ)) << 8);
        pruned = ((reached | ~static_cast<unsigned>(valid)) & 0xffffu) == 0xffffu;
      }
    }
    for (int h = 0; h < 2; ++h) {
      const __mmask8 v = pruned ? 0 : static_cast<__mmask8>(valid >> (8 * h));
      _mm512_storeu_pd(errors + 16 * m + 8 * h, _mm512_mask_blend_pd(v, inf, LaneSums(acc, h)));
    }
    for (int k = 16 * m; k < 16 * m + 16; ++k) best = errors[k] < best ? errors[k] : best;
  }
}

}  // namespace
#endif

void RangeSearchErrors(const float* w, const bool* skip, const double* importance, int64_t n, float lo, float hi,
                       const GridFormat& f, double* errors, bool prune) {
#if ACCULLM_HAVE_X86_SIMD
  if (kernels::ActiveIsa() >= kernels::Isa::kAvx512) {
    RangeSearchErrorsAvx512(w, skip, importance, n, lo, hi, f, errors, prune);
    return;
  }
#endif
  RangeSearchErrorsScalar(w, skip, importance, n, lo, hi, f, errors);
}

Grid SearchGrid(const float* w, const bool* skip, const double* importance, int64_t n, const GridFormat& f,
                bool search) {
  float lo, hi;
  GroupRange(w, skip, n, &lo, &hi);
  const Grid base = GridForRange(lo, hi, f);
  if (!search || base.scale <= 0.f) return base;
  double errors[kSteps * kSteps];
  RangeSearchErrors(w, skip, importance, n, lo, hi, f, errors, /*prune=*/true);
  int best = -1;
  double best_err = INFINITY;
  for (int k = 0; k < RangeSearchCandidates(f); ++k) {
    if (errors[k] < best_err) {
      best_err = errors[k];
      best = k;
    }
  }
  return best < 0 ? base : CandidateGrid(lo, hi, f, best);
}

}  // namespace accullm::quant
