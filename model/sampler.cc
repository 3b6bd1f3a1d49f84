#include "model/sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/random.h"

namespace accullm::model {

absl::Status SamplingParams::Validate() const {
  if (!(temperature >= 0.f) || temperature > 100.f)
    return absl::InvalidArgumentError("temperature must be in [0, 100]");
  if (top_k < 0) return absl::InvalidArgumentError("top_k must be >= 0");
  if (!(top_p > 0.f && top_p <= 1.f)) return absl::InvalidArgumentError("top_p must be in (0, 1]");
  if (!(min_p >= 0.f && min_p <= 1.f)) return absl::InvalidArgumentError("min_p must be in [0, 1]");
  if (!(repetition_penalty > 0.f) || repetition_penalty > 100.f)
    return absl::InvalidArgumentError("repetition_penalty must be in (0, 100]");
  if (!(presence_penalty >= -2.f && presence_penalty <= 2.f))
    return absl::InvalidArgumentError("presence_penalty must be in [-2, 2]");
  if (!(frequency_penalty >= -2.f && frequency_penalty <= 2.f))
    return absl::InvalidArgumentError("frequency_penalty must be in [-2, 2]");
  return absl::OkStatus();
}

double PositionKeyedUniform(uint64_t seed, int64_t position, int64_t token) {
  // Each SplitMix64 is a bijection with full avalanche; chaining it over the three keys gives
  // independent-looking bits for every (seed, position, token).
  const uint64_t h =
      SplitMix64(SplitMix64(SplitMix64(seed) ^ static_cast<uint64_t>(position)) ^ static_cast<uint64_t>(token));
  return (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53;
}

int32_t Sampler::Sample(float* logits, int64_t vocab, absl::Span<const int32_t> history, int64_t position) {
  const SamplingParams& p = params_;
  if (p.repetition_penalty != 1.f || p.presence_penalty != 0.f || p.frequency_penalty != 0.f) {
    absl::flat_hash_map<int32_t, int> counts;
    for (int32_t id : history)
      if (id >= 0 && id < vocab) ++counts[id];
    for (const auto& [id, count] : counts) {
      float& l = logits[id];
      if (p.repetition_penalty != 1.f) l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
      l -= p.presence_penalty + p.frequency_penalty * static_cast<float>(count);
    }
  }
  // Greedy: the first maximum, so ties break deterministically toward the lower id.
  if (p.temperature == 0.f) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  }
  candidates_.clear();
  candidates_.reserve(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) candidates_.emplace_back(logits[i] / p.temperature, static_cast<int32_t>(i));
  auto by_logit_desc = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  // Which candidates survive top-k, min-p and top-p needs them in order; the draw itself does
  // not (its noise is keyed by token id), so without truncation nothing is sorted.
  size_t keep = candidates_.size();
  const bool truncates = p.top_k > 0 || p.min_p > 0.f || p.top_p < 1.f;
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < keep) {
    keep = static_cast<size_t>(p.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), by_logit_desc);
  } else if (truncates) {
    std::sort(candidates_.begin(), candidates_.end(), by_logit_desc);
  }
  candidates_.resize(keep);
  if (p.min_p > 0.f || p.top_p < 1.f) {
    // Softmax over the survivors (they are sorted, so [0] is the max).
    const float mx = candidates_[0].first;
    probs_.resize(keep);
    double sum = 0;
    for (size_t i = 0; i < keep; ++i) sum += probs_[i] = std::exp(static_cast<double>(candidates_[i].first - mx));
    for (auto& q : probs_) q /= sum;
    if (p.min_p > 0.f) {
      const double floor = p.min_p * probs_[0];
      size_t n = 1;
      while (n < keep && probs_[n] >= floor) ++n;
      keep = n;
    }
    if (p.top_p < 1.f) {
      double cum = 0;
      size_t n = 0;
      while (n < keep) {
        cum += probs_[n++];
        if (cum >= p.top_p) break;
      }
      keep = n;
    }
  }
  // Gumbel-max over the kept candidates (see sampler.h): the largest z - log(E), E = -log(u)
  // exponential; ties (measure zero) go to the lower id, whatever the candidates' order.
  int32_t best = -1;
  double best_key = 0;
  for (size_t i = 0; i < keep; ++i) {
    const int32_t id = candidates_[i].second;
    const double e = -std::log(PositionKeyedUniform(p.seed, position, id));
    const double key = static_cast<double>(candidates_[i].first) - std::log(e);
    if (best < 0 || key > best_key || (key == best_key && id < best)) {
      best = id;
      best_key = key;
    }
  }
  return best;
}

}  // namespace accullm::model
