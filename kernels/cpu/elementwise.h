// Element-wise ops of the Llama block: the SwiGLU gate and the residual add.
#pragma once

#include <cstdint>

namespace accullm::kernels {

// out[i] = SiLU(gate[i]) · up[i] = gate[i] / (1 + exp(-gate[i])) · up[i], i < n. out may be gate.
void SiluMul(const float* gate, const float* up, int64_t n, float* out);
void SiluMulScalar(const float* gate, const float* up, int64_t n, float* out);

// x[i] += delta[i], i < n (the residual stream).
void AddInPlace(float* x, const float* delta, int64_t n);
void AddInPlaceScalar(float* x, const float* delta, int64_t n);

}  // namespace accullm::kernels
