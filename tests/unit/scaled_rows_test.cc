// The 8- and 4-bit rows with per-row F32 steps (kernels/cpu/scaled_rows.h) that run the FFN
// guesser's `out` product: the quantization's steps and rounding, every variant's bits equal
// to the scalar reference's (a threshold taken at quantize time must hold on any CPU), each
// row's result independent of the others in the batch, and the product close to the F16
// weights' own.
#include "kernels/cpu/scaled_rows.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/isa.h"

namespace accullm::kernels {
namespace {

std::vector<uint16_t> RandomF16(int64_t out, int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 0.2f);
  std::vector<uint16_t> w(static_cast<size_t>(out * in));
  for (auto& v : w) v = F32ToF16(normal(rng));
  for (int64_t i = 0; i < in; ++i) w[static_cast<size_t>(5 * in + i)] = F32ToF16(0.f);  // an all-zero row
  return w;
}

std::vector<float> RandomRows(int64_t n, int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 3.f);
  std::vector<float> x(static_cast<size_t>(n * in));
  for (auto& v : x) v = normal(rng);
  return x;
}

std::vector<uint16_t> F16Of(const std::vector<float>& values) {
  std::vector<uint16_t> f16;
  for (float v : values) f16.push_back(F32ToF16(v));
  return f16;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(ScaledRowsTest, QuantizesEachRowByItsLargestMagnitudeAt8Bits) {
  // Row 0: max 2.54 → step 0.02; 1.0 → 50, −0.03 → −1.5 → −2 (ties to even), 0.01 → 0.5 → 0.
  // Row 1: all zero.
  const std::vector<uint16_t> f16 = F16Of({2.54f, 1.0f, -0.03f, 0.01f, 0.f, 0.f, 0.f, 0.f});
  const ScaledRows w = QuantizeScaledRows(f16.data(), 2, 4, 8);
  ASSERT_EQ(w.blocks(), 1);
  ASSERT_EQ(w.codes.size(), static_cast<size_t>(4 * kScaledRowsBlock));
  const float step = F16ToF32(f16[0]) / 127.f;
  EXPECT_EQ(w.steps[0], step);
  EXPECT_EQ(w.steps[1], 0.f);
  auto code = [&](int64_t o, int64_t i) { return static_cast<int>(w.codes[static_cast<size_t>(i * 64 + o)]); };
  EXPECT_EQ(code(0, 0), 127);
  EXPECT_EQ(code(0, 1), static_cast<int>(std::nearbyint(F16ToF32(f16[1]) / step)));
  EXPECT_EQ(code(0, 2), static_cast<int>(std::nearbyint(F16ToF32(f16[2]) / step)));
  EXPECT_EQ(code(0, 3), static_cast<int>(std::nearbyint(F16ToF32(f16[3]) / step)));
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(code(1, i), 0);
  EXPECT_EQ(w.bytes(), static_cast<size_t>(4 * 64 + 4 * 64));
}

TEST(ScaledRowsTest, PacksTwoColumnsPerByteAt4Bits) {
  // Row 0: max 1.4 → step ~0.2; 1.4 → 7, −1.4 → −7, the others rounded to nearest. Row 1:
  // all zero. in = 5: one group of 8 columns, output o's 4 bytes hold columns 0..3 (low
  // nibbles) and 4..7 (high; 8, code 0, past column 4).
  const std::vector<uint16_t> f16 = F16Of({1.4f, -0.3f, 0.1f, -1.4f, 0.5f, 0.f, 0.f, 0.f, 0.f, 0.f});
  const ScaledRows w = QuantizeScaledRows(f16.data(), 2, 5, 4);
  ASSERT_EQ(w.bits, 4);
  ASSERT_EQ(w.column_bytes(), 4);
  ASSERT_EQ(w.codes.size(), static_cast<size_t>(4 * kScaledRowsBlock));
  const float step = F16ToF32(f16[0]) / 7.f;
  EXPECT_EQ(w.steps[0], step);
  EXPECT_EQ(w.steps[1], 0.f);
  auto byte = [&](int64_t o, int64_t k) { return static_cast<uint8_t>(w.codes[static_cast<size_t>(o * 4 + k)]); };
  auto code = [&](int i) { return static_cast<int>(std::nearbyint(F16ToF32(f16[static_cast<size_t>(i)]) / step)); };
  EXPECT_EQ(code(0), 7);
  EXPECT_EQ(code(3), -7);
  EXPECT_EQ(byte(0, 0), (code(0) + 8) | (code(4) + 8) << 4);
  for (int k = 1; k < 4; ++k) EXPECT_EQ(byte(0, k), (code(k) + 8) | 8 << 4) << k;
  for (int k = 0; k < 4; ++k) EXPECT_EQ(byte(1, k), 0x88) << k;   // the all-zero row: codes 0
  for (int k = 0; k < 4; ++k) EXPECT_EQ(byte(63, k), 0x88) << k;  // a padding row
  EXPECT_EQ(w.bytes(), static_cast<size_t>(4 * 64 + 4 * 64));
}

TEST(ScaledRowsTest, FourBitRowsQuantizeTheInputPerRow) {
  // x = (2.54, −1, 0.01, ...): scale 0.02, xq = 127, −50, 0 (0.5 → 0, ties to even), sum 77.
  std::vector<float> x = {2.54f, -1.f, 0.01f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  x.resize(18, 0.f);
  x[9] = std::numeric_limits<float>::quiet_NaN();  // row 1 is not finite
  ScaledRowsInput q;
  QuantizeScaledRowsInput(x.data(), 2, 9, q);
  ASSERT_EQ(q.stride, 16);
  EXPECT_EQ(q.scale[0], 2.54f / 127.f);
  EXPECT_EQ(q.xq[0], 127);
  EXPECT_EQ(q.xq[1], static_cast<int8_t>(std::nearbyint(-1.f / (2.54f / 127.f))));
  EXPECT_EQ(q.xq[2], 0);
  EXPECT_EQ(q.sum[0], q.xq[0] + q.xq[1]);
  EXPECT_TRUE(std::isnan(q.scale[1]));
  // The NaN row's outputs are NaN (as the float product's), the finite row's are not.
  const std::vector<uint16_t> f16 = RandomF16(8, 9, 1);
  const ScaledRows w = QuantizeScaledRows(f16.data(), 8, 9, 4);
  std::vector<float> y(16);
  for (Isa isa : SupportedIsas()) {
    ScopedIsaForTesting level(isa);
    ScaledRowsForward(w, x.data(), 2, 0, w.blocks(), y.data());
    for (int o = 0; o < 8; ++o) {
      EXPECT_TRUE(std::isfinite(y[o])) << IsaName(isa) << " " << o;
      EXPECT_TRUE(std::isnan(y[8 + o])) << IsaName(isa) << " " << o;
    }
  }
}

class ScaledRowsBitsTest : public ::testing::TestWithParam<int> {};

TEST_P(ScaledRowsBitsTest, EveryVariantGivesTheScalarBitsAndRowsAreIndependent) {
  const int bits = GetParam();
  for (const auto& [out, in] : {std::pair<int64_t, int64_t>{100, 77}, {64, 32}, {11, 5}, {192, 130}, {70, 1}}) {
    const std::vector<uint16_t> f16 = RandomF16(out, in, 3);
    const ScaledRows w = QuantizeScaledRows(f16.data(), out, in, bits);
    constexpr int64_t kRows = 3;
    const std::vector<float> x = RandomRows(kRows, in, 7);
    std::vector<float> want(static_cast<size_t>(kRows * out), -1.f);
    ScaledRowsForwardScalar(w, x.data(), kRows, 0, w.blocks(), want.data());

    // Close to the F16 weights' product: a code is within half a step of its weight, and at 4
    // bits an activation within half of its row's scale (max|x| / 127) of x.
    for (int64_t r = 0; r < kRows; ++r) {
      double x_max = 0;
      for (int64_t i = 0; i < in; ++i) x_max = std::max<double>(x_max, std::fabs(x[r * in + i]));
      for (int64_t o = 0; o < out; ++o) {
        double exact = 0, bound = 0;
        for (int64_t i = 0; i < in; ++i) {
          exact += static_cast<double>(F16ToF32(f16[static_cast<size_t>(o * in + i)])) * x[r * in + i];
          bound += std::fabs(x[r * in + i]);
        }
        const double x_error = bits == 4 ? 0.5 * (x_max / 127) * 7 * w.steps[o] * static_cast<double>(in) : 0.0;
        EXPECT_NEAR(want[static_cast<size_t>(r * out + o)], exact, 0.5 * w.steps[o] * bound + x_error + 1e-5)
            << "row " << r << " output " << o;
      }
    }
    EXPECT_EQ(want[static_cast<size_t>(5)], 0.f);  // the all-zero weight row

    std::vector<float> got(want.size(), -2.f);
    if (ScaledRowsForwardAvx512(w, x.data(), kRows, 0, w.blocks(), got.data())) {
      EXPECT_TRUE(SameBits(got, want)) << "avx512 " << bits << " bits " << out << "x" << in;
    }
    std::fill(got.begin(), got.end(), -2.f);
    if (ScaledRowsForwardAvx2(w, x.data(), kRows, 0, w.blocks(), got.data())) {
      EXPECT_TRUE(SameBits(got, want)) << "avx2 " << bits << " bits " << out << "x" << in;
    }
    for (Isa isa : SupportedIsas()) {
      ScopedIsaForTesting level(isa);
      std::fill(got.begin(), got.end(), -2.f);
      for (int64_t b = 0; b < w.blocks(); ++b)  // block by block, as a thread split would
        ScaledRowsForward(w, x.data(), kRows, b, b + 1, got.data());
      EXPECT_TRUE(SameBits(got, want)) << IsaName(isa) << " " << out << "x" << in;
      // Row 1 alone gives its bits in the batch.
      std::vector<float> alone(static_cast<size_t>(out), -3.f);
      ScaledRowsForward(w, x.data() + in, 1, 0, w.blocks(), alone.data());
      EXPECT_EQ(std::memcmp(alone.data(), want.data() + out, static_cast<size_t>(out) * sizeof(float)), 0)
          << IsaName(isa);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Bits, ScaledRowsBitsTest, ::testing::Values(8, 4));

}  // namespace
}  // namespace accullm::kernels
