#include "model/sampler.h"

#include <map>

#include "gtest/gtest.h"

namespace accullm::model {
namespace {

std::vector<float> Logits() { return {1.f, 3.f, 2.f, 0.5f, 2.9f}; }

int32_t SampleOnce(SamplingParams p, std::vector<int32_t> history = {}) {
  Sampler s(p);
  auto l = Logits();
  return s.Sample(l.data(), l.size(), history);
}

TEST(SamplerTest, GreedyPicksArgmax) { EXPECT_EQ(SampleOnce({}), 1); }

TEST(SamplerTest, SameSeedSameSequence) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 7;
  Sampler a(p), b(p);
  for (int i = 0; i < 50; ++i) {
    auto la = Logits(), lb = Logits();
    EXPECT_EQ(a.Sample(la.data(), la.size(), {}), b.Sample(lb.data(), lb.size(), {}));
  }
}

TEST(SamplerTest, TopKOneIsGreedy) {
  SamplingParams p;
  p.temperature = 5.f;
  p.top_k = 1;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    p.seed = seed;
    EXPECT_EQ(SampleOnce(p), 1);
  }
}

TEST(SamplerTest, TopKRestrictsSupport) {
  SamplingParams p;
  p.temperature = 10.f;
  p.top_k = 2;
  for (uint64_t seed = 0; seed < 100; ++seed) {
    p.seed = seed;
    const int32_t id = SampleOnce(p);
    EXPECT_TRUE(id == 1 || id == 4) << id;
  }
}

TEST(SamplerTest, TopPSmallKeepsOnlyTheMostLikely) {
  SamplingParams p;
  p.temperature = 1.f;
  p.top_p = 0.01f;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    p.seed = seed;
    EXPECT_EQ(SampleOnce(p), 1);
  }
}

TEST(SamplerTest, MinPDropsUnlikelyTokens) {
  SamplingParams p;
  p.temperature = 1.f;
  p.min_p = 0.5f;  // keeps tokens with p >= 0.5 p_max: ids 1 (3.0) and 4 (2.9)
  std::map<int32_t, int> seen;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    p.seed = seed;
    ++seen[SampleOnce(p)];
  }
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[1], 0);
  EXPECT_GT(seen[4], 0);
}

TEST(SamplerTest, FrequenciesFollowSoftmax) {
  SamplingParams p;
  p.temperature = 1.f;
  std::map<int32_t, int> seen;
  Sampler s(p);
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) {
    auto l = Logits();
    ++seen[s.Sample(l.data(), l.size(), {})];
  }
  double z = 0;
  for (float v : Logits()) z += std::exp(v);
  for (int id = 0; id < 5; ++id) {
    EXPECT_NEAR(seen[id] / double(draws), std::exp(Logits()[id]) / z, 0.015) << id;
  }
}

TEST(SamplerTest, RepetitionPenaltyChangesGreedyChoice) {
  SamplingParams p;
  p.repetition_penalty = 2.f;  // 3.0 → 1.5 for the seen token; 2.9 wins
  EXPECT_EQ(SampleOnce(p, {1}), 4);
}

TEST(SamplerTest, ValidateRejectsOutOfRange) {
  SamplingParams p;
  p.top_p = 0.f;
  EXPECT_FALSE(p.Validate().ok());
  p = {};
  p.temperature = -1.f;
  EXPECT_FALSE(p.Validate().ok());
  p = {};
  p.min_p = 2.f;
  EXPECT_FALSE(p.Validate().ok());
  EXPECT_TRUE(SamplingParams{}.Validate().ok());
}

}  // namespace
}  // namespace accullm::model
