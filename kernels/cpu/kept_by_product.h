// The trained guesser's keep decision (model/ffn_guesser.h) without its scores: the ascending
// neurons i with |SiLU(ĝ_i)·û_i| > threshold, where the product is formed exactly as
// SiluMulMasked forms it (silu_mul_mask.h: s = g / (1 + exp(−g)) with std::exp, then s·u).
//
// Why a kernel: the guesser predicts every neuron of a layer, so the scalar form pays one
// std::exp per neuron (5632 per token and layer at TinyLlama's shape, ~25% of the rank-32
// guesser's decode time in bench/sparse_ffn_bench) where the sparse FFN itself pays one per
// kept neuron.
//
// Why the SIMD variants decide exactly as the scalar one: they form an approximate product
// p' with the SIMD exp (vector_exp.h: within kVectorExpMaxRelativeError = 2.5e-7 of the true
// exp; glibc's expf within one ulp, 1.2e-7), whose relative distance to the scalar product is
// at most ~7.3e-7 (the two exps' 3.7e-7, plus 1 + e, the division and the multiply, each
// rounded in both forms: 3 · 2 · 2^−24); a neuron is decided from p' only when p' is outside
// [t·(1 − m), t·(1 + m)] with the margin m = kKeptByProductMargin (5.5× that bound); any other
// (a NaN included) is recomputed with the scalar expression. A threshold below
// kKeptByProductMinThreshold (where a product could be subnormal and the relative bound fail)
// or not finite runs the scalar form throughout.
// So every variant returns the same list, bit for bit of the decisions, on every CPU, and the
// thresholds a pack computed at quantize time (through FfnGuesser::Scores) hold at run time.
#pragma once

#include <cstdint>

namespace accullm::kernels {

inline constexpr float kKeptByProductMargin = 4e-6f;
inline constexpr float kKeptByProductMinThreshold = 1e-30f;

// kept[0 .. returned) = the ascending i < n with |SiLU(gate[i])·up[i]| > threshold. kept has
// room for n entries.
int64_t KeptByProduct(const float* gate, const float* up, int64_t n, float threshold, int32_t* kept);
int64_t KeptByProductScalar(const float* gate, const float* up, int64_t n, float threshold, int32_t* kept);
// -1 (nothing written) when not built or not supported by this CPU; else the count.
int64_t KeptByProductAvx512(const float* gate, const float* up, int64_t n, float threshold, int32_t* kept);
int64_t KeptByProductAvx2(const float* gate, const float* up, int64_t n, float threshold, int32_t* kept);

}  // namespace accullm::kernels
