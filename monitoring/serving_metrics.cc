#include "monitoring/serving_metrics.h"

#include "prometheus/text_serializer.h"

namespace accullm::monitoring {

namespace {

using prometheus::Histogram;

// vLLM's bucket boundaries, so the same dashboards' quantiles mean the same thing.
const Histogram::BucketBoundaries kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,
                                                  0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0};
const Histogram::BucketBoundaries kItlBuckets = {0.001, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075,
                                                 0.1,   0.15,  0.2,  0.3,   0.4,  0.5,   0.75, 1.0,  2.5};
const Histogram::BucketBoundaries kLatencyBuckets = {0.01, 0.05, 0.1,  0.3,  0.5,  0.8,  1.0,  2.5,  5.0,
                                                     10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0};
const Histogram::BucketBoundaries kHttpBuckets = {0.001, 0.005, 0.01, 0.05, 0.1,  0.25, 0.5,
                                                  1.0,   2.5,   5.0,  10.0, 30.0, 60.0, 120.0};
const Histogram::BucketBoundaries kTokenBuckets = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};

}  // namespace

ServingMetrics::ServingMetrics(const std::string& model_name)
    : registry_(std::make_shared<prometheus::Registry>()), model_name_(model_name) {
  const prometheus::Labels m{{"model_name", model_name}};
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry_).Add(m);
  };
  auto counter = [&](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(*registry_).Add(m);
  };
  auto histogram = [&](const char* name, const char* help, const Histogram::BucketBoundaries& b) {
    return &prometheus::BuildHistogram().Name(name).Help(help).Register(*registry_).Add(m, b);
  };
  canary_kl_ =
      &prometheus::BuildGauge()
           .Name("accullm_canary_kl_divergence")
           .Help("KL(full precision || served) of the pack's canary prompts at the last position, checked at startup.")
           .Register(*registry_);
  canary_top1_ = &prometheus::BuildGauge()
                      .Name("accullm_canary_top1_match")
                      .Help("1 when the served model's top-1 next token equals the full-precision one for a canary.")
                      .Register(*registry_);
  running_ = gauge("accullm_num_requests_running", "Number of sequences in the running batch.");
  waiting_ = gauge("accullm_num_requests_waiting", "Number of sequences waiting to be admitted.");
  kv_usage_ = gauge("accullm_kv_cache_usage_perc", "KV-cache usage: fraction of blocks in use (1 = full).");
  kv_free_blocks_ = gauge("accullm_kv_cache_free_blocks", "KV-cache blocks on the free list.");
  kv_used_blocks_ = gauge("accullm_kv_cache_used_blocks", "KV-cache blocks held by sequences.");
  preemptions_ = counter("accullm_num_preemptions_total",
                         "Sequences preempted (KV blocks freed, recomputed on readmission) because the pool ran out.");
  prefix_queries_ = counter("accullm_prefix_cache_queries_total",
                            "Prefix cache: tokens looked up at admission (what each sequence prefills).");
  prefix_hits_ = counter("accullm_prefix_cache_hits_total",
                         "Prefix cache: tokens found cached at admission (their prefill skipped).");
  prompt_tokens_ = counter("accullm_prompt_tokens_total", "Prefill tokens processed.");
  generation_tokens_ = counter("accullm_generation_tokens_total", "Generation tokens produced.");
  iterations_ = counter("accullm_iterations_total", "Scheduler iterations (batched forward passes).");
  ttft_ =
      histogram("accullm_time_to_first_token_seconds", "Time from arrival to the first generated token.", kTtftBuckets);
  itl_ = histogram("accullm_inter_token_latency_seconds", "Time between consecutive generated tokens of a sequence.",
                   kItlBuckets);
  e2e_ = histogram("accullm_e2e_request_latency_seconds", "Time from arrival to the last token of a sequence.",
                   kLatencyBuckets);
  queue_time_ =
      histogram("accullm_request_queue_time_seconds", "Time a sequence waited before admission.", kLatencyBuckets);
  // vLLM calls this histogram iteration_tokens_total; a _total suffix is for counters only
  // (promtool check metrics refuses it), so the name drops it.
  iteration_tokens_ = histogram("accullm_iteration_tokens", "Tokens (prefill + decode) per iteration.", kTokenBuckets);
  http_latency_ = &prometheus::BuildHistogram()
                       .Name("accullm_http_request_duration_seconds")
                       .Help("Seconds from a request's headers to the last byte of its reply (streams included).")
                       .Register(*registry_);
  build_info_ =
      &prometheus::BuildGauge()
           .Name("accullm_build_info")
           .Help("1, labelled with the version, commit, kernel ISA level in use and the MPI/NCCL/CUDA builds.")
           .Register(*registry_);
  model_info_ = &prometheus::BuildGauge()
                     .Name("accullm_model_info")
                     .Help("1, labelled with the served weights' format (pack or checkpoint) and precision mix.")
                     .Register(*registry_);
  weight_bytes_ = gauge("accullm_model_weight_bytes", "Bytes of the served weights as stored.");
  low_bit_fraction_ = gauge("accullm_model_low_bit_weight_fraction",
                            "Share of the transformer blocks' linear weights held in low-bit codes (0-1).");
  stage_up_ = &prometheus::BuildGauge()
                   .Name("accullm_stage_up")
                   .Help("Pipeline stages (under mpirun), as the coordinator sees them: 1 alive, 0 failed.")
                   .Register(*registry_);
  stage_heartbeat_age_ = &prometheus::BuildGauge()
                              .Name("accullm_stage_heartbeat_age_seconds")
                              .Help("Seconds since the coordinator last heard from each pipeline stage.")
                              .Register(*registry_);
  in_flight_ = gauge("accullm_pipeline_micro_batches_in_flight",
                     "Micro-batches launched into the pipeline and not yet answered (0 without mpirun).");
  success_ = &prometheus::BuildCounter()
                  .Name("accullm_request_success_total")
                  .Help("Finished sequences, by finish reason (stop, length, abort, error).")
                  .Register(*registry_);
  rejected_ = &prometheus::BuildCounter()
                   .Name("accullm_requests_rejected_total")
                   .Help("Requests refused before any work, by reason.")
                   .Register(*registry_);
  // Every known reason starts at 0, so the series exist (and rate() works) before the first event.
  for (const char* reason : {"stop", "length", "abort", "error"})
    success_->Add({{"model_name", model_name}, {"finished_reason", reason}});
  for (const char* reason : {"invalid", "unauthorized", "too_large", "queue_full", "draining"})
    rejected_->Add({{"model_name", model_name}, {"reason", reason}});
  http_ = &prometheus::BuildCounter()
               .Name("accullm_http_responses_total")
               .Help("HTTP responses, by status code.")
               .Register(*registry_);
}

void ServingMetrics::RequestFinished(const std::string& finished_reason) {
  success_->Add({{"model_name", model_name_}, {"finished_reason", finished_reason}}).Increment();
}

void ServingMetrics::RequestRejected(const std::string& reason) {
  rejected_->Add({{"model_name", model_name_}, {"reason", reason}}).Increment();
}

void ServingMetrics::HttpResponse(std::string_view endpoint, int status) {
  http_->Add({{"model_name", model_name_}, {"endpoint", std::string(endpoint)}, {"code", std::to_string(status)}})
      .Increment();
}

void ServingMetrics::ObserveHttpLatency(std::string_view endpoint, double seconds) {
  http_latency_->Add({{"model_name", model_name_}, {"endpoint", std::string(endpoint)}}, kHttpBuckets).Observe(seconds);
}

void ServingMetrics::SetCanaryPassing(bool passing) {
  if (canary_passing_ == nullptr) {
    canary_passing_ = &prometheus::BuildGauge()
                           .Name("accullm_canary_passing")
                           .Help("1 when every canary of the pack passes its drift check, else 0.")
                           .Register(*registry_)
                           .Add({{"model_name", model_name_}});
  }
  canary_passing_->Set(passing ? 1.0 : 0.0);
}

void ServingMetrics::CanaryChecked() {
  if (canary_checks_ == nullptr) {
    const prometheus::Labels m{{"model_name", model_name_}};
    canary_checks_ = &prometheus::BuildCounter()
                          .Name("accullm_canary_checks_total")
                          .Help("Rounds of canary drift checks run through the live pipeline.")
                          .Register(*registry_)
                          .Add(m);
    canary_last_check_ = &prometheus::BuildGauge()
                              .Name("accullm_canary_last_check_timestamp_seconds")
                              .Help("Unix time of the last round of canary checks.")
                              .Register(*registry_)
                              .Add(m);
  }
  canary_checks_->Increment();
  canary_last_check_->SetToCurrentTime();
}

void ServingMetrics::SetBuildInfo(const std::map<std::string, std::string>& labels) {
  prometheus::Labels l(labels.begin(), labels.end());
  l["model_name"] = model_name_;
  build_info_->Add(l).Set(1.0);
}

void ServingMetrics::SetModelInfo(double weight_bytes, double low_bit_fraction, const std::string& format,
                                  const std::string& precision) {
  weight_bytes_->Set(weight_bytes);
  low_bit_fraction_->Set(low_bit_fraction);
  model_info_->Add({{"model_name", model_name_}, {"format", format}, {"precision", precision}}).Set(1.0);
}

void ServingMetrics::SetStage(int stage, bool up, double heartbeat_age_seconds) {
  const prometheus::Labels l{{"model_name", model_name_}, {"stage", std::to_string(stage)}};
  stage_up_->Add(l).Set(up ? 1.0 : 0.0);
  stage_heartbeat_age_->Add(l).Set(heartbeat_age_seconds);
}

LayerErrorSeries& ServingMetrics::layer_errors() {
  if (layer_errors_ == nullptr) layer_errors_ = std::make_unique<LayerErrorSeries>(*registry_, model_name_);
  return *layer_errors_;
}

FfnSparsitySeries& ServingMetrics::ffn_sparsity() {
  if (ffn_sparsity_ == nullptr) ffn_sparsity_ = std::make_unique<FfnSparsitySeries>(*registry_, model_name_);
  return *ffn_sparsity_;
}

SpecDecodeSeries& ServingMetrics::spec_decode(int64_t max_draft_tokens) {
  if (spec_decode_ == nullptr)
    spec_decode_ = std::make_unique<SpecDecodeSeries>(*registry_, model_name_, max_draft_tokens);
  return *spec_decode_;
}

void ServingMetrics::set_before_scrape(std::function<void()> f) {
  std::lock_guard<std::mutex> lock(scrape_mu_);
  before_scrape_ = std::move(f);
}

std::string ServingMetrics::Serialize() const {
  {
    std::lock_guard<std::mutex> lock(scrape_mu_);
    if (before_scrape_) before_scrape_();
  }
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

std::string_view EndpointLabel(std::string_view target) {
  const std::string_view path = target.substr(0, target.find('?'));
  for (std::string_view route :
       {"/v1/completions", "/v1/chat/completions", "/v1/models", "/healthz", "/readyz", "/metrics"}) {
    if (path == route) return route;
  }
  return "other";
}

void ServingMetrics::SetCanary(int index, double kl, bool top1_match) {
  const prometheus::Labels l{{"model_name", model_name_}, {"canary", std::to_string(index)}};
  canary_kl_->Add(l).Set(kl);
  canary_top1_->Add(l).Set(top1_match ? 1.0 : 0.0);
}

}  // namespace accullm::monitoring
