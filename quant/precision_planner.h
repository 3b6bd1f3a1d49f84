// The measured precision plan: each block's sensitivity is the mean KL divergence at the
// output when only that block is INT4 (everything else full precision), on calibration
// text, and each linear's is the same with only that linear INT4; a block's outlier score is
// the largest calibration |x| at its inputs over the outlier threshold. Within the budget the
// plan keeps FP16 what buys the most KL per weight: single linears by default (measured KL is
// close to additive over linears, and the sensitive ones — early MLPs, late blocks' V and
// MLPs — are spread over several blocks), or whole blocks with --fp16-layers N.
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

struct LinearSensitivity {
  int linear = 0;  // index into kBlockLinearNames
  double kl = 0;   // mean KL(full || only-this-linear-INT4)
  int64_t params = 0;
  int64_t fp16_bytes = 0;
  int64_t four_bit_bytes = 0;  // stored with 4-bit codes (as measured), scales, zeros and outlier columns
  // Stored bytes with `bits`-bit codes (16 = FP16): only the codes change with the width.
  int64_t BytesAt(int bits) const { return bits >= 16 ? fp16_bytes : four_bit_bytes + params * (bits - 4) / 8; }
  // Predicted KL with `bits`-bit codes: measured at 4 bits, scaled by KlScaleForBits.
  double KlAt(int bits) const;
};

// How a linear's KL scales with its code width, relative to 4 bits. Each extra bit halves the
// step, so the rounding error's energy — and, for small errors, the KL — falls 4x; 3 bits
// lose a little more (coarse grids also clip). Measured on the fixture with every block
// linear at one width (GPTQ g32, fractional zeros, 40 chunks): 3 bits 4.45x, 5 bits 0.24x,
// 6 bits 0.061x the 4-bit KL (docs/accuracy.md). 16 = FP16: 0.
double KlScaleForBits(int bits);

struct LayerSensitivity {
  int64_t layer = 0;
  double kl = 0;                           // mean KL(full || block-INT4) over scored positions
  double outlier_score = 0;                // max |x| at the block's inputs / outlier threshold
  int64_t fp16_bytes = 0;                  // the block's linear weights in FP16
  int64_t four_bit_bytes = 0;              // ... with 4-bit codes (as measured), scales, zeros, outliers
  std::vector<LinearSensitivity> linears;  // per linear (empty when not measured)
};

// Evaluates each block INT4-alone on `chunks` (each scored on its second half) and, with
// `per_linear`, each of its linears INT4-alone.
absl::StatusOr<std::vector<LayerSensitivity>> MeasureSensitivity(model::Transformer& model,
                                                                 const CalibrationStats& stats,
                                                                 const ModelQuantOptions& options,
                                                                 const std::vector<std::vector<int32_t>>& chunks,
                                                                 ThreadPool& pool, const ProgressFn& progress = nullptr,
                                                                 bool per_linear = true);

struct PlanBudget {
  int64_t fp16_layers = -1;  // exact count of FP16 blocks (>= 0), or
  double fp16_share = 0;     // > 0: at most this share of block-linear weights FP16, chosen per linear, or
  double avg_bits = 0;       // > 0: average bits per block-linear weight at most this (per linear when measured)
  // avg_bits plans: the code widths a linear may get (besides FP16). {4}: FP16 or INT4 only.
  std::vector<int> widths = {3, 4, 5, 6, 8};
};

// Block budget: ranks blocks by sensitivity (outlier score breaks ties), the top ones FP16.
// Share budget: ranks linears by KL saved per weight and keeps FP16 every one that still fits.
// Bits budget: gives each linear a width from `widths` or FP16, minimising the predicted KL
// Σ KlAt(bits) under the bit budget (Lagrangian: every linear takes the width that minimises
// KL + λ·bits, λ the smallest that fits; then single upgrades by KL saved per bit while they
// fit).
absl::StatusOr<sharding::PrecisionPlan> ChoosePlan(const std::vector<LayerSensitivity>& sensitivity,
                                                   const PlanBudget& budget);

// Share of block-linear weights a plan stores in integer codes of at most 4 bits (by parameter
// count): the "INT4 share". Not the low-bit share: 5..8-bit linears do not count.
double AtMost4BitShare(const std::vector<LayerSensitivity>& sensitivity, const sharding::PrecisionPlan& plan);

// Average bits per block-linear weight of a plan.
double AverageBits(const std::vector<LayerSensitivity>& sensitivity, const sharding::PrecisionPlan& plan);

}  // namespace accullm::quant
