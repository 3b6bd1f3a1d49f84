// FFN activation-sparsity series (packs made with quantize --sparsity, served with sparsity
// on): neurons through each layer's FFN and how many were skipped, on whichever registry
// serves them (rank 0's without mpirun, each stage rank's own under mpirun). The ratio is
// rate(skipped) / rate(neurons). With serve's --sparsity-recall-sample-rate, a sampled share of
// decode tokens also counts its truly active neurons and how many of them were kept: the
// guesser's (or CATS's) recall is rate(recall_kept_active) / rate(recall_active).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"

namespace accullm::monitoring {

struct FfnLayerCount {
  int64_t layer = 0;
  uint64_t neurons = 0;  // neurons × tokens through the layer's FFN so far
  uint64_t skipped = 0;  // of which masked (not computed)
  uint64_t active = 0;       // sampled tokens: neurons truly active (dense recompute above the active threshold)
  uint64_t kept_active = 0;  // of which kept
};

class FfnSparsitySeries {
 public:
  FfnSparsitySeries(prometheus::Registry& registry, const std::string& model_name);
  // Counters advanced to the cumulative counts given.
  void Set(const std::vector<FfnLayerCount>& counts);

 private:
  std::string model_name_;
  prometheus::Family<prometheus::Counter>* neurons_;
  prometheus::Family<prometheus::Counter>* skipped_;
  prometheus::Family<prometheus::Counter>* active_;
  prometheus::Family<prometheus::Counter>* kept_active_;
  std::vector<FfnLayerCount> counted_;
};

}  // namespace accullm::monitoring
