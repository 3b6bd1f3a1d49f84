// The serving metrics (Prometheus text format, `accullm_` prefix). Names and meanings follow
// vLLM's (`vllm:time_to_first_token_seconds` → `accullm_time_to_first_token_seconds`, ...) so
// existing dashboards adapt by relabelling. Every series carries `model_name`.
//
// Thread safety: prometheus-cpp metrics are atomic; any thread may update them.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "monitoring/ffn_sparsity_series.h"
#include "monitoring/layer_error_series.h"
#include "monitoring/spec_decode_series.h"
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
  prometheus::Gauge& kv_cache_used_blocks() { return *kv_used_blocks_; }
  prometheus::Counter& num_preemptions_total() { return *preemptions_; }
  // Prefix caching (vLLM's prefix_cache_queries / _hits): tokens looked up, tokens found.
  prometheus::Counter& prefix_cache_queries_total() { return *prefix_queries_; }
  prometheus::Counter& prefix_cache_hits_total() { return *prefix_hits_; }

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
  // Every HTTP response, by endpoint (EndpointLabel of the request target) and status code.
  void HttpResponse(std::string_view endpoint, int status);
  // Seconds from a request's headers to its reply's last byte (streams included), by endpoint.
  void ObserveHttpLatency(std::string_view endpoint, double seconds);
  // Accuracy drift of a pack against its stored full-precision canaries (set at startup):
  // accullm_canary_kl_divergence and accullm_canary_top1_match (1/0), labelled by canary index.
  void SetCanary(int index, double kl, bool top1_match);
  // accullm_canary_passing: 1 when every canary is finite, agrees on top-1 and stays within
  // the KL threshold, else 0 (absent when the model has no canaries).
  void SetCanaryPassing(bool passing);
  // One round of canary checks done (accullm_canary_checks_total, and its time in
  // accullm_canary_last_check_timestamp_seconds).
  void CanaryChecked();

  // accullm_build_info{version, commit, isa, mpi, nccl, cuda} = 1.
  void SetBuildInfo(const std::map<std::string, std::string>& labels);
  // What is served: bytes of weights as stored, and the share of block-linear weights held in
  // low-bit codes (0 for a full-precision checkpoint), plus accullm_model_info{format, precision}.
  void SetModelInfo(double weight_bytes, double low_bit_fraction, const std::string& format,
                    const std::string& precision);

  // One pipeline stage as the coordinator sees it (under mpirun): up (1) until the executor
  // fails, and the seconds since its last message.
  void SetStage(int stage, bool up, double heartbeat_age_seconds);
  // Micro-batches launched into the pipeline and not yet answered.
  prometheus::Gauge& micro_batches_in_flight() { return *in_flight_; }

  // The sampled layer-error series (serve --reference without mpirun), created on first use.
  LayerErrorSeries& layer_errors();
  // The FFN sparsity series (a sparse pack served without mpirun), created on first use.
  FfnSparsitySeries& ffn_sparsity();

  // The speculative decoding series (serve with speculation on), created by the first call,
  // with per-position series for `max_draft_tokens` positions.
  SpecDecodeSeries& spec_decode(int64_t max_draft_tokens);

  // Runs at the start of every Serialize (a scrape): gauges read from elsewhere (the stages'
  // liveness) are set there, fresh, instead of on a timer.
  void set_before_scrape(std::function<void()> f);

  // The Prometheus text exposition of every series.
  std::string Serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::string model_name_;
  prometheus::Gauge *running_, *waiting_, *kv_usage_, *kv_free_blocks_, *kv_used_blocks_;
  prometheus::Counter *preemptions_, *prefix_queries_, *prefix_hits_, *prompt_tokens_, *generation_tokens_,
      *iterations_;
  prometheus::Histogram *ttft_, *itl_, *e2e_, *queue_time_, *iteration_tokens_;
  prometheus::Family<prometheus::Counter>* success_;
  prometheus::Family<prometheus::Counter>* rejected_;
  prometheus::Family<prometheus::Counter>* http_;
  prometheus::Family<prometheus::Gauge>* canary_kl_;
  prometheus::Family<prometheus::Gauge>* canary_top1_;
  prometheus::Family<prometheus::Histogram>* http_latency_;
  prometheus::Family<prometheus::Gauge>* build_info_;
  prometheus::Family<prometheus::Gauge>* model_info_;
  prometheus::Family<prometheus::Gauge>* stage_up_;
  prometheus::Family<prometheus::Gauge>* stage_heartbeat_age_;
  prometheus::Counter* canary_checks_ = nullptr;
  prometheus::Gauge* canary_last_check_ = nullptr;
  prometheus::Gauge *canary_passing_ = nullptr, *weight_bytes_, *low_bit_fraction_, *in_flight_;
  std::unique_ptr<LayerErrorSeries> layer_errors_;
  std::unique_ptr<FfnSparsitySeries> ffn_sparsity_;
  std::unique_ptr<SpecDecodeSeries> spec_decode_;
  mutable std::mutex scrape_mu_;  // one scrape at a time runs the hook
  std::function<void()> before_scrape_;
};

// The bounded `endpoint` label of a request target: its path when it is one of the server's
// routes, else "other" (a label per client-chosen path would let clients grow the series
// without bound).
std::string_view EndpointLabel(std::string_view target);

}  // namespace accullm::monitoring
