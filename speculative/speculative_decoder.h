// One sequence decoded speculatively: a proposer drafts up to k tokens, the target model runs
// the newest token and the draft in ONE forward pass of k + 1 positions, the accept/reject
// rule (draft_verification.h) keeps the longest prefix the target agrees with plus the
// target's own next token, and the target's KV cache is rolled back to the tokens kept. The
// tokens are exactly the target's alone with the same sampling parameters and seed: every
// row is sampled at its position with the history it would have had without speculation.
//
// k adapts to the running acceptance rate (speculative/draft_length.h); it changes only the
// speed, never the tokens.
//
// Invariant between steps: tokens() = prompt + generated; the target cache holds the rows of
// every token but the newest, which the next verification pass feeds first.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/kv_cache.h"
#include "model/sampler.h"
#include "model/transformer.h"
#include "speculative/draft_length.h"
#include "speculative/draft_proposer.h"

namespace accullm::speculative {

struct SpeculationConfig {
  int64_t max_draft_tokens = 4;  // K: the most tokens one step drafts
  bool adaptive = true;          // false: always K (within what is left to generate)
  // Drafting pauses while the running acceptance is under this (speculative/draft_length.h);
  // 0: always draft. Prompt lookup's floor is kNgramPauseBelow.
  double pause_below = kDraftModelPauseBelow;
  // The target's KV cache dtype: the same as a plain run's (generate --kv-cache-dtype), so the
  // verified tokens are that run's (attention is batch-invariant in every dtype).
  kernels::KvDType kv_dtype = kernels::KvDType::kF32;
};

struct SpeculationStats {
  int64_t steps = 0;      // verification passes (a step without a draft is a plain decode step)
  int64_t drafted = 0;    // draft tokens verified
  int64_t accepted = 0;   // of which accepted
  int64_t generated = 0;  // tokens produced by the steps (accepted + one per step)
  // Per draft position i (0-based): steps whose draft reached position i, and steps that had
  // positions 0..i all accepted (vLLM's per-position acceptance counts).
  std::vector<int64_t> drafted_at, accepted_at;
  // Wall time spent proposing drafts and in the target's verification passes (forward and
  // sampling): the two sides of the cost model, measured.
  double draft_seconds = 0, verify_seconds = 0;

  double acceptance_rate() const { return drafted > 0 ? static_cast<double>(accepted) / drafted : 0.0; }
};

class SpeculativeDecoder {
 public:
  // `proposer` may be null: every step is then a plain one-token decode step through the same
  // loop. `capacity`: the positions the sequence may reach (prompt + max tokens).
  SpeculativeDecoder(model::Transformer& target, DraftProposer* proposer, const model::SamplingParams& sampling,
                     const SpeculationConfig& config, int64_t capacity);

  // Runs the prompt through the target and samples the first token (no draft: the prefill
  // pass already yields it).
  absl::StatusOr<int32_t> Prefill(absl::Span<const int32_t> prompt);
  // One draft-and-verify step: appends and returns the accepted draft tokens and the target's
  // own next token (1 .. k + 1 tokens), at most `limit` (>= 1) of them.
  absl::StatusOr<std::vector<int32_t>> Step(int64_t limit);

  const std::vector<int32_t>& tokens() const { return tokens_; }
  const SpeculationStats& stats() const { return stats_; }
  model::KvCache& target_cache() { return cache_; }
  // The draft length the next step will use (before `limit`).
  int64_t next_draft_tokens() const { return length_.next(); }

 private:
  model::Transformer& target_;
  DraftProposer* proposer_;
  model::Sampler sampler_;
  SpeculationConfig config_;
  model::KvCache cache_;
  std::vector<int32_t> tokens_;  // prompt + generated
  std::vector<int32_t> draft_;
  std::vector<float> logits_;  // [k + 1, vocab]
  SpeculationStats stats_;
  DraftLength length_;
};

}  // namespace accullm::speculative
