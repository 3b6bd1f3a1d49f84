// Linears that read the same input, run in one pass over the thread pool: q/k/v read the
// attention norm's output, gate/up the MLP norm's. For INT8 low-bit linears that quantize
// their input alike, the input is quantized once and all their tiles are shared out in one
// ParallelFor (a decode step then makes 4 pool round trips per layer instead of 7, and
// quantizes 3 inputs instead of 7); gate/up also apply SiLU(gate)·up tile by tile while both
// are in cache. Anything else (dense layers, the exact path, different outlier channels)
// runs each linear's own Forward. Results are bit-identical to separate Forward calls: every
// output is computed by the same kernel over the same quantized input.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "common/thread_pool.h"
#include "model/linear.h"

namespace accullm::model {

struct LinearOutput {
  const LinearOp* op;
  float* y;  // [n, op->out_features()]
};

// y = op(x) for each entry; x is [n, in] (the same `in` for all).
void ForwardSameInput(std::initializer_list<LinearOutput> linears, const float* x, int64_t n, ThreadPool& pool);

// gate_out = SiLU(gate(x)) · up(x), using up_scratch [n, inter] for up(x).
void ForwardGateUpSilu(const LinearOp& gate, const LinearOp& up, const float* x, int64_t n, float* gate_out,
                       float* up_scratch, ThreadPool& pool);

}  // namespace accullm::model
