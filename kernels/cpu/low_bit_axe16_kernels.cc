#include "kernels/cpu/low_bit_axe16_kernels.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/low_bit_int8_kernels.h"
#include "kernels/cpu/low_bit_tiles_avx2.h"

namespace accullm::kernels {

namespace {

// The zero point of tile row r (0..15) in group g, as an integer (format checked first).
inline int TileZero(const LowBitTiles& w, int64_t tile, int64_t g, int64_t r) {
  return w.zeros.empty() ? 1 << (w.bits - 1) : w.zeros[static_cast<size_t>((tile * w.groups() + g) * kTileRows + r)];
}

}  // namespace

std::string Axe16FormatRefusal(const LowBitTiles& w) {
  if (w.bits > 7) return "codes wider than 7 bits (vpmaddubsw's 16-bit pairs would saturate)";
  if (w.planes) return "5- or 6-bit codes in bit planes (this kernel reads nibbles or bytes: TileOptions::planes off)";
  if (!w.zeros.empty() && w.zero_frac_bits != 0) return "fractional zero points (code − zero is not an integer)";
  if (w.group % 8 != 0) return "group is not a multiple of 8";
  return "";
}

int64_t Axe16WorstLaneL1(const LowBitTiles& w, int64_t tile_begin, int64_t tile_end) {
  const int64_t groups = w.groups(), chunks = w.group / w.chunk_columns();
  int64_t worst = 0;
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    const int64_t rows = std::min<int64_t>(kTileRows, w.out - tile * kTileRows);
    for (int64_t g = 0; g < groups; ++g) {
      const uint8_t* group_codes = w.codes.data() + tile * w.tile_code_bytes() + g * chunks * kTileChunkBytes;
      for (int64_t r = 0; r < rows; ++r) {
        const int zero = TileZero(w, tile, g, r);
        int64_t lane[2] = {0, 0};
        for (int64_t c = 0; c < chunks; ++c) {
          const uint8_t* b = group_codes + c * kTileChunkBytes + 4 * r;
          for (int j = 0; j < 4; ++j) {
            if (w.nibbles()) lane[j >> 1] += std::abs((b[j] & 15) - zero) + std::abs((b[j] >> 4) - zero);
            else lane[j >> 1] += std::abs(b[j] - zero);
          }
        }
        worst = std::max({worst, lane[0], lane[1]});
      }
    }
  }
  return worst;
}

bool Axe16Fits(const LowBitTiles& w) {
  return Axe16FormatRefusal(w).empty() && Axe16WorstLaneL1(w, 0, w.tiles) <= kAxe16MaxLaneL1;
}

Axe16Overflows CountAxe16Overflows(const LowBitMatrix& m, const Int8Activations& x, int64_t o_begin, int64_t o_end) {
  const int64_t groups = m.in / m.group, row_bytes = CodeRowBytes(m.in, m.bits);
  Axe16Overflows n;
  for (int64_t r = 0; r < x.rows; ++r) {
    const int8_t* xq = x.row(r);
    for (int64_t o = o_begin; o < o_end; ++o) {
      const uint8_t* codes = m.codes + o * row_bytes;
      for (int64_t g = 0; g < groups; ++g) {
        const int zero = m.zeros != nullptr ? m.zeros[o * groups + g] >> m.zero_frac_bits : 1 << (m.bits - 1);
        int64_t lane[2] = {0, 0};
        for (int64_t i = g * m.group; i < (g + 1) * m.group; ++i)
          lane[(i >> 1) & 1] += static_cast<int64_t>(ReadCode(codes, i, m.bits) - zero) * xq[i];
        for (int64_t s : lane) {
          n.out_of_range += (s < -32768 || s > 32767) ? 1 : 0;
          n.largest = std::max(n.largest, std::abs(s));
        }
        n.lane_sums += 2;
      }
    }
  }
  return n;
}

// ---- Activation lane sums ----

namespace {

inline int32_t PackLanes(int32_t s0, int32_t s1) {
  return static_cast<int32_t>(static_cast<uint16_t>(s0) | (static_cast<uint32_t>(static_cast<uint16_t>(s1)) << 16));
}

void LaneSumsScalar(const Int8Activations& x, int64_t r, int32_t* out) {
  const int8_t* xr = x.row(r);
  for (int64_t b = 0; b < x.blocks(); ++b) {
    int32_t s[2] = {0, 0};
    for (int64_t i = b * x.block; i < (b + 1) * x.block; ++i) s[(i >> 1) & 1] += xr[i];
    out[b] = PackLanes(s[0], s[1]);
  }
}

#if ACCULLM_HAVE_X86_SIMD
// vpmaddubsw with ones adds columns 2e and 2e+1 into 16-bit element e: even elements are lane
// 0, odd ones lane 1, so adding the 8 dwords as 16-bit pairs leaves (s0, s1) in one dword.
// Only used mod 2^16 (vpmullw), so 16-bit wrap-around would be harmless (and cannot happen
// below groups of 512).
__attribute__((target("avx2"))) void LaneSumsAvx2(const Int8Activations& x, int64_t r, int32_t* out) {
  const int8_t* xr = x.row(r);
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t b = 0; b < x.blocks(); ++b) {
    __m256i acc = _mm256_setzero_si256();
    for (int64_t i = b * x.block; i < (b + 1) * x.block; i += 32)
      acc = _mm256_add_epi16(acc,
                             _mm256_maddubs_epi16(ones, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr + i))));
    __m128i s = _mm_add_epi16(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi16(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi16(s, _mm_shuffle_epi32(s, 0xB1));
    out[b] = _mm_cvtsi128_si32(s);
  }
}
#endif

}  // namespace

void Axe16LaneSums(const Int8Activations& x, std::vector<int32_t>& out) {
  out.resize(static_cast<size_t>(x.rows * x.blocks()));
  for (int64_t r = 0; r < x.rows; ++r) {
    int32_t* dst = out.data() + r * x.blocks();
#if ACCULLM_HAVE_X86_SIMD
    if (x.block % 32 == 0 && DetectedIsa() >= Isa::kAvx2) {
      LaneSumsAvx2(x, r, dst);
      continue;
    }
#endif
    LaneSumsScalar(x, r, dst);
  }
}

void Axe16LaneSumsScalar(const Int8Activations& x, std::vector<int32_t>& out) {
  out.resize(static_cast<size_t>(x.rows * x.blocks()));
  for (int64_t r = 0; r < x.rows; ++r) LaneSumsScalar(x, r, out.data() + r * x.blocks());
}

// ---- Mode and verify totals ----

namespace {

Axe16Mode ModeFromEnvironment() {
  const char* v = std::getenv("ACCULLM_AXE16");
  if (v == nullptr || *v == '\0') return Axe16Mode::kOn;
  const std::string_view s(v);
  if (s == "off") return Axe16Mode::kOff;
  if (s == "on") return Axe16Mode::kOn;
  if (s == "verify") return Axe16Mode::kVerify;
  std::fprintf(stderr, "ACCULLM_AXE16=%s not understood (off, on or verify): on\n", v);
  return Axe16Mode::kOn;
}

std::atomic<int>& ModeSlot() {
  static std::atomic<int> mode{static_cast<int>(ModeFromEnvironment())};
  return mode;
}

std::atomic<int64_t> verified_lane_sums{0}, verified_out_of_range{0}, verified_largest{0};

}  // namespace

Axe16Mode ActiveAxe16Mode() { return static_cast<Axe16Mode>(ModeSlot().load(std::memory_order_relaxed)); }

Axe16Mode SetAxe16ModeForTesting(Axe16Mode mode) {
  return static_cast<Axe16Mode>(ModeSlot().exchange(static_cast<int>(mode)));
}

Axe16Overflows Axe16VerifyTotals() {
  return {verified_lane_sums.load(), verified_out_of_range.load(), verified_largest.load()};
}

// ---- AVX2 ----

#if ACCULLM_HAVE_X86_SIMD
namespace {

#define ACCULLM_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

using tiles_avx2::Load32;
using tiles_avx2::WeightScales256;

// kM activation rows × one half tile (8 output rows: bytes 0..31 or 32..63 of every chunk).
template <int kM, bool kNibbles, Axe16Variant kVariant>
ACCULLM_AVX2_TARGET void HalfTileAxe16(const LowBitTiles& w, const Int8Activations& x, const int32_t* lane_sums,
                                       int64_t tile, int half, int64_t r0, float* y, int64_t y_stride) {
  const int64_t groups = w.groups(), chunks = w.group / w.chunk_columns();
  const uint8_t* codes = w.codes.data() + tile * w.tile_code_bytes() + 32 * half;
  const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[kM];
  for (int m = 0; m < kM; ++m) acc[m] = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    // Each output row's zero point in its 32-bit lane.
    const __m256i zero32 = w.zeros.empty() ? _mm256_set1_epi32(1 << (w.bits - 1))
                                           : _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(
                                                 w.zeros.data() + (tile * groups + g) * kTileRows + 8 * half)));
    __m256i lanes[kM];
    for (int m = 0; m < kM; ++m) lanes[m] = _mm256_setzero_si256();
    const int8_t* xg[kM];
    for (int m = 0; m < kM; ++m) xg[m] = x.row(r0 + m) + g * w.group;
    if constexpr (kVariant == Axe16Variant::kWrapped) {
      for (int64_t c = 0; c < chunks; ++c, codes += kTileChunkBytes) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes));
        if constexpr (kNibbles) {
          const __m256i lo = _mm256_and_si256(v, low_nibbles);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_nibbles);
          for (int m = 0; m < kM; ++m) {
            lanes[m] = _mm256_add_epi16(lanes[m], _mm256_maddubs_epi16(lo, _mm256_set1_epi32(Load32(xg[m] + 8 * c))));
            lanes[m] =
                _mm256_add_epi16(lanes[m], _mm256_maddubs_epi16(hi, _mm256_set1_epi32(Load32(xg[m] + 8 * c + 4))));
          }
        } else {
          for (int m = 0; m < kM; ++m)
            lanes[m] = _mm256_add_epi16(lanes[m], _mm256_maddubs_epi16(v, _mm256_set1_epi32(Load32(xg[m] + 4 * c))));
        }
      }
      // The zero point in both 16-bit halves, times each lane's Σ x: the centring, mod 2^16.
      const __m256i zero16 = _mm256_or_si256(zero32, _mm256_slli_epi32(zero32, 16));
      for (int m = 0; m < kM; ++m) {
        const __m256i zx = _mm256_mullo_epi16(zero16, _mm256_set1_epi32(lane_sums[(r0 + m) * groups + g]));
        lanes[m] = _mm256_sub_epi16(lanes[m], zx);
      }
    } else {
      // The zero point in each of the row's 4 bytes; centred codes v = code − zero fit int8.
      const __m256i zero8 = _mm256_mullo_epi32(zero32, _mm256_set1_epi32(0x01010101));
      for (int64_t c = 0; c < chunks; ++c, codes += kTileChunkBytes) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes));
        if constexpr (kNibbles) {
          const __m256i lo = _mm256_sub_epi8(_mm256_and_si256(v, low_nibbles), zero8);
          const __m256i hi = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(v, 4), low_nibbles), zero8);
          for (int m = 0; m < kM; ++m) {
            const __m256i x0 = _mm256_set1_epi32(Load32(xg[m] + 8 * c));
            const __m256i x1 = _mm256_set1_epi32(Load32(xg[m] + 8 * c + 4));
            lanes[m] = _mm256_add_epi16(lanes[m], _mm256_maddubs_epi16(_mm256_abs_epi8(x0), _mm256_sign_epi8(lo, x0)));
            lanes[m] = _mm256_add_epi16(lanes[m], _mm256_maddubs_epi16(_mm256_abs_epi8(x1), _mm256_sign_epi8(hi, x1)));
          }
        } else {
          const __m256i centred = _mm256_sub_epi8(v, zero8);
          for (int m = 0; m < kM; ++m) {
            const __m256i xs = _mm256_set1_epi32(Load32(xg[m] + 4 * c));
            lanes[m] =
                _mm256_add_epi16(lanes[m], _mm256_maddubs_epi16(_mm256_abs_epi8(xs), _mm256_sign_epi8(centred, xs)));
          }
        }
      }
    }
    // Widen once per group: d = D_0 + D_1 per output row, the 32-bit kernel's integer.
    const __m256 ws = WeightScales256(w, tile, g, half);
    for (int m = 0; m < kM; ++m) {
      const int64_t at = (r0 + m) * groups + g;
      const __m256i d = _mm256_madd_epi16(lanes[m], ones);
      // As the 32-bit kernel: factor = ws · (xscale · 2^−frac), 2^−frac = 1 (integer zeros).
      const __m256 factor = _mm256_mul_ps(ws, _mm256_set1_ps(x.scales[at]));
      acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), factor, acc[m]);
    }
  }
  tiles_avx2::StoreHalfTile<kM>(w, acc, tile, half, r0, y, y_stride);
}

template <bool kNibbles, Axe16Variant kVariant>
ACCULLM_AVX2_TARGET void RowsAxe16(const LowBitTiles& w, const Int8Activations& x, const int32_t* lane_sums, int64_t t0,
                                   int64_t t1, float* y, int64_t y_stride) {
  for (int64_t t = t0; t < t1; ++t) {
    for (int half = 0; half < 2; ++half) {
      if (t * kTileRows + 8 * half >= w.out) break;
      int64_t r = 0;
      for (; r + 4 <= x.rows; r += 4) HalfTileAxe16<4, kNibbles, kVariant>(w, x, lane_sums, t, half, r, y, y_stride);
      switch (x.rows - r) {
        case 3: HalfTileAxe16<3, kNibbles, kVariant>(w, x, lane_sums, t, half, r, y, y_stride); break;
        case 2: HalfTileAxe16<2, kNibbles, kVariant>(w, x, lane_sums, t, half, r, y, y_stride); break;
        case 1: HalfTileAxe16<1, kNibbles, kVariant>(w, x, lane_sums, t, half, r, y, y_stride); break;
        default: break;
      }
    }
  }
}

}  // namespace

bool LowBitInt8RowsAxe16Avx2(const LowBitTiles& w, const Int8Activations& x, const int32_t* lane_sums, int64_t t0,
                             int64_t t1, float* y, int64_t y_stride, Axe16Variant variant) {
  if (DetectedIsa() < Isa::kAvx2) return false;
  if (w.nibbles()) {
    if (variant == Axe16Variant::kWrapped)
      RowsAxe16<true, Axe16Variant::kWrapped>(w, x, lane_sums, t0, t1, y, y_stride);
    else RowsAxe16<true, Axe16Variant::kSignedWeights>(w, x, lane_sums, t0, t1, y, y_stride);
  } else {
    if (variant == Axe16Variant::kWrapped)
      RowsAxe16<false, Axe16Variant::kWrapped>(w, x, lane_sums, t0, t1, y, y_stride);
    else RowsAxe16<false, Axe16Variant::kSignedWeights>(w, x, lane_sums, t0, t1, y, y_stride);
  }
  return true;
}

#else
bool LowBitInt8RowsAxe16Avx2(const LowBitTiles&, const Int8Activations&, const int32_t*, int64_t, int64_t, float*,
                             int64_t, Axe16Variant) {
  return false;
}
#endif

bool Axe16KernelActive() { return ActiveAxe16Mode() != Axe16Mode::kOff && ActiveIsa() == Isa::kAvx2; }

void LowBitInt8RowsAxe16(const LowBitMatrix& m, const LowBitTiles& w, const Int8Activations& x,
                         const int32_t* lane_sums, int64_t t0, int64_t t1, float* y, int64_t y_stride) {
  const Axe16Mode mode = ActiveAxe16Mode();
  if (!Axe16KernelActive() || !LowBitInt8RowsAxe16Avx2(w, x, lane_sums, t0, t1, y, y_stride)) {
    LowBitInt8Rows(m, w, x, t0, t1, y, y_stride);
    return;
  }
  if (mode == Axe16Mode::kVerify) {
    // Until the totals are exported as a metric, verify mode reports them on stderr at exit.
    static const struct ReportAtExit {
      ~ReportAtExit() {
        const Axe16Overflows t = Axe16VerifyTotals();
        std::fprintf(stderr, "ACCULLM_AXE16=verify: %lld lane sums checked, %lld outside int16, largest |sum| %lld\n",
                     static_cast<long long>(t.lane_sums), static_cast<long long>(t.out_of_range),
                     static_cast<long long>(t.largest));
      }
    } report;
    (void)report;
    const Axe16Overflows n = CountAxe16Overflows(m, x, t0 * kTileRows, std::min(m.out, t1 * kTileRows));
    verified_lane_sums += n.lane_sums;
    verified_out_of_range += n.out_of_range;
    int64_t seen = verified_largest.load();
    while (n.largest > seen && !verified_largest.compare_exchange_weak(seen, n.largest)) {
    }
  }
}

}  // namespace accullm::kernels
