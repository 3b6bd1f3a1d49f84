// Group-wise INT4 weights: y = x · Wᵀ where W[o, i] = (q[o, i] - zero[o, g]) * scale[o, g],
// g = i / group. Two 4-bit codes per byte: column 2j in the low nibble, 2j+1 in the high one.
// Symmetric matrices have no zero array and use zero = 8 (codes 0..15 → -8..7). Zero points
// may be fixed point with `zero_frac_bits` fraction bits (4: the byte is zero·16, so the grid
// need not sit on multiples of the scale — the offset is free, like llama.cpp's Q4_K min).
// A scalar reference sits beside the AVX2 path; the entry point dispatches at run time.
#pragma once

#include <cstdint>

namespace accullm::kernels {

struct Int4Matrix {
  const uint8_t* codes = nullptr;    // [out, in / 2]
  const uint16_t* scales = nullptr;  // F16 [out, in / group]
  const uint8_t* zeros = nullptr;    // [out, in / group]; null = symmetric (zero 8)
  int64_t in = 0;
  int64_t group = 0;
  int zero_frac_bits = 0;            // zero = zeros[.] / 2^zero_frac_bits (0 or 4)
  // 8-bit scales (when non-null, `scales` is unused): scale[o, g] = row_scale[o] · code / 255,
  // 0.25 + 16/in bits per weight instead of 0.5 at group 32.
  const uint8_t* scale_codes = nullptr;  // [out, in / group]
  const uint16_t* row_scales = nullptr;  // F16 [out]
};

// The step of group `index` of row `o` (shared by the kernels and the quantizer, so both
// compute the very same float).
inline float U8GroupScale(float row_scale, uint8_t code) { return row_scale * static_cast<float>(code) * (1.f / 255.f); }

// Dequantizes row `o` into dst[in] (scalar reference).
void DequantizeInt4Row(const Int4Matrix& m, int64_t o, float* dst);

// y[r * y_stride + o] = sum_i x[r * in + i] * W[o, i] for r < n, o in [o_begin, o_end).
void Int4LinearRows(const Int4Matrix& m, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                    int64_t y_stride);
void Int4LinearRowsScalar(const Int4Matrix& m, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                          int64_t y_stride);

}  // namespace accullm::kernels
