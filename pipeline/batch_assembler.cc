#include "pipeline/batch_assembler.h"

#include <utility>

namespace accullm::pipeline {

void BatchAssembler::Release(uint64_t seq) {
  // Never sent to the stages yet: forget it here.
  for (auto it = opened_.begin(); it != opened_.end(); ++it) {
    if (it->seq == seq) {
      opened_.erase(it);
      return;
    }
  }
  released_.push_back(seq);
}

Batch BatchAssembler::Take(std::vector<int32_t> tokens, const std::vector<ExecItem>& items, DType act) {
  Batch b;
  b.opened = std::exchange(opened_, {});
  b.released = std::exchange(released_, {});
  b.truncated = std::exchange(truncated_, {});
  for (const auto& it : items) {
    b.items.push_back({it.seq, it.cache->length(), it.n_tokens, it.sample});
    b.rows += it.n_tokens;
    it.cache->set_length(it.cache->length() + it.n_tokens);
  }
  b.tokens = std::move(tokens);
  b.act = act;
  return b;
}

}  // namespace accullm::pipeline
