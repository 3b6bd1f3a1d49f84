// Linears run in one pass over the pool (model/linear_group.h) give the same bits as each
// linear's own Forward: q/k/v sharing one quantized input, gate/up with SiLU·up applied tile
// by tile, with 1 and 2 threads, one row and a batch; and linears that cannot share their
// input (different outlier channels, the exact path) still compute correctly.
#include "model/linear_group.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "common/thread_pool.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/low_bit_matrix.h"
#include "model/low_bit_linear.h"

namespace accullm::model {
namespace {

// Random 4-bit group-32 codes with zero points and F16 steps, owned by the linear's keep_alive.
std::unique_ptr<LowBitLinear> RandomLinear(int64_t out, int64_t in, std::vector<int32_t> outliers, uint32_t seed,
                                           bool int8) {
  struct Arrays {
    std::vector<uint8_t> codes, zeros;
    std::vector<uint16_t> scales, outlier_weights;
  };
  auto a = std::make_shared<Arrays>();
  std::mt19937 rng(seed);
  constexpr int kBits = 4, kGroup = 32;
  const int64_t groups = in / kGroup, row_bytes = kernels::CodeRowBytes(in, kBits);
  a->codes.assign(static_cast<size_t>(out * row_bytes), 0);
  std::uniform_int_distribution<int> code(0, 15), zero(0, 15 << 4);
  std::uniform_real_distribution<float> step(0.001f, 0.05f);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) kernels::WriteCode(a->codes.data() + o * row_bytes, i, kBits, code(rng));
  for (int64_t i = 0; i < out * groups; ++i) {
    a->zeros.push_back(static_cast<uint8_t>(zero(rng)));
    a->scales.push_back(F32ToF16(step(rng)));
  }
  for (size_t i = 0; i < static_cast<size_t>(out) * outliers.size(); ++i) a->outlier_weights.push_back(F32ToF16(0.1f));
  LowBitLinearWeights w;
  w.matrix.codes = a->codes.data();
  w.matrix.zeros = a->zeros.data();
  w.matrix.scales = a->scales.data();
  w.matrix.out = out;
  w.matrix.in = in;
  w.matrix.group = kGroup;
  w.matrix.bits = kBits;
  w.matrix.zero_frac_bits = 4;
  w.outlier_cols = std::move(outliers);
  w.outlier_weights = a->outlier_weights.empty() ? nullptr : a->outlier_weights.data();
  w.keep_alive = a;
  auto l = LowBitLinear::Create(std::move(w), {});
  EXPECT_TRUE(l.ok()) << l.status();
  if (int8) {
    EXPECT_TRUE((*l)->UseInt8Activations());
  }
  return std::move(*l);
}

std::vector<float> RandomInput(int64_t n, int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(n * in));
  for (auto& v : x) v = normal(rng);
  return x;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Output sizes that are not multiples of the 16-row tile, so chunks straddle two linears.
constexpr int64_t kIn = 256, kQ = 200, kKv = 40, kInter = 330;

class LinearGroupTest : public ::testing::TestWithParam<int> {};  // compute threads

TEST_P(LinearGroupTest, SameInputEqualsSeparateForwards) {
  ThreadPool pool(GetParam());
  for (const bool int8 : {true, false}) {
    const std::vector<int32_t> outliers = {5, 77};
    auto q = RandomLinear(kQ, kIn, outliers, 1, int8), k = RandomLinear(kKv, kIn, outliers, 2, int8),
         v = RandomLinear(kKv, kIn, outliers, 3, int8);
    for (const int64_t n : {1, 7}) {
      const std::vector<float> x = RandomInput(n, kIn, 9);
      std::vector<float> q1(n * kQ), k1(n * kKv), v1(n * kKv), q2(n * kQ, -1.f), k2(n * kKv, -1.f), v2(n * kKv, -1.f);
      q->Forward(x.data(), n, q1.data(), pool);
      k->Forward(x.data(), n, k1.data(), pool);
      v->Forward(x.data(), n, v1.data(), pool);
      ForwardSameInput({{q.get(), q2.data()}, {k.get(), k2.data()}, {v.get(), v2.data()}}, x.data(), n, pool);
      EXPECT_TRUE(SameBits(q1, q2) && SameBits(k1, k2) && SameBits(v1, v2)) << "int8 " << int8 << " n " << n;
    }
  }
}

TEST_P(LinearGroupTest, DifferentOutlierChannelsDoNotShareAnInput) {
  ThreadPool pool(GetParam());
  auto a = RandomLinear(kQ, kIn, {5}, 1, true), b = RandomLinear(kKv, kIn, {6}, 2, true);
  EXPECT_FALSE(a->SharesInt8Input(*b));
  const std::vector<float> x = RandomInput(3, kIn, 4);
  std::vector<float> a1(3 * kQ), b1(3 * kKv), a2(3 * kQ), b2(3 * kKv);
  a->Forward(x.data(), 3, a1.data(), pool);
  b->Forward(x.data(), 3, b1.data(), pool);
  ForwardSameInput({{a.get(), a2.data()}, {b.get(), b2.data()}}, x.data(), 3, pool);
  EXPECT_TRUE(SameBits(a1, a2) && SameBits(b1, b2));
}

TEST_P(LinearGroupTest, GateUpSiluEqualsSeparateForwards) {
  ThreadPool pool(GetParam());
  for (const bool int8 : {true, false}) {
    auto gate = RandomLinear(kInter, kIn, {}, 5, int8), up = RandomLinear(kInter, kIn, {}, 6, int8);
    for (const int64_t n : {1, 5}) {
      const std::vector<float> x = RandomInput(n, kIn, 7);
      std::vector<float> g1(n * kInter), u1(n * kInter), g2(n * kInter, -1.f), u2(n * kInter);
      gate->Forward(x.data(), n, g1.data(), pool);
      up->Forward(x.data(), n, u1.data(), pool);
      kernels::SiluMul(g1.data(), u1.data(), n * kInter, g1.data());
      ForwardGateUpSilu(*gate, *up, x.data(), n, g2.data(), u2.data(), pool);
      EXPECT_TRUE(SameBits(g1, g2)) << "int8 " << int8 << " n " << n;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, LinearGroupTest, ::testing::Values(1, 2),
                         [](const ::testing::TestParamInfo<int>& i) { return std::to_string(i.param) + "threads"; });

}  // namespace
}  // namespace accullm::model
