#include "kernels/cpu/low_bit_tiles.h"

#include <algorithm>

#include "common/dtype.h"

namespace accullm::kernels {

namespace {

// A row's codes, one per byte (4-bit rows by nibbles: the common case, 10x faster than
// ReadCode per code, which matters when a billion weights are tiled at load).
void UnpackCodes(const uint8_t* row, int64_t in, int bits, uint8_t* dst) {
  if (bits == 4) {
    for (int64_t j = 0; j < in / 2; ++j) {
      dst[2 * j] = row[j] & 15;
      dst[2 * j + 1] = row[j] >> 4;
    }
    return;
  }
  for (int64_t i = 0; i < in; ++i) dst[i] = static_cast<uint8_t>(ReadCode(row, i, bits));
}

}  // namespace

std::string LowBitTilesRefusal(const LowBitMatrix& m) {
  if (m.bits < kMinCodeBits || m.bits > kMaxCodeBits) return "code width outside 3..8 bits";
  if (m.group <= 0 || m.group % 8 != 0 || m.in % m.group != 0) return "group is not a multiple of 8 dividing the row";
  // |(Σ q·x) · 2^frac − zero · Σ x| < group · 255 · 127 · 2^frac · 2 must fit int32.
  const double bound = static_cast<double>(m.group) * 255.0 * 127.0 * static_cast<double>(1 << m.zero_frac_bits) * 2.0;
  if (bound >= 2147483647.0) return "group too large for 32-bit integer sums";
  return "";
}

namespace {

// The tiles' shape (arrays left empty): what both the byte count and the allocation follow.
LowBitTiles TileShape(const LowBitMatrix& m, TileOptions options) {
  LowBitTiles t;
  t.out = m.out;
  t.in = m.in;
  t.group = m.group;
  t.bits = m.bits;
  t.planes = options.planes && (m.bits == 5 || m.bits == 6);
  t.zero_frac_bits = m.zeros != nullptr ? m.zero_frac_bits : 0;
  t.tiles = (m.out + kTileRows - 1) / kTileRows;
  return t;
}

}  // namespace

size_t LowBitTilesBytes(const LowBitMatrix& m, TileOptions options) {
  const LowBitTiles t = TileShape(m, options);
  const int64_t per_group = t.tiles * t.groups() * kTileRows;
  const int64_t scale_bytes = m.scale_codes != nullptr ? per_group + 4 * t.tiles * kTileRows : 2 * per_group;
  return static_cast<size_t>(t.tiles * t.tile_code_bytes() + scale_bytes + (m.zeros != nullptr ? per_group : 0));
}

LowBitTiles AllocateLowBitTiles(const LowBitMatrix& m, TileOptions options) {
  LowBitTiles t = TileShape(m, options);
  t.codes.assign(static_cast<size_t>(t.tiles * t.tile_code_bytes()), 0);
  const size_t per_tile_group = static_cast<size_t>(t.tiles * t.groups() * kTileRows);
  if (m.scale_codes != nullptr) {
    t.scale_codes.assign(per_tile_group, 0);
    t.row_scales.assign(static_cast<size_t>(t.tiles * kTileRows), 0.f);
  } else {
    t.scales.assign(per_tile_group, 0);
  }
  if (m.zeros != nullptr) t.zeros.assign(per_tile_group, 0);
  return t;
}

void FillLowBitTiles(const LowBitMatrix& m, int64_t tile_begin, int64_t tile_end, LowBitTiles& t) {
  const int64_t groups = t.groups(), cols = t.chunk_columns(), chunks = m.group / cols;
  const int64_t row_bytes = CodeRowBytes(m.in, m.bits);
  std::vector<uint8_t> row_codes(static_cast<size_t>(m.in));
  const int64_t o_end = std::min(m.out, tile_end * kTileRows);
  for (int64_t o = tile_begin * kTileRows; o < o_end; ++o) {
    const int64_t tile = o / kTileRows, r = o % kTileRows;
    UnpackCodes(m.codes + o * row_bytes, m.in, m.bits, row_codes.data());
    if (m.scale_codes != nullptr) t.row_scales[tile * kTileRows + r] = F16ToF32(m.row_scales[o]);
    for (int64_t g = 0; g < groups; ++g) {
      const size_t at = static_cast<size_t>((tile * groups + g) * kTileRows + r);
      if (m.scale_codes != nullptr) t.scale_codes[at] = m.scale_codes[o * groups + g];
      else t.scales[at] = m.scales[o * groups + g];
      if (m.zeros != nullptr) t.zeros[at] = m.zeros[o * groups + g];
      uint8_t* group_codes = t.codes.data() + tile * t.tile_code_bytes() + g * t.group_code_bytes();
      uint8_t* chunk = group_codes + 4 * r;
      const uint8_t* col = row_codes.data() + g * m.group;
      for (int64_t c = 0; c < chunks; ++c, chunk += kTileChunkBytes, col += cols) {
        for (int j = 0; j < 4; ++j) {
          if (t.nibbles() || t.planes) chunk[j] = static_cast<uint8_t>((col[j] & 15) | ((col[4 + j] & 15) << 4));
          else chunk[j] = col[j];
        }
        if (!t.planes) continue;
        uint8_t* plane = group_codes + chunks * kTileChunkBytes + c * t.plane_chunk_bytes();
        for (int j = 0; j < 4; ++j) {
          const int p = static_cast<int>(4 * r + j), lo = col[j] >> 4, hi = col[4 + j] >> 4;
          if (t.bits == 6) plane[p % 32] |= static_cast<uint8_t>((lo | (hi << 2)) << (4 * (p / 32)));
          else plane[p % 16] |= static_cast<uint8_t>((lo | (hi << 1)) << (2 * (p / 16)));
        }
      }
    }
  }
}

LowBitTiles TileLowBitMatrix(const LowBitMatrix& m, TileOptions options) {
  LowBitTiles t = AllocateLowBitTiles(m, options);
  FillLowBitTiles(m, 0, t.tiles, t);
  return t;
}

}  // namespace accullm::kernels
