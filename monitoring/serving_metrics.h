// The serving metrics (Prometheus text format, `accullm_` prefix). Names and meanings follow
// vLLM's (`vllm:time_to_first_token_seconds` → `accullm_time_to_first_token_seconds`, ...) so
// existing dashboards adapt by relabelling. Every series carries `model_name`.
//
// Thread safety: prometheus-cpp metrics are atomic; any thread may update them.
#pragma once

#include <memory>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace accullm::monitoring {

class ServingMetrics {
 public:
  explicit ServingMetrics(const std::string& model_name);

  // Scheduler state, set once per iteration.
  prometheus::Gauge& num_requests_running() { return *running_; }
  prometheus::Gauge& num_requests_waiting() { return *waiting_; }
  prometheus::Gauge& kv_cache_usage_perc() { return *kv_usage_; }  // fraction in [0, 1], as vLLM
  prometheus::Gauge& kv_cache_free_blocks() { return *kv_free_blocks_; }

  prometheus::Counter& prompt_tokens_total() { return *prompt_tokens_; }
  prometheus::Counter& generation_tokens_total() { return *generation_tokens_; }
  prometheus::Counter& iterations_total() { return *iterations_; }

  prometheus::Histogram& time_to_first_token_seconds() { return *ttft_; }
  prometheus::Histogram& inter_token_latency_seconds() { return *itl_; }
  prometheus::Histogram& e2e_request_latency_seconds() { return *e2e_; }
  prometheus::Histogram& request_queue_time_seconds() { return *queue_time_; }
  prometheus::Histogram& iteration_tokens() { return *iteration_tokens_; }

  // finished_reason: stop, length, abort (client gone or drained), error.
  void RequestFinished(const std::string& finished_reason);
  // reason: queue_full, draining, unauthorized, too_large, invalid.
  void RequestRejected(const std::string& reason);
  // Every HTTP response, by status code.
  void HttpResponse(int status);
  // Accuracy drift of a pack against its stored full-precision canaries (set at startup):
  // accullm_canary_kl_divergence and accullm_canary_top1_match (1/0), labelled by canary index.
  void SetCanary(int index, double kl, bool top1_match);

  // The Prometheus text exposition of every series.
  std::string Serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::string model_name_;
  prometheus::Gauge *running_, *waiting_, *kv_usage_, *kv_free_blocks_;
  prometheus::Counter *prompt_tokens_, *generation_tokens_, *iterations_;
  prometheus::Histogram *ttft_, *itl_, *e2e_, *queue_time_, *iteration_tokens_;
  prometheus::Family<prometheus::Counter>* success_;
  prometheus::Family<prometheus::Counter>* rejected_;
  prometheus::Family<prometheus::Counter>* http_;
  prometheus::Family<prometheus::Gauge>* canary_kl_;
  prometheus::Family<prometheus::Gauge>* canary_top1_;
};

}  // namespace accullm::monitoring
