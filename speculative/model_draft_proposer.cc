#include "speculative/model_draft_proposer.h"

#include <algorithm>

namespace accullm::speculative {

ModelDraftProposer::ModelDraftProposer(model::Transformer& draft, const model::SamplingParams& sampling,
                                       int64_t capacity)
    : model_(draft), cache_(draft.NewCache(capacity)), sampler_(sampling) {}

absl::Status ModelDraftProposer::Propose(absl::Span<const int32_t> context, int64_t k, std::vector<int32_t>& draft) {
  DraftRequest request{this, context, k, {}, {}};
  DraftBatch batch(model_);
  batch.Add(*this, request);
  batch.Run();
  draft = std::move(request.draft);
  return request.status;
}

void DraftBatch::Fail(const std::vector<Entry>& live, const absl::Status& status) {
  for (const Entry& e : live) {
    e.request->draft.clear();
    e.request->status = status;
    e.proposer->cache_.Truncate(0);
    e.proposer->fed_.clear();
  }
}

int64_t DraftBatch::Run() {
  const int64_t vocab = model_.config().vocab_size;
  std::vector<Entry> live;  // the sequences of the next pass, in entry order
  std::vector<int32_t> tokens;
  std::vector<model::BatchSegment> segments;
  for (const Entry& e : entries_) {
    DraftRequest& r = *e.request;
    r.draft.clear();
    r.status = absl::OkStatus();
    if (r.k <= 0 || r.context.empty()) continue;
    ModelDraftProposer& p = *e.proposer;
    // Keep the rows of the longest common prefix (the accepted tokens), drop the rest
    // (rejected drafts), and feed what the cache lacks: usually the target's correction or
    // bonus token (and the last draft token, which was proposed but never fed), the whole
    // prompt at first. At least the newest token is fed, so its logits are fresh.
    size_t keep = 0;
    const size_t limit = std::min(p.fed_.size(), r.context.size() - 1);
    while (keep < limit && p.fed_[keep] == r.context[keep]) ++keep;
    p.cache_.Truncate(static_cast<int64_t>(keep));
    p.fed_.resize(keep);
    tokens.insert(tokens.end(), r.context.begin() + static_cast<int64_t>(keep), r.context.end());
    segments.push_back({&p.cache_, static_cast<int64_t>(r.context.size() - keep)});
    live.push_back(e);
  }
  int64_t passes = 0;
  std::vector<float> logits;
  for (int64_t i = 0; !live.empty(); ++i) {
    // One pass: the catch-up rows (i = 0) or each live sequence's newest draft token.
    logits.resize(live.size() * static_cast<size_t>(vocab));
    ++passes;
    if (absl::Status st = model_.ForwardBatch(tokens.data(), segments, logits.data()); !st.ok()) {
      Fail(live, st);
      break;
    }
    size_t at = 0;
    for (size_t j = 0; j < live.size(); ++j) {
      ModelDraftProposer& p = *live[j].proposer;
      DraftRequest& r = *live[j].request;
      p.fed_.insert(p.fed_.end(), tokens.begin() + static_cast<int64_t>(at),
                    tokens.begin() + static_cast<int64_t>(at + static_cast<size_t>(segments[j].n_tokens)));
      at += static_cast<size_t>(segments[j].n_tokens);
      if (i == 0) p.history_.assign(r.context.begin(), r.context.end());
    }
    std::vector<Entry> next;
    tokens.clear();
    segments.clear();
    for (size_t j = 0; j < live.size(); ++j) {
      ModelDraftProposer& p = *live[j].proposer;
      DraftRequest& r = *live[j].request;
      const int64_t position = static_cast<int64_t>(p.history_.size());
      const int32_t token =
          p.sampler_.Sample(logits.data() + j * static_cast<size_t>(vocab), vocab, p.history_, position);
      r.draft.push_back(token);
      p.history_.push_back(token);
      // The last draft token is not fed: if accepted, the next draft feeds it. Nor is one
      // whose position the cache cannot hold (the decoder never verifies past it either).
      if (i + 1 == r.k || position >= p.cache_.capacity()) continue;
      tokens.push_back(token);
      segments.push_back({&p.cache_, 1});
      next.push_back(live[j]);
    }
    live = std::move(next);
  }
  return passes;
}

}  // namespace accullm::speculative
