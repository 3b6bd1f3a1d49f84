// The quantizer's range search: every candidate's error from the SIMD variant (grids computed
// in its lanes included) equals the scalar reference bit for bit, for every code width, grid
// kind and step format, so the same grid is picked on every machine.
#include "quant/range_search.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/isa.h"

namespace accullm::quant {
namespace {

struct Group {
  std::vector<float> w;
  std::vector<double> importance;
  std::unique_ptr<bool[]> skip;
};

Group MakeGroup(std::mt19937& rng, int64_t n, float sigma, int kind) {
  std::normal_distribution<float> normal(0.f, sigma);
  std::uniform_real_distribution<double> imp(0.1, 3.0);
  Group g;
  g.w.resize(static_cast<size_t>(n));
  g.importance.resize(static_cast<size_t>(n));
  g.skip.reset(new bool[static_cast<size_t>(n)]());
  for (int64_t i = 0; i < n; ++i) {
    float v = normal(rng);
    if (kind == 1) v = std::fabs(v);               // one-sided: lo = 0
    if (kind == 2) v = (i % 7 == 0) ? v * 9 : v;   // rare extremes: clipping pays
    if (kind == 3) v = std::nearbyint(v / sigma);  // on a coarse grid: ties and zero errors
    g.w[i] = v;
    g.importance[i] = imp(rng);
    g.skip[i] = (i % 11) == 3;
  }
  return g;
}

int64_t pruned_candidates = 0;  // over the whole test: pruning must have been exercised

void ExpectSameErrors(const Group& g, int64_t n, const GridFormat& f, const double* importance,
                      const std::string& what) {
  float lo, hi;
  GroupRange(g.w.data(), g.skip.get(), n, &lo, &hi);
  const int k = RangeSearchCandidates(f);
  std::vector<double> ref(static_cast<size_t>(k)), got(static_cast<size_t>(k), -1.0);
  RangeSearchErrorsScalar(g.w.data(), g.skip.get(), importance, n, lo, hi, f, ref.data());
  RangeSearchErrors(g.w.data(), g.skip.get(), importance, n, lo, hi, f, got.data());
  for (int c = 0; c < k; ++c)
    ASSERT_EQ(std::memcmp(&ref[c], &got[c], sizeof(double)), 0)
        << what << " candidate " << c << ": " << ref[c] << " vs " << got[c];
  // Pruned: exact, or +inf only where an earlier candidate's error is at most this one's.
  RangeSearchErrors(g.w.data(), g.skip.get(), importance, n, lo, hi, f, got.data(), /*prune=*/true);
  double earlier_min = INFINITY;
  for (int c = 0; c < k; ++c) {
    if (std::memcmp(&ref[c], &got[c], sizeof(double)) != 0) {
      ASSERT_TRUE(std::isinf(got[c]) && ref[c] >= earlier_min) << what << " pruned candidate " << c;
      ++pruned_candidates;
    }
    earlier_min = std::min(earlier_min, ref[c]);
  }
  const Grid a = SearchGrid(g.w.data(), g.skip.get(), importance, n, f, true);
  kernels::Isa isa = kernels::ActiveIsa();
  kernels::ScopedIsaForTesting scalar(kernels::Isa::kScalar);
  const Grid b = SearchGrid(g.w.data(), g.skip.get(), importance, n, f, true);
  EXPECT_EQ(std::memcmp(&a.scale, &b.scale, 4), 0) << what << " at " << kernels::IsaName(isa);
  EXPECT_EQ(a.scale_code, b.scale_code) << what;
  EXPECT_EQ(a.stored, b.stored) << what;
  EXPECT_EQ(a.zero, b.zero) << what;
}

TEST(RangeSearchTest, EveryIsaEqualsScalarReferenceForEveryGridKind) {
  std::mt19937 rng(5);
  for (kernels::Isa isa : kernels::SupportedIsas()) {
    kernels::ScopedIsaForTesting scoped(isa);
    for (int bits = 3; bits <= 8; ++bits) {
      for (int format = 0; format < 5; ++format) {
        // symmetric; integer zero; fractional zero; fractional + 8-bit steps; 8-bit steps
        // under a row step far smaller than the group's (lround's shortcut refused: the
        // scalar grids are taken for that batch).
        GridFormat f;
        f.bits = bits;
        f.symmetric = format == 0;
        f.frac_bits = format >= 2 ? std::min(4, 8 - bits) : 0;
        for (int64_t n : {32, 64, 128, 37, 8, 1}) {
          for (int kind = 0; kind < 4; ++kind) {
            for (float sigma : {1e-6f, 0.02f, 3.f}) {
              Group g = MakeGroup(rng, n, sigma, kind);
              f.row_scale = format == 3 ? sigma * 0.3f : format == 4 ? sigma * 1e-9f : 0.f;
              for (bool with_importance : {false, true}) {
                const std::string what = std::string(kernels::IsaName(isa)) + " bits " + std::to_string(bits) +
                                         " format " + std::to_string(format) + " n " + std::to_string(n) + " kind " +
                                         std::to_string(kind) + " sigma " + std::to_string(sigma);
                ExpectSameErrors(g, n, f, with_importance ? g.importance.data() : nullptr, what);
              }
            }
          }
        }
      }
    }
  }
  if (kernels::SupportedIsas().back() >= kernels::Isa::kAvx512) {
    EXPECT_GT(pruned_candidates, 1000);
  }
}

TEST(RangeSearchTest, ZeroPointTiesRoundAwayFromZeroAsLround) {
  // hi - lo = 1.875: the min/max step is 0.125 exactly, and -lo · 16 / 0.125 = 132.5: the
  // stored zero point of the first candidate is a tie, which lround takes up (133).
  std::vector<float> w = {-1.03515625f, 0.83984375f, 0.1f, -0.3f, 0.2f, 0.7f, -0.9f, 0.05f};
  GridFormat f;
  f.frac_bits = 4;
  EXPECT_EQ(CandidateGrid(w[0], w[1], f, 0).stored, 133);
  for (kernels::Isa isa : kernels::SupportedIsas()) {
    kernels::ScopedIsaForTesting scoped(isa);
    Group g;
    g.w = w;
    g.skip.reset(new bool[8]());
    ExpectSameErrors(g, 8, f, nullptr, kernels::IsaName(isa));
  }
}

TEST(RangeSearchTest, ErrorIsZeroOnTheGridAndSkipsMarkedWeights) {
  std::vector<float> w = {0.f, 0.5f, -0.5f, 1.f, 100.f};  // 100 would clip badly
  bool skip[5] = {false, false, false, false, true};
  Grid g;
  g.scale = 0.5f;
  g.zero = 4.f;
  g.maxq = 15;
  EXPECT_EQ(GridRoundingError(w.data(), skip, nullptr, 5, g), 0.0);
  skip[4] = false;
  EXPECT_GT(GridRoundingError(w.data(), skip, nullptr, 5, g), 1000.0);
}

TEST(RangeSearchTest, SearchClipsARareExtremeAndNeverDoesWorse) {
  // 31 weights in [-1, 1] and one at 8: the min/max grid wastes most codes on the extreme.
  std::vector<float> w(32);
  for (int i = 0; i < 32; ++i) w[i] = -1.f + 2.f * static_cast<float>(i) / 31.f;
  w[7] = 8.f;
  std::unique_ptr<bool[]> skip(new bool[32]());
  GridFormat f;
  f.frac_bits = 4;
  const Grid plain = SearchGrid(w.data(), skip.get(), nullptr, 32, f, false);
  const Grid searched = SearchGrid(w.data(), skip.get(), nullptr, 32, f, true);
  EXPECT_LT(searched.scale, plain.scale);
  EXPECT_LT(GridRoundingError(w.data(), skip.get(), nullptr, 32, searched),
            GridRoundingError(w.data(), skip.get(), nullptr, 32, plain));
}

}  // namespace
}  // namespace accullm::quant
