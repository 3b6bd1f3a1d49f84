// The drift canaries' comparison of a served distribution (as (id, logprob) pairs, what the
// last stage returns) with the stored full-precision logits.
#include "coordinator/canary_monitor.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "gtest/gtest.h"
#include "quant/evaluation.h"

namespace accullm::coordinator {
namespace {

std::vector<std::pair<int32_t, float>> AsServed(const std::vector<float>& logits) {
  std::vector<double> lp;
  quant::LogSoftmax(logits.data(), static_cast<int64_t>(logits.size()), lp);
  std::vector<std::pair<int32_t, float>> out;
  for (size_t i = 0; i < lp.size(); ++i) out.emplace_back(static_cast<int32_t>(i), static_cast<float>(lp[i]));
  // Best first, as the stage sends them: the order must not matter.
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.second > b.second; });
  return out;
}

TEST(CanaryCompareTest, SameDistributionHasNoDriftAndShiftedOneHas) {
  const std::vector<float> reference = {1.f, 3.f, -2.f, 0.5f, 2.9f};
  CanaryOutcome same = CompareWithReference(reference, AsServed(reference));
  EXPECT_TRUE(same.finite);
  EXPECT_TRUE(same.top1_match);
  EXPECT_NEAR(same.kl, 0.0, 1e-6);  // float logprobs: rounding only

  std::vector<float> drifted = reference;
  drifted[4] = 4.f;  // another token now wins
  CanaryOutcome d = CompareWithReference(reference, AsServed(drifted));
  EXPECT_TRUE(d.finite);
  EXPECT_FALSE(d.top1_match);
  std::vector<double> p, q;
  quant::LogSoftmax(reference.data(), 5, p);
  quant::LogSoftmax(drifted.data(), 5, q);
  EXPECT_NEAR(d.kl, quant::KlDivergence(p, q), 1e-6);
  EXPECT_GT(d.kl, 0.05);
}

TEST(CanaryCompareTest, NonFiniteOrIncompleteAnswersFailOutright) {
  const std::vector<float> reference = {1.f, 3.f, -2.f};
  auto served = AsServed(reference);
  served[1].second = std::nanf("");
  CanaryOutcome nan = CompareWithReference(reference, served);
  EXPECT_FALSE(nan.finite);
  EXPECT_EQ(nan.kl, std::numeric_limits<double>::infinity());
  EXPECT_FALSE(nan.top1_match);

  auto partial = AsServed(reference);
  partial.pop_back();  // one id missing: not a whole distribution
  EXPECT_FALSE(CompareWithReference(reference, partial).finite);

  std::vector<float> bad_reference = reference;
  bad_reference[0] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(CompareWithReference(bad_reference, AsServed(reference)).finite);
}

}  // namespace
}  // namespace accullm::coordinator
