// Rotary position embedding in Hugging Face's rotate_half convention: within each head,
// dimension i rotates with dimension i + head_dim/2 by angle pos · inv_freq[i]. The
// frequencies (theta, llama3 scaling) are the model's business (model/rope.h); this op only
// rotates.
#pragma once

#include <cstdint>

namespace accullm::kernels {

// Rotates `num_heads` heads of `head_dim` (even) stored contiguously at `x`, for position
// `pos`; inv_freq has head_dim / 2 entries.
void ApplyRope(float* x, int64_t num_heads, int64_t head_dim, const float* inv_freq, int64_t pos);
void ApplyRopeScalar(float* x, int64_t num_heads, int64_t head_dim, const float* inv_freq, int64_t pos);

}  // namespace accullm::kernels
