// The KV cache's storage dtypes (kernels/kv_row_format.h) and the attention kernels that read
// them directly: the write path's rounding (f16/bf16 to nearest even, int8 with a scale per
// position and head, and the INT8 rounding candidates), the readers' conversions at every ISA
// level against the scalar reference bit for bit, and attention over stored rows against its
// reference at every level (bit-identical at scalar, within ops_test's bound otherwise), with
// odd head counts, head widths and positions.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/isa.h"
#include "kernels/kv_row_format.h"
#include "model/kv_cache.h"

namespace accullm::kernels {
namespace {

constexpr KvDType kAllDTypes[] = {KvDType::kF32, KvDType::kF16, KvDType::kBF16, KvDType::kInt8};

std::vector<float> Random(size_t n, uint32_t seed, float stddev = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

// `positions` rows of `format`, encoded from FP32 values (kept in `values`).
struct StoredRows {
  KvRowFormat format;
  std::vector<float> values;      // positions × kv_dim
  std::vector<uint8_t> bytes;     // positions × row_bytes
  std::vector<const void*> rows;  // position j's row, stored in reverse (as a paged cache may be)

  StoredRows(KvRowFormat f, int64_t positions, uint32_t seed, int kv) : format(f) {
    values = Random(static_cast<size_t>(positions * f.kv_dim()), seed, 1.5f);
    bytes.resize(static_cast<size_t>(positions * f.row_bytes()));
    rows.resize(static_cast<size_t>(positions));
    for (int64_t j = 0; j < positions; ++j) {
      uint8_t* dst = bytes.data() + (positions - 1 - j) * f.row_bytes();
      EncodeKvRow(f, values.data() + j * f.kv_dim(), {/*layer=*/3, j, kv}, dst);
      rows[static_cast<size_t>(j)] = dst;
    }
  }
};

TEST(KvRowFormat, BytesPerHeadRowAndPosition) {
  for (int64_t hd : {1, 32, 67, 128}) {
    EXPECT_EQ(KvHeadBytes(KvDType::kF32, hd), 4 * hd);
    EXPECT_EQ(KvHeadBytes(KvDType::kF16, hd), 2 * hd);
    EXPECT_EQ(KvHeadBytes(KvDType::kBF16, hd), 2 * hd);
    EXPECT_EQ(KvHeadBytes(KvDType::kInt8, hd), hd + 4);  // codes and one float scale
  }
  // Llama-3-8B: 32 layers, 8 KV heads of 128: 128 KiB per token in f16 (the figure).
  const KvRowFormat llama3{KvDType::kF16, 8, 128};
  EXPECT_EQ(model::KvBytesPerPosition(32, llama3), 128 * 1024);
  EXPECT_EQ(model::KvBytesPerPosition(32, {KvDType::kF32, 8, 128}), 256 * 1024);
  EXPECT_EQ(model::KvBytesPerPosition(32, {KvDType::kInt8, 8, 128}), 32 * 2 * 8 * (128 + 4));
  // A storage's bytes follow the format: int8 blocks are (hd + 4) / (4 hd) of f32's.
  const model::KvBlockStorage f32(2, {KvDType::kF32, 3, 32}, 16, 5), i8(2, {KvDType::kInt8, 3, 32}, 16, 5);
  EXPECT_EQ(f32.bytes(), size_t{5 * 2 * 2 * 16 * 3 * 32 * 4});
  EXPECT_EQ(i8.bytes(), size_t{5 * 2 * 2 * 16 * 3 * 36});
}

TEST(KvRowFormat, NamesParseAndRefuse) {
  for (KvDType t : kAllDTypes) EXPECT_EQ(*ParseKvDType(KvDTypeName(t)), t);
  const auto bad = ParseKvDType("fp8");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("f32, f16, bf16, int8"), std::string::npos) << bad.status();
  for (KvInt8Rounding r : {KvInt8Rounding::kNearest, KvInt8Rounding::kErrorFeedback, KvInt8Rounding::kStochastic,
                           KvInt8Rounding::kRefitScale})
    EXPECT_EQ(*ParseKvInt8Rounding(KvInt8RoundingName(r)), r);
}

// F16 and BF16 rows are the values rounded to nearest, ties to even (the common conversions),
// and decode exactly.
TEST(KvRowEncode, HalfPrecisionRoundsToNearestEven) {
  // Ties: 1 + half an ulp rounds down to 1 (even), 1 + 3 half-ulps up to 1 + 2 ulps.
  const float f16_ulp = std::ldexp(1.f, -10), bf16_ulp = std::ldexp(1.f, -7);
  const std::vector<float> f16_in = {1.f + f16_ulp / 2, 1.f + 3 * f16_ulp / 2, -2.5f, 65504.f};
  const std::vector<float> f16_out = {1.f, 1.f + 2 * f16_ulp, -2.5f, 65504.f};
  const std::vector<float> bf16_in = {1.f + bf16_ulp / 2, 1.f + 3 * bf16_ulp / 2, -2.5f, 3e38f};
  const std::vector<float> bf16_out = {1.f, 1.f + 2 * bf16_ulp, -2.5f, Bf16ToF32(F32ToBf16(3e38f))};
  for (auto [t, in, out] :
       {std::tuple{KvDType::kF16, f16_in, f16_out}, std::tuple{KvDType::kBF16, bf16_in, bf16_out}}) {
    const KvRowFormat f{t, 2, 2};
    std::vector<uint8_t> row(static_cast<size_t>(f.row_bytes()));
    EncodeKvRow(f, in.data(), {}, row.data());
    std::vector<float> back(4);
    DecodeKvHeadScalar(t, row.data(), 0, 2, back.data());
    DecodeKvHeadScalar(t, row.data(), 1, 2, back.data() + 2);
    EXPECT_EQ(back, out) << KvDTypeName(t);
  }
  // Random values: each is the correctly rounded one.
  const std::vector<float> x = Random(4 * 67, 5, 3.f);
  const KvRowFormat f{KvDType::kF16, 4, 67};
  std::vector<uint8_t> row(static_cast<size_t>(f.row_bytes()));
  EncodeKvRow(f, x.data(), {}, row.data());
  for (int64_t i = 0; i < 4 * 67; ++i) {
    uint16_t h;
    std::memcpy(&h, row.data() + 2 * i, 2);
    ASSERT_EQ(h, F32ToF16(x[i])) << i;
  }
}

// Decodes every head of an INT8 row.
std::vector<float> DecodeAll(const KvRowFormat& f, const std::vector<uint8_t>& row) {
  std::vector<float> out(static_cast<size_t>(f.kv_dim()));
  for (int64_t h = 0; h < f.num_kv_heads; ++h)
    DecodeKvHeadScalar(f.dtype, row.data(), h, f.head_dim, out.data() + h * f.head_dim);
  return out;
}

float ScaleOf(const KvRowFormat& f, const std::vector<uint8_t>& row, int64_t head) {
  float s;
  std::memcpy(&s, row.data() + head * f.head_bytes(), sizeof s);
  return s;
}

// INT8, nearest: scale = absmax / 127 per (position, head), each value within half a step,
// the largest one at ±127 codes; an all-zero head has scale 0 and decodes to zeros.
TEST(KvRowEncode, Int8NearestIsWithinHalfAStepPerHead) {
  const int64_t heads = 3, hd = 37;
  std::vector<float> x = Random(heads * hd, 6, 2.f);
  for (int64_t d = 0; d < hd; ++d) x[2 * hd + d] *= 100.f;  // heads of different magnitude
  const KvRowFormat f{KvDType::kInt8, heads, hd, KvInt8Rounding::kNearest};
  std::vector<uint8_t> row(static_cast<size_t>(f.row_bytes()));
  EncodeKvRow(f, x.data(), {}, row.data());
  const std::vector<float> y = DecodeAll(f, row);
  for (int64_t h = 0; h < heads; ++h) {
    float absmax = 0.f;
    for (int64_t d = 0; d < hd; ++d) absmax = std::max(absmax, std::fabs(x[h * hd + d]));
    const float s = ScaleOf(f, row, h);
    EXPECT_FLOAT_EQ(s, absmax / 127.f) << "head " << h;
    for (int64_t d = 0; d < hd; ++d) ASSERT_LE(std::fabs(y[h * hd + d] - x[h * hd + d]), 0.5001f * s) << h << "," << d;
  }
  std::vector<float> zero(heads * hd, 0.f);
  EncodeKvRow(f, zero.data(), {}, row.data());
  EXPECT_EQ(ScaleOf(f, row, 1), 0.f);
  for (float v : DecodeAll(f, row)) ASSERT_EQ(v, 0.f);
}

// Error feedback carries each value's rounding error into the next one along the head
// dimension: every prefix sum of the errors stays within half a step (it telescopes to the
// last carried error), where plain rounding's grows like a random walk.
TEST(KvRowEncode, Int8ErrorFeedbackBoundsEveryPrefixSumOfErrors) {
  const int64_t hd = 128;
  const std::vector<float> x = Random(hd, 7);
  const KvRowFormat fb{KvDType::kInt8, 1, hd, KvInt8Rounding::kErrorFeedback};
  std::vector<uint8_t> row(static_cast<size_t>(fb.row_bytes()));
  EncodeKvRow(fb, x.data(), {}, row.data());
  const std::vector<float> y = DecodeAll(fb, row);
  const float s = ScaleOf(fb, row, 0);
  double prefix = 0;
  for (int64_t d = 0; d < hd; ++d) {
    prefix += static_cast<double>(y[d]) - x[d];
    ASSERT_LE(std::fabs(prefix), 0.5001 * s) << d;
    ASSERT_LE(std::fabs(y[d] - x[d]), 1.0001f * s) << d;  // a value is off by at most a step
  }
}

// Stochastic rounding: the draws are a hash of (layer, K/V, position, head, dim), so the same
// row at the same place stores the same bytes (a block's bytes depend on its tokens and
// position only), another position draws differently, each value lands on one of its two
// neighbouring codes, and the rounding is unbiased over many positions.
TEST(KvRowEncode, Int8StochasticIsKeyedDeterministicAndUnbiased) {
  const int64_t hd = 64;
  const std::vector<float> x = Random(hd, 8);
  const KvRowFormat f{KvDType::kInt8, 1, hd, KvInt8Rounding::kStochastic};
  std::vector<uint8_t> a(static_cast<size_t>(f.row_bytes())), b = a, c = a;
  EncodeKvRow(f, x.data(), {2, 17, 0}, a.data());
  EncodeKvRow(f, x.data(), {2, 17, 0}, b.data());
  EXPECT_EQ(a, b);
  EncodeKvRow(f, x.data(), {2, 18, 0}, c.data());
  EXPECT_NE(a, c);
  const float s = ScaleOf(f, a, 0);
  std::vector<double> mean_error(hd, 0.0);
  const int kPositions = 4000;
  for (int p = 0; p < kPositions; ++p) {
    EncodeKvRow(f, x.data(), {2, p, 1}, c.data());
    const std::vector<float> y = DecodeAll(f, c);
    for (int64_t d = 0; d < hd; ++d) {
      ASSERT_LT(std::fabs(y[d] - x[d]), 1.0001f * s) << p << "," << d;
      mean_error[d] += (static_cast<double>(y[d]) - x[d]) / kPositions;
    }
  }
  // A fraction's error has standard deviation at most s/2; over 4000 draws its mean's is
  // s/126: 5 of those is a bound no value should reach if the draws are fair.
  for (int64_t d = 0; d < hd; ++d) EXPECT_LE(std::fabs(mean_error[d]), 5 * s / 126) << d;
}

double SquaredError(const std::vector<float>& x, const std::vector<float>& y) {
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) e += (static_cast<double>(y[i]) - x[i]) * (static_cast<double>(y[i]) - x[i]);
  return e;
}

// Refitting the scale by least squares can only lower a row's squared error against plain
// nearest (each step minimizes it for what the previous one fixed); the total drops only ~1%
// on these rows. What changes more is the error's direction: the refitted row's error is
// orthogonal to the row itself (<x − y, y> = 0 up to float rounding), so a query aligned with
// the key (q · k large, the scores that matter) sees no systematic shrink or stretch, where
// nearest leaves one (here 7e-4 of the row on average). Deterministic; values within a step.
TEST(KvRowEncode, Int8RefitScaleNeverLosesToNearest) {
  const int64_t hd = 64;
  const KvRowFormat nearest{KvDType::kInt8, 1, hd, KvInt8Rounding::kNearest};
  const KvRowFormat refit{KvDType::kInt8, 1, hd, KvInt8Rounding::kRefitScale};
  std::vector<uint8_t> a(static_cast<size_t>(refit.row_bytes())), b = a, c = a;
  double total_nearest = 0, total_refit = 0, sum_along_nearest = 0;
  for (uint32_t seed = 0; seed < 500; ++seed) {
    std::vector<float> x = Random(hd, 100 + seed);
    x[seed % hd] *= 8.f;  // an outlier channel sets the absmax scale
    EncodeKvRow(nearest, x.data(), {}, a.data());
    EncodeKvRow(refit, x.data(), {}, b.data());
    EncodeKvRow(refit, x.data(), {}, c.data());
    ASSERT_EQ(b, c);
    const std::vector<float> yn = DecodeAll(nearest, a), yr = DecodeAll(refit, b);
    const double en = SquaredError(x, yn), er = SquaredError(x, yr);
    ASSERT_LE(er, en * (1 + 1e-6)) << seed;
    double along_r = 0, along_n = 0, yy = 0;
    for (int64_t d = 0; d < hd; ++d) {
      along_r += (static_cast<double>(x[d]) - yr[d]) * yr[d];
      along_n += (static_cast<double>(x[d]) - yn[d]) * yn[d];
      yy += static_cast<double>(yr[d]) * yr[d];
    }
    ASSERT_LE(std::fabs(along_r), 1e-6 * yy) << seed;
    sum_along_nearest += std::fabs(along_n) / yy;
    const float s = ScaleOf(refit, b, 0);
    for (int64_t d = 0; d < hd; ++d) ASSERT_LE(std::fabs(yr[d] - x[d]), 1.0001f * s) << seed << "," << d;
    total_nearest += en;
    total_refit += er;
  }
  EXPECT_LT(total_refit, total_nearest);
  EXPECT_GT(sum_along_nearest / 500, 3e-4) << "nearest's error should have a component along the row";
  std::vector<float> zero(hd, 0.f);
  EncodeKvRow(refit, zero.data(), {}, b.data());
  for (float v : DecodeAll(refit, b)) ASSERT_EQ(v, 0.f);
}

// The SIMD readers' conversion of each block equals the scalar one bit for bit, every dtype,
// head widths with every tail length and heads other than the first.
TEST(KvRowDecode, EveryIsaMatchesTheScalarConversionBitForBit) {
  for (Isa isa : SupportedIsas()) {
    ScopedIsaForTesting scoped(isa);
    for (KvDType t : kAllDTypes) {
      for (int64_t hd : {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 67, 128}) {
        const StoredRows s({t, 3, hd}, 11, static_cast<uint32_t>(hd), 0);
        std::vector<float> fast(11 * hd, -1.f), ref(11 * hd, -2.f);
        for (int64_t head = 0; head < 3; ++head) {
          DecodeKvHeadRows(t, s.rows.data(), 11, head, hd, fast.data());
          for (int64_t j = 0; j < 11; ++j) DecodeKvHeadScalar(t, s.rows[j], head, hd, ref.data() + j * hd);
          ASSERT_EQ(std::memcmp(fast.data(), ref.data(), fast.size() * sizeof(float)), 0)
              << IsaName(isa) << " " << KvDTypeName(t) << " head_dim " << hd << " head " << head;
        }
      }
    }
  }
}

struct AttentionCase {
  Isa isa;
  KvDType dtype;
  int64_t positions, head_dim;
};

std::string CaseName(const AttentionCase& c) {
  return std::string(IsaName(c.isa)) + "_" + KvDTypeName(c.dtype) + "_pos" + std::to_string(c.positions) + "_hd" +
         std::to_string(c.head_dim);
}
void PrintTo(const AttentionCase& c, std::ostream* os) { *os << CaseName(c); }

class KvAttentionTest : public ::testing::TestWithParam<AttentionCase> {
 protected:
  void SetUp() override { isa_ = std::make_unique<ScopedIsaForTesting>(GetParam().isa); }
  std::unique_ptr<ScopedIsaForTesting> isa_;
};

// Attention over stored rows: the dispatched kernel against the scalar reference (bit for bit
// at scalar, else |fast − ref| <= 1e-5 · (1 + |ref|), ops_test's bound for f32 rows: the
// readers produce the same FP32 values, so the dtype adds no difference between the two), and
// a group of query heads equals each head run alone, bit for bit (the identity rule). 3 KV
// heads, the last one read; 11 query heads (a full pass of 8 and a partial one) and 3.
TEST_P(KvAttentionTest, MatchesReferenceAndGroupEqualsHeadsAlone) {
  const AttentionCase c = GetParam();
  const int64_t hd = c.head_dim;
  const KvRowFormat f{c.dtype, 3, hd};
  const StoredRows k(f, c.positions, 21, 0), v(f, c.positions, 22, 1);
  const KvRows kv{k.rows.data(), v.rows.data(), c.dtype};
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> scores(c.positions);
  for (int64_t heads : {int64_t{11}, int64_t{3}}) {
    const std::vector<float> q = Random(heads * hd, 23, 2.f);
    for (int64_t last_pos : {int64_t{0}, c.positions / 2, c.positions - 1}) {
      std::vector<float> group(heads * hd, -1.f), alone(heads * hd, -2.f), ref(heads * hd, -3.f);
      CausalAttentionGroup(q.data(), heads, kv, 2, last_pos, hd, scale, scores.data(), group.data());
      for (int64_t h = 0; h < heads; ++h)
        CausalAttentionHead(q.data() + h * hd, kv, 2, last_pos, hd, scale, scores.data(), alone.data() + h * hd);
      CausalAttentionGroupScalar(q.data(), heads, kv, 2, last_pos, hd, scale, scores.data(), ref.data());
      ASSERT_EQ(std::memcmp(group.data(), alone.data(), group.size() * sizeof(float)), 0)
          << heads << " heads, last_pos " << last_pos;
      for (size_t i = 0; i < ref.size(); ++i) {
        if (c.isa == Isa::kScalar) {
          ASSERT_EQ(std::memcmp(&group[i], &ref[i], sizeof(float)), 0) << i;
        } else {
          ASSERT_NEAR(group[i], ref[i], 1e-5f * (1.f + std::fabs(ref[i]))) << i << ", last_pos " << last_pos;
        }
      }
    }
  }
}

// What the dtype costs: attention over the stored rows against attention over the original
// FP32 values (the reference kernel both times). The outputs are averages of V rows of unit
// scale; the bounds are a few times each dtype's rounding (f16 2^-11 relative, bf16 2^-8,
// int8 half a step of absmax/127 with absmax ≈ 4–5 here) and catch a wrong scale, a swapped
// head or a misread record.
TEST_P(KvAttentionTest, StoredRowsStayCloseToFp32Attention) {
  const AttentionCase c = GetParam();
  const int64_t hd = c.head_dim, heads = 3;
  const KvRowFormat f{c.dtype, 3, hd};
  const StoredRows k(f, c.positions, 31, 0), v(f, c.positions, 32, 1);
  std::vector<const void*> k32(c.positions), v32(c.positions);
  for (int64_t j = 0; j < c.positions; ++j) {
    k32[j] = k.values.data() + j * f.kv_dim();
    v32[j] = v.values.data() + j * f.kv_dim();
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const std::vector<float> q = Random(heads * hd, 33);
  std::vector<float> scores(c.positions), stored(heads * hd), exact(heads * hd);
  CausalAttentionGroup(q.data(), heads, {k.rows.data(), v.rows.data(), c.dtype}, 1, c.positions - 1, hd, scale,
                       scores.data(), stored.data());
  CausalAttentionGroupScalar(q.data(), heads, {k32.data(), v32.data(), KvDType::kF32}, 1, c.positions - 1, hd, scale,
                             scores.data(), exact.data());
  const float bound = c.dtype == KvDType::kF32    ? 1e-5f
                      : c.dtype == KvDType::kF16  ? 5e-3f
                      : c.dtype == KvDType::kBF16 ? 4e-2f
                                                  : 6e-2f;
  double worst = 0;
  for (size_t i = 0; i < exact.size(); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(stored[i] - exact[i])));
  EXPECT_LE(worst, bound) << CaseName(c);
}

std::vector<AttentionCase> Cases() {
  std::vector<AttentionCase> cases;
  for (Isa isa : SupportedIsas())
    for (KvDType t : kAllDTypes)
      for (auto [positions, hd] : {std::pair<int64_t, int64_t>{1, 1}, {3, 37}, {33, 67}, {70, 128}, {100, 32}, {5, 17}})
        cases.push_back({isa, t, positions, hd});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(IsasDTypesAndShapes, KvAttentionTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<AttentionCase>& info) { return CaseName(info.param); });

}  // namespace
}  // namespace accullm::kernels
