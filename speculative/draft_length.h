// How many tokens the next step drafts: k follows the running acceptance rate a (per drafted
// token, an exponential average of about the last five steps): about a / (1 - a) tokens are
// accepted before the first rejection, so k drafts one more than that, within [1, max].
// Below a floor (`pause_below`) drafting pauses: a draft token and the verification row it adds
// cost a share of a decode step (the draft model's step, the extra row), so one token drafted
// pays only when it is accepted more often than that share (K = 1 beats K = 0 iff
// a > c_draft + c_row); a paused sequence decodes plainly and drafts one probe token every
// kProbeInterval steps, so that a recovering rate resumes drafting. It changes only the speed,
// never the tokens. Shared by the single-sequence decoder and the scheduler (one per sequence).
#pragma once

#include <cstdint>

namespace accullm::speculative {

// Default floors: a draft model's token costs ~0.3 of a bandwidth-bound target step (an INT4
// pack of an F16 model) and its verification row ~0.2 more (docs/benchmarks.md: TinyLlama's
// 3-row pass against its decode step); prompt lookup drafts for free, so only the row counts.
inline constexpr double kDraftModelPauseBelow = 0.5;
inline constexpr double kNgramPauseBelow = 0.25;
inline constexpr double DefaultPauseBelow(bool prompt_lookup) {
  return prompt_lookup ? kNgramPauseBelow : kDraftModelPauseBelow;
}

class DraftLength {
 public:
  static constexpr int64_t kProbeInterval = 8;

  // pause_below = 0: never pause (every step drafts k >= 1 tokens).
  explicit DraftLength(int64_t max_tokens, bool adaptive = true, double pause_below = 0.0);
  // The draft length while drafting (before any pause).
  int64_t next() const { return k_; }
  int64_t max() const { return max_; }
  bool paused() const { return acceptance_ < pause_below_; }
  // The draft length of the step about to run: next(), or while paused 0, or 1 for a probe
  // every kProbeInterval paused steps. Call once per step.
  int64_t Take();
  // After a step that drafted `drafted` (> 0) tokens and had `accepted` of them accepted.
  void Update(int64_t drafted, int64_t accepted);

 private:
  int64_t max_;
  bool adaptive_;
  double pause_below_;
  double acceptance_ = 0.8;  // starts optimistic
  int64_t k_;
  int64_t paused_steps_ = 0;  // plain steps since the last probe
};

}  // namespace accullm::speculative
