// Calibration: run the full-precision model over calibration text and collect, for every
// linear layer's input site, the statistics the quantizers need: the second-moment matrix
// H = Σ xᵀx (the Hessian of the layer's squared output error, as in OPTQ/GPTQ), the
// per-channel max |x|, and how often each channel exceeds the outlier threshold.
#pragma once

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "model/transformer.h"

namespace accullm::quant {

struct SiteStats {
  int64_t width = 0;
  int64_t rows = 0;
  std::vector<double> hessian;          // [width, width], symmetric, Σ over rows of x xᵀ (empty: not collected)
  std::vector<float> absmax;            // [width]
  std::vector<int64_t> over_threshold;  // [width] rows with |x| > outlier threshold
  // With a full-precision reference running beside a partly quantized model: C = Σ x xqᵀ
  // ([width, width], x from the reference, xq from the model), for input-mismatch correction.
  std::vector<double> cross;
};

struct CalibrationOptions {
  int64_t samples = 32;   // sequences
  int64_t seq_len = 512;  // tokens per sequence (BOS first)
  float outlier_threshold = 6.0f;
};

class CalibrationStats final : public model::ActivationObserver {
 public:
  // second_moments false: only the per-channel statistics (max |x|, threshold counts) are
  // kept, `hessian` stays empty: round to nearest reads nothing more, and Σ x xᵀ is most of
  // the collecting time (and 250 MB per site at TinyLlama's MLP width).
  CalibrationStats(ThreadPool* pool, float outlier_threshold, bool second_moments = true)
      : pool_(pool), threshold_(outlier_threshold), second_moments_(second_moments) {}
  void Observe(int64_t layer, model::LinearSite site, const float* x, int64_t rows, int64_t width) override;
  // Observe only one layer (-1: all). Sequential quantization re-collects one layer at a time.
  void set_layer_filter(int64_t layer) { layer_filter_ = layer; }
  // Forgets what was collected for `layer`.
  void Clear(int64_t layer);
  // The reference model's input at the same site for the rows about to be observed
  // (set per chunk by RunPairedCalibration); Observe then also accumulates `cross`.
  void set_reference_inputs(const std::map<int, std::vector<float>>* inputs) { reference_inputs_ = inputs; }

  // Null when the site was never observed.
  const SiteStats* Get(int64_t layer, model::LinearSite site) const;
  int64_t tokens() const { return tokens_; }
  void add_tokens(int64_t n) { tokens_ += n; }

 private:
  ThreadPool* pool_;
  float threshold_;
  bool second_moments_;
  int64_t tokens_ = 0;
  int64_t layer_filter_ = -1;
  const std::map<int, std::vector<float>>* reference_inputs_ = nullptr;
  std::map<std::pair<int64_t, int>, SiteStats> sites_;
};

// Cuts one token stream into `samples` chunks of seq_len (each starting with BOS), spread
// evenly over the stream so calibration sees all of the text.
std::vector<std::vector<int32_t>> MakeCalibrationChunks(const std::vector<int32_t>& stream, int32_t bos,
                                                        int64_t samples, int64_t seq_len);

// Runs the model over the chunks with `stats` observing.
absl::Status RunCalibration(model::Transformer& model, const std::vector<std::vector<int32_t>>& chunks,
                            CalibrationStats& stats);

// Sequential calibration one block at a time: each chunk's hidden states at the input of the
// next block, advanced through the blocks as they are (quantized or not). Observing block l
// runs block l alone: the statistics RunCalibration with a layer filter collects (the same
// operations on the same rows in the same order, tokens counted alike), without running the
// blocks before it again and those after it at all — GPTQ's sequential mode at the cost of
// two block passes per block instead of a forward pass of the whole model.
class BlockwiseCalibration {
 public:
  static absl::StatusOr<BlockwiseCalibration> Start(model::Transformer& model,
                                                    const std::vector<std::vector<int32_t>>& chunks);
  int64_t next_layer() const { return layer_; }
  // Adds block next_layer()'s input statistics to `stats` (that layer only).
  absl::Status Observe(CalibrationStats& stats);
  // Runs the hidden states through block next_layer() as it is now.
  absl::Status Advance();

 private:
  model::Transformer* model_ = nullptr;
  std::vector<std::vector<float>> hidden_;  // [chunk][tokens · hidden]
  std::vector<int64_t> tokens_;             // per chunk
  int64_t layer_ = 0;
};

// Runs `reference` (full precision) and `model` (partly quantized) over the same chunks and
// collects, for `layer` only, the model's statistics plus the cross moments with the
// reference's inputs at the same sites.
absl::Status RunPairedCalibration(model::Transformer& reference, model::Transformer& model, int64_t layer,
                                  const std::vector<std::vector<int32_t>>& chunks, CalibrationStats& stats);

}  // namespace accullm::quant
