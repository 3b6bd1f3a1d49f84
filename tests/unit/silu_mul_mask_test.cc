// The CATS and product masks of the SwiGLU FFN (kernels/cpu/silu_mul_mask.h): kept neurons carry exactly
// the dense SiLU(gate)·up bits, skipped ones +0, and the counts match a direct recount.
#include "kernels/cpu/silu_mul_mask.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/elementwise.h"

namespace accullm::kernels {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

float Silu(float g) { return g / (1.0f + std::exp(-g)); }

TEST(SiluMulMaskTest, KeepsDenseBitsAndZeroesTheRest) {
  const int64_t n = 4099;
  std::vector<float> gate = Random(n, 1, 3.f), up = Random(n, 2, 1.f);
  gate[0] = -200.f;  // SiLU underflows to -0: skipped at any threshold >= 0, written +0
  std::vector<float> dense(n), masked(n, 7.f);
  SiluMulScalar(gate.data(), up.data(), n, dense.data());
  const float threshold = 0.4f;
  const int64_t kept = SiluMulMasked(gate.data(), up.data(), n, threshold, masked.data());
  int64_t expected_kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::fabs(Silu(gate[i])) > threshold) {
      ++expected_kept;
      EXPECT_EQ(std::memcmp(&masked[i], &dense[i], sizeof(float)), 0) << i;
    } else {
      EXPECT_EQ(std::bit_cast<uint32_t>(masked[i]), 0u) << i << ": a skipped neuron is +0";
    }
  }
  EXPECT_EQ(kept, expected_kept);
  EXPECT_GT(kept, n / 10);  // the threshold skips some and keeps some
  EXPECT_LT(kept, n - n / 10);
}

TEST(SiluMulMaskTest, NegativeThresholdIsTheDenseProductBitForBit) {
  const int64_t n = 1000;
  const std::vector<float> gate = Random(n, 3, 4.f), up = Random(n, 4, 1.f);
  std::vector<float> dense(n), masked(n);
  SiluMulScalar(gate.data(), up.data(), n, dense.data());
  EXPECT_EQ(SiluMulMasked(gate.data(), up.data(), n, -1.0f, masked.data()), n);
  EXPECT_EQ(std::memcmp(masked.data(), dense.data(), n * sizeof(float)), 0);
}

TEST(SiluMulMaskTest, WorksInPlace) {
  const int64_t n = 513;
  const std::vector<float> gate = Random(n, 5, 2.f), up = Random(n, 6, 1.f);
  std::vector<float> out(n), in_place = gate;
  const int64_t kept = SiluMulMasked(gate.data(), up.data(), n, 0.2f, out.data());
  EXPECT_EQ(SiluMulMasked(in_place.data(), up.data(), n, 0.2f, in_place.data()), kept);
  EXPECT_EQ(std::memcmp(in_place.data(), out.data(), n * sizeof(float)), 0);
}

TEST(SiluMulMaskTest, CountingVariantGivesTheSameOutputAndCountsRecall) {
  const int64_t n = 3000;
  const std::vector<float> gate = Random(n, 7, 3.f), up = Random(n, 8, 1.f);
  std::vector<float> plain(n), counted(n);
  const float t = 0.3f, a = 0.2f;
  const int64_t kept = SiluMulMasked(gate.data(), up.data(), n, t, plain.data());
  const FfnMaskCounts c = SiluMulMaskedCounting(gate.data(), up.data(), n, t, kNoProductThreshold, a, counted.data());
  EXPECT_EQ(std::memcmp(plain.data(), counted.data(), n * sizeof(float)), 0);
  EXPECT_EQ(c.kept, kept);
  int64_t active = 0, kept_active = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float s = Silu(gate[i]);
    const bool is_active = std::fabs(s * up[i]) > a;
    active += is_active;
    kept_active += is_active && std::fabs(s) > t;
  }
  EXPECT_EQ(c.active, active);
  EXPECT_EQ(c.kept_active, kept_active);
  // The gate alone does not decide the product: some active neurons are missed.
  EXPECT_LT(c.kept_active, c.active);
  EXPECT_GT(c.kept_active, 0);
}

TEST(SiluMulMaskTest, ProductRuleKeepsExactlyTheLargeProductsThatPassTheGate) {
  const int64_t n = 4000;
  const std::vector<float> gate = Random(n, 9, 3.f), up = Random(n, 10, 1.f);
  std::vector<float> dense(n), masked(n), counted(n);
  SiluMulScalar(gate.data(), up.data(), n, dense.data());
  const float t = 0.05f, p = 0.3f;
  const int64_t kept = SiluMulMasked(gate.data(), up.data(), n, t, p, masked.data());
  const FfnMaskCounts c = SiluMulMaskedCounting(gate.data(), up.data(), n, t, p, p, counted.data());
  EXPECT_EQ(std::memcmp(masked.data(), counted.data(), n * sizeof(float)), 0);
  int64_t expected = 0, gate_only = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = std::fabs(Silu(gate[i])) > t && std::fabs(dense[i]) > p;
    gate_only += std::fabs(Silu(gate[i])) > t;
    expected += keep;
    if (keep)
      EXPECT_EQ(std::memcmp(&masked[i], &dense[i], sizeof(float)), 0) << i;
    else
      EXPECT_EQ(std::bit_cast<uint32_t>(masked[i]), 0u) << i;
  }
  EXPECT_EQ(kept, expected);
  EXPECT_EQ(c.kept, kept);
  EXPECT_LT(kept, gate_only);  // the product test skips neurons the gate kept
  // Active = product above the same threshold: every kept neuron is active; the misses are the
  // gate prefilter's alone.
  EXPECT_EQ(c.kept_active, c.kept);
  EXPECT_GE(c.active, c.kept);
}

TEST(SiluMulMaskTest, ZeroSmallProductsMatchesTheMaskedRule) {
  const int64_t n = 2000;
  const std::vector<float> gate = Random(n, 11, 3.f), up = Random(n, 12, 1.f);
  const float t = 0.1f, p = 0.25f;
  std::vector<float> masked(n), silu(n), h(n, 0.0f);
  const int64_t kept = SiluMulMasked(gate.data(), up.data(), n, t, p, masked.data());
  // The sparse path: the gate prefilter, h for the survivors, then the product test.
  SiluOfRange(gate.data(), n, silu.data());
  std::vector<int32_t> survivors(n);
  const int64_t count = KeptAboveThreshold(silu.data(), n, t, survivors.data());
  for (int64_t k = 0; k < count; ++k) h[survivors[k]] = silu[survivors[k]] * up[survivors[k]];
  EXPECT_EQ(ZeroSmallProducts(survivors.data(), count, p, h.data()), kept);
  EXPECT_LT(kept, count);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(std::bit_cast<uint32_t>(h[i]), std::bit_cast<uint32_t>(masked[i])) << i;
}

}  // namespace
}  // namespace accullm::kernels
