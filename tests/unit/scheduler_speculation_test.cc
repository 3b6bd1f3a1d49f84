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
#include <thread>

#include "common/thread_pool.h"
#include "coordinator/scheduler.h"
#include "monitoring/serving_metrics.h"
#include "pipeline/embedded_pipeline.h"
#include "pipeline/pipeline_executor.h"
#include "pipeline/pipeline_stage.h"
#include "sharding/stage_plan.h"
#include "transport/transport.h"

namespace accullm::coordinator {
namespace {

const std::string kModel = std::string(ACCULLM_SOURCE_DIR) + "/models/tinystories-llama";

struct Choice {
  std::vector<int32_t> ids;
  std::vector<float> logprobs;
  std::vector<std::vector<std::pair<int32_t, float>>> top;
  std::string text, finish;
  bool operator==(const Choice&) const = default;
};

using Mode = SpeculationOptions::Mode;

// The counter's value in a Prometheus exposition (0 when absent).
double Counter(const std::string& exposition, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(exposition, m, std::regex("\n" + name + "\\{[^}]*\\} ([0-9.e+]+)"))) return 0;
  return std::stod(m[1]);
}

class SchedulerSpeculationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = std::make_unique<ThreadPool>(2);
    auto m = model::Transformer::Load(kModel, pool_.get());
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    auto t = text::Tokenizer::Load(kModel);
    ASSERT_TRUE(t.ok()) << t.status();
    tok_ = std::move(*t);
  }

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
      SequenceParams p = Params(prompts[i], 20 + 7 * i, temp, 100 + i);
      if (i == 2) p.sampling.repetition_penalty = 1.3f;  // the history the penalties see must roll back too
      if (i == 3) p.stop = {" the"};
      if (i == 4) p.logprobs = 2;
      std::vector<SequenceParams> choices{p};
      if (i == 1 || i == 5) {
        SequenceParams q = p;
        q.sampling.seed = p.sampling.seed + 1;
        choices.push_back(q);
      }
      r.push_back(std::move(choices));
    }
    return r;
  }

  static std::vector<Choice> WaitAll(std::vector<std::shared_ptr<GenerationStream>>& streams) {
    std::vector<Choice> out;
    for (auto& s : streams) {
      std::vector<Choice> c(static_cast<size_t>(s->choices()));
      int done = 0;
      for (int spin = 0; spin < 60000 && done < s->choices(); ++spin) {
        for (auto& e : s->Drain()) {
          Choice& ch = c[static_cast<size_t>(e.index)];
          for (const auto& t : e.tokens) {
            ch.ids.push_back(t.id);
            ch.logprobs.push_back(t.logprob);
            ch.top.push_back(t.top);
          }
          ch.text += e.text;
          if (!e.finish_reason.empty()) {
            ch.finish = e.finish_reason;
            ++done;
          }
        }
        if (done < s->choices()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      out.insert(out.end(), c.begin(), c.end());
    }
    return out;
  }

  std::vector<Choice> RunAll(Scheduler& s) {
    std::vector<std::shared_ptr<GenerationStream>> streams;
    for (auto& choices : Requests()) {  // all queued at once: they share every batch
      streams.push_back(std::make_shared<GenerationStream>(static_cast<int>(choices.size())));
      EXPECT_TRUE(s.Submit(choices, streams.back()).ok());
    }
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
    auto s = Scheduler::CreateEmbedded(*model_, tok_.get(), kv, Config(mode), metrics);
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return {};
    return RunAll(**s);
  }

  // Two pipeline stages (threads over the in-process transport), two micro-batches in flight;
  // the draft (if any) runs on the scheduler's side, as on rank 0.
  std::vector<Choice> Pipelined(Mode mode, monitoring::ServingMetrics* metrics = nullptr) {
    constexpr int kStages = 2;
    transport::InProcessHub hub(kStages + 1);
    std::vector<std::unique_ptr<ThreadPool>> pools;
    std::vector<std::unique_ptr<model::Transformer>> models;
    std::vector<std::thread> threads;
    for (int r = 1; r <= kStages; ++r) {
      pools.push_back(std::make_unique<ThreadPool>(1));
      auto m = model::Transformer::Load(kModel, pools.back().get());
      EXPECT_TRUE(m.ok());
      models.push_back(std::move(*m));
      threads.emplace_back([&hub, r, model = models.back().get()] { pipeline::RunPipelineStage(hub.at(r), *model); });
    }
    pipeline::PipelineConfig pc;
    pc.kv_blocks = 256;
    pc.kv_block_size = 4;  // rollbacks cross block boundaries
    pc.context = model_->config().max_position_embeddings;
    pc.micro_batches = 2;
    auto exec = pipeline::PipelineExecutor::Start(hub.at(0), model_->config(),
                                                  sharding::EvenStagePlan(model_->config().num_layers, kStages), pc);
    EXPECT_TRUE(exec.ok()) << exec.status();
    model::KvBlockPool kv(0, model_->kv_format(), 4, 256);
    std::vector<Choice> out;
    {
      Scheduler s(**exec, model_->config(), tok_.get(), kv, Config(mode), metrics);
      out = RunAll(s);
    }
    EXPECT_EQ(kv.free_blocks(), kv.num_blocks());
    (*exec)->Shutdown();
    for (auto& t : threads) t.join();
    return out;
  }

  static void ExpectSame(const std::vector<Choice>& got, const std::vector<Choice>& want, const char* what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i].ids, want[i].ids) << what << ", choice " << i;
      EXPECT_EQ(got[i].text, want[i].text) << what << ", choice " << i;
      EXPECT_EQ(got[i].finish, want[i].finish) << what << ", choice " << i;
      EXPECT_EQ(got[i].logprobs, want[i].logprobs) << what << ", choice " << i;
      EXPECT_EQ(got[i].top, want[i].top) << what << ", choice " << i;
    }
  }

  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<model::Transformer> model_;
  std::unique_ptr<text::Tokenizer> tok_;
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
    ExpectSame(Embedded(mode, &metrics), want, what);
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

// A rounded KV cache (serve --kv-cache-dtype): the verification rows read the rows before
// them through the same cache as decode steps do, so the identity holds for every dtype.
TEST_F(SchedulerSpeculationTest, RoundedKvCacheTokensEqualThoseWithoutSpeculation) {
  for (kernels::KvDType dtype : {kernels::KvDType::kF16, kernels::KvDType::kInt8}) {
    const std::vector<Choice> want = Embedded(Mode::kOff, nullptr, dtype);
    ExpectSame(Embedded(Mode::kNgram, nullptr, dtype), want, "ngram, rounded KV cache");
    ExpectSame(Embedded(Mode::kDraft, nullptr, dtype), want, "draft, rounded KV cache");
  }
}

TEST_F(SchedulerSpeculationTest, PipelinedTokensEqualThoseWithoutSpeculation) {
  const std::vector<Choice> want = Embedded(Mode::kOff);
  for (Mode mode : {Mode::kNgram, Mode::kDraft}) {
    monitoring::ServingMetrics metrics("m");
    ExpectSame(Pipelined(mode, &metrics), want, mode == Mode::kNgram ? "ngram, 2 stages" : "draft, 2 stages");
    EXPECT_GT(Counter(metrics.Serialize(), "accullm_spec_decode_num_accepted_tokens_total"), 0);
  }
}

// The embedded pipeline, checking every launch: each sequence whose prompt went out and that
// is still open has an item (its decode step: the newest token and any draft).
class DecodeStepRecorder final : public pipeline::BatchExecutor {
 public:
  DecodeStepRecorder(model::Transformer& model, int64_t kv_blocks) {
    pipeline::PipelineConfig pc;
    pc.kv_blocks = kv_blocks;
    pc.context = model.config().max_position_embeddings;
    auto p = pipeline::EmbeddedPipeline::Start(model, pc);
    EXPECT_TRUE(p.ok()) << p.status();
    if (p.ok()) pipeline_ = std::move(*p);
  }
  void Open(pipeline::SequenceSetup s) override { pipeline_->Open(std::move(s)); }
  void Release(uint64_t seq) override {
    decoding_.erase(seq);
    pipeline_->Release(seq);
  }
  void Truncate(uint64_t seq, int64_t length) override { pipeline_->Truncate(seq, length); }
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
    return pipeline_->Launch(std::move(tokens), std::move(items));
  }
  absl::StatusOr<std::vector<pipeline::SampledToken>> Wait(uint64_t ticket) override { return pipeline_->Wait(ticket); }

  int launches_missing_a_decoder = 0;
  int64_t drafted = 0;

 private:
  std::unique_ptr<pipeline::EmbeddedPipeline> pipeline_;
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
    std::vector<std::shared_ptr<GenerationStream>> streams;
    // Prompts of two or three tokens: most are prefilled in the first launch, so all decode
    // at once (8 decode rows of the 12, drafts sharing the other 4).
    for (const char* name : {"Lily", "Tom", "Sam", "Ben", "Sue", "Max", "Amy", "Bob"}) {
      streams.push_back(std::make_shared<GenerationStream>(1));
      EXPECT_TRUE(s.Submit({Params(name, 30, 0.f, 1)}, streams.back()).ok());
    }
    s.Start();
    auto out = WaitAll(streams);
    s.Stop();
    return out;
  };
  DecodeStepRecorder plain(*model_, 256), spec(*model_, 256);
  const auto want = run(Mode::kOff, plain);
  ExpectSame(run(Mode::kDraft, spec), want, "draft, budget 12");
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
    std::vector<std::shared_ptr<GenerationStream>> streams;
    int i = 0;
    for (const char* prompt : {"Lily", "Tom and Sam went", "Once upon a time there was", "Ben", "The sun was hot",
                               "Sue had a cat. The cat", "Max", "One day, a girl named Amy saw a"}) {
      streams.push_back(std::make_shared<GenerationStream>(1));
      // Mixed sampling: greedy and seeded at two temperatures, different lengths.
      EXPECT_TRUE(
          s.Submit({Params(prompt, 16 + 3 * i, i % 3 == 0 ? 0.f : 0.7f + 0.1f * (i % 3), 40 + i)}, streams.back())
              .ok());
      ++i;
    }
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
  ExpectSame(run(Mode::kDraft, spec), want, "draft, 8 sequences drafting together");
  EXPECT_GT(launches_, 0);
  EXPECT_LE(passes_, 4 * launches_) << "more than one pass per draft position in a launch";
  // Drafting sequence by sequence runs one pass per drafted token.
  EXPECT_LT(2 * passes_, spec.drafted) << passes_ << " passes for " << spec.drafted << " draft tokens";
}

}  // namespace
}  // namespace accullm::coordinator
