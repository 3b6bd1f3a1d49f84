// Runtime activation quantization to INT8, per token (row), with outlier channels excluded
// (they stay in floating point, matching the FP16 outlier weight columns).
//  - nearest: round to nearest; biased for any fixed input.
//  - stochastic: round up with probability equal to the fractional part, drawn from a
//    counter-based RNG (SplitMix64 of seed, row, column), so a seed reproduces every draw and
//    the mean over draws converges to the input.
//  - error feedback (optional, either rounding): the rounding error of channel i is carried
//    into channel i+1 along the reduction dimension, so a running sum of the quantized row
//    never drifts more than one step from the running sum of the input.
// The output is the dequantized row (q · scale) in place of x: what an INT8 kernel computes.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace accullm::kernels {

enum class ActRounding { kNearest, kStochastic };
const char* ActRoundingName(ActRounding r);  // "nearest" / "stochastic" (`accullm eval --act-quant`)
absl::StatusOr<ActRounding> ParseActRounding(std::string_view name);

struct ActQuantConfig {
  ActRounding rounding = ActRounding::kNearest;
  bool error_feedback = false;
  uint64_t seed = 0;
};

// Quantizes rows of x [n, width] in place. `keep` (may be empty) marks channels left exact.
// `call_counter` makes successive calls draw fresh random numbers for the same seed.
void QuantizeActivationsInt8(float* x, int64_t n, int64_t width, const std::vector<char>& keep,
                             const ActQuantConfig& config, uint64_t call_counter);

}  // namespace accullm::kernels
