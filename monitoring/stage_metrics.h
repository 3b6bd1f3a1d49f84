// A pipeline stage's own series (`serve --metrics-port P` under mpirun: served on P + the
// rank's index on its host), labelled model_name and stage. The stage's loop keeps plain atomic counters
// (pipeline::StageActivity); each scrape turns them into Prometheus series here, so the loop
// never takes a lock for metrics.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "monitoring/ffn_sparsity_series.h"
#include "monitoring/layer_error_series.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace accullm::monitoring {

// What a stage has done so far: cumulative totals and current levels, as read at a scrape.
struct StageSnapshot {
  int stage = -1;  // -1 until the coordinator's hello named it
  uint64_t batches = 0, rows = 0;
  double compute_seconds = 0, send_seconds = 0, idle_seconds = 0;
  uint64_t bytes_sent = 0, bytes_received = 0;
  int64_t kv_blocks_used = 0, kv_blocks_total = 0, sequences = 0;
  double coordinator_silence_seconds = 0;  // since the last message from rank 0
  // Sampled layer error (serve --reference): exported when `drift` is set.
  bool drift = false;
  std::vector<LayerErrorSample> layer_errors;
  uint64_t drift_samples = 0;
  // FFN sparsity (a sparse pack): exported when non-empty.
  std::vector<FfnLayerCount> ffn;
};

class StageMetrics {
 public:
  StageMetrics(const std::string& model_name, int rank);
  // Updates the series from `s` (counters advance by the difference from the last snapshot)
  // and returns the text exposition.
  std::string Render(const StageSnapshot& s);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::string model_name_;
  int rank_;
  std::mutex mu_;
  StageSnapshot last_;
  bool labelled_ = false;
  prometheus::Counter *batches_ = nullptr, *rows_ = nullptr, *compute_ = nullptr, *send_ = nullptr, *idle_ = nullptr,
                      *sent_ = nullptr, *received_ = nullptr;
  prometheus::Gauge *kv_used_ = nullptr, *kv_total_ = nullptr, *sequences_ = nullptr, *silence_ = nullptr,
                    *info_ = nullptr;
  std::unique_ptr<LayerErrorSeries> layer_errors_;
  std::unique_ptr<FfnSparsitySeries> ffn_sparsity_;
};

}  // namespace accullm::monitoring
