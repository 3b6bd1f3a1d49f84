#include "kernels/cpu/softmax.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/isa.h"

namespace accullm::kernels {

// Normalised by one multiply with 1/sum (not a division per element): the attention this came
// from did so, and the fixture's logits pin those bits.
void SoftmaxScalar(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, x[j]);
  float sum = 0.f;
  for (int64_t j = 0; j < n; ++j) {
    x[j] = std::exp(x[j] - mx);
    sum += x[j];
  }
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < n; ++j) x[j] *= inv;
}

void Softmax(float* x, int64_t n) {
  switch (ActiveIsa()) {
    case Isa::kAvx512:
    case Isa::kAvx2:  // no SIMD variant yet
    case Isa::kScalar: return SoftmaxScalar(x, n);
  }
}

}  // namespace accullm::kernels
