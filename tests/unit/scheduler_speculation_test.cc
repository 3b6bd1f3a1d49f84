// Speculative decoding in the scheduler (serve --draft / --speculate ngram): the tokens, finish
// reasons, text and logprobs of every choice are exactly those of the same requests without
// speculation, with many sequences sharing each batch (verification items beside decode items
// and prefill chunks), greedy and seeded sampling with penalties, n choices (seed + i), stop
// strings and max_tokens; embedded and through a two-stage pipeline (the verification and the
// truncation of rejected rows crossing stages). Prompt lookup rejects often (so rollbacks are
// exercised); the model drafting for itself is accepted (rows are batch-invariant).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <regex>
#include <set>

#include "coordinator/scheduler.h"
#include "monitoring/serving_metrics.h"
#include "sharding/stage_plan.h"
#include "speculative/draft_length.h"
#include "tests/support/scheduler_harness.h"
#include "tests/support/test_support.h"

namespace accullm::coordinator {
namespace {

using Choice = test_support::StreamedChoice;
using Mode = SpeculationOptions::Mode;

// The counter's value in a Prometheus exposition (0 when absent).
double Counter(const std::string& exposition, const std::string& name) {
  return test_support::SeriesValue(exposition, name, 0);
}

// Each stream waited for 60 s at most.
std::vector<Choice> WaitAll(const std::vector<std::shared_ptr<GenerationStream>>& streams) {
  return test_support::WaitForAll(streams, std::chrono::seconds(60));
}

class SchedulerSpeculationTest : public test_support::EmbeddedModelTest {
 protected:
  SequenceParams Params(const std::string& prompt, int64_t max_tokens, float temperature, uint64_t seed) {
    SequenceParams p;
    p.prompt = tok_->Encode(prompt, true);
    p.max_tokens = max_tokens;
    p.sampling.temperature = temperature;
    p.sampling.top_p = 0.9f;
    p.sampling.seed = seed;
    return p;
  }

  // The requests: each a list of choices (n = 2: seeds s and s + 1, as the API makes them).
  std::vector<std::vector<SequenceParams>> Requests() {
    std::vector<std::vector<SequenceParams>> r;
    const char* prompts[] = {
        "Once upon a time",          "Lily saw a little dog. The dog", "Tom and Sam went to the park",
        "One day, a girl named Sue", "The sun was hot and the bird",   "Ben had a red ball"};
    for (int i = 0; i < 6; ++i) {
      const float temp = i % 2 == 0 ? 0.f : 0.9f;
      // The history request 2's penalty reads must roll back too.
      r.push_back(test_support::MixedRequest(i, Params(prompts[i], 20 + 7 * i, temp, 100 + i)));
    }
    return r;
  }

  std::vector<Choice> RunAll(Scheduler& s) {
    const auto streams = test_support::SubmitAll(s, Requests());  // all queued at once: they share every batch
    s.Start();
    auto out = WaitAll(streams);
    s.Stop();
    return out;
  }

  SchedulerConfig Config(Mode mode) {
    SchedulerConfig c;
    c.max_batch_tokens = 40;  // prefill chunks next to verification items
    c.prefill_chunk = 6;
    c.speculation.mode = mode;
    c.speculation.draft = mode == Mode::kDraft ? model_.get() : nullptr;
    c.speculation.max_draft_tokens = 4;
    return c;
  }

  std::vector<Choice> Embedded(Mode mode, monitoring::ServingMetrics* metrics = nullptr,
                               kernels::KvDType kv_dtype = kernels::KvDType::kF32) {
    model::KvBlockPool kv(0, model_->kv_format(kv_dtype), 16, 256);
    auto s = EmbeddedScheduler(kv, Config(mode), metrics);
    return s != nullptr ? RunAll(*s) : std::vector<Choice>{};
  }

  // Two pipeline stages (threads over the in-process transport), two micro-batches in flight;
  // the draft (if any) runs on the scheduler's side, as on rank 0.
  std::vector<Choice> Pipelined(Mode mode, monitoring::ServingMetrics* metrics = nullptr) {
    constexpr int kStages = 2;
    test_support::InProcessPipeline stages(kStages, test_support::ModelDir());
    pipeline::PipelineConfig pc;
    pc.kv_blocks = 256;
    pc.kv_block_size = 4;  // rollbacks cross block boundaries
    pc.context = model_->config().max_position_embeddings;
    pc.micro_batches = 2;
    pipeline::PipelineExecutor* exec =
        stages.Start(model_->config(), sharding::EvenStagePlan(model_->config().num_layers, kStages), pc);
    if (exec == nullptr) return {};
    model::KvBlockPool kv(0, model_->kv_format(), 4, 256);
    std::vector<Choice> out;
    {
      Scheduler s(*exec, model_->config(), tok_.get(), kv, Config(mode), metrics);
      out = RunAll(s);
    }
    EXPECT_EQ(kv.free_blocks(), kv.num_blocks());
    return out;
  }

  int64_t passes_ = 0, launches_ = 0;  // a scheduler's draft counters, read before it goes
};

TEST_F(SchedulerSpeculationTest, EmbeddedTokensEqualThoseWithoutSpeculation) {
  const std::vector<Choice> want = Embedded(Mode::kOff);
  ASSERT_EQ(want.size(), 8u);
  // The requests cover what must behave as without speculation.
  EXPECT_EQ(want[4].finish, "stop");          // the stop string " the"
  EXPECT_EQ(want[5].top.front().size(), 2u);  // logprobs = 2
  for (const Choice& c : want) EXPECT_FALSE(c.ids.empty());

  for (Mode mode : {Mode::kNgram, Mode::kDraft}) {
    monitoring::ServingMetrics metrics("m");
    const char* what = mode == Mode::kNgram ? "ngram" : "draft";
    test_support::ExpectSameChoices(Embedded(mode, &metrics), want, what);
    const std::string text = metrics.Serialize();
    const double drafted = Counter(text, "accullm_spec_decode_num_draft_tokens_total");
    const double accepted = Counter(text, "accullm_spec_decode_num_accepted_tokens_total");
    EXPECT_GT(accepted, 0) << what;
    if (mode == Mode::kNgram) {
      EXPECT_LT(accepted, drafted) << "prompt lookup should be rejected sometimes (rollbacks exercised)";
    } else {
      EXPECT_EQ(accepted, drafted) << "the model drafting for itself: every draft is its own sample";
    }
    EXPECT_GT(Counter(text, "accullm_spec_decode_num_accepted_tokens_per_pos_total"), 0) << what;
  }
}

// Drafting paused (speculative/draft_length.h: a running acceptance under the floor): the
// sequences decode plainly with a one-token probe now and then, and the tokens do not change.
// Floor 1 keeps every sequence paused from its first step (the rate starts at 0.8 and never
// reaches 1): only probes are drafted, so nothing reaches draft position 1.
TEST_F(SchedulerSpeculationTest, PausedDraftingDraftsOnlyProbesAndKeepsTheTokens) {
  const std::vector<Choice> want = Embedded(Mode::kOff);
  ASSERT_FALSE(want.empty());
  double drafted[2] = {0, 0};
  for (int paused = 0; paused < 2; ++paused) {
    monitoring::ServingMetrics metrics("m");
    SchedulerConfig config = Config(Mode::kDraft);
    config.speculation.pause_below = paused ? 1.0 : 0.0;
    model::KvBlockPool kv(0, model_->kv_format(), 16, 256);
    auto s = EmbeddedScheduler(kv, config, &metrics);
    ASSERT_NE(s, nullptr);
    test_support::ExpectSameChoices(RunAll(*s), want, paused ? "paused" : "always drafting");
    const std::string text = metrics.Serialize();
    drafted[paused] = Counter(text, "accullm_spec_decode_num_draft_tokens_total");
    std::smatch m;
    const bool second = std::regex_search(
        text, m, std::regex("accullm_spec_decode_num_draft_tokens_per_pos_total\\{[^}]*position=\"1\"\\} ([0-9.e+]+)"));
    ASSERT_TRUE(second) << text;
    if (paused) {
      EXPECT_EQ(std::stod(m[1]), 0) << "a probe drafts one token";
    } else {
      EXPECT_GT(std::stod(m[1]), 0);
    }
  }
  EXPECT_GT(drafted[1], 0) << "probes";
  EXPECT_LT(4 * drafted[1], drafted[0]) << "paused: one token every " << speculative::DraftLength::kProbeInterval
                                        << " steps against up to 4 a step";
}

// A rounded KV cache (serve --kv-cache-dtype): the verification rows read the rows before
// them through the same cache as decode steps do, so the identity holds for every dtype.
TEST_F(SchedulerSpeculationTest, RoundedKvCacheTokensEqualThoseWithoutSpeculation) {
  for (kernels::KvDType dtype : {kernels::KvDType::kF16, kernels::KvDType::kInt8}) {
    const std::vector<Choice> want = Embedded(Mode::kOff, nullptr, dtype);
    test_support::ExpectSameChoices(Embedded(Mode::kNgram, nullptr, dtype), want, "ngram, rounded KV cache");
    test_support::ExpectSameChoices(Embedded(Mode::kDraft, nullptr, dtype), want, "draft, rounded KV cache");
  }
}

TEST_F(SchedulerSpeculationTest, PipelinedTokensEqualThoseWithoutSpeculation) {
  const std::vector<Choice> want = Embedded(Mode::kOff);
  for (Mode mode : {Mode::kNgram, Mode::kDraft}) {
    monitoring::ServingMetrics metrics("m");
    test_support::ExpectSameChoices(Pipelined(mode, &metrics), want,
                                    mode == Mode::kNgram ? "ngram, 2 stages" : "draft, 2 stages");
    EXPECT_GT(Counter(metrics.Serialize(), "accullm_spec_decode_num_accepted_tokens_total"), 0);
  }
}

// The embedded pipeline, checking every launch: each sequence whose prompt went out and that
// is still open has an item (its decode step: the newest token and any draft).
class DecodeStepRecorder final : public test_support::EmbeddedPipelineWrapper {
 public:
  using EmbeddedPipelineWrapper::EmbeddedPipelineWrapper;
  void Release(uint64_t seq) override {
    decoding_.erase(seq);
    EmbeddedPipelineWrapper::Release(seq);
  }
  absl::StatusOr<uint64_t> Launch(std::vector<int32_t> tokens, std::vector<pipeline::ExecItem> items) override {
    std::set<uint64_t> launched;
    for (const auto& it : items) {
      launched.insert(it.seq);
      drafted += it.verify;
    }
    if (!std::includes(launched.begin(), launched.end(), decoding_.begin(), decoding_.end()))
      ++launches_missing_a_decoder;
    for (const auto& it : items)
      if (it.sample) decoding_.insert(it.seq);  // its prompt is in: decoding from the next launch on
    return EmbeddedPipelineWrapper::Launch(std::move(tokens), std::move(items));
  }

  int launches_missing_a_decoder = 0;
  int64_t drafted = 0;

 private:
  std::set<uint64_t> decoding_;
};

// Drafts come out of the token budget left after one decode row per decoding sequence: with
// 8 sequences, a budget of 12 rows and up to 4 draft tokens each (8 × 5 = 40 wanted), every
// sequence still decodes in every iteration, and the tokens are those without speculation.
TEST_F(SchedulerSpeculationTest, DraftsNeverCrowdOutDecodeSteps) {
  auto run = [&](Mode mode, DecodeStepRecorder& exec) {
    model::KvBlockPool kv(0, model_->kv_format(), 16, 256);
    SchedulerConfig c = Config(mode);
    c.max_num_seqs = 8;  // else the budget is raised to max_num_seqs (64)
    c.max_batch_tokens = 12;
    c.prefill_chunk = 64;  // each prompt in one chunk
    Scheduler s(exec, model_->config(), tok_.get(), kv, c, nullptr);
    // Prompts of two or three tokens: most are prefilled in the first launch, so all decode
    // at once (8 decode rows of the 12, drafts sharing the other 4).
    std::vector<SequenceParams> requests;
    for (const char* name : {"Lily", "Tom", "Sam", "Ben", "Sue", "Max", "Amy", "Bob"})
      requests.push_back(Params(name, 30, 0.f, 1));
    const auto streams = test_support::SubmitEach(s, requests);
    s.Start();
    auto out = WaitAll(streams);
    s.Stop();
    return out;
  };
  DecodeStepRecorder plain(*model_, 256), spec(*model_, 256);
  const auto want = run(Mode::kOff, plain);
  test_support::ExpectSameChoices(run(Mode::kDraft, spec), want, "draft, budget 12");
  EXPECT_GT(spec.drafted, 0);
  EXPECT_EQ(spec.launches_missing_a_decoder, 0);
}

// The sequences of a launch draft together: one forward pass of the draft model per draft
// position, whatever the number of sequences (speculative::ProposeBatch). 8 sequences decode
// at once with up to 4 draft tokens each: drafting sequence by sequence would run a pass per
// draft token (the drafted count), batched drafting at most 4 per launch that drafts.
TEST_F(SchedulerSpeculationTest, SequencesDraftTogetherOnePassPerPosition) {
  auto run = [&](Mode mode, DecodeStepRecorder& exec) {
    model::KvBlockPool kv(0, model_->kv_format(), 16, 256);
    SchedulerConfig c = Config(mode);
    c.max_num_seqs = 8;
    c.max_batch_tokens = 64;  // room for every sequence's decode row and 4 draft tokens
    c.prefill_chunk = 64;
    Scheduler s(exec, model_->config(), tok_.get(), kv, c, nullptr);
    std::vector<SequenceParams> requests;
    for (const char* prompt : {"Lily", "Tom and Sam went", "Once upon a time there was", "Ben", "The sun was hot",
                               "Sue had a cat. The cat", "Max", "One day, a girl named Amy saw a"}) {
      // Mixed sampling: greedy and seeded at two temperatures, different lengths.
      const int i = static_cast<int>(requests.size());
      requests.push_back(Params(prompt, 16 + 3 * i, i % 3 == 0 ? 0.f : 0.7f + 0.1f * (i % 3), 40 + i));
    }
    const auto streams = test_support::SubmitEach(s, requests);
    s.Start();
    auto out = WaitAll(streams);
    s.Stop();
    passes_ = s.draft_forward_passes();
    launches_ = s.draft_launches();
    return out;
  };
  DecodeStepRecorder plain(*model_, 256), spec(*model_, 256);
  const auto want = run(Mode::kOff, plain);
  EXPECT_EQ(passes_, 0);
  test_support::ExpectSameChoices(run(Mode::kDraft, spec), want, "draft, 8 sequences drafting together");
  EXPECT_GT(launches_, 0);
  EXPECT_LE(passes_, 4 * launches_) << "more than one pass per draft position in a launch";
  // Drafting sequence by sequence runs one pass per drafted token.
  EXPECT_LT(2 * passes_, spec.drafted) << passes_ << " passes for " << spec.drafted << " draft tokens";
}

}  // namespace
}  // namespace accullm::coordinator
