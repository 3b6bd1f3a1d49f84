// What a running pipeline stage has done, as plain atomics its loop updates (RunPipelineStage)
// and any other thread reads (the stage's metrics endpoint): totals since start and current
// levels. Relaxed ordering: each value is a counter read on its own.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace accullm::pipeline {

struct StageActivity {
  std::atomic<int> stage{-1};  // set once the coordinator's hello names it
  std::atomic<uint64_t> batches{0}, rows{0};
  std::atomic<uint64_t> compute_us{0}, send_us{0}, wait_us{0};
  std::atomic<uint64_t> bytes_sent{0}, bytes_received{0};
  std::atomic<int64_t> kv_blocks_used{0}, kv_blocks_total{0}, sequences{0};
  // steady_clock time of the last message from the coordinator, in microseconds since its epoch.
  std::atomic<int64_t> last_coordinator_us{0};

  static int64_t NowUs() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace accullm::pipeline
