#include "quant/layer_drift_sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "sharding/precision_plan.h"

namespace accullm::quant {

namespace {

// SplitMix64's finaliser: the pass count to a uniform draw in [0, 1).
double Uniform(uint64_t n) {
  uint64_t z = n + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

const model::LinearOp* LinearOf(model::TransformerLayer& l, int index) {
  const std::unique_ptr<model::LinearOp>* ops[] = {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down};
  return ops[index]->get();
}

}  // namespace

absl::StatusOr<std::unique_ptr<LayerDriftSampler>> LayerDriftSampler::Create(model::Transformer& model,
                                                                             const std::string& reference_dir,
                                                                             double sample_rate, ThreadPool* pool) {
  if (!(sample_rate > 0 && sample_rate <= 1))
    return absl::InvalidArgumentError(absl::StrCat("drift sample rate ", sample_rate, " outside (0, 1]"));
  std::unique_ptr<LayerDriftSampler> s(new LayerDriftSampler(model, sample_rate, pool));
  auto store = model::TensorStore::OpenDirectory(reference_dir);
  if (!store.ok())
    return absl::InvalidArgumentError(absl::StrCat("--reference ", reference_dir, ": ", store.status().message()));
  s->reference_ = std::move(*store);
  const int64_t layers = model.config().num_layers;
  s->weights_.resize(static_cast<size_t>(layers));
  s->drift_.resize(static_cast<size_t>(layers));
  s->passes_.assign(static_cast<size_t>(layers), 0);
  s->sampling_.assign(static_cast<size_t>(layers), 0);
  for (int64_t l = 0; l < layers; ++l) {
    for (int k = 0; k < sharding::kBlockLinears; ++k) {
      const std::string name = absl::StrCat("model.layers.", l, ".", sharding::kBlockLinearNames[k], ".weight");
      auto t = s->reference_->Get(name);
      if (!t.ok())
        return absl::InvalidArgumentError(
            absl::StrCat("--reference ", reference_dir, ": ", t.status().message(), " (not this model's checkpoint?)"));
      const model::LinearOp* served = LinearOf(model.layer(l), k);
      if (t->shape != std::vector<int64_t>{served->out_features(), served->in_features()} ||
          (t->dtype != DType::kF32 && t->dtype != DType::kF16 && t->dtype != DType::kBF16)) {
        return absl::InvalidArgumentError(absl::StrCat("--reference ", reference_dir, ": ", name,
                                                       " does not match the served model's [", served->out_features(),
                                                       ", ", served->in_features(), "]"));
      }
      s->weights_[l].push_back(*t);
      s->drift_[l].push_back(LinearDrift{l, sharding::kBlockLinearShortNames[k], 0, 0});
    }
  }
  return s;
}

void LayerDriftSampler::Observe(int64_t layer, model::LinearSite site, const float* x, int64_t rows, int64_t width) {
  if (layer < 0 || layer >= static_cast<int64_t>(weights_.size()) || rows <= 0) return;
  const size_t l = static_cast<size_t>(layer);
  if (site == model::LinearSite::kAttnIn) sampling_[l] = Uniform(passes_[l]++) < rate_;
  if (!sampling_[l]) return;
  const float* row = x + (rows - 1) * width;  // the pass's last row: one token
  auto compare = [&](std::initializer_list<int> linears) {
    for (int k : linears) Compare(layer, k, *LinearOf(model_.layer(layer), k), row);
  };
  switch (site) {
    case model::LinearSite::kAttnIn: compare({0, 1, 2}); break;
    case model::LinearSite::kAttnOut: compare({3}); break;
    case model::LinearSite::kMlpIn: compare({4, 5}); break;
    case model::LinearSite::kMlpDown: compare({6}); break;
    default: break;
  }
}

void LayerDriftSampler::Compare(int64_t layer, int linear, const model::LinearOp& served, const float* x) {
  const model::TensorView& w = weights_[static_cast<size_t>(layer)][static_cast<size_t>(linear)];
  const int64_t out = served.out_features();
  served_out_.resize(static_cast<size_t>(out));
  full_out_.resize(static_cast<size_t>(out));
  served.Forward(x, 1, served_out_.data(), *pool_);
  // The full-precision weights in place (mmap'd), through the same dense kernel as a checkpoint.
  auto full = model::DenseLinear::Create(w, nullptr);
  if (!full.ok()) return;
  (*full)->Forward(x, 1, full_out_.data(), *pool_);
  double diff = 0, norm = 0;
  for (int64_t o = 0; o < out; ++o) {
    const double d = static_cast<double>(served_out_[o]) - full_out_[o];
    diff += d * d;
    norm += static_cast<double>(full_out_[o]) * full_out_[o];
  }
  const double rel = norm > 0 ? std::sqrt(diff / norm) : (diff > 0 ? INFINITY : 0.0);
  std::lock_guard<std::mutex> lock(mu_);
  LinearDrift& d = drift_[static_cast<size_t>(layer)][static_cast<size_t>(linear)];
  d.error = d.samples == 0 || !std::isfinite(d.error) ? rel : d.error + (rel - d.error) / 8;
  ++d.samples;
}

std::vector<LinearDrift> LayerDriftSampler::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<LinearDrift> out;
  for (const auto& layer : drift_)
    for (const LinearDrift& d : layer)
      if (d.samples > 0) out.push_back(d);
  return out;
}

uint64_t LayerDriftSampler::sampled_passes() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t most = 0;
  for (const auto& layer : drift_) most = std::max(most, layer[0].samples);
  return most;
}

}  // namespace accullm::quant
