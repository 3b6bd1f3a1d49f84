// The INT8 activation quantizer's rounding modes (kernels/cpu/int8_activations.h): every mode
// gives a row the same codes, scales and sums alone or anywhere in a batch of 16, at every ISA
// level (identity is a product property); stochastic rounding is unbiased over seeds while
// round-to-nearest keeps a fixed bias; error feedback bounds every block's running error;
// exact channels stay out of all of it. (These replace the FP32 simulation's tests: the same
// properties, now of the quantizer the integer kernels run.)
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/isa.h"

namespace accullm::kernels {
namespace {

constexpr int64_t kIn = 352, kBlock = 32;  // 11 blocks: 8 interleaved, 3 one by one

ActQuantConfig Mode(ActRounding rounding, bool error_feedback, uint64_t seed = 3) {
  ActQuantConfig c;
  c.rounding = rounding;
  c.error_feedback = error_feedback;
  c.seed = seed;
  return c;
}

std::vector<ActQuantConfig> AllModes() {
  return {Mode(ActRounding::kNearest, false), Mode(ActRounding::kNearest, true), Mode(ActRounding::kStochastic, false),
          Mode(ActRounding::kStochastic, true)};
}

std::string Name(const ActQuantConfig& c) {
  return std::string(ActRoundingName(c.rounding)) + (c.error_feedback ? "+feedback" : "");
}

// Rows of normal values with a few large ones, so blocks have very different scales.
std::vector<float> Rows(int64_t rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01;
  std::vector<float> x(static_cast<size_t>(rows * kIn));
  for (size_t i = 0; i < x.size(); ++i) x[i] = n01(rng) * (i % 97 == 5 ? 20.f : 1.f);
  return x;
}

std::vector<char> ExactChannels() {
  std::vector<char> e(kIn, 0);
  e[3] = e[33] = e[200] = 1;
  return e;
}

bool SameScales(const Int8Activations& a, int64_t ra, const Int8Activations& b, int64_t rb) {
  const int64_t blocks = a.blocks();
  return std::memcmp(a.scales.data() + ra * blocks, b.scales.data() + rb * blocks, blocks * sizeof(float)) == 0;
}

void ExpectSameRow(const Int8Activations& a, int64_t ra, const Int8Activations& b, int64_t rb) {
  const int64_t blocks = a.blocks();
  EXPECT_EQ(std::memcmp(a.row(ra), b.row(rb), static_cast<size_t>(a.in)), 0);
  EXPECT_TRUE(SameScales(a, ra, b, rb));
  EXPECT_EQ(std::vector<int32_t>(a.sums.begin() + ra * blocks, a.sums.begin() + (ra + 1) * blocks),
            std::vector<int32_t>(b.sums.begin() + rb * blocks, b.sums.begin() + (rb + 1) * blocks));
}

std::vector<Isa> Levels() {
  std::vector<Isa> levels = {Isa::kScalar};
  if (DetectedIsa() >= Isa::kAvx2) levels.push_back(Isa::kAvx2);
  if (DetectedIsa() >= Isa::kAvx512) levels.push_back(Isa::kAvx512);
  return levels;
}

TEST(Int8ActivationModesTest, ARowGetsTheSameCodesAloneOrAnywhereInABatchAtEveryLevel) {
  constexpr int64_t kRows = 16;
  const std::vector<float> x = Rows(kRows, 1);
  // The same rows in reverse order, so each sits at another index of its batch.
  std::vector<float> reversed(x.size());
  for (int64_t r = 0; r < kRows; ++r)
    std::memcpy(reversed.data() + r * kIn, x.data() + (kRows - 1 - r) * kIn, kIn * sizeof(float));
  const std::vector<char> exact = ExactChannels();
  for (const ActQuantConfig& mode : AllModes()) {
    SCOPED_TRACE(Name(mode));
    Int8Activations reference;
    QuantizeInt8BlocksScalar(x.data(), kRows, kIn, kBlock, exact.data(), reference, mode);
    for (Isa isa : Levels()) {
      ScopedIsaForTesting level(isa);
      Int8Activations batch, back;
      QuantizeInt8Blocks(x.data(), kRows, kIn, kBlock, exact.data(), batch, mode);
      QuantizeInt8Blocks(reversed.data(), kRows, kIn, kBlock, exact.data(), back, mode);
      for (int64_t r = 0; r < kRows; ++r) {
        Int8Activations alone;
        QuantizeInt8Blocks(x.data() + r * kIn, 1, kIn, kBlock, exact.data(), alone, mode);
        ExpectSameRow(alone, 0, batch, r);
        ExpectSameRow(alone, 0, reference, r);
        ExpectSameRow(alone, 0, back, kRows - 1 - r);
      }
    }
  }
}

TEST(Int8ActivationModesTest, ModesDifferFromNearestAndSeedsFromEachOther) {
  const std::vector<float> x = Rows(4, 2);
  Int8Activations nearest, feedback, s1, s1_again, s2;
  QuantizeInt8Blocks(x.data(), 4, kIn, kBlock, nullptr, nearest);
  QuantizeInt8Blocks(x.data(), 4, kIn, kBlock, nullptr, feedback, Mode(ActRounding::kNearest, true));
  QuantizeInt8Blocks(x.data(), 4, kIn, kBlock, nullptr, s1, Mode(ActRounding::kStochastic, false, 1));
  QuantizeInt8Blocks(x.data(), 4, kIn, kBlock, nullptr, s1_again, Mode(ActRounding::kStochastic, false, 1));
  QuantizeInt8Blocks(x.data(), 4, kIn, kBlock, nullptr, s2, Mode(ActRounding::kStochastic, false, 2));
  EXPECT_NE(nearest.q, feedback.q);
  EXPECT_NE(nearest.q, s1.q);
  EXPECT_EQ(s1.q, s1_again.q);  // reproducible: a pure function of (seed, row)
  EXPECT_NE(s1.q, s2.q);
  // Scales are the block maxima whatever the rounding.
  EXPECT_EQ(nearest.scales, s1.scales);
  EXPECT_EQ(nearest.scales, feedback.scales);
  // Identical rows draw alike; a row differing in one bit draws anew.
  std::vector<float> twins(x.begin(), x.begin() + kIn);
  twins.insert(twins.end(), x.begin(), x.begin() + kIn);
  twins[kIn + 100] = std::nextafter(twins[kIn + 100], 1e9f);
  Int8Activations t;
  QuantizeInt8Blocks(twins.data(), 2, kIn, kBlock, nullptr, t, Mode(ActRounding::kStochastic, false, 1));
  EXPECT_NE(Int8RowKey(twins.data(), kIn, 1), Int8RowKey(twins.data() + kIn, kIn, 1));
  EXPECT_NE(std::vector<int8_t>(t.q.begin(), t.q.begin() + kIn), std::vector<int8_t>(t.q.begin() + kIn, t.q.end()));
  EXPECT_EQ(std::vector<int8_t>(t.q.begin(), t.q.begin() + kIn), std::vector<int8_t>(s1.q.begin(), s1.q.begin() + kIn));
}

// x̂ = q · scale, row 0.
std::vector<double> Dequantized(const Int8Activations& a) {
  std::vector<double> x(static_cast<size_t>(a.in));
  for (int64_t i = 0; i < a.in; ++i) x[i] = static_cast<double>(a.q[i]) * a.scales[i / a.block];
  return x;
}

TEST(Int8ActivationModesTest, StochasticMeanOverSeedsConvergesNearestKeepsABias) {
  const std::vector<float> x = Rows(1, 9);
  std::mt19937 rng(4);
  std::normal_distribution<float> n01;
  constexpr int64_t kOut = 16;
  std::vector<float> w(static_cast<size_t>(kOut * kIn));
  for (auto& v : w) v = n01(rng);
  auto error = [&](const std::vector<double>& xhat) {  // ||W·x̂ − W·x||
    double d = 0;
    for (int64_t o = 0; o < kOut; ++o) {
      double y = 0;
      for (int64_t i = 0; i < kIn; ++i) y += w[o * kIn + i] * (xhat[i] - x[i]);
      d += y * y;
    }
    return std::sqrt(d);
  };
  Int8Activations a;
  QuantizeInt8Blocks(x.data(), 1, kIn, kBlock, nullptr, a);
  const double bias = error(Dequantized(a));
  EXPECT_GT(bias, 0.0);
  auto mean_error = [&](int seeds) {
    std::vector<double> mean(kIn, 0.0);
    for (int s = 0; s < seeds; ++s) {
      QuantizeInt8Blocks(x.data(), 1, kIn, kBlock, nullptr, a, Mode(ActRounding::kStochastic, false, 1000 + s));
      const std::vector<double> d = Dequantized(a);
      for (int64_t i = 0; i < kIn; ++i) mean[i] += d[i] / seeds;
    }
    return error(mean);
  };
  const double few = mean_error(16), many = mean_error(4096);
  EXPECT_LT(many, few / 4) << "the mean over seeds must converge (about 1/sqrt(seeds))";
  EXPECT_LT(many, bias / 5) << "stochastic rounding's mean must beat nearest's bias";
}

TEST(Int8ActivationModesTest, ErrorFeedbackBoundsEveryBlocksRunningErrorAndSkipsExactChannels) {
  std::vector<float> x = Rows(3, 5);
  for (int64_t r = 0; r < 3; ++r) x[r * kIn + 3] = 500.f;  // an outlier, served exactly
  const std::vector<char> exact = ExactChannels();
  for (ActRounding rounding : {ActRounding::kNearest, ActRounding::kStochastic}) {
    for (bool feedback : {false, true}) {
      SCOPED_TRACE(Name(Mode(rounding, feedback)));
      Int8Activations a;
      QuantizeInt8Blocks(x.data(), 3, kIn, kBlock, exact.data(), a, Mode(rounding, feedback));
      double worst_ratio = 0;  // the largest running error, in steps of its block
      for (int64_t r = 0; r < 3; ++r) {
        for (int64_t b = 0; b < a.blocks(); ++b) {
          const float scale = a.scales[r * a.blocks() + b];
          double running = 0;
          int32_t sum = 0;
          for (int64_t i = b * kBlock; i < (b + 1) * kBlock; ++i) {
            const int8_t q = a.q[r * kIn + i];
            sum += q;
            EXPECT_GE(q, -127);
            if (exact[i]) {
              EXPECT_EQ(q, 0);
              continue;
            }
            EXPECT_LE(std::fabs(x[r * kIn + i]), 127.f * scale * 1.0001f);  // exact channels set no scale
            running += static_cast<double>(q) * scale - x[r * kIn + i];
            worst_ratio = std::max(worst_ratio, std::fabs(running) / scale);
          }
          EXPECT_EQ(sum, a.sums[r * a.blocks() + b]);
        }
      }
      if (feedback) {
        EXPECT_LE(worst_ratio, (rounding == ActRounding::kNearest ? 0.5 : 1.0) * 1.001);
      } else {
        EXPECT_GT(worst_ratio, 1.0);  // without feedback the errors add up
      }
    }
  }
}

TEST(Int8ActivationModesTest, NonFiniteInputsGiveTheSameCodesInEveryMode) {
  std::vector<float> x = Rows(1, 6);
  x[10] = std::nanf("");
  x[50] = INFINITY;
  for (const ActQuantConfig& mode : AllModes()) {
    SCOPED_TRACE(Name(mode));
    Int8Activations a, b;
    QuantizeInt8BlocksScalar(x.data(), 1, kIn, kBlock, nullptr, a, mode);
    QuantizeInt8Blocks(x.data(), 1, kIn, kBlock, nullptr, b, mode);
    EXPECT_EQ(a.q, b.q);
    for (int8_t q : a.q) EXPECT_GE(q, -127);
    // The blocks after a non-finite value are not poisoned by a carried NaN.
    Int8Activations clean;
    std::vector<float> y = x;
    y[10] = 0.f;
    y[50] = 0.f;
    QuantizeInt8Blocks(y.data(), 1, kIn, kBlock, nullptr, clean, Mode(mode.rounding, mode.error_feedback, 77));
    if (mode.rounding == ActRounding::kNearest) {
      EXPECT_EQ(std::vector<int8_t>(a.q.begin() + 2 * kBlock, a.q.end()),
                std::vector<int8_t>(clean.q.begin() + 2 * kBlock, clean.q.end()));
    }
  }
}

}  // namespace
}  // namespace accullm::kernels
