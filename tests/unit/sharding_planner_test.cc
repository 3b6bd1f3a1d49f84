// The layer → stage planner: balanced assignments, memory budgets respected, infeasible
// plans refused with a clear message, plan files validated, sizes parsed.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "sharding/stage_plan.h"
#include "tests/support/test_support.h"

namespace accullm::sharding {
namespace {

ModelCost Uniform(int layers, double bytes) {
  ModelCost c;
  for (int i = 0; i < layers; ++i) c.layers.push_back({bytes, bytes, 0});
  c.activation_bytes_per_token = 0;
  return c;
}

PlannerOptions Fast() {
  PlannerOptions o;
  o.memory_bandwidth = 1;  // step time = bytes (easy to reason about)
  o.flops = 1e30;
  o.link_bandwidth = 1e30;
  return o;
}

TEST(StagePlanner, BalancesUniformLayers) {
  auto p = PlanStages(Uniform(8, 100), 4, Fast());
  ASSERT_TRUE(p.ok()) << p.status();
  for (const auto& s : p->stages) EXPECT_EQ(s.layer_end - s.layer_begin, 2);
  EXPECT_DOUBLE_EQ(p->bottleneck_seconds(), 200);
}

TEST(StagePlanner, MinimisesTheSlowestStageWithUnevenLayers) {
  ModelCost c = Uniform(6, 10);
  c.layers[0].weight_bytes = 50;  // a heavy (e.g. FP16) layer among INT4 ones
  auto p = PlanStages(c, 3, Fast());
  ASSERT_TRUE(p.ok());
  // Best: [0] = 50, [1..3] = 30, [4..5] = 20 (or similar): the bottleneck is the heavy layer.
  EXPECT_DOUBLE_EQ(p->bottleneck_seconds(), 50);
  EXPECT_EQ(p->stages[0].layer_end, 1);
  // Brute force over all splits agrees.
  double best = 1e18;
  for (int a = 1; a < 6; ++a)
    for (int b = a + 1; b < 6; ++b) {
      auto sum = [&](int x, int y) {
        double s = 0;
        for (int i = x; i < y; ++i) s += c.layers[i].weight_bytes;
        return s;
      };
      best = std::min(best, std::max({sum(0, a), sum(a, b), sum(b, 6)}));
    }
  EXPECT_DOUBLE_EQ(p->bottleneck_seconds(), best);
}

TEST(StagePlanner, EmbeddingAndHeadCountOnFirstAndLastStage) {
  ModelCost c = Uniform(4, 10);
  c.embed_bytes = 25;
  c.head_bytes = 25;
  auto p = PlanStages(c, 2, Fast());
  ASSERT_TRUE(p.ok());
  EXPECT_DOUBLE_EQ(p->stages[0].weight_bytes, 25 + 10 * (p->stages[0].layer_end));
  EXPECT_DOUBLE_EQ(p->stages[1].weight_bytes, 25 + 10 * (4 - p->stages[1].layer_begin));
}

TEST(StagePlanner, RespectsMemoryBudgets) {
  // Worker 0 is small: it may take only one layer even though balance wants two each.
  PlannerOptions o = Fast();
  o.memory_bytes = {150, 1000};
  auto p = PlanStages(Uniform(4, 100), 2, o);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->stages[0].layer_end, 1);
  for (const auto& s : p->stages) EXPECT_LE(s.memory_bytes, s.budget_bytes);
  // The KV cache counts too: 10 positions × 10 bytes per layer.
  for (auto& l : o.memory_bytes) l = 250;
  o.kv_positions = 10;
  ModelCost c = Uniform(4, 100);
  for (auto& l : c.layers) l.kv_bytes_per_position = 10;
  auto q = PlanStages(c, 2, o);
  EXPECT_FALSE(q.ok());  // 2 layers per stage = 200 weights + 200 KV > 250
  o.memory_bytes = {450, 450};
  auto r = PlanStages(c, 2, o);
  ASSERT_TRUE(r.ok());
  for (const auto& s : r->stages) EXPECT_LE(s.memory_bytes, 450);
}

TEST(StagePlanner, RefusesWhatCannotFit) {
  PlannerOptions o = Fast();
  o.memory_bytes = {250};
  auto p = PlanStages(Uniform(8, 100), 3, o);  // 800 bytes over 3 × 250
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(std::string(p.status().message()).find("does not fit"), std::string::npos) << p.status();
  EXPECT_FALSE(PlanStages(Uniform(2, 1), 3, Fast()).ok());  // fewer layers than workers
  EXPECT_FALSE(PlanStages(Uniform(2, 1), 0, Fast()).ok());
  o.memory_bytes = {1, 2};
  EXPECT_FALSE(PlanStages(Uniform(4, 1), 3, o).ok());  // 2 budgets for 3 workers
}

TEST(StagePlanner, PlanFilesRoundTripAndAreValidated) {
  auto p = PlanStages(Uniform(8, 100), 3, Fast());
  ASSERT_TRUE(p.ok());
  p->model_fingerprint = 0xabcdef;
  test_support::ScopedTempDir tmp("accullm_stage_plan");  // not a fixed name other processes share
  const std::string path = tmp.Path("plan.json");
  ASSERT_TRUE(WriteStagePlanFile(path, *p).ok());
  auto back = ReadStagePlanFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->stages.size(), 3u);
  EXPECT_EQ(back->model_fingerprint, 0xabcdefu);
  for (size_t s = 0; s < 3; ++s) EXPECT_EQ(back->stages[s].layer_end, p->stages[s].layer_end);
  EXPECT_TRUE(ValidateStagePlan(*back, 8, 3, 0xabcdef).ok());
  EXPECT_FALSE(ValidateStagePlan(*back, 8, 2, 0xabcdef).ok());  // ranks mismatch
  EXPECT_FALSE(ValidateStagePlan(*back, 9, 3, 0xabcdef).ok());  // other model
  EXPECT_FALSE(ValidateStagePlan(*back, 8, 3, 0x1234).ok());    // other fingerprint

  const char* bad[] = {
      R"({"format":"x","version":1,"num_layers":8,"stages":[{"layer_begin":0,"layer_end":8}]})",
      R"({"format":"accullm-stage-plan","version":2,"num_layers":8,"stages":[{"layer_begin":0,"layer_end":8}]})",
      R"({"format":"accullm-stage-plan","version":1,"num_layers":8,"stages":[]})",
      R"({"format":"accullm-stage-plan","version":1,"num_layers":8,"stages":[{"layer_begin":0,"layer_end":4},{"layer_begin":5,"layer_end":8}]})",
      R"({"format":"accullm-stage-plan","version":1,"num_layers":8,"stages":[{"layer_begin":0,"layer_end":4},{"layer_begin":4,"layer_end":4}]})",
      R"({"format":"accullm-stage-plan","version":1,"num_layers":8,"stages":[{"layer_begin":0,"layer_end":7}]})",
      R"({"format":"accullm-stage-plan","version":1,"num_layers":8,"model_fingerprint":"zz","stages":[{"layer_begin":0,"layer_end":8}]})",
      R"([1,2])",
      R"({"format":"accullm-stage-plan")",
  };
  for (const char* text : bad) EXPECT_FALSE(StagePlanFromJson(text, "test").ok()) << text;
}

TEST(StagePlanner, ParsesSizes) {
  EXPECT_DOUBLE_EQ(*ParseByteSize("8GiB"), 8.0 * 1024 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(*ParseByteSize("512MiB"), 512.0 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(*ParseByteSize("1.5GB"), 1.5e9);
  EXPECT_DOUBLE_EQ(*ParseByteSize("1000"), 1000);
  for (const char* bad : {"", "GiB", "-1GiB", "8XB", "abc", "0"}) EXPECT_FALSE(ParseByteSize(bad).ok()) << bad;
  auto b = ParseMemoryBudgets("8GiB,4GiB", 2);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->size(), 2u);
  EXPECT_EQ(ParseMemoryBudgets("8GiB", 3)->size(), 3u);
  EXPECT_FALSE(ParseMemoryBudgets("8GiB,4GiB", 3).ok());
}

TEST(StagePlanner, SeventyBillionOnSixtyFourGpusFits) {
  // Llama-2-70B geometry, FP16, 64 workers of 80 GB: the planner spreads 80 layers.
  model::ModelConfig c;
  c.vocab_size = 32000, c.hidden_size = 8192, c.intermediate_size = 28672, c.num_layers = 80;
  c.num_heads = 64, c.num_kv_heads = 8, c.head_dim = 128;
  PlannerOptions o;
  o.memory_bytes = {80e9};
  o.kv_positions = 64 * 4096;
  o.memory_bandwidth = 3.35e12;
  o.flops = 700e12;
  o.link_bandwidth = 50e9;
  auto p = PlanStages(CostFromConfig(c, std::nullopt), 64, o);
  ASSERT_TRUE(p.ok()) << p.status();
  int64_t most = 0;
  for (const auto& s : p->stages) most = std::max(most, s.layer_end - s.layer_begin);
  EXPECT_LE(most, 2);
  // And on 1 GPU it is refused.
  EXPECT_FALSE(PlanStages(CostFromConfig(c, std::nullopt), 1, o).ok());
}

}  // namespace
}  // namespace accullm::sharding
