#include "kernels/cpu/silu_mul_mask.h"

#include <cmath>

namespace accullm::kernels {

// Scalar only: the FFN is bound by gate/up/down, and the mask is one exp per neuron, like
// SiluMul (which has no SIMD variant either). The expression matches SiluMulScalar term for
// term so that a kept neuron carries the dense bits.
int64_t SiluMulMasked(const float* gate, const float* up, int64_t n, float threshold, float* out) {
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float s = g / (1.0f + std::exp(-g));
    const bool keep = std::fabs(s) > threshold;
    out[i] = keep ? s * up[i] : 0.0f;
    kept += keep ? 1 : 0;
  }
  return kept;
}

FfnMaskCounts SiluMulMaskedCounting(const float* gate, const float* up, int64_t n, float threshold,
                                    float active_threshold, float* out) {
  FfnMaskCounts c;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float s = g / (1.0f + std::exp(-g));
    const float product = s * up[i];
    const bool keep = std::fabs(s) > threshold;
    const bool active = std::fabs(product) > active_threshold;
    out[i] = keep ? product : 0.0f;
    c.kept += keep ? 1 : 0;
    c.active += active ? 1 : 0;
    c.kept_active += keep && active ? 1 : 0;
  }
  return c;
}

}  // namespace accullm::kernels
