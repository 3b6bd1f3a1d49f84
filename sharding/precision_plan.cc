#include "sharding/precision_plan.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/enum_names.h"
#include "common/status.h"

namespace accullm::sharding {

namespace {
constexpr EnumName<LayerPrecision> kLayerPrecisionNames[] = {{LayerPrecision::kFp16, "fp16"},
                                                             {LayerPrecision::kLowBit, "int4"}};
static_assert(NamesEveryValue(kLayerPrecisionNames, LayerPrecision::kFp16, LayerPrecision::kLowBit));
}  // namespace

const char* LayerPrecisionName(LayerPrecision p) { return NameOf(kLayerPrecisionNames, p); }

absl::StatusOr<LayerPrecision> ParseLayerPrecision(const std::string& name) {
  return ParseName(kLayerPrecisionNames, name, "layer precision");
}

absl::StatusOr<int> BlockLinearIndex(const std::string& name) {
  for (int i = 0; i < kBlockLinears; ++i)
    if (name == kBlockLinearNames[i] || name == kBlockLinearShortNames[i]) return i;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown block linear \"", name, "\" (q, k, v, o, gate, up, down or their checkpoint names)"));
}

PrecisionPlan PrecisionPlan::AllLowBit(int64_t n) {
  PrecisionPlan p;
  p.layers.assign(static_cast<size_t>(n), LayerPrecision::kLowBit);
  return p;
}

absl::StatusOr<PrecisionPlan> PrecisionPlan::FromFp16Spec(const std::string& spec, int64_t n) {
  PrecisionPlan p = AllLowBit(n);
  if (spec == "none" || spec.empty()) return p;
  for (absl::string_view part : absl::StrSplit(spec, ',')) {
    part = absl::StripAsciiWhitespace(part);
    int64_t count = 0;
    if (absl::ConsumePrefix(&part, "first:")) {
      if (!absl::SimpleAtoi(part, &count) || count < 0 || count > n)
        return absl::InvalidArgumentError(absl::StrCat("bad layer count in \"first:", std::string(part), "\""));
      for (int64_t i = 0; i < count; ++i) p.layers[i] = LayerPrecision::kFp16;
    } else if (absl::ConsumePrefix(&part, "last:")) {
      if (!absl::SimpleAtoi(part, &count) || count < 0 || count > n)
        return absl::InvalidArgumentError(absl::StrCat("bad layer count in \"last:", std::string(part), "\""));
      for (int64_t i = n - count; i < n; ++i) p.layers[i] = LayerPrecision::kFp16;
    } else if (const size_t dot = part.find('.'); dot != absl::string_view::npos) {
      int64_t index = 0;
      if (!absl::SimpleAtoi(part.substr(0, dot), &index) || index < 0 || index >= n) {
        return absl::InvalidArgumentError(absl::StrCat("bad layer in \"", std::string(part), "\" (model has ", n,
                                                       " layers; use LAYER.LINEAR, e.g. 7.down)"));
      }
      ASSIGN_OR_RETURN(int linear, BlockLinearIndex(std::string(part.substr(dot + 1))));
      p.fp16_linears.insert({index, linear});
    } else {
      int64_t index = 0;
      if (!absl::SimpleAtoi(part, &index) || index < 0 || index >= n) {
        return absl::InvalidArgumentError(absl::StrCat("bad layer \"", std::string(part),
                                                       "\" in --fp16-layers (model has ", n,
                                                       " layers; use first:N, last:N or indices)"));
      }
      p.layers[index] = LayerPrecision::kFp16;
    }
  }
  // A linear of an FP16 block is FP16 anyway.
  for (auto it = p.fp16_linears.begin(); it != p.fp16_linears.end();)
    it = p.layers[it->first] == LayerPrecision::kFp16 ? p.fp16_linears.erase(it) : std::next(it);
  return p;
}

int64_t PrecisionPlan::CountLowBit() const {
  int64_t c = 0;
  for (auto l : layers) c += l == LayerPrecision::kLowBit;
  return c;
}

std::string PrecisionPlan::Describe() const {
  std::vector<std::string> fp16, low_bit;
  for (size_t i = 0; i < layers.size(); ++i)
    (layers[i] == LayerPrecision::kFp16 ? fp16 : low_bit).push_back(std::to_string(i));
  std::vector<std::string> linears;
  for (const auto& [l, i] : fp16_linears) linears.push_back(absl::StrCat(l, ".", kBlockLinearShortNames[i]));
  std::vector<std::string> widths;
  for (const auto& [li, bits] : linear_bits)
    widths.push_back(absl::StrCat(li.first, ".", kBlockLinearShortNames[li.second], ":", bits));
  return absl::StrCat("fp16: [", absl::StrJoin(fp16, ","), "] ", LayerPrecisionName(LayerPrecision::kLowBit), ": [",
                      absl::StrJoin(low_bit, ","), "]",
                      linears.empty() ? "" : absl::StrCat(" fp16 linears: [", absl::StrJoin(linears, ","), "]"),
                      widths.empty() ? "" : absl::StrCat(" bits: [", absl::StrJoin(widths, ","), "]"));
}

std::vector<std::string> PrecisionPlan::Fp16LinearNames() const {
  std::vector<std::string> out;
  for (const auto& [l, i] : fp16_linears) out.push_back(absl::StrCat("model.layers.", l, ".", kBlockLinearNames[i]));
  return out;
}

}  // namespace accullm::sharding
