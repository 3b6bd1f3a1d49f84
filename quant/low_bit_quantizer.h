// Group-wise low-bit (3..8-bit) weight quantizers, writing kernels/low_bit_matrix.h's format:
//  - kRtn: round to nearest, per group scale (and zero point when asymmetric).
//  - kGptq: OPTQ/GPTQ — columns quantized in order; each rounding error, weighted by the
//    inverse Hessian's Cholesky factor, is propagated into the columns not yet quantized
//    (1% dampening, lazy block updates of 128 columns).
//  - kGpfq: GPFQ — greedy path following: each column is quantized against the running
//    output residual of the columns before it (error feedback through H, without inverting it).
// Options shared by all: stochastic rounding (counter-based RNG, reproducible for a seed),
// outlier input channels kept exactly in FP16, and AXE: an L1 budget on each group's
// integer weights so that a signed P-bit accumulator cannot overflow for INT8 activations.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "kernels/low_bit_matrix.h"

namespace accullm::quant {

enum class QuantMethod { kRtn, kGptq, kGpfq };
absl::StatusOr<QuantMethod> ParseQuantMethod(const std::string& name);
const char* QuantMethodName(QuantMethod m);

struct QuantOptions {
  QuantMethod method = QuantMethod::kGptq;
  int bits = 4;  // code width, 3..8 (mixed-precision plans set it per matrix)
  int64_t group_size = 32;
  bool symmetric = false;
  bool stochastic = false;
  uint64_t seed = 0;
  double dampening = 0.01;  // fraction of the mean Hessian diagonal added to it
  bool search_grid = true;  // shrink each group's range where that lowers the rounding error
  // Asymmetric grids: fraction bits of the stored zero point (4: the offset moves in 1/16 of a
  // step, so the grid fits a group's range instead of snapping to multiples of the scale).
  // AXE and the naive bound need integer weights code − zero: they always use 0. Capped at
  // 8 − bits so the zero point (up to 2^bits − 1) keeps fitting its byte.
  int zero_fraction_bits = 4;
  // 16: an F16 step per group. 8: an 8-bit step per group relative to an F16 step per row
  // (0.25 + 16/in bits per weight instead of 0.5 at group 32). Not with AXE.
  int scale_bits = 16;
  bool act_order = false;    // GPTQ/GPFQ: columns in decreasing Hessian-diagonal order
  int accumulator_bits = 0;  // AXE: 0 = unconstrained; else signed accumulator width P
  int64_t tile = 0;          // AXE: inputs per inner accumulation tile (0 = the group)
  // The naive alternative to AXE (for comparison): limit every integer weight to |v| <= this
  // so that even the data-type worst case fits the accumulator. 0 = off.
  int max_code_magnitude = 0;
};

// One quantized [out, in] matrix: the low-bit matrix's arrays, owned, and its FP16 outlier
// columns. `format` holds the shape and encoding; its array pointers stay null here and
// `view()` points a copy at the vectors, so the struct copies and moves safely.
struct QuantizedMatrix {
  kernels::LowBitMatrix format;
  std::vector<uint8_t> codes;        // [out, in·bits/8]
  std::vector<uint16_t> scales;      // F16 [out, in/group] (16-bit steps)
  std::vector<uint8_t> scale_codes;  // [out, in/group] (8-bit steps) ...
  std::vector<uint16_t> row_scales;  // ... relative to F16 [out]
  std::vector<uint8_t> zeros;        // [out, in/group]; empty when symmetric
  std::vector<int32_t> outlier_cols;
  std::vector<uint16_t> outlier_weights;  // F16 [out, outlier_cols.size()]

  // The matrix over this struct's arrays (valid while it lives and its vectors keep their size).
  kernels::LowBitMatrix view() const;
  // Signed integer weight v = code - zero at (o, i) (0 for outlier columns); integer zero
  // points only (zero_frac_bits == 0), as AXE uses.
  int IntegerWeight(int64_t o, int64_t i) const;
  // What it occupies in a pack (codes, steps, zeros, outlier columns).
  int64_t StoredBytes() const;
};

// Largest sum of |v| per group that keeps every INT8 dot product (x in [-128, 127]) within a
// signed `bits`-bit accumulator: 128 · Σ|v| ≤ 2^(bits-1) - 1.
int64_t AxeL1Budget(int bits);

// The naive way to make a P-bit accumulator safe for a group of `group` INT8 products: shrink
// every weight's magnitude bound until 128 · group · |v| fits (0 when no width is small enough).
int NaiveMaxCodeMagnitude(int bits, int64_t group);

// Quantizes W [out, in] (row-major). `hessian` [in, in] (upper triangle used) is needed by
// GPTQ and GPFQ; RTN ignores it. `outlier_cols` (sorted) stay FP16.
absl::StatusOr<QuantizedMatrix> QuantizeMatrix(const float* weights, int64_t out, int64_t in,
                                               const std::vector<double>* hessian,
                                               const std::vector<int32_t>& outlier_cols, const QuantOptions& options,
                                               ThreadPool& pool);

}  // namespace accullm::quant
