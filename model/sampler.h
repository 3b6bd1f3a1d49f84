// Next-token sampling: greedy, temperature, top-k, top-p, min-p, repetition/presence/
// frequency penalties.
//
// Position-keyed draws: the random choice at a sequence position is a pure function of
// (seed, position, processed distribution), never of how many draws came before. So a
// preempted and recomputed sequence, a request batched or alone, and speculative decoding
// (a draft token is accepted exactly when it equals the target's own sample at its position:
// speculative/) all reproduce the same token. The draw is Gumbel-max in its exponential-race
// form: token i of the kept candidates gets u_i = uniform(seed, position, i) and the winner is
// argmax z_i - log(-log u_i), z_i = logit_i / temperature, which picks i with probability
// softmax(z) renormalized over the kept set. Why not one uniform and an inverse CDF: the
// noise is keyed by token id, not by rank, so the choice does not depend on how candidates
// are ordered, and two close distributions (a draft model's and its target's) fed the same
// noise pick the same token with probability >= (1 - TV) / (1 + TV), which is what makes
// sampled drafts acceptable. The uniforms are SplitMix64 hashes turned into 53-bit doubles by
// hand (no std:: distributions), so they are the same on every platform.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

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

// The uniform in (0, 1) (never 0 or 1: it goes through two logs) keyed by (seed, position,
// token id): the top 53 bits of chained SplitMix64 hashes, plus half a step.
double PositionKeyedUniform(uint64_t seed, int64_t position, int64_t token);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : params_(p) {}
  // Picks the token at `position` of its sequence (its absolute index: the count of tokens
  // before it, prompt included) from `logits` [vocab]; `history` holds the tokens before it
  // (prompt + generated) for the penalties. `logits` is modified in place (penalties,
  // temperature). The result depends only on (params, position, logits, history).
  int32_t Sample(float* logits, int64_t vocab, absl::Span<const int32_t> history, int64_t position);

  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::vector<std::pair<float, int32_t>> candidates_;  // scratch, reused across calls
  std::vector<double> probs_;
};

}  // namespace accullm::model
