// The coordinator's half of a micro-batch, shared by every executor: the sequence changes
// (opened, released, truncated) that wait for the next micro-batch, and the Batch built from
// them and the scheduler's items. Launching advances the scheduler's caches by the items'
// rows: the positions the stages will hold once the batch has run.
//
// The scheduler's caches are the block tables (the one allocator is its pool); the stages
// learn each sequence's table as it grows: the assembler remembers how many of a sequence's
// block ids the stages were told and puts the ones an item's rows start using beyond that into
// the item (wire.h BatchItem::blocks). A truncation cuts the told count where the stages cut
// their tables, ceil(length / block_size).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "pipeline/batch_executor.h"
#include "pipeline/wire.h"

namespace accullm::pipeline {

class BatchAssembler {
 public:
  // `block_size`: the stages' (Hello::kv_block_size), which the scheduler's pool shares.
  explicit BatchAssembler(int64_t block_size) : block_size_(block_size) {}

  void Open(const SequenceSetup& s);
  void Release(uint64_t seq);
  void Truncate(uint64_t seq, int64_t length);
  // The next micro-batch for stage 0: the pending changes, then `items` over `tokens`.
  Batch Take(std::vector<int32_t> tokens, const std::vector<ExecItem>& items, DType act);

 private:
  int64_t block_size_;
  std::vector<NewSequence> opened_;
  std::vector<uint64_t> released_;
  std::vector<Truncation> truncated_;
  std::unordered_map<uint64_t, size_t> told_;  // sequence → block ids the stages were told
};

}  // namespace accullm::pipeline
