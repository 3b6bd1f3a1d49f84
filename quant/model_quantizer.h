// Quantizing a loaded model in place: the blocks the precision plan marks low-bit get their
// linears (all seven, less those the plan keeps FP16) quantized (with outlier input channels kept in FP16) and replaced
// by LowBitLinear ops, so the same Transformer can be evaluated at once and then written as a pack.
#pragma once

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/int8_linear.h"
#include "model/transformer.h"
#include "quant/calibration.h"
#include "quant/low_bit_quantizer.h"
#include "sharding/precision_plan.h"

namespace accullm::quant {

struct OutlierOptions {
  bool enabled = true;
  float threshold = 6.0f;      // |x| above this in calibration marks a channel (LLM.int8())
  double max_fraction = 0.03;  // at most this share of a layer's input channels
  double top_fraction = 0.0;   // > 0: the top share by max |x|, whatever the threshold
};

struct ModelQuantOptions {
  QuantOptions quant;
  OutlierOptions outliers;
  // Token embeddings: 0 = full precision, 3..8 = group-wise codes of that width
  // (round to nearest with range search: a lookup table has no input statistics).
  int embedding_bits = 0;
  // LM head: 0 = full precision, 3..7 = group-wise (the chosen method, on the final hidden
  // states), 8 = INT8 with one step per row (round to nearest).
  int lm_head_bits = 0;
  // The blocks' mlp.down_proj group (along its intermediate-size inputs): 0 = quant.group_size.
  // A sparse FFN touches every group of down at common shares and pays each group's steps,
  // zeros and float epilogue per output, so a larger group there is cheaper (docs/accuracy.md,
  // "Down at group 128").
  int64_t down_group_size = 0;
  // Sequential runs only: aim each block's weights at the full-precision layer's output on its
  // own inputs (not on the already-quantized upstream's inputs), via the cross moments.
  bool correct_input_mismatch = false;
};

// What the quantizer reads from calibration. Round to nearest reads nothing unless outlier
// channels are chosen (per-channel max |x|) or input-mismatch correction is on (second and
// cross moments); GPTQ and GPFQ read the second moments (Hessians). A measured precision plan
// needs calibration whatever this says (it runs the model on the calibration text).
struct CalibrationNeeds {
  bool any = true;             // some statistic is read: run the calibration passes
  bool second_moments = true;  // Hessians Σ x xᵀ (the costly part of collecting)
};
CalibrationNeeds CalibrationNeedsOf(const ModelQuantOptions& options);

// The seven linears of a block, with the site whose statistics they use.
struct BlockLinear {
  const char* name;  // e.g. "self_attn.q_proj"
  model::LinearSite site;
  std::unique_ptr<model::LinearOp> model::TransformerLayer::*op;
};
const std::vector<BlockLinear>& BlockLinears();
std::string LinearPrefix(int64_t layer, const BlockLinear& l);  // "model.layers.3.self_attn.q_proj"

using QuantizedMatrices = std::map<std::string, std::shared_ptr<const QuantizedMatrix>>;
using Int8Matrices = std::map<std::string, std::shared_ptr<const model::Int8Quantized>>;

std::vector<int32_t> SelectOutlierChannels(const SiteStats& stats, const OutlierOptions& options);

// Float weights [out, in] of a linear from the model's checkpoint.
absl::StatusOr<std::vector<float>> LinearWeights(const model::Transformer& model, const std::string& prefix);

// A LowBitLinear over `m` (kept alive by the op), with the checkpoint's bias if any.
// `accumulator_bits`: the guarantee `m` was quantized under (QuantOptions::accumulator_bits;
// 0: none), as a pack records it, so an in-process model takes the same kernels (AXE's
// 16-bit path) as the pack loaded from disk.
absl::StatusOr<std::unique_ptr<model::LinearOp>> MakeLowBitLinear(const model::Transformer& model,
                                                                  const std::string& prefix,
                                                                  std::shared_ptr<const QuantizedMatrix> m,
                                                                  int accumulator_bits);

// Which of a block's linears (kBlockLinearNames order) to quantize.
using LinearMask = std::array<bool, sharding::kBlockLinears>;
// The code width of each of a block's linears.
using LinearBits = std::array<int, sharding::kBlockLinears>;

// Quantizes block `layer` (only the linears `which` marks; null: all seven; `bits` gives their
// code widths, null: options.quant.bits), installs the quantized
// ops and returns the displaced ones, null where a linear was left alone (so a caller
// measuring sensitivity can put them back with RestoreBlock).
absl::StatusOr<std::vector<std::unique_ptr<model::LinearOp>>> QuantizeBlock(
    model::Transformer& model, int64_t layer, const CalibrationStats& stats, const ModelQuantOptions& options,
    ThreadPool& pool, QuantizedMatrices* out, const LinearMask* which = nullptr, const LinearBits* bits = nullptr);
void RestoreBlock(model::Transformer& model, int64_t layer, std::vector<std::unique_ptr<model::LinearOp>> ops);

using ProgressFn = std::function<void(int64_t done, int64_t total, const std::string& what)>;

// Quantizes every low-bit block of the plan. With `sequential_chunks` (non-empty), each block's
// statistics are re-collected just before it is quantized, from the calibration text run
// through the blocks already quantized, so each block corrects for the error upstream of it
// (as GPTQ's reference implementation does); `stats` is updated in place. Nothing is
// re-collected when the options read no statistics (CalibrationNeedsOf).
// `reference` (may be null): a full-precision copy of the model, needed for input-mismatch
// correction in sequential runs.
absl::StatusOr<QuantizedMatrices> QuantizeModel(model::Transformer& model, CalibrationStats& stats,
                                                const sharding::PrecisionPlan& plan, const ModelQuantOptions& options,
                                                ThreadPool& pool,
                                                const std::vector<std::vector<int32_t>>& sequential_chunks = {},
                                                const ProgressFn& progress = nullptr,
                                                model::Transformer* reference = nullptr);

// w* = w + w·Δ·(H + λI)⁻¹ with Δ = C − H: the weights whose output on the quantized model's
// inputs (H = Σ x̃x̃ᵀ) best matches the full-precision layer on its own inputs (C = Σ x x̃ᵀ).
// Returns B = Δ (H + λI)⁻¹ [in, in]; λ = dampening × mean diag(H).
// Rows of B in parallel over `pool` (null: one thread); the result does not depend on it.
absl::StatusOr<std::vector<double>> InputMismatchCorrection(const SiteStats& stats, double dampening,
                                                            ThreadPool* pool = nullptr);

// Quantizes the token embeddings and/or the LM head as the options ask, installs them in the
// model and adds them to `out` (keys "model.embed_tokens", "lm_head"). Run after the blocks:
// with `sequential_chunks`, the head's input statistics are re-collected on the quantized model.
absl::Status QuantizeEmbeddingsAndHead(model::Transformer& model, CalibrationStats& stats,
                                       const ModelQuantOptions& options, ThreadPool& pool,
                                       const std::vector<std::vector<int32_t>>& sequential_chunks,
                                       QuantizedMatrices* out, Int8Matrices* out8 = nullptr);

}  // namespace accullm::quant
