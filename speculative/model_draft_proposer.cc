#include "speculative/model_draft_proposer.h"

#include <algorithm>

#include "common/status.h"

namespace accullm::speculative {

ModelDraftProposer::ModelDraftProposer(model::Transformer& draft, const model::SamplingParams& sampling,
                                       int64_t capacity)
    : model_(draft), cache_(draft.NewCache(capacity)), sampler_(sampling) {
  logits_.resize(static_cast<size_t>(draft.config().vocab_size));
}

absl::Status ModelDraftProposer::Propose(absl::Span<const int32_t> context, int64_t k, std::vector<int32_t>& draft) {
  draft.clear();
  if (k <= 0 || context.empty()) return absl::OkStatus();
  // Keep the rows of the longest common prefix (the accepted tokens), drop the rest (rejected
  // drafts), and feed what the cache lacks: usually the target's correction or bonus token
  // (and the last draft token, which was proposed but never fed), the whole prompt at first.
  // At least the newest token is fed, so its logits are fresh.
  size_t keep = 0;
  const size_t limit = std::min(fed_.size(), context.size() - 1);
  while (keep < limit && fed_[keep] == context[keep]) ++keep;
  cache_.Truncate(static_cast<int64_t>(keep));
  fed_.resize(keep);
  const int64_t vocab = model_.config().vocab_size;
  const int64_t n_new = static_cast<int64_t>(context.size() - keep);
  RETURN_IF_ERROR(model_.Forward(context.data() + keep, n_new, cache_, logits_.data()));
  fed_.insert(fed_.end(), context.begin() + keep, context.end());
  history_.assign(context.begin(), context.end());
  for (int64_t i = 0; i < k; ++i) {
    const int64_t position = static_cast<int64_t>(history_.size());
    const int32_t token = sampler_.Sample(logits_.data(), vocab, history_, position);
    draft.push_back(token);
    history_.push_back(token);
    // The last draft token is not fed: if accepted, the next Propose feeds it. Nor is one
    // whose position the cache cannot hold (the decoder never verifies past it either).
    if (i + 1 == k || position >= cache_.capacity()) break;
    RETURN_IF_ERROR(model_.Forward(&token, 1, cache_, logits_.data()));
    fed_.push_back(token);
  }
  return absl::OkStatus();
}

}  // namespace accullm::speculative
