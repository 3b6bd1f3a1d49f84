// KL divergence and log-softmax as the drift check and `accullm eval` use them: non-finite
// logits make the divergence +Inf, never the 0 that std::max(0.0, NaN) once made of them.
#include "quant/evaluation.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace accullm::quant {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr float kNanF = std::numeric_limits<float>::quiet_NaN();
constexpr float kInfF = std::numeric_limits<float>::infinity();

std::vector<double> Lsm(std::vector<float> logits) {
  std::vector<double> out;
  LogSoftmax(logits.data(), static_cast<int64_t>(logits.size()), out);
  return out;
}

TEST(KlDivergence, FiniteDistributions) {
  const auto p = Lsm({1.f, 2.f, 3.f}), q = Lsm({1.f, 2.5f, 2.f});
  double want = 0;
  for (size_t i = 0; i < p.size(); ++i) want += std::exp(p[i]) * (p[i] - q[i]);
  EXPECT_NEAR(KlDivergence(p, q), want, 1e-12);
  EXPECT_GT(want, 0);
  EXPECT_EQ(KlDivergence(p, p), 0);
}

TEST(KlDivergence, TinyNegativeRoundingIsZero) {
  std::vector<double> p = {std::log(0.5), std::log(0.5)};
  std::vector<double> q = {std::log(0.5) + 1e-15, std::log(0.5) + 1e-15};  // sums to a hair over 1
  EXPECT_EQ(KlDivergence(p, q), 0);
}

TEST(KlDivergence, NanOrInfLogitsAreInfinitelyFar) {
  const auto good = Lsm({1.f, 2.f, 3.f});
  for (const std::vector<float>& bad : {std::vector<float>{kNanF, kNanF, kNanF}, std::vector<float>{1.f, kNanF, 3.f},
                                        std::vector<float>{1.f, kInfF, 3.f}, std::vector<float>{-kInfF, kInfF, 0.f}}) {
    const auto lb = Lsm(bad);
    EXPECT_EQ(KlDivergence(good, lb), kInf);
    EXPECT_EQ(KlDivergence(lb, good), kInf);
    EXPECT_EQ(KlDivergence(lb, lb), kInf);
  }
  const std::vector<double> nan_logprob = {std::log(0.5), std::nan("")};
  EXPECT_EQ(KlDivergence(nan_logprob, {std::log(0.5), std::log(0.5)}), kInf);
}

TEST(KlDivergence, ZeroProbabilities) {
  // P = 0 adds nothing; Q = 0 where P > 0 is +Inf.
  const auto p = Lsm({-kInfF, 0.f, 0.f}), q = Lsm({0.f, 0.f, 0.f});
  EXPECT_EQ(p[0], -kInf);
  EXPECT_NEAR(KlDivergence(p, q), std::log(1.5), 1e-12);
  EXPECT_EQ(KlDivergence(q, p), kInf);
}

TEST(AllFinite, Logits) {
  const std::vector<float> ok = {0.f, -3.f, 1e30f}, nan = {0.f, kNanF}, inf = {-kInfF, 1.f};
  EXPECT_TRUE(AllFinite(ok.data(), 3));
  EXPECT_FALSE(AllFinite(nan.data(), 2));
  EXPECT_FALSE(AllFinite(inf.data(), 2));
}

}  // namespace
}  // namespace accullm::quant
