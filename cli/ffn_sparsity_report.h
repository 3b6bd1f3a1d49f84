// FFN activation sparsity summed from the transformer's per-layer counts (model/transformer.h:
// FfnSparsityCounts): what eval reports for its evaluation and bench for its decode steps.
#pragma once

#include <cstdint>
#include <vector>

#include "model/transformer.h"

namespace accullm::cli {

// The share of neurons skipped and the recall of the truly active ones (1 where nothing is
// skipped), overall and per layer; `neurons` = neurons × tokens counted (0: none ran).
struct FfnSparsityReport {
  int64_t neurons = 0;
  double skipped = 0;
  double recall = 1;
  std::vector<double> layer_skipped, layer_recall;
};

FfnSparsityReport SparsityOf(const std::vector<model::FfnSparsityCounts>& counts);

}  // namespace accullm::cli
