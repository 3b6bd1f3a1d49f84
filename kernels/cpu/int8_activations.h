// Activations quantized to INT8 for the integer-dot kernels (low_bit_int8_kernels.h): one
// scale per block of `block` columns of a row, the block being the weight group, so a group's
// integer dot product needs one activation scale and one weight scale. Symmetric, scale =
// block max / 127, |q| <= 127 (so −128 never appears: the AVX2 sign trick and negation stay
// exact). Channels marked in `exact` (the outlier channels a low-bit linear serves from FP16
// weights) get q = 0 and do not count towards a block's maximum.
//
// Rounding (ActQuantConfig, kernels/cpu/activation_quant.h):
//  - nearest (ties to even; the default): vectorized (AVX2) beside the scalar reference.
//  - stochastic: q = floor(t) + (u < t − floor(t)), t = x / scale, u uniform in [0, 1).
//    Identity: a row's codes must not depend on its batch, the thread count or the kernel,
//    so u cannot come from a per-call or per-row-index counter. It is drawn from the row
//    itself: u = UnitFloat24(SplitMix64(Int8RowKey(row, seed) + column)), where
//    Int8RowKey hashes the bits of all `in` floats of the row (exact channels included).
//    The same input row gives the same codes in any batch, at any position, in any call.
//    There is no per-linear id in the key: linears that read the same input (q/k/v, gate/up)
//    share one quantized input (model/linear_group.h) and must agree on it, and inputs of
//    different sites differ anyway. A different seed gives independent draws.
//  - error feedback (either rounding): channel i+1 quantizes x[i+1] + e_i, e_i the rounding
//    error of channel i (x + carry − q·scale), so every prefix sum of q·scale over a block
//    stays within about a step of the input's. The carry stays inside a block: the next block
//    has its own scale, possibly 100× finer, and a carry in its units would saturate codes.
//    Exact channels are skipped (the carry passes over them); a non-finite error carries 0.
// Stochastic rounding and error feedback are scalar code (the vectorized path is nearest's).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/activation_quant.h"

namespace accullm::kernels {

struct Int8Activations {
  int64_t rows = 0, in = 0, block = 0;
  std::vector<int8_t> q;      // [rows, in]
  std::vector<float> scales;  // [rows, in / block]: x ≈ q · scale
  std::vector<int32_t> sums;  // [rows, in / block]: Σ q over the block (the zero-point term)
  // [rows, in / block] or empty: Σ q per 16-bit lane of each block, for the AXE 16-bit
  // kernel (low_bit_axe16_kernels.h: Axe16LaneSums fills it; QuantizeInt8Blocks does not).
  std::vector<int32_t> lane_sums;

  const int8_t* row(int64_t r) const { return q.data() + r * in; }
  int64_t blocks() const { return in / block; }
};

// Quantizes x [rows, in] (in a multiple of block) into `out` (resized; reused across calls
// without allocating once large enough). `exact` is null or [in] flags.
void QuantizeInt8Blocks(const float* x, int64_t rows, int64_t in, int64_t block, const char* exact,
                        Int8Activations& out, const ActQuantConfig& mode = {});
void QuantizeInt8BlocksScalar(const float* x, int64_t rows, int64_t in, int64_t block, const char* exact,
                              Int8Activations& out, const ActQuantConfig& mode = {});

// The key of a row's stochastic draws: a seeded hash of the bits of its `in` floats.
uint64_t Int8RowKey(const float* row, int64_t in, uint64_t seed);

}  // namespace accullm::kernels
