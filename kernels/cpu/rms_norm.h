// RMSNorm (Llama's input and final norms).
#pragma once

#include <cstdint>

namespace accullm::kernels {

// `n` rows of width `d`: out[r] = x[r] / sqrt(mean(x[r]²) + eps) * w. out may equal x.
void RmsNorm(const float* x, const float* w, int64_t n, int64_t d, double eps, float* out);
void RmsNormScalar(const float* x, const float* w, int64_t n, int64_t d, double eps, float* out);

}  // namespace accullm::kernels
