// The options of the INT8 activation quantizer (kernels/cpu/int8_activations.h), which every
// low-bit linear runs on its input unless `--exact`:
//  - nearest: round to nearest (ties to even); biased for any fixed input.
//  - stochastic: round up with probability equal to the fractional part; the draw is a hash
//    of (seed, the row's own input bits, column), so a row's codes never depend on its batch.
//  - error feedback (optional, either rounding): each channel's rounding error is carried into
//    the next channel of the same block along the reduction dimension.
// `accullm eval|generate|serve --act-quant nearest|stochastic --act-error-feedback --act-seed S`.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace accullm::kernels {

enum class ActRounding { kNearest, kStochastic };
const char* ActRoundingName(ActRounding r);  // "nearest" / "stochastic" (`--act-quant`)
absl::StatusOr<ActRounding> ParseActRounding(std::string_view name);

struct ActQuantConfig {
  ActRounding rounding = ActRounding::kNearest;
  bool error_feedback = false;
  uint64_t seed = 0;  // stochastic rounding only

  // Round to nearest without feedback: the vectorized default.
  bool is_plain_nearest() const { return rounding == ActRounding::kNearest && !error_feedback; }
  bool operator==(const ActQuantConfig&) const = default;
};

}  // namespace accullm::kernels
