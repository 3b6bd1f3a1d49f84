// The dispatched linear kernel against its scalar reference at every ISA level this CPU has,
// for every weight dtype and awkward sizes.
#include "kernels/cpu/linear_kernels.h"

#include <ostream>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "kernels/cpu/isa.h"

namespace accullm::kernels {
namespace {

struct Case {
  Isa isa;
  DType dtype;
  int64_t in, out, n;
};

// Readable case names and values in test listings (ctest -N, --gtest_list_tests), e.g.
// IsasAndShapes/LinearKernelsTest.SimdMatchesScalarReference/avx2_F16_in200_out7_n1, instead of
// the index and a dump of the struct's bytes.
std::string CaseName(const Case& c) {
  return std::string(IsaName(c.isa)) + "_" + DTypeName(c.dtype) + "_in" + std::to_string(c.in) + "_out" +
         std::to_string(c.out) + "_n" + std::to_string(c.n);
}
void PrintTo(const Case& c, std::ostream* os) { *os << CaseName(c); }

class LinearKernelsTest : public ::testing::TestWithParam<Case> {};

TEST_P(LinearKernelsTest, SimdMatchesScalarReference) {
  const Case c = GetParam();
  ScopedIsaForTesting isa(c.isa);
  std::mt19937 rng(42);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> wf(c.in * c.out), x(c.in * c.n);
  for (auto& v : wf) v = normal(rng);
  for (auto& v : x) v = normal(rng);
  std::vector<uint8_t> w(c.in * c.out * DTypeSize(c.dtype));
  for (size_t i = 0; i < wf.size(); ++i) {
    if (c.dtype == DType::kF32) reinterpret_cast<float*>(w.data())[i] = wf[i];
    if (c.dtype == DType::kF16) reinterpret_cast<uint16_t*>(w.data())[i] = F32ToF16(wf[i]);
    if (c.dtype == DType::kBF16) reinterpret_cast<uint16_t*>(w.data())[i] = F32ToBf16(wf[i]);
  }
  std::vector<float> fast(c.n * c.out, -1.f), ref(c.n * c.out, -2.f);
  LinearRows(c.dtype, w.data(), c.in, x.data(), c.n, 0, c.out, fast.data(), c.out);
  LinearRowsScalar(c.dtype, w.data(), c.in, x.data(), c.n, 0, c.out, ref.data(), c.out);
  // At kScalar the entry point is the reference itself.
  if (c.isa == Isa::kScalar) {
    EXPECT_EQ(fast, ref);
  }
  for (size_t i = 0; i < ref.size(); ++i) {
    // Different summation order only: error grows like sqrt(in) * eps * |terms|.
    EXPECT_NEAR(fast[i], ref[i], 1e-4f * std::sqrt(static_cast<float>(c.in)) * 4) << "index " << i;
  }
  // A sub-range of outputs writes exactly those outputs.
  std::vector<float> part(c.n * c.out, 7.f);
  const int64_t o0 = c.out / 3, o1 = c.out - 1;
  LinearRows(c.dtype, w.data(), c.in, x.data(), c.n, o0, o1, part.data(), c.out);
  for (int64_t r = 0; r < c.n; ++r)
    for (int64_t o = 0; o < c.out; ++o) {
      if (o < o0 || o >= o1) EXPECT_EQ(part[r * c.out + o], 7.f);
      else EXPECT_NEAR(part[r * c.out + o], ref[r * c.out + o], 1e-3f);
    }
}

// Batch invariance: a row's outputs have the same bits whether it ran alone (the decode kernel,
// which pairs far-apart weight rows), in a batch (the prefill kernel), or in any sub-range of
// outputs (a thread's share).
TEST_P(LinearKernelsTest, RowBitsDoNotDependOnBatchOrOutputRange) {
  const Case c = GetParam();
  ScopedIsaForTesting isa(c.isa);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<uint8_t> w(c.in * c.out * DTypeSize(c.dtype));
  for (int64_t i = 0; i < c.in * c.out; ++i) {
    const float v = normal(rng);
    if (c.dtype == DType::kF32) reinterpret_cast<float*>(w.data())[i] = v;
    if (c.dtype == DType::kF16) reinterpret_cast<uint16_t*>(w.data())[i] = F32ToF16(v);
    if (c.dtype == DType::kBF16) reinterpret_cast<uint16_t*>(w.data())[i] = F32ToBf16(v);
  }
  // 5 rows: the small-batch kernel (a verification pass); 21: the prefill kernel.
  for (const int64_t batch : {int64_t{2}, int64_t{5}, int64_t{21}}) {
    std::vector<float> x(c.in * batch);
    for (auto& v : x) v = normal(rng);
    std::vector<float> together(batch * c.out);
    LinearRows(c.dtype, w.data(), c.in, x.data(), batch, 0, c.out, together.data(), c.out);
    for (int64_t r = 0; r < batch; ++r) {
      std::vector<float> alone(c.out), split(c.out);
      LinearRows(c.dtype, w.data(), c.in, x.data() + r * c.in, 1, 0, c.out, alone.data(), c.out);
      const int64_t cut = c.out / 2 + 1;
      LinearRows(c.dtype, w.data(), c.in, x.data() + r * c.in, 1, 0, cut, split.data(), c.out);
      LinearRows(c.dtype, w.data(), c.in, x.data() + r * c.in, 1, cut, c.out, split.data(), c.out);
      for (int64_t o = 0; o < c.out; ++o) {
        ASSERT_EQ(alone[o], together[r * c.out + o]) << "row " << r << " output " << o;
        ASSERT_EQ(split[o], alone[o]) << "row " << r << " output " << o;
      }
    }
  }
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (Isa isa : SupportedIsas()) {
    for (Case c :
         {Case{isa, DType::kF32, 256, 64, 1}, Case{isa, DType::kF32, 37, 13, 5}, Case{isa, DType::kF16, 256, 64, 3},
          Case{isa, DType::kF16, 200, 7, 1}, Case{isa, DType::kBF16, 129, 33, 4}, Case{isa, DType::kBF16, 8, 4, 2},
          Case{isa, DType::kF32, 75, 23, 1}, Case{isa, DType::kBF16, 264, 41, 1}, Case{isa, DType::kF16, 19, 3, 1}}) {
      cases.push_back(c);
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(IsasAndShapes, LinearKernelsTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return CaseName(info.param); });

TEST(DTypeTest, F16RoundTripAndRounding) {
  for (float v : {0.f, 1.f, -2.5f, 65504.f, 6.1035156e-05f, 5.9604645e-08f, 0.333333f}) {
    EXPECT_NEAR(F16ToF32(F32ToF16(v)), v, std::fabs(v) * 1e-3f + 1e-8f) << v;
  }
  EXPECT_EQ(F32ToF16(1e6f), 0x7c00);                // overflow → +inf
  EXPECT_EQ(F32ToF16(1.0f + 1.0f / 2048), 0x3c00);  // tie rounds to even
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToF32(0x3f80), 1.0f);
}

}  // namespace
}  // namespace accullm::kernels
