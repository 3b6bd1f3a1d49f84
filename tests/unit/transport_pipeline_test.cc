// The pipeline over the in-process transport: the coordinator's PipelineExecutor and real
// PipelineStage loops on threads give the same tokens as the in-process scheduler (greedy
// and seeded sampling, logprobs, penalties, 1/2/3 stages, several micro-batches), a prompt
// crosses each hop once, as its rows' tokens, a silent stage fails
// every request within the timeout, mismatched ranks or plans are refused at startup, and a
// stage that starts late does not make the early ones give up on the coordinator.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "coordinator/scheduler.h"
#include "pipeline/embedded_pipeline.h"
#include "pipeline/pipeline_executor.h"
#include "pipeline/pipeline_stage.h"
#include "pipeline/wire.h"
#include "sharding/stage_plan.h"
#include "tests/support/scheduler_harness.h"
#include "tests/support/test_support.h"
#include "transport/transport.h"

namespace accullm::pipeline {
namespace {

using Outcome = test_support::StreamedChoice;
using test_support::InProcessPipeline;

class PipelineTest : public test_support::EmbeddedModelTest {
 protected:
  PipelineTest() : EmbeddedModelTest(/*threads=*/1) {}

  std::vector<coordinator::SequenceParams> Requests() {
    std::vector<coordinator::SequenceParams> out;
    const char* prompts[] = {"Once upon a time", "The little dog", "Tom and Lily went to the park. They", "A"};
    for (int i = 0; i < 4; ++i) {
      coordinator::SequenceParams p;
      p.prompt = tok_->Encode(prompts[i], true);
      p.max_tokens = 12;
      p.ignore_eos = true;
      if (i % 2 == 1) {
        p.sampling.temperature = 0.9f;
        p.sampling.top_k = 40;
        p.sampling.seed = 1000 + i;
      }
      p.logprobs = i == 2 ? 3 : -1;
      if (i >= 2) {  // the penalties read the last stage's history: prompt + generated, every mode
        p.sampling.repetition_penalty = 1.3f;
        p.sampling.presence_penalty = 0.4f;
        p.sampling.frequency_penalty = 0.6f;
      }
      out.push_back(p);
    }
    return out;
  }

  // Runs every request concurrently through `s` and collects tokens per request (60 s for all).
  std::vector<Outcome> RunAll(coordinator::Scheduler& s) {
    const auto streams = test_support::SubmitEach(s, Requests());
    std::vector<Outcome> out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (const auto& stream : streams) out.push_back(test_support::WaitForChoices(*stream, deadline)[0]);
    return out;
  }

  std::vector<Outcome> SingleProcess(kernels::KvDType kv_dtype = kernels::KvDType::kF32) {
    model::KvBlockPool kv(0, model_->kv_format(kv_dtype), 16, 256);
    coordinator::SchedulerConfig sc;
    sc.prefill_chunk = 5;  // several chunks per prompt
    auto s = EmbeddedScheduler(kv, sc);
    if (s == nullptr) return {};
    s->Start();
    auto out = RunAll(*s);
    s->Stop();
    return out;
  }

  std::vector<Outcome> Pipelined(int stages, int micro_batches, DType act,
                                 kernels::KvDType kv_dtype = kernels::KvDType::kF32) {
    InProcessPipeline pipe(stages, test_support::ModelDir());
    const auto& c = model_->config();
    pipeline::PipelineConfig pc;
    pc.kv_blocks = 256;
    pc.context = c.max_position_embeddings;
    pc.micro_batches = micro_batches;
    pc.activations = act;
    pc.kv_dtype = kv_dtype;
    auto plan = sharding::PlanStages(sharding::CostFromModel(*model_, kv_dtype), stages, {});
    EXPECT_TRUE(plan.ok()) << plan.status();
    if (!plan.ok()) return {};
    PipelineExecutor* exec = pipe.Start(c, *plan, pc);
    if (exec == nullptr) return {};
    model::KvBlockPool accounting(0, model_->kv_format(kv_dtype), 16, 256);
    coordinator::SchedulerConfig sc;
    sc.prefill_chunk = 5;
    std::vector<Outcome> out;
    {
      coordinator::Scheduler s(*exec, c, tok_.get(), accounting, sc, nullptr);
      s.Start();
      out = RunAll(s);
      s.Stop();
    }
    const std::vector<int>& codes = pipe.Finish();
    for (int r = 1; r <= stages; ++r) EXPECT_EQ(codes[r], 0) << "stage rank " << r;
    return out;
  }

  // How one 8-token request through a scheduler over `executor` ended (the stages' faults
  // under test end it early), and how long that took; 10 s at most.
  struct EndedRequest {
    std::string finish, error;
    double seconds = 0;
  };
  EndedRequest RunOneRequest(PipelineExecutor& executor) {
    model::KvBlockPool accounting(0, model_->kv_format(), 16, 64);
    coordinator::SchedulerConfig sc;
    sc.context = 128;
    coordinator::Scheduler s(executor, model_->config(), tok_.get(), accounting, sc, nullptr);
    s.Start();
    coordinator::SequenceParams p;
    p.prompt = tok_->Encode("Once upon a time", true);
    p.max_tokens = 8;
    const auto start = std::chrono::steady_clock::now();
    EndedRequest r;
    const auto streams = test_support::SubmitEach(s, {p});
    if (streams.size() == 1) {
      const Outcome ended = test_support::WaitForChoices(*streams[0], start + std::chrono::seconds(10))[0];
      r.finish = ended.finish;
      r.error = ended.error;
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    s.Stop();
    return r;
  }
};

// The message PipelineExecutor's on_failure callback was given. The callback runs on the
// monitor thread after the failure has woken the requests, so a request can end before it ran:
// Wait gives it up to 2 s.
class FailureMessage {
 public:
  std::function<void(const std::string&)> Callback() {
    return [this](const std::string& why) {
      std::lock_guard<std::mutex> lock(mu_);
      why_ = why;
      cv_.notify_all();
    };
  }
  std::string Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(2), [&] { return !why_.empty(); });
    return why_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::string why_;
};

// A stage's transport that keeps a copy of every batch it receives.
class RecordingTransport final : public transport::Transport {
 public:
  explicit RecordingTransport(transport::Transport& t) : t_(t) {}
  int rank() const override { return t_.rank(); }
  int size() const override { return t_.size(); }
  absl::Status Send(int dest, std::vector<uint8_t> bytes) override { return t_.Send(dest, std::move(bytes)); }
  absl::StatusOr<std::optional<transport::Envelope>> Receive(std::chrono::milliseconds timeout) override {
    auto env = t_.Receive(timeout);
    if (env.ok() && env->has_value()) {
      auto m = pipeline::Decode((*env)->bytes.data(), (*env)->bytes.size());
      if (m.ok() && m->type() == pipeline::MessageType::kBatch) {
        std::lock_guard<std::mutex> lock(mu_);
        sizes.push_back((*env)->bytes.size());
        batches.push_back(std::get<pipeline::Batch>(std::move(m->body)));
      }
    }
    return env;
  }
  uint64_t bytes_sent() const override { return t_.bytes_sent(); }

  std::mutex mu_;
  std::vector<pipeline::Batch> batches;
  std::vector<size_t> sizes;

 private:
  transport::Transport& t_;
};

// Wire version 4: an opened sequence carries no prompt. Every stage receives each position's
// token exactly once, as a row of the batch that runs it (the last stage builds the penalties'
// history from them), and a batch's bytes are its fixed fields, 4 per row and the activations.
TEST_F(PipelineTest, PromptCrossesEachHopOnceAsRowTokens) {
  constexpr int kStages = 3;
  std::vector<std::unique_ptr<RecordingTransport>> rec;  // outlives the stages that use it
  InProcessPipeline pipe(kStages, test_support::ModelDir());
  ASSERT_TRUE(pipe.loaded());
  for (int r = 1; r <= kStages; ++r) rec.push_back(std::make_unique<RecordingTransport>(pipe.hub().at(r)));
  pipeline::PipelineConfig pc;
  pc.kv_blocks = 64;
  pc.context = 256;
  PipelineExecutor* exec = pipe.Start(model_->config(), sharding::EvenStagePlan(model_->config().num_layers, kStages),
                                      pc, [&](int r) -> transport::Transport& { return *rec[r - 1]; });
  ASSERT_NE(exec, nullptr);
  model::KvBlockPool accounting(0, model_->kv_format(), 16, 64);
  coordinator::SchedulerConfig sc;
  sc.context = 256;
  sc.prefill_chunk = 5;
  coordinator::SequenceParams p;
  p.prompt = tok_->Encode("Tom and Lily went to the park. They played on the swings and the slide all day long", true);
  ASSERT_GT(p.prompt.size(), 15u);
  p.max_tokens = 6;
  p.ignore_eos = true;
  p.sampling.frequency_penalty = 0.5f;
  std::vector<int32_t> generated;
  {
    coordinator::Scheduler s(*exec, model_->config(), tok_.get(), accounting, sc, nullptr);
    s.Start();
    const auto streams = test_support::SubmitEach(s, {p});
    ASSERT_EQ(streams.size(), 1u);
    generated =
        test_support::WaitForChoices(*streams[0], std::chrono::steady_clock::now() + std::chrono::seconds(60))[0].ids;
    s.Stop();
  }
  pipe.Finish();
  ASSERT_EQ(generated.size(), 6u);
  // The positions fed: the prompt, then every generated token but the last.
  std::vector<int32_t> fed = p.prompt;
  fed.insert(fed.end(), generated.begin(), generated.end() - 1);
  for (int r = 0; r < kStages; ++r) {
    std::vector<int32_t> seen;
    size_t opened = 0;
    for (size_t i = 0; i < rec[r]->batches.size(); ++i) {
      const pipeline::Batch& b = rec[r]->batches[i];
      opened += b.opened.size();
      EXPECT_LE(b.rows, sc.prefill_chunk) << "stage " << r;  // never the whole prompt at once
      seen.insert(seen.end(), b.tokens.begin(), b.tokens.end());
      // 24 header; counts of opened (56 each and 4 per cached prefix block id and token: none
      // here, no prefix caching), released (8), truncated (16), items (37 and 4 per new block
      // id), tokens (4); dtype, rows, width, nccl flag, activation byte count; activations.
      size_t block_ids = 0;
      for (const auto& it : b.items) block_ids += it.blocks.size();
      const size_t fixed = 24 + 4 + 56 * b.opened.size() + 4 + 8 * b.released.size() + 4 + 16 * b.truncated.size() + 4 +
                           37 * b.items.size() + 4 * block_ids + 4 + 4 * b.tokens.size() + 1 + 8 + 8 + 1 + 8;
      EXPECT_EQ(rec[r]->sizes[i], fixed + b.activations.size()) << "stage " << r << ", batch " << i;
    }
    EXPECT_EQ(opened, 1u) << "stage " << r;
    EXPECT_EQ(seen, fed) << "stage " << r;
  }
}

// Wire version 5: the scheduler's pool is the one allocator and every stage stores a
// sequence's rows in the blocks the scheduler names. With room for two sequences at a time and
// blocks of 4 positions, the later requests run in blocks the first ones freed, handed out in
// another order (the free list is last-in first-out), so the stages' tables are not the
// identity mapping nor ascending runs; every stage is told the same tables, and tokens and
// logprobs are still those of the single-process run (one stage, a large pool).
TEST_F(PipelineTest, StagesStoreRowsInTheBlocksTheSchedulerNames) {
  const auto ref = SingleProcess();
  constexpr int kStages = 2;
  std::vector<std::unique_ptr<RecordingTransport>> rec;  // outlives the stages that use it
  InProcessPipeline pipe(kStages, test_support::ModelDir());
  ASSERT_TRUE(pipe.loaded());
  for (int r = 1; r <= kStages; ++r) rec.push_back(std::make_unique<RecordingTransport>(pipe.hub().at(r)));
  pipeline::PipelineConfig pc;
  pc.kv_block_size = 4;
  pc.kv_blocks = 16;
  pc.context = 64;
  pc.micro_batches = 2;
  PipelineExecutor* exec = pipe.Start(model_->config(), sharding::EvenStagePlan(model_->config().num_layers, kStages),
                                      pc, [&](int r) -> transport::Transport& { return *rec[r - 1]; });
  ASSERT_NE(exec, nullptr);
  model::KvBlockPool accounting(0, model_->kv_format(), 4, 16);
  coordinator::SchedulerConfig sc;
  sc.context = 64;
  sc.prefill_chunk = 5;
  sc.max_num_seqs = 2;
  std::vector<Outcome> got;
  {
    coordinator::Scheduler s(*exec, model_->config(), tok_.get(), accounting, sc, nullptr);
    s.Start();
    got = RunAll(s);
    s.Stop();
  }
  const std::vector<int>& codes = pipe.Finish();
  for (int r = 1; r <= kStages; ++r) EXPECT_EQ(codes[r], 0) << "stage rank " << r;
  EXPECT_EQ(accounting.free_blocks(), 16);
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_EQ(got[i].ids, ref[i].ids) << "request " << i;
    EXPECT_EQ(got[i].logprobs, ref[i].logprobs) << "request " << i;
  }
  // Each stage's table of every sequence, as the items built it.
  std::vector<std::map<uint64_t, std::vector<int32_t>>> tables(kStages);
  for (int r = 0; r < kStages; ++r)
    for (const auto& b : rec[r]->batches)
      for (const auto& it : b.items)
        tables[r][it.seq].insert(tables[r][it.seq].end(), it.blocks.begin(), it.blocks.end());
  ASSERT_EQ(tables[0].size(), 4u);
  EXPECT_EQ(tables[1], tables[0]);
  int not_ascending_runs = 0;
  for (const auto& [seq, t] : tables[0]) {
    bool run = true;
    for (size_t j = 1; j < t.size(); ++j) run = run && t[j] == t[j - 1] + 1;
    not_ascending_runs += run ? 0 : 1;
  }
  EXPECT_GE(not_ascending_runs, 1);
}

// The embedded pipeline runs its stage on the caller's thread; a stage error still fails it
// the way a stage rank's error fails the PipelineExecutor: every Wait and Launch from then on
// is Unavailable with the stage's message.
TEST_F(PipelineTest, EmbeddedStageErrorFailsThePipeline) {
  pipeline::PipelineConfig pc;
  pc.kv_blocks = 16;
  pc.context = 64;
  auto e = pipeline::EmbeddedPipeline::Start(*model_, pc);
  ASSERT_TRUE(e.ok()) << e.status();
  model::KvBlockPool accounting(0, model_->kv_format(), 16, 16);
  model::KvCache cache(&accounting, 64);
  ASSERT_TRUE(cache.Reserve(2).ok());
  (*e)->Open(pipeline::SequenceSetup{1, {}, -1, {}, {}});
  auto ok = (*e)->Launch({1}, {{1, &cache, 1, true}});
  ASSERT_TRUE(ok.ok());
  auto got = (*e)->Wait(*ok);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->size(), 1u);
  auto bad = (*e)->Launch({1}, {{7, &cache, 1, true}});  // never opened
  ASSERT_TRUE(bad.ok());
  auto err = (*e)->Wait(*bad);
  ASSERT_FALSE(err.ok());
  EXPECT_TRUE(absl::IsUnavailable(err.status()));
  EXPECT_NE(std::string(err.status().message()).find("stage 0 (rank 1): batch names unknown sequence 7"),
            std::string::npos)
      << err.status();
  EXPECT_TRUE(absl::IsUnavailable((*e)->Launch({1}, {{1, &cache, 1, true}}).status()));
  // A context beyond the model's is refused by the stage's hello check, as a rank would.
  pc.context = model_->config().max_position_embeddings + 1;
  auto refused = pipeline::EmbeddedPipeline::Start(*model_, pc);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(std::string(refused.status().message()).find("exceeds the model's"), std::string::npos) << refused.status();
}

TEST_F(PipelineTest, SameTokensAsSingleProcessWithOneTwoThreeStages) {
  const auto ref = SingleProcess();
  for (const auto& o : ref) {
    ASSERT_EQ(o.finish, "length");
    ASSERT_EQ(o.ids.size(), 12u);
  }
  for (int stages : {1, 2, 3}) {
    for (int mb : {1, 3}) {
      const auto got = Pipelined(stages, mb, DType::kF32);
      ASSERT_EQ(got.size(), ref.size());
      for (size_t i = 0; i < ref.size(); ++i) {
        EXPECT_EQ(got[i].ids, ref[i].ids) << stages << " stages, " << mb << " micro-batches, request " << i;
        EXPECT_EQ(got[i].logprobs, ref[i].logprobs) << stages << " stages, request " << i;
        EXPECT_EQ(got[i].finish, "length");
      }
    }
  }
}

// The hello tells every stage the KV dtype (wire version 6): stages storing f16 or int8 rows
// give the embedded pipeline's tokens and logprobs bit for bit, and not f32's (the dtype
// reached the stages: int8 rounding moves the logprobs).
TEST_F(PipelineTest, CompactKvCacheSameTokensAsSingleProcess) {
  const auto f32 = SingleProcess();
  for (kernels::KvDType dt : {kernels::KvDType::kF16, kernels::KvDType::kInt8}) {
    const auto ref = SingleProcess(dt);
    const auto got = Pipelined(2, 2, DType::kF32, dt);
    ASSERT_EQ(got.size(), ref.size());
    bool differs_from_f32 = false;
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_EQ(got[i].ids, ref[i].ids) << kernels::KvDTypeName(dt) << ", request " << i;
      EXPECT_EQ(got[i].logprobs, ref[i].logprobs) << kernels::KvDTypeName(dt) << ", request " << i;
      differs_from_f32 = differs_from_f32 || ref[i].logprobs != f32[i].logprobs;
    }
    if (dt == kernels::KvDType::kInt8) {
      EXPECT_TRUE(differs_from_f32) << "int8 rows should move some logprob";
    }
  }
}

// The protocol rolls a sequence back on every stage: after truncating to an earlier length
// and feeding the token generated there, the continuation is the original one (greedy with a
// repetition penalty, so both the KV and the sampler's history must have been rolled back).
TEST_F(PipelineTest, TruncationRollsBackKvAndHistoryOnEveryStage) {
  constexpr int kStages = 2;
  InProcessPipeline pipe(kStages, test_support::ModelDir());
  ASSERT_TRUE(pipe.loaded());
  pipeline::PipelineConfig pc;
  pc.kv_blocks = 16;
  pc.kv_block_size = 4;  // so a rollback frees whole blocks
  pc.context = 64;
  PipelineExecutor* exec =
      pipe.Start(model_->config(), sharding::EvenStagePlan(model_->config().num_layers, kStages), pc);
  ASSERT_NE(exec, nullptr);
  pipeline::PipelineExecutor& e = *exec;
  model::KvBlockPool accounting(0, model_->kv_format(), 4, 16);
  model::KvCache cache(&accounting, 64);
  pipeline::SequenceSetup setup;
  setup.seq = 1;
  setup.sampling.temperature = 0;
  setup.sampling.repetition_penalty = 1.5f;
  const std::vector<int32_t> prompt = tok_->Encode("Once upon a time", true);
  const int64_t n = static_cast<int64_t>(prompt.size());
  e.Open(setup);
  auto step = [&](std::vector<int32_t> tokens) -> int32_t {
    const int64_t rows = static_cast<int64_t>(tokens.size());
    EXPECT_TRUE(cache.Reserve(cache.length() + rows).ok());
    auto ticket = e.Launch(std::move(tokens), {{1, &cache, rows, true}});
    EXPECT_TRUE(ticket.ok()) << ticket.status();
    auto got = e.Wait(*ticket);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() && got->size() == 1 ? (*got)[0].id : -1;
  };
  std::vector<int32_t> first = {step(prompt)};
  for (int i = 0; i < 9; ++i) first.push_back(step({first.back()}));
  // Back to the prompt + 3 generated tokens; the 4th is fed next, as if just sampled.
  e.Truncate(1, n + 3);
  cache.Truncate(n + 3);
  std::vector<int32_t> again = {first[3]};
  for (int i = 0; i < 6; ++i) again.push_back(step({again.back()}));
  EXPECT_EQ(again, std::vector<int32_t>(first.begin() + 3, first.end()));
  // A truncation past what a stage holds fails the pipeline with a clear error.
  e.Truncate(1, 1000);
  auto bad = e.Launch({first[0]}, {{1, &cache, 1, true}});
  ASSERT_TRUE(bad.ok());
  auto err = e.Wait(*bad);
  ASSERT_FALSE(err.ok());
  EXPECT_NE(std::string(err.status().message()).find("truncation of sequence 1 to 1000"), std::string::npos)
      << err.status();
  pipe.Finish();
}

TEST_F(PipelineTest, HalfPrecisionActivationsStillGenerate) {
  const auto got = Pipelined(2, 2, DType::kBF16);
  for (const auto& o : got) {
    EXPECT_EQ(o.finish, "length");
    EXPECT_EQ(o.ids.size(), 12u);
  }
}

TEST_F(PipelineTest, RefusesMismatchedRanksAndPlans) {
  transport::InProcessHub hub(2);  // one worker rank
  pipeline::PipelineConfig pc;
  pc.kv_blocks = 16;
  pc.context = 64;
  auto two = sharding::EvenStagePlan(model_->config().num_layers, 2);
  auto e = pipeline::PipelineExecutor::Start(hub.at(0), model_->config(), two, pc);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(std::string(e.status().message()).find("mpirun -np 3"), std::string::npos) << e.status();

  // A stage that loaded another model refuses the hello.
  model::ModelConfig other = model_->config();
  other.hidden_size += 1;
  std::thread stage([&] { pipeline::RunPipelineStage(hub.at(1), *model_); });
  auto one = sharding::EvenStagePlan(other.num_layers, 1);
  auto e2 = pipeline::PipelineExecutor::Start(hub.at(0), other, one, pc);
  stage.join();
  ASSERT_FALSE(e2.ok());
  EXPECT_NE(std::string(e2.status().message()).find("refused"), std::string::npos) << e2.status();
}

TEST_F(PipelineTest, SilentStageFailsRequestsWithinTimeout) {
  FailureMessage failure;  // outlives the executor, whose monitor thread calls it
  transport::InProcessHub hub(2);
  // A fake stage: answers the hello, then never speaks again (a hung worker).
  std::thread fake([&] {
    auto env = hub.at(1).Receive(std::chrono::seconds(10));
    ASSERT_TRUE(env.ok() && env->has_value());
    auto m = pipeline::Decode((*env)->bytes.data(), (*env)->bytes.size());
    ASSERT_TRUE(m.ok());
    pipeline::HelloAck ack{0, sharding::ModelFingerprint(model_->config()), true, ""};
    ASSERT_TRUE(hub.at(1).Send(0, pipeline::Encode({0, ack})).ok());
  });
  pipeline::PipelineConfig pc;
  pc.kv_blocks = 64;
  pc.context = 128;
  pc.heartbeat_ms = 50;
  pc.timeout_ms = 400;
  auto e = pipeline::PipelineExecutor::Start(hub.at(0), model_->config(),
                                             sharding::EvenStagePlan(model_->config().num_layers, 1), pc);
  fake.join();
  ASSERT_TRUE(e.ok()) << e.status();
  (*e)->set_on_failure(failure.Callback());
  const EndedRequest r = RunOneRequest(**e);
  EXPECT_EQ(r.finish, "abort");  // → HTTP 503
  EXPECT_LT(r.seconds, 3.0);
  EXPECT_NE(r.error.find("worker rank 1"), std::string::npos) << r.error;
  const std::string why = failure.Wait();
  EXPECT_NE(why.find("worker rank 1"), std::string::npos) << why;
  EXPECT_TRUE((*e)->failed());
}

// A stage that answers a batch with a message it must not send (damaged bytes, a token id
// outside the vocabulary, a hello-ack after the handshake) fails the pipeline at once, naming
// the rank and what was wrong: not after the heartbeat timeout or the 60 s batch timeout
// (the hello-ack was ignored before, so its request waited for the batch timeout).
TEST_F(PipelineTest, WrongMessageFromAStageFailsThePipelineAtOnce) {
  struct Case {
    const char* name;
    std::function<std::vector<uint8_t>(uint64_t batch)> reply;
    const char* want;
  };
  const int32_t vocab = static_cast<int32_t>(model_->config().vocab_size);
  const std::vector<Case> cases = {
      {"truncated",
       [](uint64_t batch) {
         pipeline::Result r;
         r.tokens.push_back({1, 5, -0.5f, {}});
         auto bytes = pipeline::Encode({batch, r});
         bytes.resize(bytes.size() - 3);
         return bytes;
       },
       "worker rank 1 (stage 0) sent a malformed message"},
      {"bad token",
       [vocab](uint64_t batch) {
         pipeline::Result r;
         r.tokens.push_back({1, vocab, -0.5f, {}});
         return pipeline::Encode({batch, r});
       },
       "worker rank 1 (stage 0) returned an invalid result"},
      {"hello-ack",
       [](uint64_t batch) {
         return pipeline::Encode({batch, pipeline::HelloAck{0, 0, true, ""}});
       },
       "worker rank 1 (stage 0) sent an unexpected hello-ack message"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    FailureMessage failure;  // outlives the executor, whose monitor thread calls it
    transport::InProcessHub hub(2);
    std::atomic<bool> done{false};
    std::thread fake([&] {
      bool acked = false;
      while (!done.load()) {
        auto env = hub.at(1).Receive(std::chrono::milliseconds(20));
        if (!env.ok() || !env->has_value()) continue;
        auto m = pipeline::Decode((*env)->bytes.data(), (*env)->bytes.size());
        if (!m.ok()) continue;
        if (!acked && m->type() == pipeline::MessageType::kHello) {
          pipeline::HelloAck ack{0, sharding::ModelFingerprint(model_->config()), true, ""};
          (void)hub.at(1).Send(0, pipeline::Encode({0, ack}));
          acked = true;
        } else if (m->type() == pipeline::MessageType::kBatch) {
          (void)hub.at(1).Send(0, c.reply(m->batch_id));
        }
        // Heartbeats keep the stage alive as far as the coordinator can tell.
        (void)hub.at(1).Send(0, pipeline::Encode({0, pipeline::Heartbeat{0, 0, 0}}));
      }
    });
    pipeline::PipelineConfig pc;
    pc.kv_blocks = 64;
    pc.context = 128;
    pc.heartbeat_ms = 50;
    pc.timeout_ms = 5000;  // a refusal, not silence, must end it
    auto e = pipeline::PipelineExecutor::Start(hub.at(0), model_->config(),
                                               sharding::EvenStagePlan(model_->config().num_layers, 1), pc);
    if (!e.ok()) {
      done = true;
      fake.join();
      FAIL() << e.status();
    }
    (*e)->set_on_failure(failure.Callback());
    const EndedRequest r = RunOneRequest(**e);
    done = true;
    fake.join();
    EXPECT_EQ(r.finish, "abort");  // → HTTP 503
    EXPECT_LT(r.seconds, 2.0);
    EXPECT_NE(r.error.find(c.want), std::string::npos) << r.error;
    const std::string why = failure.Wait();
    EXPECT_NE(why.find(c.want), std::string::npos) << why;
  }
}

TEST_F(PipelineTest, EarlyStagesOutwaitASlowOneAtStartup) {
  // Stage 1 accepts its hello at once; stage 2 takes several timeouts longer to start (on a
  // host short of CPU, loading a model can). Stage 1 times the coordinator's silence from its
  // ack on, so the coordinator must keep talking to it while it waits for stage 2.
  transport::InProcessHub hub(3);
  pipeline::PipelineConfig pc;
  pc.kv_blocks = 64;
  pc.context = 128;
  pc.heartbeat_ms = 50;
  pc.timeout_ms = 300;
  std::vector<int> codes(3, -1);
  std::thread first([&] { codes[1] = pipeline::RunPipelineStage(hub.at(1), *model_); });
  std::thread late([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(5 * pc.timeout_ms));
    codes[2] = pipeline::RunPipelineStage(hub.at(2), *model_);
  });
  auto e = pipeline::PipelineExecutor::Start(hub.at(0), model_->config(),
                                             sharding::EvenStagePlan(model_->config().num_layers, 2), pc);
  ASSERT_TRUE(e.ok()) << e.status();
  std::string why;
  (*e)->set_on_failure([&](const std::string& w) { why = w; });
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * pc.timeout_ms));
  EXPECT_FALSE((*e)->failed()) << why;
  (*e)->Shutdown();
  first.join();
  late.join();
  EXPECT_EQ(codes[1], 0) << "the early stage gave up on the coordinator";
  EXPECT_EQ(codes[2], 0);
}

}  // namespace
}  // namespace accullm::pipeline
