// A weight group's quantization grid, and the range search that picks it: the low and high
// ends of the group's min/max range are shrunk independently (16 factors each, one factor when
// symmetric) and the grid with the least importance-weighted squared rounding error wins:
// clipping a rare extreme weight often buys finer steps for all the others.
//
// The search evaluates 256 candidate grids per group (16×16), so it is most of an RTN pack's
// time. Each candidate's error is summed in one fixed order — 8 interleaved double lanes
// (element i into lane i mod 8), then ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)) — and the first
// candidate with the least error wins, so every variant picks the same grid on every machine
// and a pack does not depend on the CPU that wrote it. The SIMD variant computes 16
// candidates at once, one per lane (their grids included), in exactly the scalar reference's
// float and double operations.
#pragma once

#include <cstdint>

namespace accullm::quant {

// value(code) = (code - zero) * scale, code in [0, maxq] (maxq = 2^bits - 1), with
// zero = stored / 2^frac_bits (stored fits a byte).
struct Grid {
  float scale = 0.f;
  int scale_code = 0;  // 8-bit steps: scale = U8GroupScale(row scale, scale_code)
  int stored = 8;      // the zero point as stored
  float zero = 8.f;    // ... and its value
  int maxq = 15;       // the largest code
};

// How a group's grid is encoded.
struct GridFormat {
  int bits = 4;
  bool symmetric = false;
  int frac_bits = 0;      // asymmetric: fraction bits of the stored zero point
  float row_scale = 0.f;  // > 0: 8-bit steps relative to this (F16) row step; else F16 steps
};

// The grid for a range [lo, hi] (lo <= 0 <= hi).
Grid GridForRange(float lo, float hi, const GridFormat& f);

// The min/max range of the group's weights not skipped, 0 included.
void GroupRange(const float* w, const bool* skip, int64_t n, float* lo, float* hi);

// Candidates of the search, in search order: 256 (a-major: the low end's factor, then the
// high end's), 16 when symmetric.
int RangeSearchCandidates(const GridFormat& f);
// Candidate k's grid for the range [lo, hi].
Grid CandidateGrid(float lo, float hi, const GridFormat& f, int k);

// The weighted squared rounding error of one candidate grid:
// Σ_i importance[i] · (w[i] − value(nearest code of w[i]))², skipping i where skip[i];
// importance (>= 0: a Hessian diagonal) null = all ones. Codes: clamp(nearbyint(w / scale + zero), 0, maxq).
double GridRoundingError(const float* w, const bool* skip, const double* importance, int64_t n, const Grid& g);

// errors[k] = GridRoundingError of CandidateGrid(lo, hi, f, k), +inf where that grid has no
// positive step (not a candidate). With `prune`, also +inf where the candidate cannot be the
// first of least error (a lower bound of its error already reaches an earlier candidate's):
// the search's choice is the same, it skips most of the losers' work. Dispatched (AVX-512)
// and the scalar reference (which never prunes).
void RangeSearchErrors(const float* w, const bool* skip, const double* importance, int64_t n, float lo, float hi,
                       const GridFormat& f, double* errors, bool prune = false);
void RangeSearchErrorsScalar(const float* w, const bool* skip, const double* importance, int64_t n, float lo, float hi,
                             const GridFormat& f, double* errors);

// The group's grid: the min/max range's, or with `search` the first candidate of least error.
Grid SearchGrid(const float* w, const bool* skip, const double* importance, int64_t n, const GridFormat& f,
                bool search);

}  // namespace accullm::quant
