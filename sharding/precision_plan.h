// The precision plan: which transformer blocks keep FP16 weights and which are low-bit
// (3..8-bit integer codes), and inside low-bit blocks which single linears stay FP16 (a plan
// at linear granularity spends the FP16 budget where the measured sensitivity per weight is
// highest) and which get a code width other than 4 bits (3..8: mixed-precision plans under a bit budget).
// quant/ fills it (measured sensitivity under a budget, or an explicit override);
// the pack records it; the sharding planner will weigh layers by it.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace accullm::sharding {

enum class LayerPrecision { kFp16, kLowBit };
// "fp16" / "int4": the pack manifest's layer strings. "int4" dates from when every quantized
// block was 4-bit; it now names a low-bit block of any width (widths are in "linear_bits") and
// stays as written, since packs on disk carry it.
const char* LayerPrecisionName(LayerPrecision p);
absl::StatusOr<LayerPrecision> ParseLayerPrecision(const std::string& name);

// The seven linears of a Llama block, in the order every tool uses (checkpoint names after
// "model.layers.N."), and their short names in plans ("7.down").
inline constexpr int kBlockLinears = 7;
inline constexpr std::array<const char*, kBlockLinears> kBlockLinearNames = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
inline constexpr std::array<const char*, kBlockLinears> kBlockLinearShortNames = {"q",    "k",  "v",   "o",
                                                                                  "gate", "up", "down"};
// Index of a linear by full ("mlp.down_proj") or short ("down") name.
absl::StatusOr<int> BlockLinearIndex(const std::string& name);

struct PrecisionPlan {
  std::vector<LayerPrecision> layers;
  // Linears kept FP16 inside low-bit blocks: (block, index into kBlockLinearNames).
  std::set<std::pair<int64_t, int>> fp16_linears;
  // Code width of quantized linears that are not 4 bits (3..8): mixed-precision plans give
  // each linear the width its sensitivity earns under the bit budget.
  std::map<std::pair<int64_t, int>, int> linear_bits;

  static PrecisionPlan AllLowBit(int64_t num_layers);
  // "first:2,last:2", "0,3,7", "first:1,5" → those blocks FP16, the rest low-bit;
  // "6.down,7.gate" (block.linear) → those linears FP16 inside low-bit blocks. "none" = all low-bit.
  static absl::StatusOr<PrecisionPlan> FromFp16Spec(const std::string& spec, int64_t num_layers);
  int64_t CountLowBit() const;  // blocks with low-bit linears
  bool LinearIsLowBit(int64_t layer, int linear) const {
    return layers[static_cast<size_t>(layer)] == LayerPrecision::kLowBit && fp16_linears.count({layer, linear}) == 0;
  }
  int LinearBits(int64_t layer, int linear) const {  // code width of a quantized linear
    auto it = linear_bits.find({layer, linear});
    return it == linear_bits.end() ? 4 : it->second;
  }
  // Bits per weight of a linear's codes: its code width, or 16 when it stays FP16.
  int StorageBits(int64_t layer, int linear) const {
    return LinearIsLowBit(layer, linear) ? LinearBits(layer, linear) : 16;
  }
  // e.g. "fp16: [6,7] int4: [0,1,2,3,4,5] fp16 linears: [0.down]" (blocks labelled by their
  // manifest strings, as LayerPrecisionName spells them).
  std::string Describe() const;
  // "model.layers.<l>.<linear>" of every FP16 linear inside a low-bit block.
  std::vector<std::string> Fp16LinearNames() const;
};

}  // namespace accullm::sharding
