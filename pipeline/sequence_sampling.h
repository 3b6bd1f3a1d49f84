// One sequence's sampling state where the logits are: the seeded sampler, the history the
// penalties need (prompt + generated), and the logprobs request.
#pragma once

#include <cstdint>
#include <vector>

#include "model/sampler.h"
#include "pipeline/batch_executor.h"

namespace accullm::pipeline {

class SequenceSampling {
 public:
  explicit SequenceSampling(const SequenceSetup& s)
      : sampler_(s.sampling), history_(s.prompt), logprobs_(s.logprobs) {}
  // Samples from `logits` [vocab] (modified in place) and records the token in the history.
  SampledToken Sample(uint64_t seq, float* logits, int64_t vocab);
  // The history becomes its first `length` tokens, then `next_token` (see wire.h Truncation).
  void Truncate(int64_t length, int32_t next_token);
  int64_t history_length() const { return static_cast<int64_t>(history_.size()); }

 private:
  Sampler sampler_;
  std::vector<int32_t> history_;
  int logprobs_;
  std::vector<float> raw_;
};

// log-softmax of raw logits: the logprob of `id` and the top `k` alternatives (best first).
SampledToken Logprobs(const float* logits, int64_t vocab, int32_t id, int k);

}  // namespace accullm::pipeline
