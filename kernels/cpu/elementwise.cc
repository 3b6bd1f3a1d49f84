#include "kernels/cpu/elementwise.h"

#include <cmath>

#include "kernels/cpu/isa.h"

namespace accullm::kernels {

void SiluMulScalar(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];  // SiLU(gate) * up
  }
}

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  switch (ActiveIsa()) {
    case Isa::kAvx512:
    case Isa::kAvx2:  // no SIMD variant yet
    case Isa::kScalar: return SiluMulScalar(gate, up, n, out);
  }
}

void AddInPlaceScalar(float* x, const float* delta, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += delta[i];
}

void AddInPlace(float* x, const float* delta, int64_t n) {
  switch (ActiveIsa()) {
    case Isa::kAvx512:
    case Isa::kAvx2:  // no SIMD variant yet
    case Isa::kScalar: return AddInPlaceScalar(x, delta, n);
  }
}

}  // namespace accullm::kernels
