#include "speculative/draft_proposer.h"

#include <algorithm>
#include <iterator>

#include "speculative/model_draft_proposer.h"

namespace accullm::speculative {

int64_t ProposeBatch(absl::Span<DraftRequest> requests) {
  int64_t passes = 0;
  // One batch per draft model, in the order the models first appear.
  std::vector<DraftBatch> batches;
  for (DraftRequest& r : requests) {
    auto* model_proposer = dynamic_cast<ModelDraftProposer*>(r.proposer);
    if (model_proposer == nullptr) {
      r.status = r.proposer == nullptr ? absl::InvalidArgumentError("a draft request without a proposer")
                                       : r.proposer->Propose(r.context, r.k, r.draft);
      continue;
    }
    auto batch = std::find_if(batches.begin(), batches.end(),
                              [&](const DraftBatch& b) { return &b.model() == &model_proposer->model(); });
    if (batch == batches.end()) {
      batches.emplace_back(model_proposer->model());
      batch = std::prev(batches.end());
    }
    batch->Add(*model_proposer, r);
  }
  for (DraftBatch& b : batches) passes += b.Run();
  return passes;
}

}  // namespace accullm::speculative
