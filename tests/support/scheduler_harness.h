// What the scheduler and pipeline suites share (tests/unit/scheduler_test.cc,
// scheduler_kv_pool_test.cc, scheduler_speculation_test.cc, transport_pipeline_test.cc): a
// fixture with the embedded model and its tokenizer, submitting requests and collecting what
// their streams delivered, the embedded pipeline for a test's own executor to wrap, and
// pipeline stage ranks on threads over the in-process transport. The assertions stay in the
// suites; these only build and drive, and report a failure instead of crashing.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "coordinator/scheduler.h"
#include "gtest/gtest.h"
#include "model/transformer.h"
#include "monitoring/serving_metrics.h"
#include "pipeline/embedded_pipeline.h"
#include "pipeline/pipeline_executor.h"
#include "sharding/stage_plan.h"
#include "text/tokenizer.h"
#include "transport/transport.h"

namespace accullm::test_support {

// A fixture holding the embedded model (on a ThreadPool of `threads`) and its tokenizer; a
// test whose model or tokenizer cannot be loaded stops in SetUp.
class EmbeddedModelTest : public ::testing::Test {
 protected:
  explicit EmbeddedModelTest(int threads = 2) : threads_(threads) {}
  void SetUp() override;

  // The scheduler over the embedded pipeline (Scheduler::CreateEmbedded); nullptr, and a test
  // failure with the status, when it cannot be made.
  std::unique_ptr<coordinator::Scheduler> EmbeddedScheduler(model::KvBlockPool& kv,
                                                            const coordinator::SchedulerConfig& config,
                                                            monitoring::ServingMetrics* metrics = nullptr);

  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<model::Transformer> model_;
  std::unique_ptr<text::Tokenizer> tok_;

 private:
  int threads_;
};

// What one choice of a request delivered through its GenerationStream.
struct StreamedChoice {
  std::vector<int32_t> ids;
  std::vector<float> logprobs;
  std::vector<std::vector<std::pair<int32_t, float>>> top;
  std::string text;
  std::string finish;             // "" when the choice had not finished by the deadline
  std::string error;              // the finishing event's error message
  int64_t completion_tokens = 0;  // as the choice's last event counted them
};

// Request `i` of the mix the speculation and KV-pool suites send, made from `base` (its prompt,
// length and sampling): request 2 has a repetition penalty (the history it reads must survive
// rollbacks and recomputation), 3 the stop string " the", 4 two logprobs per token, and 1 and 5
// a second choice (seed + 1, as the API makes n = 2). Its choices, first the one of `base`.
std::vector<coordinator::SequenceParams> MixedRequest(int i, coordinator::SequenceParams base);

// Submits each request (its choices) to `scheduler`, in order, each with a stream of its own.
// The streams, or none (and a test failure naming the request and the status) once one is refused.
std::vector<std::shared_ptr<coordinator::GenerationStream>> SubmitAll(
    coordinator::Scheduler& scheduler, const std::vector<std::vector<coordinator::SequenceParams>>& requests);
// The same with each sequence a request of its own (one choice).
std::vector<std::shared_ptr<coordinator::GenerationStream>> SubmitEach(
    coordinator::Scheduler& scheduler, const std::vector<coordinator::SequenceParams>& requests);

// Drains `stream` until every one of its choices has finished or `deadline` has passed.
std::vector<StreamedChoice> WaitForChoices(coordinator::GenerationStream& stream,
                                           std::chrono::steady_clock::time_point deadline);
// The choices of `streams` back to back, waiting for one stream after the other, each for at
// most `timeout_each` from when its turn comes.
std::vector<StreamedChoice> WaitForAll(const std::vector<std::shared_ptr<coordinator::GenerationStream>>& streams,
                                       std::chrono::milliseconds timeout_each);

// Every choice's tokens, text, finish reason, logprobs and top alternatives are equal;
// failures name `what` and the choice.
void ExpectSameChoices(const std::vector<StreamedChoice>& got, const std::vector<StreamedChoice>& want,
                       const std::string& what);

// The value of the first sample of `name` (a series with labels) in a Prometheus exposition,
// `absent` when there is none.
double SeriesValue(const std::string& exposition, const std::string& name, double absent);

// The embedded pipeline (the model as the one stage, run on the calling thread) behind the
// BatchExecutor calls, for a test's executor to derive from: it overrides a call, records what
// the scheduler asked, and forwards here. Its pool has `kv_blocks` blocks of PipelineConfig's
// default size and the model's whole context. If the pipeline cannot start, a test failure is
// recorded and every Launch and Wait fails.
class EmbeddedPipelineWrapper : public pipeline::BatchExecutor {
 public:
  EmbeddedPipelineWrapper(model::Transformer& model, int64_t kv_blocks);

  void Open(pipeline::SequenceSetup setup) override;
  void Release(uint64_t seq) override;
  void Truncate(uint64_t seq, int64_t length) override;
  absl::StatusOr<uint64_t> Launch(std::vector<int32_t> tokens, std::vector<pipeline::ExecItem> items) override;
  absl::StatusOr<std::vector<pipeline::SampledToken>> Wait(uint64_t ticket) override;

 private:
  std::unique_ptr<pipeline::EmbeddedPipeline> pipeline_;
};

// The layout of an mpirun pipeline inside one test process: stage ranks 1..stages, each with
// its own copy of the model (on a one-thread pool) running RunPipelineStage on a thread of its
// own, and the coordinator's PipelineExecutor on rank 0 of an in-process hub.
class InProcessPipeline {
 public:
  // Loads the stages' models; loaded() is false (and a test failure recorded) if one cannot be.
  explicit InProcessPipeline(int stages, const std::string& model_dir);
  // Finish().
  ~InProcessPipeline();
  InProcessPipeline(const InProcessPipeline&) = delete;
  InProcessPipeline& operator=(const InProcessPipeline&) = delete;

  bool loaded() const { return loaded_; }
  transport::InProcessHub& hub() { return hub_; }

  // Starts every stage rank's loop, talking through `stage_transport(rank)` when given (a test's
  // wrapper around hub().at(rank)) and hub().at(rank) otherwise, then the executor's handshake
  // with them. The executor is owned here; nullptr and a test failure when it cannot start (or
  // the models were not loaded).
  pipeline::PipelineExecutor* Start(const model::ModelConfig& model, const sharding::StagePlan& plan,
                                    const pipeline::PipelineConfig& config,
                                    const std::function<transport::Transport&(int rank)>& stage_transport = {});

  // Shuts the stages down (through the executor, or directly if it never started) and joins
  // their threads. Each stage rank's exit status, indexed by rank (-1 for rank 0 and a stage
  // that never ran). Later calls return the same.
  const std::vector<int>& Finish();

 private:
  int stages_;
  bool loaded_ = true, finished_ = false;
  transport::InProcessHub hub_;
  std::vector<std::unique_ptr<ThreadPool>> pools_;
  std::vector<std::unique_ptr<model::Transformer>> models_;
  std::vector<std::thread> threads_;
  std::vector<int> codes_;
  std::unique_ptr<pipeline::PipelineExecutor> executor_;
};

}  // namespace accullm::test_support
