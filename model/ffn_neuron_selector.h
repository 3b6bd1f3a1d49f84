// The second source of an FFN's kept neurons: a predictor that reads the FFN input (the MLP
// RMSNorm's output) before the gate projection, so that the gate too is computed only for the
// neurons it keeps (Deja Vu, arXiv 2310.17157). The first source, CATS, needs the dense gate
// (|SiLU(gate_j)| > threshold, kernels/cpu/silu_mul_mask.h) and skips only up and down.
//
// Transformer::set_ffn_neuron_selector installs one. Per token the FFN then computes
//   kept = Select(x) → gate and up over kept rows → h_j = SiLU(g_j)·u_j (0 elsewhere) → down
// through the sparse kernels at decode (model/sparse_ffn.h) and as a mask over dense gate/up
// for a batch of several rows, with the same bits per row either way.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "common/thread_pool.h"

namespace accullm::model {

// Kept neurons of n rows back to back: row r's are neurons[row_begin[r] .. row_begin[r+1]).
struct FfnKeptSets {
  std::vector<int32_t> neurons;
  std::vector<int64_t> row_begin;  // [n + 1]

  int64_t rows() const { return row_begin.empty() ? 0 : static_cast<int64_t>(row_begin.size()) - 1; }
  const int32_t* row(int64_t r) const { return neurons.data() + row_begin[static_cast<size_t>(r)]; }
  int64_t count(int64_t r) const { return row_begin[static_cast<size_t>(r) + 1] - row_begin[static_cast<size_t>(r)]; }
};

class FfnNeuronSelector {
 public:
  virtual ~FfnNeuronSelector() = default;
  // The neurons of `layer`'s FFN to compute for each of the n rows of x ([n, hidden], the
  // FFN input after the MLP RMSNorm): out.row_begin gets n + 1 entries, each row's neurons
  // strictly ascending and < the intermediate size (the transformer checks, and fails the
  // forward pass with this error otherwise). A row's set must depend on that row of x alone
  // (batch invariance: a token's output never depends on its batch). Called on the forward
  // pass's thread, never inside a ParallelFor: it may use `pool`. Concurrent forward passes of
  // one model may call it at once. An error fails the forward pass.
  virtual absl::Status Select(int64_t layer, const float* x, int64_t n, ThreadPool& pool, FfnKeptSets& out) const = 0;
};

}  // namespace accullm::model
