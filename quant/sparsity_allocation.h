// `accullm quantize --sparsity auto`: how many FFN neurons each layer may skip. Layers differ
// widely in what skipping costs (on the fixture, the last block's KL at a share is 4-9x the
// second's), so one share for every layer wastes the budget on the sensitive ones. The search:
//  1. per layer alone, the cost (KL and top-1 against the source model) at shares 0.1, 0.2,
//     ... until that layer alone exceeds the whole budget;
//  2. greedy allocation: repeatedly raise the layer whose next share adds the least KL per
//     share skipped, while the summed single-layer KL increases stay within the budget (they
//     add up closely: docs/accuracy.md);
//  3. the allocation measured as a whole; when it breaks the budget (KL or top-1), the longest
//     prefix of the greedy raises that keeps it (binary search, each candidate measured).
// The measure is a callback (the pack evaluated on calibration text, or a test's function).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"

namespace accullm::quant {

struct SparsityCost {
  double kl = 0;    // mean KL against the source model
  double top1 = 0;  // top-1 agreement with the source model, 0..1
  double skipped = 0;  // share of FFN neurons x tokens skipped, 0..1
};

struct SparsityBudget {
  double max_kl = 0;    // the allocation's KL may not exceed this
  double min_top1 = 0;  // nor its top-1 agreement fall below this
};

struct SparsityAllocation {
  std::vector<double> targets;  // per layer, [0, 1); all 0 when nothing fits
  SparsityCost cost;            // measured for `targets` as a whole (the dense cost when all 0)
  int64_t measurements = 0;     // how many times `measure` ran
};

// Per-layer shares: measure(targets) runs the model with layer l skipping targets[l].
// `dense` is measure(all zeros), given by the caller. `step` and `max_share` bound the grid;
// `report`, when set, hears every measurement (for the command's table).
using SparsityMeasure = std::function<absl::StatusOr<SparsityCost>(const std::vector<double>& targets)>;
using SparsityReport = std::function<void(const char* phase, const std::vector<double>& targets,
                                          const SparsityCost& cost, bool within)>;
absl::StatusOr<SparsityAllocation> AllocateSparsity(int64_t layers, const SparsityCost& dense,
                                                    const SparsityBudget& budget, const SparsityMeasure& measure,
                                                    const SparsityReport& report = nullptr, double step = 0.1,
                                                    double max_share = 0.9);

}  // namespace accullm::quant
