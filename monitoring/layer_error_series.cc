#include "monitoring/layer_error_series.h"

namespace accullm::monitoring {

LayerErrorSeries::LayerErrorSeries(prometheus::Registry& registry, const std::string& model_name)
    : model_name_(model_name),
      error_(&prometheus::BuildGauge()
                  .Name("accullm_layer_relative_error")
                  .Help("Sampled ||served - full precision|| / ||full precision|| of each linear's output (moving "
                        "average over sampled tokens; serve --reference).")
                  .Register(registry)),
      samples_(&prometheus::BuildCounter()
                    .Name("accullm_layer_drift_samples_total")
                    .Help("Tokens whose layers were recomputed with the full-precision weights.")
                    .Register(registry)
                    .Add({{"model_name", model_name}})) {}

void LayerErrorSeries::Set(const std::vector<LayerErrorSample>& samples, uint64_t sampled_passes) {
  for (const LayerErrorSample& s : samples)
    error_->Add({{"model_name", model_name_}, {"layer", std::to_string(s.layer)}, {"linear", s.linear}}).Set(s.error);
  if (sampled_passes > counted_) {
    samples_->Increment(static_cast<double>(sampled_passes - counted_));
    counted_ = sampled_passes;
  }
}

}  // namespace accullm::monitoring
