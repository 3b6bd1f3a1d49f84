#include "kernels/cpu/vector_exp.h"

#include <cmath>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/vector_exp_simd.h"

namespace accullm::kernels {

void VectorExpScalar(const float* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = std::exp(x[i]);
}

#if ACCULLM_HAVE_X86_SIMD
namespace {

__attribute__((target("avx2,fma"))) void VectorExpAvx2(const float* x, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, simd_exp::Exp8(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i mask = simd_exp::TailMask8(n - i);
    _mm256_maskstore_ps(out + i, mask, simd_exp::Exp8(_mm256_maskload_ps(x + i, mask)));
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) void VectorExpAvx512(const float* x, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, simd_exp::Exp16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 mask = simd_exp::TailMask16(n - i);
    _mm512_mask_storeu_ps(out + i, mask, simd_exp::Exp16(_mm512_maskz_loadu_ps(mask, x + i)));
  }
}

}  // namespace
#endif

void VectorExp(const float* x, int64_t n, float* out) {
  switch (ActiveIsa()) {
#if ACCULLM_HAVE_X86_SIMD
    case Isa::kAvx512: return VectorExpAvx512(x, n, out);
    case Isa::kAvx2: return VectorExpAvx2(x, n, out);
#else
    case Isa::kAvx512:
    case Isa::kAvx2:
#endif
    case Isa::kScalar: return VectorExpScalar(x, n, out);
  }
}

}  // namespace accullm::kernels
