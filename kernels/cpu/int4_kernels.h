// Group-wise low-bit weights: y = x · Wᵀ where W[o, i] = (q[o, i] - zero[o, g]) * scale[o, g],
// g = i / group. Codes are `bits` wide (3..8; 4 by default, hence the names) and packed as a
// little-endian bit stream per row: code i occupies bits [i·bits, (i+1)·bits) of the row, so
// at 4 bits column 2j is the low nibble of byte j and 2j+1 the high one. Mixed precision
// plans give each matrix the width its sensitivity earns (3 bits for the least sensitive
// linears, 5–8 for the most), at row stride in·bits/8 bytes.
// Symmetric matrices have no zero array and use zero = 2^(bits-1) (4 bits: codes 0..15 →
// -8..7). Zero points may be fixed point with `zero_frac_bits` fraction bits (at most
// 8 - bits, so zero·2^frac fits the byte; 4 at 4 bits: the grid need not sit on multiples of
// the scale — the offset is free, like llama.cpp's Q4_K min).
// A scalar reference sits beside the AVX2 path; the entry point dispatches at run time.
#pragma once

#include <cstdint>

namespace accullm::kernels {

struct Int4Matrix {
  const uint8_t* codes = nullptr;    // [out, in · bits / 8]
  const uint16_t* scales = nullptr;  // F16 [out, in / group]
  const uint8_t* zeros = nullptr;    // [out, in / group]; null = symmetric (zero 8)
  int64_t in = 0;
  int64_t group = 0;
  int zero_frac_bits = 0;            // zero = zeros[.] / 2^zero_frac_bits (0 or 4)
  // 8-bit scales (when non-null, `scales` is unused): scale[o, g] = row_scale[o] · code / 255,
  // 0.25 + 16/in bits per weight instead of 0.5 at group 32.
  const uint8_t* scale_codes = nullptr;  // [out, in / group]
  const uint16_t* row_scales = nullptr;  // F16 [out]
  int bits = 4;                          // code width, 3..8
};

inline constexpr int kMinCodeBits = 3, kMaxCodeBits = 8;

// The zero-point resolution a `bits`-bit matrix gets when `requested` fraction bits are asked
// for: zeros reach 2^bits - 1, and zero·2^frac must fit a byte, so at most 8 - bits.
inline int ZeroFractionBits(int requested, int bits) { return requested < 8 - bits ? requested : 8 - bits; }

// Bytes of one row of `in` codes of `bits` bits (in is a multiple of 8: groups are >= 32).
inline int64_t CodeRowBytes(int64_t in, int bits) { return in * bits / 8; }

// Code i of a packed row (the bit-stream layout above).
inline int ReadCode(const uint8_t* row, int64_t i, int bits) {
  const int64_t bit = i * bits;
  const int shift = static_cast<int>(bit & 7);
  unsigned v = row[bit >> 3];
  if (shift + bits > 8) v |= static_cast<unsigned>(row[(bit >> 3) + 1]) << 8;
  return static_cast<int>((v >> shift) & ((1u << bits) - 1));
}

// Stores code i of a packed row (other codes unchanged).
inline void WriteCode(uint8_t* row, int64_t i, int bits, int code) {
  const int64_t bit = i * bits;
  const int shift = static_cast<int>(bit & 7);
  const unsigned mask = ((1u << bits) - 1) << shift, v = static_cast<unsigned>(code) << shift;
  uint8_t* p = row + (bit >> 3);
  p[0] = static_cast<uint8_t>((p[0] & ~mask) | (v & mask));
  if (shift + bits > 8) p[1] = static_cast<uint8_t>((p[1] & ~(mask >> 8)) | ((v & mask) >> 8));
}

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
