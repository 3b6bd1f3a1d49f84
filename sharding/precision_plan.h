// The precision plan: which transformer blocks keep FP16 weights and which are INT4.
// quant/ fills it (measured sensitivity under a budget, or an explicit override);
// the pack records it; the sharding planner will weigh layers by it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace accullm {

enum class LayerPrecision { kFp16, kInt4 };
const char* LayerPrecisionName(LayerPrecision p);  // "fp16" / "int4"
absl::StatusOr<LayerPrecision> ParseLayerPrecision(const std::string& name);

struct PrecisionPlan {
  std::vector<LayerPrecision> layers;

  static PrecisionPlan AllInt4(int64_t num_layers);
  // "first:2,last:2", "0,3,7", "first:1,5" → those blocks FP16, the rest INT4. "none" = all INT4.
  static absl::StatusOr<PrecisionPlan> FromFp16Spec(const std::string& spec, int64_t num_layers);
  int64_t CountInt4() const;
  std::string Describe() const;  // e.g. "fp16: 0,7; int4: 1-6"
};

}  // namespace accullm
