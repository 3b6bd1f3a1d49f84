#include "speculative/draft_length.h"

#include <algorithm>
#include <cmath>

namespace accullm::speculative {

DraftLength::DraftLength(int64_t max_tokens, bool adaptive, double pause_below)
    : max_(std::max<int64_t>(0, max_tokens)), adaptive_(adaptive), pause_below_(adaptive ? pause_below : 0.0),
      k_(max_) {}

int64_t DraftLength::Take() {
  if (!paused() || max_ < 1) return k_;
  if (++paused_steps_ < kProbeInterval) return 0;
  paused_steps_ = 0;
  return 1;
}

void DraftLength::Update(int64_t drafted, int64_t accepted) {
  if (!adaptive_ || max_ < 1 || drafted < 1) return;
  // Tokens tested this step: the accepted ones and the first rejected one, if any.
  const int64_t tested = accepted + (accepted < drafted ? 1 : 0);
  const double rate = static_cast<double>(accepted) / static_cast<double>(tested);
  constexpr double kWeight = 0.2;  // about the last five steps
  acceptance_ = (1 - kWeight) * acceptance_ + kWeight * rate;
  const double expected_run = acceptance_ / std::max(1e-6, 1 - acceptance_);
  k_ = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(expected_run)) + 1, 1, max_);
}

}  // namespace accullm::speculative
