// A pipeline stage stores KV rows in the blocks the scheduler names (wire version 5): the same
// tokens and logprobs whichever block ids hold a sequence, and, before anything runs, a clear
// refusal of an id outside the stage's pool, an id another live sequence (or the same one)
// already holds, and a block table that does not end at the item's last position; released and
// truncated sequences' ids are free again.
#include "pipeline/pipeline_stage.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "pipeline/pipeline_executor.h"
#include "sharding/stage_plan.h"
#include "tests/support/test_support.h"

namespace accullm::pipeline {
namespace {

constexpr int64_t kBlockSize = 4;
constexpr int64_t kBlocks = 8;

class PipelineStageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = std::make_unique<ThreadPool>(1);
    model_ = test_support::LoadModelOrFail(test_support::ModelDir(), pool_.get());
    ASSERT_NE(model_, nullptr);
  }

  // The one stage of a one-stage pipeline (embed, every layer, head), as EmbeddedPipeline makes it.
  std::unique_ptr<PipelineStage> NewStage() {
    PipelineConfig pc;
    pc.kv_block_size = kBlockSize;
    pc.kv_blocks = kBlocks;
    pc.context = 32;
    sharding::StagePlan plan = sharding::EvenStagePlan(model_->config().num_layers, 1);
    const Hello hello = StageHello(model_->config(), plan, pc, 0);
    EXPECT_TRUE(CheckHello(hello, *model_, 1, 2, nullptr).ok);
    return std::make_unique<PipelineStage>(*model_, hello, 1);
  }

  // A stage-0 batch of one item of `seq` over `tokens` at `position`, sampling greedily.
  static Batch Item(uint64_t seq, int64_t position, std::vector<int32_t> tokens, std::vector<int32_t> blocks) {
    Batch b;
    b.items.push_back({seq, position, static_cast<int64_t>(tokens.size()), true, std::move(blocks)});
    b.rows = static_cast<int64_t>(tokens.size());
    b.tokens = std::move(tokens);
    return b;
  }
  static NewSequence Greedy(uint64_t seq, std::vector<int32_t> prefix_blocks = {},
                            std::vector<int32_t> prefix_tokens = {}) {
    return NewSequence{seq, model::SamplingParams{.temperature = 0}, 0, std::move(prefix_blocks),
                       std::move(prefix_tokens)};
  }

  // Runs `b` and returns its one sampled token, or the stage's error.
  static absl::StatusOr<SampledToken> RunOne(PipelineStage& stage, Batch b) {
    static uint64_t id = 0;
    absl::StatusOr<Message> m = stage.Run(++id, b);
    if (!m.ok()) return m.status();
    const auto& r = std::get<Result>(m->body);
    if (r.tokens.size() != 1) return absl::InternalError("expected one sampled token");
    return r.tokens[0];
  }

  // Greedy: the 5-token prompt, then 8 decode steps; the sequence's blocks are `ids` in table
  // order (13 positions: 4 blocks), each item carrying the ones its rows start using.
  std::vector<SampledToken> Generate(PipelineStage& stage, const std::vector<int32_t>& ids) {
    const std::vector<int32_t> prompt = {1, 450, 1217, 287, 263};
    std::vector<SampledToken> out;
    Batch first = Item(1, 0, prompt, {ids[0], ids[1]});
    first.opened.push_back(Greedy(1));
    auto t = RunOne(stage, std::move(first));
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return out;
    out.push_back(*t);
    for (int64_t pos = 5; pos < 13; ++pos) {
      std::vector<int32_t> fresh;
      if (pos % kBlockSize == 0) fresh.push_back(ids[pos / kBlockSize]);
      t = RunOne(stage, Item(1, pos, {out.back().id}, fresh));
      EXPECT_TRUE(t.ok()) << t.status();
      if (!t.ok()) return out;
      out.push_back(*t);
    }
    return out;
  }

  static void ExpectRefused(const absl::StatusOr<SampledToken>& got, const std::string& why) {
    ASSERT_FALSE(got.ok()) << "accepted; expected: " << why;
    EXPECT_NE(std::string(got.status().message()).find(why), std::string::npos) << got.status();
  }

  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<model::Transformer> model_;
};

TEST_F(PipelineStageTest, SameTokensAndLogprobsWhicheverBlocksHoldTheRows) {
  auto identity = NewStage();
  auto scrambled = NewStage();
  const auto a = Generate(*identity, {0, 1, 2, 3});
  const auto b = Generate(*scrambled, {7, 2, 5, 0});
  ASSERT_EQ(a.size(), 9u);
  ASSERT_EQ(b.size(), 9u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].id, b[i].id) << "token " << i;
    EXPECT_EQ(a[i].logprob, b[i].logprob) << "token " << i;
  }
  // And the same as `generate`'s path: Transformer::Forward on a private, allocating KvCache.
  model::KvCache cache = model_->NewCache(32);
  std::vector<float> logits(static_cast<size_t>(model_->config().vocab_size));
  std::vector<int32_t> fed = {1, 450, 1217, 287, 263};
  ASSERT_TRUE(model_->Forward(fed.data(), 5, cache, logits.data()).ok());
  for (size_t i = 0; i < a.size(); ++i) {
    const int32_t greedy = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(a[i].id, greedy) << "token " << i;
    if (i + 1 < a.size()) {
      ASSERT_TRUE(model_->Forward(&a[i].id, 1, cache, logits.data()).ok());
    }
  }
}

TEST_F(PipelineStageTest, RefusesAnIdOutsideThePool) {
  auto stage = NewStage();
  Batch b = Item(1, 0, {1, 2, 3, 4, 5}, {0, kBlocks});
  b.opened.push_back(Greedy(1));
  ExpectRefused(RunOne(*stage, std::move(b)), "KV block 8 is outside this stage's pool of 8 blocks");
}

TEST_F(PipelineStageTest, RefusesAnIdAnotherLiveSequenceHolds) {
  auto stage = NewStage();
  Batch b = Item(1, 0, {1, 2, 3, 4, 5}, {3, 6});
  b.opened.push_back(Greedy(1));
  ASSERT_TRUE(RunOne(*stage, std::move(b)).ok());
  Batch other = Item(2, 0, {1, 2}, {6});
  other.opened.push_back(Greedy(2));
  ExpectRefused(RunOne(*stage, std::move(other)), "sequence 2: KV block 6 is already held by sequence 1");
}

TEST_F(PipelineStageTest, RefusesAnIdTwiceInOneTable) {
  auto stage = NewStage();
  Batch b = Item(1, 0, {1, 2, 3, 4, 5}, {2, 2});
  b.opened.push_back(Greedy(1));
  ExpectRefused(RunOne(*stage, std::move(b)), "sequence 1: KV block 2 is already held by sequence 1");
}

TEST_F(PipelineStageTest, RefusesATableThatDoesNotEndAtTheLastPosition) {
  {
    auto stage = NewStage();  // 5 positions need 2 blocks: 1 is too short
    Batch b = Item(1, 0, {1, 2, 3, 4, 5}, {0});
    b.opened.push_back(Greedy(1));
    ExpectRefused(RunOne(*stage, std::move(b)), "positions [0, 5) need a block table of 2 blocks; it would have 1");
  }
  {
    auto stage = NewStage();  // 3 is longer than any position uses
    Batch b = Item(1, 0, {1, 2, 3, 4, 5}, {0, 1, 2});
    b.opened.push_back(Greedy(1));
    ExpectRefused(RunOne(*stage, std::move(b)), "need a block table of 2 blocks; it would have 3");
  }
  {
    auto stage = NewStage();  // a decode step into a new block without its id
    Batch b = Item(1, 0, {1, 2, 3, 4}, {0});
    b.opened.push_back(Greedy(1));
    ASSERT_TRUE(RunOne(*stage, std::move(b)).ok());
    ExpectRefused(RunOne(*stage, Item(1, 4, {9}, {})),
                  "positions [4, 5) need a block table of 2 blocks; it would have 1");
  }
}

TEST_F(PipelineStageTest, ReleasedAndTruncatedBlocksAreFreeAgain) {
  auto stage = NewStage();
  Batch a = Item(1, 0, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {4, 1, 6});  // 10 positions: 3 blocks
  a.opened.push_back(Greedy(1));
  ASSERT_TRUE(RunOne(*stage, std::move(a)).ok());
  // Back to 4 positions: blocks 1 and 6 leave sequence 1's table; sequence 2 may take 6.
  Batch b = Item(2, 0, {1, 2}, {6});
  b.truncated.push_back({1, 4});
  b.opened.push_back(Greedy(2));
  ASSERT_TRUE(RunOne(*stage, std::move(b)).ok());
  // Sequence 1 goes on at position 4, in a new block (block 1 again: it was dropped).
  ASSERT_TRUE(RunOne(*stage, Item(1, 4, {11}, {1})).ok());
  // Block 4 is still sequence 1's; once it is released, sequence 3 may take all of its blocks.
  Batch c = Item(3, 0, {1, 2, 3, 4, 5}, {4, 1});
  c.opened.push_back(Greedy(3));
  c.released.push_back(1);
  ASSERT_TRUE(RunOne(*stage, std::move(c)).ok());
  ExpectRefused(RunOne(*stage, Item(2, 2, {3, 4, 5}, {4})), "KV block 4 is already held by sequence 3");
}

TEST_F(PipelineStageTest, RefusesASequenceTwiceInOneBatch) {
  auto stage = NewStage();
  Batch b = Item(1, 0, {1, 2}, {0});
  b.opened.push_back(Greedy(1));
  b.items.push_back({1, 0, 1, true, {}});
  b.rows += 1;
  b.tokens.push_back(3);
  absl::StatusOr<Message> m = stage->Run(1, b);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(std::string(m.status().message()).find("sequence 1 appears twice in one batch"), std::string::npos)
      << m.status();
}

// Prefix caching (wire version 8): a sequence opened on a cached block reads the rows another
// wrote and gives the same next token as computing them itself; the stage refuses to share a
// block not fully written, to let anyone write into a block being read, and to roll a reader's
// or a writer's table back into it.
TEST_F(PipelineStageTest, SharedPrefixBlocksAreReadOnlyAndComplete) {
  const std::vector<int32_t> prompt = {1, 450, 1217, 287, 263, 9};
  auto stage = NewStage();
  Batch a = Item(1, 0, prompt, {5, 2});  // block 5 complete (positions 0-3), block 2 half
  a.opened.push_back(Greedy(1));
  auto want = RunOne(*stage, std::move(a));
  ASSERT_TRUE(want.ok()) << want.status();
  // Sequence 2 starts on block 5 and computes positions 4-5 itself: the same next token.
  Batch b = Item(2, 4, {263, 9}, {7});
  b.opened.push_back(Greedy(2, {5}, {1, 450, 1217, 287}));
  auto got = RunOne(*stage, std::move(b));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->id, want->id);
  EXPECT_EQ(got->logprob, want->logprob);
  // Block 2 is not complete: nobody may start on it.
  Batch c = Item(3, 8, {1}, {0});
  c.opened.push_back(Greedy(3, {5, 2}, {1, 450, 1217, 287, 263, 9, 1, 1}));
  ExpectRefused(RunOne(*stage, std::move(c)), "cached KV block 2 does not hold a complete block of rows");
  // Nobody writes into block 5 while it is read, nor rolls back into it.
  Batch d = Item(4, 0, {1, 2}, {5});
  d.opened.push_back(Greedy(4));
  ExpectRefused(RunOne(*stage, std::move(d)), "KV block 5 is already held by sequence 1");
  Batch e = Item(1, 6, {3}, {});
  e.truncated.push_back({1, 2});
  ExpectRefused(RunOne(*stage, std::move(e)), "cannot be rolled back");
  Batch f = Item(2, 6, {3}, {});
  f.truncated.push_back({2, 3});
  ExpectRefused(RunOne(*stage, std::move(f)), "of its blocks a cached prefix");
  // Its writer gone, block 5 keeps its rows: a new sequence still starts on it; once no one
  // reads it, it may be claimed for writing again.
  Batch g = Item(5, 4, {263, 9}, {1});
  g.released.push_back(1);
  g.opened.push_back(Greedy(5, {5}, {1, 450, 1217, 287}));
  got = RunOne(*stage, std::move(g));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->id, want->id);
  Batch h = Item(6, 0, {1, 2}, {5});
  h.opened.push_back(Greedy(6));
  ExpectRefused(RunOne(*stage, std::move(h)), "is read by 2 sequence(s)");
  Batch k = Item(7, 0, {1, 2}, {5});
  k.released = {2, 5};
  k.opened.push_back(Greedy(7));
  EXPECT_TRUE(RunOne(*stage, std::move(k)).ok());
}

}  // namespace
}  // namespace accullm::pipeline
