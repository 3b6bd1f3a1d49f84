#include "monitoring/spec_decode_series.h"

#include <algorithm>

#include "prometheus/family.h"

namespace accullm::monitoring {

SpecDecodeSeries::SpecDecodeSeries(prometheus::Registry& registry, const std::string& model_name,
                                   int64_t max_draft_tokens) {
  const prometheus::Labels m{{"model_name", model_name}};
  auto counter = [&](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add(m);
  };
  drafts_ = counter("accullm_spec_decode_num_drafts_total", "Verification steps that carried a draft.");
  draft_tokens_ = counter("accullm_spec_decode_num_draft_tokens_total", "Draft tokens verified by the target model.");
  accepted_tokens_ =
      counter("accullm_spec_decode_num_accepted_tokens_total", "Draft tokens accepted (equal to the target's own).");
  auto& drafted_at = prometheus::BuildCounter()
                         .Name("accullm_spec_decode_num_draft_tokens_per_pos_total")
                         .Help("Verification steps whose draft reached this position (0-based).")
                         .Register(registry);
  auto& accepted_at = prometheus::BuildCounter()
                          .Name("accullm_spec_decode_num_accepted_tokens_per_pos_total")
                          .Help("Verification steps whose draft was accepted through this position (0-based).")
                          .Register(registry);
  for (int64_t i = 0; i < max_draft_tokens; ++i) {
    prometheus::Labels l = m;
    l["position"] = std::to_string(i);
    drafted_at_.push_back(&drafted_at.Add(l));
    accepted_at_.push_back(&accepted_at.Add(l));
  }
}

void SpecDecodeSeries::Step(int64_t drafted, int64_t accepted) {
  if (drafted <= 0) return;
  drafts_->Increment();
  draft_tokens_->Increment(static_cast<double>(drafted));
  accepted_tokens_->Increment(static_cast<double>(accepted));
  const int64_t n = std::min<int64_t>(drafted, static_cast<int64_t>(drafted_at_.size()));
  for (int64_t i = 0; i < n; ++i) {
    drafted_at_[static_cast<size_t>(i)]->Increment();
    if (i < accepted) accepted_at_[static_cast<size_t>(i)]->Increment();
  }
}

}  // namespace accullm::monitoring
