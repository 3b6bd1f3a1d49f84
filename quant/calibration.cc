#include "quant/calibration.h"

#include <algorithm>
#include <cmath>

#include "common/status.h"

namespace accullm::quant {

void CalibrationStats::Observe(int64_t layer, model::LinearSite site, const float* x, int64_t rows, int64_t width) {
  if (site == model::LinearSite::kBlockOut || (layer_filter_ >= 0 && layer != layer_filter_)) return;
  SiteStats& s = sites_[{layer, static_cast<int>(site)}];
  if (s.width == 0) {
    s.width = width;
    if (second_moments_) s.hessian.assign(static_cast<size_t>(width * width), 0.0);
    s.absmax.assign(static_cast<size_t>(width), 0.f);
    s.over_threshold.assign(static_cast<size_t>(width), 0);
  }
  s.rows += rows;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * width;
    for (int64_t i = 0; i < width; ++i) {
      const float a = std::fabs(xr[i]);
      s.absmax[i] = std::max(s.absmax[i], a);
      if (a > threshold_) ++s.over_threshold[i];
    }
  }
  if (!second_moments_) return;
  if (reference_inputs_ != nullptr) {
    auto it = reference_inputs_->find(static_cast<int>(site));
    if (it != reference_inputs_->end() && static_cast<int64_t>(it->second.size()) == rows * width) {
      if (s.cross.empty()) s.cross.assign(static_cast<size_t>(width * width), 0.0);
      const float* ref = it->second.data();
      pool_->ParallelFor(
          width,
          [&](int64_t i0, int64_t i1) {
            std::vector<float> acc(static_cast<size_t>(width));
            for (int64_t i = i0; i < i1; ++i) {
              std::fill(acc.begin(), acc.end(), 0.f);
              for (int64_t r = 0; r < rows; ++r) {
                const float ri = ref[r * width + i];
                if (ri == 0.f) continue;
                const float* xr = x + r * width;
                for (int64_t j = 0; j < width; ++j) acc[j] += ri * xr[j];
              }
              double* c = s.cross.data() + i * width;
              for (int64_t j = 0; j < width; ++j) c[j] += acc[j];
            }
          },
          4);
    }
  }
  // Upper triangle of Σ x xᵀ, rows of H in parallel; float partials per call keep the
  // inner loop vectorised, double accumulation across calls keeps the sum accurate.
  pool_->ParallelFor(
      width,
      [&](int64_t i0, int64_t i1) {
        std::vector<float> acc(static_cast<size_t>(width));
        for (int64_t i = i0; i < i1; ++i) {
          std::fill(acc.begin() + i, acc.end(), 0.f);
          for (int64_t r = 0; r < rows; ++r) {
            const float* xr = x + r * width;
            const float xi = xr[i];
            if (xi == 0.f) continue;
            for (int64_t j = i; j < width; ++j) acc[j] += xi * xr[j];
          }
          double* h = s.hessian.data() + i * width;
          for (int64_t j = i; j < width; ++j) h[j] += acc[j];
        }
      },
      4);
}

void CalibrationStats::Clear(int64_t layer) {
  for (auto it = sites_.begin(); it != sites_.end();) {
    it = it->first.first == layer ? sites_.erase(it) : std::next(it);
  }
}

const SiteStats* CalibrationStats::Get(int64_t layer, model::LinearSite site) const {
  auto it = sites_.find({layer, static_cast<int>(site)});
  return it == sites_.end() ? nullptr : &it->second;
}

std::vector<std::vector<int32_t>> MakeCalibrationChunks(const std::vector<int32_t>& stream, int32_t bos,
                                                        int64_t samples, int64_t seq_len) {
  std::vector<std::vector<int32_t>> chunks;
  const int64_t body = seq_len - 1;
  if (body <= 0 || samples <= 0 || stream.empty()) return chunks;
  const int64_t available = static_cast<int64_t>(stream.size()) / body;
  const int64_t n = std::min(samples, std::max<int64_t>(available, 1));
  for (int64_t c = 0; c < n; ++c) {
    // Spread the chunks evenly over the stream.
    const int64_t start = available > 0 ? (c * available / n) * body : 0;
    const int64_t end = std::min<int64_t>(start + body, static_cast<int64_t>(stream.size()));
    std::vector<int32_t> chunk;
    chunk.reserve(static_cast<size_t>(seq_len));
    chunk.push_back(bos);
    chunk.insert(chunk.end(), stream.begin() + start, stream.begin() + end);
    chunks.push_back(std::move(chunk));
  }
  return chunks;
}

absl::Status RunCalibration(model::Transformer& model, const std::vector<std::vector<int32_t>>& chunks,
                            CalibrationStats& stats) {
  model.set_observer(&stats);
  std::vector<float> logits;
  for (const auto& chunk : chunks) {
    model::KvCache cache = model.NewCache(static_cast<int64_t>(chunk.size()));
    logits.resize(chunk.size() * static_cast<size_t>(model.config().vocab_size));
    absl::Status s = model.Forward(chunk.data(), static_cast<int64_t>(chunk.size()), cache, logits.data(),
                                   /*all_positions=*/true);
    if (!s.ok()) {
      model.set_observer(nullptr);
      return s;
    }
    stats.add_tokens(static_cast<int64_t>(chunk.size()));
  }
  model.set_observer(nullptr);
  return absl::OkStatus();
}

absl::StatusOr<BlockwiseCalibration> BlockwiseCalibration::Start(model::Transformer& model,
                                                                 const std::vector<std::vector<int32_t>>& chunks) {
  BlockwiseCalibration b;
  b.model_ = &model;
  for (const auto& chunk : chunks) {
    const int64_t n = static_cast<int64_t>(chunk.size());
    b.hidden_.emplace_back(static_cast<size_t>(n * model.config().hidden_size));
    b.tokens_.push_back(n);
    RETURN_IF_ERROR(model.Embed(chunk.data(), n, b.hidden_.back().data()));
  }
  return b;
}

absl::Status BlockwiseCalibration::Observe(CalibrationStats& stats) {
  stats.set_layer_filter(layer_);
  model_->set_observer(&stats);
  absl::Status s;
  std::vector<float> x;
  for (size_t c = 0; c < hidden_.size() && s.ok(); ++c) {
    x = hidden_[c];  // the block's output is not kept: the block is about to change
    model::KvCache cache = model_->NewCache(tokens_[c]);
    s = model_->RunLayers(layer_, layer_ + 1, x.data(), {model::BatchSegment{&cache, tokens_[c]}});
    if (s.ok()) stats.add_tokens(tokens_[c]);
  }
  model_->set_observer(nullptr);
  stats.set_layer_filter(-1);
  return s;
}

absl::Status BlockwiseCalibration::Advance() {
  for (size_t c = 0; c < hidden_.size(); ++c) {
    model::KvCache cache = model_->NewCache(tokens_[c]);
    RETURN_IF_ERROR(
        model_->RunLayers(layer_, layer_ + 1, hidden_[c].data(), {model::BatchSegment{&cache, tokens_[c]}}));
  }
  ++layer_;
  return absl::OkStatus();
}

namespace {

// Keeps one layer's site inputs of the latest forward pass.
class SiteRecorder final : public model::ActivationObserver {
 public:
  explicit SiteRecorder(int64_t layer) : layer_(layer) {}
  void Observe(int64_t layer, model::LinearSite site, const float* x, int64_t rows, int64_t width) override {
    if (layer == layer_ && site != model::LinearSite::kBlockOut)
      inputs[static_cast<int>(site)].assign(x, x + rows * width);
  }
  std::map<int, std::vector<float>> inputs;

 private:
  int64_t layer_;
};

}  // namespace

absl::Status RunPairedCalibration(model::Transformer& reference, model::Transformer& model, int64_t layer,
                                  const std::vector<std::vector<int32_t>>& chunks, CalibrationStats& stats) {
  SiteRecorder recorder(layer);
  stats.set_layer_filter(layer);
  absl::Status status;
  std::vector<float> logits;
  for (const auto& chunk : chunks) {
    const int64_t n = static_cast<int64_t>(chunk.size());
    logits.resize(static_cast<size_t>(n * model.config().vocab_size));
    reference.set_observer(&recorder);
    model::KvCache rc = reference.NewCache(n);
    status = reference.Forward(chunk.data(), n, rc, logits.data(), true);
    reference.set_observer(nullptr);
    if (!status.ok()) break;
    stats.set_reference_inputs(&recorder.inputs);
    model.set_observer(&stats);
    model::KvCache mc = model.NewCache(n);
    status = model.Forward(chunk.data(), n, mc, logits.data(), true);
    model.set_observer(nullptr);
    stats.set_reference_inputs(nullptr);
    if (!status.ok()) break;
  }
  stats.set_layer_filter(-1);
  return status;
}

}  // namespace accullm::quant
