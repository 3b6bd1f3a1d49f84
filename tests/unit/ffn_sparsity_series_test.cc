// The FFN sparsity series on a stage rank's /metrics (the same series rank 0 serves): every
// layer's neurons, skipped, and the sampled-recall counters (active, kept_active), advanced by
// the difference between snapshots, so the exported recall is kept_active / active of what the
// model counted.
#include <string>

#include "gtest/gtest.h"
#include "monitoring/stage_metrics.h"

namespace accullm::monitoring {
namespace {

// The value of the exposition line that starts with `series` (-1 when absent).
double ValueOf(const std::string& text, const std::string& series) {
  const size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

TEST(FfnSparsitySeriesTest, ExportsRecallCountersPerLayerAsCumulativeCounts) {
  StageMetrics metrics("m", 1);
  StageSnapshot s;
  s.stage = 1;  // the series exist once the hello named the stage
  s.ffn = {{.layer = 2, .neurons = 1000, .skipped = 500, .active = 300, .kept_active = 270},
           {.layer = 3, .neurons = 1000, .skipped = 400, .active = 0, .kept_active = 0}};
  std::string text = metrics.Render(s);
  EXPECT_EQ(ValueOf(text, "accullm_ffn_recall_active_total{layer=\"2\",model_name=\"m\"}"), 300);
  EXPECT_EQ(ValueOf(text, "accullm_ffn_recall_kept_active_total{layer=\"2\",model_name=\"m\"}"), 270);
  // A layer with no sampled token yet still has its series (at 0): the ratio is then NaN,
  // not a missing series.
  EXPECT_EQ(ValueOf(text, "accullm_ffn_recall_active_total{layer=\"3\",model_name=\"m\"}"), 0);
  s.ffn[0].active = 500;
  s.ffn[0].kept_active = 460;
  s.ffn[1].active = 100;
  s.ffn[1].kept_active = 99;
  text = metrics.Render(s);
  EXPECT_EQ(ValueOf(text, "accullm_ffn_recall_active_total{layer=\"2\",model_name=\"m\"}"), 500);
  EXPECT_EQ(ValueOf(text, "accullm_ffn_recall_kept_active_total{layer=\"2\",model_name=\"m\"}"), 460);
  EXPECT_EQ(ValueOf(text, "accullm_ffn_recall_kept_active_total{layer=\"3\",model_name=\"m\"}"), 99);
  EXPECT_EQ(ValueOf(text, "accullm_ffn_neurons_skipped_total{layer=\"2\",model_name=\"m\"}"), 500);
}

}  // namespace
}  // namespace accullm::monitoring
