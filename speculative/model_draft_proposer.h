// Drafts with a smaller model of the same vocabulary (golden mode: the low-bit pack of the
// target), autoregressively, through its own KV cache. It samples with the target's sampling
// parameters and the same position-keyed draws (model/sampler.h), so where the two
// distributions are close the draft picks the token the target will pick: the Gumbel noise
// is shared, which is what makes sampled drafts acceptable, not only greedy ones.
//
// Batched drafting (DraftBatch, used by ProposeBatch): many sequences, each with its own
// proposer (cache, sampler, fed tokens), draft together through one forward pass of the
// draft model per draft position: the first pass catches every cache up (a few rows per
// sequence: the target's correction and the last draft token, or a whole prompt), each
// later one runs one row per sequence still drafting. A sequence whose k is reached, or
// whose cache is full, drops out of the later passes. So a step with 16 sequences streams
// the draft's weights max(k) times instead of 16·k. A row's bits do not depend on the rows
// beside it (the kernels are batch-invariant: per-row activation scales, per-segment
// attention), so every sequence's draft is the one it gets alone.
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

  // A batch of one (DraftBatch).
  absl::Status Propose(absl::Span<const int32_t> context, int64_t k, std::vector<int32_t>& draft) override;
  std::string_view name() const override { return "draft"; }

  model::Transformer& model() const { return model_; }
  // The tokens whose rows the draft's cache holds (for tests).
  const std::vector<int32_t>& fed() const { return fed_; }

 private:
  friend class DraftBatch;
  model::Transformer& model_;
  model::KvCache cache_;
  model::Sampler sampler_;
  std::vector<int32_t> fed_;  // the tokens of cache_'s rows, in order
  std::vector<int32_t> history_;
};

// One batched draft over sequences that all draft with the same model. Each entry's draft
// (and status) are written to its request.
class DraftBatch {
 public:
  explicit DraftBatch(model::Transformer& model) : model_(model) {}
  void Add(ModelDraftProposer& proposer, DraftRequest& request) { entries_.push_back({&proposer, &request}); }
  // Runs the passes; returns how many forward passes of the draft model it ran (at most the
  // largest k; 0 when nobody drafts).
  int64_t Run();
  model::Transformer& model() const { return model_; }

 private:
  struct Entry {
    ModelDraftProposer* proposer;
    DraftRequest* request;
  };
  // Fails every entry of `live` with `status` and forgets their caches (the next draft
  // refeeds the context), since a failed pass may have left rows half written.
  static void Fail(const std::vector<Entry>& live, const absl::Status& status);

  model::Transformer& model_;
  std::vector<Entry> entries_;
};

}  // namespace accullm::speculative
