// The coordinator's half of a micro-batch, shared by every executor: the sequence changes
// (opened, released, truncated) that wait for the next micro-batch, and the Batch built from
// them and the scheduler's items. Launching advances the scheduler's caches by the items'
// rows: the positions the stages will hold once the batch has run.
#pragma once

#include <cstdint>
#include <vector>

#include "pipeline/batch_executor.h"
#include "pipeline/wire.h"

namespace accullm::pipeline {

class BatchAssembler {
 public:
  void Open(const SequenceSetup& s) { opened_.push_back(NewSequence{s.seq, s.sampling, s.logprobs}); }
  void Release(uint64_t seq);
  void Truncate(uint64_t seq, int64_t length) { truncated_.push_back(Truncation{seq, length}); }
  // The next micro-batch for stage 0: the pending changes, then `items` over `tokens`.
  Batch Take(std::vector<int32_t> tokens, const std::vector<ExecItem>& items, DType act);

 private:
  std::vector<NewSequence> opened_;
  std::vector<uint64_t> released_;
  std::vector<Truncation> truncated_;
};

}  // namespace accullm::pipeline
