// Drafts with a smaller model of the same vocabulary (golden mode: the low-bit pack of the
// target), autoregressively, through its own KV cache. It samples with the target's sampling
// parameters and the same position-keyed draws (model/sampler.h), so where the two
// distributions are close the draft picks the token the target will pick: the Gumbel noise
// is shared, which is what makes sampled drafts acceptable, not only greedy ones.
#pragma once

#include <cstdint>
#include <vector>

#include "model/kv_cache.h"
#include "model/sampler.h"
#include "model/transformer.h"
#include "speculative/draft_proposer.h"

namespace accullm::speculative {

class ModelDraftProposer final : public DraftProposer {
 public:
  // `capacity`: positions the draft's cache may hold (the sequence's prompt + max tokens).
  ModelDraftProposer(model::Transformer& draft, const model::SamplingParams& sampling, int64_t capacity);

  absl::Status Propose(absl::Span<const int32_t> context, int64_t k, std::vector<int32_t>& draft) override;
  std::string_view name() const override { return "draft"; }

  // The tokens whose rows the draft's cache holds (for tests).
  const std::vector<int32_t>& fed() const { return fed_; }

 private:
  model::Transformer& model_;
  model::KvCache cache_;
  model::Sampler sampler_;
  std::vector<int32_t> fed_;  // the tokens of cache_'s rows, in order
  std::vector<int32_t> history_;
  std::vector<float> logits_;
};

}  // namespace accullm::speculative
