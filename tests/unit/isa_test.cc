// The ISA dispatch seam: ACCULLM_ISA parsing, clamping to what the CPU has, and the test hook.
#include "kernels/cpu/isa.h"

#include "gtest/gtest.h"

namespace accullm::kernels {
namespace {

TEST(IsaTest, ParsesTheEnvironmentSpellings) {
  EXPECT_EQ(ParseIsa("scalar"), Isa::kScalar);
  EXPECT_EQ(ParseIsa("avx2"), Isa::kAvx2);
  EXPECT_EQ(ParseIsa("avx512"), Isa::kAvx512);
  EXPECT_EQ(ParseIsa("AVX2"), Isa::kAvx2);
  EXPECT_EQ(ParseIsa(""), std::nullopt);
  EXPECT_EQ(ParseIsa("avx-512"), std::nullopt);
  EXPECT_EQ(ParseIsa("sse"), std::nullopt);
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) EXPECT_EQ(ParseIsa(IsaName(isa)), isa);
}

TEST(IsaTest, UnsetOrEmptyKeepsTheDetectedLevel) {
  for (Isa detected : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    for (const char* value : {static_cast<const char*>(nullptr), ""}) {
      const IsaResolution r = ResolveIsa(value, detected);
      EXPECT_EQ(r.isa, detected);
      EXPECT_EQ(r.warning, "");
    }
  }
}

TEST(IsaTest, LowerLevelsAreHonouredSilently) {
  EXPECT_EQ(ResolveIsa("scalar", Isa::kAvx512).isa, Isa::kScalar);
  EXPECT_EQ(ResolveIsa("avx2", Isa::kAvx512).isa, Isa::kAvx2);
  EXPECT_EQ(ResolveIsa("avx2", Isa::kAvx2).isa, Isa::kAvx2);
  EXPECT_EQ(ResolveIsa("scalar", Isa::kAvx512).warning, "");
  EXPECT_EQ(ResolveIsa("avx512", Isa::kAvx512).warning, "");
}

TEST(IsaTest, HigherLevelsClampToTheCpuWithAWarning) {
  IsaResolution r = ResolveIsa("avx512", Isa::kAvx2);
  EXPECT_EQ(r.isa, Isa::kAvx2);
  EXPECT_NE(r.warning.find("avx512"), std::string::npos) << r.warning;
  EXPECT_NE(r.warning.find("at most avx2"), std::string::npos) << r.warning;
  r = ResolveIsa("avx2", Isa::kScalar);
  EXPECT_EQ(r.isa, Isa::kScalar);
  EXPECT_NE(r.warning.find("at most scalar"), std::string::npos) << r.warning;
}

TEST(IsaTest, UnknownValueFallsBackToDetectedAndSaysWhy) {
  const IsaResolution r = ResolveIsa("neon", Isa::kAvx2);
  EXPECT_EQ(r.isa, Isa::kAvx2);
  EXPECT_NE(r.warning.find("ACCULLM_ISA=\"neon\""), std::string::npos) << r.warning;
  EXPECT_NE(r.warning.find("scalar, avx2, avx512"), std::string::npos) << r.warning;
}

TEST(IsaTest, TestHookClampsToTheCpuAndRestores) {
  const Isa before = ActiveIsa();
  {
    ScopedIsaForTesting scalar(Isa::kScalar);
    EXPECT_EQ(ActiveIsa(), Isa::kScalar);
    // Never more than the CPU has, whatever a test asks for.
    EXPECT_EQ(SetActiveIsaForTesting(Isa::kAvx512), DetectedIsa());
    EXPECT_EQ(ActiveIsa(), DetectedIsa());
  }
  EXPECT_EQ(ActiveIsa(), before);
}

TEST(IsaTest, SupportedLevelsRunFromScalarToDetected) {
  const std::vector<Isa> levels = SupportedIsas();
  ASSERT_FALSE(levels.empty());
  EXPECT_EQ(levels.front(), Isa::kScalar);
  EXPECT_EQ(levels.back(), DetectedIsa());
#ifdef ACCULLM_NO_SIMD
  EXPECT_EQ(DetectedIsa(), Isa::kScalar);  // a scalar build never dispatches to SIMD code
#endif
}

}  // namespace
}  // namespace accullm::kernels
