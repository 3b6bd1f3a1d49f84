#include "monitoring/stage_metrics.h"

#include "prometheus/text_serializer.h"

namespace accullm::monitoring {

StageMetrics::StageMetrics(const std::string& model_name, int rank)
    : registry_(std::make_shared<prometheus::Registry>()), model_name_(model_name), rank_(rank) {}

std::string StageMetrics::Render(const StageSnapshot& s) {
  std::lock_guard<std::mutex> lock(mu_);
  // The series exist once the stage knows its index (after the hello): a scrape before that
  // shows only accullm_stage_info with stage="" (loading).
  if (!labelled_ && s.stage >= 0) {
    const prometheus::Labels l{{"model_name", model_name_}, {"stage", std::to_string(s.stage)}};
    auto counter = [&](const char* name, const char* help) {
      return &prometheus::BuildCounter().Name(name).Help(help).Register(*registry_).Add(l);
    };
    auto gauge = [&](const char* name, const char* help) {
      return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry_).Add(l);
    };
    batches_ = counter("accullm_stage_batches_total", "Micro-batches this stage ran.");
    rows_ = counter("accullm_stage_rows_total", "Token rows (prefill and decode) this stage ran through its layers.");
    compute_ = counter("accullm_stage_compute_seconds_total", "Seconds this stage spent computing its layers.");
    send_ = counter("accullm_stage_transport_send_seconds_total",
                    "Seconds this stage spent handing its output to the transport (MPI or NCCL).");
    idle_ = counter("accullm_stage_transport_wait_seconds_total",
                    "Seconds this stage waited for its next message (no batch to run).");
    sent_ = counter("accullm_stage_transport_sent_bytes_total", "Bytes this stage sent over MPI.");
    received_ = counter("accullm_stage_transport_received_bytes_total", "Bytes this stage received over MPI.");
    kv_used_ = gauge("accullm_stage_kv_cache_used_blocks", "KV blocks held by this stage's live sequences.");
    kv_total_ = gauge("accullm_stage_kv_cache_total_blocks", "KV blocks in this stage's storage.");
    sequences_ = gauge("accullm_stage_sequences", "Sequences this stage holds KV rows for.");
    silence_ = gauge("accullm_stage_coordinator_silence_seconds",
                     "Seconds since this stage last heard from the coordinator (rank 0).");
    labelled_ = true;
  }
  if (info_ == nullptr) {
    info_ = &prometheus::BuildGauge()
                 .Name("accullm_stage_rank_info")
                 .Help("1, labelled with this process's MPI (world) rank.")
                 .Register(*registry_)
                 .Add({{"model_name", model_name_}, {"rank", std::to_string(rank_)}});
    info_->Set(1);
  }
  if (labelled_) {
    auto advance = [](prometheus::Counter* c, double now, double before) {
      if (now > before) c->Increment(now - before);
    };
    advance(batches_, static_cast<double>(s.batches), static_cast<double>(last_.batches));
    advance(rows_, static_cast<double>(s.rows), static_cast<double>(last_.rows));
    advance(compute_, s.compute_seconds, last_.compute_seconds);
    advance(send_, s.send_seconds, last_.send_seconds);
    advance(idle_, s.idle_seconds, last_.idle_seconds);
    advance(sent_, static_cast<double>(s.bytes_sent), static_cast<double>(last_.bytes_sent));
    advance(received_, static_cast<double>(s.bytes_received), static_cast<double>(last_.bytes_received));
    kv_used_->Set(static_cast<double>(s.kv_blocks_used));
    kv_total_->Set(static_cast<double>(s.kv_blocks_total));
    sequences_->Set(static_cast<double>(s.sequences));
    silence_->Set(s.coordinator_silence_seconds);
    if (s.drift) {
      if (layer_errors_ == nullptr) layer_errors_ = std::make_unique<LayerErrorSeries>(*registry_, model_name_);
      layer_errors_->Set(s.layer_errors, s.drift_samples);
    }
    if (!s.ffn.empty()) {
      if (ffn_sparsity_ == nullptr) ffn_sparsity_ = std::make_unique<FfnSparsitySeries>(*registry_, model_name_);
      ffn_sparsity_->Set(s.ffn);
    }
    last_ = s;
  }
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace accullm::monitoring
