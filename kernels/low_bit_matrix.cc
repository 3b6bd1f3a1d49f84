#include "kernels/low_bit_matrix.h"

namespace accullm::kernels {

void DequantizeLowBitRow(const LowBitMatrix& m, int64_t o, float* dst) {
  const int64_t groups = m.in / m.group;
  const uint8_t* codes = m.codes + o * CodeRowBytes(m.in, m.bits);
  for (int64_t g = 0; g < groups; ++g) {
    const float scale = GroupScale(m, o, o * groups + g);
    const float zero = ZeroPoint(m, o * groups + g);
    for (int64_t i = g * m.group; i < (g + 1) * m.group; ++i) {
      const int code = ReadCode(codes, i, m.bits);
      dst[i] = (static_cast<float>(code) - zero) * scale;
    }
  }
}

}  // namespace accullm::kernels
