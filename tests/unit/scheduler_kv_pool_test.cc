// On-demand KV blocks and preemption (vLLM's recompute policy) in the scheduler: with a pool far
// too small for the requests together (each still fits alone), sequences are preempted (their
// blocks freed on every stage, requeued, their prompt and generated tokens prefilled again on
// readmission), and every choice's tokens, logprobs, text and finish reason are exactly those
// of an unconstrained pool: greedy and seeded sampling with penalties, n choices, a stop
// string, logprobs, speculative decoding (prompt lookup and a draft model); embedded and
// through a two-stage pipeline with two micro-batches in flight. No token is streamed twice
// (the ids are compared one for one) and the pool is whole again afterwards.
// Automatic prefix caching on the same requests behind a shared system prompt: later sequences
// (and the n choices of one request, and preempted ones coming back) start on cached blocks,
// the cache reports hits, and every choice is still exactly the uncached run's.
#include <gtest/gtest.h>

#include <chrono>
#include <utility>

#include "coordinator/scheduler.h"
#include "monitoring/serving_metrics.h"
#include "sharding/stage_plan.h"
#include "tests/support/scheduler_harness.h"
#include "tests/support/test_support.h"

namespace accullm::coordinator {
namespace {

using test_support::StreamedChoice;
using Mode = SpeculationOptions::Mode;

// The series' value in a Prometheus exposition (-1 when absent).
double Metric(const std::string& exposition, const std::string& name) {
  return test_support::SeriesValue(exposition, name, -1);
}

struct Outcome {
  std::vector<StreamedChoice> choices;
  int64_t preemptions = 0;
  std::string metrics;
};

class SchedulerKvPoolTest : public test_support::EmbeddedModelTest {
 protected:
  // Ten requests (twelve choices) of up to 14 + 60 positions, after `system` if given.
  std::vector<std::vector<SequenceParams>> Requests(const std::string& system = "") {
    std::vector<std::vector<SequenceParams>> r;
    const char* prompts[] = {"Once upon a time",
                             "Lily saw a little dog. The dog",
                             "Tom and Sam went to the park",
                             "One day, a girl named Sue",
                             "The sun was hot and the bird",
                             "Ben had a red ball",
                             "There was a big tree in the garden",
                             "Mom said it was time for bed",
                             "The cat and the mouse",
                             "A little boat sailed on the sea"};
    for (int i = 0; i < 10; ++i) {
      SequenceParams p;
      p.prompt = tok_->Encode(system + prompts[i], true);
      p.max_tokens = 30 + 3 * i;
      p.sampling.temperature = i % 2 == 0 ? 0.f : 0.9f;
      p.sampling.top_p = 0.9f;
      p.sampling.seed = 500 + i;
      p.ignore_eos = i % 3 != 0;  // most run their full length: more growth, more preemption
      // The recomputed history feeds request 2's penalty.
      r.push_back(test_support::MixedRequest(i, p));
    }
    return r;
  }

  // The first request alone (its blocks then are cached, if caching is on), then the others
  // at once; each stream waited for 120 s at most.
  Outcome RunAll(Scheduler& s, monitoring::ServingMetrics& metrics) {
    constexpr std::chrono::seconds kTimeout(120);
    std::vector<std::vector<SequenceParams>> requests = Requests(system_);
    s.Start();
    Outcome r;
    r.choices = test_support::WaitForAll(test_support::SubmitAll(s, {requests.front()}), kTimeout);
    requests.erase(requests.begin());
    for (StreamedChoice& c : test_support::WaitForAll(test_support::SubmitAll(s, requests), kTimeout))
      r.choices.push_back(std::move(c));
    s.Stop();
    r.preemptions = s.preemptions();
    r.metrics = metrics.Serialize();
    return r;
  }

  SchedulerConfig Config(Mode mode) {
    SchedulerConfig c;
    c.enable_prefix_caching = caching_;
    c.max_batch_tokens = 40;
    c.prefill_chunk = 6;  // recomputes span several chunks
    c.speculation.mode = mode;
    c.speculation.draft = mode == Mode::kDraft ? model_.get() : nullptr;
    c.speculation.max_draft_tokens = 4;
    return c;
  }

  Outcome Embedded(Mode mode, int64_t blocks) {
    monitoring::ServingMetrics metrics("m");
    model::KvBlockPool kv(0, model_->kv_format(), 16, blocks);
    auto s = EmbeddedScheduler(kv, Config(mode), &metrics);
    if (s == nullptr) return {};
    Outcome r = RunAll(*s, metrics);
    EXPECT_EQ(kv.free_blocks(), kv.num_blocks());
    return r;
  }

  // Two pipeline stages (threads over the in-process transport), two micro-batches in flight,
  // blocks of 4 positions.
  Outcome Pipelined(Mode mode, int64_t blocks) {
    constexpr int kStages = 2;
    test_support::InProcessPipeline stages(kStages, test_support::ModelDir());
    pipeline::PipelineConfig pc;
    pc.kv_blocks = blocks;
    pc.kv_block_size = 4;
    pc.context = model_->config().max_position_embeddings;
    pc.micro_batches = 2;
    pipeline::PipelineExecutor* exec =
        stages.Start(model_->config(), sharding::EvenStagePlan(model_->config().num_layers, kStages), pc);
    if (exec == nullptr) return {};
    model::KvBlockPool kv(0, model_->kv_format(), 4, blocks);
    Outcome r;
    {
      monitoring::ServingMetrics metrics("m");
      Scheduler s(*exec, model_->config(), tok_.get(), kv, Config(mode), &metrics);
      r = RunAll(s, metrics);
    }
    EXPECT_EQ(kv.free_blocks(), kv.num_blocks());
    return r;
  }

  bool caching_ = false;
  std::string system_;  // before every prompt
};

TEST_F(SchedulerKvPoolTest, EmbeddedPreemptedTokensEqualUnconstrained) {
  const Outcome want = Embedded(Mode::kOff, 256);
  ASSERT_EQ(want.choices.size(), 12u);
  EXPECT_EQ(want.preemptions, 0);
  EXPECT_EQ(want.choices[4].finish, "stop");          // the stop string
  EXPECT_EQ(want.choices[5].top.front().size(), 2u);  // logprobs = 2
  // 8 blocks of 16 (128 positions) for twelve choices of up to 87 positions each.
  for (Mode mode : {Mode::kOff, Mode::kNgram, Mode::kDraft}) {
    const std::string what = mode == Mode::kOff ? "no speculation" : mode == Mode::kNgram ? "ngram" : "draft";
    const Outcome got = Embedded(mode, 8);
    test_support::ExpectSameChoices(got.choices, want.choices, what + ", 8 blocks");
    EXPECT_GT(got.preemptions, 0) << what << ": the pool was meant to run out";
    EXPECT_EQ(Metric(got.metrics, "accullm_num_preemptions_total"), static_cast<double>(got.preemptions));
    EXPECT_EQ(Metric(got.metrics, "accullm_kv_cache_used_blocks"), 0) << what;
    EXPECT_EQ(Metric(got.metrics, "accullm_kv_cache_free_blocks"), 8) << what;
  }
}

TEST_F(SchedulerKvPoolTest, PipelinedPreemptedTokensEqualUnconstrained) {
  const Outcome want = Embedded(Mode::kOff, 256);
  // 26 blocks of 4 (104 positions): a choice of 87 positions plus a draft fits alone.
  for (Mode mode : {Mode::kOff, Mode::kNgram}) {
    const std::string what = mode == Mode::kOff ? "2 stages" : "ngram, 2 stages";
    const Outcome got = Pipelined(mode, 26);
    test_support::ExpectSameChoices(got.choices, want.choices, what);
    EXPECT_GT(got.preemptions, 0) << what;
  }
}

// A system prompt of two blocks and more before every request: with prefix caching the
// first request's blocks serve the others, the second choice of a request starts on the first
// one's, and a preempted sequence finds its own prompt again.
const char* kSystem =
    "You are a friendly storyteller. You tell short, happy stories for small children, with simple words, "
    "a kind animal friend and a good ending. The story is: ";

TEST_F(SchedulerKvPoolTest, PrefixCachedTokensEqualUncached) {
  system_ = kSystem;
  const Outcome want = Embedded(Mode::kOff, 256);
  ASSERT_EQ(want.choices.size(), 12u);
  EXPECT_EQ(Metric(want.metrics, "accullm_prefix_cache_hits_total"), 0);
  caching_ = true;
  const Outcome got = Embedded(Mode::kOff, 256);
  test_support::ExpectSameChoices(got.choices, want.choices, "prefix caching");
  const double queried = Metric(got.metrics, "accullm_prefix_cache_queries_total");
  const double hits = Metric(got.metrics, "accullm_prefix_cache_hits_total");
  // Eleven choices after the first start on at least the system prompt's whole blocks.
  const int64_t system_blocks = static_cast<int64_t>(tok_->Encode(kSystem, true).size()) / 16;
  ASSERT_GE(system_blocks, 2);
  EXPECT_GE(hits, 11.0 * 16 * system_blocks) << "of " << queried << " tokens queried";
  EXPECT_LT(hits, queried);
  // Cached blocks no sequence uses count as free: the pool is whole.
  EXPECT_EQ(Metric(got.metrics, "accullm_kv_cache_used_blocks"), 0);
  EXPECT_EQ(Metric(got.metrics, "accullm_kv_cache_free_blocks"), 256);
}

TEST_F(SchedulerKvPoolTest, PrefixCachingWithPreemptionAndSpeculationEqualsUncached) {
  system_ = kSystem;
  const Outcome want = Embedded(Mode::kOff, 256);
  caching_ = true;
  for (Mode mode : {Mode::kOff, Mode::kNgram, Mode::kDraft}) {
    const std::string what = mode == Mode::kOff ? "cached" : mode == Mode::kNgram ? "cached, ngram" : "cached, draft";
    const Outcome got = Embedded(mode, 9);  // 144 positions: a choice of ~110 fits alone
    test_support::ExpectSameChoices(got.choices, want.choices, what + ", 9 blocks");
    EXPECT_GT(got.preemptions, 0) << what;
    EXPECT_GT(Metric(got.metrics, "accullm_prefix_cache_hits_total"), 0) << what;
  }
  const Outcome piped = Pipelined(Mode::kNgram, 36);
  test_support::ExpectSameChoices(piped.choices, want.choices, "cached, ngram, 2 stages, 36 blocks of 4");
  EXPECT_GT(piped.preemptions, 0);
  EXPECT_GT(Metric(piped.metrics, "accullm_prefix_cache_hits_total"), 0);
}

}  // namespace
}  // namespace accullm::coordinator
