#include "speculative/draft_verification.h"

namespace accullm::speculative {

Verification VerifyDraft(model::Sampler& target, float* logits, int64_t vocab, absl::Span<const int32_t> sequence,
                         int64_t draft_tokens) {
  const int64_t first = static_cast<int64_t>(sequence.size()) - draft_tokens;
  Verification v;
  for (int64_t i = 0;; ++i) {
    const int64_t position = first + i;
    const int32_t token =
        target.Sample(logits + i * vocab, vocab, sequence.first(static_cast<size_t>(position)), position);
    if (i == draft_tokens || token != sequence[static_cast<size_t>(position)]) {
      v.accepted = i;
      v.token = token;
      return v;
    }
  }
}

}  // namespace accullm::speculative
