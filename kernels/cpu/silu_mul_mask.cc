#include "kernels/cpu/silu_mul_mask.h"

#include <cmath>

namespace accullm::kernels {

// Scalar only: the FFN is bound by gate/up/down, and the mask is one exp per neuron, like
// SiluMul (which has no SIMD variant either). The expression matches SiluMulScalar term for
// term so that a kept neuron carries the dense bits.
int64_t SiluMulMasked(const float* gate, const float* up, int64_t n, float threshold, float product_threshold,
                      float* out) {
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float s = SiluOf(g);
    const float product = s * up[i];
    const bool keep = std::fabs(s) > threshold && !(std::fabs(product) <= product_threshold);
    out[i] = keep ? product : 0.0f;
    kept += keep ? 1 : 0;
  }
  return kept;
}

FfnMaskCounts SiluMulMaskedCounting(const float* gate, const float* up, int64_t n, float threshold,
                                    float product_threshold, float active_threshold, float* out) {
  FfnMaskCounts c;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float s = SiluOf(g);
    const float product = s * up[i];
    const bool keep = std::fabs(s) > threshold && !(std::fabs(product) <= product_threshold);
    const bool active = std::fabs(product) > active_threshold;
    out[i] = keep ? product : 0.0f;
    c.kept += keep ? 1 : 0;
    c.active += active ? 1 : 0;
    c.kept_active += keep && active ? 1 : 0;
  }
  return c;
}

FfnMaskCounts SiluMulKept(const float* gate, const float* up, int64_t n, const int32_t* kept, int64_t count,
                          bool count_active, float active_threshold, float* out) {
  FfnMaskCounts c;
  c.kept = count;
  int64_t next = 0;  // kept[next] is the next kept neuron
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float s = SiluOf(g);
    const float product = s * up[i];
    const bool keep = next < count && kept[next] == i;
    next += keep ? 1 : 0;
    if (count_active) {
      const bool active = std::fabs(product) > active_threshold;
      c.active += active ? 1 : 0;
      c.kept_active += keep && active ? 1 : 0;
    }
    out[i] = keep ? product : 0.0f;
  }
  return c;
}

void SiluOfRange(const float* gate, int64_t n, float* silu) {
  for (int64_t i = 0; i < n; ++i) silu[i] = SiluOf(gate[i]);
}

int64_t KeptAboveThreshold(const float* silu, int64_t n, float threshold, int32_t* kept) {
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    // Written unconditionally, advanced only when kept: no branch to mispredict at ~50%.
    kept[count] = static_cast<int32_t>(i);
    count += std::fabs(silu[i]) > threshold ? 1 : 0;
  }
  return count;
}

void SiluMulScatter(const float* gate, const float* up, const int32_t* kept, int64_t k0, int64_t k1, float* h) {
  for (int64_t k = k0; k < k1; ++k) h[kept[k]] = SiluOf(gate[k]) * up[k];
}

int64_t ZeroSmallProducts(const int32_t* kept, int64_t count, float product_threshold, float* h) {
  int64_t stay = 0;
  for (int64_t k = 0; k < count; ++k) {
    float& v = h[kept[k]];
    const bool keep = !(std::fabs(v) <= product_threshold);
    v = keep ? v : 0.0f;
    stay += keep ? 1 : 0;
  }
  return stay;
}

}  // namespace accullm::kernels
