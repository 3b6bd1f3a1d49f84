#include "quant/axe.h"

#include <algorithm>

namespace accullm::quant {

AccumulatorReport CheckAccumulator(const QuantizedMatrix& m, int bits, int64_t tile) {
  if (tile <= 0) tile = m.format.group;
  const int64_t hi_limit = (int64_t{1} << (bits - 1)) - 1, lo_limit = -(int64_t{1} << (bits - 1));
  AccumulatorReport r;
  r.channels = m.format.out;
  for (int64_t o = 0; o < m.format.out; ++o) {
    bool overflow = false;
    for (int64_t g0 = 0; g0 < m.format.in; g0 += m.format.group) {
      // Worst cases compose: the adversary picks each x independently, so the largest
      // running sum after k tiles is the sum of the tiles' largest sums (same for smallest).
      int64_t run_hi = 0, run_lo = 0;
      for (int64_t t0 = g0; t0 < g0 + m.format.group; t0 += tile) {
        int64_t tile_hi = 0, tile_lo = 0;
        for (int64_t i = t0; i < std::min(t0 + tile, g0 + m.format.group); ++i) {
          const int64_t v = m.IntegerWeight(o, i);
          tile_hi += std::max(127 * v, -128 * v);
          tile_lo += std::min(127 * v, -128 * v);
        }
        run_hi += tile_hi;
        run_lo += tile_lo;
        r.worst_magnitude = std::max({r.worst_magnitude, tile_hi, -tile_lo, run_hi, -run_lo});
        overflow = overflow || tile_hi > hi_limit || tile_lo < lo_limit || run_hi > hi_limit || run_lo < lo_limit;
      }
    }
    r.overflowing_channels += overflow;
  }
  int b = 2;
  while (((int64_t{1} << (b - 1)) - 1) < r.worst_magnitude) ++b;
  r.required_bits = b;
  return r;
}

}  // namespace accullm::quant
