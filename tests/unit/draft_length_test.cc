// The draft length controller (speculative/draft_length.h): k follows the acceptance rate, and
// under the floor drafting pauses except for a probe token every kProbeInterval steps.
#include "speculative/draft_length.h"

#include <gtest/gtest.h>

namespace accullm::speculative {
namespace {

// Steps that drafted k tokens and had none accepted, until `d` pauses (at most 50).
int RejectUntilPaused(DraftLength& d) {
  int steps = 0;
  while (!d.paused() && steps < 50) {
    d.Update(d.Take(), 0);
    ++steps;
  }
  return steps;
}

TEST(DraftLength, FollowsTheAcceptanceRateWithinOneAndMax) {
  DraftLength d(4, /*adaptive=*/true, /*pause_below=*/0.0);
  EXPECT_EQ(d.Take(), 4);  // optimistic start: a = 0.8 → 4 + 1, capped at 4
  for (int i = 0; i < 30; ++i) d.Update(d.Take(), 0);
  EXPECT_FALSE(d.paused());
  EXPECT_EQ(d.Take(), 2) << "floor 0: every step drafts (ceil(a / (1 - a)) + 1 for a small positive rate)";
  for (int i = 0; i < 30; ++i) d.Update(d.Take(), d.next());
  EXPECT_EQ(d.Take(), 4);
}

TEST(DraftLength, PausesUnderTheFloorAndProbesOneTokenEveryIntervalSteps) {
  DraftLength d(4, true, 0.5);
  const int steps = RejectUntilPaused(d);
  ASSERT_TRUE(d.paused());
  EXPECT_EQ(steps, 3) << "a = 0.8 → 0.64 → 0.512 → 0.41: paused after the third rejected step";
  for (int round = 0; round < 3; ++round) {
    for (int64_t i = 1; i < DraftLength::kProbeInterval; ++i) EXPECT_EQ(d.Take(), 0) << "plain step " << i;
    EXPECT_EQ(d.Take(), 1) << "the probe of round " << round;
    d.Update(1, 0);  // rejected: stays paused
    EXPECT_TRUE(d.paused());
  }
}

TEST(DraftLength, AcceptedProbesResumeDrafting) {
  DraftLength d(4, true, 0.5);
  RejectUntilPaused(d);
  int probes = 0;
  while (d.paused() && probes < 20) {
    int64_t k = 0;
    while ((k = d.Take()) == 0) {
    }
    ASSERT_EQ(k, 1);
    d.Update(1, 1);
    ++probes;
  }
  EXPECT_FALSE(d.paused());
  EXPECT_LE(probes, 2) << "a = 0.41 → 0.53 after one accepted probe";
  EXPECT_GE(d.Take(), 2) << "drafting resumes with k from the rate";
}

TEST(DraftLength, AFixedLengthNeverPauses) {
  DraftLength d(3, /*adaptive=*/false, 0.5);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(d.Take(), 3);
    d.Update(3, 0);
  }
  EXPECT_FALSE(d.paused());
}

}  // namespace
}  // namespace accullm::speculative
