// The 16-bit-accumulation kernels (kernels/cpu/low_bit_axe16_kernels.h) against the 32-bit
// ones: bit for bit on matrices the AXE quantizer wrote (every group, tile and accumulator
// width it takes, odd shapes, FP16 outlier columns, worst-case activations), on hand-made
// matrices of the other code widths that meet the bound, and the bound's checks: the static
// one refuses a forged matrix that breaks it, verify mode counts the lane sums that leave
// 16 bits (and those are exactly where the 16-bit kernel goes wrong).
#include "kernels/cpu/low_bit_axe16_kernels.h"

#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/thread_pool.h"
#include "gtest/gtest.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/low_bit_int8_kernels.h"
#include "quant/axe.h"
#include "quant/low_bit_quantizer.h"

namespace accullm::kernels {
namespace {

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool HaveAvx2() { return DetectedIsa() >= Isa::kAvx2; }

class ScopedAxe16Mode {
 public:
  explicit ScopedAxe16Mode(Axe16Mode mode) : previous_(SetAxe16ModeForTesting(mode)) {}
  ~ScopedAxe16Mode() { SetAxe16ModeForTesting(previous_); }

 private:
  Axe16Mode previous_;
};

// y from the 32-bit AVX2 kernel, the scalar reference, and both 16-bit variants: all must be
// the same bits. Returns false (with failures recorded) otherwise.
void ExpectAllPathsAgree(const LowBitMatrix& m, const Int8Activations& xq, const std::string& what) {
  const LowBitTiles tiles = TileLowBitMatrix(m, {.planes = false});  // the layout this kernel reads
  ASSERT_EQ(Axe16FormatRefusal(tiles), "") << what;
  ASSERT_LE(Axe16WorstLaneL1(tiles, 0, tiles.tiles), kAxe16MaxLaneL1) << what;
  ASSERT_TRUE(Axe16Fits(tiles)) << what;
  const size_t size = static_cast<size_t>(xq.rows * m.out);
  std::vector<float> reference(size, -1.f), wide(size, -2.f), wrapped(size, -3.f), signed_weights(size, -4.f);
  LowBitInt8RowsScalar(m, xq, 0, m.out, reference.data(), m.out);
  ASSERT_TRUE(LowBitInt8RowsAvx2(tiles, xq, 0, tiles.tiles, wide.data(), m.out));
  std::vector<int32_t> lanes, lanes_reference;
  Axe16LaneSums(xq, lanes);
  Axe16LaneSumsScalar(xq, lanes_reference);
  EXPECT_EQ(lanes, lanes_reference) << what;
  ASSERT_TRUE(
      LowBitInt8RowsAxe16Avx2(tiles, xq, lanes.data(), 0, tiles.tiles, wrapped.data(), m.out, Axe16Variant::kWrapped));
  ASSERT_TRUE(LowBitInt8RowsAxe16Avx2(tiles, xq, nullptr, 0, tiles.tiles, signed_weights.data(), m.out,
                                      Axe16Variant::kSignedWeights));
  EXPECT_TRUE(SameBits(wide, reference)) << what;
  EXPECT_TRUE(SameBits(wrapped, wide)) << what << ": 16-bit (wrapped) vs 32-bit";
  EXPECT_TRUE(SameBits(signed_weights, wide)) << what << ": 16-bit (signed weights) vs 32-bit";
  const Axe16Overflows n = CountAxe16Overflows(m, xq, 0, m.out);
  EXPECT_EQ(n.lane_sums, xq.rows * m.out * (m.in / m.group) * 2) << what;
  EXPECT_EQ(n.out_of_range, 0) << what;
}

// ---- Matrices written by the AXE quantizer ----

struct AxeCase {
  int accumulator_bits;
  int64_t group, tile, in, out, n;
  bool symmetric;
};

std::string CaseName(const AxeCase& c) {
  return "P" + std::to_string(c.accumulator_bits) + "_g" + std::to_string(c.group) + "_t" + std::to_string(c.tile) +
         "_in" + std::to_string(c.in) + "_out" + std::to_string(c.out) + "_n" + std::to_string(c.n) +
         (c.symmetric ? "_sym" : "_zeros");
}
void PrintTo(const AxeCase& c, std::ostream* os) { *os << CaseName(c); }

class Axe16QuantizedTest : public ::testing::TestWithParam<AxeCase> {};

TEST_P(Axe16QuantizedTest, SixteenBitPathEqualsThirtyTwoBitPathBitForBit) {
  if (!HaveAvx2()) GTEST_SKIP() << "this CPU has no AVX2";
  const AxeCase c = GetParam();
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.f, 0.02f);
  std::vector<float> w(static_cast<size_t>(c.out * c.in));
  for (auto& v : w) v = normal(rng);
  for (int64_t o = 0; o < c.out; o += 7) w[o * c.in + (o % c.in)] = 0.5f;  // heavy weights: the budget binds
  // Outlier input channels (kept FP16; their activations are exact, their codes the zero).
  const std::vector<int32_t> outliers = {3, static_cast<int32_t>(c.in / 2 + 1), static_cast<int32_t>(c.in - 2)};
  quant::QuantOptions o;
  o.method = quant::QuantMethod::kRtn;
  o.bits = 4;
  o.group_size = c.group;
  o.symmetric = c.symmetric;
  o.accumulator_bits = c.accumulator_bits;
  o.tile = c.tile;
  ThreadPool pool(1);
  auto q = quant::QuantizeMatrix(w.data(), c.out, c.in, nullptr, outliers, o, pool);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(quant::CheckAccumulator(*q, c.accumulator_bits, c.tile).overflowing_channels, 0);
  const LowBitMatrix m = q->view();

  std::vector<char> exact(static_cast<size_t>(c.in), 0);
  for (int32_t col : outliers) exact[col] = 1;
  std::vector<float> x(static_cast<size_t>(c.n * c.in));
  std::normal_distribution<float> act(0.f, 1.f);
  for (auto& v : x) v = act(rng);
  x[5 % x.size()] = 60.f;  // a large channel
  // The worst case for output row r (of the first rows): every activation ±max with the sign
  // of row r's weight, so each lane sum reaches 127 · Σ|v|, the bound's own extreme.
  for (int64_t r = 0; r < c.n && r < c.out; ++r) {
    for (int64_t i = 0; i < c.in; ++i) x[r * c.in + i] = q->IntegerWeight(r, i) < 0 ? -1.f : 1.f;
  }
  Int8Activations xq;
  QuantizeInt8BlocksScalar(x.data(), c.n, c.in, c.group, exact.data(), xq);
  ExpectAllPathsAgree(m, xq, CaseName(c));
}

INSTANTIATE_TEST_SUITE_P(
    AxeQuantizer, Axe16QuantizedTest,
    ::testing::Values(AxeCase{16, 32, 0, 96, 37, 1, false}, AxeCase{16, 32, 8, 256, 16, 5, true},
                      AxeCase{16, 64, 16, 192, 50, 3, false}, AxeCase{16, 64, 64, 128, 9, 64, true},
                      AxeCase{16, 128, 32, 384, 41, 1, false}, AxeCase{16, 128, 32, 256, 33, 6, true},
                      AxeCase{16, 128, 128, 512, 24, 64, false}, AxeCase{12, 128, 32, 256, 19, 4, false},
                      AxeCase{14, 64, 0, 320, 17, 2, true}),
    [](const auto& info) { return CaseName(info.param); });

// ---- Hand-made matrices of every code width the 16-bit kernels take ----

struct Owned {
  std::vector<uint8_t> codes, zeros;
  std::vector<uint16_t> scales;
  LowBitMatrix m;
};

// Integer weights v within the lane bound: Σ|v| ≤ kAxe16MaxLaneL1 per (row, group, lane).
// Row 0 spends each lane's budget in full with the largest magnitudes its codes allow (the
// edge: worst-case activations take its lane sums to 127 · 258 = 32766), the other rows draw
// small ones; `forge` breaks the bound instead on row 0's lane 0 of group 0 (+max everywhere).
Owned BoundedMatrix(int bits, int64_t group, int64_t in, int64_t out, bool zeros, bool forge, uint32_t seed) {
  std::mt19937 rng(seed);
  Owned w;
  const int64_t groups = in / group;
  const int maxq = (1 << bits) - 1;
  std::uniform_int_distribution<int> zero_dist(0, maxq);
  for (int64_t i = 0; i < out * groups; ++i) w.zeros.push_back(static_cast<uint8_t>(zero_dist(rng)));
  w.codes.assign(static_cast<size_t>(out * CodeRowBytes(in, bits)), 0);
  std::uniform_int_distribution<int> small(0, 3);
  for (int64_t o = 0; o < out; ++o) {
    uint8_t* row = w.codes.data() + o * CodeRowBytes(in, bits);
    for (int64_t g = 0; g < groups; ++g) {
      const int z = zeros ? w.zeros[o * groups + g] : 1 << (bits - 1);
      int64_t budget[2] = {kAxe16MaxLaneL1, kAxe16MaxLaneL1};
      for (int64_t i = g * group; i < (g + 1) * group; ++i) {
        int64_t& left = budget[(i >> 1) & 1];
        // Row 0 goes the way with more room; the others pick a sign where the code range allows.
        const bool up = o == 0 ? maxq - z >= z : (rng() & 1) != 0 && z < maxq;
        const int room = up || z == 0 ? maxq - z : z;
        int v = static_cast<int>(std::min<int64_t>(o == 0 ? room : std::min(room, small(rng)), left));
        if (!(up || z == 0)) v = -v;
        if (forge && o == 0 && g == 0 && ((i >> 1) & 1) == 0) v = maxq - z;
        left = std::max<int64_t>(0, left - std::abs(v));
        WriteCode(row, i, bits, z + v);
      }
    }
  }
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  for (int64_t i = 0; i < out * groups; ++i) w.scales.push_back(F32ToF16(scale(rng)));
  w.m.codes = w.codes.data();
  w.m.scales = w.scales.data();
  w.m.zeros = zeros ? w.zeros.data() : nullptr;
  w.m.out = out;
  w.m.in = in;
  w.m.group = group;
  w.m.bits = bits;
  w.m.zero_frac_bits = 0;
  return w;
}

// Random activations, except row 0: ±max with the sign of output row 0's integer weights
// (the worst case for its lane sums).
Int8Activations Activations(const LowBitMatrix& m, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(n * m.in));
  for (auto& v : x) v = normal(rng);
  for (int64_t i = 0; i < m.in; ++i) {
    const int zero = m.zeros != nullptr ? m.zeros[i / m.group] : 1 << (m.bits - 1);
    x[i] = ReadCode(m.codes, i, m.bits) < zero ? -1.f : 1.f;
  }
  Int8Activations xq;
  QuantizeInt8BlocksScalar(x.data(), n, m.in, m.group, nullptr, xq);
  return xq;
}

TEST(Axe16KernelsTest, EveryWidthUpToSevenBitsMatchesWhenTheBoundHolds) {
  if (!HaveAvx2()) GTEST_SKIP() << "this CPU has no AVX2";
  for (int bits = 3; bits <= 7; ++bits)
    for (int64_t group : {8, 32, 40, 64, 128})  // 8 and 40: lane sums by the scalar route
      for (bool zeros : {false, true})
        for (int64_t n : {1, 2, 4, 7}) {
          const Owned w = BoundedMatrix(bits, group, 2 * group, 16 * 2 + 5, zeros, false, 100 + bits);
          const Int8Activations xq = Activations(w.m, n, 200 + static_cast<uint32_t>(n));
          const std::string what = std::to_string(bits) + "bit_g" + std::to_string(group) +
                                   (zeros ? "_zeros" : "_sym") + "_n" + std::to_string(n);
          ExpectAllPathsAgree(w.m, xq, what);
          // Where the codes reach it, row 0 sits right at the bound: 127 · 258.
          const int64_t lane_columns = group / 2, room = (1 << (bits - 1));
          if (lane_columns * room >= kAxe16MaxLaneL1) {
            EXPECT_EQ(CountAxe16Overflows(w.m, xq, 0, 1).largest, 127 * kAxe16MaxLaneL1) << what;
          }
        }
}

TEST(Axe16KernelsTest, RefusesWhatItCannotRunExactly) {
  const Owned eight = BoundedMatrix(8, 32, 64, 16, true, false, 1);
  EXPECT_NE(Axe16FormatRefusal(TileLowBitMatrix(eight.m)), "");  // vpmaddubsw pairs would saturate
  Owned frac = BoundedMatrix(4, 32, 64, 16, true, false, 2);
  frac.m.zero_frac_bits = 4;  // fractional zero points: code − zero is no integer
  EXPECT_NE(Axe16FormatRefusal(TileLowBitMatrix(frac.m)), "");
  EXPECT_FALSE(Axe16Fits(TileLowBitMatrix(frac.m)));
  EXPECT_EQ(Axe16FormatRefusal(TileLowBitMatrix(BoundedMatrix(4, 32, 64, 16, true, false, 3).m)), "");
  // 5- and 6-bit codes in bit planes are not what it reads; as bytes they are.
  for (int bits : {5, 6}) {
    const Owned w = BoundedMatrix(bits, 32, 64, 16, true, false, 3);
    EXPECT_NE(Axe16FormatRefusal(TileLowBitMatrix(w.m)), "") << bits;
    EXPECT_EQ(Axe16FormatRefusal(TileLowBitMatrix(w.m, {.planes = false})), "") << bits;
  }
}

// A matrix that claims the guarantee but breaks it: row 0's even lane of group 0 holds +max
// on all 64 of its columns (4-bit symmetric: v = 7, Σ|v| = 448 > 258).
TEST(Axe16KernelsTest, ForgedMatrixIsRefusedAndVerifyModeCountsItsOverflows) {
  if (!HaveAvx2()) GTEST_SKIP() << "this CPU has no AVX2";
  const Owned w = BoundedMatrix(4, 128, 256, 21, false, true, 9);
  const LowBitTiles tiles = TileLowBitMatrix(w.m);
  EXPECT_EQ(Axe16WorstLaneL1(tiles, 0, 1), 448);
  EXPECT_GT(Axe16WorstLaneL1(tiles, 0, 1), kAxe16MaxLaneL1);
  EXPECT_LE(Axe16WorstLaneL1(tiles, 1, tiles.tiles), kAxe16MaxLaneL1);  // only the forged tile
  EXPECT_FALSE(Axe16Fits(tiles));

  // Activations that are +max where the forged weights are: the lane sum is 127 · 448.
  // The second activation row is small there (no overflow): 1 lane sum of 2 · 21 · 2 · 2 leaves.
  std::vector<float> x(static_cast<size_t>(2 * w.m.in));
  for (int64_t i = 0; i < w.m.in; ++i) {
    const bool forged_lane = ((i >> 1) & 1) == 0;
    x[i] = forged_lane ? 1.f : -0.01f;
    x[w.m.in + i] = forged_lane ? -0.01f : 1.f;
  }
  Int8Activations xq;
  QuantizeInt8BlocksScalar(x.data(), 2, w.m.in, w.m.group, nullptr, xq);
  const Axe16Overflows n = CountAxe16Overflows(w.m, xq, 0, w.m.out);
  EXPECT_EQ(n.out_of_range, 1);  // row 0 of x × output row 0, group 0, lane 0
  EXPECT_EQ(CountAxe16Overflows(w.m, xq, 1, w.m.out).out_of_range, 0);

  // And that is where the 16-bit kernel (which the checks keep away from this matrix) would
  // be wrong; everything else agrees.
  const size_t size = static_cast<size_t>(2 * w.m.out);
  std::vector<float> wide(size), narrow(size);
  ASSERT_TRUE(LowBitInt8RowsAvx2(tiles, xq, 0, tiles.tiles, wide.data(), w.m.out));
  std::vector<int32_t> lanes;
  Axe16LaneSums(xq, lanes);
  ASSERT_TRUE(LowBitInt8RowsAxe16Avx2(tiles, xq, lanes.data(), 0, tiles.tiles, narrow.data(), w.m.out));
  EXPECT_NE(wide[0], narrow[0]);
  for (size_t i = 1; i < size; ++i) EXPECT_EQ(wide[i], narrow[i]) << i;
}

TEST(Axe16KernelsTest, DispatchRunsSixteenBitsOnlyAtAvx2AndVerifyModeCounts) {
  const Owned w = BoundedMatrix(4, 64, 192, 40, true, false, 4);
  const LowBitTiles tiles = TileLowBitMatrix(w.m);
  ASSERT_TRUE(Axe16Fits(tiles));
  const Int8Activations xq = Activations(w.m, 3, 8);
  std::vector<float> want(static_cast<size_t>(3 * w.m.out)), got(want.size());
  LowBitInt8RowsScalar(w.m, xq, 0, w.m.out, want.data(), w.m.out);
  const int64_t lane_sums_per_call = 3 * w.m.out * (w.m.in / w.m.group) * 2;
  ScopedAxe16Mode verify(Axe16Mode::kVerify);
  for (Isa isa : SupportedIsas()) {
    ScopedIsaForTesting level(isa);
    const Axe16Overflows before = Axe16VerifyTotals();
    // Two thread-sized pieces, as a pool would split the tiles.
    EXPECT_EQ(Axe16KernelActive(), isa == Isa::kAvx2);
    std::vector<int32_t> lanes;
    Axe16LaneSums(xq, lanes);
    LowBitInt8RowsAxe16(w.m, tiles, xq, lanes.data(), 0, 1, got.data(), w.m.out);
    LowBitInt8RowsAxe16(w.m, tiles, xq, lanes.data(), 1, tiles.tiles, got.data(), w.m.out);
    EXPECT_TRUE(SameBits(got, want)) << IsaName(isa);
    const Axe16Overflows after = Axe16VerifyTotals();
    // Verify mode runs beside the 16-bit kernel only, which runs at AVX2 only.
    EXPECT_EQ(after.lane_sums - before.lane_sums, isa == Isa::kAvx2 ? lane_sums_per_call : 0) << IsaName(isa);
    EXPECT_EQ(after.out_of_range, before.out_of_range);
  }
  ScopedAxe16Mode off(Axe16Mode::kOff);
  EXPECT_FALSE(Axe16KernelActive());
}

}  // namespace
}  // namespace accullm::kernels
