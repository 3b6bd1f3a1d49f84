#include "speculative/ngram_draft_proposer.h"

#include <algorithm>

namespace accullm::speculative {

absl::Status NgramDraftProposer::Propose(absl::Span<const int32_t> context, int64_t k, std::vector<int32_t>& draft) {
  draft.clear();
  const int64_t len = static_cast<int64_t>(context.size());
  if (k <= 0) return absl::OkStatus();
  for (int64_t n = std::min(max_ngram_, len - 1); n >= std::max<int64_t>(1, min_ngram_); --n) {
    const int32_t* suffix = context.data() + len - n;
    // The most recent earlier occurrence: it ends before the suffix's last token, so at least
    // one token follows it. Recent text predicts the continuation best.
    for (int64_t start = len - n - 1; start >= 0; --start) {
      if (!std::equal(suffix, suffix + n, context.data() + start)) continue;
      const int64_t from = start + n;
      const int64_t count = std::min(k, len - from);
      draft.assign(context.begin() + from, context.begin() + from + count);
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

}  // namespace accullm::speculative
