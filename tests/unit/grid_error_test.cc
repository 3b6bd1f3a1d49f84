// The quantizer's range-search error: the SIMD variant equals the scalar reference bit for
// bit (the same grid is picked on every machine), skipped weights and importance included.
#include "quant/grid_error.h"

#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace accullm::quant {
namespace {

TEST(GridErrorTest, SimdEqualsScalarReference) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.f, 0.02f);
  std::uniform_real_distribution<double> imp(0.1, 3.0);
  for (int64_t n : {32, 64, 128, 37, 8, 1}) {
    for (bool with_importance : {false, true}) {
      std::vector<float> w(static_cast<size_t>(n));
      std::vector<double> importance(static_cast<size_t>(n));
      std::unique_ptr<bool[]> skip(new bool[static_cast<size_t>(n) + 16]());
      for (int64_t i = 0; i < n; ++i) {
        w[i] = normal(rng);
        importance[i] = imp(rng);
        skip[i] = (i % 11) == 3;
      }
      for (float scale : {0.001f, 0.004f, 0.03f}) {
        for (float zero : {0.f, 7.5f, 8.f, 15.f}) {
          const GridCandidate g{scale, zero, 15.f};
          const double* im = with_importance ? importance.data() : nullptr;
          const double a = GridRoundingErrorScalar(w.data(), skip.get(), im, n, g);
          const double b = GridRoundingError(w.data(), skip.get(), im, n, g);
          EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0) << "n " << n << " scale " << scale << " zero " << zero;
          EXPECT_GT(a, 0.0);
        }
      }
    }
  }
}

TEST(GridErrorTest, ErrorIsZeroOnTheGridAndSkipsMarkedWeights) {
  std::vector<float> w = {0.f, 0.5f, -0.5f, 1.f, 100.f};  // 100 would clip badly
  bool skip[5 + 16] = {false, false, false, false, true};
  const GridCandidate g{0.5f, 4.f, 15.f};
  EXPECT_EQ(GridRoundingError(w.data(), skip, nullptr, 5, g), 0.0);
  skip[4] = false;
  EXPECT_GT(GridRoundingError(w.data(), skip, nullptr, 5, g), 1000.0);
}

}  // namespace
}  // namespace accullm::quant
