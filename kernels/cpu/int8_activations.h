// Activations quantized to INT8 for the integer-dot kernels (low_bit_int8_kernels.h): one
// scale per block of `block` columns of a row, the block being the weight group, so a group's
// integer dot product needs one activation scale and one weight scale. Round to nearest
// (ties to even), symmetric, |q| <= 127 (so −128 never appears: the AVX2 sign trick and
// negation stay exact). Channels marked in `exact` (the outlier channels a low-bit linear
// serves from FP16 weights) get q = 0 and do not count towards a block's maximum.
#pragma once

#include <cstdint>
#include <vector>

namespace accullm::kernels {

struct Int8Activations {
  int64_t rows = 0, in = 0, block = 0;
  std::vector<int8_t> q;      // [rows, in]
  std::vector<float> scales;  // [rows, in / block]: x ≈ q · scale
  std::vector<int32_t> sums;  // [rows, in / block]: Σ q over the block (the zero-point term)
  // [rows, in / block] or empty: Σ q per 16-bit lane of each block, for the AXE 16-bit
  // kernel (low_bit_axe16_kernels.h: Axe16LaneSums fills it; QuantizeInt8Blocks does not).
  std::vector<int32_t> lane_sums;

  const int8_t* row(int64_t r) const { return q.data() + r * in; }
  int64_t blocks() const { return in / block; }
};

// Quantizes x [rows, in] (in a multiple of block) into `out` (resized; reused across calls
// without allocating once large enough). `exact` is null or [in] flags.
void QuantizeInt8Blocks(const float* x, int64_t rows, int64_t in, int64_t block, const char* exact,
                        Int8Activations& out);
void QuantizeInt8BlocksScalar(const float* x, int64_t rows, int64_t in, int64_t block, const char* exact,
                              Int8Activations& out);

}  // namespace accullm::kernels
