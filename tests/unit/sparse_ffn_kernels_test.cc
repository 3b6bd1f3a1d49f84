// The sparse FFN kernels (kernels/cpu/sparse_ffn_kernels.h) against the dense integer kernel
// they must reproduce: every code width, both zero-point kinds, both step kinds, odd shapes
// (outputs not a multiple of 16 or 128, several groups), kept sets at sparsity 0, 0.5, 0.9
// and 1 (random, or whole groups at once so that down skips groups), each variant (scalar,
// AVX2, AVX-512) called directly and through the dispatcher at every ISA level this CPU runs:
// the results must be the dense kernel's bits (memcmp).
#include "kernels/cpu/sparse_ffn_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/low_bit_int8_kernels.h"
#include "kernels/cpu/low_bit_tiles.h"
#include "kernels/cpu/sparse_ffn_layouts.h"

namespace accullm::kernels {
namespace {

struct Case {
  int bits;
  int64_t group, in, out;
  bool zeros;           // asymmetric, with the widest fraction bits the width allows
  bool scale_codes;     // 8-bit steps + row steps instead of F16 steps
  bool negative_steps;  // some steps < 0: down may not skip empty groups
};

std::string CaseName(const Case& c) {
  return std::to_string(c.bits) + "bit_g" + std::to_string(c.group) + "_in" + std::to_string(c.in) + "_out" +
         std::to_string(c.out) + (c.zeros ? "_zeros" : "_sym") + (c.scale_codes ? "_u8scales" : "_f16scales") +
         (c.negative_steps ? "_negsteps" : "");
}
void PrintTo(const Case& c, std::ostream* os) { *os << CaseName(c); }

struct OwnedMatrix {
  std::vector<uint8_t> codes, zeros, scale_codes;
  std::vector<uint16_t> scales, row_scales;
  LowBitMatrix m;
};

OwnedMatrix RandomMatrix(const Case& c, int64_t out, int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  OwnedMatrix w;
  const int64_t groups = in / c.group;
  w.codes.assign(static_cast<size_t>(out * CodeRowBytes(in, c.bits)), 0);
  std::uniform_int_distribution<int> code(0, (1 << c.bits) - 1);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) WriteCode(w.codes.data() + o * CodeRowBytes(in, c.bits), i, c.bits, code(rng));
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  std::bernoulli_distribution flip(c.negative_steps ? 0.3 : 0.0);
  auto step = [&] { return F32ToF16(flip(rng) ? -scale(rng) : scale(rng)); };
  const int frac = ZeroFractionBits(4, c.bits);
  if (c.zeros) {
    std::uniform_int_distribution<int> zero(0, ((1 << c.bits) - 1) << frac);
    for (int64_t i = 0; i < out * groups; ++i) w.zeros.push_back(static_cast<uint8_t>(std::min(255, zero(rng))));
  }
  if (c.scale_codes) {
    std::uniform_int_distribution<int> sc(0, 255);
    for (int64_t i = 0; i < out * groups; ++i) w.scale_codes.push_back(static_cast<uint8_t>(sc(rng)));
    for (int64_t o = 0; o < out; ++o) w.row_scales.push_back(step());
  } else {
    for (int64_t i = 0; i < out * groups; ++i) w.scales.push_back(step());
  }
  w.m.codes = w.codes.data();
  w.m.scales = c.scale_codes ? nullptr : w.scales.data();
  w.m.zeros = c.zeros ? w.zeros.data() : nullptr;
  w.m.out = out;
  w.m.in = in;
  w.m.group = c.group;
  w.m.zero_frac_bits = c.zeros ? frac : 0;
  w.m.scale_codes = c.scale_codes ? w.scale_codes.data() : nullptr;
  w.m.row_scales = c.scale_codes ? w.row_scales.data() : nullptr;
  w.m.bits = c.bits;
  return w;
}

std::vector<float> RandomActivations(int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(in));
  for (auto& v : x) v = normal(rng);
  x[3 % x.size()] = 40.f;  // a large channel, as real activations have
  return x;
}

// The kept neurons of `n` at `sparsity` (the share skipped), in a random order. `by_group`
// keeps or skips whole groups of `group` neurons (what makes down skip groups).
std::vector<int32_t> KeptSet(int64_t n, int64_t group, double sparsity, bool by_group, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> kept;
  if (by_group) {
    std::vector<int32_t> groups(static_cast<size_t>(n / group));
    std::iota(groups.begin(), groups.end(), 0);
    std::shuffle(groups.begin(), groups.end(), rng);
    groups.resize(static_cast<size_t>(std::lround((1.0 - sparsity) * static_cast<double>(groups.size()))));
    for (int32_t g : groups)
      for (int64_t j = 0; j < group; ++j) kept.push_back(static_cast<int32_t>(g * group + j));
  } else {
    kept.resize(static_cast<size_t>(n));
    std::iota(kept.begin(), kept.end(), 0);
    std::shuffle(kept.begin(), kept.end(), rng);
    kept.resize(static_cast<size_t>(std::lround((1.0 - sparsity) * static_cast<double>(n))));
  }
  std::shuffle(kept.begin(), kept.end(), rng);
  return kept;
}

// Empty vectors compare without memcmp: their data() may be null, undefined even for 0 bytes (UBSan).
bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

struct Sparsity {
  double skipped;
  bool by_group;
};
const Sparsity kSparsities[] = {{0.0, false}, {0.5, false}, {0.9, false}, {1.0, false}, {0.5, true}, {0.7, true}};

class SparseFfnKernelsTest : public ::testing::TestWithParam<Case> {};

TEST_P(SparseFfnKernelsTest, GateUpKeptRowsMatchTheDenseKernelBitForBit) {
  const Case c = GetParam();
  OwnedMatrix w = RandomMatrix(c, c.out, c.in, 7);  // rows = neurons
  ASSERT_EQ(LowBitTilesRefusal(w.m), "");
  Int8Activations xq;
  const std::vector<float> x = RandomActivations(c.in, 11);
  QuantizeInt8Blocks(x.data(), 1, c.in, c.group, nullptr, xq);
  std::vector<float> dense(static_cast<size_t>(c.out), -1.f), dense_tiles(dense.size(), -2.f);
  LowBitInt8RowsScalar(w.m, xq, 0, c.out, dense.data(), c.out);
  const LowBitTiles tiles = TileLowBitMatrix(w.m);
  LowBitInt8Rows(w.m, tiles, xq, 0, tiles.tiles, dense_tiles.data(), c.out);
  ASSERT_TRUE(SameBits(dense, dense_tiles));

  // Filled in two ranges, as threads would.
  SparseRowsLayout layout = AllocateSparseRows(w.m);
  FillSparseRows(w.m, c.out / 2, c.out, layout);
  FillSparseRows(w.m, 0, c.out / 2, layout);
  for (const Sparsity& s : kSparsities) {
    const std::vector<int32_t> kept = KeptSet(c.out, c.group, s.skipped, s.by_group, 5);
    const int64_t n = static_cast<int64_t>(kept.size());
    std::vector<float> want(kept.size());
    for (size_t k = 0; k < kept.size(); ++k) want[k] = dense[static_cast<size_t>(kept[k])];
    const std::string at = "sparsity " + std::to_string(s.skipped) + (s.by_group ? " by group" : "");
    std::vector<float> got(kept.size(), -1.f);
    SparseRowsInt8Scalar(layout, xq, kept.data(), 0, n, got.data());
    EXPECT_TRUE(SameBits(got, want)) << "scalar, " << at;
    std::fill(got.begin(), got.end(), -1.f);
    if (SparseRowsInt8Avx512(layout, xq, kept.data(), 0, n, got.data())) {
      EXPECT_TRUE(SameBits(got, want)) << "avx512, " << at;
    }
    std::fill(got.begin(), got.end(), -1.f);
    if (SparseRowsInt8Avx2(layout, xq, kept.data(), 0, n, got.data())) {
      EXPECT_TRUE(SameBits(got, want)) << "avx2, " << at;
    }
    for (Isa isa : SupportedIsas()) {
      ScopedIsaForTesting level(isa);
      std::fill(got.begin(), got.end(), -1.f);
      // Split at a point that is not a multiple of 16, as an uneven thread split would.
      const int64_t split = std::min<int64_t>(n, 21);
      SparseRowsInt8(layout, xq, kept.data(), 0, split, got.data());
      SparseRowsInt8(layout, xq, kept.data(), split, n, got.data());
      EXPECT_TRUE(SameBits(got, want)) << "dispatched at " << IsaName(isa) << ", " << at;
    }
  }
}

TEST_P(SparseFfnKernelsTest, GateUpWithEveryRowKeptInOrderIsTheDenseKernel) {
  const Case c = GetParam();
  OwnedMatrix w = RandomMatrix(c, c.out, c.in, 17);
  Int8Activations xq;
  const std::vector<float> x = RandomActivations(c.in, 19);
  QuantizeInt8Blocks(x.data(), 1, c.in, c.group, nullptr, xq);
  const LowBitTiles tiles = TileLowBitMatrix(w.m);
  const SparseRowsLayout layout = MakeSparseRows(w.m);
  std::vector<int32_t> all(static_cast<size_t>(c.out));
  std::iota(all.begin(), all.end(), 0);
  for (Isa isa : SupportedIsas()) {
    ScopedIsaForTesting level(isa);
    std::vector<float> dense(static_cast<size_t>(c.out), -1.f), sparse(dense.size(), -2.f);
    LowBitInt8Rows(w.m, tiles, xq, 0, tiles.tiles, dense.data(), c.out);
    SparseRowsInt8(layout, xq, all.data(), 0, c.out, sparse.data());
    EXPECT_TRUE(SameBits(dense, sparse)) << IsaName(isa);
  }
}

// Gate and up side by side (MakeSparsePairRows): row 2j must be gate's row j and 2j + 1 up's,
// each exactly the separate layout's bytes, and the pair kernels must give each matrix's
// dense bits for the kept neurons (gate and up are different random matrices, so a swapped
// or shifted pairing fails).
TEST_P(SparseFfnKernelsTest, GateUpPairRowsMatchTheDenseKernelsBitForBit) {
  const Case c = GetParam();
  OwnedMatrix gate = RandomMatrix(c, c.out, c.in, 43), up = RandomMatrix(c, c.out, c.in, 47);
  ASSERT_EQ(SparsePairRefusal(gate.m, up.m), "");
  Int8Activations xq;
  const std::vector<float> x = RandomActivations(c.in, 53);
  QuantizeInt8Blocks(x.data(), 1, c.in, c.group, nullptr, xq);
  std::vector<float> dense_gate(static_cast<size_t>(c.out)), dense_up(dense_gate.size());
  LowBitInt8RowsScalar(gate.m, xq, 0, c.out, dense_gate.data(), c.out);
  LowBitInt8RowsScalar(up.m, xq, 0, c.out, dense_up.data(), c.out);

  SparseRowsLayout pair = AllocateSparsePairRows(gate.m, up.m);  // filled in two ranges
  FillSparsePairRows(gate.m, up.m, c.out / 3, c.out, pair);
  FillSparsePairRows(gate.m, up.m, 0, c.out / 3, pair);
  const SparseRowsLayout gate_rows = MakeSparseRows(gate.m), up_rows = MakeSparseRows(up.m);
  ASSERT_EQ(pair.out, 2 * c.out);
  ASSERT_EQ(pair.row_stride, gate_rows.row_stride);
  EXPECT_EQ(pair.bytes(), gate_rows.bytes() + up_rows.bytes() - 4 * static_cast<size_t>(gate_rows.row_stride) -
                              (gate_rows.row_scales.empty() ? 0 : 4));  // one zero row fewer
  for (int64_t j = 0; j < c.out; ++j) {
    const size_t row_bytes = 4 * static_cast<size_t>(pair.row_stride);
    ASSERT_EQ(std::memcmp(pair.row(2 * j), gate_rows.row(j), row_bytes), 0) << "gate row " << j;
    ASSERT_EQ(std::memcmp(pair.row(2 * j + 1), up_rows.row(j), row_bytes), 0) << "up row " << j;
  }
  for (int64_t k = 0; k < pair.row_stride; ++k) ASSERT_EQ(pair.row(pair.out)[k], 0u) << "the zero row";

  for (const Sparsity& s : kSparsities) {
    const std::vector<int32_t> kept = KeptSet(c.out, c.group, s.skipped, s.by_group, 59);
    const int64_t n = static_cast<int64_t>(kept.size());
    std::vector<float> want_gate(kept.size()), want_up(kept.size());
    for (size_t k = 0; k < kept.size(); ++k) {
      want_gate[k] = dense_gate[static_cast<size_t>(kept[k])];
      want_up[k] = dense_up[static_cast<size_t>(kept[k])];
    }
    const std::string at = "sparsity " + std::to_string(s.skipped) + (s.by_group ? " by group" : "");
    std::vector<float> g(kept.size()), u(kept.size());
    auto reset = [&] {
      std::fill(g.begin(), g.end(), -1.f);
      std::fill(u.begin(), u.end(), -1.f);
    };
    reset();
    SparsePairRowsInt8Scalar(pair, xq, kept.data(), 0, n, g.data(), u.data());
    EXPECT_TRUE(SameBits(g, want_gate) && SameBits(u, want_up)) << "scalar, " << at;
    reset();
    if (SparsePairRowsInt8Avx512(pair, xq, kept.data(), 0, n, g.data(), u.data())) {
      EXPECT_TRUE(SameBits(g, want_gate) && SameBits(u, want_up)) << "avx512, " << at;
    }
    reset();
    if (SparsePairRowsInt8Avx2(pair, xq, kept.data(), 0, n, g.data(), u.data())) {
      EXPECT_TRUE(SameBits(g, want_gate) && SameBits(u, want_up)) << "avx2, " << at;
    }
    for (Isa isa : SupportedIsas()) {
      ScopedIsaForTesting level(isa);
      reset();
      const int64_t split = std::min<int64_t>(n, 21);  // not a multiple of 16, as a thread split may be
      SparsePairRowsInt8(pair, xq, kept.data(), 0, split, g.data(), u.data());
      SparsePairRowsInt8(pair, xq, kept.data(), split, n, g.data(), u.data());
      EXPECT_TRUE(SameBits(g, want_gate) && SameBits(u, want_up)) << "dispatched at " << IsaName(isa) << ", " << at;
      // Up alone (CATS: the gate ran dense): the up half of each pair.
      reset();
      SparsePairRowsInt8(pair, xq, kept.data(), 0, n, nullptr, u.data());
      EXPECT_TRUE(SameBits(u, want_up)) << "up only, dispatched at " << IsaName(isa) << ", " << at;
      EXPECT_TRUE(std::all_of(g.begin(), g.end(), [](float v) { return v == -1.f; })) << "gate written without gate";
    }
  }
}

TEST(SparseFfnLayoutsTest, PairRefusesGateAndUpOfDifferentFormats) {
  const Case c{4, 32, 96, 20, true, false, false};
  OwnedMatrix gate = RandomMatrix(c, c.out, c.in, 1), up = RandomMatrix(c, c.out, c.in, 2);
  EXPECT_EQ(SparsePairRefusal(gate.m, up.m), "");
  OwnedMatrix eight = RandomMatrix({8, 32, 96, 20, true, false, false}, c.out, c.in, 3);
  EXPECT_NE(SparsePairRefusal(gate.m, eight.m), "");
  OwnedMatrix symmetric = RandomMatrix({4, 32, 96, 20, false, false, false}, c.out, c.in, 4);
  EXPECT_NE(SparsePairRefusal(gate.m, symmetric.m), "");
  OwnedMatrix codes = RandomMatrix({4, 32, 96, 20, true, true, false}, c.out, c.in, 5);
  EXPECT_NE(SparsePairRefusal(gate.m, codes.m), "");
  OwnedMatrix taller = RandomMatrix(c, c.out + 1, c.in, 6);
  EXPECT_NE(SparsePairRefusal(gate.m, taller.m), "");
}

TEST_P(SparseFfnKernelsTest, DownOverKeptNeuronsMatchesTheDenseKernelOnTheMaskedInput) {
  const Case c = GetParam();
  // Down: `out` outputs (the model's hidden size) over `in` neurons; swap the case's shape so
  // that outputs are not a multiple of 128 either.
  const int64_t neurons = c.in, outputs = c.out + 130;
  OwnedMatrix w = RandomMatrix(c, outputs, neurons, 23);
  ASSERT_EQ(LowBitTilesRefusal(w.m), "");
  const LowBitTiles tiles = TileLowBitMatrix(w.m);
  SparseColumnsLayout layout = AllocateSparseColumns(w.m);
  ASSERT_EQ(layout.steps_finite_nonnegative, !c.negative_steps);
  FillSparseColumns(w.m, 1, layout.blocks(), layout);
  FillSparseColumns(w.m, 0, 1, layout);
  const std::vector<float> h = RandomActivations(neurons, 29);
  for (const Sparsity& s : kSparsities) {
    const std::string at = "sparsity " + std::to_string(s.skipped) + (s.by_group ? " by group" : "");
    std::vector<float> masked(h.size(), 0.f);
    for (int32_t j : KeptSet(neurons, c.group, s.skipped, s.by_group, 31)) masked[j] = h[j];
    Int8Activations xq;
    QuantizeInt8Blocks(masked.data(), 1, neurons, c.group, nullptr, xq);
    std::vector<float> want(static_cast<size_t>(outputs), -1.f), dense_tiles(want.size(), -2.f);
    LowBitInt8RowsScalar(w.m, xq, 0, outputs, want.data(), outputs);
    LowBitInt8Rows(w.m, tiles, xq, 0, tiles.tiles, dense_tiles.data(), outputs);
    ASSERT_TRUE(SameBits(want, dense_tiles)) << at;
    SparseNeurons nonzero;
    FindNonzeroNeurons(xq, nonzero);
    if (s.skipped == 1.0) {
      EXPECT_TRUE(nonzero.neurons.empty());
    }
    for (int32_t j : nonzero.neurons) EXPECT_NE(masked[j], 0.f) << "a skipped neuron is read, " << at;

    std::vector<float> got(want.size(), -1.f);
    SparseDownInt8Scalar(layout, xq, nonzero, 0, layout.blocks(), got.data());
    EXPECT_TRUE(SameBits(got, want)) << "scalar, " << at;
    std::fill(got.begin(), got.end(), -1.f);
    if (SparseDownInt8Avx512(layout, xq, nonzero, 0, layout.blocks(), got.data())) {
      EXPECT_TRUE(SameBits(got, want)) << "avx512, " << at;
    }
    std::fill(got.begin(), got.end(), -1.f);
    if (SparseDownInt8Avx2(layout, xq, nonzero, 0, layout.blocks(), got.data())) {
      EXPECT_TRUE(SameBits(got, want)) << "avx2, " << at;
    }
    for (Isa isa : SupportedIsas()) {
      ScopedIsaForTesting level(isa);
      std::fill(got.begin(), got.end(), -1.f);
      for (int64_t b = 0; b < layout.blocks(); ++b)  // block by block, as a thread split would
        SparseDownInt8(layout, xq, nonzero, b, b + 1, got.data());
      EXPECT_TRUE(SameBits(got, want)) << "dispatched at " << IsaName(isa) << ", " << at;
    }
  }
}

// One token through a joint layout's kernels: x quantized for gate/up, half the neurons kept
// at random, and the masked h quantized for down with its nonzero neurons.
struct OneToken {
  Int8Activations xq, hq;
  std::vector<int32_t> kept;
  SparseNeurons nonzero;
  OneToken(int64_t hidden, int64_t neurons, int64_t group, uint32_t seed) {
    const std::vector<float> x = RandomActivations(hidden, seed);
    QuantizeInt8Blocks(x.data(), 1, hidden, group, nullptr, xq);
    kept = KeptSet(neurons, group, 0.5, false, seed + 1);
    std::vector<float> masked(static_cast<size_t>(neurons), 0.f);
    const std::vector<float> h = RandomActivations(neurons, seed + 2);
    for (int32_t j : kept) masked[j] = h[j];
    QuantizeInt8Blocks(masked.data(), 1, neurons, group, nullptr, hq);
    FindNonzeroNeurons(hq, nonzero);
  }
  // Down over layouts a and b (the dispatched kernel, or the scalar reference) gives the same bits.
  bool DownSameBits(const SparseColumnsLayout& a, const SparseColumnsLayout& b, bool scalar = false) const {
    std::vector<float> ya(static_cast<size_t>(a.out), -1.f), yb(ya);
    auto run = scalar ? SparseDownInt8Scalar : SparseDownInt8;
    run(a, hq, nonzero, 0, a.blocks(), ya.data());
    run(b, hq, nonzero, 0, b.blocks(), yb.data());
    return SameBits(ya, yb);
  }
};

// Gate, up and down in one layout (MakeSparseFfn): unit j must hold exactly the pair layout's
// rows 2j, 2j + 1 and then the columns layout's strip of neuron j, its steps and zeros the
// columns layout's; and the kernels read it to the same bits as the separate layouts.
TEST_P(SparseFfnKernelsTest, JointLayoutHoldsThePairRowsAndTheDownStripsBitForBit) {
  const Case c = GetParam();
  const int64_t hidden = c.in, neurons = c.in, outputs = c.out + 130;  // neurons: whole groups for down
  OwnedMatrix gate = RandomMatrix(c, neurons, hidden, 61), up = RandomMatrix(c, neurons, hidden, 67);
  OwnedMatrix down = RandomMatrix(c, outputs, neurons, 71);
  ASSERT_EQ(SparseFfnRefusal(&gate.m, up.m, down.m), "");
  SparseFfnLayouts joint = AllocateSparseFfn(&gate.m, up.m, down.m);  // filled in two ranges each
  FillSparseFfnRows(&gate.m, up.m, neurons / 3, neurons, joint);
  FillSparseFfnColumns(down.m, 1, joint.down.blocks(), joint);
  FillSparseFfnRows(&gate.m, up.m, 0, neurons / 3, joint);
  FillSparseFfnColumns(down.m, 0, 1, joint);
  const SparseFfnLayouts moved = std::move(joint);  // the strips travel with their rows
  const SparseRowsLayout pair = MakeSparsePairRows(gate.m, up.m);
  const SparseColumnsLayout columns = MakeSparseColumns(down.m);
  ASSERT_EQ(moved.rows.row_stride, pair.row_stride);
  ASSERT_EQ(moved.down.strip_bytes, columns.strip_bytes);
  EXPECT_TRUE(moved.down.codes.empty());
  const size_t row_bytes = 4 * static_cast<size_t>(pair.row_stride);
  for (int64_t r = 0; r <= pair.out; ++r)  // the zero row included
    ASSERT_EQ(std::memcmp(moved.rows.row(r), pair.row(r), row_bytes), 0) << "row " << r;
  for (int64_t j = 0; j < neurons; ++j) {
    ASSERT_EQ(moved.down.strip(j), reinterpret_cast<const uint8_t*>(moved.rows.row(2 * j) + 2 * pair.row_stride))
        << "strip " << j << " follows its rows";
    ASSERT_EQ(std::memcmp(moved.down.strip(j), columns.strip(j), static_cast<size_t>(columns.strip_bytes)), 0)
        << "strip " << j;
  }
  EXPECT_TRUE(moved.down.scales == columns.scales && moved.down.scale_codes == columns.scale_codes &&
              moved.down.row_scales == columns.row_scales && moved.down.zeros == columns.zeros);
  EXPECT_EQ(moved.rows.bytes() + moved.down.bytes(), pair.bytes() + columns.bytes());  // moved, not added

  const OneToken t(hidden, neurons, c.group, 73);
  const int64_t n = static_cast<int64_t>(t.kept.size());
  for (Isa isa : SupportedIsas()) {
    ScopedIsaForTesting level(isa);
    std::vector<float> g(t.kept.size(), -1.f), u(g), want_g(g), want_u(g);
    SparsePairRowsInt8(moved.rows, t.xq, t.kept.data(), 0, n, g.data(), u.data());
    SparsePairRowsInt8(pair, t.xq, t.kept.data(), 0, n, want_g.data(), want_u.data());
    EXPECT_TRUE(SameBits(g, want_g) && SameBits(u, want_u)) << "gate/up at " << IsaName(isa);
    EXPECT_TRUE(t.DownSameBits(moved.down, columns)) << "down at " << IsaName(isa);
  }
  EXPECT_TRUE(t.DownSameBits(moved.down, columns, /*scalar=*/true)) << "down, scalar";
}

// The same with up's rows alone (CATS and the product rule: the gate ran dense over its tiles).
TEST_P(SparseFfnKernelsTest, JointLayoutOfUpAloneHoldsUpsRowsAndTheDownStripsBitForBit) {
  const Case c = GetParam();
  const int64_t hidden = c.in, neurons = c.in, outputs = c.out + 130;
  OwnedMatrix up = RandomMatrix(c, neurons, hidden, 89), down = RandomMatrix(c, outputs, neurons, 97);
  ASSERT_EQ(SparseFfnRefusal(nullptr, up.m, down.m), "");
  SparseFfnLayouts joint = AllocateSparseFfn(nullptr, up.m, down.m);
  FillSparseFfnRows(nullptr, up.m, neurons / 2, neurons, joint);
  FillSparseFfnRows(nullptr, up.m, 0, neurons / 2, joint);
  FillSparseFfnColumns(down.m, 0, joint.down.blocks(), joint);
  const SparseRowsLayout rows = MakeSparseRows(up.m);
  const SparseColumnsLayout columns = MakeSparseColumns(down.m);
  ASSERT_EQ(joint.rows.out, neurons);
  const size_t row_bytes = 4 * static_cast<size_t>(rows.row_stride);
  for (int64_t r = 0; r <= rows.out; ++r)
    ASSERT_EQ(std::memcmp(joint.rows.row(r), rows.row(r), row_bytes), 0) << "row " << r;
  for (int64_t j = 0; j < neurons; ++j) {
    ASSERT_EQ(joint.down.strip(j), reinterpret_cast<const uint8_t*>(joint.rows.row(j) + rows.row_stride));
    ASSERT_EQ(std::memcmp(joint.down.strip(j), columns.strip(j), static_cast<size_t>(columns.strip_bytes)), 0)
        << "strip " << j;
  }
  EXPECT_EQ(joint.rows.bytes() + joint.down.bytes(), rows.bytes() + columns.bytes());

  const OneToken t(hidden, neurons, c.group, 101);
  const int64_t n = static_cast<int64_t>(t.kept.size());
  for (Isa isa : SupportedIsas()) {
    ScopedIsaForTesting level(isa);
    std::vector<float> u(t.kept.size(), -1.f), want_u(u);
    SparseRowsInt8(joint.rows, t.xq, t.kept.data(), 0, n, u.data());
    SparseRowsInt8(rows, t.xq, t.kept.data(), 0, n, want_u.data());
    EXPECT_TRUE(SameBits(u, want_u)) << "up at " << IsaName(isa);
    EXPECT_TRUE(t.DownSameBits(joint.down, columns)) << "down at " << IsaName(isa);
  }
  std::vector<float> u(t.kept.size(), -1.f), want_u(u);
  SparseRowsInt8Scalar(joint.rows, t.xq, t.kept.data(), 0, n, u.data());
  SparseRowsInt8Scalar(rows, t.xq, t.kept.data(), 0, n, want_u.data());
  EXPECT_TRUE(SameBits(u, want_u)) << "up, scalar";
}

TEST(SparseFfnLayoutsTest, JointRefusesADownWhoseNeuronsAreNotUpsRows) {
  const Case c{4, 32, 96, 20, true, false, false};
  OwnedMatrix gate = RandomMatrix(c, 64, c.in, 1), up = RandomMatrix(c, 64, c.in, 2);
  EXPECT_EQ(SparseFfnRefusal(&gate.m, up.m, RandomMatrix(c, c.in, 64, 3).m), "");
  EXPECT_EQ(SparseFfnRefusal(nullptr, up.m, RandomMatrix(c, c.in, 64, 3).m), "");
  EXPECT_NE(SparseFfnRefusal(&gate.m, up.m, RandomMatrix(c, c.in, 96, 4).m), "");
  EXPECT_NE(SparseFfnRefusal(nullptr, up.m, RandomMatrix(c, c.in, 96, 4).m), "");
  OwnedMatrix symmetric = RandomMatrix({4, 32, 96, 20, false, false, false}, 64, c.in, 5);
  EXPECT_NE(SparseFfnRefusal(&gate.m, symmetric.m, RandomMatrix(c, c.in, 64, 6).m), "");
}

TEST(SparseFfnLayoutsTest, DownStripPositionsCoverEveryCodeOnce) {
  for (int bits : {4, 8}) {
    SparseColumnsLayout w;
    w.bits = bits;
    w.out = w.out_padded = 256;
    w.strip_bytes = bits <= 4 ? 128 : 256;
    std::vector<int> hits(static_cast<size_t>(2 * w.strip_bytes), 0);
    for (int64_t o = 0; o < w.out; ++o) {
      const SparseStripPosition p = SparseDownStripPosition(w, o);
      ASSERT_LT(p.byte, w.strip_bytes);
      ++hits[static_cast<size_t>(2 * p.byte + (p.high_nibble ? 1 : 0))];
    }
    int64_t used = 0;
    for (int hit : hits) {
      EXPECT_LE(hit, 1);
      used += hit;
    }
    EXPECT_EQ(used, w.out);
  }
}

// Every activation at the block maximum: Σq = 127 · 512 per group, beyond 16 bits, which the
// SIMD kernels' 16-bit multiply-add of zero · Σx cannot take (they must fall back to vpmulld).
TEST(SparseFfnKernelsTest, GroupSumsBeyondSixteenBitsMatchTheDenseKernel) {
  const Case c{4, 512, 1024, 24, true, false, false};
  OwnedMatrix w = RandomMatrix(c, c.out, c.in, 41);
  ASSERT_EQ(LowBitTilesRefusal(w.m), "");
  const std::vector<float> x(static_cast<size_t>(c.in), 1.f);
  Int8Activations xq;
  QuantizeInt8Blocks(x.data(), 1, c.in, c.group, nullptr, xq);
  ASSERT_GT(xq.sums[0], 32767);
  std::vector<float> want(static_cast<size_t>(c.out), -1.f);
  LowBitInt8RowsScalar(w.m, xq, 0, c.out, want.data(), c.out);
  const SparseRowsLayout rows = MakeSparseRows(w.m);
  std::vector<int32_t> all(static_cast<size_t>(c.out));
  std::iota(all.begin(), all.end(), 0);
  // Down over the same matrix as if its rows were outputs and its columns neurons.
  const SparseColumnsLayout columns = MakeSparseColumns(w.m);
  SparseNeurons nonzero;
  FindNonzeroNeurons(xq, nonzero);
  for (Isa isa : SupportedIsas()) {
    ScopedIsaForTesting level(isa);
    std::vector<float> got(want.size(), -2.f);
    SparseRowsInt8(rows, xq, all.data(), 0, c.out, got.data());
    EXPECT_TRUE(SameBits(got, want)) << "gate/up at " << IsaName(isa);
    std::fill(got.begin(), got.end(), -2.f);
    SparseDownInt8(columns, xq, nonzero, 0, columns.blocks(), got.data());
    EXPECT_TRUE(SameBits(got, want)) << "down at " << IsaName(isa);
  }
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (int bits : {3, 4, 5, 8})
    for (bool zeros : {false, true})
      for (bool scale_codes : {false, true}) cases.push_back({bits, 32, 96, 37, zeros, scale_codes, false});
  cases.push_back({4, 64, 256, 16, true, false, false});
  cases.push_back({4, 128, 512, 33, true, false, false});
  cases.push_back({4, 32, 640, 150, true, false, false});  // rows of 100 words: padded to 112
  cases.push_back({4, 40, 200, 21, true, true, false});    // 5 chunks per group
  cases.push_back({8, 64, 192, 50, true, false, false});
  cases.push_back({6, 32, 128, 45, true, true, false});
  cases.push_back({3, 128, 256, 17, false, true, false});
  cases.push_back({4, 32, 128, 40, true, false, true});
  cases.push_back({8, 32, 96, 19, false, true, true});
  // Groups whose Σx may not fit 16 bits (group · 128 > 32767): zero · Σx takes vpmulld.
  cases.push_back({4, 512, 1024, 20, true, false, false});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, SparseFfnKernelsTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return CaseName(info.param); });

}  // namespace
}  // namespace accullm::kernels
