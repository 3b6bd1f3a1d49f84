// The one low-bit matrix format: group-wise codes of 3 to 8 bits, shared by the quantizer
// (which encodes it), the pack reader and writer (which map it to tensors) and every kernel
// (which decodes it). A view: it owns nothing; the arrays live in a pack's mmap or in the
// quantizer's vectors.
//
// W[o, i] = (code[o, i] - zero[o, g]) * step[o, g], g = i / group.
// Codes are `bits` wide and packed as a little-endian bit stream per row: code i occupies bits
// [i·bits, (i+1)·bits) of the row, so at 4 bits column 2j is the low nibble of byte j and 2j+1
// the high one (row stride in·bits/8 bytes). Mixed-precision plans give each matrix the width
// its sensitivity earns (3 bits for the least sensitive linears, 5–8 for the most).
// Steps are F16 per group, or 8-bit codes per group relative to an F16 step per row
// (0.25 + 16/in bits per weight instead of 0.5 at group 32).
// Symmetric matrices have no zero array and use zero = 2^(bits-1) (4 bits: codes 0..15 →
// -8..7). Zero points may be fixed point with `zero_frac_bits` fraction bits (at most
// 8 - bits, so zero·2^frac fits the byte; 4 at 4 bits: the grid need not sit on multiples of
// the step — the offset is free, like llama.cpp's Q4_K min).
//
// It lives in kernels/ (not kernels/cpu/) because it is the format, not a CPU kernel: the
// quantizer, the pack code and any device's kernels read the same struct.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/dtype.h"

namespace accullm::kernels {

struct LowBitMatrix {
  int64_t out = 0, in = 0, group = 0;
  int bits = 4;                      // code width, kMinCodeBits..kMaxCodeBits
  const uint8_t* codes = nullptr;    // [out, in · bits / 8], the bit stream above
  const uint16_t* scales = nullptr;  // F16 [out, in / group]; null with 8-bit steps
  // 8-bit steps (when non-null, `scales` is unused): step[o, g] = row_scales[o] · code / 255.
  const uint8_t* scale_codes = nullptr;  // [out, in / group]
  const uint16_t* row_scales = nullptr;  // F16 [out]
  const uint8_t* zeros = nullptr;        // [out, in / group]; null = symmetric
  int zero_frac_bits = 0;                // zero = zeros[.] / 2^zero_frac_bits

  bool symmetric() const { return zeros == nullptr; }
  int64_t groups_per_row() const { return in / group; }
};

inline constexpr int kMinCodeBits = 3, kMaxCodeBits = 8;

// The zero-point resolution a `bits`-bit matrix gets when `requested` fraction bits are asked
// for: zeros reach 2^bits - 1, and zero·2^frac must fit a byte, so at most 8 - bits.
inline int ZeroFractionBits(int requested, int bits) { return requested < 8 - bits ? requested : 8 - bits; }

// Bytes of one row of `in` codes of `bits` bits (in is a multiple of 8: groups are >= 32).
inline int64_t CodeRowBytes(int64_t in, int bits) { return in * bits / 8; }

// Bytes the codes, steps and zeros occupy (what a kernel streams per pass over the matrix).
inline int64_t StoredBytes(const LowBitMatrix& m) {
  const int64_t groups = m.out * m.groups_per_row();
  const int64_t step_bytes = m.scale_codes != nullptr ? groups + m.out * 2 : groups * 2;
  return m.out * CodeRowBytes(m.in, m.bits) + step_bytes + (m.zeros != nullptr ? groups : 0);
}

// ---- Decoding ----

// Code i of a packed row (the bit-stream layout above).
inline int ReadCode(const uint8_t* row, int64_t i, int bits) {
  const int64_t bit = i * bits;
  const int shift = static_cast<int>(bit & 7);
  unsigned v = row[bit >> 3];
  if (shift + bits > 8) v |= static_cast<unsigned>(row[(bit >> 3) + 1]) << 8;
  return static_cast<int>((v >> shift) & ((1u << bits) - 1));
}

// The step an 8-bit step code stands for (shared by the decoder and the encoder, so both
// compute the very same float).
inline float U8GroupScale(float row_scale, uint8_t code) {
  return row_scale * static_cast<float>(code) * (1.f / 255.f);
}

// The zero point of group `index` (o · groups_per_row + g). Exact in float: an integer or a
// multiple of 1/16 below 256.
inline float ZeroPoint(const LowBitMatrix& m, int64_t index) {
  if (m.zeros == nullptr) return static_cast<float>(1 << (m.bits - 1));
  return static_cast<float>(m.zeros[index]) / static_cast<float>(1 << m.zero_frac_bits);
}

// The step of group `index` of row `row`.
inline float GroupScale(const LowBitMatrix& m, int64_t row, int64_t index) {
  if (m.scale_codes != nullptr) return U8GroupScale(F16ToF32(m.row_scales[row]), m.scale_codes[index]);
  return F16ToF32(m.scales[index]);
}

// Dequantizes row `o` into dst[in] (the scalar reference every kernel is checked against).
void DequantizeLowBitRow(const LowBitMatrix& m, int64_t o, float* dst);

// ---- Encoding ----

// Stores code i of a packed row (other codes unchanged).
inline void WriteCode(uint8_t* row, int64_t i, int bits, int code) {
  const int64_t bit = i * bits;
  const int shift = static_cast<int>(bit & 7);
  const unsigned mask = ((1u << bits) - 1) << shift, v = static_cast<unsigned>(code) << shift;
  uint8_t* p = row + (bit >> 3);
  p[0] = static_cast<uint8_t>((p[0] & ~mask) | (v & mask));
  if (shift + bits > 8) p[1] = static_cast<uint8_t>((p[1] & ~(mask >> 8)) | ((v & mask) >> 8));
}

// The step actually stored for a wanted step: F16 (row_scale <= 0), or an 8-bit code (*code)
// relative to the row's F16 step `row_scale` (steps beyond it are clipped to it). Returns the
// step the decoder will see.
inline float EncodeGroupScale(float want, float row_scale, int* code) {
  if (row_scale <= 0.f) return F16ToF32(F32ToF16(want));
  *code = std::clamp(static_cast<int>(std::lround(want / row_scale * 255.f)), 1, 255);
  return U8GroupScale(row_scale, static_cast<uint8_t>(*code));
}

// The stored zero byte of a group whose zero point was chosen with `frac` fraction bits
// (`stored` = zero·2^frac), in a matrix of `zero_frac_bits` (>= frac: a group holding an
// outlier column keeps an integer zero point, frac 0, in a fractional matrix).
inline uint8_t EncodeZeroPoint(int stored, int frac, int zero_frac_bits) {
  return static_cast<uint8_t>(stored << (zero_frac_bits - frac));
}

}  // namespace accullm::kernels
