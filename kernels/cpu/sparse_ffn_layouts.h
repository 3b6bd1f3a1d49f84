// The layouts the sparse FFN kernels read (sparse_ffn_kernels.h): copies of a LowBitMatrix
// (same codes, steps and zero points, so the same products as the dense tiles) arranged so
// that skipping an FFN neuron skips its bytes.
//
// Gate and up (rows = neurons): the dense tiles interleave 16 rows per 64-byte chunk, so a
// skipped row saves no byte there. Here every row's codes are contiguous, as 32-bit words
// (codes of at most 4 bits: one word per 8 columns c..c+7, byte j holding column c+j in its low
// nibble and c+4+j in its high one — the tiles' nibble order; 5 to 8 bits: one word per 4
// columns, byte j = column c+j), a group being `group_words` words. The words are group-major
// across lines: the row's groups are taken 16 at a time (a block; the last one padded with zero
// groups), and line j of block b (16 words, one cache line) holds word j of each of the block's
// groups, group 16b + p at word p. So a vector multiply-add over a block's lines accumulates
// whole group sums, one lane per group, with no reduction across lanes; only the 16x16
// transposition into one lane per row remains (sparse_ffn_kernels.cc). A kept row costs exactly
// its lines. Its steps and zero points follow its codes, as bytes: first every group's step
// (F16, 2 bytes; or the 8-bit step code, 1 byte), then every group's zero byte (only with zero
// points), each for the padded groups (a multiple of 16), the run padded to whole lines. So a
// block's 16 steps are one 32- (or 16-) byte load and its zeros one 16-byte load, and a row
// pays what the tiles store per group (at 4 bits g32 and 2048 columns: 1024 bytes of codes,
// 128 of steps, 64 of zeros: 19 lines; groups not a multiple of 16 pay their last block's
// padding too, e.g. 28 groups are stored as 32). (Until 2026-12-02 a group's step and zero
// shared one 32-bit word: 256 bytes a row instead of 192, 5% more per kept row at that shape.)
// Row `out` is all zero: the padding row a short batch of kept rows runs (its result is dropped).
//
// Down (reduction over neurons): neuron-major. Neuron j's codes for every output i form one
// contiguous strip (out rounded up to 128 outputs: 64 bytes per 128 outputs at ≤ 4 bits, 128
// bytes at 5–8 bits), so a skipped neuron is a skipped strip (1 KB at 4 bits for 2048
// outputs). Groups stay as in the dense pack: `group` consecutive neurons per output row, the
// same steps and zero points, stored group-major ([groups, out_padded]) for vector loads.
// Within every 64 outputs s·64 .. s·64+63 (a segment), output 16k + 4L + m sits at byte
// position p = 16L + 4k + m of the segment's 64 bytes: then interleaving four strips' bytes
// with unpack{lo,hi}_epi8/epi16 (which work per 128-bit lane L) gives dwords holding one
// output's four codes, in natural output order. At ≤ 4 bits a 64-byte block holds two
// segments, the first in the low nibbles, the second in the high ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/weight_memory.h"
#include "kernels/low_bit_matrix.h"

namespace accullm::kernels {

// ---- Gate / up: row-granular ----

struct SparseRowsLayout {
  int64_t out = 0, in = 0, group = 0;
  int bits = 4;
  int zero_frac_bits = 0;  // 0 when symmetric
  bool has_zeros = false;
  bool has_scale_codes = false;
  int64_t row_words = 0;    // code words per row: row_blocks() · 16 · group_words()
  int64_t meta_stride = 0;  // groups padded to whole blocks: row_blocks() · 16
  int64_t meta_words = 0;   // words of steps and zeros per row, whole lines
  int64_t row_stride = 0;   // row_words + meta_words
  // Rows come in units of 2^unit_shift rows, unit_stride words apart: one row (a matrix's own
  // layout, unit_stride = row_stride) or a pair (gate's row, then up's), followed in a joint
  // FFN layout by down's strip of the same neuron (SparseFfnLayouts below: then a unit of one
  // row is longer than the row).
  int unit_shift = 0;
  int64_t unit_stride = 0;
  // [out >> unit_shift units, then one row]: per row its code words, then its steps and zero
  // bytes, so a kept row is one contiguous run of lines. Row `out` (the last) is all zero.
  WeightVector<uint32_t> words;
  std::vector<float> row_scales;  // [out + 1] with scale codes (F16 widened: exact), else empty

  int64_t groups() const { return in / group; }
  bool nibbles() const { return bits <= 4; }
  int64_t chunk_columns() const { return nibbles() ? 8 : 4; }
  int64_t group_words() const { return group / chunk_columns(); }
  int64_t row_blocks() const { return (groups() + 15) / 16; }  // blocks of 16 groups
  // The index in a row of group g's word j (j < group_words()).
  int64_t word_index(int64_t g, int64_t j) const { return ((g / 16) * group_words() + j) * 16 + g % 16; }
  const uint32_t* row(int64_t r) const {
    return words.data() + (r >> unit_shift) * unit_stride + (r & ((int64_t{1} << unit_shift) - 1)) * row_stride;
  }
  uint32_t* mutable_row(int64_t r) { return const_cast<uint32_t*>(row(r)); }
  int step_bytes() const { return has_scale_codes ? 1 : 2; }
  // Bytes from a row's first code word to its steps and to its zero bytes (the same for every row).
  int64_t steps_offset() const { return 4 * row_words; }
  int64_t zeros_offset() const { return steps_offset() + step_bytes() * meta_stride; }
  // Row r's steps: F16 (read as uint16_t) or 8-bit codes, [meta_stride].
  const uint8_t* row_steps(int64_t r) const { return reinterpret_cast<const uint8_t*>(row(r)) + steps_offset(); }
  // Row r's zero bytes, [meta_stride] (only with has_zeros).
  const uint8_t* row_zeros(int64_t r) const { return reinterpret_cast<const uint8_t*>(row(r)) + zeros_offset(); }
  size_t bytes() const { return 4 * words.size() + 4 * row_scales.size(); }
};

// Sized and zeroed (the padding row included), then rows [row_begin, row_end) filled from `m`
// (disjoint ranges may be filled in parallel). `m` must pass LowBitTilesRefusal.
SparseRowsLayout AllocateSparseRows(const LowBitMatrix& m);
void FillSparseRows(const LowBitMatrix& m, int64_t row_begin, int64_t row_end, SparseRowsLayout& w);
SparseRowsLayout MakeSparseRows(const LowBitMatrix& m);

// ---- Gate and up side by side (a predictor's kept list) ----
// A kept neuron needs both its gate row and its up row. In two separate layouts they are two
// 1.25 KB runs (INT4 g32, 2048 columns) 7 MB apart; here they are one 2.5 KB run: a
// SparseRowsLayout of 2·out rows in which row 2j is gate's row j and row 2j + 1 up's row j, in
// the row format above (same words, steps, zeros), and row 2·out is the zero row. It replaces
// the two separate layouts (one zero row fewer: the same bytes). The kernels read it through
// SparsePairRowsInt8 (sparse_ffn_kernels.h), or through SparseRowsInt8 with row numbers 2j / 2j + 1.
// "" when gate and up can share one layout (same shape, group, code width, zero-point kind and
// fraction bits, step kind), else why not.
std::string SparsePairRefusal(const LowBitMatrix& gate, const LowBitMatrix& up);
SparseRowsLayout AllocateSparsePairRows(const LowBitMatrix& gate, const LowBitMatrix& up);
// Neurons [neuron_begin, neuron_end): rows 2j and 2j + 1 (disjoint ranges may be filled in parallel).
void FillSparsePairRows(const LowBitMatrix& gate, const LowBitMatrix& up, int64_t neuron_begin, int64_t neuron_end,
                        SparseRowsLayout& w);
SparseRowsLayout MakeSparsePairRows(const LowBitMatrix& gate, const LowBitMatrix& up);

// ---- Down: neuron-major ----

inline constexpr int64_t kSparseDownBlockOutputs = 128;

struct SparseColumnsLayout {
  int64_t out = 0, in = 0, group = 0;  // out = the down projection's outputs, in = its neurons
  int bits = 4;
  int zero_frac_bits = 0;
  int64_t out_padded = 0;             // out rounded up to kSparseDownBlockOutputs
  int64_t strip_bytes = 0;            // bytes per neuron: out_padded / 2 (≤ 4 bits) or out_padded
  int64_t strip_stride = 0;           // bytes from a neuron's strip to the next one's
  WeightVector<uint8_t> codes;        // [in, strip_bytes]; empty in a joint layout:
  uint8_t* shared_strips = nullptr;   // there the strips sit in the pair rows' units
  WeightVector<uint16_t> scales;      // F16 [groups, out_padded]; empty with scale codes
  WeightVector<uint8_t> scale_codes;  // [groups, out_padded]
  std::vector<float> row_scales;      // [out_padded]
  WeightVector<uint8_t> zeros;        // [groups, out_padded]; empty: symmetric
  // Every step is finite and ≥ 0 (true of every quantizer output). Then a group whose
  // activation codes are all zero changes an output only as acc + 0.f does, which lets the
  // kernels skip its steps and zeros too (sparse_ffn_kernels.cc); otherwise they never skip.
  bool steps_finite_nonnegative = true;

  int64_t groups() const { return in / group; }
  bool nibbles() const { return bits <= 4; }
  int64_t blocks() const { return out_padded / kSparseDownBlockOutputs; }  // thread split unit
  const uint8_t* strip(int64_t neuron) const {
    return (shared_strips != nullptr ? shared_strips : codes.data()) + neuron * strip_stride;
  }
  uint8_t* mutable_strip(int64_t neuron) { return const_cast<uint8_t*>(strip(neuron)); }
  size_t bytes() const {
    return codes.size() + 2 * scales.size() + scale_codes.size() + 4 * row_scales.size() + zeros.size();
  }
};

// The byte of a strip holding output o (and, at ≤ 4 bits, whether in the high nibble).
struct SparseStripPosition {
  int64_t byte;
  bool high_nibble;
};
SparseStripPosition SparseDownStripPosition(const SparseColumnsLayout& w, int64_t o);

// Sized and zeroed, then outputs [block_begin, block_end) · 128 filled from `m` (the down
// projection, out × in as the dense pack stores it). Disjoint block ranges may be filled in
// parallel. `m` must pass LowBitTilesRefusal.
SparseColumnsLayout AllocateSparseColumns(const LowBitMatrix& m);
void FillSparseColumns(const LowBitMatrix& m, int64_t block_begin, int64_t block_end, SparseColumnsLayout& w);
SparseColumnsLayout MakeSparseColumns(const LowBitMatrix& m);

// ---- Gate, up and down of one FFN side by side ----
// A row layout whose unit j holds the rows of neuron j that decode reads over a kept list,
// then down's strip of neuron j, and down's columns layout reading its strips there (codes
// empty, shared_strips into the rows' words; steps and zeros its own). The rows: gate's row j
// and up's row j (a pair layout: a predictor's list, read before the gate) or up's row j alone
// (CATS and the product rule: the gate runs dense over its tiles). At 4 bits and 2048 outputs a
// unit is 2.4 KB of pair rows (1.2 KB of up) and 1 KB of strip. A kept neuron is then one run
// of lines in memory: on the 2-core VM of 2026-12 scattered runs streamed at ~15 GB/s at 3.4 KB
// against ~12 GB/s as separate 2.4 KB and 1 KB runs (a probe reading only), and the strips the
// row pass drew in with its rows are still in the caches when down reads them. The columns
// point into the rows: the two move together, never copied.
struct SparseFfnLayouts {
  SparseRowsLayout rows;
  SparseColumnsLayout down;
  SparseFfnLayouts() = default;
  SparseFfnLayouts(SparseFfnLayouts&&) = default;
  SparseFfnLayouts& operator=(SparseFfnLayouts&&) = default;
  SparseFfnLayouts(const SparseFfnLayouts&) = delete;
  SparseFfnLayouts& operator=(const SparseFfnLayouts&) = delete;
};
// gate == nullptr: up's rows alone. "" when they can share one layout (SparsePairRefusal with a
// gate, and down's neurons = up's rows).
std::string SparseFfnRefusal(const LowBitMatrix* gate, const LowBitMatrix& up, const LowBitMatrix& down);
SparseFfnLayouts AllocateSparseFfn(const LowBitMatrix* gate, const LowBitMatrix& up, const LowBitMatrix& down);
// Rows of neurons [neuron_begin, neuron_end) (FillSparsePairRows, or FillSparseRows of up), and
// down's outputs of blocks [block_begin, block_end) (FillSparseColumns): each may be filled in
// parallel over disjoint ranges.
void FillSparseFfnRows(const LowBitMatrix* gate, const LowBitMatrix& up, int64_t neuron_begin, int64_t neuron_end,
                       SparseFfnLayouts& w);
void FillSparseFfnColumns(const LowBitMatrix& down, int64_t block_begin, int64_t block_end, SparseFfnLayouts& w);
SparseFfnLayouts MakeSparseFfn(const LowBitMatrix* gate, const LowBitMatrix& up, const LowBitMatrix& down);

}  // namespace accullm::kernels
