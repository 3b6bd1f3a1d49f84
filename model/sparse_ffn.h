// One token's sparse SwiGLU FFN through the sparse kernels (kernels/cpu/sparse_ffn_kernels.h):
// what a decode step runs when the FFN skips neurons. Two sources of the kept neurons:
//  - CATS: the gate dense (its tiles), then kept = {j : |SiLU(g_j)| > threshold}, then up over
//    the kept rows only (with the product rule, then also h_j = +0 where |h_j| is at or below
//    its threshold: down skips those columns too);
//  - a predictor's list (model/ffn_neuron_selector.h), known before the gate: gate and up
//    both over the kept rows only.
// Then h_j = SiLU(g_j)·u_j for kept j (+0 elsewhere), and down reads only the strips of the
// neurons whose quantized h is nonzero. Every output has the bits of the masked dense path
// (dense gate and up, SiluMulMasked / SiluMulKept, down over the tiles) for the same token,
// which is what a batch of several rows runs: the sparse kernels equal the dense integer
// kernel over the same stored weights, outliers and bias are added by the same operations.
// Threads: gate/up split over 16-row units of the kept list, down over 128-output blocks.
// Where a token keeps so much that the sparse kernels would lose (kept share above
// SparseFfnMaxKeptShare()), that part runs over the dense tiles instead: the same bits.
//
// Memory: the sparse layouts are second copies of up and down (CATS) or of gate, up and down
// (a predictor; all three in one joint layout when gate and up share a format, a kept neuron's
// gate row, up row and down strip then one run of memory; after a dense gate, up's row and
// down's strip likewise) beside the tiles a batch of several rows runs
// (LowBitLinear::SparseRows, SparseColumns, SparseFfn, SparseUpDown).
#pragma once

#include <cstdint>
#include <optional>

#include "common/thread_pool.h"
#include "model/linear.h"
#include "model/low_bit_linear.h"

namespace accullm::model {

// Above this share of kept rows (gate/up) or nonzero neurons (down), the dense tiles are
// faster than the sparse kernels at the active ISA level (bench/sparse_ffn_bench.cc,
// docs/benchmarks.md): 0.75 at AVX-512, where a kept row costs ~1.3x a dense one (scalar:
// not measured, the same); none at AVX2, whose sparse kernels beat its dense decode kernel
// even at 100%.
double SparseFfnMaxKeptShare();

struct SparseFfnLinears {
  const LowBitLinear* gate = nullptr;
  const LowBitLinear* up = nullptr;
  const LowBitLinear* down = nullptr;
  // Gate and up share one format: a predictor's list reads gate, up and down from one joint
  // layout (LowBitLinear::SparseFfn) instead of two row layouts and a columns layout.
  bool joint = false;
  // After a dense gate (CATS, the product rule), up and down from one joint layout
  // (LowBitLinear::SparseUpDown) instead of up's rows and down's columns.
  bool up_down_joint = false;
};

// The layer's linears when the sparse kernels can run them: all three low-bit with INT8
// activations, gate and up quantizing their input alike, shapes that chain. Else nullopt
// (the masked dense path runs).
std::optional<SparseFfnLinears> SparseFfnLinearsOf(const LinearOp& gate, const LinearOp& up, const LinearOp& down);

// Builds the sparse layouts a decode step will read (up and down; with a predictor the joint
// layout, or gate's own rows when they cannot join).
void PrepareSparseFfn(const SparseFfnLinears& l, bool predicted, ThreadPool& pool);

// h [inter] = the masked SiLU(gate(x))·up(x) of one token x [hidden]. kept == null: CATS at
// `threshold`, then the product rule's test at `product_threshold` (kernels::
// kNoProductThreshold: none); else the predictor's kept[0 .. kept_count), strictly ascending,
// < inter. Returns the number of kept neurons.
int64_t SparseGateUp(const SparseFfnLinears& l, const float* x, const int32_t* kept, int64_t kept_count,
                     float threshold, float product_threshold, float* h, ThreadPool& pool);

// y [out] = down(h) for one token: down.Forward(h, 1, y)'s bits, reading only the strips of
// the neurons whose quantized h is nonzero (from the joint layout after a predictor's list).
void SparseDown(const SparseFfnLinears& l, bool predicted, const float* h, float* y, ThreadPool& pool);

}  // namespace accullm::model
