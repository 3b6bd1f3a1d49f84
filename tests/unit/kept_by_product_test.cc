// The guesser's keep decision (kernels/cpu/kept_by_product.h): every ISA variant returns the
// scalar reference's list, and that list is FfnGuesser::Scores's test (SiluMulMasked's product,
// |·| > threshold), including neurons whose product is the threshold to the last bit, one ulp
// either side, and the special values.
#include "kernels/cpu/kept_by_product.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/silu_mul_mask.h"

namespace accullm::kernels {
namespace {

struct Case {
  std::vector<float> gate, up;
};

Case RandomCase(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 2.f), u(0.f, 1.f);
  Case c;
  for (int64_t i = 0; i < n; ++i) {
    c.gate.push_back(g(rng));
    c.up.push_back(u(rng));
  }
  return c;
}

// What FfnGuesser::Scores's scores say: SiluMulMasked keeping everything, then |·|.
std::vector<int32_t> ScoresDecision(const Case& c, float threshold) {
  const int64_t n = static_cast<int64_t>(c.gate.size());
  std::vector<float> s(static_cast<size_t>(n));
  SiluMulMasked(c.gate.data(), c.up.data(), n, -1.0f, s.data());
  std::vector<int32_t> kept;
  for (int64_t i = 0; i < n; ++i)
    if (std::fabs(s[i]) > threshold) kept.push_back(static_cast<int32_t>(i));
  return kept;
}

std::vector<int32_t> Run(const Case& c, float threshold) {
  const int64_t n = static_cast<int64_t>(c.gate.size());
  std::vector<int32_t> kept(static_cast<size_t>(n) + 1, -7);
  const int64_t count = KeptByProduct(c.gate.data(), c.up.data(), n, threshold, kept.data());
  EXPECT_GE(count, 0);
  kept.resize(static_cast<size_t>(count));
  return kept;
}

float ScalarProduct(float g, float u) { return std::fabs(SiluOf(g) * u); }

void ExpectEveryIsaMatches(const Case& c, float threshold) {
  const std::vector<int32_t> want = ScoresDecision(c, threshold);
  for (Isa isa : SupportedIsas()) {
    ScopedIsaForTesting scoped(isa);
    EXPECT_EQ(Run(c, threshold), want) << IsaName(isa) << " threshold " << threshold;
  }
}

TEST(KeptByProductTest, EveryIsaMatchesTheScoresTestOnRandomRows) {
  for (int64_t n : {0, 1, 7, 8, 15, 16, 17, 100, 5632}) {
    const Case c = RandomCase(n, static_cast<uint32_t>(n + 1));
    for (float threshold : {0.f, 1e-6f, 0.01f, 0.1f, 0.5f, 2.f, 1e6f}) ExpectEveryIsaMatches(c, threshold);
  }
}

// Thresholds placed exactly on neurons' products and one ulp either side: where only the
// scalar recomputation can decide, and where a wrong margin would show.
TEST(KeptByProductTest, ThresholdsOnAndBesideExactProducts) {
  const Case c = RandomCase(4099, 11);
  std::mt19937 rng(12);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t at = rng() % c.gate.size();
    const float p = ScalarProduct(c.gate[at], c.up[at]);
    if (!(p > kKeptByProductMinThreshold)) continue;
    for (float t : {p, std::nextafter(p, 0.f), std::nextafter(p, 1e30f), p * (1 - kKeptByProductMargin),
                    p * (1 + kKeptByProductMargin)})
      ExpectEveryIsaMatches(c, t);
  }
}

// Many neurons within the margin of one threshold: each must go to the scalar form.
TEST(KeptByProductTest, RowsCrowdedAroundTheThreshold) {
  const float threshold = 0.25f;
  Case c;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> g(-6.f, 6.f), wiggle(-2e-6f, 2e-6f);
  for (int i = 0; i < 2000; ++i) {
    const float gi = g(rng);
    const float s = std::fabs(SiluOf(gi));
    if (s < 1e-3f) continue;
    c.gate.push_back(gi);
    c.up.push_back(threshold / s * (1.f + wiggle(rng)));  // product within ~2e-6 of the threshold
  }
  ExpectEveryIsaMatches(c, threshold);
}

TEST(KeptByProductTest, SpecialValuesAndThresholds) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  Case c;
  c.gate = {-200.f, -88.8f, -87.f, 0.f, -0.f, 88.f, 100.f, inf, -inf, nan, 1.f, 2.f, 3.f, 1.f, 1e-30f, -3.f, 5.f};
  c.up = {1.f, 1e30f, 1e38f, inf, 1.f, 1.f, -2.f, 1.f, 1.f, 1.f, nan, inf, -inf, 1e-38f, 1.f, 1e-40f, 0.f};
  for (float threshold : {0.f, -1.f, 1e-35f, 1e-30f, 1e-20f, 0.5f, 1e37f, inf, nan}) ExpectEveryIsaMatches(c, threshold);
}

}  // namespace
}  // namespace accullm::kernels
