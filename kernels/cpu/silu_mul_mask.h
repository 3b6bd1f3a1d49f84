// The activation masks of the sparse SwiGLU FFN: h_j = SiLU(gate_j)·up_j for a kept neuron j,
// exactly +0 otherwise. Three rules decide what is kept:
//  - CATS (arXiv 2404.08763): |SiLU(gate_j)| > threshold. It reads the gate alone, so the
//    sparse decode path (model/sparse_ffn.h) decides it after a dense gate and computes up_j
//    and the down column only for the survivors (KeptAboveThreshold);
//  - the product rule: CATS's gate test as a prefilter, then also |SiLU(gate_j)·up_j| >
//    product_threshold, the very quantity that defines a truly active neuron, so only down's
//    column is skipped for a neuron that passed the prefilter (ZeroSmallProducts);
//  - a kept list (a predictor's, model/ffn_neuron_selector.h): decided before the gate.
// The masked forms (SiluMulMasked, SiluMulKept) run after a dense gate and up: what a batch of
// several rows runs, and the reference the sparse decode path must equal bit for bit. Every
// kept value is s·up with s = g / (1 + exp(−g)), SiluMulScalar's expression, in all of them.
// Elementwise, so a row's mask depends only on that row: batch invariant.
#pragma once

#include <cmath>
#include <cstdint>

namespace accullm::kernels {

// SiLU as every masked form computes it (SiluMulScalar's expression).
inline float SiluOf(float g) { return g / (1.0f + std::exp(-g)); }

// Neurons kept by the mask, and (when counted) how many are truly active, i.e.
// |SiLU(gate_j)·up_j| > active_threshold, and how many of those the mask kept.
struct FfnMaskCounts {
  int64_t kept = 0;
  int64_t active = 0;
  int64_t kept_active = 0;
};

// The product test is off at this threshold (CATS alone): nothing is <= it, NaN neither.
inline constexpr float kNoProductThreshold = -1.0f;

// out[i] = s_i · up[i] when |s_i| > threshold and not |s_i · up[i]| <= product_threshold, else
// +0; s_i = SiLU(gate[i]) computed exactly as SiluMulScalar does (so kept entries have its
// bits). out may be gate. Returns the kept count.
int64_t SiluMulMasked(const float* gate, const float* up, int64_t n, float threshold, float product_threshold,
                      float* out);
// CATS alone (no product test).
inline int64_t SiluMulMasked(const float* gate, const float* up, int64_t n, float threshold, float* out) {
  return SiluMulMasked(gate, up, n, threshold, kNoProductThreshold, out);
}

// The same output, also counting the truly active neurons (the dense product's magnitude
// against active_threshold) for recall: |kept ∩ active| / |active|.
FfnMaskCounts SiluMulMaskedCounting(const float* gate, const float* up, int64_t n, float threshold,
                                    float product_threshold, float active_threshold, float* out);

// out[i] = s_i · up[i] for i in kept[0 .. count) (ascending, < n), +0 elsewhere; out may be
// gate. With count_active, also counts the truly active neurons against active_threshold.
FfnMaskCounts SiluMulKept(const float* gate, const float* up, int64_t n, const int32_t* kept, int64_t count,
                          bool count_active, float active_threshold, float* out);

// CATS after a dense gate, in two steps so that the exps run in the gate's parallel loop:
// silu[i] = s_i for i in [0, n) (what SiluMulMasked multiplies with up), then kept[0 ..
// returned) = the ascending i with |silu[i]| > threshold (branch-free).
void SiluOfRange(const float* gate, int64_t n, float* silu);
int64_t KeptAboveThreshold(const float* silu, int64_t n, float threshold, int32_t* kept);

// The sparse path's h for kept[k0 .. k1): h[kept[k]] = SiLU(gate[k]) · up[k], gate and up
// compact (entry k belongs to neuron kept[k]): SiluMulKept's value for that neuron.
void SiluMulScatter(const float* gate, const float* up, const int32_t* kept, int64_t k0, int64_t k1, float* h);

// The product rule's second test on the sparse path's h: h[kept[k]] = +0 where |h[kept[k]]| <=
// product_threshold, for k in [0, count). Returns how many stay (SiluMulMasked's count).
int64_t ZeroSmallProducts(const int32_t* kept, int64_t count, float product_threshold, float* h);

}  // namespace accullm::kernels
