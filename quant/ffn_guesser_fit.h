// Fits the trained FFN guesser (model/ffn_guesser.h) at quantize time, in two passes over the
// calibration text run through the written pack:
//  1. FfnInputCovariance accumulates C_l = Σ x xᵀ of every layer's FFN input x.
//  2. FitFfnGuesser: the pack's own gate and up of layer l are linear in x, y = B_lᵀ x with
//     B_l [hidden, 2·inter] read off the linears by running the unit vectors through them (the
//     same kernels as inference, so quantized weights and outlier columns are what is fitted).
//     The rank-r map minimising Σ‖y − ŷ‖² over the calibration inputs is reduced-rank
//     regression: with C = L Lᵀ (Cholesky), Z = Lᵀ B and the top r eigenvectors U_r of Z Zᵀ
//     (eigenvalues σ²), V_r = Zᵀ U_r σ⁻¹ and ŷ = V_r (B V_r)ᵀ x. Stored as in = (B V_r)ᵀ and
//     out = V_r, both F16 (Eigen does the linear algebra).
//  3. GuesserScoreStatistics (a second pass with the guesser installed) bins the predicted
//     scores |SiLU(ĝ)·û| per layer; the threshold at a target is their quantile, so the guesser
//     skips that share of neurons on the calibration tokens, as CATS's thresholds do.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "model/ffn_guesser.h"
#include "model/transformer.h"
#include "quant/ffn_sparsity_calibration.h"

namespace accullm::quant {

class FfnInputCovariance : public model::ActivationObserver {
 public:
  explicit FfnInputCovariance(const model::ModelConfig& config);
  ~FfnInputCovariance() override;
  void Observe(int64_t layer, model::LinearSite site, const float* x, int64_t rows, int64_t width) override;
  int64_t tokens() const { return tokens_; }
  // Lower triangle of Σ x xᵀ (row-major [hidden, hidden], doubles) of `layer`.
  const std::vector<double>& lower(int64_t layer) const { return sums_[static_cast<size_t>(layer)]; }

 private:
  int64_t hidden_ = 0;
  std::vector<std::vector<double>> sums_;
  int64_t tokens_ = 0;
};

// Stored bytes of every block's FFN (gate, up and down), summed over the blocks.
size_t FfnWeightBytes(const model::Transformer& pack);

// The largest rank whose F16 guesser costs at most `byte_share` of the FFN's stored bytes
// (gate, up and down, the mean over layers; the guesser must stay cheap against what it
// saves), at least 1 and at most the hidden size.
int64_t DefaultGuesserRank(const model::Transformer& pack, double byte_share);

// Fits every layer's rank-`rank` guesser from `covariance` and the pack's gate and up, and
// writes them to `pack_dir`/model::kGuesserFile (atomically).
absl::Status FitFfnGuesser(model::Transformer& pack, const FfnInputCovariance& covariance, int64_t rank,
                           const std::string& pack_dir, ThreadPool& pool);

// Bins the guesser's scores of every layer's FFN input (|SiLU(ĝ)·û|).
class GuesserScoreStatistics : public model::ActivationObserver {
 public:
  GuesserScoreStatistics(const model::FfnGuesser& guesser, const model::ModelConfig& config, ThreadPool& pool);
  void Observe(int64_t layer, model::LinearSite site, const float* x, int64_t rows, int64_t width) override;
  // The per-layer score thresholds that skip `target` of the neurons.
  std::vector<float> Thresholds(double target) const;
  // Layer `layer`'s threshold alone (a share per layer: `quantize --sparsity auto`).
  float Threshold(size_t layer, double target) const { return scores_[layer].Quantile(target); }

 private:
  const model::FfnGuesser& guesser_;
  ThreadPool& pool_;
  int64_t inter_ = 0;
  std::vector<MagnitudeHistogram> scores_;
  std::vector<float> buffer_;
};

}  // namespace accullm::quant
