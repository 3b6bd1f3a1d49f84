// One sequence's sampling state where the logits are: the seeded sampler, the history the
// penalties need, and the logprobs request. The history is the tokens the sequence's KV
// positions were fed, appended as the rows pass this stage: at every sampling point that is
// the prompt + the tokens generated so far (each sampled token is fed back before the next is
// sampled), and a rollback is the same cut as the KV cache's.
#pragma once

#include <cstdint>
#include <vector>

#include "model/sampler.h"
#include "pipeline/batch_executor.h"

namespace accullm::pipeline {

class SequenceSampling {
 public:
  explicit SequenceSampling(const SequenceSetup& s) : sampler_(s.sampling), logprobs_(s.logprobs) {}
  // The tokens of the sequence's next `n` positions (rows of a batch item).
  void Append(const int32_t* tokens, int64_t n) { history_.insert(history_.end(), tokens, tokens + n); }
  // Samples from `logits` [vocab] (modified in place) given the history so far.
  SampledToken Sample(uint64_t seq, float* logits, int64_t vocab);
  // Speculative decoding: the history ends with `draft` draft tokens, `logits` holds the
  // draft + 1 rows before each of them and after the last (modified in place); each row is
  // sampled at its position with the history before it (speculative::VerifyDraft). Returns
  // the accepted draft tokens and the target's own next token, with logprobs of the raw rows
  // when asked. The history keeps the rejected tokens until the scheduler's truncation.
  std::vector<SampledToken> Verify(uint64_t seq, float* logits, int64_t vocab, int64_t draft);
  // The history keeps its first `length` tokens (see wire.h Truncation).
  void Truncate(int64_t length);
  int64_t history_length() const { return static_cast<int64_t>(history_.size()); }

 private:
  model::Sampler sampler_;
  std::vector<int32_t> history_;
  int logprobs_;
  std::vector<float> raw_;
};

// log-softmax of raw logits: the logprob of `id` and the top `k` alternatives (best first).
SampledToken Logprobs(const float* logits, int64_t vocab, int32_t id, int k);

}  // namespace accullm::pipeline
