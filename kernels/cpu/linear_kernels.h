// Dense linear kernels: y = x · Wᵀ with FP32 compute over F32/F16/BF16 weights stored
// row-major [out, in] (the Hugging Face layout). A scalar reference sits beside the SIMD
// version; the public entry point dispatches at run time on what the CPU supports.
#pragma once

#include <cstdint>

#include "common/dtype.h"

namespace accullm::kernels {

// For every input row r in [0, n) and output o in [o_begin, o_end):
//   y[r * y_stride + o] = sum_i x[r * in + i] * W[o, i]
// `w` points at W[0, 0]; its element type is `wtype` (F32, F16 or BF16).
void LinearRows(DType wtype, const void* w, int64_t in, const float* x, int64_t n,
                int64_t o_begin, int64_t o_end, float* y, int64_t y_stride);

// The scalar reference (also the fallback on CPUs without AVX2/FMA/F16C).
void LinearRowsScalar(DType wtype, const void* w, int64_t in, const float* x, int64_t n,
                      int64_t o_begin, int64_t o_end, float* y, int64_t y_stride);

// True when LinearRows uses the AVX2 path on this CPU.
bool LinearRowsUsesAvx2();

}  // namespace accullm::kernels
