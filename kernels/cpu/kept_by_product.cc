#include "kernels/cpu/kept_by_product.h"

#include <bit>
#include <cmath>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/silu_mul_mask.h"
#include "kernels/cpu/vector_exp_simd.h"

namespace accullm::kernels {
namespace {

// FfnGuesser::Scores's score against the threshold: SiluMulMasked's product with every neuron
// kept, then |·| (a NaN SiLU is not kept there, so it scores +0; a NaN product stays NaN and
// is never above a threshold).
inline bool KeepOne(float g, float u, float threshold) {
  const float s = SiluOf(g);
  const float p = s == s ? std::fabs(s * u) : 0.0f;
  return p > threshold;
}

// Whether the SIMD variants may decide from their approximate product (kept_by_product.h).
inline bool MarginHolds(float threshold) { return std::isfinite(threshold) && threshold >= kKeptByProductMinThreshold; }

}  // namespace

int64_t KeptByProductScalar(const float* gate, const float* up, int64_t n, float threshold, int32_t* kept) {
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {  // branch-free: near the threshold's share a branch mispredicts
    kept[count] = static_cast<int32_t>(i);
    count += KeepOne(gate[i], up[i], threshold) ? 1 : 0;
  }
  return count;
}

#if ACCULLM_HAVE_X86_SIMD
namespace {

__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) int64_t KeptAvx512(const float* gate, const float* up,
                                                                            int64_t n, float threshold, int32_t* kept) {
  const __m512 lo = _mm512_set1_ps(threshold * (1.0f - kKeptByProductMargin));
  const __m512 hi = _mm512_set1_ps(threshold * (1.0f + kKeptByProductMargin));
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512i sign = _mm512_set1_epi32(static_cast<int32_t>(0x80000000u));
  __m512i index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  int64_t count = 0;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 lanes = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : simd_exp::TailMask16(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(lanes, gate + i);
    const __m512 u = _mm512_maskz_loadu_ps(lanes, up + i);
    const __m512 minus_g = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(g), sign));
    const __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, simd_exp::Exp16(minus_g)));
    const __m512 p = _mm512_abs_ps(_mm512_mul_ps(s, u));
    __mmask16 keep = _mm512_mask_cmp_ps_mask(lanes, p, hi, _CMP_GT_OQ);
    const __mmask16 drop = _mm512_mask_cmp_ps_mask(lanes, p, lo, _CMP_LT_OQ);
    for (unsigned near = lanes & ~keep & ~drop; near != 0; near &= near - 1) {
      const int lane = std::countr_zero(near);
      if (KeepOne(gate[i + lane], up[i + lane], threshold)) keep = static_cast<__mmask16>(keep | (1u << lane));
    }
    _mm512_mask_compressstoreu_epi32(kept + count, keep, index);
    count += std::popcount(static_cast<unsigned>(keep));
    index = _mm512_add_epi32(index, _mm512_set1_epi32(16));
  }
  return count;
}

__attribute__((target("avx2,fma"))) int64_t KeptAvx2(const float* gate, const float* up, int64_t n, float threshold,
                                                     int32_t* kept) {
  const __m256 lo = _mm256_set1_ps(threshold * (1.0f - kKeptByProductMargin));
  const __m256 hi = _mm256_set1_ps(threshold * (1.0f + kKeptByProductMargin));
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  int64_t count = 0;
  for (int64_t i = 0; i < n; i += 8) {
    const int64_t valid = n - i >= 8 ? 8 : n - i;
    const __m256i mask = simd_exp::TailMask8(valid);
    const __m256 g = _mm256_maskload_ps(gate + i, mask);
    const __m256 u = _mm256_maskload_ps(up + i, mask);
    const __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, simd_exp::Exp8(_mm256_xor_ps(g, sign))));
    const __m256 p = _mm256_andnot_ps(sign, _mm256_mul_ps(s, u));
    const unsigned lanes = (1u << valid) - 1u;
    unsigned keep = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(p, hi, _CMP_GT_OQ))) & lanes;
    const unsigned drop = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(p, lo, _CMP_LT_OQ)));
    for (unsigned near = lanes & ~keep & ~drop; near != 0; near &= near - 1) {
      const int lane = std::countr_zero(near);
      if (KeepOne(gate[i + lane], up[i + lane], threshold)) keep |= 1u << lane;
    }
    for (; keep != 0; keep &= keep - 1) kept[count++] = static_cast<int32_t>(i + std::countr_zero(keep));
  }
  return count;
}

}  // namespace

int64_t KeptByProductAvx512(const float* gate, const float* up, int64_t n, float threshold, int32_t* kept) {
  if (DetectedIsa() < Isa::kAvx512) return -1;
  if (!MarginHolds(threshold)) return KeptByProductScalar(gate, up, n, threshold, kept);
  return KeptAvx512(gate, up, n, threshold, kept);
}

int64_t KeptByProductAvx2(const float* gate, const float* up, int64_t n, float threshold, int32_t* kept) {
  if (DetectedIsa() < Isa::kAvx2) return -1;
  if (!MarginHolds(threshold)) return KeptByProductScalar(gate, up, n, threshold, kept);
  return KeptAvx2(gate, up, n, threshold, kept);
}
#else
int64_t KeptByProductAvx512(const float*, const float*, int64_t, float, int32_t*) { return -1; }
int64_t KeptByProductAvx2(const float*, const float*, int64_t, float, int32_t*) { return -1; }
#endif

int64_t KeptByProduct(const float* gate, const float* up, int64_t n, float threshold, int32_t* kept) {
  int64_t count = -1;
  if (ActiveIsa() >= Isa::kAvx512) count = KeptByProductAvx512(gate, up, n, threshold, kept);
  if (count < 0 && ActiveIsa() >= Isa::kAvx2) count = KeptByProductAvx2(gate, up, n, threshold, kept);
  if (count < 0) count = KeptByProductScalar(gate, up, n, threshold, kept);
  return count;
}

}  // namespace accullm::kernels
