// Prompt lookup (no draft model): the newest n tokens of the text so far, for the longest n
// up to max_ngram that occurred before, and the tokens that followed their most recent
// earlier occurrence are the draft. Strong where the answer copies from its context (RAG,
// legal text, code edits); it costs a scan of the context and no forward pass.
#pragma once

#include <cstdint>

#include "speculative/draft_proposer.h"

namespace accullm::speculative {

class NgramDraftProposer final : public DraftProposer {
 public:
  explicit NgramDraftProposer(int64_t max_ngram = 3, int64_t min_ngram = 1)
      : max_ngram_(max_ngram), min_ngram_(min_ngram) {}

  absl::Status Propose(absl::Span<const int32_t> context, int64_t k, std::vector<int32_t>& draft) override;
  std::string_view name() const override { return "ngram"; }

 private:
  int64_t max_ngram_, min_ngram_;
};

}  // namespace accullm::speculative
