// A small dense matrix W [out, in] held as 8- or 4-bit integer codes with one F32 step per row,
// times F32 activation rows: y[r, o] = step[o] · Σ_i code[o, i] · x[r, i]. What the FFN
// guesser's wide `out` product (model/ffn_guesser.h: [2·inter, rank], read once per token and
// layer) runs on, made at load from the F16 weights, so the pack's format does not change: at
// 8 bits a quarter of F32's bytes and half of F16's, at 4 bits half of that again (the
// guesser's bytes are read every token beside a sparse FFN that reads ~half of its own).
//
// The arithmetic is fixed, so every variant gives the same bits and a threshold computed at
// quantize time holds at run time on any CPU, and a row's outputs depend on that row alone
// (batch invariance):
//  - 8 bits: per output, acc = fma(code_i, x_i, acc) for i = 0, 1, … in order from acc = +0,
//    then y = acc · step (codes widen to float exactly). The SIMD variants run that chain in
//    one lane per output (16 or 8 outputs per vector), never across lanes.
//  - 4 bits: the row x is quantized to INT8 first (QuantizeScaledRowsInput: one scale per row,
//    max|x| / 127), then per output an exact integer dot product, acc = Σ_i code_i · xq_i, and
//    y = (float(acc) · x_scale) · step. Integer sums have no order, so vpdpbusd, pmaddubsw and
//    the scalar loop agree; float FMAs over nibbles spent most of their time unpacking them
//    (the product then ran at ~6 GB/s, no faster than INT8 per output).
//
// Layout: outputs in blocks of 64 (out padded with zero rows).
//  - 8 bits: block b's codes [in, 64]: the 64 bytes of column i are outputs 64b … 64b + 63, so
//    one cache line per column feeds 64 independent chains.
//  - 4 bits: block b's bytes [groups = ⌈in / 8⌉, 64, 4]: in group g, output o's 4 bytes hold
//    the codes of columns 8g … 8g + 3 in their low nibbles and of 8g + 4 … 8g + 7 in their high
//    ones, each as code + 8 (nibbles are unsigned; 8, code 0, past `in`), so one cache line is
//    16 outputs' 32-bit lanes of two vpdpbusd.
#pragma once

#include <cstdint>
#include <vector>

#include "common/weight_memory.h"

namespace accullm::kernels {

inline constexpr int64_t kScaledRowsBlock = 64;

struct ScaledRows {
  int64_t out = 0, in = 0;
  int bits = 8;                // 8: codes in [−127, 127]; 4: codes in [−7, 7]
  WeightVector<int8_t> codes;  // [blocks(), column_bytes(), 64]
  std::vector<float> steps;    // [blocks() · 64]; 0 for padding rows
  int64_t blocks() const { return (out + kScaledRowsBlock - 1) / kScaledRowsBlock; }
  // Bytes of one output's codes.
  int64_t column_bytes() const { return bits == 8 ? in : 4 * ((in + 7) / 8); }
  size_t bytes() const { return codes.size() + 4 * steps.size(); }
};

// From F16 weights [out, in] (finite) at `bits` 8 or 4: per row, step = max|w| / qmax (qmax
// 127 or 7) and code = w / step rounded to nearest (ties to even), in [−qmax, qmax]; an
// all-zero row has step 0 and codes 0.
ScaledRows QuantizeScaledRows(const uint16_t* f16, int64_t out, int64_t in, int bits);

// The rows x [n, in] as the 4-bit product reads them: per row, scale = max|x| / 127 (0 for an
// all-zero row) and xq = x / scale rounded to nearest (ties to even), padded with zeros to
// whole groups of 8; `sum` = Σ xq (the nibbles' offset of 8 comes off as 8 · sum).
struct ScaledRowsInput {
  int64_t n = 0, stride = 0;  // stride: columns per row, a multiple of 8
  std::vector<int8_t> xq;     // [n, stride]
  std::vector<float> scale;   // [n]
  std::vector<int32_t> sum;   // [n]
};
void QuantizeScaledRowsInput(const float* x, int64_t n, int64_t in, ScaledRowsInput& q);

// y [n, w.out] (row stride w.out): outputs of blocks [block_begin, block_end) for the n rows of
// x [n, w.in]. Disjoint block ranges may run in parallel. 4-bit rows quantize x in every call
// (n · in values: the guesser's rank-wide rows, small against the codes).
void ScaledRowsForward(const ScaledRows& w, const float* x, int64_t n, int64_t block_begin, int64_t block_end,
                       float* y);
void ScaledRowsForwardScalar(const ScaledRows& w, const float* x, int64_t n, int64_t block_begin, int64_t block_end,
                             float* y);
// False (nothing written) when not built or not supported by this CPU.
bool ScaledRowsForwardAvx512(const ScaledRows& w, const float* x, int64_t n, int64_t block_begin, int64_t block_end,
                             float* y);
bool ScaledRowsForwardAvx2(const ScaledRows& w, const float* x, int64_t n, int64_t block_begin, int64_t block_end,
                           float* y);

}  // namespace accullm::kernels
