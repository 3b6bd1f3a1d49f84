#include "kernels/cpu/int8_kernels.h"

#include <algorithm>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/linear_kernels.h"

namespace accullm::kernels {

void DequantizeInt8Row(const Int8Matrix& m, int64_t o, float* dst) {
  const float scale = F16ToF32(m.scales[o]);
  const uint8_t* codes = m.codes + o * m.in;
  for (int64_t i = 0; i < m.in; ++i) dst[i] = static_cast<float>(static_cast<int>(codes[i]) - 128) * scale;
}

void Int8LinearRowsScalar(const Int8Matrix& m, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                          int64_t y_stride) {
  DequantizedLinearRowsScalar(m.in, x, n, o_begin, o_end, y, y_stride,
                              [&](int64_t o, float* dst) { DequantizeInt8Row(m, o, dst); });
}

#if ACCULLM_HAVE_X86_SIMD
namespace {

// 8 codes per step: widen to int32, subtract the 128 offset, convert, scale.
__attribute__((target("avx2,fma,f16c"))) void DequantizeRowAvx2(const Int8Matrix& m, int64_t o, float* dst) {
  const __m256 scale = _mm256_set1_ps(F16ToF32(m.scales[o]));
  const __m256i offset = _mm256_set1_epi32(128);
  const uint8_t* codes = m.codes + o * m.in;
  int64_t i = 0;
  for (; i + 8 <= m.in; i += 8) {
    const __m128i c = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i));
    const __m256i v = _mm256_sub_epi32(_mm256_cvtepu8_epi32(c), offset);
    _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_cvtepi32_ps(v), scale));
  }
  const float s = F16ToF32(m.scales[o]);
  for (; i < m.in; ++i) dst[i] = static_cast<float>(static_cast<int>(codes[i]) - 128) * s;
}

}  // namespace

void Int8LinearRows(const Int8Matrix& m, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                    int64_t y_stride) {
  if (ActiveIsa() < Isa::kAvx2) {
    Int8LinearRowsScalar(m, x, n, o_begin, o_end, y, y_stride);
    return;
  }
  DequantizedLinearRows(m.in, x, n, o_begin, o_end, y, y_stride,
                        [&](int64_t o, float* dst) { DequantizeRowAvx2(m, o, dst); });
}
#else
void Int8LinearRows(const Int8Matrix& m, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                    int64_t y_stride) {
  Int8LinearRowsScalar(m, x, n, o_begin, o_end, y, y_stride);
}
#endif

}  // namespace accullm::kernels
