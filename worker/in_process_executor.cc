#include "worker/in_process_executor.h"

#include "absl/strings/str_cat.h"

namespace accullm::worker {

void InProcessExecutor::Open(SequenceSetup setup) {
  const uint64_t seq = setup.seq;
  sequences_.erase(seq);
  sequences_.emplace(seq, SequenceSampling(setup));
}

absl::StatusOr<uint64_t> InProcessExecutor::Launch(std::vector<int32_t> tokens, std::vector<ExecItem> items) {
  const uint64_t ticket = ++next_ticket_;
  std::vector<BatchSegment> segments;
  segments.reserve(items.size());
  for (const auto& it : items) segments.push_back({it.cache, it.n_tokens});
  const int64_t vocab = model_.config().vocab_size;
  logits_.resize(items.size() * static_cast<size_t>(vocab));
  absl::Status st = model_.ForwardBatch(tokens.data(), segments, logits_.data());
  if (!st.ok()) {
    done_.emplace(ticket, st);
    return ticket;
  }
  std::vector<SampledToken> out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].sample) continue;
    auto s = sequences_.find(items[i].seq);
    if (s == sequences_.end()) {
      done_.emplace(ticket, absl::InternalError(absl::StrCat("sequence ", items[i].seq, " was never opened")));
      return ticket;
    }
    out.push_back(s->second.Sample(items[i].seq, logits_.data() + i * vocab, vocab));
  }
  done_.emplace(ticket, std::move(out));
  return ticket;
}

absl::StatusOr<std::vector<SampledToken>> InProcessExecutor::Wait(uint64_t ticket) {
  auto it = done_.find(ticket);
  if (it == done_.end()) return absl::InvalidArgumentError(absl::StrCat("unknown ticket ", ticket));
  auto r = std::move(it->second);
  done_.erase(it);
  return r;
}

}  // namespace accullm::worker
