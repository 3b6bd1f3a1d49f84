#include "kernels/cpu/activation_quant.h"

#include <algorithm>
#include <cmath>

#include "common/enum_names.h"
#include "common/random.h"

namespace accullm::kernels {

namespace {
constexpr EnumName<ActRounding> kActRoundingNames[] = {{ActRounding::kNearest, "nearest"},
                                                       {ActRounding::kStochastic, "stochastic"}};
static_assert(NamesEveryValue(kActRoundingNames, ActRounding::kNearest, ActRounding::kStochastic));
}  // namespace

const char* ActRoundingName(ActRounding r) { return NameOf(kActRoundingNames, r); }

absl::StatusOr<ActRounding> ParseActRounding(std::string_view name) {
  return ParseName(kActRoundingNames, name, "activation rounding");
}

void QuantizeActivationsInt8(float* x, int64_t n, int64_t width, const std::vector<char>& keep, const ActQuantConfig& c,
                             uint64_t call_counter) {
  const bool has_keep = !keep.empty();
  for (int64_t r = 0; r < n; ++r) {
    float* row = x + r * width;
    float amax = 0.f;
    for (int64_t i = 0; i < width; ++i)
      if (!has_keep || !keep[i]) amax = std::max(amax, std::fabs(row[i]));
    if (amax == 0.f) continue;
    const float scale = amax / 127.f;
    const uint64_t stream = SplitMix64(c.seed ^ SplitMix64(call_counter * 0x100000001b3ull + static_cast<uint64_t>(r)));
    float carry = 0.f;
    for (int64_t i = 0; i < width; ++i) {
      if (has_keep && keep[i]) continue;
      const float v = row[i] + (c.error_feedback ? carry : 0.f);
      const float t = v / scale;
      float q;
      if (c.rounding == ActRounding::kStochastic) {
        const float u = UnitFloat24(SplitMix64(stream + static_cast<uint64_t>(i)));
        const float f = std::floor(t);
        q = f + (u < t - f ? 1.f : 0.f);
      } else {
        q = std::nearbyint(t);
      }
      q = std::clamp(q, -127.f, 127.f);
      const float deq = q * scale;
      carry = v - deq;
      row[i] = deq;
    }
  }
}

}  // namespace accullm::kernels
