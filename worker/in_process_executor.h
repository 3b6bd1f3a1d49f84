// The embedded default: the whole model in this process (Transformer::ForwardBatch on the
// scheduler's KV caches), sampling right after. Launch runs the micro-batch at once.
#pragma once

#include <map>
#include <unordered_map>

#include "model/transformer.h"
#include "worker/batch_executor.h"
#include "worker/sequence_sampling.h"

namespace accullm::worker {

class InProcessExecutor final : public BatchExecutor {
 public:
  explicit InProcessExecutor(Transformer& model) : model_(model) {}
  void Open(SequenceSetup setup) override;
  void Release(uint64_t seq) override { sequences_.erase(seq); }
  absl::StatusOr<uint64_t> Launch(std::vector<int32_t> tokens, std::vector<ExecItem> items) override;
  absl::StatusOr<std::vector<SampledToken>> Wait(uint64_t ticket) override;

 private:
  Transformer& model_;
  std::unordered_map<uint64_t, SequenceSampling> sequences_;
  std::map<uint64_t, absl::StatusOr<std::vector<SampledToken>>> done_;
  std::vector<float> logits_;
  uint64_t next_ticket_ = 0;
};

}  // namespace accullm::worker
