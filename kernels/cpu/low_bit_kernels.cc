#include "kernels/cpu/low_bit_kernels.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/linear_kernels.h"

namespace accullm::kernels {

void LowBitLinearRowsScalar(const LowBitMatrix& m, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                            int64_t y_stride) {
  DequantizedLinearRowsScalar(m.in, x, n, o_begin, o_end, y, y_stride,
                              [&](int64_t o, float* dst) { DequantizeLowBitRow(m, o, dst); });
}

#if ACCULLM_HAVE_X86_SIMD
namespace {

// The `kBytes`-byte little-endian value at p, from register-sized loads: a copy of odd size
// into a stack word reloaded as 64 bits would stall on store forwarding every 8 codes.
template <int kBytes>
inline uint64_t LoadLittleEndian(const uint8_t* p) {
  if constexpr (kBytes >= 4) {
    uint32_t low;
    std::memcpy(&low, p, 4);
    if constexpr (kBytes == 8) {
      uint32_t high;
      std::memcpy(&high, p + 4, 4);
      return low | (uint64_t{high} << 32);
    } else {
      return low | (LoadLittleEndian<kBytes - 4>(p + 4) << 32);
    }
  } else if constexpr (kBytes >= 2) {
    uint16_t low;
    std::memcpy(&low, p, 2);
    if constexpr (kBytes == 2) return low;
    else return low | (uint64_t{p[2]} << 16);
  } else {
    return p[0];
  }
}

// Other widths: 8 codes always fill exactly kBits whole bytes, read as one little-endian word. Codes 0-3 sit in its low
// 4·kBits bits, 4-7 in the next 4·kBits, so each half is broadcast to four 32-bit lanes and shifted per lane (0, kBits,
// 2·kBits, 3·kBits), masked, widened to float and scaled: 8 weights per step, no scalar loop.
template <int kBits>
__attribute__((target("avx2,fma,f16c"))) void DequantizeRowBitsAvx2(const LowBitMatrix& m, int64_t o, float* dst) {
  const int64_t groups = m.in / m.group;
  const uint8_t* codes = m.codes + o * CodeRowBytes(m.in, kBits);
  const __m256i shifts = _mm256_setr_epi32(0, kBits, 2 * kBits, 3 * kBits, 0, kBits, 2 * kBits, 3 * kBits);
  const __m256i mask = _mm256_set1_epi32((1 << kBits) - 1);
  for (int64_t g = 0; g < groups; ++g) {
    const __m256 scale = _mm256_set1_ps(GroupScale(m, o, o * groups + g));
    const __m256 zero = _mm256_set1_ps(ZeroPoint(m, o * groups + g));
    for (int64_t i = g * m.group; i < (g + 1) * m.group; i += 8) {
      const uint64_t word = LoadLittleEndian<kBits>(codes + i / 8 * kBits);
      const __m256i halves = _mm256_set_m128i(_mm_set1_epi32(static_cast<int>(word >> (4 * kBits))),
                                              _mm_set1_epi32(static_cast<int>(word)));
      const __m256i q = _mm256_and_si256(_mm256_srlv_epi32(halves, shifts), mask);
      _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(q), zero), scale));
    }
  }
}

// Dequantizes one 4-bit row with AVX2: 16 bytes → 32 codes per step (groups are multiples of 32).
__attribute__((target("avx2,fma,f16c"))) void DequantizeRowAvx2(const LowBitMatrix& m, int64_t o, float* dst) {
  switch (m.bits) {
    case 3: return DequantizeRowBitsAvx2<3>(m, o, dst);
    case 5: return DequantizeRowBitsAvx2<5>(m, o, dst);
    case 6: return DequantizeRowBitsAvx2<6>(m, o, dst);
    case 7: return DequantizeRowBitsAvx2<7>(m, o, dst);
    case 8: return DequantizeRowBitsAvx2<8>(m, o, dst);
    default: break;  // 4 bits: below
  }
  const int64_t groups = m.in / m.group;
  const uint8_t* codes = m.codes + o * (m.in / 2);
  const __m128i low_mask = _mm_set1_epi8(0x0F);
  for (int64_t g = 0; g < groups; ++g) {
    const __m256 scale = _mm256_set1_ps(GroupScale(m, o, o * groups + g));
    const __m256 zero = _mm256_set1_ps(ZeroPoint(m, o * groups + g));
    for (int64_t i = g * m.group; i < (g + 1) * m.group; i += 32) {
      const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i / 2));
      const __m128i lo = _mm_and_si128(packed, low_mask);
      const __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), low_mask);
      // Interleave so codes come out in column order: lo0 hi0 lo1 hi1 ...
      const __m128i first = _mm_unpacklo_epi8(lo, hi);
      const __m128i second = _mm_unpackhi_epi8(lo, hi);
      const __m128i parts[4] = {first, _mm_srli_si128(first, 8), second, _mm_srli_si128(second, 8)};
      for (int k = 0; k < 4; ++k) {
        const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[k]));
        _mm256_storeu_ps(dst + i + 8 * k, _mm256_mul_ps(_mm256_sub_ps(q, zero), scale));
      }
    }
  }
}

}  // namespace

void LowBitLinearRows(const LowBitMatrix& m, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                      int64_t y_stride) {
  if (ActiveIsa() < Isa::kAvx2 || m.group % 32 != 0) {
    LowBitLinearRowsScalar(m, x, n, o_begin, o_end, y, y_stride);
    return;
  }
  DequantizedLinearRows(m.in, x, n, o_begin, o_end, y, y_stride,
                        [&](int64_t o, float* dst) { DequantizeRowAvx2(m, o, dst); });
}
#else
void LowBitLinearRows(const LowBitMatrix& m, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                      int64_t y_stride) {
  LowBitLinearRowsScalar(m, x, n, o_begin, o_end, y, y_stride);
}
#endif

}  // namespace accullm::kernels
