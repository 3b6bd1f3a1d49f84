// Accuracy drift on a schedule: a pack's canary prompts (with the full-precision model's
// last-position logits, stored in the pack) replayed through the live scheduler and pipeline,
// the same path as every request (embedded or under mpirun), asking the last stage for the
// whole next-token distribution. Each check sets accullm_canary_kl_divergence,
// accullm_canary_top1_match, accullm_canary_passing and the check counters. A canary is one
// short prefill, queued like any request: it never holds traffic back for longer than that.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/scheduler.h"
#include "model/transformer.h"
#include "monitoring/serving_metrics.h"

namespace accullm::coordinator {

struct Canary {
  std::string prompt;
  std::vector<int32_t> ids;
  std::vector<float> logits;  // full precision, last prompt position [vocab]
};

struct CanaryOutcome {
  double kl = 0;            // KL(full precision || served); +Inf when anything is not finite
  bool top1_match = false;  // the same most likely next token
  bool finite = true;
};

// The canaries a pack stores (empty for a checkpoint). Reads only their logits tensors.
absl::StatusOr<std::vector<Canary>> LoadCanaries(const model::Transformer& model);

// Compares the served distribution, given as (id, log-probability) pairs covering the
// vocabulary (what a sequence with logprobs = vocab returns), with the full-precision logits.
CanaryOutcome CompareWithReference(const std::vector<float>& reference_logits,
                                   const std::vector<std::pair<int32_t, float>>& served);

class CanaryMonitor {
 public:
  CanaryMonitor(Scheduler& scheduler, std::vector<Canary> canaries, int64_t vocab, double kl_threshold,
                monitoring::ServingMetrics& metrics);
  ~CanaryMonitor();  // stops

  // Runs every canary once now and waits for the answers (at most `timeout_s`); sets the
  // metrics and logs each result. Returns whether every canary passed.
  absl::StatusOr<bool> CheckOnce(double timeout_s = 120);
  // Then every `interval_s` seconds on a thread of its own, until Stop.
  void StartPeriodic(double interval_s);
  void Stop();

 private:
  Scheduler& scheduler_;
  std::vector<Canary> canaries_;
  int64_t vocab_;
  double kl_threshold_;
  monitoring::ServingMetrics& metrics_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
  std::vector<int> last_passing_;  // per canary: -1 unknown, 0 failing, 1 passing (log on change)
};

}  // namespace accullm::coordinator
