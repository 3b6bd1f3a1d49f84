// Low-bit linear by integer dot products: y = x · Wᵀ with x quantized to INT8 per weight
// group (int8_activations.h) and W's codes multiplied as they are, unsigned, by vpdpbusd
// (AVX-512 VNNI) or vpmaddubsw + vpmaddwd (AVX2). Per row o, group g:
//     d = (Σ_i q[o,i] · xq[i]) · 2^frac − zero[o,g] · Σ_i xq[i]        (int32, exact)
//     y = fma(float(d), scale[o,g] · (xscale[g] · 2^−frac), y)          (groups in order)
// where zero is the stored zero point (2^(bits−1) when symmetric) with `frac` fraction bits.
// The integer part is exact and the float part runs in one fixed order per (row, output), so
// every variant gives the same bits as the scalar reference, whatever the batch (n), the
// thread split (tiles) or the ISA: batch invariance by construction.
#pragma once

#include <cstdint>

#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/low_bit_tiles.h"
#include "kernels/low_bit_matrix.h"

namespace accullm::kernels {

// y[r · y_stride + o] for every row r of x and outputs o of tiles [tile_begin, tile_end)
// (o < m.out). `w` is TileLowBitMatrix(m); x.block must equal m.group. The SIMD variants read
// the tiles; the scalar level runs the reference on `m` itself.
void LowBitInt8Rows(const LowBitMatrix& m, const LowBitTiles& w, const Int8Activations& x, int64_t tile_begin,
                    int64_t tile_end, float* y, int64_t y_stride);

// The scalar reference, on the untiled matrix: outputs [o_begin, o_end).
void LowBitInt8RowsScalar(const LowBitMatrix& m, const Int8Activations& x, int64_t o_begin, int64_t o_end, float* y,
                          int64_t y_stride);

// The SIMD variants themselves, for tests and benchmarks (false: not built or not supported
// by this CPU; nothing written). LowBitInt8Rows picks one by ActiveIsa() (kernels/cpu/isa.h).
bool LowBitInt8RowsAvx2(const LowBitTiles& w, const Int8Activations& x, int64_t tile_begin, int64_t tile_end, float* y,
                        int64_t y_stride);
bool LowBitInt8RowsAvx512(const LowBitTiles& w, const Int8Activations& x, int64_t tile_begin, int64_t tile_end,
                          float* y, int64_t y_stride);

}  // namespace accullm::kernels
