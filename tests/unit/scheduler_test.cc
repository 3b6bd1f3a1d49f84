// The continuous-batching scheduler against an independent sequential loop (Transformer::Forward
// on a private KV cache, the seeded Sampler): the same request gives the same tokens and text
// alone or batched with others (chunked prefill, mixed decode), and cancellation frees its KV
// blocks. With a
// pipelined executor the scheduler keeps its micro-batches in flight without draining.
#include "coordinator/scheduler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <thread>

#include "model/end_of_sequence.h"
#include "tests/support/scheduler_harness.h"
#include "text/stop_text.h"

namespace accullm::coordinator {
namespace {

using test_support::StreamedChoice;

class SchedulerTest : public test_support::EmbeddedModelTest {
 protected:
  // The scheduler's admission budget (no layers: the stage holds the KV contents).
  std::unique_ptr<model::KvBlockPool> NewPool(int64_t blocks) {
    return std::make_unique<model::KvBlockPool>(0, model_->kv_format(), 16, blocks);
  }

  SequenceParams Params(const std::string& prompt, int64_t max_tokens, float temperature, uint64_t seed) {
    SequenceParams p;
    p.prompt = tok_->Encode(prompt, true);
    p.max_tokens = max_tokens;
    p.sampling.temperature = temperature;
    p.sampling.top_k = 40;
    p.sampling.seed = seed;
    return p;
  }

  // Waits (20 s at most) for every choice of `s` to finish and returns what each produced.
  static std::vector<StreamedChoice> Wait(GenerationStream& s) {
    return test_support::WaitForChoices(s, std::chrono::steady_clock::now() + std::chrono::seconds(20));
  }

  // The sequential reference: the whole prompt in one forward pass, then one token at a time
  // through a private KV cache, sampled by the seeded Sampler, stopped by EOS or a stop sequence.
  std::string Reference(const SequenceParams& p, std::vector<std::string> stop = {}) {
    const int64_t vocab = model_->config().vocab_size;
    model::KvCache cache = model_->NewCache(0);
    std::vector<float> logits(static_cast<size_t>(vocab));
    model::Sampler sampler(p.sampling);
    std::vector<int32_t> history = p.prompt;
    text::StopText stop_text(*tok_, std::move(stop));
    const std::vector<int32_t> eos = model::EndOfSequenceIds(model_->config(), tok_.get());
    std::string out;
    EXPECT_TRUE(model_->Forward(p.prompt.data(), static_cast<int64_t>(p.prompt.size()), cache, logits.data()).ok());
    for (int64_t i = 0; i < p.max_tokens; ++i) {
      if (i > 0) {
        const int32_t last = history.back();
        EXPECT_TRUE(model_->Forward(&last, 1, cache, logits.data()).ok());
      }
      const int32_t id = sampler.Sample(logits.data(), vocab, history, static_cast<int64_t>(history.size()));
      history.push_back(id);
      if (!p.ignore_eos && std::find(eos.begin(), eos.end(), id) != eos.end()) break;
      text::StopText::Piece piece = stop_text.Push(id);
      out += piece.text;
      if (piece.stopped) return out;
    }
    return out + stop_text.Finish();
  }
};

TEST_F(SchedulerTest, AloneMatchesSequentialReference) {
  auto kv = NewPool(256);
  auto sched_owner = EmbeddedScheduler(*kv, SchedulerConfig{});
  ASSERT_NE(sched_owner, nullptr);
  Scheduler& sched = *sched_owner;
  sched.Start();
  for (float temp : {0.f, 0.9f}) {
    SequenceParams p = Params("Once upon a time", 40, temp, 99);
    const std::string want = Reference(p);
    auto s = std::make_shared<GenerationStream>(1);
    ASSERT_TRUE(sched.Submit({p}, s).ok());
    auto got = Wait(*s);
    EXPECT_EQ(got[0].text, want) << "temperature " << temp;
    EXPECT_FALSE(got[0].finish.empty());
  }
}

TEST_F(SchedulerTest, BatchedWithChunkedPrefillMatchesAlone) {
  auto kv = NewPool(512);
  SchedulerConfig cfg;
  cfg.max_batch_tokens = 24;  // forces long prompts into several chunks next to decodes
  cfg.prefill_chunk = 7;
  auto sched_owner = EmbeddedScheduler(*kv, cfg);
  ASSERT_NE(sched_owner, nullptr);
  Scheduler& sched = *sched_owner;
  sched.Start();
  std::vector<SequenceParams> ps;
  std::vector<std::string> want;
  for (int i = 0; i < 16; ++i) {
    std::string prompt = "Tom and his friend " + std::to_string(i) + " went to the big park";
    for (int k = 0; k < i % 4; ++k) prompt += " and played with a red ball all day long";
    ps.push_back(Params(prompt, 20 + i, i % 3 == 0 ? 0.f : 0.8f, 1000 + i));
    want.push_back(Reference(ps.back()));
  }
  const auto streams = test_support::SubmitEach(sched, ps);
  ASSERT_EQ(streams.size(), ps.size());
  for (size_t i = 0; i < ps.size(); ++i) EXPECT_EQ(Wait(*streams[i])[0].text, want[i]) << "request " << i;
  EXPECT_EQ(kv->free_blocks(), kv->num_blocks());
}

TEST_F(SchedulerTest, StopSequenceMatchesSequentialReference) {
  auto kv = NewPool(64);
  auto sched_owner = EmbeddedScheduler(*kv, SchedulerConfig{});
  ASSERT_NE(sched_owner, nullptr);
  Scheduler& sched = *sched_owner;
  sched.Start();
  SequenceParams p = Params("Once upon a time", 40, 0.f, 1);
  p.stop = {" named"};
  const std::string want = Reference(p, p.stop);
  auto s = std::make_shared<GenerationStream>(1);
  ASSERT_TRUE(sched.Submit({p}, s).ok());
  auto got = Wait(*s);
  EXPECT_EQ(got[0].text, want);
  EXPECT_EQ(got[0].finish, "stop");
}

TEST_F(SchedulerTest, QueueLimitAndContextAreEnforced) {
  auto kv = NewPool(64);
  SchedulerConfig cfg;
  cfg.max_waiting = 2;
  auto sched_owner = EmbeddedScheduler(*kv, cfg);
  ASSERT_NE(sched_owner, nullptr);
  Scheduler& sched = *sched_owner;  // not started: nothing leaves the queue
  auto s = std::make_shared<GenerationStream>(3);
  SequenceParams p = Params("Once", 4, 0.f, 1);
  EXPECT_EQ(sched.Submit({p, p, p}, s).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(sched.Submit({p, p}, std::make_shared<GenerationStream>(2)).ok());
  EXPECT_EQ(sched.Submit({p}, std::make_shared<GenerationStream>(1)).code(), absl::StatusCode::kResourceExhausted);
  p.max_tokens = 100000;
  EXPECT_EQ(sched.Submit({p}, std::make_shared<GenerationStream>(1)).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SchedulerTest, CancelFreesBlocksAndAnOverfullPoolKeepsText) {
  // Room for two sequences of 5 + 100 positions (7 blocks each) but not three: the third grows
  // into blocks the cancelled first one frees, or is preempted, and gives the same text.
  auto kv = NewPool(17);
  auto sched_owner = EmbeddedScheduler(*kv, SchedulerConfig{});
  ASSERT_NE(sched_owner, nullptr);
  Scheduler& sched = *sched_owner;
  sched.Start();
  SequenceParams p = Params("Once upon a time", 100, 0.8f, 5);
  p.ignore_eos = true;
  const auto s = test_support::SubmitEach(sched, std::vector<SequenceParams>(3, p));
  ASSERT_EQ(s.size(), 3u);
  s[0]->Cancel();
  auto r0 = Wait(*s[0]);
  auto r1 = Wait(*s[1]);
  auto r2 = Wait(*s[2]);
  EXPECT_EQ(r0[0].finish, "abort");
  EXPECT_EQ(r1[0].finish, "length");
  EXPECT_EQ(r2[0].finish, "length");
  EXPECT_EQ(r1[0].completion_tokens, 100);
  EXPECT_EQ(r1[0].text, r2[0].text);  // same seed, same prompt
  for (int i = 0; i < 100 && kv->free_blocks() != kv->num_blocks(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(kv->free_blocks(), kv->num_blocks());
}

}  // namespace
}  // namespace accullm::coordinator

namespace accullm::coordinator {

namespace {

// The embedded pipeline driven as a pipeline of `depth` micro-batches: it records how many
// other micro-batches were outstanding at each launch (a drained pipeline launches with none).
class DeepExecutor final : public test_support::EmbeddedPipelineWrapper {
 public:
  DeepExecutor(model::Transformer& model, int depth, int64_t kv_blocks)
      : EmbeddedPipelineWrapper(model, kv_blocks), depth_(depth) {}
  absl::StatusOr<uint64_t> Launch(std::vector<int32_t> tokens, std::vector<pipeline::ExecItem> items) override {
    ++launches;
    if (outstanding_ == depth_ - 1) ++launches_into_full;
    max_outstanding = std::max(max_outstanding, ++outstanding_);
    return EmbeddedPipelineWrapper::Launch(std::move(tokens), std::move(items));
  }
  absl::StatusOr<std::vector<pipeline::SampledToken>> Wait(uint64_t ticket) override {
    --outstanding_;
    return EmbeddedPipelineWrapper::Wait(ticket);
  }
  int micro_batches() const override { return depth_; }

  int launches = 0, launches_into_full = 0, max_outstanding = 0;

 private:
  int depth_, outstanding_ = 0;
};

}  // namespace

TEST_F(SchedulerTest, PipelineStaysFullAndTokensMatch) {
  constexpr int kDepth = 3;
  auto kv = NewPool(512);
  DeepExecutor exec(*model_, kDepth, kv->num_blocks());
  Scheduler sched(exec, model_->config(), tok_.get(), *kv, SchedulerConfig{}, nullptr);
  std::vector<SequenceParams> ps;
  std::vector<std::string> want;
  for (int i = 0; i < 9; ++i) {
    ps.push_back(Params("Lily saw a little dog number " + std::to_string(i), 24, i % 2 ? 0.7f : 0.f, 50 + i));
    want.push_back(Reference(ps.back()));
  }
  // All queued before the loop starts: one admission, then steady state.
  const auto streams = test_support::SubmitEach(sched, ps);
  ASSERT_EQ(streams.size(), ps.size());
  sched.Start();
  for (size_t i = 0; i < ps.size(); ++i) EXPECT_EQ(Wait(*streams[i])[0].text, want[i]) << "request " << i;
  sched.Stop();
  EXPECT_EQ(exec.max_outstanding, kDepth);
  // 9 sequences × up to 24 tokens in 3 micro-batches of 3: after the first two launches fill the
  // pipeline, every launch goes out while the other two are still in flight (a scheduler that
  // drained between iterations would launch a third of them into an empty pipeline).
  EXPECT_GE(exec.launches, 3 * 20);  // some may stop at EOS before 24 tokens
  EXPECT_GE(exec.launches_into_full, exec.launches - kDepth) << exec.launches << " launches";
  EXPECT_EQ(kv->free_blocks(), kv->num_blocks());
}

namespace {

// The embedded pipeline, recording the block table (the scheduler's cache: the ids the stage
// is told) of every sequence it runs.
class TableRecordingExecutor final : public test_support::EmbeddedPipelineWrapper {
 public:
  using EmbeddedPipelineWrapper::EmbeddedPipelineWrapper;
  absl::StatusOr<uint64_t> Launch(std::vector<int32_t> tokens, std::vector<pipeline::ExecItem> items) override {
    for (const auto& it : items) tables[it.seq] = it.cache->blocks();
    return EmbeddedPipelineWrapper::Launch(std::move(tokens), std::move(items));
  }

  std::map<uint64_t, std::vector<int32_t>> tables;
};

}  // namespace

// The scheduler's pool is the one allocator; the stage stores rows where it is told. A pool of
// 9 blocks, three sequences at a time and requests of different lengths: sequences finish out
// of order, later ones are admitted into the blocks they freed (the free list hands them back
// last-in first-out), so tables are neither the identity nor ascending runs, and two
// sequences' blocks interleave (and, blocks being taken as sequences grow, some are preempted
// and recomputed). Every request still gives the sequential reference's text.
TEST_F(SchedulerTest, BlocksFreedAndReusedOutOfOrderMatchSequentialReference) {
  auto kv = NewPool(9);
  TableRecordingExecutor exec(*model_, kv->num_blocks());
  SchedulerConfig cfg;
  cfg.max_num_seqs = 3;
  cfg.prefill_chunk = 9;
  Scheduler sched(exec, model_->config(), tok_.get(), *kv, cfg, nullptr);
  std::vector<SequenceParams> ps;
  std::vector<std::string> want;
  for (int i = 0; i < 10; ++i) {
    std::string prompt = "Once upon a time there was a girl called " + std::to_string(i);
    for (int k = 0; k < i % 3; ++k) prompt += " who liked to run in the big green park";
    ps.push_back(Params(prompt, 8 + 11 * ((i * 7) % 4), i % 2 ? 0.8f : 0.f, 300 + i));
    ps.back().ignore_eos = true;  // lengths as planned: the finishing order is the test's
    want.push_back(Reference(ps.back()));
  }
  const auto streams = test_support::SubmitEach(sched, ps);
  ASSERT_EQ(streams.size(), ps.size());
  sched.Start();
  for (size_t i = 0; i < ps.size(); ++i) {
    auto got = Wait(*streams[i]);
    EXPECT_EQ(got[0].text, want[i]) << "request " << i;
    EXPECT_EQ(got[0].completion_tokens, ps[i].max_tokens) << "request " << i;
  }
  sched.Stop();
  EXPECT_EQ(kv->free_blocks(), kv->num_blocks());
  // One table per sequence id: a request preempted (on-demand blocks: three sequences may
  // outgrow 9 blocks) is reopened under a new id.
  ASSERT_EQ(exec.tables.size(), ps.size() + static_cast<size_t>(sched.preemptions()));
  int not_runs = 0;
  for (const auto& [seq, t] : exec.tables) {
    bool run = true;
    for (size_t j = 1; j < t.size(); ++j) run = run && t[j] == t[j - 1] + 1;
    not_runs += run ? 0 : 1;
  }
  EXPECT_GE(not_runs, 2);
}

}  // namespace accullm::coordinator
