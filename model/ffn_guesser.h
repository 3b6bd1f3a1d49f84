// The trained FFN guesser (sparsity predictor "lowrank", model/pack/manifest.h): per layer, a
// rank-r map from the FFN input x (after RMSNorm) to a prediction of gate and up,
//   [ĝ; û] = out_l · (in_l · x),  in_l: F16 [r, hidden],  out_l: F16 [2·inter, r],
// and a neuron j is predicted active when |SiLU(ĝ_j)·û_j| > threshold_l. Unlike CATS it needs
// no dense gate, so a sparse kernel can skip gate rows too. quant/ffn_guesser_fit.h fits it
// (reduced-rank regression of the pack's own gate and up on calibration inputs).
// Stored F16 in the pack. At load, `out` (2·inter × r: ~75% of the guesser's bytes at
// TinyLlama's shape in INT8) is requantized to integer codes with one F32 step per row
// (kernels/cpu/scaled_rows.h) at the manifest's `guesser_out_bits`: 8 (packs before the field)
// reads 1 + 2/r bytes per weight instead of F16's 2, 4 (what quantize writes by default) half
// a byte + 2/r. `in` stays F16 (DenseLinear): the FFN input has outlier channels a per-row
// step of `in` would blur, and it is the smaller product. Quantize computes the thresholds
// through this same Scores (FfnGuesser::Load, then GuesserScoreStatistics) at the bits it
// records, and the integer kernels' arithmetic is fixed across ISA levels, so a pack skips its
// target share at run time.
// Both products are batch-invariant and the score is elementwise, so a row's prediction
// never depends on the batch it came in.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "kernels/cpu/scaled_rows.h"
#include "model/ffn_neuron_selector.h"
#include "model/linear.h"
#include "model/model_config.h"
#include "model/pack/manifest.h"
#include "model/safetensors.h"

namespace accullm::model {

// Tensor names in kGuesserFile.
std::string GuesserInName(int64_t layer);   // "model.layers.L.mlp.guesser.in"
std::string GuesserOutName(int64_t layer);  // "model.layers.L.mlp.guesser.out"

class FfnGuesser {
 public:
  // Opens `dir`/kGuesserFile and checks every layer's two tensors: present, F16, shaped
  // [rank, hidden] and [2·intermediate, rank], finite; refusals name the file and tensor.
  static absl::StatusOr<std::unique_ptr<FfnGuesser>> Load(const std::string& dir, const ModelConfig& config,
                                                          const PackSparsity& sparsity);

  int64_t rank() const { return rank_; }
  int64_t intermediate_size() const { return inter_; }
  // Bytes of the guesser's weights as a decode step reads them (F16 `in`, 8- or 4-bit `out` with its
  // steps; the pack file holds `out` in F16: 2·inter·r bytes more per layer).
  size_t weight_bytes() const;

  // predicted [n, 2·inter]: row r's ĝ (first inter) then û, for rows r < n of x [n, hidden].
  void Predict(int64_t layer, const float* x, int64_t n, float* predicted, ThreadPool& pool) const;
  // scores[r·inter + j] = |SiLU(ĝ_j)·û_j| (SiluMulMasked's product: +0 where SiLU(ĝ_j) is NaN).
  void Scores(int64_t layer, const float* x, int64_t n, float* scores, ThreadPool& pool) const;

 private:
  struct Layer {
    std::unique_ptr<DenseLinear> in;
    kernels::ScaledRows out;
  };
  std::unique_ptr<SafetensorsFile> file_;  // the tensors' bytes
  std::vector<Layer> layers_;
  int64_t rank_ = 0, inter_ = 0;
};

// The guesser as the transformer's neuron selector: row r keeps the neurons whose score is
// above the layer's threshold (the manifest's "thresholds": quantiles of the scores).
class GuesserNeuronSelector final : public FfnNeuronSelector {
 public:
  GuesserNeuronSelector(std::shared_ptr<const FfnGuesser> guesser, std::vector<float> thresholds)
      : guesser_(std::move(guesser)), thresholds_(std::move(thresholds)) {}
  absl::Status Select(int64_t layer, const float* x, int64_t n, ThreadPool& pool, FfnKeptSets& out) const override;

 private:
  std::shared_ptr<const FfnGuesser> guesser_;
  std::vector<float> thresholds_;
};

}  // namespace accullm::model
