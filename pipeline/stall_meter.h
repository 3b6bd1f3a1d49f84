// Liveness checks judge a peer by how long it has been silent. That silence must not include
// time this process itself was not running (starved of CPU on an oversubscribed host, stopped,
// in a paused VM or a frozen cgroup): the peer's heartbeats then wait, unread, in the socket,
// and a check made the moment the process runs again would blame the peer for its own stall.
// With every rank of a job starved at once, each one would declare the others dead.
#pragma once

#include <algorithm>
#include <chrono>

namespace accullm::pipeline {

class StallMeter {
 public:
  using Clock = std::chrono::steady_clock;
  // `allowance`: the longest a look normally takes to come round again (poll + a heartbeat).
  explicit StallMeter(std::chrono::milliseconds allowance) : allowance_(allowance), last_(Clock::now()) {}

  // The time since the previous look beyond the allowance: how long this process was not
  // running (zero normally). Call it wherever the loop wakes up and before judging a peer.
  Clock::duration Look(Clock::time_point now) {
    const Clock::duration gap = now - last_;
    last_ = now;
    return gap > allowance_ ? gap - allowance_ : Clock::duration::zero();
  }

  // `last_heard` moved forward by `stalled`, never past `now`: the stall is not silence.
  static Clock::time_point Excuse(Clock::time_point last_heard, Clock::duration stalled, Clock::time_point now) {
    return std::min(now, last_heard + stalled);
  }

 private:
  Clock::duration allowance_;
  Clock::time_point last_;
};

}  // namespace accullm::pipeline
