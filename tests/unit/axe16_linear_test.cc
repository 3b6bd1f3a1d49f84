// LowBitLinear's choice of the 16-bit-accumulation kernel (kernels/cpu/low_bit_axe16_kernels.h):
// only for weights whose quantization carried a guarantee of at most 16 bits AND whose tiles
// pass the bound's check (a forged matrix falls back to 32 bits, and stays right); the same
// bits as the 32-bit path alone and in linear groups (model/linear_group.h), where the
// per-lane activation sums travel with the shared quantized input and are never read stale.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "common/thread_pool.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/low_bit_axe16_kernels.h"
#include "kernels/low_bit_matrix.h"
#include "model/linear_group.h"
#include "model/low_bit_linear.h"

namespace accullm::model {
namespace {

constexpr int64_t kIn = 256, kGroup = 64;

// 4-bit codes, integer zero points, |code − zero| ≤ 2 (Σ|v| ≤ 128 per group: within AXE's
// 16-bit budget), or, `forged`, row 3 at +max on a whole group (Σ|v| = 32 · 15 per lane).
std::unique_ptr<LowBitLinear> AxeLinear(int64_t out, int accumulator_bits, bool forged, uint32_t seed) {
  struct Arrays {
    std::vector<uint8_t> codes, zeros;
    std::vector<uint16_t> scales;
  };
  auto a = std::make_shared<Arrays>();
  std::mt19937 rng(seed);
  const int64_t groups = kIn / kGroup, row_bytes = kernels::CodeRowBytes(kIn, 4);
  a->codes.assign(static_cast<size_t>(out * row_bytes), 0);
  std::uniform_int_distribution<int> zero(4, 11), v(-2, 2);
  std::uniform_real_distribution<float> step(0.001f, 0.05f);
  for (int64_t i = 0; i < out * groups; ++i) {
    a->zeros.push_back(static_cast<uint8_t>(zero(rng)));
    a->scales.push_back(F32ToF16(step(rng)));
  }
  if (forged) a->zeros[3 * groups] = 0;  // row 3, group 0: v = 15 on all 64 columns
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < kIn; ++i) {
      const int z = a->zeros[o * groups + i / kGroup];
      const int code = forged && o == 3 && i < kGroup ? 15 : z + v(rng);
      kernels::WriteCode(a->codes.data() + o * row_bytes, i, 4, code);
    }
  LowBitLinearWeights w;
  w.matrix.codes = a->codes.data();
  w.matrix.zeros = a->zeros.data();
  w.matrix.scales = a->scales.data();
  w.matrix.out = out;
  w.matrix.in = kIn;
  w.matrix.group = kGroup;
  w.matrix.bits = 4;
  w.matrix.zero_frac_bits = 0;
  w.keep_alive = a;
  w.accumulator_bits = accumulator_bits;
  auto l = LowBitLinear::Create(std::move(w), {});
  EXPECT_TRUE(l.ok()) << l.status();
  EXPECT_TRUE((*l)->UseInt8Activations());
  return std::move(*l);
}

std::vector<float> Input(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(n * kIn));
  for (auto& v : x) v = normal(rng);
  return x;
}

std::vector<float> Forward(const LowBitLinear& l, const std::vector<float>& x, int64_t n, ThreadPool& pool) {
  std::vector<float> y(static_cast<size_t>(n * l.out_features()));
  l.Forward(x.data(), n, y.data(), pool);
  return y;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class Axe16LinearTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kernels::DetectedIsa() < kernels::Isa::kAvx2) GTEST_SKIP() << "this CPU has no AVX2";
    isa_ = std::make_unique<kernels::ScopedIsaForTesting>(kernels::Isa::kAvx2);
    previous_ = kernels::SetAxe16ModeForTesting(kernels::Axe16Mode::kVerify);
  }
  void TearDown() override {
    if (isa_ != nullptr) kernels::SetAxe16ModeForTesting(previous_);
  }
  // Lane sums verify mode has checked since the last call.
  int64_t NewLaneSums() {
    const kernels::Axe16Overflows t = kernels::Axe16VerifyTotals();
    EXPECT_EQ(t.out_of_range, 0);
    const int64_t d = t.lane_sums - seen_;
    seen_ = t.lane_sums;
    return d;
  }
  std::unique_ptr<kernels::ScopedIsaForTesting> isa_;
  kernels::Axe16Mode previous_ = kernels::Axe16Mode::kOn;
  int64_t seen_ = kernels::Axe16VerifyTotals().lane_sums;
};

TEST_F(Axe16LinearTest, OnlyGuaranteedAndCheckedWeightsTakeTheSixteenBitPath) {
  ThreadPool pool(2);
  const int64_t n = 5;
  const auto guaranteed = AxeLinear(37, 16, false, 1);
  const auto narrower = AxeLinear(37, 12, false, 1);  // a 12-bit guarantee fits 16 bits too
  const auto wider = AxeLinear(37, 20, false, 1);     // same codes, but no 16-bit promise
  const auto none = AxeLinear(37, 0, false, 1);       // quantized without a guarantee
  const auto forged = AxeLinear(37, 16, true, 1);     // claims it, breaks it
  const std::vector<float> x = Input(n, 7);
  const std::vector<float> y = Forward(*guaranteed, x, n, pool);
  EXPECT_TRUE(guaranteed->uses_axe16());
  EXPECT_EQ(NewLaneSums(), n * 37 * (kIn / kGroup) * 2);
  EXPECT_TRUE(SameBits(Forward(*narrower, x, n, pool), y));
  EXPECT_TRUE(narrower->uses_axe16());
  NewLaneSums();
  for (const LowBitLinear* l : {wider.get(), none.get()}) {
    EXPECT_TRUE(SameBits(Forward(*l, x, n, pool), y));  // same codes: the 32-bit path's bits
    EXPECT_FALSE(l->uses_axe16());
    EXPECT_EQ(NewLaneSums(), 0);
  }
  // The forged matrix is refused by the bound's check and computed in 32 bits, correctly.
  const std::vector<float> got = Forward(*forged, x, n, pool);
  EXPECT_FALSE(forged->uses_axe16());
  EXPECT_EQ(NewLaneSums(), 0);
  kernels::Axe16Mode verify = kernels::SetAxe16ModeForTesting(kernels::Axe16Mode::kOff);
  {
    kernels::ScopedIsaForTesting scalar(kernels::Isa::kScalar);
    EXPECT_TRUE(SameBits(Forward(*forged, x, n, pool), got));
    EXPECT_TRUE(SameBits(Forward(*guaranteed, x, n, pool), y));  // and the reference agrees
  }
  kernels::SetAxe16ModeForTesting(verify);
}

// In a group the input is quantized once, by the first linear; its lane sums are there only
// when that linear takes the 16-bit path, and are cleared otherwise, so a later 16-bit linear
// never reads the sums of an earlier input (it runs in 32 bits instead).
TEST_F(Axe16LinearTest, LinearGroupsShareTheLaneSumsOfTheirOwnInputOnly) {
  ThreadPool pool(2);
  const int64_t n = 3;
  const auto axe = AxeLinear(40, 16, false, 2);
  const auto plain = AxeLinear(24, 0, false, 3);
  const std::vector<float> x1 = Input(n, 11), x2 = Input(n, 12);
  std::vector<float> ya(static_cast<size_t>(n * 40)), yp(static_cast<size_t>(n * 24));

  ForwardSameInput({{axe.get(), ya.data()}, {plain.get(), yp.data()}}, x1.data(), n, pool);
  EXPECT_EQ(NewLaneSums(), n * 40 * (kIn / kGroup) * 2);  // the first linear took the 16-bit path
  EXPECT_TRUE(SameBits(ya, Forward(*axe, x1, n, pool)));
  EXPECT_TRUE(SameBits(yp, Forward(*plain, x1, n, pool)));
  NewLaneSums();

  ForwardSameInput({{plain.get(), yp.data()}, {axe.get(), ya.data()}}, x2.data(), n, pool);
  EXPECT_EQ(NewLaneSums(), 0);  // quantized by the plain linear: 32 bits for both
  EXPECT_TRUE(SameBits(ya, Forward(*axe, x2, n, pool)));
  EXPECT_TRUE(SameBits(yp, Forward(*plain, x2, n, pool)));
}

}  // namespace
}  // namespace accullm::model
