// Drift check against a pack's canaries: each canary prompt runs through the served model and
// its last-position distribution is compared with the full-precision logits the pack stored
// when it was made (KL divergence and whether the top-1 token agrees). A serving process
// exports the result, so a wrong pack, a corrupted file or a kernel bug shows on dashboards.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/transformer.h"

namespace accullm::quant {

struct CanaryResult {
  std::string prompt;
  double kl = 0;            // KL(P_full_precision || P_served) at the last prompt position
  bool top1_match = false;  // the same most likely next token
  // False when the served (or stored) logits hold NaN or Inf: the check failed outright, with
  // kl = +Inf and top1_match = false, so it cannot pass for a perfect match.
  bool finite = true;
};

// Empty when the model is not a pack or the pack has no canaries.
absl::StatusOr<std::vector<CanaryResult>> CheckCanaries(model::Transformer& model);

}  // namespace accullm::quant
