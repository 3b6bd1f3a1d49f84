// Sparse FFN kernels for decode (one activation row): gate and up only for the kept neurons,
// down reading only the kept neurons' weights, each giving the bits of the dense integer
// kernel (low_bit_int8_kernels.h) over the same stored weights:
//   - gate/up: y[k] for kept row kept[k] equals LowBitInt8Rows' output for that row on the
//     same Int8Activations (x.block = group);
//   - down: y equals LowBitInt8Rows' output on x = QuantizeInt8Blocks(h masked: +0.0f at
//     skipped neurons). A neuron whose code is 0 (every skipped one, and kept ones that round
//     to 0) adds exactly 0 to the exact int32 group sums, so its strip is not read; each
//     (output, group) then gets the dense epilogue, in group order. A group whose codes are
//     all 0 has d = 0, and fma(0, factor, acc) is acc + 0.f for a finite factor ≥ 0: the
//     kernels skip its steps and zeros too and add +0.f once instead (which only turns −0.f
//     into +0.f, as the dense fma would), unless a step or activation scale could make the
//     factor non-finite (then the group runs the dense epilogue).
// Layouts: sparse_ffn_layouts.h. Code widths 3–8 bits (≤ 4 by nibbles), symmetric or zero
// points, F16 or 8-bit steps: whatever LowBitTilesRefusal accepts. Outlier columns and bias
// are not here: the caller adds them (LowBitLinear::AddOutliersAndBias), and quantizes x with
// its outlier channels marked exact, as the dense path does.
//
// Variants: a scalar reference (any CPU), AVX2 and AVX-512 VNNI, all bit-identical, any group
// of whole words (a multiple of 8 columns).
// Gate/up, AVX-512: batches of 16 kept rows. Each row's lines, read in order, multiplied by the
// activations arranged to match (vpdpbusd) leave whole group sums, a lane per group (the
// layout puts a group's words at one lane of successive lines); each group's integer term
// (zero · Σx as one vpdpwssd against the step-and-zero word) and float factor are formed there,
// then both are transposed to a lane per row and accumulated with one fma per group, in
// group order: the tiles' epilogue. Four rows at a time, from four streams (quarters of the
// kept list, each walked in order), the next row of each stream fetched by software; a
// batch's transposition runs in slices between the next batch's rows, so that weight lines
// are requested all along. Rows in L2 (bench BM_RowsInL2, every row kept): a kept row costs
// 1.76x a dense row, software prefetches included (2.1–2.35x before 2026-12-02: the epilogue
// recomputed each row's addresses per block, and GCC 12 wrapped every vpdpbusd intrinsic in
// two register copies, dot_bytes_avx512.h). From memory the
// kernels are bound by how fast scattered runs stream in: on the 2-core VM of 2026-12-02,
// ~15 GB/s for 3.4 KB runs and ~12 GB/s for separate 2.4 KB and 1 KB ones, against ~30 GB/s
// sequential. So a predictor's kept neurons are read from the joint layout (gate row, up row,
// down strip: one run, sparse_ffn_layouts.h), whose strips down then finds in the caches:
// at 50% kept with the auto-rank guesser the whole FFN runs 1.35–1.74x faster than dense
// (median 1.56), against 0.99–1.39x (1.22) from separate layouts, dense and sparse passes
// paired (bench/sparse_ffn_bench BM_FfnSpeedup; docs/benchmarks.md, "The joint FFN layout").
// Earlier figures (1.76–1.79x without a guesser) were measured with sparse passes back to
// back, partly from the L3.
// How much of that a machine gives depends on how it streams scattered runs: on a Sapphire
// Rapids VM (2026-12-02, evening) the same measure gave 1.16–1.24x at 50% and 1.65–1.71x at
// 70% skipped, sparse down no faster than dense down from memory (docs/benchmarks.md, "The
// sparse FFN on a Sapphire Rapids VM"). There even reads alone, in the two phases these kernels
// read (rows, then strips), gain only 1.43-1.52x at 50% (bench BM_FfnReadBound; whole units
// read once 1.76-1.82x): docs/benchmarks.md, "What memory allows the sparse FFN".
// Down, AVX-512: per group, eight nonzero neurons per pass; their strips' bytes interleaved
// four by four (unpack epi8/epi16) into dwords of one output's four codes, vpdpbusd against
// the four activation codes, int32 sums kept in L1 for the thread's outputs; at ≤ 4 bits a
// byte's two outputs come from one sum over whole bytes and one over the high nibbles (one
// mask per quad), and zero · Σx is one vpdpwssd where Σx fits 16 bits.
// AVX2: the same schemes at 256 bits with vpmaddubsw + vpmaddwd for the integer dots (exact:
// codes ≤ 127 times |q| ≤ 127; 8-bit codes split in two nibbles): gate/up 8 kept rows per
// batch, 8 groups per transposition, down eight neurons per pass (two quads, whose 16-bit
// pairs add before one widening at ≤ 4 and 8 bits). Faster than the dense AVX2 decode kernel
// even with every row kept.
// Threads: the caller (model/sparse_ffn.h) splits gate/up over ranges of the kept list
// (multiples of 16 waste no padding rows) and down over a few ranges of its 128-output blocks
// (every call walks the whole nonzero list, so small ranges repeat that work).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/sparse_ffn_layouts.h"

namespace accullm::kernels {

// ---- Gate / up ----

// y[k] = row kept[k]'s output for k in [k_begin, k_end), on activation row 0 of x (x.rows is
// 1 at decode; x.block == w.group). kept[k] < w.out, any order.
void SparseRowsInt8(const SparseRowsLayout& w, const Int8Activations& x, const int32_t* kept, int64_t k_begin,
                    int64_t k_end, float* y);
void SparseRowsInt8Scalar(const SparseRowsLayout& w, const Int8Activations& x, const int32_t* kept, int64_t k_begin,
                          int64_t k_end, float* y);
// False (nothing written) when not built or not supported by this CPU.
bool SparseRowsInt8Avx512(const SparseRowsLayout& w, const Int8Activations& x, const int32_t* kept, int64_t k_begin,
                          int64_t k_end, float* y);
bool SparseRowsInt8Avx2(const SparseRowsLayout& w, const Int8Activations& x, const int32_t* kept, int64_t k_begin,
                        int64_t k_end, float* y);

// Gate and up of kept neurons from a pair layout (MakeSparsePairRows): gate[k] and up[k] are
// gate's and up's outputs for neuron kept[k], k in [k_begin, k_end), the bits SparseRowsInt8
// gives on the separate layouts. gate == nullptr: up only (CATS: the gate ran dense). The
// kept rows 2j, 2j + 1 go to the row kernel as one list, so each kept neuron is read as one
// contiguous run of both rows, in the same stream.
void SparsePairRowsInt8(const SparseRowsLayout& pair, const Int8Activations& x, const int32_t* kept, int64_t k_begin,
                        int64_t k_end, float* gate, float* up);
void SparsePairRowsInt8Scalar(const SparseRowsLayout& pair, const Int8Activations& x, const int32_t* kept,
                              int64_t k_begin, int64_t k_end, float* gate, float* up);
bool SparsePairRowsInt8Avx512(const SparseRowsLayout& pair, const Int8Activations& x, const int32_t* kept,
                              int64_t k_begin, int64_t k_end, float* gate, float* up);
bool SparsePairRowsInt8Avx2(const SparseRowsLayout& pair, const Int8Activations& x, const int32_t* kept,
                            int64_t k_begin, int64_t k_end, float* gate, float* up);

// ---- Down ----

// The neurons whose activation code is nonzero in row 0 of x, per group: what down reads.
// Made once per token and shared by the threads.
struct SparseNeurons {
  std::vector<int32_t> neurons;      // ascending
  std::vector<int32_t> group_begin;  // [groups + 1]: group g's neurons are [begin[g], begin[g+1])
};
void FindNonzeroNeurons(const Int8Activations& x, SparseNeurons& out);

// y[o] for the outputs o < w.out of blocks [block_begin, block_end) (128 outputs each), on
// activation row 0 of x (the quantized masked h; x.block == w.group) whose nonzero codes
// `nonzero` lists.
void SparseDownInt8(const SparseColumnsLayout& w, const Int8Activations& x, const SparseNeurons& nonzero,
                    int64_t block_begin, int64_t block_end, float* y);
void SparseDownInt8Scalar(const SparseColumnsLayout& w, const Int8Activations& x, const SparseNeurons& nonzero,
                          int64_t block_begin, int64_t block_end, float* y);
bool SparseDownInt8Avx512(const SparseColumnsLayout& w, const Int8Activations& x, const SparseNeurons& nonzero,
                          int64_t block_begin, int64_t block_end, float* y);
bool SparseDownInt8Avx2(const SparseColumnsLayout& w, const Int8Activations& x, const SparseNeurons& nonzero,
                        int64_t block_begin, int64_t block_end, float* y);

}  // namespace accullm::kernels
