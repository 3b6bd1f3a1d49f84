// Row-wise INT8 weights: y = x · Wᵀ where W[o, i] = (q[o, i] - 128) * scale[o] (codes stored
// offset by 128 in bytes; one F16 step per output row). For the wide, sensitive matrices (the
// LM head) where 4 bits cost too much accuracy and 16 too many bytes. A scalar reference sits
// beside the AVX2 path; the entry point dispatches at run time.
#pragma once

#include <cstdint>

namespace accullm::kernels {

struct Int8Matrix {
  const uint8_t* codes = nullptr;    // [out, in], value + 128
  const uint16_t* scales = nullptr;  // F16 [out]
  int64_t in = 0;
};

// Dequantizes row `o` into dst[in] (scalar reference).
void DequantizeInt8Row(const Int8Matrix& m, int64_t o, float* dst);

// y[r * y_stride + o] = sum_i x[r * in + i] * W[o, i] for r < n, o in [o_begin, o_end).
void Int8LinearRows(const Int8Matrix& m, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                    int64_t y_stride);
void Int8LinearRowsScalar(const Int8Matrix& m, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                          int64_t y_stride);

}  // namespace accullm::kernels
