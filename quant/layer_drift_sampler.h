// Sampled layer error against the full-precision weights (drift monitoring while serving): for
// a sampled fraction of forward passes, every linear of the layers this process runs gets its
// input row (the pass's last row: one token) multiplied twice, by the served weights and by
// the full-precision ones from `--reference DIR` (mmap'd: a sampled pass reads those layers'
// full-precision weights once, nothing is kept resident), and the relative error
// ||y_served - y_full|| / ||y_full|| is kept per (layer, linear). A quantized layer that
// drifts (corrupted steps, a kernel that miscomputes on this CPU) shows as that layer's error
// rising while the others stay put.
//
// It is the model's ActivationObserver: it runs on the forward pass's thread, between ops.
// Which passes are sampled is a counter-based draw (hash of the pass count), so the cost is
// spread evenly and the same run samples the same passes.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "model/linear.h"
#include "model/safetensors.h"
#include "model/transformer.h"

namespace accullm::quant {

struct LinearDrift {
  int64_t layer = 0;
  std::string linear;  // q k v o gate up down
  // Relative error, moving average over the sampled rows (weight 1/8 for each new row, the
  // first row taken as is): one token's error varies from token to token; a drift moves it.
  double error = 0;
  uint64_t samples = 0;
};

class LayerDriftSampler final : public model::ActivationObserver {
 public:
  // `reference_dir`: the full-precision checkpoint `model` was made from; every block linear
  // must be there with the served linear's shape (checked from the headers: nothing paged in).
  static absl::StatusOr<std::unique_ptr<LayerDriftSampler>> Create(model::Transformer& model,
                                                                   const std::string& reference_dir, double sample_rate,
                                                                   ThreadPool* pool);

  void Observe(int64_t layer, model::LinearSite site, const float* x, int64_t rows, int64_t width) override;

  // Every (layer, linear) sampled so far, by layer then linear.
  std::vector<LinearDrift> Snapshot() const;
  // Sampled rows so far (per layer: each layer samples the same passes).
  uint64_t sampled_passes() const;

 private:
  LayerDriftSampler(model::Transformer& model, double rate, ThreadPool* pool)
      : model_(model), rate_(rate), pool_(pool) {}
  void Compare(int64_t layer, int linear, const model::LinearOp& served, const float* x);

  model::Transformer& model_;
  double rate_;
  ThreadPool* pool_;
  std::unique_ptr<model::TensorStore> reference_;
  std::vector<std::vector<model::TensorView>> weights_;  // [layer][linear]
  std::vector<uint64_t> passes_;                         // per layer: passes seen (forward thread only)
  std::vector<char> sampling_;                           // per layer: its current pass is sampled
  std::vector<float> served_out_, full_out_;
  mutable std::mutex mu_;
  std::vector<std::vector<LinearDrift>> drift_;  // [layer][linear], guarded by mu_
};

}  // namespace accullm::quant
