#include "kernels/cpu/softmax.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/vector_exp_simd.h"

namespace accullm::kernels {

// Normalised by one multiply with 1/sum (not a division per element): the attention this came
// from did so, and the fixture's logits pin those bits.
void SoftmaxScalar(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, x[j]);
  float sum = 0.f;
  for (int64_t j = 0; j < n; ++j) {
    x[j] = std::exp(x[j] - mx);
    sum += x[j];
  }
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < n; ++j) x[j] *= inv;
}

#if ACCULLM_HAVE_X86_SIMD
namespace {

// The max is exact in any order; exp is vector_exp.h's; the sum runs in one register of lanes
// (masked tail lanes add 0) reduced by the fixed HorizontalSum tree, an order that depends on
// n only.
__attribute__((target("avx2,fma"))) void SoftmaxAvx2(float* x, int64_t n) {
  __m256 vmax = _mm256_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + j));
  float mx = -INFINITY;
  {
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, vmax);
    for (float l : lanes) mx = std::max(mx, l);
    for (; j < n; ++j) mx = std::max(mx, x[j]);
  }
  const __m256 vmx = _mm256_set1_ps(mx);
  __m256 sum = _mm256_setzero_ps();
  for (j = 0; j < n; j += 8) {
    const __m256i mask = simd_exp::TailMask8(std::min<int64_t>(8, n - j));
    const __m256 e =
        _mm256_and_ps(simd_exp::Exp8(_mm256_sub_ps(_mm256_maskload_ps(x + j, mask), vmx)), _mm256_castsi256_ps(mask));
    _mm256_maskstore_ps(x + j, mask, e);
    sum = _mm256_add_ps(sum, e);
  }
  const __m256 inv = _mm256_set1_ps(1.0f / simd_exp::HorizontalSum8(sum));
  for (j = 0; j + 8 <= n; j += 8) _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), inv));
  for (; j < n; ++j) x[j] *= _mm256_cvtss_f32(inv);
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) void SoftmaxAvx512(float* x, int64_t n) {
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + j));
  if (j < n)
    vmax = _mm512_mask_max_ps(vmax, simd_exp::TailMask16(n - j), vmax,
                              _mm512_maskz_loadu_ps(simd_exp::TailMask16(n - j), x + j));
  const float mx = _mm512_reduce_max_ps(vmax);
  const __m512 vmx = _mm512_set1_ps(mx);
  __m512 sum = _mm512_setzero_ps();
  for (j = 0; j < n; j += 16) {
    const __mmask16 mask = n - j >= 16 ? __mmask16{0xFFFF} : simd_exp::TailMask16(n - j);
    const __m512 e = _mm512_maskz_mov_ps(mask, simd_exp::Exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + j), vmx)));
    _mm512_mask_storeu_ps(x + j, mask, e);
    sum = _mm512_add_ps(sum, e);
  }
  const float inv = 1.0f / simd_exp::HorizontalSum16(sum);
  const __m512 vinv = _mm512_set1_ps(inv);
  for (j = 0; j + 16 <= n; j += 16) _mm512_storeu_ps(x + j, _mm512_mul_ps(_mm512_loadu_ps(x + j), vinv));
  for (; j < n; ++j) x[j] *= inv;
}

}  // namespace
#endif

void Softmax(float* x, int64_t n) {
  switch (ActiveIsa()) {
#if ACCULLM_HAVE_X86_SIMD
    case Isa::kAvx512: return SoftmaxAvx512(x, n);
    case Isa::kAvx2: return SoftmaxAvx2(x, n);
#else
    case Isa::kAvx512:
    case Isa::kAvx2:
#endif
    case Isa::kScalar: return SoftmaxScalar(x, n);
  }
}

}  // namespace accullm::kernels
