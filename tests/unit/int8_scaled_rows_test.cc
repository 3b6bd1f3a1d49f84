// The INT8 rows with per-row F32 steps (kernels/cpu/int8_scaled_rows.h) that run the FFN
// guesser's `out` product: the quantization's steps and rounding, every variant's bits equal
// to the scalar reference's (a threshold taken at quantize time must hold on any CPU), each
// row's result independent of the others in the batch, and the product close to the F16
// weights' own.
#include "kernels/cpu/int8_scaled_rows.h"

#include <cmath>
#include <cstring>
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

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Int8ScaledRowsTest, QuantizesEachRowByItsLargestMagnitude) {
  // Row 0: max 2.54 → step 0.02; 1.0 → 50, −0.03 → −1.5 → −2 (ties to even), 0.01 → 0.5 → 0.
  // Row 1: all zero.
  const std::vector<float> values = {2.54f, 1.0f, -0.03f, 0.01f, 0.f, 0.f, 0.f, 0.f};
  std::vector<uint16_t> f16;
  for (float v : values) f16.push_back(F32ToF16(v));
  const Int8ScaledRows w = QuantizeInt8ScaledRows(f16.data(), 2, 4);
  ASSERT_EQ(w.blocks(), 1);
  ASSERT_EQ(w.codes.size(), static_cast<size_t>(4 * kInt8ScaledRowsBlock));
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

TEST(Int8ScaledRowsTest, EveryVariantGivesTheScalarBitsAndRowsAreIndependent) {
  for (const auto& [out, in] : {std::pair<int64_t, int64_t>{100, 77}, {64, 32}, {11, 5}, {192, 130}}) {
    const std::vector<uint16_t> f16 = RandomF16(out, in, 3);
    const Int8ScaledRows w = QuantizeInt8ScaledRows(f16.data(), out, in);
    constexpr int64_t kRows = 3;
    const std::vector<float> x = RandomRows(kRows, in, 7);
    std::vector<float> want(static_cast<size_t>(kRows * out), -1.f);
    Int8ScaledRowsForwardScalar(w, x.data(), kRows, 0, w.blocks(), want.data());

    // Close to the F16 weights' product: per-row INT8 keeps ~1/254 of the row's largest weight.
    for (int64_t r = 0; r < kRows; ++r) {
      for (int64_t o = 0; o < out; ++o) {
        double exact = 0, bound = 0;
        for (int64_t i = 0; i < in; ++i) {
          exact += static_cast<double>(F16ToF32(f16[static_cast<size_t>(o * in + i)])) * x[r * in + i];
          bound += std::fabs(x[r * in + i]);
        }
        EXPECT_NEAR(want[static_cast<size_t>(r * out + o)], exact, 0.5 * w.steps[o] * bound + 1e-5)
            << "row " << r << " output " << o;
      }
    }
    EXPECT_EQ(want[static_cast<size_t>(5)], 0.f);  // the all-zero weight row

    std::vector<float> got(want.size(), -2.f);
    if (Int8ScaledRowsForwardAvx512(w, x.data(), kRows, 0, w.blocks(), got.data())) {
      EXPECT_TRUE(SameBits(got, want)) << "avx512 " << out << "x" << in;
    }
    std::fill(got.begin(), got.end(), -2.f);
    if (Int8ScaledRowsForwardAvx2(w, x.data(), kRows, 0, w.blocks(), got.data())) {
      EXPECT_TRUE(SameBits(got, want)) << "avx2 " << out << "x" << in;
    }
    for (Isa isa : SupportedIsas()) {
      ScopedIsaForTesting level(isa);
      std::fill(got.begin(), got.end(), -2.f);
      for (int64_t b = 0; b < w.blocks(); ++b)  // block by block, as a thread split would
        Int8ScaledRowsForward(w, x.data(), kRows, b, b + 1, got.data());
      EXPECT_TRUE(SameBits(got, want)) << IsaName(isa) << " " << out << "x" << in;
      // Row 1 alone gives its bits in the batch.
      std::vector<float> alone(static_cast<size_t>(out), -3.f);
      Int8ScaledRowsForward(w, x.data() + in, 1, 0, w.blocks(), alone.data());
      EXPECT_EQ(std::memcmp(alone.data(), want.data() + out, static_cast<size_t>(out) * sizeof(float)), 0)
          << IsaName(isa);
    }
  }
}

}  // namespace
}  // namespace accullm::kernels
