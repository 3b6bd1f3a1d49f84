// The iteration-level scheduler (continuous batching) on one compute thread.
//
// Every iteration it (1) drops cancelled sequences, (2) admits waiting sequences in arrival
// order while the running batch has room and the KV pool has free blocks for the prompt with
// a watermark to spare (1% of the pool, at least one block), (3) forms one batch: one
// decode token per running sequence first, then prompt chunks of at most `prefill_chunk`
// tokens until `max_batch_tokens` is reached, so a long prompt is prefilled over several
// iterations while the others keep decoding; a decoding sequence takes a block each time it
// crosses into a new one, and when the pool is out of blocks the newest idle sequence is
// preempted (vLLM's recompute policy: its blocks are freed on every stage, it goes back to
// the waiting queue, and on readmission its prompt and the tokens it generated are prefilled
// again; nothing streamed is sent twice and, sampling being keyed by position, the text is the
// one it would have produced unpreempted), (4) runs the batch through a
// pipeline::BatchExecutor (embedded: the one stage on this thread; under mpirun: the pipeline
// stages) which samples, and streams each finished segment's next token. Under a pipeline
// the running sequences are split into micro-batches (a fair share of the sequences and of
// `max_batch_tokens` each) and the pipeline is kept full: whenever the oldest micro-batch
// returns, its sequences go out again at once while the others are still in the stages.
// Network threads only Submit and Cancel.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "coordinator/generation_stream.h"
#include "coordinator/prefix_cache.h"
#include "model/kv_cache.h"
#include "model/sampler.h"
#include "model/transformer.h"
#include "monitoring/serving_metrics.h"
#include "pipeline/batch_executor.h"
#include "pipeline/embedded_pipeline.h"
#include "text/tokenizer.h"

namespace accullm::coordinator {

// Speculative decoding (serve --draft PACK / --speculate ngram; docs/serving.md): before each
// decode item of a sequence, a proposer drafts up to `max_draft_tokens` tokens (the length
// adapts to the sequence's acceptance rate: speculative/draft_length.h) on the scheduler's
// thread, and the item carries the newest token and the draft: the
// last stage samples every row and keeps the longest prefix equal to its own samples
// (pipeline/wire.h BatchItem::verify), so the tokens are exactly those without speculation.
// The rejected rows are then truncated (the sequence keeps its reserved blocks).
// The sequences of one micro-batch draft together (speculative::ProposeBatch): with a draft
// model, one forward pass per draft position for all of them (a row per sequence, each in
// its own cache), so the draft's weights are streamed max(k) times per launch, not once per
// sequence and position; prompt lookup proposes sequence by sequence (it runs no model).
struct SpeculationOptions {
  enum class Mode { kOff, kDraft, kNgram };
  Mode mode = Mode::kOff;
  model::Transformer* draft = nullptr;  // kDraft: the draft model (a pack of the target), not owned
  int64_t max_draft_tokens = 4;
  // Drafting pauses for a sequence while its running acceptance is under this (0: always
  // draft); unset: speculative::kDraftModelPauseBelow for kDraft, kNgramPauseBelow for kNgram.
  std::optional<double> pause_below;
};

struct SchedulerConfig {
  int max_num_seqs = 64;           // sequences in the running batch
  int64_t max_batch_tokens = 512;  // tokens per iteration (decode tokens + prefill chunks)
  int64_t prefill_chunk = 256;     // most prompt tokens of one sequence per iteration
  int max_waiting = 256;           // sequences waiting for admission; beyond → ResourceExhausted
  int64_t context = 0;             // positions per sequence; 0 = the model's maximum
  // Automatic prefix caching (coordinator/prefix_cache.h): full blocks of final tokens are
  // kept after their sequence and a new sequence starts on the longest cached run of its
  // prompt (serve: on unless --no-enable-prefix-caching).
  bool enable_prefix_caching = false;
  SpeculationOptions speculation;
};

struct SequenceParams {
  std::vector<int32_t> prompt;
  int64_t max_tokens = 16;
  model::SamplingParams sampling;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  int logprobs = -1;  // -1: none; k >= 0: the sampled token's logprob and k alternatives
  // Not user traffic (the drift canaries): scheduled like any request, but kept out of the
  // request and token metrics so those count exactly what clients sent.
  bool internal = false;
};

class Scheduler {
 public:
  // The embedded default: `model` runs as the one stage of an in-process pipeline
  // (pipeline::EmbeddedPipeline), the same stage runner as under mpirun. The stage's KV storage
  // gets as many blocks of the same size as `pool`, the one allocator (give it zero layers: it
  // then holds no memory).
  // `tokenizer` may be null: ids only (no text, no stop sequences), as `generate --output-ids`.
  static absl::StatusOr<std::unique_ptr<Scheduler>> CreateEmbedded(model::Transformer& model,
                                                                   const text::Tokenizer* tokenizer,
                                                                   model::KvBlockPool& pool, SchedulerConfig config,
                                                                   monitoring::ServingMetrics* metrics);
  // Any executor (the pipeline under mpirun). `pool` is the one allocator of KV blocks: each
  // sequence's cache in it is its block table (the prompt's blocks taken at admission, the
  // rest as it grows, freed once no micro-batch in flight uses it), whose ids the executor hands the stages with the
  // items (pipeline/batch_assembler.h). It must have the stages' block size and no more blocks than their storage (a
  // stage refuses an id outside its pool); a pool with zero layers holds no memory.
  Scheduler(pipeline::BatchExecutor& executor, const model::ModelConfig& model_config, const text::Tokenizer* tokenizer,
            model::KvBlockPool& pool, SchedulerConfig config, monitoring::ServingMetrics* metrics);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void Start();
  // Aborts every sequence (their streams get finish_reason "abort") and joins the thread.
  void Stop();

  // Queues one request's choices (all or none). ResourceExhausted when the waiting queue is
  // full, InvalidArgument when a choice can never fit the context or the KV pool.
  absl::Status Submit(std::vector<SequenceParams> choices, std::shared_ptr<GenerationStream> stream);
  // Aborts every waiting and running sequence at the next iteration (drain timeout).
  void CancelAll() {
    abort_all_.store(true);
    Wake();
  }

  const SchedulerConfig& config() const { return config_; }
  int num_waiting() const { return num_waiting_.load(); }
  int num_running() const { return num_running_.load(); }
  // Sequences preempted so far (their KV freed to let older ones grow, recomputed later).
  int64_t preemptions() const { return preemptions_.load(); }
  // Forward passes of the draft model so far, and the launches that drafted with it (tests:
  // a launch runs at most max_draft_tokens passes however many sequences draft in it).
  int64_t draft_forward_passes() const { return draft_forward_passes_.load(); }
  int64_t draft_launches() const { return draft_launches_.load(); }

  struct Sequence;

 private:
  void Wake();
  void Loop();
  void Iterate();
  struct InFlight {
    absl::StatusOr<uint64_t> ticket;
    std::vector<Sequence*> owners;  // one per item, in item order
    std::vector<int64_t> n_tokens;
    std::vector<bool> sample;
    std::vector<int64_t> verify;  // draft tokens per item (0: none)
  };
  // Forms one micro-batch from idle running sequences and launches it; false when none is idle.
  bool LaunchMicroBatch(size_t depth);
  // Waits for the oldest micro-batch in flight and streams its tokens.
  void CompleteOldest();
  void Admit();
  // Makes `s`'s cache hold positions [0, n), preempting the newest idle sequences while the
  // pool is out of blocks; false when `s` itself was preempted or only sequences in flight
  // could make room (then it waits for them).
  bool Grow(Sequence& s, int64_t n);
  // Frees `s`'s blocks here and (with the next micro-batch) on every stage; `s` is requeued
  // after this launch round (RequeuePreempted) and recomputed on readmission.
  void Preempt(Sequence& s);
  void RequeuePreempted();
  // Free blocks, counting the cached ones no sequence uses (the pool takes them back on demand).
  int64_t Available() const;
  // Evicts unused cached blocks until the free list has `n` (or none is left to evict).
  void MakeFree(int64_t n);
  // Returns `s`'s blocks: cached ones lose its reference, the others go back to the pool.
  void ReleaseBlocks(Sequence& s);
  // Offers `s`'s full blocks of final tokens not yet offered to the prefix cache.
  void CacheFullBlocks(Sequence& s);
  void DropCancelled();
  void Finish(Sequence& s, const std::string& reason, std::string text = {}, const std::string& error = {});
  void UpdateGauges();
  // How many draft tokens decoding sequence `s`'s next item may carry: at most `budget`, 0
  // when speculation is off, paused (a low acceptance rate) or the sequence is about to end.
  // Takes the sequence's draft length for this step: call once per decode item.
  int64_t DraftLimit(Sequence& s, int64_t budget) const;
  // The drafts of `seqs` (limits[i] tokens at most for seqs[i]), all proposed together.
  std::vector<std::vector<int32_t>> Draft(const std::vector<Sequence*>& seqs, const std::vector<int64_t>& limits);
  // The tokens of item `i` of `mb` (`tokens`, one or a verification's 1 .. verify + 1) for
  // sequence `s`: streamed in order until the sequence ends; a verification's rejected rows
  // are then truncated.
  void Deliver(Sequence& s, const InFlight& mb, size_t i, absl::Span<const pipeline::SampledToken> tokens,
               std::chrono::steady_clock::time_point now);

  std::unique_ptr<pipeline::EmbeddedPipeline> embedded_;  // CreateEmbedded's pipeline (destroyed after Stop)
  pipeline::BatchExecutor& executor_;
  const text::Tokenizer* tokenizer_;
  model::KvBlockPool& pool_;
  SchedulerConfig config_;
  monitoring::ServingMetrics* metrics_;
  std::vector<int32_t> eos_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> incoming_;  // guarded by mu_
  bool stop_ = false;                               // guarded by mu_
  std::atomic<bool> abort_all_{false};
  std::atomic<int> num_waiting_{0}, num_running_{0};

  // Owned by the compute thread.
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  std::deque<InFlight> in_flight_;  // launched, oldest first
  bool abort_requested_ = false;    // CancelAll seen; applied as sequences come back
  uint64_t next_seq_id_ = 0;
  uint64_t next_order_ = 0;                    // guarded by mu_ (Submit)
  int64_t watermark_ = 1;                      // blocks left free by an admission beside running sequences
  std::unique_ptr<PrefixCache> prefix_cache_;  // null: prefix caching off
  std::atomic<int64_t> preemptions_{0};
  std::atomic<int64_t> draft_forward_passes_{0}, draft_launches_{0};
  std::thread thread_;
};

}  // namespace accullm::coordinator
