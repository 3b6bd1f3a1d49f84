// Row-wise INT8 linears (the LM head's 8-bit format): the dispatched kernel equals the scalar
// reference at every ISA level this CPU has, round-to-nearest stays within half a step, and
// the layer computes x · Wᵀ of its dequantized weights.
#include "model/int8_linear.h"

#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/thread_pool.h"
#include "kernels/cpu/isa.h"

namespace accullm::model {
namespace {

std::vector<float> RandomMatrix(int64_t out, int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01;
  std::vector<float> w(static_cast<size_t>(out * in));
  for (auto& v : w) v = n01(rng) * 0.05f;
  w[3] = 0.9f;  // one large weight: its row's step grows, the others' do not
  return w;
}

TEST(Int8LinearTest, RoundToNearestIsWithinHalfAStep) {
  const int64_t out = 19, in = 70;
  std::vector<float> w = RandomMatrix(out, in, 1);
  Int8Quantized q = QuantizeInt8Rows(w.data(), out, in);
  kernels::Int8Matrix m{q.codes.data(), q.scales.data(), in};
  std::vector<float> row(static_cast<size_t>(in));
  for (int64_t o = 0; o < out; ++o) {
    kernels::DequantizeInt8Row(m, o, row.data());
    const float step = F16ToF32(q.scales[o]);
    EXPECT_GT(step, 0.f);
    for (int64_t i = 0; i < in; ++i) EXPECT_LE(std::fabs(row[i] - w[o * in + i]), 0.5f * step * 1.01f + 1e-7f);
  }
  EXPECT_GT(F16ToF32(q.scales[0]), 5 * F16ToF32(q.scales[1]));
}

// At every ISA level this CPU has, named (and printed) by level, e.g.
// EveryIsa/Int8LinearKernelTest.DispatchedMatchesScalarAndForwardIsTheMatmul/avx2.
struct IsaCase {
  kernels::Isa isa;
};
void PrintTo(const IsaCase& c, std::ostream* os) { *os << kernels::IsaName(c.isa); }

std::vector<IsaCase> EveryIsa() {
  std::vector<IsaCase> cases;
  for (kernels::Isa isa : kernels::SupportedIsas()) cases.push_back({isa});
  return cases;
}

class Int8LinearKernelTest : public ::testing::TestWithParam<IsaCase> {};

TEST_P(Int8LinearKernelTest, DispatchedMatchesScalarAndForwardIsTheMatmul) {
  const kernels::Isa level = GetParam().isa;
  kernels::ScopedIsaForTesting isa(level);
  const int64_t out = 37, in = 130;  // not a multiple of 8: the SIMD tail runs too
  std::vector<float> w = RandomMatrix(out, in, 2);
  auto q = std::make_shared<Int8Quantized>(QuantizeInt8Rows(w.data(), out, in));
  std::mt19937 rng(3);
  std::normal_distribution<float> n01;
  const int64_t n = 3;
  std::vector<float> x(static_cast<size_t>(n * in));
  for (auto& v : x) v = n01(rng);
  kernels::Int8Matrix m{q->codes.data(), q->scales.data(), in};
  std::vector<float> fast(n * out, -1.f), ref(n * out, -2.f), layer(n * out, -3.f);
  kernels::Int8LinearRows(m, x.data(), n, 0, out, fast.data(), out);
  kernels::Int8LinearRowsScalar(m, x.data(), n, 0, out, ref.data(), out);
  if (level == kernels::Isa::kScalar) {
    EXPECT_EQ(fast, ref);  // the entry point is the reference itself
  }
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(fast[i], ref[i], 1e-4f * (1 + std::fabs(ref[i])));
  Int8Data d;
  d.out = out;
  d.in = in;
  d.codes = q->codes.data();
  d.scales = q->scales.data();
  d.keep_alive = q;
  auto op = Int8Linear::Create(std::move(d), {});
  ASSERT_TRUE(op.ok()) << op.status();
  ThreadPool pool(2);
  (*op)->Forward(x.data(), n, layer.data(), pool);
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(layer[i], ref[i], 1e-4f * (1 + std::fabs(ref[i])));
  EXPECT_EQ((*op)->weight_bytes(), static_cast<size_t>(out * in + out * 2));
}

INSTANTIATE_TEST_SUITE_P(EveryIsa, Int8LinearKernelTest, ::testing::ValuesIn(EveryIsa()),
                         [](const ::testing::TestParamInfo<IsaCase>& info) {
                           return std::string(kernels::IsaName(info.param.isa));
                         });

}  // namespace
}  // namespace accullm::model
