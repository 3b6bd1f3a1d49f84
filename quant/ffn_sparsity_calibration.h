// Calibration of CATS activation sparsity (arXiv 2404.08763) at quantize time: per layer, the
// distribution of |SiLU(gate)| (what the mask thresholds) and of |SiLU(gate)·up| (what
// decides whether a neuron truly matters, the reference of recall) over calibration tokens ×
// FFN neurons, and the per-layer thresholds at a target sparsity: the quantiles at that
// share. Written into the pack's manifest ("sparsity", model/pack/manifest.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "model/pack/manifest.h"
#include "model/transformer.h"

namespace accullm::quant {

// Counts of non-negative floats binned by their bit pattern's top bits (exponent and the 9
// leading mantissa bits): exact counts, so a quantile lands in a bin of relative width 2^-9
// (0.2%), and interpolating linearly inside the bin is closer still. 2^17 bins, 1 MiB, fixed
// whatever the token count: cheaper than a sample and no sampling error.
class MagnitudeHistogram {
 public:
  MagnitudeHistogram();
  void Add(float magnitude);  // NaN and negative values are not counted (|x| of finite inputs never is)
  int64_t count() const { return count_; }
  // A value q with (about) `share` of the counted values <= q; 0 when share <= 0 or nothing
  // was counted.
  float Quantile(double share) const;

 private:
  static constexpr int kDroppedBits = 14;
  std::vector<int64_t> bins_;
  int64_t count_ = 0;
};

// Observes the FFN input of every layer (LinearSite::kMlpIn) and recomputes gate and up from
// it with the model's own linears (the same bits as its forward pass), binning |SiLU(gate)|
// and |SiLU(gate)·up|. Costs one extra gate+up per calibration token.
class FfnActivationStatistics : public model::ActivationObserver {
 public:
  FfnActivationStatistics(model::Transformer& model, ThreadPool& pool);
  void Observe(int64_t layer, model::LinearSite site, const float* x, int64_t rows, int64_t width) override;

  int64_t tokens() const { return tokens_; }
  // CATS's thresholds at `target` (share of neurons skipped per layer, [0, 1)): one
  // |SiLU(gate)| and one |SiLU(gate)·up| quantile per layer.
  model::PackSparsity Thresholds(double target) const;
  // The same at a share per layer (targets.size() == layers): `target` is their mean and
  // `layer_targets` records them.
  model::PackSparsity Thresholds(const std::vector<double>& targets) const;
  // The product rule at a share per layer: thresholds (and active_thresholds) the
  // |SiLU(gate)·up| quantiles, gate_thresholds the largest |SiLU(gate)| prefilter that still
  // keeps `prefilter_recall` of the neurons above them (1: no prefilter, gate thresholds 0),
  // estimated on a fixed sample of (|SiLU(gate)|, |SiLU(gate)·up|) pairs.
  model::PackSparsity ProductThresholds(const std::vector<double>& targets, double prefilter_recall) const;
  // The share of layer `layer`'s sampled neurons x tokens with |SiLU(gate)| <= threshold: what
  // a prefilter at that threshold skips of up (for the command's report).
  double SampledGateShareAtOrBelow(size_t layer, float threshold) const;

 private:
  // One neuron x token in kPairStride of each layer is kept as a pair for the prefilter:
  // 12.6M per layer on the default calibration set, so ~200k pairs (1.6 MB) each.
  static constexpr int64_t kPairStride = 61;
  struct MagnitudePair {
    float gate, product;
  };
  float PrefilterThreshold(size_t layer, float product_threshold, double recall) const;

  model::Transformer& model_;
  ThreadPool& pool_;
  std::vector<MagnitudeHistogram> gate_, product_;
  std::vector<std::vector<MagnitudePair>> pairs_;
  std::vector<int64_t> seen_;  // neuron x token values seen per layer (the stride's phase)
  std::vector<float> g_, u_;
  int64_t tokens_ = 0;  // counted at layer 0
};

// Several observers of one forward pass (one calibration pass feeds every statistic).
class ObserverFanout : public model::ActivationObserver {
 public:
  explicit ObserverFanout(std::vector<model::ActivationObserver*> observers) : observers_(std::move(observers)) {}
  void Add(model::ActivationObserver* o) { observers_.push_back(o); }
  void Observe(int64_t layer, model::LinearSite site, const float* x, int64_t rows, int64_t width) override {
    for (model::ActivationObserver* o : observers_) o->Observe(layer, site, x, rows, width);
  }

 private:
  std::vector<model::ActivationObserver*> observers_;
};

// Runs `model` over the chunks with `observer` watching.
absl::Status CollectFfnStatistics(model::Transformer& model, const std::vector<std::vector<int32_t>>& chunks,
                                  model::ActivationObserver& observer);

// Adds (or replaces) the "sparsity" object of the manifest in `pack_dir`, validated as a
// reader would, written to a temporary file and renamed over accullm.json.
absl::Status WritePackSparsity(const std::string& pack_dir, const model::PackSparsity& sparsity);

}  // namespace accullm::quant
