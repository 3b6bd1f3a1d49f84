// The sampled layer-error series (quant/layer_drift_sampler.h), on whichever registry serves
// them: rank 0's without mpirun, each stage rank's own under mpirun.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace accullm::monitoring {

struct LayerErrorSample {
  int64_t layer = 0;
  std::string linear;
  double error = 0;
};

class LayerErrorSeries {
 public:
  LayerErrorSeries(prometheus::Registry& registry, const std::string& model_name);
  // accullm_layer_relative_error{layer, linear} = error; accullm_layer_drift_samples_total
  // advanced to `sampled_passes`.
  void Set(const std::vector<LayerErrorSample>& samples, uint64_t sampled_passes);

 private:
  std::string model_name_;
  prometheus::Family<prometheus::Gauge>* error_;
  prometheus::Counter* samples_;
  uint64_t counted_ = 0;
};

}  // namespace accullm::monitoring
