// The headline correctness check: the fixture model's logits and greedy continuations equal
// the independent PyTorch reference (models/tinystories-llama/reference.json).
#include "model/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "common/json.h"
#include "common/mapped_file.h"
#include "gtest/gtest.h"
#include "kernels/cpu/isa.h"
#include "tests/support/test_support.h"

namespace accullm::model {
namespace {

using test_support::ModelDir;

struct ReferenceCase {
  std::vector<int32_t> prompt_ids;
  std::vector<float> last_logits;
  std::vector<float> first_position_logits_first16;
  std::vector<int32_t> greedy_ids;
};

std::vector<ReferenceCase> LoadReference() {
  auto text = ReadTextFile(ModelDir() + "/reference.json");
  EXPECT_TRUE(text.ok()) << text.status();
  auto v = ParseJson(*text, "reference.json");
  EXPECT_TRUE(v.ok()) << v.status();
  std::vector<ReferenceCase> cases;
  for (const auto& c : v->at("cases").as_array()) {
    ReferenceCase rc;
    for (const auto& x : c.at("prompt_ids").as_array())
      rc.prompt_ids.push_back(static_cast<int32_t>(x.to_number<int64_t>()));
    for (const auto& x : c.at("last_logits").as_array()) rc.last_logits.push_back(x.to_number<float>());
    for (const auto& x : c.at("first_position_logits_first16").as_array())
      rc.first_position_logits_first16.push_back(x.to_number<float>());
    for (const auto& x : c.at("greedy_ids").as_array())
      rc.greedy_ids.push_back(static_cast<int32_t>(x.to_number<int64_t>()));
    cases.push_back(std::move(rc));
  }
  return cases;
}

// max |a - b| / max |b|, the tolerance measure the foundation issue uses.
double RelativeMaxError(const float* a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num = std::max(num, static_cast<double>(std::fabs(a[i] - b[i])));
    den = std::max(den, static_cast<double>(std::fabs(b[i])));
  }
  return num / den;
}

class TransformerReferenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test_support::LoadModelOrFail(ModelDir(), &pool_);
    ASSERT_NE(model_, nullptr);
    cases_ = LoadReference();
    ASSERT_EQ(cases_.size(), 3u);
  }
  ThreadPool pool_{2};
  std::unique_ptr<Transformer> model_;
  std::vector<ReferenceCase> cases_;
};

TEST_F(TransformerReferenceTest, LastLogitsMatchPyTorchReference) {
  const int64_t vocab = model_->config().vocab_size;
  for (const auto& c : cases_) {
    KvCache cache = model_->NewCache();
    std::vector<float> logits(c.prompt_ids.size() * vocab);
    ASSERT_TRUE(model_->Forward(c.prompt_ids.data(), c.prompt_ids.size(), cache, logits.data(), true).ok());
    const double err = RelativeMaxError(logits.data() + (c.prompt_ids.size() - 1) * vocab, c.last_logits);
    EXPECT_LE(err, 1e-4) << "last-position logits differ from reference.json";
    std::vector<float> first(logits.begin(), logits.begin() + 16);
    EXPECT_LE(RelativeMaxError(first.data(), c.first_position_logits_first16), 1e-4);
  }
}

TEST_F(TransformerReferenceTest, DecodeThroughKvCacheEqualsPrefill) {
  const auto& c = cases_[0];
  const int64_t vocab = model_->config().vocab_size;
  KvCache cache = model_->NewCache();
  std::vector<float> logits(vocab);
  for (int32_t id : c.prompt_ids) ASSERT_TRUE(model_->Forward(&id, 1, cache, logits.data()).ok());
  EXPECT_LE(RelativeMaxError(logits.data(), c.last_logits), 1e-4);
}

TEST_F(TransformerReferenceTest, GreedyContinuationIdenticalTokenForToken) {
  const int64_t vocab = model_->config().vocab_size;
  for (const auto& c : cases_) {
    KvCache cache = model_->NewCache();
    std::vector<float> logits(vocab);
    ASSERT_TRUE(model_->Forward(c.prompt_ids.data(), c.prompt_ids.size(), cache, logits.data()).ok());
    std::vector<int32_t> got;
    for (size_t i = 0; i < c.greedy_ids.size(); ++i) {
      const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      got.push_back(next);
      ASSERT_TRUE(model_->Forward(&next, 1, cache, logits.data()).ok());
    }
    EXPECT_EQ(got, c.greedy_ids);
  }
}

// Continuous batching: three sequences in one pass (a prefill chunk, a second chunk of a
// sequence already started, and a single decode token) give each sequence the same logits
// as running it alone, with every sequence's KV cache drawn from one shared paged pool.
TEST_F(TransformerReferenceTest, BatchedSequencesMatchSequentialRuns) {
  const int64_t vocab = model_->config().vocab_size;
  KvBlockPool pool(model_->config().num_layers, model_->kv_format(), /*block_size=*/4, /*num_blocks=*/64);
  KvCache a(&pool, 512), b(&pool, 512), c(&pool, 512);
  const auto& pa = cases_[0].prompt_ids;
  const auto& pb = cases_[1].prompt_ids;
  const auto& pc = cases_[2].prompt_ids;
  std::vector<float> scratch(vocab);
  // b has already seen its first 5 tokens, c all but its last one.
  ASSERT_TRUE(model_->Forward(pb.data(), 5, b, scratch.data()).ok());
  ASSERT_TRUE(model_->Forward(pc.data(), pc.size() - 1, c, scratch.data()).ok());
  std::vector<int32_t> tokens(pa.begin(), pa.end());
  tokens.insert(tokens.end(), pb.begin() + 5, pb.end());
  tokens.push_back(pc.back());
  std::vector<float> logits(3 * vocab);
  ASSERT_TRUE(model_
                  ->ForwardBatch(tokens.data(),
                                 {BatchSegment{&a, static_cast<int64_t>(pa.size())},
                                  BatchSegment{&b, static_cast<int64_t>(pb.size()) - 5}, BatchSegment{&c, 1}},
                                 logits.data())
                  .ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_LE(RelativeMaxError(logits.data() + i * vocab, cases_[i].last_logits), 1e-4) << "sequence " << i;
  }
  EXPECT_EQ(a.length(), static_cast<int64_t>(pa.size()));
  EXPECT_EQ(b.length(), static_cast<int64_t>(pb.size()));
  EXPECT_EQ(c.length(), static_cast<int64_t>(pc.size()));
  const int64_t held = a.blocks_held() + b.blocks_held() + c.blocks_held();
  EXPECT_EQ(pool.free_blocks(), 64 - held);
  a.Release();
  b.Release();
  c.Release();
  EXPECT_EQ(pool.free_blocks(), 64);  // every block back on the free list
}

// A pipeline stage's pool holds only its own layers (first_layer offset) while the layers
// keep their global numbers: two half-model pools give the reference logits, prefill and
// decode, and each is half the size of a whole-model pool.
TEST_F(TransformerReferenceTest, StagePoolsHoldOnlyTheirLayers) {
  const auto& c = model_->config();
  const int64_t vocab = c.vocab_size, hidden = c.hidden_size, split = c.num_layers / 2;
  KvBlockPool whole(c.num_layers, model_->kv_format(), 4, 32);
  KvBlockPool front(split, model_->kv_format(), 4, 32, /*first_layer=*/0);
  KvBlockPool back(c.num_layers - split, model_->kv_format(), 4, 32, /*first_layer=*/split);
  EXPECT_EQ(front.bytes() + back.bytes(), whole.bytes());
  const auto& p = cases_[0].prompt_ids;
  const int64_t n = static_cast<int64_t>(p.size());
  KvCache a(&front, 512), b(&back, 512);
  std::vector<float> h(n * hidden), logits(vocab);
  // Prefill all but the last token, then decode it: the decode step reads the cached K/V.
  ASSERT_TRUE(model_->Embed(p.data(), n - 1, h.data()).ok());
  ASSERT_TRUE(model_->RunLayers(0, split, h.data(), {BatchSegment{&a, n - 1}}).ok());
  ASSERT_TRUE(model_->RunLayers(split, c.num_layers, h.data(), {BatchSegment{&b, n - 1}}).ok());
  a.set_length(n - 1);
  b.set_length(n - 1);
  ASSERT_TRUE(model_->Embed(p.data() + n - 1, 1, h.data()).ok());
  ASSERT_TRUE(model_->RunLayers(0, split, h.data(), {BatchSegment{&a, 1}}).ok());
  ASSERT_TRUE(model_->RunLayers(split, c.num_layers, h.data(), {BatchSegment{&b, 1}}).ok());
  model_->Head(h.data(), 1, logits.data());
  EXPECT_LE(RelativeMaxError(logits.data(), cases_[0].last_logits), 1e-4);
}

TEST_F(TransformerReferenceTest, ExhaustedKvPoolIsAnErrorNotACrash) {
  KvBlockPool pool(model_->config().num_layers, model_->kv_format(), /*block_size=*/4, /*num_blocks=*/2);
  KvCache cache(&pool, 512);
  std::vector<float> logits(model_->config().vocab_size);
  const auto& p = cases_[0].prompt_ids;  // 14 tokens need 4 blocks
  EXPECT_EQ(model_->Forward(p.data(), p.size(), cache, logits.data()).code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(TransformerReferenceTest, RejectsTokenOutsideVocabulary) {
  KvCache cache = model_->NewCache();
  std::vector<float> logits(model_->config().vocab_size);
  const int32_t bad = static_cast<int32_t>(model_->config().vocab_size);
  const absl::Status s = model_->Forward(&bad, 1, cache, logits.data());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("outside the vocabulary"), absl::string_view::npos);
}

TEST_F(TransformerReferenceTest, RejectsSequenceBeyondContext) {
  KvCache cache = model_->NewCache(4);
  std::vector<float> logits(model_->config().vocab_size);
  const std::vector<int32_t> ids = {1, 2, 3, 4, 5};
  EXPECT_EQ(model_->Forward(ids.data(), ids.size(), cache, logits.data()).code(), absl::StatusCode::kOutOfRange);
}

// The identity rule (issue 11): a row's logits are the same bits whether it is decoded alone,
// beside a prefill chunk and another decode row in one batch, or as the last row of a
// prefill, and whatever the pool's thread count, at every ISA level (the level alone picks
// the kernels). Attention splits a K/V head's query heads by rows and threads, so this would
// catch a head whose bits depended on its group.
TEST_F(TransformerReferenceTest, RowLogitsBitIdenticalWhateverBatchCallAndThreads) {
  const int64_t vocab = model_->config().vocab_size;
  const auto& pa = cases_[0].prompt_ids;
  const auto& pb = cases_[1].prompt_ids;
  const auto& pc = cases_[2].prompt_ids;
  const int64_t na = static_cast<int64_t>(pa.size()), nb = static_cast<int64_t>(pb.size());
  ThreadPool one(1), three(3);
  std::unique_ptr<Transformer> model_one = test_support::LoadModelOrFail(ModelDir(), &one);
  std::unique_ptr<Transformer> model_three = test_support::LoadModelOrFail(ModelDir(), &three);
  ASSERT_NE(model_one, nullptr);
  ASSERT_NE(model_three, nullptr);
  // Every KV dtype: a row's stored bytes depend on its own values and position only, so
  // the rule holds however the cache stores them.
  for (kernels::Isa isa : kernels::SupportedIsas()) {
    for (kernels::KvDType dt :
         {kernels::KvDType::kF32, kernels::KvDType::kF16, kernels::KvDType::kBF16, kernels::KvDType::kInt8}) {
      kernels::ScopedIsaForTesting scoped(isa);
      std::vector<float> reference;  // sequence a's last row, decoded alone on the 2-thread pool
      for (auto [m, threads] :
           {std::pair<Transformer*, int>{model_.get(), 2}, {model_one.get(), 1}, {model_three.get(), 3}}) {
        std::vector<float> alone(vocab), batch(3 * vocab), prefill(vocab);
        KvCache a = m->NewCache(0, dt), a2 = m->NewCache(0, dt), b = m->NewCache(0, dt), c = m->NewCache(0, dt),
                full = m->NewCache(0, dt);
        ASSERT_TRUE(m->Forward(pa.data(), na - 1, a, alone.data()).ok());
        ASSERT_TRUE(m->Forward(&pa[na - 1], 1, a, alone.data()).ok());
        ASSERT_TRUE(m->Forward(pa.data(), na - 1, a2, batch.data()).ok());
        ASSERT_TRUE(m->Forward(pb.data(), nb - 1, b, batch.data()).ok());
        std::vector<int32_t> tokens(pc.begin(), pc.end());  // c's whole prompt as a prefill chunk
        tokens.push_back(pa[na - 1]);
        tokens.push_back(pb[nb - 1]);
        ASSERT_TRUE(m->ForwardBatch(
                         tokens.data(),
                         {BatchSegment{&c, static_cast<int64_t>(pc.size())}, BatchSegment{&a2, 1}, BatchSegment{&b, 1}},
                         batch.data())
                        .ok());
        ASSERT_TRUE(m->Forward(pa.data(), na, full, prefill.data()).ok());
        if (reference.empty()) reference = alone;
        const std::string where = std::string(kernels::IsaName(isa)) + ", " + kernels::KvDTypeName(dt) + " cache, " +
                                  std::to_string(threads) + " thread(s)";
        EXPECT_EQ(std::memcmp(alone.data(), reference.data(), vocab * sizeof(float)), 0) << where << ": alone";
        EXPECT_EQ(std::memcmp(batch.data() + vocab, reference.data(), vocab * sizeof(float)), 0) << where << ": batch";
        EXPECT_EQ(std::memcmp(prefill.data(), reference.data(), vocab * sizeof(float)), 0) << where << ": prefill";
      }
    }
  }
}

}  // namespace
}  // namespace accullm::model
