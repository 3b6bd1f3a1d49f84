#include "cli/serve_metrics_setup.h"

#include <array>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/build_info.h"
#include "sharding/precision_plan.h"

namespace accullm::cli {

namespace {

// Parameters of each block linear, in sharding::kBlockLinearNames order.
std::array<double, sharding::kBlockLinears> BlockLinearParams(const model::ModelConfig& c) {
  const double h = static_cast<double>(c.hidden_size), i = static_cast<double>(c.intermediate_size);
  const double q = static_cast<double>(c.num_heads * c.head_dim), kv = static_cast<double>(c.num_kv_heads * c.head_dim);
  return {h * q, h * kv, h * kv, q * h, h * i, h * i, i * h};
}

// "int4x20 fp16x2 head=int6 embed=fp16" for a pack; "checkpoint" otherwise.
std::string PrecisionLabel(const model::Transformer& model) {
  if (!model.pack().has_value()) return "checkpoint";
  const model::PackManifest& p = *model.pack();
  int64_t fp16 = 0;
  std::set<int> widths;
  for (size_t l = 0; l < p.layer_precision.size(); ++l) {
    if (p.layer_precision[l] == "fp16") {
      ++fp16;
      continue;
    }
    for (const char* name : sharding::kBlockLinearNames) {
      const std::string prefix = absl::StrCat("model.layers.", l, ".", name);
      if (p.fp16_linears.count(prefix) == 0) widths.insert(p.BitsOf(prefix));
    }
  }
  std::string bits;
  for (int w : widths) absl::StrAppend(&bits, bits.empty() ? "" : ",", w);
  return absl::StrCat("lowbit_blocks=", static_cast<int64_t>(p.layer_precision.size()) - fp16, " fp16_blocks=", fp16,
                      " bits=", bits.empty() ? "none" : bits, " fp16_linears=", p.fp16_linears.size(),
                      " head=", p.lm_head, " embed=", p.embeddings);
}

}  // namespace

double LowBitWeightFraction(const model::Transformer& model) {
  if (!model.pack().has_value()) return 0;
  const model::PackManifest& p = *model.pack();
  const auto params = BlockLinearParams(model.config());
  double low = 0, all = 0;
  for (size_t l = 0; l < p.layer_precision.size(); ++l) {
    for (int k = 0; k < sharding::kBlockLinears; ++k) {
      all += params[k];
      const std::string prefix = absl::StrCat("model.layers.", l, ".", sharding::kBlockLinearNames[k]);
      if (p.layer_precision[l] != "fp16" && p.fp16_linears.count(prefix) == 0) low += params[k];
    }
  }
  return all > 0 ? low / all : 0;
}

std::vector<monitoring::LayerErrorSample> LayerErrorSamples(const quant::LayerDriftSampler& drift) {
  std::vector<monitoring::LayerErrorSample> out;
  for (const quant::LinearDrift& d : drift.Snapshot()) out.push_back({d.layer, d.linear, d.error});
  return out;
}

std::vector<monitoring::FfnLayerCount> FfnCounts(const model::Transformer& model) {
  std::vector<monitoring::FfnLayerCount> out;
  const std::vector<model::FfnSparsityCounts> counts = model.ffn_sparsity_counts();
  for (size_t l = 0; l < counts.size(); ++l) {
    if (counts[l].total == 0) continue;  // another stage's layer, or none yet
    out.push_back({static_cast<int64_t>(l), static_cast<uint64_t>(counts[l].total),
                   static_cast<uint64_t>(counts[l].total - counts[l].kept), static_cast<uint64_t>(counts[l].active),
                   static_cast<uint64_t>(counts[l].kept_active)});
  }
  return out;
}

void SetStartupMetrics(const model::Transformer& model, monitoring::ServingMetrics& metrics) {
  metrics.SetBuildInfo(BuildInfoLabels());
  metrics.SetModelInfo(static_cast<double>(model.weight_bytes_per_token()), LowBitWeightFraction(model),
                       model.pack().has_value() ? "pack" : "checkpoint", PrecisionLabel(model));
}

void ExportPipelineOnScrape(const pipeline::PipelineExecutor& executor, monitoring::ServingMetrics& metrics) {
  metrics.set_before_scrape([&executor, &metrics] {
    const bool up = !executor.failed();
    const std::vector<pipeline::StageStats> stages = executor.stage_stats();
    for (size_t s = 0; s < stages.size(); ++s)
      metrics.SetStage(static_cast<int>(s), up, stages[s].heartbeat_age_seconds);
    metrics.micro_batches_in_flight().Set(static_cast<double>(executor.micro_batches_in_flight()));
  });
}

}  // namespace accullm::cli
