#include "kernels/cpu/rms_norm.h"

#include <cmath>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/vector_exp_simd.h"

namespace accullm::kernels {

// The sum of squares runs in float, in index order, and eps is rounded to float first, as the
// PyTorch reference does (the fixture's logits are checked against it).
void RmsNormScalar(const float* x, const float* w, int64_t n, int64_t d, double eps, float* out) {
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * d;
    float* o = out + r * d;
    float ss = 0.f;
    for (int64_t i = 0; i < d; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(d) + static_cast<float>(eps));
    for (int64_t i = 0; i < d; ++i) o[i] = (xr[i] * inv) * w[i];
  }
}

#if ACCULLM_HAVE_X86_SIMD
namespace {

// The sum of squares in fixed-width lanes: four accumulators of 8 (AVX2) or 16 (AVX-512) lanes
// take elements i ≡ lane (mod 32 or 64) by FMA, a masked last block joins the first
// accumulator, then one fixed tree ((a0+a1)+(a2+a3), HorizontalSum). The order depends only
// on d, so a row's bits never depend on the batch, the thread count or which call ran it;
// float lanes sum a row more accurately than the reference's one chain (ops_test bounds the
// difference). The scaling is the reference's (x·inv)·w per element, same bits given inv.
__attribute__((target("avx2,fma"))) void RmsNormAvx2(const float* x, const float* w, int64_t n, int64_t d, double eps,
                                                     float* out) {
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * d;
    float* o = out + r * d;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= d; i += 32) {
      const __m256 v0 = _mm256_loadu_ps(xr + i), v1 = _mm256_loadu_ps(xr + i + 8);
      const __m256 v2 = _mm256_loadu_ps(xr + i + 16), v3 = _mm256_loadu_ps(xr + i + 24);
      a0 = _mm256_fmadd_ps(v0, v0, a0);
      a1 = _mm256_fmadd_ps(v1, v1, a1);
      a2 = _mm256_fmadd_ps(v2, v2, a2);
      a3 = _mm256_fmadd_ps(v3, v3, a3);
    }
    for (; i < d; i += 8) {
      const __m256 v = _mm256_maskload_ps(xr + i, simd_exp::TailMask8(d - i));  // lanes past d read 0
      a0 = _mm256_fmadd_ps(v, v, a0);
    }
    const float ss = simd_exp::HorizontalSum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(d) + static_cast<float>(eps));
    const __m256 vinv = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= d; i += 8)
      _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), vinv), _mm256_loadu_ps(w + i)));
    for (; i < d; ++i) o[i] = (xr[i] * inv) * w[i];
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) void RmsNormAvx512(const float* x, const float* w, int64_t n,
                                                                            int64_t d, double eps, float* out) {
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * d;
    float* o = out + r * d;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= d; i += 64) {
      const __m512 v0 = _mm512_loadu_ps(xr + i), v1 = _mm512_loadu_ps(xr + i + 16);
      const __m512 v2 = _mm512_loadu_ps(xr + i + 32), v3 = _mm512_loadu_ps(xr + i + 48);
      a0 = _mm512_fmadd_ps(v0, v0, a0);
      a1 = _mm512_fmadd_ps(v1, v1, a1);
      a2 = _mm512_fmadd_ps(v2, v2, a2);
      a3 = _mm512_fmadd_ps(v3, v3, a3);
    }
    for (; i < d; i += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(d - i >= 16 ? __mmask16{0xFFFF} : simd_exp::TailMask16(d - i), xr + i);
      a0 = _mm512_fmadd_ps(v, v, a0);
    }
    const float ss = simd_exp::HorizontalSum16(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(d) + static_cast<float>(eps));
    const __m512 vinv = _mm512_set1_ps(inv);
    for (i = 0; i + 16 <= d; i += 16)
      _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(xr + i), vinv), _mm512_loadu_ps(w + i)));
    for (; i < d; ++i) o[i] = (xr[i] * inv) * w[i];
  }
}

}  // namespace
#endif

void RmsNorm(const float* x, const float* w, int64_t n, int64_t d, double eps, float* out) {
  switch (ActiveIsa()) {
#if ACCULLM_HAVE_X86_SIMD
    case Isa::kAvx512: return RmsNormAvx512(x, w, n, d, eps, out);
    case Isa::kAvx2: return RmsNormAvx2(x, w, n, d, eps, out);
#else
    case Isa::kAvx512:
    case Isa::kAvx2:
#endif
    case Isa::kScalar: return RmsNormScalar(x, w, n, d, eps, out);
  }
}

}  // namespace accullm::kernels
