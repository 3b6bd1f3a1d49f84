// Accumulator-aware quantization (AXE) checks: the exact worst case of every integer dot
// product an INT4 matrix can produce with INT8 activations (x in [-128, 127]).
//
// Accumulation model (multi-stage, per output channel and quantization group): the group's
// inputs are split into tiles of T; each tile's products are summed in a signed P-bit
// accumulator, and the tile sums of the group are added in a signed P-bit accumulator too.
// The group's integer sum is then scaled to float. A quantized matrix is safe for P bits when
// no tile sum and no running sum of tiles can leave [-2^(P-1), 2^(P-1) - 1] for any input.
#pragma once

#include <cstdint>

#include "quant/low_bit_quantizer.h"

namespace accullm::quant {

struct AccumulatorReport {
  int64_t channels = 0;
  int64_t overflowing_channels = 0;  // channels with some tile or running sum out of range
  int64_t worst_magnitude = 0;       // largest |partial sum| reachable anywhere
  int required_bits = 0;             // smallest P that would be safe for the whole matrix
};

AccumulatorReport CheckAccumulator(const QuantizedMatrix& m, int bits, int64_t tile);

}  // namespace accullm::quant
