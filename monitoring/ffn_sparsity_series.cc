#include "monitoring/ffn_sparsity_series.h"

namespace accullm::monitoring {

FfnSparsitySeries::FfnSparsitySeries(prometheus::Registry& registry, const std::string& model_name)
    : model_name_(model_name), neurons_(&prometheus::BuildCounter()
                                             .Name("accullm_ffn_neurons_total")
                                             .Help("FFN neurons x tokens through each layer (activation sparsity on).")
                                             .Register(registry)),
      skipped_(&prometheus::BuildCounter()
                    .Name("accullm_ffn_neurons_skipped_total")
                    .Help("Of those, the neurons skipped (|SiLU(gate)| at or under the layer's threshold).")
                    .Register(registry)),
      active_(&prometheus::BuildCounter()
                   .Name("accullm_ffn_recall_active_total")
                   .Help("Recall-sampled decode tokens: FFN neurons truly active (dense recompute; "
                         "--sparsity-recall-sample-rate).")
                   .Register(registry)),
      kept_active_(&prometheus::BuildCounter()
                        .Name("accullm_ffn_recall_kept_active_total")
                        .Help("Of those, the neurons the sparse FFN kept (recall = kept_active / active).")
                        .Register(registry)) {}

void FfnSparsitySeries::Set(const std::vector<FfnLayerCount>& counts) {
  for (const FfnLayerCount& c : counts) {
    if (c.layer < 0) continue;
    if (counted_.size() <= static_cast<size_t>(c.layer)) counted_.resize(static_cast<size_t>(c.layer) + 1);
    FfnLayerCount& before = counted_[static_cast<size_t>(c.layer)];
    const prometheus::Labels l{{"model_name", model_name_}, {"layer", std::to_string(c.layer)}};
    auto& neurons = neurons_->Add(l);
    auto& skipped = skipped_->Add(l);
    auto& active = active_->Add(l);
    auto& kept_active = kept_active_->Add(l);
    if (c.neurons > before.neurons) neurons.Increment(static_cast<double>(c.neurons - before.neurons));
    if (c.skipped > before.skipped) skipped.Increment(static_cast<double>(c.skipped - before.skipped));
    if (c.active > before.active) active.Increment(static_cast<double>(c.active - before.active));
    if (c.kept_active > before.kept_active)
      kept_active.Increment(static_cast<double>(c.kept_active - before.kept_active));
    before = c;
  }
}

}  // namespace accullm::monitoring
