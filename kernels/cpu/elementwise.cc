#include "kernels/cpu/elementwise.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/vector_exp_simd.h"

namespace accullm::kernels {

void SiluMulScalar(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];  // SiLU(gate) * up
  }
}

void AddInPlaceScalar(float* x, const float* delta, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += delta[i];
}

#if ACCULLM_HAVE_X86_SIMD
namespace {

// The scalar formula with the SIMD exp (vector_exp.h): within ~3e-7 relative of the reference.
// The tail runs through the same vector code on masked lanes, never a scalar loop, so an
// element's bits depend only on its own gate and up: the MLP may apply this to a slice of
// columns per thread chunk (model/linear_group.cc) and still get the bits of one whole call.
__attribute__((target("avx2,fma"))) inline __m256 SiluMul8(__m256 g, __m256 u) {
  const __m256 e = simd_exp::Exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
  return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

__attribute__((target("avx2,fma"))) void SiluMulAvx2(const float* gate, const float* up, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, SiluMul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n) {
    const __m256i mask = simd_exp::TailMask8(n - i);
    _mm256_maskstore_ps(out + i, mask, SiluMul8(_mm256_maskload_ps(gate + i, mask), _mm256_maskload_ps(up + i, mask)));
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) inline __m512 SiluMul16(__m512 g, __m512 u) {
  const __m512 e = simd_exp::Exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
  return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) void SiluMulAvx512(const float* gate, const float* up,
                                                                            int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, SiluMul16(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
  if (i < n) {
    const __mmask16 mask = simd_exp::TailMask16(n - i);
    _mm512_mask_storeu_ps(out + i, mask,
                          SiluMul16(_mm512_maskz_loadu_ps(mask, gate + i), _mm512_maskz_loadu_ps(mask, up + i)));
  }
}

// One add per element, as the reference: exact, so every level gives the reference's bits.
__attribute__((target("avx2"))) void AddInPlaceAvx2(float* x, const float* delta, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(delta + i)));
  for (; i < n; ++i) x[i] += delta[i];
}

__attribute__((target("avx512f"))) void AddInPlaceAvx512(float* x, const float* delta, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(x + i, _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(delta + i)));
  for (; i < n; ++i) x[i] += delta[i];
}

}  // namespace
#endif

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  switch (ActiveIsa()) {
#if ACCULLM_HAVE_X86_SIMD
    case Isa::kAvx512: return SiluMulAvx512(gate, up, n, out);
    case Isa::kAvx2: return SiluMulAvx2(gate, up, n, out);
#else
    case Isa::kAvx512:
    case Isa::kAvx2:
#endif
    case Isa::kScalar: return SiluMulScalar(gate, up, n, out);
  }
}

void AddInPlace(float* x, const float* delta, int64_t n) {
  switch (ActiveIsa()) {
#if ACCULLM_HAVE_X86_SIMD
    case Isa::kAvx512: return AddInPlaceAvx512(x, delta, n);
    case Isa::kAvx2: return AddInPlaceAvx2(x, delta, n);
#else
    case Isa::kAvx512:
    case Isa::kAvx2:
#endif
    case Isa::kScalar: return AddInPlaceScalar(x, delta, n);
  }
}

}  // namespace accullm::kernels
