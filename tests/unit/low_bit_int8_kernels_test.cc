// The integer-dot low-bit kernels against their scalar reference: every code width, both
// zero-point kinds, both scale kinds, odd shapes; bit-identical results (the integer part is
// exact and the float part runs in one order), batch invariance, and closeness to the FP32
// product they approximate.
#include "kernels/cpu/low_bit_int8_kernels.h"

#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/isa.h"

namespace accullm::kernels {
namespace {

struct Case {
  int bits;
  int64_t group, in, out, n;
  bool zeros;        // asymmetric, with the widest fraction bits the width allows
  bool scale_codes;  // 8-bit scales + row scales instead of F16 scales
};

std::string CaseName(const Case& c) {
  return std::to_string(c.bits) + "bit_g" + std::to_string(c.group) + "_in" + std::to_string(c.in) + "_out" +
         std::to_string(c.out) + "_n" + std::to_string(c.n) + (c.zeros ? "_zeros" : "_sym") +
         (c.scale_codes ? "_u8scales" : "_f16scales");
}
void PrintTo(const Case& c, std::ostream* os) { *os << CaseName(c); }

struct OwnedMatrix {
  std::vector<uint8_t> codes, zeros, scale_codes;
  std::vector<uint16_t> scales, row_scales;
  LowBitMatrix m;
};

OwnedMatrix RandomMatrix(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  OwnedMatrix w;
  const int64_t groups = c.in / c.group;
  w.codes.assign(static_cast<size_t>(c.out * CodeRowBytes(c.in, c.bits)), 0);
  std::uniform_int_distribution<int> code(0, (1 << c.bits) - 1);
  for (int64_t o = 0; o < c.out; ++o)
    for (int64_t i = 0; i < c.in; ++i) WriteCode(w.codes.data() + o * CodeRowBytes(c.in, c.bits), i, c.bits, code(rng));
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  const int frac = ZeroFractionBits(4, c.bits);
  if (c.zeros) {
    std::uniform_int_distribution<int> zero(0, ((1 << c.bits) - 1) << frac);
    for (int64_t i = 0; i < c.out * groups; ++i) w.zeros.push_back(static_cast<uint8_t>(std::min(255, zero(rng))));
  }
  if (c.scale_codes) {
    std::uniform_int_distribution<int> sc(0, 255);
    for (int64_t i = 0; i < c.out * groups; ++i) w.scale_codes.push_back(static_cast<uint8_t>(sc(rng)));
    for (int64_t o = 0; o < c.out; ++o) w.row_scales.push_back(F32ToF16(scale(rng)));
  } else {
    for (int64_t i = 0; i < c.out * groups; ++i) w.scales.push_back(F32ToF16(scale(rng)));
  }
  w.m.codes = w.codes.data();
  w.m.scales = c.scale_codes ? nullptr : w.scales.data();
  w.m.zeros = c.zeros ? w.zeros.data() : nullptr;
  w.m.out = c.out;
  w.m.in = c.in;
  w.m.group = c.group;
  w.m.zero_frac_bits = c.zeros ? frac : 0;
  w.m.scale_codes = c.scale_codes ? w.scale_codes.data() : nullptr;
  w.m.row_scales = c.scale_codes ? w.row_scales.data() : nullptr;
  w.m.bits = c.bits;
  return w;
}

std::vector<float> RandomActivations(int64_t n, int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(n * in));
  for (auto& v : x) v = normal(rng);
  if (!x.empty()) x[3 % x.size()] = 40.f;  // a large channel, as real activations have
  return x;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class LowBitInt8KernelsTest : public ::testing::TestWithParam<Case> {};

TEST_P(LowBitInt8KernelsTest, EveryVariantMatchesTheScalarReferenceBitForBit) {
  const Case c = GetParam();
  OwnedMatrix w = RandomMatrix(c, 7);
  ASSERT_EQ(LowBitTilesRefusal(w.m), "");
  const std::vector<float> x = RandomActivations(c.n, c.in, 11);
  Int8Activations xq;
  QuantizeInt8BlocksScalar(x.data(), c.n, c.in, c.group, nullptr, xq);
  std::vector<float> want(static_cast<size_t>(c.n * c.out), -1.f);
  LowBitInt8RowsScalar(w.m, xq, 0, c.out, want.data(), c.out);

  // Both layouts of 5- and 6-bit codes (bit planes, the default, and a byte per code).
  for (bool planes : {true, false}) {
    const LowBitTiles tiles = TileLowBitMatrix(w.m, {.planes = planes});
    EXPECT_EQ(tiles.planes, planes && (c.bits == 5 || c.bits == 6));
    EXPECT_EQ(LowBitTilesBytes(w.m, {.planes = planes}), tiles.bytes());  // what bench counts before tiling
    std::vector<float> got(want.size(), -1.f);
    for (Isa isa : SupportedIsas()) {  // the dispatched entry at every level this CPU runs
      ScopedIsaForTesting level(isa);
      std::fill(got.begin(), got.end(), -1.f);
      LowBitInt8Rows(w.m, tiles, xq, 0, tiles.tiles, got.data(), c.out);
      EXPECT_TRUE(SameBits(got, want)) << "dispatched at " << IsaName(isa) << (planes ? ", planes" : "");
    }
    for (auto variant : {&LowBitInt8RowsAvx2, &LowBitInt8RowsAvx512}) {
      std::fill(got.begin(), got.end(), -1.f);
      if (!variant(tiles, xq, 0, tiles.tiles, got.data(), c.out)) continue;  // not on this CPU
      EXPECT_TRUE(SameBits(got, want)) << (variant == &LowBitInt8RowsAvx2 ? "avx2" : "avx512")
                                       << (planes ? ", planes" : "");
    }
  }
}

TEST_P(LowBitInt8KernelsTest, ARowsResultDoesNotDependOnItsBatchOrTheTileSplit) {
  const Case c = GetParam();
  OwnedMatrix w = RandomMatrix(c, 3);
  const LowBitTiles tiles = TileLowBitMatrix(w.m);
  const std::vector<float> x = RandomActivations(c.n, c.in, 5);
  Int8Activations batch;
  QuantizeInt8Blocks(x.data(), c.n, c.in, c.group, nullptr, batch);
  std::vector<float> together(static_cast<size_t>(c.n * c.out));
  LowBitInt8Rows(w.m, tiles, batch, 0, tiles.tiles, together.data(), c.out);
  for (int64_t r = 0; r < c.n; ++r) {
    Int8Activations one;
    QuantizeInt8Blocks(x.data() + r * c.in, 1, c.in, c.group, nullptr, one);
    std::vector<float> alone(static_cast<size_t>(c.out));
    for (int64_t t = 0; t < tiles.tiles; ++t)
      LowBitInt8Rows(w.m, tiles, one, t, t + 1, alone.data(), c.out);  // tile by tile
    EXPECT_EQ(std::memcmp(alone.data(), together.data() + r * c.out, alone.size() * sizeof(float)), 0) << "row " << r;
  }
}

TEST_P(LowBitInt8KernelsTest, ApproximatesTheFloatProduct) {
  const Case c = GetParam();
  OwnedMatrix w = RandomMatrix(c, 9);
  const std::vector<float> x = RandomActivations(c.n, c.in, 13);
  Int8Activations xq;
  QuantizeInt8Blocks(x.data(), c.n, c.in, c.group, nullptr, xq);
  std::vector<float> y(static_cast<size_t>(c.n * c.out));
  LowBitInt8Rows(w.m, TileLowBitMatrix(w.m), xq, 0, (c.out + kTileRows - 1) / kTileRows, y.data(), c.out);
  std::vector<float> row(static_cast<size_t>(c.in));
  for (int64_t o = 0; o < c.out; ++o) {
    DequantizeLowBitRow(w.m, o, row.data());
    for (int64_t r = 0; r < c.n; ++r) {
      double exact = 0, bound = 0, magnitude = 0;
      for (int64_t i = 0; i < c.in; ++i) {
        exact += static_cast<double>(row[i]) * x[r * c.in + i];
        magnitude += std::fabs(static_cast<double>(row[i]) * x[r * c.in + i]);
        // INT8 rounding moves x_i by at most half its block's step (block max |x| / 127).
        double block_max = 0;
        const int64_t b0 = i / c.group * c.group;
        for (int64_t j = b0; j < b0 + c.group; ++j) block_max = std::max(block_max, std::fabs(double{x[r * c.in + j]}));
        bound += std::fabs(static_cast<double>(row[i])) * block_max / 127.0 / 2.0;
      }
      // That rounding bound, plus float rounding of the group sums (1e-5 of Σ|w·x|): a wrong
      // zero point, scale or column order errs by far more.
      EXPECT_NEAR(y[r * c.out + o], exact, bound + 1e-5 * magnitude + 1e-6) << "row " << r << " output " << o;
    }
  }
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (int bits = 3; bits <= 8; ++bits)
    for (bool zeros : {false, true})
      for (bool scale_codes : {false, true}) cases.push_back({bits, 32, 96, 37, 5, zeros, scale_codes});
  cases.push_back({4, 64, 256, 16, 1, false, false});
  cases.push_back({4, 128, 512, 33, 9, true, false});
  cases.push_back({4, 32, 64, 1, 4, true, true});
  cases.push_back({8, 64, 192, 50, 2, true, false});
  cases.push_back({3, 128, 256, 17, 3, false, true});
  // One activation row (decode: the AVX2 one-pass kernel over both half tiles): the last tile
  // with an empty second half (37 = 2·16 + 5), a partial one (45), groups of 4 and 16 chunks.
  for (int bits : {3, 4})
    for (int64_t out : {37, 45}) cases.push_back({bits, 32, 96, out, 1, bits == 4, bits == 3});
  cases.push_back({4, 128, 256, 45, 1, true, false});
  // Enough tiles for the AVX-512 decode kernel's side-by-side streams plus a remainder
  // (10 tiles: 4 streams of 2, then 2 alone).
  cases.push_back({4, 32, 64, 149, 1, true, false});
  cases.push_back({3, 64, 128, 150, 1, false, true});
  for (int bits : {5, 6, 8}) cases.push_back({bits, 32, 64, 149, 1, bits != 6, bits == 6});
  // Bit planes at groups of 8 and 16 chunks and with activation rows past one tile of four.
  for (int bits : {5, 6}) {
    cases.push_back({bits, 64, 192, 45, 6, true, false});
    cases.push_back({bits, 128, 256, 33, 1, false, true});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, LowBitInt8KernelsTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return CaseName(info.param); });

TEST(Int8ActivationsTest, SimdQuantizerMatchesScalarAndKeepsExactChannelsOut) {
  const int64_t rows = 3, in = 96, block = 32;
  std::vector<float> x = RandomActivations(rows, in, 17);
  x[5] = std::nanf("");
  x[40] = 1e-38f;
  std::vector<char> exact(static_cast<size_t>(in), 0);
  exact[3] = exact[70] = 1;
  for (const char* e : {static_cast<const char*>(nullptr), static_cast<const char*>(exact.data())}) {
    Int8Activations a, b;
    QuantizeInt8BlocksScalar(x.data(), rows, in, block, e, a);
    QuantizeInt8Blocks(x.data(), rows, in, block, e, b);
    EXPECT_EQ(a.q, b.q);
    EXPECT_EQ(a.sums, b.sums);
    EXPECT_EQ(std::memcmp(a.scales.data(), b.scales.data(), a.scales.size() * sizeof(float)), 0);
    if (e != nullptr) {
      EXPECT_EQ(a.q[3], 0);
      EXPECT_EQ(a.q[70], 0);
      EXPECT_LT(a.scales[0], 40.f / 127.f);  // channel 3 (40.0) did not set block 0's scale
    }
    for (int8_t q : a.q) EXPECT_GE(q, -127);
  }
}

}  // namespace
}  // namespace accullm::kernels
