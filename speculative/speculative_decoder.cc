#include "speculative/speculative_decoder.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "speculative/draft_verification.h"

namespace accullm::speculative {

using Clock = std::chrono::steady_clock;

SpeculativeDecoder::SpeculativeDecoder(model::Transformer& target, DraftProposer* proposer,
                                       const model::SamplingParams& sampling, const SpeculationConfig& config,
                                       int64_t capacity)
    : target_(target), proposer_(proposer), sampler_(sampling), config_(config),
      cache_(target.NewCache(capacity, config.kv_dtype)),
      length_(config.max_draft_tokens, config.adaptive, config.pause_below) {
  config_.max_draft_tokens = length_.max();
  stats_.drafted_at.assign(static_cast<size_t>(length_.max()), 0);
  stats_.accepted_at.assign(static_cast<size_t>(length_.max()), 0);
}

absl::StatusOr<int32_t> SpeculativeDecoder::Prefill(absl::Span<const int32_t> prompt) {
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  if (!tokens_.empty()) return absl::FailedPreconditionError("the sequence was already prefilled");
  const int64_t vocab = target_.config().vocab_size;
  logits_.resize(static_cast<size_t>(vocab));
  tokens_.assign(prompt.begin(), prompt.end());
  const int64_t n = static_cast<int64_t>(prompt.size());
  RETURN_IF_ERROR(target_.Forward(prompt.data(), n, cache_, logits_.data()));
  const int32_t token = sampler_.Sample(logits_.data(), vocab, tokens_, n);
  tokens_.push_back(token);
  return token;
}

absl::StatusOr<std::vector<int32_t>> SpeculativeDecoder::Step(int64_t limit) {
  if (tokens_.empty()) return absl::FailedPreconditionError("Step before Prefill");
  if (limit < 1) return absl::InvalidArgumentError("a step produces at least one token");
  const int64_t n = static_cast<int64_t>(tokens_.size());
  // The newest token is fed at position n - 1 and the draft after it: all must fit the cache.
  const int64_t room = cache_.capacity() - n;
  if (room < 0) return absl::OutOfRangeError(absl::StrCat("the sequence is full (", cache_.capacity(), " positions)"));
  const int64_t k = std::min({length_.Take(), limit - 1, room});
  draft_.clear();
  const auto t0 = Clock::now();
  if (proposer_ != nullptr && k > 0) RETURN_IF_ERROR(proposer_->Propose(tokens_, k, draft_));
  const auto t1 = Clock::now();
  if (static_cast<int64_t>(draft_.size()) > k) draft_.resize(static_cast<size_t>(k));
  const int64_t drafted = static_cast<int64_t>(draft_.size());

  // One target pass over [newest, draft...]: row i predicts position n + i.
  const int64_t vocab = target_.config().vocab_size;
  logits_.resize(static_cast<size_t>((drafted + 1) * vocab));
  tokens_.insert(tokens_.end(), draft_.begin(), draft_.end());
  const absl::Status forward = target_.Forward(tokens_.data() + n - 1, drafted + 1, cache_, logits_.data(),
                                               /*all_positions=*/true);
  if (!forward.ok()) {
    tokens_.resize(static_cast<size_t>(n));
    return forward;
  }
  const Verification v = VerifyDraft(sampler_, logits_.data(), vocab, tokens_, drafted);
  stats_.draft_seconds += std::chrono::duration<double>(t1 - t0).count();
  stats_.verify_seconds += std::chrono::duration<double>(Clock::now() - t1).count();
  // Keep the accepted draft tokens, then the target's own token; the cache keeps the rows of
  // every token but that newest one (the rejected draft rows go).
  tokens_.resize(static_cast<size_t>(n + v.accepted));
  tokens_.push_back(v.token);
  cache_.Truncate(n + v.accepted);

  ++stats_.steps;
  stats_.drafted += drafted;
  stats_.accepted += v.accepted;
  stats_.generated += v.accepted + 1;
  for (int64_t i = 0; i < drafted; ++i) {
    ++stats_.drafted_at[static_cast<size_t>(i)];
    if (i < v.accepted) ++stats_.accepted_at[static_cast<size_t>(i)];
  }
  if (drafted > 0) length_.Update(drafted, v.accepted);
  return std::vector<int32_t>(tokens_.end() - (v.accepted + 1), tokens_.end());
}

}  // namespace accullm::speculative
