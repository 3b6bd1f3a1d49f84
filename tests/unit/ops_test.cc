// Every op's dispatched entry point against its scalar reference, at every ISA level this CPU
// has (ggml's test-backend-ops idea): at kScalar the entry point must be the reference bit for
// bit; at SIMD levels within a per-op error bound. Odd shapes catch tail handling; the
// invariance tests check that a row's (or an element's) bits never depend on what else shares
// the call, at every level (the identity rule: `generate`, `serve` and batched requests give
// the same tokens).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/softmax.h"

namespace accullm::kernels {
namespace {

// One shape, read by each op in its own terms: rows × width for row-wise and element-wise
// ops; for RoPE `rows` heads of width (rounded up to even) dims; for attention `rows`
// positions of a head of `width` dims.
struct Case {
  Isa isa;
  int64_t rows, width;
};

std::string CaseName(const Case& c) {
  return std::string(IsaName(c.isa)) + "_rows" + std::to_string(c.rows) + "_width" + std::to_string(c.width);
}
void PrintTo(const Case& c, std::ostream* os) { *os << CaseName(c); }

std::vector<float> Random(size_t n, uint32_t seed, float stddev = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

// Bit-identical at the scalar level (it is the reference); else |fast - ref| <= bound · (1 + |ref|).
void ExpectMatchesReference(Isa isa, const std::vector<float>& fast, const std::vector<float>& ref, float bound) {
  ASSERT_EQ(fast.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    if (isa == Isa::kScalar) {
      ASSERT_EQ(std::memcmp(&fast[i], &ref[i], sizeof(float)), 0)
          << "index " << i << ": " << fast[i] << " vs " << ref[i];
    } else {
      ASSERT_NEAR(fast[i], ref[i], bound * (1.f + std::fabs(ref[i]))) << "index " << i;
    }
  }
}

class OpsTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { isa_ = std::make_unique<ScopedIsaForTesting>(GetParam().isa); }
  std::unique_ptr<ScopedIsaForTesting> isa_;
};

TEST_P(OpsTest, RmsNormMatchesReference) {
  const Case c = GetParam();
  const std::vector<float> x = Random(c.rows * c.width, 1), w = Random(c.width, 2);
  std::vector<float> fast(x.size(), -1.f), ref(x.size(), -2.f);
  RmsNorm(x.data(), w.data(), c.rows, c.width, 1e-5, fast.data());
  RmsNormScalar(x.data(), w.data(), c.rows, c.width, 1e-5, ref.data());
  ExpectMatchesReference(c.isa, fast, ref, 1e-5f);
}

// A row's bits are the same alone as in any batch (the sum of squares' order depends only on
// the width).
TEST_P(OpsTest, RmsNormRowIndependentOfBatch) {
  const Case c = GetParam();
  const std::vector<float> x = Random(c.rows * c.width, 19, 3.f), w = Random(c.width, 20);
  std::vector<float> batch(x.size(), -1.f), alone(c.width, -2.f);
  RmsNorm(x.data(), w.data(), c.rows, c.width, 1e-5, batch.data());
  for (int64_t r = 0; r < c.rows; ++r) {
    RmsNorm(x.data() + r * c.width, w.data(), 1, c.width, 1e-5, alone.data());
    ASSERT_EQ(std::memcmp(alone.data(), batch.data() + r * c.width, c.width * sizeof(float)), 0) << "row " << r;
  }
}

TEST_P(OpsTest, RmsNormInPlace) {
  const Case c = GetParam();
  std::vector<float> x = Random(c.rows * c.width, 3);
  const std::vector<float> w = Random(c.width, 4);
  std::vector<float> ref(x.size());
  RmsNormScalar(x.data(), w.data(), c.rows, c.width, 1e-6, ref.data());
  RmsNorm(x.data(), w.data(), c.rows, c.width, 1e-6, x.data());
  ExpectMatchesReference(c.isa, x, ref, 1e-5f);
}

TEST_P(OpsTest, RopeMatchesReference) {
  const Case c = GetParam();
  const int64_t head_dim = (c.width + 1) / 2 * 2;
  std::vector<float> inv_freq(head_dim / 2);
  for (int64_t i = 0; i < head_dim / 2; ++i) inv_freq[i] = std::pow(10000.f, -2.f * i / head_dim);
  for (int64_t pos : {int64_t{0}, int64_t{1}, int64_t{17}, int64_t{4095}}) {
    std::vector<float> fast = Random(c.rows * head_dim, 5), ref = fast;
    ApplyRope(fast.data(), c.rows, head_dim, inv_freq.data(), pos);
    ApplyRopeScalar(ref.data(), c.rows, head_dim, inv_freq.data(), pos);
    ExpectMatchesReference(c.isa, fast, ref, 1e-5f);
  }
}

TEST_P(OpsTest, SoftmaxMatchesReference) {
  const Case c = GetParam();
  // Large scores too: the max subtraction must keep exp finite.
  std::vector<float> fast = Random(c.width, 6, 30.f), ref = fast;
  Softmax(fast.data(), c.width);
  SoftmaxScalar(ref.data(), c.width);
  ExpectMatchesReference(c.isa, fast, ref, 1e-6f);
  double sum = 0;
  for (float p : ref) sum += p;
  EXPECT_NEAR(sum, 1.0, 1e-5);
}

TEST_P(OpsTest, CausalAttentionHeadMatchesReference) {
  const Case c = GetParam();
  const int64_t positions = c.rows, head_dim = c.width, kv_heads = 2, kv_dim = kv_heads * head_dim;
  // Rows scattered through one buffer, in reverse, as a paged cache's blocks may be.
  const std::vector<float> k = Random(positions * kv_dim, 7), v = Random(positions * kv_dim, 8);
  std::vector<const void*> k_rows(positions), v_rows(positions);
  for (int64_t j = 0; j < positions; ++j) {
    k_rows[j] = k.data() + (positions - 1 - j) * kv_dim;
    v_rows[j] = v.data() + (positions - 1 - j) * kv_dim;
  }
  const KvRows kv{k_rows.data(), v_rows.data()};
  const std::vector<float> q = Random(head_dim, 9);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (int64_t last_pos : {int64_t{0}, positions / 2, positions - 1}) {
    std::vector<float> fast(head_dim, -1.f), ref(head_dim, -2.f);
    std::vector<float> scores_fast(positions), scores_ref(positions);
    CausalAttentionHead(q.data(), kv, /*kv_head=*/1, last_pos, head_dim, scale, scores_fast.data(), fast.data());
    CausalAttentionHeadScalar(q.data(), kv, /*kv_head=*/1, last_pos, head_dim, scale, scores_ref.data(), ref.data());
    ExpectMatchesReference(c.isa, fast, ref, 1e-5f);
  }
}

// Grouped-query attention: a group of query heads sharing one K/V head gives each head the
// bits it gets alone (the group is only a way to read each row once), and the reference's
// values within the bound. 11 heads: one full pass of 8 and a partial one.
TEST_P(OpsTest, CausalAttentionGroupEqualsHeadsAlone) {
  const Case c = GetParam();
  const int64_t positions = c.rows, head_dim = c.width, kv_heads = 2, kv_dim = kv_heads * head_dim, heads = 11;
  const std::vector<float> k = Random(positions * kv_dim, 14), v = Random(positions * kv_dim, 15);
  std::vector<const void*> k_rows(positions), v_rows(positions);
  for (int64_t j = 0; j < positions; ++j) {
    k_rows[j] = k.data() + j * kv_dim;
    v_rows[j] = v.data() + j * kv_dim;
  }
  const KvRows kv{k_rows.data(), v_rows.data()};
  const std::vector<float> q = Random(heads * head_dim, 16, 2.f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  std::vector<float> scores(positions);
  for (int64_t last_pos : {int64_t{0}, positions / 2, positions - 1}) {
    std::vector<float> group(heads * head_dim, -1.f), alone(heads * head_dim, -2.f), ref(heads * head_dim, -3.f);
    CausalAttentionGroup(q.data(), heads, kv, 1, last_pos, head_dim, scale, scores.data(), group.data());
    for (int64_t h = 0; h < heads; ++h) {
      CausalAttentionHead(q.data() + h * head_dim, kv, 1, last_pos, head_dim, scale, scores.data(),
                          alone.data() + h * head_dim);
    }
    CausalAttentionGroupScalar(q.data(), heads, kv, 1, last_pos, head_dim, scale, scores.data(), ref.data());
    ASSERT_EQ(std::memcmp(group.data(), alone.data(), group.size() * sizeof(float)), 0) << "last_pos " << last_pos;
    ExpectMatchesReference(c.isa, group, ref, 1e-5f);
  }
}

// The online softmax's rescaling: scores that grow block after block (the running max moves
// at every block) and one huge early score that later blocks
// never reach (no rescale). Both against the two-pass reference.
TEST_P(OpsTest, CausalAttentionOnlineSoftmaxRescales) {
  const Case c = GetParam();
  const int64_t positions = 3 * kAttentionBlock + c.rows, head_dim = c.width;
  std::vector<float> k(positions * head_dim), v = Random(positions * head_dim, 17);
  const std::vector<float> q = Random(head_dim, 18);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  float qq = 0.f;
  for (float x : q) qq += x * x;
  for (int64_t order = 0; order < 2; ++order) {
    for (int64_t j = 0; j < positions; ++j) {
      // k_j = t_j · q, so the score is about `target` (a score of magnitude S carries a float
      // rounding of ~S·1e-7 in either order, so the targets stay below ~30).
      const float target = order == 0 ? 30.f * static_cast<float>(j) / static_cast<float>(positions)
                                      : (j == 3 ? 25.f : 0.3f * static_cast<float>(j % 7));
      const float t = target / (qq * scale);
      for (int64_t d = 0; d < head_dim; ++d) k[j * head_dim + d] = t * q[d];
    }
    std::vector<const void*> k_rows(positions), v_rows(positions);
    for (int64_t j = 0; j < positions; ++j) {
      k_rows[j] = k.data() + j * head_dim;
      v_rows[j] = v.data() + j * head_dim;
    }
    const KvRows kv{k_rows.data(), v_rows.data()};
    std::vector<float> scores(positions), fast(head_dim, -1.f), ref(head_dim, -2.f);
    CausalAttentionHead(q.data(), kv, 0, positions - 1, head_dim, scale, scores.data(), fast.data());
    CausalAttentionHeadScalar(q.data(), kv, 0, positions - 1, head_dim, scale, scores.data(), ref.data());
    ExpectMatchesReference(c.isa, fast, ref, 1e-5f);
  }
}

TEST(OpsReferenceTest, CausalAttentionOverOnePositionReturnsItsValue) {
  const float q[2] = {3.f, -1.f}, k[4] = {9.f, 9.f, 0.5f, 2.f}, v[4] = {9.f, 9.f, 7.f, -4.f};
  const void* k_rows[1] = {k};
  const void* v_rows[1] = {v};
  float scores[1], out[2];
  CausalAttentionHeadScalar(q, KvRows{k_rows, v_rows}, /*kv_head=*/1, /*last_pos=*/0, 2, 0.7f, scores, out);
  EXPECT_EQ(scores[0], 1.f);
  EXPECT_EQ(out[0], 7.f);
  EXPECT_EQ(out[1], -4.f);
}

TEST_P(OpsTest, SiluMulMatchesReference) {
  const Case c = GetParam();
  const int64_t n = c.rows * c.width;
  const std::vector<float> gate = Random(n, 10, 4.f), up = Random(n, 11);
  std::vector<float> fast(n, -1.f), ref(n, -2.f);
  SiluMul(gate.data(), up.data(), n, fast.data());
  SiluMulScalar(gate.data(), up.data(), n, ref.data());
  ExpectMatchesReference(c.isa, fast, ref, 1e-6f);
  std::vector<float> in_place = gate;  // out may be gate (the MLP writes over it)
  SiluMul(in_place.data(), up.data(), n, in_place.data());
  ExpectMatchesReference(c.isa, in_place, ref, 1e-6f);
  // An element's bits do not depend on the slice it was computed in: the fused gate/up path
  // applies SiLU·up per thread chunk of columns (model/linear_group.cc).
  std::vector<float> sliced(n, -3.f);
  for (int64_t begin = 0, len = 1; begin < n; begin += len, len = len % 13 + 2)
    SiluMul(gate.data() + begin, up.data() + begin, std::min(len, n - begin), sliced.data() + begin);
  ASSERT_EQ(std::memcmp(sliced.data(), fast.data(), n * sizeof(float)), 0);
}

TEST_P(OpsTest, AddInPlaceMatchesReference) {
  const Case c = GetParam();
  const int64_t n = c.rows * c.width;
  const std::vector<float> delta = Random(n, 12);
  std::vector<float> fast = Random(n, 13), ref = fast;
  AddInPlace(fast.data(), delta.data(), n);
  AddInPlaceScalar(ref.data(), delta.data(), n);
  ExpectMatchesReference(c.isa, fast, ref, 0.f);
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (Isa isa : SupportedIsas()) {
    for (auto [rows, width] :
         {std::pair<int64_t, int64_t>{1, 1}, {1, 64}, {3, 37}, {5, 256}, {17, 129}, {64, 8}, {100, 128}, {33, 67}}) {
      cases.push_back({isa, rows, width});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(IsasAndShapes, OpsTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return CaseName(info.param); });

}  // namespace
}  // namespace accullm::kernels
