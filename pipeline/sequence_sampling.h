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

 private:
  Sampler sampler_;
  std::vector<int32_t> history_;
  int logprobs_;
  std::vector<float> raw_;
};

// log-softmax of raw logits: the logprob of `id` and the top `k` alternatives (best first).
SampledToken Logprobs(const float* logits, int64_t vocab, int32_t id, int k);

}  // namespace accullm::pipeline
