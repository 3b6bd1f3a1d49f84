#include "quant/ffn_sparsity_calibration.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "boost/json.hpp"
#include "common/json.h"
#include "common/mapped_file.h"
#include "common/status.h"
#include "model/linear_group.h"

namespace accullm::quant {

MagnitudeHistogram::MagnitudeHistogram() : bins_((size_t{1} << (31 - kDroppedBits)) + 1, 0) {}

void MagnitudeHistogram::Add(float magnitude) {
  if (!(magnitude >= 0)) return;  // NaN (or a negative value, which |x| is not)
  // Non-negative floats order like their bit patterns (+Inf last), so bins are ordered too.
  const uint32_t bits = std::bit_cast<uint32_t>(magnitude);
  ++bins_[bits >> kDroppedBits];
  ++count_;
}

float MagnitudeHistogram::Quantile(double share) const {
  if (share <= 0 || count_ == 0) return 0.0f;
  const double want = share * static_cast<double>(count_);
  double below = 0;
  for (size_t b = 0; b < bins_.size(); ++b) {
    if (bins_[b] == 0) continue;
    const double in_bin = static_cast<double>(bins_[b]);
    if (below + in_bin >= want) {
      const float lo = std::bit_cast<float>(static_cast<uint32_t>(b << kDroppedBits));
      const float hi = std::bit_cast<float>(static_cast<uint32_t>((b + 1) << kDroppedBits));
      if (!std::isfinite(hi)) return lo;  // the last finite bin (or +Inf): no interpolation past it
      const double within = (want - below) / in_bin;
      return static_cast<float>(lo + (static_cast<double>(hi) - lo) * within);
    }
    below += in_bin;
  }
  return std::bit_cast<float>(static_cast<uint32_t>((bins_.size() - 1) << kDroppedBits));
}

FfnActivationStatistics::FfnActivationStatistics(model::Transformer& model, ThreadPool& pool)
    : model_(model), pool_(pool), gate_(static_cast<size_t>(model.config().num_layers)),
      product_(static_cast<size_t>(model.config().num_layers)), pairs_(static_cast<size_t>(model.config().num_layers)),
      seen_(static_cast<size_t>(model.config().num_layers), 0) {}

void FfnActivationStatistics::Observe(int64_t layer, model::LinearSite site, const float* x, int64_t rows,
                                      int64_t width) {
  (void)width;
  if (site != model::LinearSite::kMlpIn) return;
  model::TransformerLayer& L = model_.layer(layer);
  const int64_t inter = L.gate->out_features();
  const size_t n = static_cast<size_t>(rows * inter);
  if (g_.size() < n) {
    g_.resize(n);
    u_.resize(n);
  }
  // The runtime's path for gate and up (one shared INT8 input for low-bit linears).
  model::ForwardSameInput({{L.gate.get(), g_.data()}, {L.up.get(), u_.data()}}, x, rows, pool_);
  MagnitudeHistogram& gate = gate_[static_cast<size_t>(layer)];
  MagnitudeHistogram& product = product_[static_cast<size_t>(layer)];
  std::vector<MagnitudePair>& pairs = pairs_[static_cast<size_t>(layer)];
  int64_t& seen = seen_[static_cast<size_t>(layer)];
  for (size_t i = 0; i < n; ++i) {
    const float g = g_[i];
    const float s = g / (1.0f + std::exp(-g));  // as kernels::SiluMulMasked computes it
    const float p = s * u_[i];
    gate.Add(std::fabs(s));
    product.Add(std::fabs(p));
    if (seen++ % kPairStride == 0) pairs.push_back({std::fabs(s), std::fabs(p)});
  }
  if (layer == 0) tokens_ += rows;
}

model::PackSparsity FfnActivationStatistics::Thresholds(double target) const {
  model::PackSparsity s = Thresholds(std::vector<double>(gate_.size(), target));
  s.target = target;  // exactly, not a mean's rounding
  s.layer_targets.clear();
  return s;
}

model::PackSparsity FfnActivationStatistics::Thresholds(const std::vector<double>& targets) const {
  model::PackSparsity s;
  s.predictor = "cats";
  s.calibration_tokens = tokens_;
  s.layer_targets = targets;
  double sum = 0;
  for (size_t l = 0; l < gate_.size() && l < targets.size(); ++l) {
    s.thresholds.push_back(gate_[l].Quantile(targets[l]));
    s.active_thresholds.push_back(product_[l].Quantile(targets[l]));
    sum += targets[l];
  }
  s.target = targets.empty() ? 0 : sum / static_cast<double>(targets.size());
  return s;
}

float FfnActivationStatistics::PrefilterThreshold(size_t layer, float product_threshold, double recall) const {
  if (recall >= 1) return 0.0f;
  // The gate magnitudes of the sampled active neurons; the prefilter may drop the smallest
  // (1 - recall) of them.
  std::vector<float> active;
  for (const MagnitudePair& p : pairs_[layer])
    if (p.product > product_threshold) active.push_back(p.gate);
  const size_t misses = static_cast<size_t>(std::floor((1 - recall) * static_cast<double>(active.size())));
  if (misses == 0) return 0.0f;
  std::nth_element(active.begin(), active.begin() + static_cast<std::ptrdiff_t>(misses - 1), active.end());
  // |SiLU(g)| <= this is skipped: the misses-th smallest, so at most `misses` (ties aside).
  return active[misses - 1];
}

double FfnActivationStatistics::SampledGateShareAtOrBelow(size_t layer, float threshold) const {
  const std::vector<MagnitudePair>& pairs = pairs_[layer];
  if (pairs.empty()) return 0;
  int64_t below = 0;
  for (const MagnitudePair& p : pairs) below += p.gate <= threshold ? 1 : 0;
  return static_cast<double>(below) / static_cast<double>(pairs.size());
}

model::PackSparsity FfnActivationStatistics::ProductThresholds(const std::vector<double>& targets,
                                                               double prefilter_recall) const {
  model::PackSparsity s = Thresholds(targets);
  s.predictor = "product";
  s.thresholds = s.active_thresholds;  // the rule thresholds the very product that defines "active"
  s.gate_thresholds.clear();
  for (size_t l = 0; l < s.thresholds.size(); ++l)
    s.gate_thresholds.push_back(targets[l] > 0 ? PrefilterThreshold(l, s.thresholds[l], prefilter_recall) : 0.0f);
  return s;
}

absl::Status CollectFfnStatistics(model::Transformer& model, const std::vector<std::vector<int32_t>>& chunks,
                                  model::ActivationObserver& observer) {
  model.set_observer(&observer);
  std::vector<float> logits(static_cast<size_t>(model.config().vocab_size));
  for (const auto& chunk : chunks) {
    model::KvCache cache = model.NewCache(static_cast<int64_t>(chunk.size()));
    absl::Status s = model.Forward(chunk.data(), static_cast<int64_t>(chunk.size()), cache, logits.data());
    if (!s.ok()) {
      model.set_observer(nullptr);
      return s;
    }
  }
  model.set_observer(nullptr);
  return absl::OkStatus();
}

absl::Status WritePackSparsity(const std::string& pack_dir, const model::PackSparsity& sparsity) {
  const std::string path = pack_dir + "/" + model::kPackManifestFile;
  ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  ASSIGN_OR_RETURN(boost::json::value v, ParseJson(text, path));
  if (!v.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  boost::json::object& manifest = v.get_object();
  boost::json::array thresholds, active;
  for (float t : sparsity.thresholds) thresholds.push_back(static_cast<double>(t));
  for (float t : sparsity.active_thresholds) active.push_back(static_cast<double>(t));
  boost::json::object o{{"predictor", sparsity.predictor},
                        {"target", sparsity.target},
                        {"thresholds", std::move(thresholds)},
                        {"active_thresholds", std::move(active)},
                        {"calibration_tokens", sparsity.calibration_tokens}};
  if (!sparsity.measured_on.empty()) o["measured_on"] = sparsity.measured_on;
  if (!sparsity.gate_thresholds.empty()) {
    boost::json::array gate;
    for (float t : sparsity.gate_thresholds) gate.push_back(static_cast<double>(t));
    o["gate_thresholds"] = std::move(gate);
  }
  if (!sparsity.layer_targets.empty()) {
    boost::json::array shares;
    for (double t : sparsity.layer_targets) shares.push_back(t);
    o["layer_targets"] = std::move(shares);
  }
  if (sparsity.predictor == "lowrank") {
    o["rank"] = sparsity.rank;
    o["guesser_out_bits"] = sparsity.guesser_out_bits;
    // The guesser's tensors are a layout a version-1 reader cannot run.
    manifest["format_version"] =
        std::max<int64_t>(model::kPackFormatVersionGuesser,
                          manifest.contains("format_version") && manifest.at("format_version").is_int64()
                              ? manifest.at("format_version").get_int64()
                              : 0);
  }
  manifest["sparsity"] = std::move(o);
  // What a reader will accept, checked before anything replaces the manifest.
  const std::string new_text = boost::json::serialize(v) + "\n";
  RETURN_IF_ERROR(model::PackManifest::Parse(new_text, path).status());
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return absl::PermissionDeniedError(absl::StrCat("cannot write ", tmp));
  const bool ok = std::fwrite(new_text.data(), 1, new_text.size(), f) == new_text.size();
  if (std::fclose(f) != 0 || !ok) return absl::DataLossError(absl::StrCat("failed writing ", tmp));
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::DataLossError(absl::StrCat("cannot rename ", tmp, " to ", path, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace accullm::quant
