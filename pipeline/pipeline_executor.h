// The coordinator's side of the pipeline (rank 0): a handshake that hands every stage its
// layer range and refuses mismatched ranks or models, then micro-batches out to stage 0 and
// sampled tokens back from the last stage. A monitor thread receives everything, tracks the
// stages' heartbeats, and fails the executor when a stage is silent for timeout_ms, a
// micro-batch gets no result within batch_timeout_ms, or the transport reports an error:
// every Wait then returns Unavailable at once (never a hang) and the failure callback names
// the rank, as does any message a stage should not send (malformed, of an unexpected type,
// a result from a stage other than the last, token ids outside the vocabulary): a stage that
// sends one is broken, and its next messages cannot be trusted either. Time this process
// itself was not running (starved of CPU, stopped, paused) does not count as silence
// (stall_meter.h), and every message already received is read before any stage is judged.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/dtype.h"
#include "model/model_config.h"
#include "pipeline/batch_assembler.h"
#include "pipeline/batch_executor.h"
#include "sharding/stage_plan.h"
#include "transport/transport.h"

namespace accullm::pipeline {

struct PipelineConfig {
  DType activations = DType::kF32;  // F32, F16 or BF16 (CheckActivationDType)
  // kNccl: the stages move activations over NCCL; once every stage accepted the hello,
  // Start runs join_activation_channel (rank 0's part of the NCCL bootstrap collective).
  pipeline::ActivationTransport activation_transport = pipeline::ActivationTransport::kMpi;
  std::function<absl::Status()> join_activation_channel;
  int64_t kv_block_size = 16, kv_blocks = 0, context = 0;
  kernels::KvDType kv_dtype = kernels::KvDType::kF32;  // every stage's (Hello::kv_dtype)
  int micro_batches = 2;
  uint32_t heartbeat_ms = 200;
  uint32_t timeout_ms = 3000;         // a stage silent this long (while we run) is dead
  uint32_t batch_timeout_ms = 60000;  // a micro-batch without result this long: the pipeline is stuck
};

struct StageStats {
  int rank = 0;
  uint64_t batches = 0;
  double compute_seconds = 0;
  double heartbeat_age_seconds = 0;  // since the coordinator last heard from the stage (stage_stats())
};

// What the coordinator tells stage `stage` of `plan` at startup.
Hello StageHello(const model::ModelConfig& model, const sharding::StagePlan& plan, const PipelineConfig& config,
                 int stage);

class PipelineExecutor final : public BatchExecutor {
 public:
  // Handshake with ranks 1..size-1 (one per plan stage); a clear error when they disagree.
  static absl::StatusOr<std::unique_ptr<PipelineExecutor>> Start(transport::Transport& t,
                                                                 const model::ModelConfig& model,
                                                                 const sharding::StagePlan& plan,
                                                                 PipelineConfig config);
  ~PipelineExecutor() override;

  // Runs once, on the monitor thread, when the pipeline fails.
  void set_on_failure(std::function<void(const std::string&)> f);
  // Tells every stage to exit (normal shutdown) and stops the monitor.
  void Shutdown();
  bool failed() const { return failed_.load(); }
  std::vector<StageStats> stage_stats() const;
  // Micro-batches launched and not yet answered.
  int64_t micro_batches_in_flight() const;
  uint64_t bytes_sent() const { return t_.bytes_sent(); }

  void Open(SequenceSetup setup) override;
  void Release(uint64_t seq) override;
  void Truncate(uint64_t seq, int64_t length) override;
  absl::StatusOr<uint64_t> Launch(std::vector<int32_t> tokens, std::vector<ExecItem> items) override;
  absl::StatusOr<std::vector<SampledToken>> Wait(uint64_t ticket) override;
  int micro_batches() const override { return config_.micro_batches; }

 private:
  PipelineExecutor(transport::Transport& t, PipelineConfig c, int stages, int64_t vocab)
      : t_(t), config_(c), stages_(stages), vocab_(vocab), assembler_(c.kv_block_size) {}
  void Monitor();
  void Fail(const std::string& why);
  // One message from a stage (monitor thread). Anything but a heartbeat, or a result from the
  // last stage for a batch in flight whose tokens fit the vocabulary, fails the pipeline at
  // once, naming the rank (a result with ok false: the stage's own report of its failure).
  void Handle(int src, const std::vector<uint8_t>& bytes);
  // This process did not run for `stalled`: moves every deadline on by as much.
  void ExcuseOwnStall(std::chrono::steady_clock::duration stalled);
  // Why the pipeline is dead, or "".
  std::string CheckLiveness();

  transport::Transport& t_;
  PipelineConfig config_;
  int stages_;
  int64_t vocab_;             // token ids in a result must lie in [0, vocab_)
  BatchAssembler assembler_;  // changes sent with the next micro-batch
  uint64_t next_batch_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, std::chrono::steady_clock::time_point> in_flight_;  // batch → launch time
  std::map<uint64_t, std::vector<SampledToken>> results_;
  std::vector<std::chrono::steady_clock::time_point> last_heard_;  // per rank
  std::vector<StageStats> stats_;
  std::string error_;
  std::function<void(const std::string&)> on_failure_;
  std::atomic<bool> failed_{false}, stop_{false};
  std::thread monitor_;
};

}  // namespace accullm::pipeline
