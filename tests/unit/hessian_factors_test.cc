// The pooled factorisations equal the textbook references bit for bit, with any thread count:
// GPTQ's packs must not depend on the machine's core count.
#include "quant/hessian_factors.h"

#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace accullm::quant {
namespace {

// X Xᵀ / rows + a little diagonal: symmetric positive definite, with the spread of
// magnitudes calibration Hessians have.
std::vector<double> RandomSpd(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  const int64_t rows = n + 8;
  std::vector<double> x(static_cast<size_t>(rows * n));
  for (int64_t i = 0; i < n; ++i) {
    const double channel = 1.0 + 20.0 * (i % 17 == 0);  // a few loud channels
    for (int64_t r = 0; r < rows; ++r) x[r * n + i] = normal(rng) * channel;
  }
  std::vector<double> h(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t r = 0; r < rows; ++r) s += x[r * n + i] * x[r * n + j];
      h[i * n + j] = s / static_cast<double>(rows);
    }
  for (int64_t i = 0; i < n; ++i) h[i * n + i] += 0.01;
  return h;
}

bool SameBytes(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

TEST(HessianFactorsTest, CholeskyEqualsReferenceAtEveryThreadCount) {
  ThreadPool one(1), two(2);
  for (int64_t n : {1, 5, 37, 64, 131, 400}) {
    const std::vector<double> h = RandomSpd(n, static_cast<uint32_t>(n));
    std::vector<double> ref = h;
    ASSERT_TRUE(CholeskyLowerReference(ref, n));
    for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &one, &two}) {
      std::vector<double> got = h;
      ASSERT_TRUE(CholeskyLower(got, n, pool));
      EXPECT_TRUE(SameBytes(ref, got)) << "n " << n << " threads " << (pool ? pool->size() : 0);
    }
  }
}

TEST(HessianFactorsTest, InverseFactorEqualsReferenceAtEveryThreadCount) {
  ThreadPool one(1), two(2);
  for (int64_t n : {1, 3, 4, 7, 37, 64, 130, 257}) {
    const std::vector<double> h = RandomSpd(n, static_cast<uint32_t>(100 + n));
    auto ref = InverseHessianUpperFactorReference(h, n);
    ASSERT_TRUE(ref.ok()) << ref.status();
    for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &one, &two}) {
      auto got = InverseHessianUpperFactor(h, n, pool);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_TRUE(SameBytes(*ref, *got)) << "n " << n << " threads " << (pool ? pool->size() : 0);
    }
    // Uᵀ U is H⁻¹: H (Uᵀ U) e₀ = e₀ (the factor is right, not only equal to the reference).
    // U is upper triangular, so (Uᵀ U)[k][0] = U[0][k] · U[0][0].
    for (int64_t i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t k = 0; k < n; ++k) s += h[i * n + k] * (*ref)[k] * (*ref)[0];
      EXPECT_NEAR(s, i == 0 ? 1.0 : 0.0, 1e-6) << "n " << n << " row " << i;
    }
  }
}

TEST(HessianFactorsTest, IndefiniteMatricesAreRefused) {
  ThreadPool two(2);
  std::vector<double> a = {1, 2, 2, 1};  // eigenvalues 3 and -1
  EXPECT_FALSE(CholeskyLower(a, 2, &two));
  EXPECT_FALSE(InverseHessianUpperFactor({1, 2, 2, 1}, 2, &two).ok());
}

}  // namespace
}  // namespace accullm::quant
