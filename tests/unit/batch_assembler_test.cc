// The coordinator's half of a micro-batch: which block ids the stages are told, and the
// sequence changes queued for the next batch in the order the stages apply them.
#include "pipeline/batch_assembler.h"

#include <gtest/gtest.h>

namespace accullm::pipeline {
namespace {

kernels::KvRowFormat Format() { return kernels::KvRowFormat{kernels::KvDType::kF32, 1, 4}; }

TEST(BatchAssemblerTest, ItemsCarryOnlyTheBlockIdsTheStagesLack) {
  model::KvBlockPool pool(0, Format(), 4, 8);
  model::KvCache cache(&pool, 32);
  ASSERT_TRUE(cache.Reserve(6).ok());
  BatchAssembler a(4);
  a.Open(SequenceSetup{7, {}, -1, {}, {}});
  Batch b = a.Take({1, 2, 3, 4, 5}, {ExecItem{7, &cache, 5, true}}, DType::kF32);
  ASSERT_EQ(b.opened.size(), 1u);
  ASSERT_EQ(b.items.size(), 1u);
  EXPECT_EQ(b.items[0].blocks, cache.blocks());  // positions [0, 5): both blocks
  EXPECT_EQ(cache.length(), 5);
  b = a.Take({6}, {ExecItem{7, &cache, 1, true}}, DType::kF32);
  EXPECT_TRUE(b.items[0].blocks.empty());  // position 5 is in the second block, told already
}

// A speculative rollback followed, before the next micro-batch, by the sequence's preemption
// (or cancellation): the stages drop released sequences before applying truncations, so a
// truncation of a released sequence would be refused ("truncation of unknown sequence") and
// fail the whole batch. The release makes it moot: it is not sent.
TEST(BatchAssemblerTest, ReleaseDropsAPendingTruncationOfTheSameSequence) {
  model::KvBlockPool pool(0, Format(), 4, 8);
  model::KvCache c7(&pool, 32), c8(&pool, 32);
  ASSERT_TRUE(c7.Reserve(6).ok());
  ASSERT_TRUE(c8.Reserve(6).ok());
  BatchAssembler a(4);
  a.Open(SequenceSetup{7, {}, -1, {}, {}});
  a.Open(SequenceSetup{8, {}, -1, {}, {}});
  (void)a.Take(std::vector<int32_t>(12, 1), {ExecItem{7, &c7, 6, true}, ExecItem{8, &c8, 6, true}}, DType::kF32);
  a.Truncate(7, 5);
  a.Truncate(8, 4);
  a.Release(7);
  Batch b = a.Take({}, {}, DType::kF32);
  EXPECT_EQ(b.released, std::vector<uint64_t>{7});
  ASSERT_EQ(b.truncated.size(), 1u);
  EXPECT_EQ(b.truncated[0].seq, 8u);
  EXPECT_EQ(b.truncated[0].length, 4);
}

}  // namespace
}  // namespace accullm::pipeline
