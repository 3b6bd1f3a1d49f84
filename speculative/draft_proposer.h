// Where draft tokens come from: a small interface so the decoding loop and the scheduler do
// not care whether a draft model or a lookup in the text proposes them.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace accullm::speculative {

class DraftProposer {
 public:
  virtual ~DraftProposer() = default;
  // Writes to `draft` up to `k` tokens that may follow `context` (prompt + every token
  // accepted so far, the newest last). Fewer, or none, when it has nothing worth proposing.
  // Consecutive calls see contexts that share a prefix (the accepted tokens); a proposer
  // with state (a KV cache) rolls it back to that prefix itself.
  virtual absl::Status Propose(absl::Span<const int32_t> context, int64_t k, std::vector<int32_t>& draft) = 0;
  virtual std::string_view name() const = 0;
};

// One sequence's share of a batched draft (ProposeBatch): what Propose takes, and what it
// gives back (the draft and the status of that sequence alone).
struct DraftRequest {
  DraftProposer* proposer = nullptr;
  absl::Span<const int32_t> context;
  int64_t k = 0;
  std::vector<int32_t> draft;
  absl::Status status;
};

// Drafts for several sequences at once (the scheduler's step). Each request gets exactly the
// draft its proposer's Propose would give. The requests whose proposers are draft models
// (ModelDraftProposer) of the same model share one forward pass per draft position, a batch
// of one row per sequence still drafting (speculative/model_draft_proposer.h); the others
// propose one after the other. A failure is its request's status; the others still draft.
// Returns the number of draft-model forward passes it ran.
int64_t ProposeBatch(absl::Span<DraftRequest> requests);

}  // namespace accullm::speculative
