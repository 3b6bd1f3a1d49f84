// Next-token sampling: greedy, temperature, top-k, top-p, min-p, repetition/presence/
// frequency penalties. A seed makes it reproducible (same seed, same logits → same tokens).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"

namespace accullm::model {

struct SamplingParams {
  float temperature = 0.f;         // 0 = greedy (argmax)
  int top_k = 0;                   // 0 = off
  float top_p = 1.f;               // 1 = off
  float min_p = 0.f;               // 0 = off; keep tokens with p >= min_p * p_max
  float repetition_penalty = 1.f;  // HF/CTRL style on tokens already seen; 1 = off
  float presence_penalty = 0.f;    // OpenAI style
  float frequency_penalty = 0.f;   // OpenAI style
  uint64_t seed = 0;

  absl::Status Validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : params_(p), rng_(p.seed) {}
  // Picks the next token from `logits` [vocab]; `history` holds prompt + generated ids for
  // the penalties. `logits` is modified in place (penalties, temperature).
  int32_t Sample(float* logits, int64_t vocab, const std::vector<int32_t>& history);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

}  // namespace accullm::model
