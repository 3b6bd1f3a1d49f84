#include "kernels/cpu/rope.h"

#include <cmath>

#include "kernels/cpu/isa.h"

namespace accullm::kernels {

// The angle is computed in float32 like HF's (position · inv_freq in float), and each cos/sin
// once per frequency, shared by all heads.
void ApplyRopeScalar(float* x, int64_t num_heads, int64_t head_dim, const float* inv_freq, int64_t pos) {
  const int64_t half = head_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float angle = static_cast<float>(pos) * inv_freq[i];  // float32 like HF
    const float c = std::cos(angle), s = std::sin(angle);
    for (int64_t h = 0; h < num_heads; ++h) {
      float* v = x + h * head_dim;
      const float a = v[i], b = v[i + half];
      v[i] = a * c - b * s;
      v[i + half] = b * c + a * s;
    }
  }
}

void ApplyRope(float* x, int64_t num_heads, int64_t head_dim, const float* inv_freq, int64_t pos) {
  switch (ActiveIsa()) {
    case Isa::kAvx512:
    case Isa::kAvx2:  // no SIMD variant yet
    case Isa::kScalar: return ApplyRopeScalar(x, num_heads, head_dim, inv_freq, pos);
  }
}

}  // namespace accullm::kernels
