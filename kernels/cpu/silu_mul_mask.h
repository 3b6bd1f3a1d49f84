// The CATS activation mask of the SwiGLU FFN (arXiv 2404.08763), computed after a dense gate
// and up: h_j = SiLU(gate_j)·up_j where |SiLU(gate_j)| > threshold, else exactly +0. The rule
// reads the gate alone, so a sparse kernel can decide it before computing up_j and the
// down column; these functions are its reference (and the runtime until such kernels are
// wired in). Elementwise, so a row's mask depends only on that row: batch invariant.
#pragma once

#include <cstdint>

namespace accullm::kernels {

// Neurons kept by the mask, and (when counted) how many are truly active, i.e.
// |SiLU(gate_j)·up_j| > active_threshold, and how many of those the mask kept.
struct FfnMaskCounts {
  int64_t kept = 0;
  int64_t active = 0;
  int64_t kept_active = 0;
};

// out[i] = |s_i| > threshold ? s_i · up[i] : +0, s_i = SiLU(gate[i]) computed exactly as
// SiluMulScalar does (so kept entries have its bits). out may be gate. Returns the kept count.
int64_t SiluMulMasked(const float* gate, const float* up, int64_t n, float threshold, float* out);

// The same output, also counting the truly active neurons (the dense product's magnitude
// against active_threshold) for recall: |kept ∩ active| / |active|.
FfnMaskCounts SiluMulMaskedCounting(const float* gate, const float* up, int64_t n, float threshold,
                                    float active_threshold, float* out);

}  // namespace accullm::kernels
