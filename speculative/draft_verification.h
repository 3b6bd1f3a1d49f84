// The accept/reject rule of golden mode, over the target's rows of logits. Sampling is
// position-keyed (model/sampler.h): the target's token at a position is a fixed function of
// (seed, position, its processed distribution there), so a draft token is accepted exactly
// when it equals that token, and the output is token for token what the target alone would
// have produced with the same seed, greedy or sampled. (The min(1, p/q) rule of Leviathan et
// al. keeps only the distribution, not the text; it is not offered here.)
// A pure function of its inputs (the sampler holds only scratch), so the scheduler can apply
// it to any sequence's verification rows.
#pragma once

#include <cstdint>

#include "absl/types/span.h"
#include "model/sampler.h"

namespace accullm::speculative {

struct Verification {
  int64_t accepted = 0;  // draft tokens accepted: a leading prefix of the draft
  // The target's own token at the first position not accepted: the correction at the first
  // mismatch, or the bonus token after the whole draft was accepted.
  int32_t token = -1;
};

// `sequence` is the tokens before the first verified position (prompt + generated, P of them)
// followed by the k = `draft_tokens` draft tokens; `logits` [k + 1, vocab] holds the target's
// rows for positions P .. P + k (row i was computed after sequence[0 .. P + i)). Row i is
// sampled at position P + i with history sequence[0 .. P + i), exactly as decoding without a
// draft would sample it; the rows are modified in place (penalties, temperature) and rows
// past the first mismatch are left untouched.
Verification VerifyDraft(model::Sampler& target, float* logits, int64_t vocab, absl::Span<const int32_t> sequence,
                         int64_t draft_tokens);

}  // namespace accullm::speculative
