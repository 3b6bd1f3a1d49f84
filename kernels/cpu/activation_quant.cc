#include "kernels/cpu/activation_quant.h"

#include "common/enum_names.h"

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

}  // namespace accullm::kernels
