// What the scheduler drives each iteration: run micro-batches of sequences (prefill chunks
// and decode tokens) and get back the sampled token of every sequence that asked for one.
// PipelineExecutor sends the micro-batches through pipeline stages over a Transport (MPI
// ranks); EmbeddedPipeline runs the one in-process stage on the caller's thread. Either way
// the last stage samples.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "model/kv_cache.h"
#include "model/sampler.h"
#include "pipeline/wire.h"

namespace accullm::pipeline {

struct SequenceSetup {
  uint64_t seq = 0;
  model::SamplingParams sampling;
  int logprobs = -1;  // -1: none; k >= 0: the sampled token's logprob and k alternatives
  // Prefix caching: cached full blocks the sequence starts on, read-only, and the tokens of
  // their positions (wire.h NewSequence). The scheduler's cache for it holds them already.
  std::vector<int32_t> prefix_blocks;
  std::vector<int32_t> prefix_tokens;
};

struct ExecItem {
  uint64_t seq = 0;
  model::KvCache* cache = nullptr;  // the scheduler's cache: positions start at its length
  int64_t n_tokens = 0;
  bool sample = false;  // sample a token after this item's last row
  // Speculative decoding: the last `verify` tokens are a draft to verify (wire.h
  // BatchItem::verify); Wait then returns 1 .. verify + 1 tokens for the item.
  int64_t verify = 0;
};

using pipeline::SampledToken;

class BatchExecutor {
 public:
  virtual ~BatchExecutor() = default;
  // A sequence joins (after admission) / leaves (finished, cancelled): its KV cache and
  // sampler state live wherever the executor runs the model.
  virtual void Open(SequenceSetup setup) = 0;
  virtual void Release(uint64_t seq) = 0;
  // Rolls `seq` back to its first `length` positions before the next micro-batch; the next
  // item of `seq` starts at `length` (see pipeline/wire.h Truncation).
  virtual void Truncate(uint64_t seq, int64_t length) = 0;
  // Starts one micro-batch (`tokens` holds the items' tokens back to back: a sequence's
  // prompt reaches the stages only this way) and advances the items' caches; returns a ticket for Wait. Sequences of
  // micro-batches in flight together must be disjoint.
  virtual absl::StatusOr<uint64_t> Launch(std::vector<int32_t> tokens, std::vector<ExecItem> items) = 0;
  // The sampled tokens of that micro-batch, one per item with sample = true, in item order
  // (a verification item's accepted draft tokens and the target's next token, consecutive).
  // Unavailable when the executor failed (a pipeline stage died): nothing will run again.
  virtual absl::StatusOr<std::vector<SampledToken>> Wait(uint64_t ticket) = 0;
  // How many micro-batches the scheduler should keep in flight per iteration.
  virtual int micro_batches() const { return 1; }
};

}  // namespace accullm::pipeline
