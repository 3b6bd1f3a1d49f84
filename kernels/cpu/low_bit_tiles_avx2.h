// What the AVX2 integer-dot kernels over the tiled layout share (low_bit_int8_kernels.cc and
// low_bit_axe16_kernels.cc): the activation word load, a half tile's weight scales and the
// store of a half tile's outputs. One copy on purpose: the 16-bit AXE kernel must give the
// 32-bit kernel's bits, so their float steps must be the same operations. Internal to kernels/.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/low_bit_tiles.h"

#if ACCULLM_HAVE_X86_SIMD
namespace accullm::kernels::tiles_avx2 {

#define ACCULLM_TILES_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

// Four INT8 activations as one 32-bit word (broadcast to every lane by the kernels).
inline int32_t Load32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Steps of rows 8·half .. 8·half+7 of `tile` in group g: F16 steps, or as U8GroupScale
// (row scale · code) · (1/255).
ACCULLM_TILES_AVX2_TARGET inline __m256 WeightScales256(const LowBitTiles& w, int64_t tile, int64_t g, int half) {
  const size_t at = static_cast<size_t>((tile * w.groups() + g) * kTileRows + 8 * half);
  if (w.scale_codes.empty())
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scales.data() + at)));
  const __m256 codes = _mm256_cvtepi32_ps(
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.scale_codes.data() + at))));
  const __m256 rows = _mm256_loadu_ps(w.row_scales.data() + tile * kTileRows + 8 * half);
  return _mm256_mul_ps(_mm256_mul_ps(rows, codes), _mm256_set1_ps(1.f / 255.f));
}

// The zero points of rows 8·half .. 8·half+7 of `tile` in group g (or the symmetric middle).
ACCULLM_TILES_AVX2_TARGET inline __m256i TileZeros256(const LowBitTiles& w, int64_t tile, int64_t g, int half) {
  if (w.zeros.empty()) return _mm256_set1_epi32(1 << (w.bits - 1));
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(
      reinterpret_cast<const __m128i*>(w.zeros.data() + (tile * w.groups() + g) * kTileRows + 8 * half)));
}

// One group's contribution to a half tile's 8 outputs for activation entry `at` (row·groups +
// g): acc + float((dot << frac) − zero·Σq) · (step · xscale · 2^−frac), the scalar reference's
// order; every AVX2 kernel that sums the group exactly in 32 bits ends it here.
ACCULLM_TILES_AVX2_TARGET inline __m256 AccumulateGroup256(__m256i dot, __m256 ws, __m256i zero,
                                                           const Int8Activations& x, int64_t at, int frac,
                                                           float inv_frac, __m256 acc) {
  const __m256i d =
      _mm256_sub_epi32(_mm256_slli_epi32(dot, frac), _mm256_mullo_epi32(zero, _mm256_set1_epi32(x.sums[at])));
  const __m256 factor = _mm256_mul_ps(ws, _mm256_set1_ps(x.scales[at] * inv_frac));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), factor, acc);
}

// y[r, o0 .. o0+7] = acc[r] for the kM activation rows from r0, o0 = 16·tile + 8·half; the last
// tile's rows past `out` are not written.
template <int kM>
ACCULLM_TILES_AVX2_TARGET inline void StoreHalfTile(const LowBitTiles& w, const __m256 (&acc)[kM], int64_t tile,
                                                    int half, int64_t r0, float* y, int64_t y_stride) {
  const int64_t o0 = tile * kTileRows + 8 * half;
  for (int m = 0; m < kM; ++m) {
    float* dst = y + (r0 + m) * y_stride + o0;
    if (w.out - o0 >= 8) {
      _mm256_storeu_ps(dst, acc[m]);
    } else {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, acc[m]);
      for (int64_t i = 0; i < w.out - o0; ++i) dst[i] = tmp[i];
    }
  }
}

}  // namespace accullm::kernels::tiles_avx2
#endif
