#include "kernels/cpu/low_bit_int8_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/dtype.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dot_bytes_avx512.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/low_bit_tiles_avx2.h"

namespace accullm::kernels {

namespace {

// The float a group contributes with, shared by every variant: scale[o,g] · (xscale · 2^−frac).
inline float GroupFactor(float weight_scale, float x_scale, float inv_frac) {
  return weight_scale * (x_scale * inv_frac);
}

}  // namespace

void LowBitInt8RowsScalar(const LowBitMatrix& m, const Int8Activations& x, int64_t o_begin, int64_t o_end, float* y,
                          int64_t y_stride) {
  const int64_t groups = m.in / m.group;
  const int frac = m.zeros != nullptr ? m.zero_frac_bits : 0;
  const float inv_frac = 1.f / static_cast<float>(1 << frac);
  const int64_t row_bytes = CodeRowBytes(m.in, m.bits);
  for (int64_t r = 0; r < x.rows; ++r) {
    const int8_t* xq = x.row(r);
    for (int64_t o = o_begin; o < o_end; ++o) {
      const uint8_t* codes = m.codes + o * row_bytes;
      float acc = 0.f;
      for (int64_t g = 0; g < groups; ++g) {
        int32_t dot = 0;
        for (int64_t i = g * m.group; i < (g + 1) * m.group; ++i) dot += ReadCode(codes, i, m.bits) * xq[i];
        const int32_t zero = m.zeros != nullptr ? m.zeros[o * groups + g] : (1 << (m.bits - 1));
        const int32_t d = dot * (1 << frac) - zero * x.sums[r * groups + g];
        const float ws = m.scale_codes != nullptr
                             ? U8GroupScale(F16ToF32(m.row_scales[o]), m.scale_codes[o * groups + g])
                             : F16ToF32(m.scales[o * groups + g]);
        acc = std::fma(static_cast<float>(d), GroupFactor(ws, x.scales[r * groups + g], inv_frac), acc);
      }
      y[r * y_stride + o] = acc;
    }
  }
}

#if ACCULLM_HAVE_X86_SIMD
// GCC 12's AVX-512 conversion intrinsics pass an "undefined" register as the masked-off
// source and then warn that it may be uninitialised (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace {

using tiles_avx2::AccumulateGroup256;
using tiles_avx2::Load32;
using tiles_avx2::TileZeros256;
using tiles_avx2::WeightScales256;

// ---- AVX-512 VNNI: one tile (16 rows) per register, kM activation rows at once. ----

#define ACCULLM_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")))

ACCULLM_AVX512_TARGET inline __m512 WeightScales512(const LowBitTiles& w, int64_t tile, int64_t g) {
  const size_t at = static_cast<size_t>((tile * w.groups() + g) * kTileRows);
  if (w.scale_codes.empty())
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.scales.data() + at)));
  // As U8GroupScale: (row scale · code) · (1/255).
  const __m512 codes = _mm512_cvtepi32_ps(
      _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scale_codes.data() + at))));
  const __m512 rows = _mm512_loadu_ps(w.row_scales.data() + tile * kTileRows);
  return _mm512_mul_ps(_mm512_mul_ps(rows, codes), _mm512_set1_ps(1.f / 255.f));
}

// The zero points of `tile`'s rows in group g (or the symmetric grid's middle).
ACCULLM_AVX512_TARGET inline __m512i TileZeros512(const LowBitTiles& w, int64_t tile, int64_t g) {
  if (w.zeros.empty()) return _mm512_set1_epi32(1 << (w.bits - 1));
  return _mm512_cvtepu8_epi32(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.zeros.data() + (tile * w.groups() + g) * kTileRows)));
}

// One group's contribution to a tile's 16 outputs for activation row entry `at` (row·groups
// + g): acc + float((dot << frac) − zero·Σq) · (step · xscale · 2^−frac), the scalar
// reference's order. Every AVX-512 kernel ends a group here, so they all give the same bits.
ACCULLM_AVX512_TARGET inline __m512 AccumulateGroup512(__m512i dot, __m512 ws, __m512i zero, const Int8Activations& x,
                                                       int64_t at, int frac, float inv_frac, __m512 acc) {
  const __m512i d = _mm512_sub_epi32(_mm512_slli_epi32(dot, static_cast<unsigned>(frac)),
                                     _mm512_mullo_epi32(zero, _mm512_set1_epi32(x.sums[at])));
  const __m512 factor = _mm512_mul_ps(ws, _mm512_set1_ps(x.scales[at] * inv_frac));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), factor, acc);
}

// How a tile's codes are laid out (low_bit_tiles.h), the kernels' template argument.
constexpr int kNibbleCodes = 4, kPlaneCodes5 = 5, kPlaneCodes6 = 6, kByteCodes = 8;

// Chunk c of a group whose codes start at `group_codes` (`chunks` chunks): the codes of
// columns 8c+j (lo) and 8c+4+j (hi) at every position 4·r + j, one per byte. For nibbles the
// low and high nibbles; for bit planes the same with the high plane's bits put on top.
template <int kCodes>
ACCULLM_AVX512_TARGET inline void ChunkCodes512(const uint8_t* group_codes, int64_t chunks, int64_t c, __m512i& lo,
                                                __m512i& hi) {
  const __m512i low_nibbles = _mm512_set1_epi8(0x0F);
  const __m512i v = _mm512_loadu_si512(group_codes + c * kTileChunkBytes);
  lo = _mm512_and_si512(v, low_nibbles);
  hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low_nibbles);
  const uint8_t* plane = group_codes + chunks * kTileChunkBytes + c * 16 * (kCodes - 4);
  if constexpr (kCodes == kPlaneCodes6) {
    // Position p's 4 high bits: nibble p / 32 of byte p mod 32; bits 0-1 go on lo, 2-3 on hi
    // (a 16-bit shift carries the neighbour byte's bits in, the mask drops them).
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(plane));
    const __m512i bits = _mm512_inserti64x4(_mm512_castsi256_si512(h), _mm256_srli_epi16(h, 4), 1);
    lo = _mm512_or_si512(lo, _mm512_and_si512(_mm512_slli_epi16(bits, 4), _mm512_set1_epi8(0x30)));
    hi = _mm512_or_si512(hi, _mm512_and_si512(_mm512_slli_epi16(bits, 2), _mm512_set1_epi8(0x30)));
  } else if constexpr (kCodes == kPlaneCodes5) {
    // Position p's 2 high bits: bits 2·(p / 16), +1 of byte p mod 16; 128-bit lane k holds
    // positions 16k.. and shifts by 2k.
    const __m512i h = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(plane)));
    const __m512i bits =
        _mm512_srlv_epi16(h, _mm512_set_epi64(0x0006000600060006, 0x0006000600060006, 0x0004000400040004,
                                              0x0004000400040004, 0x0002000200020002, 0x0002000200020002, 0, 0));
    lo = _mm512_or_si512(lo, _mm512_and_si512(_mm512_slli_epi16(bits, 4), _mm512_set1_epi8(0x10)));
    hi = _mm512_or_si512(hi, _mm512_and_si512(_mm512_slli_epi16(bits, 3), _mm512_set1_epi8(0x10)));
  }
}

template <int kM, int kCodes>
ACCULLM_AVX512_TARGET void TileAvx512(const LowBitTiles& w, const Int8Activations& x, int64_t tile, int64_t r0,
                                      float* y, int64_t y_stride) {
  const int64_t groups = w.groups(), chunks = w.group / w.chunk_columns();
  const int frac = w.zero_frac_bits;
  const float inv_frac = 1.f / static_cast<float>(1 << frac);
  const uint8_t* tile_codes = w.codes.data() + tile * w.tile_code_bytes();
  __m512 acc[kM];
  for (int m = 0; m < kM; ++m) acc[m] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* codes = tile_codes + g * w.group_code_bytes();
    // Two independent accumulator chains per row (low and high nibbles, or even and odd
    // chunks): vpdpbusd's latency, not bandwidth, bounded one chain at decode. Integer sums,
    // so splitting them changes no bit.
    __m512i dot[kM], dot2[kM];
    for (int m = 0; m < kM; ++m) dot[m] = dot2[m] = _mm512_setzero_si512();
    const int8_t* xg[kM];
    for (int m = 0; m < kM; ++m) xg[m] = x.row(r0 + m) + g * w.group;
    if constexpr (kCodes != kByteCodes) {
      for (int64_t c = 0; c < chunks; ++c) {
        __m512i lo, hi;
        ChunkCodes512<kCodes>(codes, chunks, c, lo, hi);
        for (int m = 0; m < kM; ++m) {
          dot[m] = DotBytes512(dot[m], lo, _mm512_set1_epi32(Load32(xg[m] + 8 * c)));
          dot2[m] = DotBytes512(dot2[m], hi, _mm512_set1_epi32(Load32(xg[m] + 8 * c + 4)));
        }
      }
    } else {  // chunks is group / 4: even
      for (int64_t c = 0; c < chunks; c += 2) {
        const __m512i v0 = _mm512_loadu_si512(codes + c * kTileChunkBytes);
        const __m512i v1 = _mm512_loadu_si512(codes + (c + 1) * kTileChunkBytes);
        for (int m = 0; m < kM; ++m) {
          dot[m] = DotBytes512(dot[m], v0, _mm512_set1_epi32(Load32(xg[m] + 4 * c)));
          dot2[m] = DotBytes512(dot2[m], v1, _mm512_set1_epi32(Load32(xg[m] + 4 * c + 4)));
        }
      }
    }
    const __m512 ws = WeightScales512(w, tile, g);
    const __m512i zero = TileZeros512(w, tile, g);
    for (int m = 0; m < kM; ++m)
      acc[m] = AccumulateGroup512(_mm512_add_epi32(dot[m], dot2[m]), ws, zero, x, (r0 + m) * groups + g, frac, inv_frac,
                                  acc[m]);
  }
  const int64_t o0 = tile * kTileRows;
  const int64_t valid = w.out - o0 < kTileRows ? w.out - o0 : kTileRows;
  const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1);
  for (int m = 0; m < kM; ++m) _mm512_mask_storeu_ps(y + (r0 + m) * y_stride + o0, mask, acc[m]);
}

// Decode, kK tiles at once (far apart in memory): several independent
// address streams per thread keep more lines in flight than one, the per-core limit of a
// memory-bound loop. bench/decode_stream_bench, one core, 12 interleaved repetitions on a
// loaded machine: 11.8 GB/s with one stream, 16.8 with two, 19.7 with three, 18.4 with four
// (read probe 22.1); end to end, decode with 3 or 4 streams beat 2 (kDecodeStreams). Each
// tile's sums and epilogue are TileAvx512<1>'s, so the same bits.
constexpr int kDecodeStreams = 4;

template <int kK, int kCodes>
ACCULLM_AVX512_TARGET void TilesOneRowAvx512(const LowBitTiles& w, const Int8Activations& x, const int64_t* tiles,
                                             float* y) {
  const int64_t groups = w.groups(), chunks = w.group / w.chunk_columns();
  const int frac = w.zero_frac_bits;
  const float inv_frac = 1.f / static_cast<float>(1 << frac);
  const uint8_t* tile_codes[kK];
  for (int k = 0; k < kK; ++k) tile_codes[k] = w.codes.data() + tiles[k] * w.tile_code_bytes();
  __m512 acc[kK];
  for (int k = 0; k < kK; ++k) acc[k] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512i dot[kK], dot2[kK];
    for (int k = 0; k < kK; ++k) dot[k] = dot2[k] = _mm512_setzero_si512();
    const int8_t* xg = x.row(0) + g * w.group;
    const uint8_t* codes[kK];
    for (int k = 0; k < kK; ++k) codes[k] = tile_codes[k] + g * w.group_code_bytes();
    if constexpr (kCodes != kByteCodes) {
      for (int64_t c = 0; c < chunks; ++c) {
        const __m512i xlo = _mm512_set1_epi32(Load32(xg + 8 * c)), xhi = _mm512_set1_epi32(Load32(xg + 8 * c + 4));
        for (int k = 0; k < kK; ++k) {
          __m512i lo, hi;
          ChunkCodes512<kCodes>(codes[k], chunks, c, lo, hi);
          dot[k] = DotBytes512(dot[k], lo, xlo);
          dot2[k] = DotBytes512(dot2[k], hi, xhi);
        }
      }
    } else {  // byte codes, as TileAvx512: even and odd chunks on two chains
      for (int64_t c = 0; c < chunks; c += 2) {
        const __m512i x0 = _mm512_set1_epi32(Load32(xg + 4 * c)), x1 = _mm512_set1_epi32(Load32(xg + 4 * c + 4));
        for (int k = 0; k < kK; ++k) {
          dot[k] = DotBytes512(dot[k], _mm512_loadu_si512(codes[k] + c * kTileChunkBytes), x0);
          dot2[k] = DotBytes512(dot2[k], _mm512_loadu_si512(codes[k] + (c + 1) * kTileChunkBytes), x1);
        }
      }
    }
    for (int k = 0; k < kK; ++k)  // activation row 0: entry g
      acc[k] = AccumulateGroup512(_mm512_add_epi32(dot[k], dot2[k]), WeightScales512(w, tiles[k], g),
                                  TileZeros512(w, tiles[k], g), x, g, frac, inv_frac, acc[k]);
  }
  for (int k = 0; k < kK; ++k) {
    const int64_t o0 = tiles[k] * kTileRows;
    const int64_t valid = w.out - o0 < kTileRows ? w.out - o0 : kTileRows;
    _mm512_mask_storeu_ps(y + o0, static_cast<__mmask16>((1u << valid) - 1), acc[k]);
  }
}

template <int kCodes>
ACCULLM_AVX512_TARGET void RowsAvx512(const LowBitTiles& w, const Int8Activations& x, int64_t t0, int64_t t1, float* y,
                                      int64_t y_stride) {
  if (x.rows == 1) {
    // The range in kDecodeStreams parts walked side by side, the remainder tile by tile.
    const int64_t part = (t1 - t0) / kDecodeStreams;
    for (int64_t t = t0; t < t0 + part; ++t) {
      int64_t ts[kDecodeStreams];
      for (int64_t i = 0; i < kDecodeStreams; ++i) ts[i] = t + i * part;
      TilesOneRowAvx512<kDecodeStreams, kCodes>(w, x, ts, y);
    }
    for (int64_t t = t0 + kDecodeStreams * part; t < t1; ++t) TileAvx512<1, kCodes>(w, x, t, 0, y, y_stride);
    return;
  }
  for (int64_t t = t0; t < t1; ++t) {
    int64_t r = 0;
    for (; r + 4 <= x.rows; r += 4) TileAvx512<4, kCodes>(w, x, t, r, y, y_stride);
    switch (x.rows - r) {
      case 3: TileAvx512<3, kCodes>(w, x, t, r, y, y_stride); break;
      case 2: TileAvx512<2, kCodes>(w, x, t, r, y, y_stride); break;
      case 1: TileAvx512<1, kCodes>(w, x, t, r, y, y_stride); break;
      default: break;
    }
  }
}

// ---- AVX2: a tile as two halves of 8 rows (bytes 0..31 and 32..63 of every chunk). ----

#define ACCULLM_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

// Σ over each 4-byte lane of u8 × s8, exact for u8 ≤ 127 (a pair sums to ≤ 2·127·127 < 2^15).
ACCULLM_AVX2_TARGET inline __m256i DotLanes(__m256i u8, __m256i s8) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u8, s8), _mm256_set1_epi16(1));
}

// As ChunkCodes512 for one half tile (positions 32·half ..): bit-plane codes of chunk c.
template <int kCodes>
ACCULLM_AVX2_TARGET inline void HalfChunkPlaneCodes256(const uint8_t* group_codes, int64_t chunks, int64_t c, int half,
                                                       __m256i& lo, __m256i& hi) {
  const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group_codes + c * kTileChunkBytes + 32 * half));
  lo = _mm256_and_si256(v, low_nibbles);
  hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_nibbles);
  const uint8_t* plane = group_codes + chunks * kTileChunkBytes + c * 16 * (kCodes - 4);
  if constexpr (kCodes == kPlaneCodes6) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(plane));
    const __m256i bits = half == 0 ? h : _mm256_srli_epi16(h, 4);
    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(bits, 4), _mm256_set1_epi8(0x30)));
    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(bits, 2), _mm256_set1_epi8(0x30)));
  } else {
    // 32-bit shifts move no wanted bit across bytes: byte k keeps its bits s..s+1, s <= 6.
    const __m256i h = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(plane)));
    const __m256i bits = _mm256_srlv_epi32(
        h, half == 0 ? _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2) : _mm256_setr_epi32(4, 4, 4, 4, 6, 6, 6, 6));
    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(bits, 4), _mm256_set1_epi8(0x10)));
    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(bits, 3), _mm256_set1_epi8(0x10)));
  }
}

// kCodes: kNibbleCodes, a plane layout, or kByteCodes (then kEightBit: 8-bit codes, which
// overflow vpmaddubsw's pairs and are split in two nibbles).
template <int kM, int kCodes, bool kEightBit>
ACCULLM_AVX2_TARGET void HalfTileAvx2(const LowBitTiles& w, const Int8Activations& x, int64_t tile, int half,
                                      int64_t r0, float* y, int64_t y_stride) {
  const int64_t groups = w.groups(), chunks = w.group / w.chunk_columns();
  const int frac = w.zero_frac_bits;
  const float inv_frac = 1.f / static_cast<float>(1 << frac);
  const uint8_t* tile_codes = w.codes.data() + tile * w.tile_code_bytes();
  const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
  __m256 acc[kM];
  for (int m = 0; m < kM; ++m) acc[m] = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m256i dot[kM];
    for (int m = 0; m < kM; ++m) dot[m] = _mm256_setzero_si256();
    const int8_t* xg[kM];
    for (int m = 0; m < kM; ++m) xg[m] = x.row(r0 + m) + g * w.group;
    const uint8_t* codes = tile_codes + g * w.group_code_bytes() + 32 * half;
    if constexpr (kCodes == kPlaneCodes5 || kCodes == kPlaneCodes6) {
      // Codes <= 63 times |q| <= 127: a pair sums to <= 16002, exact in 16 bits.
      for (int64_t c = 0; c < chunks; ++c) {
        __m256i lo, hi;
        HalfChunkPlaneCodes256<kCodes>(codes - 32 * half, chunks, c, half, lo, hi);
        for (int m = 0; m < kM; ++m) {
          dot[m] = _mm256_add_epi32(dot[m], DotLanes(lo, _mm256_set1_epi32(Load32(xg[m] + 8 * c))));
          dot[m] = _mm256_add_epi32(dot[m], DotLanes(hi, _mm256_set1_epi32(Load32(xg[m] + 8 * c + 4))));
        }
      }
    } else if constexpr (kCodes == kNibbleCodes) {
      // Nibble codes (<= 15) times |q| <= 127: a vpmaddubsw pair sums to <= 3810, so the low
      // and high nibbles of kChunksPerWiden chunks (8 pairs, <= 30480) add up exactly in 16
      // bits before one vpmaddwd widens them: half the instructions of widening every product.
      constexpr int64_t kChunksPerWiden = 4;
      for (int64_t c0 = 0; c0 < chunks; c0 += kChunksPerWiden) {
        __m256i pairs[kM];
        for (int m = 0; m < kM; ++m) pairs[m] = _mm256_setzero_si256();
        const int64_t c1 = c0 + kChunksPerWiden < chunks ? c0 + kChunksPerWiden : chunks;
        for (int64_t c = c0; c < c1; ++c, codes += kTileChunkBytes) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes));
          const __m256i lo = _mm256_and_si256(v, low_nibbles);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_nibbles);
          for (int m = 0; m < kM; ++m) {
            pairs[m] = _mm256_add_epi16(pairs[m], _mm256_maddubs_epi16(lo, _mm256_set1_epi32(Load32(xg[m] + 8 * c))));
            pairs[m] =
                _mm256_add_epi16(pairs[m], _mm256_maddubs_epi16(hi, _mm256_set1_epi32(Load32(xg[m] + 8 * c + 4))));
          }
        }
        for (int m = 0; m < kM; ++m)
          dot[m] = _mm256_add_epi32(dot[m], _mm256_madd_epi16(pairs[m], _mm256_set1_epi16(1)));
      }
    } else {
      for (int64_t c = 0; c < chunks; ++c, codes += kTileChunkBytes) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes));
        if constexpr (kEightBit) {
          const __m256i lo = _mm256_and_si256(v, low_nibbles);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_nibbles);
          for (int m = 0; m < kM; ++m) {
            // 8-bit codes overflow vpmaddubsw's 16-bit pairs: code = 16·hi + lo, both exact.
            const __m256i xs = _mm256_set1_epi32(Load32(xg[m] + 4 * c));
            dot[m] =
                _mm256_add_epi32(dot[m], _mm256_add_epi32(DotLanes(lo, xs), _mm256_slli_epi32(DotLanes(hi, xs), 4)));
          }
        } else {
          for (int m = 0; m < kM; ++m)
            dot[m] = _mm256_add_epi32(dot[m], DotLanes(v, _mm256_set1_epi32(Load32(xg[m] + 4 * c))));
        }
      }
    }
    const __m256 ws = WeightScales256(w, tile, g, half);
    const __m256i zero = TileZeros256(w, tile, g, half);
    for (int m = 0; m < kM; ++m)
      acc[m] = AccumulateGroup256(dot[m], ws, zero, x, (r0 + m) * groups + g, frac, inv_frac, acc[m]);
  }
  tiles_avx2::StoreHalfTile<kM>(w, acc, tile, half, r0, y, y_stride);
}

// Decode (one activation row) over nibble codes: both halves of every chunk in one pass, so
// each 64-byte line is consumed by the loads that miss on it (two passes of half a line each
// kept half as many bytes in flight per instruction window). The same integer sums and the
// same epilogue per half as HalfTileAvx2, so the same bits.
ACCULLM_AVX2_TARGET void TileNibblesOneRowAvx2(const LowBitTiles& w, const Int8Activations& x, int64_t tile, int64_t r,
                                               float* y, int64_t y_stride) {
  const int64_t groups = w.groups(), chunks = w.group / w.chunk_columns();
  const int frac = w.zero_frac_bits;
  const float inv_frac = 1.f / static_cast<float>(1 << frac);
  const uint8_t* codes = w.codes.data() + tile * w.tile_code_bytes();
  const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
  __m256 acc[2][1] = {{_mm256_setzero_ps()}, {_mm256_setzero_ps()}};
  for (int64_t g = 0; g < groups; ++g) {
    const int8_t* xg = x.row(r) + g * w.group;
    __m256i dot[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    constexpr int64_t kChunksPerWiden = 4;  // as HalfTileAvx2: 8 pairs of <= 3810 fit 16 bits
    for (int64_t c0 = 0; c0 < chunks; c0 += kChunksPerWiden) {
      __m256i pairs[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
      const int64_t c1 = c0 + kChunksPerWiden < chunks ? c0 + kChunksPerWiden : chunks;
      for (int64_t c = c0; c < c1; ++c, codes += kTileChunkBytes) {
        const __m256i xlo = _mm256_set1_epi32(Load32(xg + 8 * c)), xhi = _mm256_set1_epi32(Load32(xg + 8 * c + 4));
        for (int half = 0; half < 2; ++half) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 32 * half));
          const __m256i lo = _mm256_and_si256(v, low_nibbles);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_nibbles);
          pairs[half] = _mm256_add_epi16(pairs[half], _mm256_maddubs_epi16(lo, xlo));
          pairs[half] = _mm256_add_epi16(pairs[half], _mm256_maddubs_epi16(hi, xhi));
        }
      }
      for (int half = 0; half < 2; ++half)
        dot[half] = _mm256_add_epi32(dot[half], _mm256_madd_epi16(pairs[half], _mm256_set1_epi16(1)));
    }
    for (int half = 0; half < 2; ++half)
      acc[half][0] = AccumulateGroup256(dot[half], WeightScales256(w, tile, g, half), TileZeros256(w, tile, g, half), x,
                                        r * groups + g, frac, inv_frac, acc[half][0]);
  }
  tiles_avx2::StoreHalfTile<1>(w, acc[0], tile, 0, r, y, y_stride);
  if (tile * kTileRows + 8 < w.out) tiles_avx2::StoreHalfTile<1>(w, acc[1], tile, 1, r, y, y_stride);
}

template <int kCodes, bool kEightBit>
ACCULLM_AVX2_TARGET void RowsAvx2(const LowBitTiles& w, const Int8Activations& x, int64_t t0, int64_t t1, float* y,
                                  int64_t y_stride) {
  if constexpr (kCodes == kNibbleCodes) {
    if (x.rows == 1) {
      for (int64_t t = t0; t < t1; ++t) TileNibblesOneRowAvx2(w, x, t, 0, y, y_stride);
      return;
    }
  }
  for (int64_t t = t0; t < t1; ++t) {
    for (int half = 0; half < 2; ++half) {
      if (t * kTileRows + 8 * half >= w.out) break;
      int64_t r = 0;
      for (; r + 4 <= x.rows; r += 4) HalfTileAvx2<4, kCodes, kEightBit>(w, x, t, half, r, y, y_stride);
      switch (x.rows - r) {
        case 3: HalfTileAvx2<3, kCodes, kEightBit>(w, x, t, half, r, y, y_stride); break;
        case 2: HalfTileAvx2<2, kCodes, kEightBit>(w, x, t, half, r, y, y_stride); break;
        case 1: HalfTileAvx2<1, kCodes, kEightBit>(w, x, t, half, r, y, y_stride); break;
        default: break;
      }
    }
  }
}

}  // namespace

bool LowBitInt8RowsAvx2(const LowBitTiles& w, const Int8Activations& x, int64_t t0, int64_t t1, float* y,
                        int64_t y_stride) {
  if (DetectedIsa() < Isa::kAvx2) return false;
  if (w.nibbles()) RowsAvx2<kNibbleCodes, false>(w, x, t0, t1, y, y_stride);
  else if (w.planes && w.bits == 5) RowsAvx2<kPlaneCodes5, false>(w, x, t0, t1, y, y_stride);
  else if (w.planes) RowsAvx2<kPlaneCodes6, false>(w, x, t0, t1, y, y_stride);
  else if (w.bits == 8) RowsAvx2<kByteCodes, true>(w, x, t0, t1, y, y_stride);
  else RowsAvx2<kByteCodes, false>(w, x, t0, t1, y, y_stride);
  return true;
}

bool LowBitInt8RowsAvx512(const LowBitTiles& w, const Int8Activations& x, int64_t t0, int64_t t1, float* y,
                          int64_t y_stride) {
  if (DetectedIsa() < Isa::kAvx512) return false;
  if (w.nibbles()) RowsAvx512<kNibbleCodes>(w, x, t0, t1, y, y_stride);
  else if (w.planes && w.bits == 5) RowsAvx512<kPlaneCodes5>(w, x, t0, t1, y, y_stride);
  else if (w.planes) RowsAvx512<kPlaneCodes6>(w, x, t0, t1, y, y_stride);
  else RowsAvx512<kByteCodes>(w, x, t0, t1, y, y_stride);
  return true;
}

#else
bool LowBitInt8RowsAvx2(const LowBitTiles&, const Int8Activations&, int64_t, int64_t, float*, int64_t) { return false; }
bool LowBitInt8RowsAvx512(const LowBitTiles&, const Int8Activations&, int64_t, int64_t, float*, int64_t) {
  return false;
}
#endif

void LowBitInt8Rows(const LowBitMatrix& m, const LowBitTiles& w, const Int8Activations& x, int64_t t0, int64_t t1,
                    float* y, int64_t y_stride) {
  const Isa isa = ActiveIsa();
  if (isa >= Isa::kAvx512 && LowBitInt8RowsAvx512(w, x, t0, t1, y, y_stride)) return;
  if (isa >= Isa::kAvx2 && LowBitInt8RowsAvx2(w, x, t0, t1, y, y_stride)) return;
  LowBitInt8RowsScalar(m, x, t0 * kTileRows, std::min(m.out, t1 * kTileRows), y, y_stride);
}

}  // namespace accullm::kernels
