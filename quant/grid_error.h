// The weighted squared rounding error of one weight group on one candidate grid: the inner
// loop of the quantizer's range search (16×16 candidate grids per group, so it dominates an
// RTN pack's time). Summed in one fixed order — 8 interleaved double lanes (element i into
// lane i mod 8), then ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)) — which the SIMD variant follows
// exactly, so every machine picks the same grid and writes the same pack.
#pragma once

#include <cstdint>

namespace accullm::quant {

struct GridCandidate {
  float scale = 0.f;  // > 0
  float zero = 0.f;   // value of code c is (c - zero) · scale
  float maxq = 15.f;  // codes 0 .. maxq
};

// Σ_i importance[i] · (w[i] − value(nearest code of w[i]))², skipping i where skip[i];
// importance null = all ones. Codes: clamp(nearbyint(w / scale + zero), 0, maxq).
double GridRoundingError(const float* w, const bool* skip, const double* importance, int64_t n, const GridCandidate& g);
double GridRoundingErrorScalar(const float* w, const bool* skip, const double* importance, int64_t n,
                               const GridCandidate& g);

}  // namespace accullm::quant
