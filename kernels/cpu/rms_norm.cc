#include "kernels/cpu/rms_norm.h"

#include <cmath>

#include "kernels/cpu/isa.h"

namespace accullm::kernels {

// The sum of squares runs in float, in index order, and eps is rounded to float first, as the
// PyTorch reference does (the fixture's logits are checked against it).
void RmsNormScalar(const float* x, const float* w, int64_t n, int64_t d, double eps, float* out) {
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * d;
    float* o = out + r * d;
    float ss = 0.f;
    for (int64_t i = 0; i < d; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(d) + static_cast<float>(eps));
    for (int64_t i = 0; i < d; ++i) o[i] = (xr[i] * inv) * w[i];
  }
}

void RmsNorm(const float* x, const float* w, int64_t n, int64_t d, double eps, float* out) {
  switch (ActiveIsa()) {
    case Isa::kAvx512:
    case Isa::kAvx2:  // no SIMD variant yet
    case Isa::kScalar: return RmsNormScalar(x, w, n, d, eps, out);
  }
}

}  // namespace accullm::kernels
