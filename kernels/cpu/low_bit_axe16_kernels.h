// 16-bit accumulation for the integer-dot kernels (low_bit_int8_kernels.h), for matrices
// quantized under an accumulator guarantee (AXE, quant/axe.h: `accullm quantize
// --accumulator-bits P` with P ≤ 16), on AVX2 CPUs without VNNI: there the 32-bit kernel
// widens every vpmaddubsw result with a second multiply (vpmaddwd); this one adds the 16-bit
// results with vpaddw and widens once per group. AVX-512 VNNI (vpdpbusd accumulates in 32
// bits at no extra cost) and the scalar level keep the 32-bit kernels.
//
// What AXE guarantees, and why it covers these sums. The quantizer keeps, per output row and
// group, the integer weights v = code − zero (integer zero points, 4-bit codes) within an L1
// budget: 128 · Σ_group |v| ≤ 2^(P−1) − 1. The budget is per group, not per tile: `--tile T`
// only changes what quant/axe.h's exhaustive check reports (tile sums and running sums of
// tiles, the last of which is the whole group's sum, so a pack passing it also meets the
// group's L1 bound). Hence every sum of v·x over ANY subset of a group's columns, |x| ≤ 128,
// fits P bits, whatever T and however the kernel splits the group. The kernel's sums are
// such subsets: a row's 32-bit lane holds two 16-bit lanes; lane k sums the group's columns
// i with (i >> 1) & 1 == k (vpmaddubsw adds columns 2e and 2e+1 into 16-bit element e, both
// in the nibble layout and the byte layout of low_bit_tiles.h).
//
// Arithmetic per output row o, activation row r, group g, lane k (every step mod 2^16):
//   S_k = Σ_{i∈k} code_i · x_i   vpmaddubsw (codes ≤ 127, |x| ≤ 127: pairs ≤ 32258, no
//                                saturation) then vpaddw, which wraps: raw codes × x do leave
//                                16 bits, which does not matter, as only the last value counts
//   D_k = S_k − zero · Σ_{i∈k} x_i   vpmullw + vpsubw, once per group
//       ≡ Σ_{i∈k} v_i · x_i, and |Σ v·x| ≤ 127 · Σ_{i∈k} |v_i| < 2^15 makes D_k that exact value
//   d = D_0 + D_1                vpmaddwd with ones: the once-per-group widening
// d is the very int32 the 32-bit kernel computes as Σ code·x − zero·Σ x, and y follows with
// the same float operations in the same order, so the result is bit-identical to the 32-bit
// path and to the scalar reference (LowBitInt8RowsScalar). What exactness needs is exactly
// that every (o, r, g, k) lane sum Σ v·x fits int16: CountAxe16Overflows counts those that do
// not (verify mode); Axe16WorstLaneL1 proves it for every x ahead of time.
//
// Axe16Variant::kSignedWeights is the textbook form (the issue's): |x| as the unsigned
// operand and sign(x)·v (vpsignb on the centred codes) as the signed one, so no partial sum
// ever leaves 16 bits. Exact under the same condition; it costs a vpsubb per code vector and
// a vpabsb + vpsignb per code vector and activation row instead of one vpmullw per group, so
// kWrapped is what runs; the other is kept for tests and the benchmark comparison. Measured
// against the 32-bit AVX2 kernel (docs/benchmarks.md, one thread, groups 32–128): kWrapped
// 1.25–1.34× at 64-row prefill and 1.09–1.15× at decode, kSignedWeights 0.79–0.85×.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/low_bit_tiles.h"
#include "kernels/low_bit_matrix.h"

namespace accullm::kernels {

enum class Axe16Variant { kWrapped, kSignedWeights };

// The largest Σ|v| one 16-bit lane may hold: 127 · 258 = 32766 ≤ 32767 (activations are in
// [-127, 127], int8_activations.h).
inline constexpr int64_t kAxe16MaxLaneL1 = 32767 / 127;

// "" when the 16-bit kernels can run `w`'s format: codes of at most 7 bits (vpmaddubsw's
// pairs) and integer zero points (v = code − zero is an integer); else why not.
std::string Axe16FormatRefusal(const LowBitTiles& w);

// The largest Σ|code − zero| over one 16-bit lane (row, group, k) of tiles
// [tile_begin, tile_end), padding rows excluded. The 16-bit kernels are exact for every
// input when this is ≤ kAxe16MaxLaneL1 over all tiles (and the format is accepted).
int64_t Axe16WorstLaneL1(const LowBitTiles& w, int64_t tile_begin, int64_t tile_end);

// Both checks over the whole matrix (serial; LowBitLinear runs the bound in parallel).
bool Axe16Fits(const LowBitTiles& w);

// What the kWrapped kernel subtracts per group: Σ x over each lane k of every block (group)
// of every row of x, one int32 per (row, block) holding lane 0 in its low and lane 1 in its
// high 16 bits (mod 2^16). Once per call, before the threads split the tiles.
void Axe16LaneSums(const Int8Activations& x, std::vector<int32_t>& out);
void Axe16LaneSumsScalar(const Int8Activations& x, std::vector<int32_t>& out);  // the reference

// The AVX2 16-bit kernel: same contract as LowBitInt8RowsAvx2 (false: not built or not
// supported by this CPU; nothing written), plus `lane_sums` from Axe16LaneSums(x) (unused
// by kSignedWeights: may be null there). Only for tiles that Axe16Fits.
bool LowBitInt8RowsAxe16Avx2(const LowBitTiles& w, const Int8Activations& x, const int32_t* lane_sums,
                             int64_t tile_begin, int64_t tile_end, float* y, int64_t y_stride,
                             Axe16Variant variant = Axe16Variant::kWrapped);

// Verify mode: the lane sums the 16-bit kernels form for x and outputs [o_begin, o_end) of
// `m` (integer zero points), computed in 64 bits; counts those outside int16 (each would make
// the 16-bit kernel's output wrong). Zero for a matrix that Axe16Fits, whatever x.
struct Axe16Overflows {
  int64_t lane_sums = 0;     // lane sums checked
  int64_t out_of_range = 0;  // ... outside [-32768, 32767]
  int64_t largest = 0;       // the largest |lane sum| seen (the headroom left below 2^15)
};
Axe16Overflows CountAxe16Overflows(const LowBitMatrix& m, const Int8Activations& x, int64_t o_begin, int64_t o_end);

// ACCULLM_AXE16=off|on|verify, read once (default on; anything else warns on stderr and
// keeps on): off runs the 32-bit kernels everywhere (A/B comparisons), verify also runs
// CountAxe16Overflows beside every 16-bit call, adds to Axe16VerifyTotals() and prints the
// totals on stderr at exit ("ACCULLM_AXE16=verify: N lane sums checked, M outside int16, …").
enum class Axe16Mode { kOff, kOn, kVerify };
Axe16Mode ActiveAxe16Mode();
// Test hook; returns the previous mode.
Axe16Mode SetAxe16ModeForTesting(Axe16Mode mode);
// What verify mode has counted in this process (the overflow metric: always 0 for a pack
// whose guarantee holds).
Axe16Overflows Axe16VerifyTotals();

// Whether LowBitInt8RowsAxe16 runs the 16-bit kernel now: ActiveIsa() is kAvx2 (AVX-512
// VNNI accumulates in 32 bits at no cost; the scalar level is the reference) and the mode is
// not off. A caller computes Axe16LaneSums only then.
bool Axe16KernelActive();

// The dispatch for a linear whose tiles Axe16Fits: the 16-bit AVX2 kernel when
// Axe16KernelActive() (`lane_sums` from Axe16LaneSums(x)), else LowBitInt8Rows (lane_sums
// unused). In verify mode it also counts the overflows of the outputs it computed.
void LowBitInt8RowsAxe16(const LowBitMatrix& m, const LowBitTiles& w, const Int8Activations& x,
                         const int32_t* lane_sums, int64_t tile_begin, int64_t tile_end, float* y, int64_t y_stride);

}  // namespace accullm::kernels
