#include "kernels/cpu/sparse_ffn_layouts.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/dtype.h"

namespace accullm::kernels {

namespace {

// Row o's codes, one per byte.
void UnpackRow(const LowBitMatrix& m, int64_t o, uint8_t* dst) {
  const uint8_t* row = m.codes + o * CodeRowBytes(m.in, m.bits);
  for (int64_t i = 0; i < m.in; ++i) dst[i] = static_cast<uint8_t>(ReadCode(row, i, m.bits));
}

bool StepsFiniteNonnegative(const LowBitMatrix& m) {
  const int64_t groups = m.out * m.groups_per_row();
  if (m.scale_codes != nullptr) {
    for (int64_t o = 0; o < m.out; ++o) {
      const float s = F16ToF32(m.row_scales[o]);
      if (!(std::isfinite(s) && s >= 0.f)) return false;
    }
    return true;
  }
  for (int64_t i = 0; i < groups; ++i) {
    const float s = F16ToF32(m.scales[i]);
    if (!(std::isfinite(s) && s >= 0.f)) return false;
  }
  return true;
}

}  // namespace

// ---- Gate / up ----

namespace {

// A zeroed layout of `rows` rows (plus the zero row) in m's format, in units of 2^unit_shift
// rows followed by tail_words words each.
SparseRowsLayout AllocateRows(const LowBitMatrix& m, int64_t rows, int unit_shift = 0, int64_t tail_words = 0) {
  SparseRowsLayout w;
  w.out = rows;
  w.in = m.in;
  w.group = m.group;
  w.bits = m.bits;
  w.has_zeros = m.zeros != nullptr;
  w.zero_frac_bits = w.has_zeros ? m.zero_frac_bits : 0;
  w.has_scale_codes = m.scale_codes != nullptr;
  w.row_words = w.row_blocks() * 16 * w.group_words();
  w.meta_stride = w.row_blocks() * 16;
  const int64_t meta_bytes = w.meta_stride * (w.step_bytes() + (w.has_zeros ? 1 : 0));
  w.meta_words = (meta_bytes + 63) / 64 * 16;
  w.row_stride = w.row_words + w.meta_words;
  w.unit_shift = unit_shift;
  w.unit_stride = (w.row_stride << unit_shift) + tail_words;
  w.words.assign(static_cast<size_t>((w.out >> unit_shift) * w.unit_stride + w.row_stride), 0u);  // + the zero row
  if (w.has_scale_codes) w.row_scales.assign(static_cast<size_t>(w.out + 1), 0.f);
  return w;
}

// Rows [row_begin, row_end) of `m` into layout rows o · spacing + offset (1, 0: a matrix's own
// layout; 2, 0 and 2, 1: gate and up of a pair layout).
void FillRowsAt(const LowBitMatrix& m, int64_t row_begin, int64_t row_end, int64_t spacing, int64_t offset,
                SparseRowsLayout& w) {
  const int64_t groups = w.groups(), cols = w.chunk_columns();
  std::vector<uint8_t> codes(static_cast<size_t>(m.in));
  for (int64_t o = row_begin; o < std::min(row_end, m.out); ++o) {
    UnpackRow(m, o, codes.data());
    const int64_t r = o * spacing + offset;
    uint32_t* dst = w.mutable_row(r);
    for (int64_t c = 0; c < m.in / cols; ++c) {  // word c = word c % group_words of its group
      const uint8_t* col = codes.data() + c * cols;
      uint32_t word = 0;
      for (int j = 0; j < 4; ++j) {
        const uint32_t byte = w.nibbles() ? (col[j] | (col[4 + j] << 4)) : col[j];
        word |= byte << (8 * j);
      }
      dst[w.word_index(c / w.group_words(), c % w.group_words())] = word;
    }
    if (w.has_scale_codes) w.row_scales[r] = F16ToF32(m.row_scales[o]);
    uint8_t* steps = reinterpret_cast<uint8_t*>(dst + w.row_words);
    uint8_t* zeros = steps + w.step_bytes() * w.meta_stride;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t at = o * groups + g;
      if (w.has_scale_codes) steps[g] = m.scale_codes[at];
      else std::memcpy(steps + 2 * g, &m.scales[at], 2);
      if (w.has_zeros) zeros[g] = m.zeros[at];
    }
  }
}

}  // namespace

SparseRowsLayout AllocateSparseRows(const LowBitMatrix& m) { return AllocateRows(m, m.out); }

void FillSparseRows(const LowBitMatrix& m, int64_t row_begin, int64_t row_end, SparseRowsLayout& w) {
  FillRowsAt(m, row_begin, row_end, 1, 0, w);
}

SparseRowsLayout MakeSparseRows(const LowBitMatrix& m) {
  SparseRowsLayout w = AllocateSparseRows(m);
  FillSparseRows(m, 0, m.out, w);
  return w;
}

std::string SparsePairRefusal(const LowBitMatrix& gate, const LowBitMatrix& up) {
  if (gate.out != up.out || gate.in != up.in) return "gate and up differ in shape";
  if (gate.group != up.group || gate.bits != up.bits) return "gate and up differ in group or code width";
  if ((gate.zeros != nullptr) != (up.zeros != nullptr) ||
      (gate.zeros != nullptr && gate.zero_frac_bits != up.zero_frac_bits))
    return "gate and up differ in zero points";
  if ((gate.scale_codes != nullptr) != (up.scale_codes != nullptr)) return "gate and up differ in step kind";
  return "";
}

SparseRowsLayout AllocateSparsePairRows(const LowBitMatrix& gate, const LowBitMatrix& up) {
  return AllocateRows(gate, gate.out + up.out, 1);  // up: gate's format (SparsePairRefusal)
}

void FillSparsePairRows(const LowBitMatrix& gate, const LowBitMatrix& up, int64_t neuron_begin, int64_t neuron_end,
                        SparseRowsLayout& w) {
  FillRowsAt(gate, neuron_begin, neuron_end, 2, 0, w);
  FillRowsAt(up, neuron_begin, neuron_end, 2, 1, w);
}

SparseRowsLayout MakeSparsePairRows(const LowBitMatrix& gate, const LowBitMatrix& up) {
  SparseRowsLayout w = AllocateSparsePairRows(gate, up);
  FillSparsePairRows(gate, up, 0, gate.out, w);
  return w;
}

// ---- Down ----

SparseStripPosition SparseDownStripPosition(const SparseColumnsLayout& w, int64_t o) {
  const int64_t segment = o / 64, r = o % 64;
  const int64_t k = r / 16, lane = (r / 4) % 4, m = r % 4;  // r = 16k + 4·lane + m
  const int64_t p = 16 * lane + 4 * k + m;
  if (w.nibbles()) return {(segment / 2) * 64 + p, segment % 2 == 1};
  return {segment * 64 + p, false};
}

namespace {

// Everything but the strips' bytes.
SparseColumnsLayout AllocateColumnsMeta(const LowBitMatrix& m) {
  SparseColumnsLayout w;
  w.out = m.out;
  w.in = m.in;
  w.group = m.group;
  w.bits = m.bits;
  w.zero_frac_bits = m.zeros != nullptr ? m.zero_frac_bits : 0;
  w.out_padded = (m.out + kSparseDownBlockOutputs - 1) / kSparseDownBlockOutputs * kSparseDownBlockOutputs;
  w.strip_bytes = w.nibbles() ? w.out_padded / 2 : w.out_padded;
  const size_t meta = static_cast<size_t>(w.groups() * w.out_padded);
  if (m.scale_codes != nullptr) {
    w.scale_codes.assign(meta, 0);
    w.row_scales.assign(static_cast<size_t>(w.out_padded), 0.f);
  } else {
    w.scales.assign(meta, 0);
  }
  if (m.zeros != nullptr) w.zeros.assign(meta, 0);
  w.steps_finite_nonnegative = StepsFiniteNonnegative(m);
  return w;
}

}  // namespace

SparseColumnsLayout AllocateSparseColumns(const LowBitMatrix& m) {
  SparseColumnsLayout w = AllocateColumnsMeta(m);
  w.strip_stride = w.strip_bytes;
  w.codes.assign(static_cast<size_t>(w.in * w.strip_bytes), 0);
  return w;
}

void FillSparseColumns(const LowBitMatrix& m, int64_t block_begin, int64_t block_end, SparseColumnsLayout& w) {
  const int64_t groups = w.groups();
  // A block's rows unpacked first (128 × in bytes, cache-resident), then each neuron's bytes of
  // the block written in order: writing row by row touched `in` strips' lines per row.
  std::vector<uint8_t> codes(static_cast<size_t>(kSparseDownBlockOutputs * m.in));
  std::vector<SparseStripPosition> at(kSparseDownBlockOutputs);
  for (int64_t b = block_begin; b < block_end; ++b) {
    const int64_t o0 = b * kSparseDownBlockOutputs, rows = std::min(m.out, o0 + kSparseDownBlockOutputs) - o0;
    if (rows <= 0) break;
    for (int64_t r = 0; r < rows; ++r) {
      UnpackRow(m, o0 + r, codes.data() + r * m.in);
      at[static_cast<size_t>(r)] = SparseDownStripPosition(w, o0 + r);
    }
    for (int64_t j = 0; j < m.in; ++j) {
      uint8_t* strip = w.mutable_strip(j);
      for (int64_t r = 0; r < rows; ++r) {
        const SparseStripPosition& p = at[static_cast<size_t>(r)];
        const uint8_t code = codes[static_cast<size_t>(r * m.in + j)];
        strip[p.byte] = static_cast<uint8_t>(strip[p.byte] | (p.high_nibble ? code << 4 : code));
      }
    }
  }
  const int64_t o_end = std::min(m.out, block_end * kSparseDownBlockOutputs);
  for (int64_t o = block_begin * kSparseDownBlockOutputs; o < o_end; ++o) {
    if (m.scale_codes != nullptr) w.row_scales[o] = F16ToF32(m.row_scales[o]);
    for (int64_t g = 0; g < groups; ++g) {
      const size_t dst = static_cast<size_t>(g * w.out_padded + o);
      if (m.scale_codes != nullptr) w.scale_codes[dst] = m.scale_codes[o * groups + g];
      else w.scales[dst] = m.scales[o * groups + g];
      if (m.zeros != nullptr) w.zeros[dst] = m.zeros[o * groups + g];
    }
  }
}

SparseColumnsLayout MakeSparseColumns(const LowBitMatrix& m) {
  SparseColumnsLayout w = AllocateSparseColumns(m);
  FillSparseColumns(m, 0, w.blocks(), w);
  return w;
}

// ---- Gate, up and down side by side ----

std::string SparseFfnRefusal(const LowBitMatrix* gate, const LowBitMatrix& up, const LowBitMatrix& down) {
  if (gate != nullptr) {
    if (std::string why = SparsePairRefusal(*gate, up); !why.empty()) return why;
  }
  if (down.in != up.out) return "down's neurons are not up's rows";
  return "";
}

SparseFfnLayouts AllocateSparseFfn(const LowBitMatrix* gate, const LowBitMatrix& up, const LowBitMatrix& down) {
  SparseFfnLayouts w;
  w.down = AllocateColumnsMeta(down);
  const int unit_shift = gate != nullptr ? 1 : 0;
  // Up's format for the pair too (SparsePairRefusal: the same); strips are whole lines.
  w.rows = AllocateRows(up, up.out << unit_shift, unit_shift, w.down.strip_bytes / 4);
  w.down.strip_stride = 4 * w.rows.unit_stride;
  w.down.shared_strips = reinterpret_cast<uint8_t*>(w.rows.words.data() + (w.rows.row_stride << unit_shift));
  return w;
}

void FillSparseFfnRows(const LowBitMatrix* gate, const LowBitMatrix& up, int64_t neuron_begin, int64_t neuron_end,
                       SparseFfnLayouts& w) {
  if (gate != nullptr) FillSparsePairRows(*gate, up, neuron_begin, neuron_end, w.rows);
  else FillSparseRows(up, neuron_begin, neuron_end, w.rows);
}

void FillSparseFfnColumns(const LowBitMatrix& down, int64_t block_begin, int64_t block_end, SparseFfnLayouts& w) {
  FillSparseColumns(down, block_begin, block_end, w.down);
}

SparseFfnLayouts MakeSparseFfn(const LowBitMatrix* gate, const LowBitMatrix& up, const LowBitMatrix& down) {
  SparseFfnLayouts w = AllocateSparseFfn(gate, up, down);
  FillSparseFfnRows(gate, up, 0, up.out, w);
  FillSparseFfnColumns(down, 0, w.down.blocks(), w);
  return w;
}

}  // namespace accullm::kernels
