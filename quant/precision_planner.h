// The measured precision plan: each block's sensitivity is the mean KL divergence at the
// output when only that block is INT4 (everything else full precision), on calibration
// text; its outlier score is the largest calibration |x| at its inputs over the outlier
// threshold. The most sensitive blocks stay FP16 within the budget.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/transformer.h"
#include "quant/calibration.h"
#include "quant/model_quantizer.h"
#include "sharding/precision_plan.h"

namespace accullm::quant {

struct LayerSensitivity {
  int64_t layer = 0;
  double kl = 0;             // mean KL(full || block-INT4) over scored positions
  double outlier_score = 0;  // max |x| at the block's inputs / outlier threshold
  int64_t fp16_bytes = 0;    // the block's linear weights in FP16
  int64_t int4_bytes = 0;    // ... and as INT4 with scales, zeros and outlier columns
};

// Evaluates each block INT4-alone on `chunks` (each scored on its second half).
absl::StatusOr<std::vector<LayerSensitivity>> MeasureSensitivity(Transformer& model, const CalibrationStats& stats,
                                                                 const ModelQuantOptions& options,
                                                                 const std::vector<std::vector<int32_t>>& chunks,
                                                                 ThreadPool& pool, const ProgressFn& progress = nullptr);

struct PlanBudget {
  int64_t fp16_layers = -1;  // exact count of FP16 blocks (>= 0), or
  double avg_bits = 0;       // > 0: average bits per block-linear weight at most this
};

// Ranks blocks by sensitivity (outlier score breaks ties) and keeps the top ones FP16.
absl::StatusOr<PrecisionPlan> ChoosePlan(const std::vector<LayerSensitivity>& sensitivity, const PlanBudget& budget);

// Average bits per block-linear weight of a plan.
double AverageBits(const std::vector<LayerSensitivity>& sensitivity, const PrecisionPlan& plan);

}  // namespace accullm::quant
