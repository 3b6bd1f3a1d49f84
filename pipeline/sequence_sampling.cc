#include "pipeline/sequence_sampling.h"

#include <algorithm>
#include <cmath>

#include "speculative/draft_verification.h"

namespace accullm::pipeline {

SampledToken Logprobs(const float* logits, int64_t vocab, int32_t id, int k) {
  const float mx = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
  const double lse = mx + std::log(sum);
  SampledToken t;
  t.id = id;
  t.logprob = static_cast<float>(logits[id] - lse);
  if (k > 0) {
    std::vector<int32_t> idx(static_cast<size_t>(vocab));
    for (int64_t i = 0; i < vocab; ++i) idx[i] = static_cast<int32_t>(i);
    const size_t kk = std::min<size_t>(static_cast<size_t>(k), idx.size());
    std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    for (size_t i = 0; i < kk; ++i) t.top.emplace_back(idx[i], static_cast<float>(logits[idx[i]] - lse));
  }
  return t;
}

SampledToken SequenceSampling::Sample(uint64_t seq, float* logits, int64_t vocab) {
  if (logprobs_ >= 0) raw_.assign(logits, logits + vocab);  // Sample modifies the row
  // The token sampled here goes to position history_length(): the history is every token the
  // sequence's KV positions were fed, so its length is the next position.
  const int32_t id = sampler_.Sample(logits, vocab, history_, history_length());
  SampledToken t = logprobs_ >= 0 ? Logprobs(raw_.data(), vocab, id, logprobs_) : SampledToken{};
  t.seq = seq;
  t.id = id;
  return t;
}

std::vector<SampledToken> SequenceSampling::Verify(uint64_t seq, float* logits, int64_t vocab, int64_t draft) {
  const size_t rows = static_cast<size_t>((draft + 1) * vocab);
  if (logprobs_ >= 0) raw_.assign(logits, logits + rows);  // VerifyDraft modifies the rows
  const speculative::Verification v = speculative::VerifyDraft(sampler_, logits, vocab, history_, draft);
  const int64_t first = history_length() - draft;  // the position of the first draft token
  std::vector<SampledToken> out;
  for (int64_t i = 0; i <= v.accepted; ++i) {
    const int32_t id = i < v.accepted ? history_[static_cast<size_t>(first + i)] : v.token;
    SampledToken t = logprobs_ >= 0 ? Logprobs(raw_.data() + i * vocab, vocab, id, logprobs_) : SampledToken{};
    t.seq = seq;
    t.id = id;
    out.push_back(std::move(t));
  }
  return out;
}

void SequenceSampling::Truncate(int64_t length) {
  if (length < static_cast<int64_t>(history_.size())) history_.resize(static_cast<size_t>(length));
}

}  // namespace accullm::pipeline
