// The prefix cache's bookkeeping: chained keys over whole blocks, exact matches only (content
// and the chain, never the 64-bit key alone), references, last-used eviction.
#include "coordinator/prefix_cache.h"

#include <gtest/gtest.h>

#include <numeric>

namespace accullm::coordinator {
namespace {

std::vector<int32_t> Tokens(int n, int32_t first) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

TEST(PrefixCacheTest, FindsTheLongestCachedRunOfWholeBlocks) {
  PrefixCache c(1, 4);
  const std::vector<int32_t> t = Tokens(14, 100);  // blocks [100..103] [104..107] [108..111], 2 left over
  EXPECT_TRUE(c.Lookup(t, 10).empty());
  EXPECT_EQ(c.Insert(-1, absl::MakeConstSpan(t).subspan(0, 4), 7), 7);
  EXPECT_EQ(c.Insert(7, absl::MakeConstSpan(t).subspan(4, 4), 3), 3);
  EXPECT_EQ(c.size(), 2);
  EXPECT_EQ(c.evictable(), 0);  // the writer holds both
  EXPECT_EQ(c.Lookup(t, 10), (std::vector<int32_t>{7, 3}));
  EXPECT_EQ(c.Lookup(t, 1), (std::vector<int32_t>{7}));  // capped
  // Another second block after the same first one: a branch, found only by its own tokens.
  std::vector<int32_t> u = t;
  u[5] = 1;
  EXPECT_EQ(c.Lookup(u, 10), (std::vector<int32_t>{7}));
  // The same tokens in another place of the chain do not match: keys chain over the prefix.
  std::vector<int32_t> shifted(t.begin() + 4, t.end());
  EXPECT_TRUE(c.Lookup(shifted, 10).empty());
}

TEST(PrefixCacheTest, SameContentKeepsTheCachedBlock) {
  PrefixCache c(1, 4);
  const std::vector<int32_t> t = Tokens(4, 0);
  EXPECT_EQ(c.Insert(-1, t, 5), 5);
  EXPECT_EQ(c.Insert(-1, t, 6), 5);  // computed twice: 6 stays its writer's
  EXPECT_FALSE(c.Holds(6));
  EXPECT_EQ(c.Insert(9, t, 6), -1);              // a parent that is not cached: not offered
  EXPECT_EQ(c.Insert(-1, Tokens(3, 0), 6), -1);  // not a whole block
}

TEST(PrefixCacheTest, UnreferencedBlocksAreEvictedLeastRecentlyReleasedFirst) {
  PrefixCache c(1, 2);
  for (int32_t id = 0; id < 3; ++id) EXPECT_EQ(c.Insert(-1, Tokens(2, 10 * id), id), id);
  EXPECT_EQ(c.Evict(), -1);  // all held
  c.Unref(2);
  c.Unref(0);
  EXPECT_EQ(c.evictable(), 2);
  // A lookup takes block 2 back: no longer evictable.
  EXPECT_EQ(c.Lookup(Tokens(2, 20), 5), (std::vector<int32_t>{2}));
  EXPECT_EQ(c.evictable(), 1);
  c.Unref(1);
  c.Unref(2);
  EXPECT_EQ(c.Evict(), 0);
  EXPECT_EQ(c.Evict(), 1);
  EXPECT_EQ(c.Evict(), 2);
  EXPECT_EQ(c.Evict(), -1);
  EXPECT_EQ(c.size(), 0);
  EXPECT_TRUE(c.Lookup(Tokens(2, 0), 5).empty());
}

// A child whose parent was evicted is unreachable, even when the parent's block id comes back
// holding other content under the same chain position.
TEST(PrefixCacheTest, ChildOfAnEvictedParentNeverMatches) {
  PrefixCache c(1, 2);
  const std::vector<int32_t> t = {1, 2, 3, 4};
  EXPECT_EQ(c.Insert(-1, {1, 2}, 0), 0);
  EXPECT_EQ(c.Insert(0, {3, 4}, 1), 1);
  c.Unref(0);
  EXPECT_EQ(c.Evict(), 0);  // the child (1) is still referenced by its writer
  EXPECT_TRUE(c.Lookup(t, 2).empty());
  // Block id 0 reused for other content, then the original first block recomputed into 5.
  EXPECT_EQ(c.Insert(-1, {9, 9}, 0), 0);
  EXPECT_EQ(c.Insert(-1, {1, 2}, 5), 5);
  EXPECT_EQ(c.Lookup(t, 2), (std::vector<int32_t>{5}));  // not 1: its parent was another entry
}

}  // namespace
}  // namespace accullm::coordinator
