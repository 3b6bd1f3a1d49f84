// The layout the integer-dot kernels read (low_bit_int8_kernels.h): a low-bit matrix's rows
// interleaved 16 at a time ("tiles"), so that one 32-bit lane of a 512-bit register (or of
// one of two 256-bit halves) holds one row's dot product: vpdpbusd / vpmaddubsw+vpmaddwd sum
// 4 adjacent bytes per lane, and those 4 bytes are 4 columns of the same row. A tile's groups
// follow each other, so a tile streams from memory in one pass, and every row's group
// results are added in group order whatever the batch, the thread count or the ISA.
//
// Per tile, per group, per chunk of the group's columns, 64 bytes:
//   codes of at most 4 bits: chunks of 8 columns c..c+7; byte 4·r + j holds row r's code of
//     column c+j in its low nibble and of column c+4+j in its high nibble (3-bit codes take
//     a nibble too: no shuffles to unpack, at a third more bytes than their bit stream);
//   codes of 5 or 6 bits in bit planes (TileOptions::planes, the default): chunks of 8
//     columns as for 4 bits holding each code's low 4 bits, and after the group's chunks one
//     high plane per chunk: position p = 4·r + j carries the high bits of columns c+j and
//     c+4+j (6 bits: 2 + 2 bits in nibble p / 32 of byte p mod 32, 32 bytes a chunk; 5 bits:
//     1 + 1 bits at bit 2·(p / 16) of byte p mod 16, 16 bytes a chunk), so 6-bit codes stream
//     6 bits and 5-bit codes 5 bits, not a byte;
//   codes of 5 to 8 bits as bytes (7 and 8 bits, or planes off): chunks of 4 columns; byte
//     4·r + j holds row r's code of column c+j.
// Scales and zeros: 16 consecutive entries (one per row of the tile) per (tile, group).
// Rows past `out` (the last tile's padding) have zero codes and zero scales.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/weight_memory.h"
#include "kernels/low_bit_matrix.h"

namespace accullm::kernels {

inline constexpr int64_t kTileRows = 16;
inline constexpr int64_t kTileChunkBytes = 64;

struct LowBitTiles {
  int64_t out = 0, in = 0, group = 0;
  int bits = 4;
  bool planes = false;  // 5- or 6-bit codes as a nibble plane and a high plane
  int zero_frac_bits = 0;
  int64_t tiles = 0;                  // ceil(out / 16)
  WeightVector<uint8_t> codes;        // [tiles, groups, chunks per group, 64]
  WeightVector<uint16_t> scales;      // F16 [tiles, groups, 16]; empty with scale codes
  WeightVector<uint8_t> scale_codes;  // [tiles, groups, 16]; scale = row scale · code / 255
  std::vector<float> row_scales;      // [tiles, 16] (F16 widened: exact)
  WeightVector<uint8_t> zeros;        // [tiles, groups, 16]; empty: symmetric (zero 2^(bits-1))

  int64_t groups() const { return in / group; }
  bool nibbles() const { return bits <= 4; }
  int64_t chunk_columns() const { return nibbles() || planes ? 8 : 4; }
  // Bytes of one chunk's high plane (0 without planes).
  int64_t plane_chunk_bytes() const { return planes ? 16 * (bits - 4) : 0; }
  int64_t group_code_bytes() const { return (group / chunk_columns()) * (kTileChunkBytes + plane_chunk_bytes()); }
  int64_t tile_code_bytes() const { return groups() * group_code_bytes(); }
  size_t bytes() const {
    return codes.size() + 2 * scales.size() + scale_codes.size() + 4 * row_scales.size() + zeros.size();
  }
};

// "" when the integer kernels can run `m` exactly (groups a multiple of 8 columns, and every
// group's 32-bit integer sums provably in range), else why not.
std::string LowBitTilesRefusal(const LowBitMatrix& m);

struct TileOptions {
  // 5- and 6-bit codes in bit planes; off keeps a byte per code (what the AXE 16-bit kernel,
  // low_bit_axe16_kernels.h, reads).
  bool planes = true;
};

// What TileLowBitMatrix(m, options).bytes() will be, without tiling.
size_t LowBitTilesBytes(const LowBitMatrix& m, TileOptions options = {});

// The tiled copy of `m` (check LowBitTilesRefusal first).
LowBitTiles TileLowBitMatrix(const LowBitMatrix& m, TileOptions options = {});
// The same in two steps, so that tiles can be filled in parallel: every array sized and
// zeroed, then tiles [tile_begin, tile_end) filled from `m`.
LowBitTiles AllocateLowBitTiles(const LowBitMatrix& m, TileOptions options = {});
void FillLowBitTiles(const LowBitMatrix& m, int64_t tile_begin, int64_t tile_end, LowBitTiles& t);

}  // namespace accullm::kernels
