#include "pipeline/batch_assembler.h"

#include <algorithm>
#include <utility>

namespace accullm::pipeline {

void BatchAssembler::Open(const SequenceSetup& s) {
  opened_.push_back(NewSequence{s.seq, s.sampling, s.logprobs, s.prefix_blocks, s.prefix_tokens});
  told_[s.seq] = s.prefix_blocks.size();  // the opening names them
}

void BatchAssembler::Release(uint64_t seq) {
  told_.erase(seq);
  // A rollback still pending is moot, and the stages would refuse it: they drop released
  // sequences before applying truncations (a speculative rollback followed by a preemption or
  // a cancellation before the next micro-batch).
  truncated_.erase(
      std::remove_if(truncated_.begin(), truncated_.end(), [&](const Truncation& t) { return t.seq == seq; }),
      truncated_.end());
  // Never sent to the stages yet: forget it here.
  for (auto it = opened_.begin(); it != opened_.end(); ++it) {
    if (it->seq == seq) {
      opened_.erase(it);
      return;
    }
  }
  released_.push_back(seq);
}

void BatchAssembler::Truncate(uint64_t seq, int64_t length) {
  truncated_.push_back(Truncation{seq, length});
  if (auto t = told_.find(seq); t != told_.end() && length >= 0)
    t->second = std::min(t->second, static_cast<size_t>((length + block_size_ - 1) / block_size_));
}

Batch BatchAssembler::Take(std::vector<int32_t> tokens, const std::vector<ExecItem>& items, DType act) {
  Batch b;
  b.opened = std::exchange(opened_, {});
  b.released = std::exchange(released_, {});
  b.truncated = std::exchange(truncated_, {});
  for (const auto& it : items) {
    const int64_t position = it.cache->length();
    const std::vector<int32_t>& table = it.cache->blocks();
    // The ids the item's rows need beyond what the stages hold. A cache that does not hold
    // them all (not reserved) sends what it has: the stages refuse the short table.
    const size_t need = static_cast<size_t>((position + it.n_tokens + block_size_ - 1) / block_size_);
    size_t& told = told_[it.seq];
    const size_t upto = std::min(need, table.size());
    std::vector<int32_t> blocks;
    if (upto > told) blocks.assign(table.begin() + static_cast<std::ptrdiff_t>(told), table.begin() + upto);
    told = std::max(told, upto);
    b.items.push_back({it.seq, position, it.n_tokens, it.sample, std::move(blocks), it.verify});
    b.rows += it.n_tokens;
    it.cache->set_length(position + it.n_tokens);
  }
  b.tokens = std::move(tokens);
  b.act = act;
  return b;
}

}  // namespace accullm::pipeline
