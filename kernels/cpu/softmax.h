// Softmax in place, max-subtracted so large scores cannot overflow exp.
#pragma once

#include <cstdint>

namespace accullm::kernels {

// x[0, n) ← exp(x - max) / sum(exp(x - max)); n >= 1.
void Softmax(float* x, int64_t n);
void SoftmaxScalar(float* x, int64_t n);

}  // namespace accullm::kernels
