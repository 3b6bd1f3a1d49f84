// CPU linears over low-bit weights (kernels/low_bit_matrix.h: 3..8-bit group-wise codes):
// y = x · Wᵀ. A scalar reference sits beside the AVX2 path; the entry point dispatches at run
// time.
#pragma once

#include <cstdint>

#include "kernels/low_bit_matrix.h"

namespace accullm::kernels {

// y[r * y_stride + o] = sum_i x[r * in + i] * W[o, i] for r < n, o in [o_begin, o_end).
void LowBitLinearRows(const LowBitMatrix& m, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                      int64_t y_stride);
void LowBitLinearRowsScalar(const LowBitMatrix& m, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                            int64_t y_stride);

}  // namespace accullm::kernels
