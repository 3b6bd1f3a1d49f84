// How many tokens the next step drafts: k follows the running acceptance rate a (per drafted
// token, an exponential average of about the last five steps): about a / (1 - a) tokens are
// accepted before the first rejection, so k drafts one more than that, within [1, max]. It
// changes only the speed, never the tokens. Shared by the single-sequence decoder and the
// scheduler (one per sequence).
#pragma once

#include <cstdint>

namespace accullm::speculative {

class DraftLength {
 public:
  explicit DraftLength(int64_t max_tokens, bool adaptive = true);
  int64_t next() const { return k_; }
  int64_t max() const { return max_; }
  // After a step that drafted `drafted` (> 0) tokens and had `accepted` of them accepted.
  void Update(int64_t drafted, int64_t accepted);

 private:
  int64_t max_;
  bool adaptive_;
  double acceptance_ = 0.8;  // starts optimistic
  int64_t k_;
};

}  // namespace accullm::speculative
