#include "kernels/cpu/int8_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/linear_kernels.h"

namespace accullm::kernels {

void DequantizeInt8Row(const Int8Matrix& m, int64_t o, float* dst) {
  const float scale = F16ToF32(m.scales[o]);
  const uint8_t* codes = m.codes + o * m.in;
  for (int64_t i = 0; i < m.in; ++i) dst[i] = static_cast<float>(static_cast<int>(codes[i]) - 128) * scale;
}

void Int8LinearRowsScalar(const Int8Matrix& m, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                          int64_t y_stride) {
  std::vector<float> row(static_cast<size_t>(m.in));
  for (int64_t o = o_begin; o < o_end; ++o) {
    DequantizeInt8Row(m, o, row.data());
    for (int64_t r = 0; r < n; ++r) {
      float acc = 0.f;
      for (int64_t i = 0; i < m.in; ++i) acc += x[r * m.in + i] * row[i];
      y[r * y_stride + o] = acc;
    }
  }
}

#if defined(__x86_64__)
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
  if (!CpuHasAvx2Fma()) {
    Int8LinearRowsScalar(m, x, n, o_begin, o_end, y, y_stride);
    return;
  }
  // As for INT4: dequantize a few rows into cache-resident scratch, then the FP32 kernel.
  constexpr int64_t kRows = 8;
  thread_local std::vector<float> scratch;
  if (scratch.size() < static_cast<size_t>(kRows * m.in)) scratch.resize(static_cast<size_t>(kRows * m.in));
  for (int64_t o0 = o_begin; o0 < o_end; o0 += kRows) {
    const int64_t rows = std::min(kRows, o_end - o0);
    for (int64_t k = 0; k < rows; ++k) DequantizeRowAvx2(m, o0 + k, scratch.data() + k * m.in);
    LinearRows(DType::kF32, scratch.data(), m.in, x, n, 0, rows, y + o0, y_stride);
  }
}
#else
void Int8LinearRows(const Int8Matrix& m, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                    int64_t y_stride) {
  Int8LinearRowsScalar(m, x, n, o_begin, o_end, y, y_stride);
}
#endif

}  // namespace accullm::kernels
