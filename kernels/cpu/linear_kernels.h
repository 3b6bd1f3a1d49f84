// Dense linear kernels: y = x · Wᵀ with FP32 compute over F32/F16/BF16 weights stored
// row-major [out, in] (the Hugging Face layout). A scalar reference sits beside the SIMD
// version; the public entry point dispatches at run time through kernels/cpu/isa.h.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/dtype.h"

namespace accullm::kernels {

// For every input row r in [0, n) and output o in [o_begin, o_end):
//   y[r * y_stride + o] = sum_i x[r * in + i] * W[o, i]
// `w` points at W[0, 0]; its element type is `wtype` (F32, F16 or BF16).
void LinearRows(DType wtype, const void* w, int64_t in, const float* x, int64_t n, int64_t o_begin, int64_t o_end,
                float* y, int64_t y_stride);

// The scalar reference (also what Isa::kScalar runs).
void LinearRowsScalar(DType wtype, const void* w, int64_t in, const float* x, int64_t n, int64_t o_begin, int64_t o_end,
                      float* y, int64_t y_stride);

// y = x · Wᵀ for rows [o_begin, o_end) of a compressed matrix: `dequantize(o, dst)` writes row
// o as float. A few rows go into cache-resident scratch, then the FP32 kernel runs on them, so
// memory traffic stays at the compressed size while the dot products run at full FMA speed.
// (INT4 and INT8 linears share it; their scalar references dequantize and dot row by row.)
template <typename DequantizeRow>
void DequantizedLinearRows(int64_t in, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                           int64_t y_stride, DequantizeRow dequantize) {
  constexpr int64_t kRows = 8;
  thread_local std::vector<float> scratch;
  if (scratch.size() < static_cast<size_t>(kRows * in)) scratch.resize(static_cast<size_t>(kRows * in));
  for (int64_t o0 = o_begin; o0 < o_end; o0 += kRows) {
    const int64_t rows = std::min(kRows, o_end - o0);
    for (int64_t k = 0; k < rows; ++k) dequantize(o0 + k, scratch.data() + k * in);
    LinearRows(DType::kF32, scratch.data(), in, x, n, 0, rows, y + o0, y_stride);
  }
}

// Scalar reference of the same: one dequantized row at a time, plain dot products.
template <typename DequantizeRow>
void DequantizedLinearRowsScalar(int64_t in, const float* x, int64_t n, int64_t o_begin, int64_t o_end, float* y,
                                 int64_t y_stride, DequantizeRow dequantize) {
  thread_local std::vector<float> row;  // per calling thread, grown once
  if (row.size() < static_cast<size_t>(in)) row.resize(static_cast<size_t>(in));
  for (int64_t o = o_begin; o < o_end; ++o) {
    dequantize(o, row.data());
    for (int64_t r = 0; r < n; ++r) {
      float acc = 0.f;
      for (int64_t i = 0; i < in; ++i) acc += x[r * in + i] * row[i];
      y[r * y_stride + o] = acc;
    }
  }
}

// True when LinearRows uses the AVX2 path (ActiveIsa() is kAvx2 or above).
bool LinearRowsUsesAvx2();

}  // namespace accullm::kernels
