// A small dense matrix W [out, in] held as INT8 codes with one F32 step per row, times F32
// activation rows: y[r, o] = step[o] · Σ_i code[o, i] · x[r, i]. What the FFN guesser's wide
// `out` product (model/ffn_guesser.h: [2·inter, rank], read once per token and layer) runs on,
// at a quarter of F32's bytes and half of F16's: made at load from the F16 weights, so the
// pack's format does not change.
//
// The arithmetic is fixed, so every variant gives the same bits and a threshold computed at
// quantize time holds at run time on any CPU: per output, acc = fma(code_i, x_i, acc) for
// i = 0, 1, … in order from acc = +0, then y = acc · step (codes widen to float exactly). The
// SIMD variants run that chain in one lane per output (16 or 8 outputs per vector), never
// across lanes. A row's outputs depend on that row alone (batch invariance).
//
// Layout: outputs in blocks of 64 (out padded with zero rows), block b's codes [in, 64]: the
// 64 bytes of column i are outputs 64b … 64b + 63, so one cache line per column feeds 64
// independent chains.
#pragma once

#include <cstdint>
#include <vector>

#include "common/weight_memory.h"

namespace accullm::kernels {

inline constexpr int64_t kInt8ScaledRowsBlock = 64;

struct Int8ScaledRows {
  int64_t out = 0, in = 0;
  WeightVector<int8_t> codes;  // [blocks(), in, 64]
  std::vector<float> steps;    // [blocks() · 64]; 0 for padding rows
  int64_t blocks() const { return (out + kInt8ScaledRowsBlock - 1) / kInt8ScaledRowsBlock; }
  size_t bytes() const { return codes.size() + 4 * steps.size(); }
};

// From F16 weights [out, in] (finite): per row, step = max|w| / 127 and code = w / step rounded
// to nearest (ties to even), in [−127, 127]; an all-zero row has step 0 and codes 0.
Int8ScaledRows QuantizeInt8ScaledRows(const uint16_t* f16, int64_t out, int64_t in);

// y [n, w.out] (row stride w.out): outputs of blocks [block_begin, block_end) for the n rows of
// x [n, w.in]. Disjoint block ranges may run in parallel.
void Int8ScaledRowsForward(const Int8ScaledRows& w, const float* x, int64_t n, int64_t block_begin, int64_t block_end,
                           float* y);
void Int8ScaledRowsForwardScalar(const Int8ScaledRows& w, const float* x, int64_t n, int64_t block_begin,
                                 int64_t block_end, float* y);
// False (nothing written) when not built or not supported by this CPU.
bool Int8ScaledRowsForwardAvx512(const Int8ScaledRows& w, const float* x, int64_t n, int64_t block_begin,
                                 int64_t block_end, float* y);
bool Int8ScaledRowsForwardAvx2(const Int8ScaledRows& w, const float* x, int64_t n, int64_t block_begin,
                               int64_t block_end, float* y);

}  // namespace accullm::kernels
