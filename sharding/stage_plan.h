// The layer → pipeline-stage assignment: a per-layer cost model (weight bytes streamed and
// FLOPs per token, by precision), per-worker memory budgets, and contiguous layer ranges
// (embedding with the first stage, final norm + LM head with the last) chosen so that the
// slowest stage is as fast as possible while every stage fits its memory. Exact: dynamic
// programming over (stage, first layer), O(workers × layers²).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/kv_row_format.h"
#include "model/model_config.h"
#include "sharding/precision_plan.h"

namespace accullm::model {
class Transformer;
}  // namespace accullm::model

namespace accullm::sharding {

struct LayerCost {
  double weight_bytes = 0;     // read once per forward step
  double flops_per_token = 0;  // 2 × multiply-adds of the linears
  double kv_bytes_per_position = 0;
};

struct ModelCost {
  std::vector<LayerCost> layers;
  double embed_bytes = 0;  // held by the first stage (read: one row per token)
  double head_bytes = 0;   // final norm + LM head, held by the last stage
  double head_flops_per_token = 0;
  double activation_bytes_per_token = 0;  // one hidden row on the wire (F32)
};

// From a loaded model: LinearOp::weight_bytes() of every linear (exact for packs: low-bit
// codes + scales + FP16 outliers; F32/F16/BF16 checkpoints as stored), and the KV bytes of
// rows stored as `kv_dtype` (model::KvBytesPerPosition, the stages' own rule).
ModelCost CostFromModel(model::Transformer& model, kernels::KvDType kv_dtype);
// From a config alone (sizing clusters for models not at hand): FP16 layers 2 bytes per
// weight, low-bit layers 0.5 + 2/group (4-bit codes and F16 scales: the plan's per-linear
// widths are not counted); no plan = all FP16.
ModelCost CostFromConfig(const model::ModelConfig& c, const std::optional<PrecisionPlan>& plan,
                         int64_t group_size = 64);

struct PlannerOptions {
  std::vector<double> memory_bytes;  // per worker; one value = the same for all
  int64_t kv_positions = 0;          // KV cache positions each stage must hold (all sequences)
  int64_t tokens_per_step = 1;       // rows of a typical micro-batch (decode: one per sequence)
  double memory_bandwidth = 20e9;    // bytes/s a worker streams weights at
  double flops = 200e9;              // FLOP/s a worker sustains
  double link_bandwidth = 1.25e9;    // bytes/s between stages (10 Gb/s)
};

struct StageAssignment {
  int64_t layer_begin = 0, layer_end = 0;
  double weight_bytes = 0;  // layers (+ embedding / head where held)
  double kv_bytes = 0;
  double memory_bytes = 0;  // weight_bytes + kv_bytes
  double budget_bytes = 0;
  double step_seconds = 0;  // modelled time of one micro-batch on this stage (compute + send)
};

struct StagePlan {
  int64_t num_layers = 0;
  uint64_t model_fingerprint = 0;  // 0: not bound to a model
  std::vector<StageAssignment> stages;
  double bottleneck_seconds() const;
};

absl::StatusOr<StagePlan> PlanStages(const ModelCost& cost, int workers, const PlannerOptions& options);
// Even split by layer count (no budgets): the default when serve gets neither plan nor budgets.
StagePlan EvenStagePlan(int64_t num_layers, int workers);

// Checks a plan against a model: contiguous non-empty ranges covering [0, num_layers),
// the expected number of stages, and the fingerprint when both are set.
absl::Status ValidateStagePlan(const StagePlan& plan, int64_t num_layers, int workers, uint64_t fingerprint);

// Identity of a model's geometry (wire handshake and plan files): FNV-1a over the config.
uint64_t ModelFingerprint(const model::ModelConfig& c);

std::string FormatStagePlan(const StagePlan& plan);  // the table `accullm plan --workers` prints
std::string StagePlanToJson(const StagePlan& plan);
absl::StatusOr<StagePlan> StagePlanFromJson(const std::string& text, const std::string& what);
absl::Status WriteStagePlanFile(const std::string& path, const StagePlan& plan);
absl::StatusOr<StagePlan> ReadStagePlanFile(const std::string& path);

// "8GiB", "512MiB", "1.5GB", "1000000" → bytes.
absl::StatusOr<double> ParseByteSize(const std::string& text);
// "8GiB,4GiB" → per worker; one value repeats for every worker.
absl::StatusOr<std::vector<double>> ParseMemoryBudgets(const std::string& text, int workers);

}  // namespace accullm::sharding
