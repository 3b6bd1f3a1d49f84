// Speculative decoding (speculative/): the accept/reject rule over synthetic rows, prompt
// lookup, and on the embedded model with a low-bit copy of itself as the draft: the tokens
// equal the target's alone (an independent sequential loop, and the scheduler that `generate`
// uses) token for token, greedy and sampled, while the draft alone differs; the target's KV
// cache after rejections equals a non-speculative run's.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "boost/json.hpp"
#include "coordinator/scheduler.h"
#include "gtest/gtest.h"
#include "model/end_of_sequence.h"
#include "quant/calibration.h"
#include "quant/model_quantizer.h"
#include "speculative/draft_verification.h"
#include "speculative/model_draft_proposer.h"
#include "speculative/ngram_draft_proposer.h"
#include "speculative/speculative_decoder.h"
#include "speculative/speculative_generation.h"
#include "tests/support/test_support.h"

namespace accullm::speculative {
namespace {

// ---- the rule over synthetic rows ----

// Rows [n, vocab] of random logits.
std::vector<float> RandomRows(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 2.f);
  std::vector<float> rows(static_cast<size_t>(n * vocab));
  for (float& v : rows) v = normal(rng);
  return rows;
}

// The token a sampler alone picks at each row, each sampled after the previous one.
std::vector<int32_t> SampleAlone(const model::SamplingParams& p, std::vector<float> rows, int64_t vocab,
                                 std::vector<int32_t> history, const std::vector<int32_t>& feed) {
  model::Sampler s(p);
  std::vector<int32_t> out;
  const int64_t n = static_cast<int64_t>(rows.size()) / vocab;
  for (int64_t i = 0; i < n; ++i) {
    out.push_back(s.Sample(rows.data() + i * vocab, vocab, history, static_cast<int64_t>(history.size())));
    history.push_back(i < static_cast<int64_t>(feed.size()) ? feed[i] : out.back());
  }
  return out;
}

TEST(DraftVerificationTest, AcceptsTheLongestAgreeingPrefixThenTheTargetsOwnToken) {
  const int64_t vocab = 50, k = 4;
  for (float temperature : {0.f, 0.9f}) {
    model::SamplingParams p;
    p.temperature = temperature;
    p.top_p = 0.95f;
    p.seed = 3;
    const std::vector<int32_t> context = {1, 7, 9};
    const std::vector<float> rows = RandomRows(k + 1, vocab, 11);
    // What the target samples at each position when fed its own tokens.
    const std::vector<int32_t> own = SampleAlone(p, rows, vocab, context, {});
    for (int64_t wrong_at = 0; wrong_at <= k; ++wrong_at) {  // k: the whole draft agrees
      std::vector<int32_t> sequence = context;
      for (int64_t i = 0; i < k; ++i) sequence.push_back(i == wrong_at ? (own[i] + 1) % vocab : own[i]);
      std::vector<float> work = rows;
      model::Sampler target(p);
      const Verification v = VerifyDraft(target, work.data(), vocab, sequence, k);
      EXPECT_EQ(v.accepted, wrong_at) << "T " << temperature;
      EXPECT_EQ(v.token, own[wrong_at]) << "T " << temperature << " wrong at " << wrong_at;
    }
  }
}

// Penalties see the draft tokens before each row, as they would see the generated tokens.
TEST(DraftVerificationTest, PenaltiesCountTheDraftTokensBeforeEachRow) {
  const int64_t vocab = 4;
  model::SamplingParams p;
  p.repetition_penalty = 4.f;  // greedy; a seen token's positive logit is divided by 4
  // Row 0 prefers token 2; row 1 prefers token 2 too, but 2 was drafted before it, so its
  // penalized logit (3 / 4) loses to token 3 (2.5).
  std::vector<float> rows = {0, 0, 3, 1, 0, 0, 3, 2.5f, 0, 0, 3, 2.8f};
  model::Sampler target(p);
  const Verification v = VerifyDraft(target, rows.data(), vocab, std::vector<int32_t>{0, 2, 2}, 2);
  EXPECT_EQ(v.accepted, 1);
  EXPECT_EQ(v.token, 3);
}

TEST(NgramDraftProposerTest, ContinuesTheLongestMostRecentMatch) {
  NgramDraftProposer ngram(3);
  std::vector<int32_t> draft;
  // The 3-gram (5 6 7) occurred at the start: its continuation 8 9 10 11.
  ASSERT_TRUE(ngram.Propose(std::vector<int32_t>{5, 6, 7, 8, 9, 10, 11, 12, 5, 6, 7}, 4, draft).ok());
  EXPECT_EQ(draft, (std::vector<int32_t>{8, 9, 10, 11}));
  // k bounds the draft; the continuation stops at the end of the context.
  ASSERT_TRUE(ngram.Propose(std::vector<int32_t>{5, 6, 7, 8, 5, 6, 7}, 9, draft).ok());
  EXPECT_EQ(draft, (std::vector<int32_t>{8, 5, 6, 7}));
  // The longest n wins over a more recent shorter match; among equals, the most recent.
  ASSERT_TRUE(ngram.Propose(std::vector<int32_t>{1, 2, 3, 40, 9, 3, 50, 1, 2, 3}, 1, draft).ok());
  EXPECT_EQ(draft, (std::vector<int32_t>{40}));
  ASSERT_TRUE(ngram.Propose(std::vector<int32_t>{3, 40, 9, 3, 50, 7, 3}, 2, draft).ok());
  EXPECT_EQ(draft, (std::vector<int32_t>{50, 7}));
  // Nothing to continue.
  ASSERT_TRUE(ngram.Propose(std::vector<int32_t>{1, 2, 3, 4}, 4, draft).ok());
  EXPECT_TRUE(draft.empty());
  ASSERT_TRUE(ngram.Propose(std::vector<int32_t>{1}, 4, draft).ok());
  EXPECT_TRUE(draft.empty());
}

// ---- on the embedded model ----

class SpeculativeDecodingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pool_ = new ThreadPool(2);
    target_ = test_support::LoadModelOrFail(test_support::ModelDir(), pool_).release();
    draft_ = test_support::LoadModelOrFail(test_support::ModelDir(), pool_).release();
    tok_ = test_support::LoadTokenizerOrFail(test_support::ModelDir()).release();
    ASSERT_NE(target_, nullptr);
    ASSERT_NE(draft_, nullptr);
    ASSERT_NE(tok_, nullptr);
    // The draft: the same model with every block linear 3-bit round-to-nearest, in memory (a
    // pack made by `accullm quantize` is the integration test's draft). Coarse enough that
    // it disagrees with the target now and then, close enough that most drafts pass.
    quant::CalibrationStats stats(pool_, 6.0f);
    std::vector<std::vector<int32_t>> chunks = {{1, 420, 435, 261, 394, 1988, 391, 282, 261, 382}};
    ASSERT_TRUE(quant::RunCalibration(*draft_, chunks, stats).ok());
    quant::ModelQuantOptions opts;
    opts.quant.method = quant::QuantMethod::kRtn;
    opts.quant.bits = 3;
    opts.outliers.enabled = false;
    auto mats = quant::QuantizeModel(*draft_, stats, sharding::PrecisionPlan::AllLowBit(draft_->config().num_layers),
                                     opts, *pool_);
    ASSERT_TRUE(mats.ok()) << mats.status();
    // Prompts: the fixture's reference.json cases and the openings of valid.txt paragraphs.
    prompts_ = new std::vector<std::vector<int32_t>>();
    const boost::json::value ref =
        boost::json::parse(test_support::ReadFileOrFail(test_support::ModelDir() + "/reference.json"));
    for (const auto& c : ref.at("cases").as_array()) {
      std::vector<int32_t> ids;
      for (const auto& id : c.at("prompt_ids").as_array()) ids.push_back(static_cast<int32_t>(id.as_int64()));
      prompts_->push_back(ids);
    }
    std::istringstream valid(test_support::ReadFileOrFail(test_support::ModelDir() + "/valid.txt"));
    std::string line;
    for (int i = 0; i < 40 && std::getline(valid, line); ++i) {
      if (i % 8 != 0 || line.size() < 60) continue;
      prompts_->push_back(tok_->Encode(line.substr(0, 60), true));
    }
    ASSERT_GE(prompts_->size(), 6u);
  }
  static void TearDownTestSuite() {
    delete prompts_;
    delete tok_;
    delete draft_;
    delete target_;
    delete pool_;
  }

  static std::vector<model::SamplingParams> SamplingCases() {
    model::SamplingParams greedy;
    model::SamplingParams warm;
    warm.temperature = 0.8f;
    warm.top_p = 0.9f;
    warm.seed = 7;
    model::SamplingParams hot;
    hot.temperature = 1.f;
    hot.top_p = 0.95f;
    hot.repetition_penalty = 1.1f;
    hot.seed = 12345;
    return {greedy, warm, hot};
  }

  // `model` alone, one token at a time after the prompt's prefill: the sequential reference.
  static std::vector<int32_t> Alone(model::Transformer& model, const std::vector<int32_t>& prompt, int64_t n,
                                    const model::SamplingParams& p) {
    const int64_t vocab = model.config().vocab_size;
    model::KvCache cache = model.NewCache(static_cast<int64_t>(prompt.size()) + n);
    std::vector<float> logits(static_cast<size_t>(vocab));
    model::Sampler sampler(p);
    std::vector<int32_t> seq = prompt;
    EXPECT_TRUE(model.Forward(prompt.data(), static_cast<int64_t>(prompt.size()), cache, logits.data()).ok());
    for (int64_t i = 0; i < n; ++i) {
      if (i > 0) {
        EXPECT_TRUE(model.Forward(&seq.back(), 1, cache, logits.data()).ok());
      }
      seq.push_back(sampler.Sample(logits.data(), vocab, seq, static_cast<int64_t>(seq.size())));
    }
    return std::vector<int32_t>(seq.begin() + static_cast<int64_t>(prompt.size()), seq.end());
  }

  // `n` tokens through a SpeculativeDecoder (EOS ignored: every step's tokens are kept).
  static std::vector<int32_t> Speculate(DraftProposer* proposer, const std::vector<int32_t>& prompt, int64_t n,
                                        const model::SamplingParams& p, SpeculationConfig config,
                                        SpeculationStats* stats = nullptr,
                                        std::unique_ptr<SpeculativeDecoder>* keep = nullptr) {
    const int64_t capacity = static_cast<int64_t>(prompt.size()) + n;
    auto decoder = std::make_unique<SpeculativeDecoder>(*target_, proposer, p, config, capacity);
    std::vector<int32_t> out;
    auto first = decoder->Prefill(prompt);
    EXPECT_TRUE(first.ok()) << first.status();
    if (!first.ok()) return out;
    out.push_back(*first);
    while (static_cast<int64_t>(out.size()) < n) {
      auto step = decoder->Step(n - static_cast<int64_t>(out.size()));
      EXPECT_TRUE(step.ok()) << step.status();
      if (!step.ok()) return out;
      EXPECT_GE(step->size(), 1u);
      out.insert(out.end(), step->begin(), step->end());
    }
    EXPECT_EQ(static_cast<int64_t>(out.size()), n) << "a step went past its limit";
    if (stats != nullptr) *stats = decoder->stats();
    if (keep != nullptr) *keep = std::move(decoder);
    return out;
  }

  static std::unique_ptr<ModelDraftProposer> DraftProposerFor(const model::SamplingParams& p, int64_t capacity) {
    return std::make_unique<ModelDraftProposer>(*draft_, p, capacity);
  }

  static ThreadPool* pool_;
  static model::Transformer* target_;
  static model::Transformer* draft_;
  static text::Tokenizer* tok_;
  static std::vector<std::vector<int32_t>>* prompts_;
};
ThreadPool* SpeculativeDecodingTest::pool_ = nullptr;
model::Transformer* SpeculativeDecodingTest::target_ = nullptr;
model::Transformer* SpeculativeDecodingTest::draft_ = nullptr;
text::Tokenizer* SpeculativeDecodingTest::tok_ = nullptr;
std::vector<std::vector<int32_t>>* SpeculativeDecodingTest::prompts_ = nullptr;

TEST_F(SpeculativeDecodingTest, GoldenTokensAreTheTargetsAloneGreedyAndSampled) {
  const int64_t n = 40;
  int differing_drafts = 0;
  int64_t drafted = 0, accepted = 0;
  for (const model::SamplingParams& p : SamplingCases()) {
    for (const auto& prompt : *prompts_) {
      const std::vector<int32_t> want = Alone(*target_, prompt, n, p);
      auto proposer = DraftProposerFor(p, static_cast<int64_t>(prompt.size()) + n);
      SpeculationStats stats;
      EXPECT_EQ(Speculate(proposer.get(), prompt, n, p, {}, &stats), want)
          << "T " << p.temperature << " prompt of " << prompt.size() << " tokens";
      drafted += stats.drafted;
      accepted += stats.accepted;
      if (Alone(*draft_, prompt, n, p) != want) ++differing_drafts;
    }
  }
  // The test can fail: the draft alone says something else on some prompts, and the rule
  // rejected drafts (so rollbacks happened) while accepting most.
  EXPECT_GT(differing_drafts, 0);
  EXPECT_LT(accepted, drafted);
  EXPECT_GT(accepted, drafted / 2) << accepted << " of " << drafted;
}

// Drafting for one sequence as it was done before batched drafting: its own cache, the rows
// it lacks in one Forward, then one Forward per draft token. The reference for ProposeBatch.
class SequentialDrafter {
 public:
  SequentialDrafter(model::Transformer& m, const model::SamplingParams& p, int64_t capacity)
      : model_(m), cache_(m.NewCache(capacity)), sampler_(p) {}
  std::vector<int32_t> Propose(const std::vector<int32_t>& context, int64_t k) {
    std::vector<int32_t> draft;
    if (k <= 0 || context.empty()) return draft;
    size_t keep = 0;
    while (keep < std::min(fed_.size(), context.size() - 1) && fed_[keep] == context[keep]) ++keep;
    cache_.Truncate(static_cast<int64_t>(keep));
    fed_.assign(context.begin(), context.end());
    const int64_t vocab = model_.config().vocab_size;
    std::vector<float> logits(static_cast<size_t>(vocab));
    EXPECT_TRUE(
        model_.Forward(context.data() + keep, static_cast<int64_t>(context.size() - keep), cache_, logits.data()).ok());
    std::vector<int32_t> history = context;
    for (int64_t i = 0; i < k; ++i) {
      const int64_t position = static_cast<int64_t>(history.size());
      const int32_t token = sampler_.Sample(logits.data(), vocab, history, position);
      draft.push_back(token);
      history.push_back(token);
      if (i + 1 == k || position >= cache_.capacity()) break;
      EXPECT_TRUE(model_.Forward(&token, 1, cache_, logits.data()).ok());
      fed_.push_back(token);
    }
    return draft;
  }

 private:
  model::Transformer& model_;
  model::KvCache cache_;
  model::Sampler sampler_;
  std::vector<int32_t> fed_;
};

// Batched drafting (ProposeBatch): sequences of different lengths, sampling parameters and
// draft lengths, over several steps whose contexts accept a part of each draft and then
// differ (so every cache rolls back by its own amount), get exactly the drafts they get alone
// (the INT8 activation path of the 3-bit draft included), from one forward pass of the draft
// model per draft position: as many passes as the longest k, not the sum of the k's.
TEST_F(SpeculativeDecodingTest, BatchedDraftsEqualPerSequenceDrafts) {
  const int64_t vocab = draft_->config().vocab_size;
  const std::vector<model::SamplingParams> cases = SamplingCases();
  const size_t n_seq = std::min<size_t>(6, prompts_->size());
  const int64_t capacity = 256;
  std::vector<std::unique_ptr<ModelDraftProposer>> batched;
  std::vector<std::unique_ptr<SequentialDrafter>> alone;
  std::vector<std::vector<int32_t>> contexts;
  for (size_t i = 0; i < n_seq; ++i) {
    const model::SamplingParams& p = cases[i % cases.size()];
    batched.push_back(DraftProposerFor(p, capacity));
    alone.push_back(std::make_unique<SequentialDrafter>(*draft_, p, capacity));
    contexts.push_back((*prompts_)[i]);
  }
  std::set<size_t> lengths;
  for (const auto& c : contexts) lengths.insert(c.size());
  ASSERT_GT(lengths.size(), 1u) << "the prompts should differ in length";
  int64_t sum_k = 0, sum_passes = 0;
  for (int step = 0; step < 6; ++step) {
    std::vector<DraftRequest> requests;
    int64_t max_k = 0;
    for (size_t i = 0; i < n_seq; ++i) {
      // k from 0 (this sequence does not draft) to 5, changing from step to step.
      const int64_t k = static_cast<int64_t>((i + 2 * static_cast<size_t>(step)) % 6);
      requests.push_back({batched[i].get(), contexts[i], k, {}, {}});
      max_k = std::max(max_k, k);
      sum_k += k;
    }
    const int64_t passes = ProposeBatch(absl::MakeSpan(requests));
    EXPECT_EQ(passes, max_k) << "step " << step;
    sum_passes += passes;
    for (size_t i = 0; i < n_seq; ++i) {
      ASSERT_TRUE(requests[i].status.ok()) << requests[i].status;
      const std::vector<int32_t> want = alone[i]->Propose(contexts[i], requests[i].k);
      EXPECT_EQ(requests[i].draft, want) << "sequence " << i << ", step " << step;
      EXPECT_EQ(static_cast<int64_t>(requests[i].draft.size()), requests[i].k);
      // The next context: a part of the draft accepted, then a token of the target's (here
      // any other token), so the rows of the rejected draft tokens are rolled back.
      const size_t accepted = (3 * i + static_cast<size_t>(step)) % (want.size() + 1);
      contexts[i].insert(contexts[i].end(), want.begin(), want.begin() + static_cast<int64_t>(accepted));
      const int32_t other = accepted < want.size() ? want[accepted] + 1 : 17;
      contexts[i].push_back(other % static_cast<int32_t>(vocab));
    }
  }
  EXPECT_LT(2 * sum_passes, sum_k) << "batched drafting should share passes across sequences";
  // A proposer that is not a draft model proposes alone, beside the batch.
  NgramDraftProposer ngram;
  std::vector<int32_t> repeat = {5, 6, 7, 5, 6};
  std::vector<DraftRequest> mixed = {{&ngram, repeat, 3, {}, {}}, {batched[0].get(), contexts[0], 2, {}, {}}};
  EXPECT_EQ(ProposeBatch(absl::MakeSpan(mixed)), 2);
  EXPECT_EQ(mixed[0].draft, std::vector<int32_t>({7, 5, 6}));
  EXPECT_EQ(mixed[1].draft, alone[0]->Propose(contexts[0], 2));
}

TEST_F(SpeculativeDecodingTest, EveryDraftLengthGivesTheSameTokens) {
  const int64_t n = 32;
  for (const model::SamplingParams& p : SamplingCases()) {
    const auto& prompt = (*prompts_)[1];
    const std::vector<int32_t> want = Alone(*target_, prompt, n, p);
    for (int64_t k : {1, 2, 3, 7, 16}) {
      auto proposer = DraftProposerFor(p, static_cast<int64_t>(prompt.size()) + n);
      EXPECT_EQ(Speculate(proposer.get(), prompt, n, p, {.max_draft_tokens = k, .adaptive = false}), want)
          << "k " << k << " T " << p.temperature;
    }
    // No proposer: plain decode steps through the same loop.
    EXPECT_EQ(Speculate(nullptr, prompt, n, p, {}), want);
  }
}

// After rejections the target's cache holds exactly the rows a non-speculative run of the
// same tokens leaves: same length, bit-identical K and V rows, the same logits next.
TEST_F(SpeculativeDecodingTest, RollbackLeavesTheCacheOfANonSpeculativeRun) {
  const int64_t n = 48;
  model::SamplingParams p = SamplingCases()[2];
  for (size_t which : {size_t{0}, size_t{4}}) {
    const auto& prompt = (*prompts_)[which];
    auto proposer = DraftProposerFor(p, static_cast<int64_t>(prompt.size()) + n);
    SpeculationStats stats;
    std::unique_ptr<SpeculativeDecoder> decoder;
    const std::vector<int32_t> got = Speculate(proposer.get(), prompt, n, p, {.max_draft_tokens = 6}, &stats, &decoder);
    ASSERT_NE(decoder, nullptr);
    ASSERT_LT(stats.accepted, stats.drafted) << "no rejection: nothing was rolled back";
    const std::vector<int32_t>& seq = decoder->tokens();
    ASSERT_EQ(seq.size(), prompt.size() + got.size());
    // The reference: the prompt's prefill, then one generated token at a time (every token
    // but the newest, as the decoder's cache holds).
    model::KvCache ref = target_->NewCache(static_cast<int64_t>(seq.size()) + 1);
    const int64_t vocab = target_->config().vocab_size;
    std::vector<float> ref_logits(static_cast<size_t>(vocab)), got_logits(static_cast<size_t>(vocab));
    ASSERT_TRUE(target_->Forward(prompt.data(), static_cast<int64_t>(prompt.size()), ref, ref_logits.data()).ok());
    for (size_t i = prompt.size(); i + 1 < seq.size(); ++i)
      ASSERT_TRUE(target_->Forward(&seq[i], 1, ref, ref_logits.data()).ok());
    model::KvCache& cache = decoder->target_cache();
    ASSERT_EQ(cache.length(), ref.length());
    ASSERT_EQ(cache.format().dtype, ref.format().dtype);
    const size_t row_bytes = static_cast<size_t>(ref.format().row_bytes());
    for (int64_t layer = 0; layer < target_->config().num_layers; ++layer) {
      for (int64_t pos = 0; pos < ref.length(); ++pos) {
        ASSERT_EQ(std::memcmp(ref.k(layer, pos), cache.k(layer, pos), row_bytes), 0)
            << "K row of layer " << layer << " position " << pos;
        ASSERT_EQ(std::memcmp(ref.v(layer, pos), cache.v(layer, pos), row_bytes), 0)
            << "V row of layer " << layer << " position " << pos;
      }
    }
    ASSERT_TRUE(target_->Forward(&seq.back(), 1, ref, ref_logits.data()).ok());
    ASSERT_TRUE(target_->Forward(&seq.back(), 1, cache, got_logits.data()).ok());
    EXPECT_EQ(got_logits, ref_logits);
  }
}

TEST_F(SpeculativeDecodingTest, NgramTokensAreTheTargetsAlone) {
  const int64_t n = 40;
  // A prompt that repeats itself gives prompt lookup something to find.
  std::vector<int32_t> repeated = (*prompts_)[3];
  repeated.insert(repeated.end(), (*prompts_)[3].begin() + 1, (*prompts_)[3].end());
  std::vector<std::vector<int32_t>> prompts = *prompts_;
  prompts.push_back(repeated);
  int64_t accepted = 0;
  for (const model::SamplingParams& p : SamplingCases()) {
    for (const auto& prompt : prompts) {
      NgramDraftProposer ngram;
      SpeculationStats stats;
      EXPECT_EQ(Speculate(&ngram, prompt, n, p, {}, &stats), Alone(*target_, prompt, n, p)) << "T " << p.temperature;
      accepted += stats.accepted;
    }
  }
  EXPECT_GT(accepted, 0);
}

// GenerateSpeculatively ends a sequence as the scheduler (`generate`'s path) does: EOS, stop
// sequences (the text and the tokens up to the one completing it), max_tokens.
TEST_F(SpeculativeDecodingTest, GenerationEndsAsTheSchedulerDoes) {
  model::KvBlockPool budget(0, target_->kv_format(), 16, 64);
  auto scheduler = coordinator::Scheduler::CreateEmbedded(*target_, tok_, budget, {}, nullptr);
  ASSERT_TRUE(scheduler.ok()) << scheduler.status();
  (*scheduler)->Start();
  struct Case {
    std::string prompt;
    std::vector<std::string> stop;
    int64_t max_tokens;
    model::SamplingParams sampling;
  };
  const std::vector<model::SamplingParams> sampling = SamplingCases();
  const std::vector<Case> cases = {
      {"Once upon a time", {}, 200, sampling[0]},                     // long enough to meet EOS
      {"Tom and his dog went to the park.", {"."}, 60, sampling[1]},  // a stop sequence
      {"The sun was shining", {"park", " and"}, 60, sampling[2]},
      {"Lily liked to", {}, 7, sampling[1]},  // max_tokens
  };
  std::set<std::string> finishes;
  for (const Case& c : cases) {
    coordinator::SequenceParams p;
    p.prompt = tok_->Encode(c.prompt, true);
    p.max_tokens = c.max_tokens;
    p.stop = c.stop;
    p.sampling = c.sampling;
    auto stream = std::make_shared<coordinator::GenerationStream>(1);
    ASSERT_TRUE((*scheduler)->Submit({p}, stream).ok());
    std::vector<int32_t> want_ids;
    std::string want_text, want_finish;
    for (int spin = 0; spin < 20000 && want_finish.empty(); ++spin) {
      for (auto& e : stream->Drain()) {
        for (const auto& t : e.tokens) want_ids.push_back(t.id);
        want_text += e.text;
        if (!e.finish_reason.empty()) want_finish = e.finish_reason;
      }
      if (want_finish.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_FALSE(want_finish.empty());

    const int64_t capacity = static_cast<int64_t>(p.prompt.size()) + p.max_tokens;
    auto proposer = DraftProposerFor(p.sampling, capacity);
    SpeculativeDecoder decoder(*target_, proposer.get(), p.sampling, {}, capacity);
    std::string text;
    auto got = GenerateSpeculatively(
        decoder, target_->config(), tok_, {p.prompt, p.max_tokens, p.stop, false},
        [&](int32_t, std::string_view piece) { text += piece; }, [&](std::string_view piece) { text += piece; });
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->ids, want_ids) << c.prompt;
    EXPECT_EQ(got->finish, want_finish) << c.prompt;
    EXPECT_EQ(text, want_text) << c.prompt;
    finishes.insert(want_finish);
  }
  (*scheduler)->Stop();
  EXPECT_EQ(finishes, (std::set<std::string>{"stop", "length"}));
}

}  // namespace
}  // namespace accullm::speculative
