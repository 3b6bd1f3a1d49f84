// The SIMD exp against std::exp at every ISA level: its stated relative error bound over the
// normal range, the absolute bound in the subnormal range, and the special values.
#include "kernels/cpu/vector_exp.h"

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/isa.h"

namespace accullm::kernels {
namespace {

// A dense sweep of [-110, 90] plus every float in [0.5, 1) and [-2, -1) (where the reduction's
// n changes and the polynomial is evaluated at its full range).
std::vector<float> SweepInputs() {
  std::vector<float> x;
  for (int64_t i = 0; i <= 2000000; ++i) x.push_back(-110.f + 200.f * static_cast<float>(i) / 2000000.f);
  for (float f = 0.5f; f < 1.f; f = std::nextafter(f, 2.f)) x.push_back(f);
  for (float f = -2.f; f < -1.f; f = std::nextafter(f, 0.f)) x.push_back(f);
  for (float f : {0.f, -0.f, 1e-30f, -1e-30f, 88.7228317f, 88.72283f, -87.3365f, -103.9f, -104.f}) x.push_back(f);
  return x;
}

TEST(VectorExpTest, WithinStatedErrorOfStdExpAtEveryIsa) {
  const std::vector<float> x = SweepInputs();
  for (Isa isa : SupportedIsas()) {
    ScopedIsaForTesting scoped(isa);
    std::vector<float> got(x.size());
    VectorExp(x.data(), static_cast<int64_t>(x.size()), got.data());
    double worst_rel = 0, worst_abs_subnormal = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double want = std::exp(static_cast<double>(x[i]));  // the true value, not std::expf's
      const float ref = std::exp(x[i]);
      if (isa == Isa::kScalar) {
        ASSERT_EQ(std::memcmp(&got[i], &ref, sizeof(float)), 0) << x[i];
        continue;
      }
      if (std::isinf(ref)) {
        EXPECT_TRUE(std::isinf(got[i])) << x[i];
      } else if (want >= FLT_MIN) {
        worst_rel = std::max(worst_rel, std::fabs(got[i] - want) / want);
      } else {
        worst_abs_subnormal = std::max(worst_abs_subnormal, std::fabs(got[i] - want));
      }
    }
    std::printf("%s: max relative error %.3g, max absolute error below FLT_MIN %.3g\n", IsaName(isa), worst_rel,
                worst_abs_subnormal);
    EXPECT_LE(worst_rel, kVectorExpMaxRelativeError) << IsaName(isa);
    EXPECT_LE(worst_abs_subnormal, FLT_MIN * kVectorExpMaxRelativeError) << IsaName(isa);
  }
}

TEST(VectorExpTest, SpecialValuesAndOddLengths) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (Isa isa : SupportedIsas()) {
    ScopedIsaForTesting scoped(isa);
    for (int64_t n : {1, 3, 7, 8, 9, 15, 16, 17, 31, 33}) {
      std::vector<float> x(n);
      const float specials[] = {-inf, inf, nan, 0.f, -200.f, 200.f, 88.7228394f, -1.f};
      for (int64_t i = 0; i < n; ++i) x[i] = specials[i % 8];
      std::vector<float> out(n + 1, 12345.f);  // the element past the end must not be written
      VectorExp(x.data(), n, out.data());
      EXPECT_EQ(out[n], 12345.f) << IsaName(isa) << " wrote past the end, n=" << n;
      for (int64_t i = 0; i < n; ++i) {
        const float ref = std::exp(x[i]);
        if (std::isnan(ref)) {
          EXPECT_TRUE(std::isnan(out[i])) << IsaName(isa) << " x=" << x[i];
        } else if (std::isinf(ref) || ref == 0.f) {
          EXPECT_EQ(out[i], ref) << IsaName(isa) << " x=" << x[i];
        } else {
          EXPECT_NEAR(out[i], ref, ref * kVectorExpMaxRelativeError) << IsaName(isa) << " x=" << x[i];
        }
      }
    }
  }
}

}  // namespace
}  // namespace accullm::kernels
