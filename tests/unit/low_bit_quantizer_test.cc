// Low-bit kernels and quantizers: the dispatched kernel vs its scalar reference at every ISA
// level and code width, code packing, rounding bounds, error feedback beating
// round-to-nearest on correlated data, stochastic rounding unbiased, outlier channels exact,
// and AXE's overflow guarantee checked exhaustively for every output channel.
#include "quant/low_bit_quantizer.h"

#include <cmath>
#include <ostream>
#include <random>
#include <string>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/low_bit_kernels.h"
#include "quant/axe.h"

namespace accullm::quant {
namespace {

struct Problem {
  int64_t out, in, rows;
  std::vector<float> w, x;      // W [out, in], X [rows, in]
  std::vector<double> hessian;  // Σ xᵀx (upper triangle is enough; filled fully)
};

// Correlated inputs (a random mixing of few factors + noise) make error feedback matter.
Problem MakeProblem(int64_t out, int64_t in, int64_t rows, uint32_t seed) {
  Problem p{out, in, rows, {}, {}, {}};
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01;
  p.w.resize(out * in);
  for (auto& v : p.w) v = n01(rng) / std::sqrt(static_cast<float>(in));
  const int64_t factors = 8;
  std::vector<float> mix(factors * in);
  for (auto& v : mix) v = n01(rng);
  p.x.resize(rows * in);
  for (int64_t r = 0; r < rows; ++r) {
    float f[factors];
    for (auto& v : f) v = n01(rng);
    for (int64_t i = 0; i < in; ++i) {
      float s = 0.3f * n01(rng);
      for (int64_t k = 0; k < factors; ++k) s += f[k] * mix[k * in + i];
      p.x[r * in + i] = s;
    }
  }
  p.hessian.assign(in * in, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < in; ++i)
      for (int64_t j = 0; j < in; ++j) p.hessian[i * in + j] += double(p.x[r * in + i]) * p.x[r * in + j];
  return p;
}

std::vector<float> Dequantize(const QuantizedMatrix& q) {
  const kernels::LowBitMatrix m = q.view();
  std::vector<float> w(m.out * m.in);
  for (int64_t o = 0; o < m.out; ++o) kernels::DequantizeLowBitRow(m, o, w.data() + o * m.in);
  for (size_t k = 0; k < q.outlier_cols.size(); ++k)
    for (int64_t o = 0; o < m.out; ++o)
      w[o * m.in + q.outlier_cols[k]] = F16ToF32(q.outlier_weights[o * q.outlier_cols.size() + k]);
  return w;
}

// Σ (W - Q)²: the plain weight error.
double WeightError(const Problem& p, const std::vector<float>& q) {
  double e = 0;
  for (size_t i = 0; i < p.w.size(); ++i) e += (double(q[i]) - p.w[i]) * (double(q[i]) - p.w[i]);
  return e;
}

// Σ over calibration rows of ||(W - Q) x||²: the layer output error the quantizers minimise.
double OutputError(const Problem& p, const std::vector<float>& q) {
  double e = 0;
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t o = 0; o < p.out; ++o) {
      double d = 0;
      for (int64_t i = 0; i < p.in; ++i) d += (double(p.w[o * p.in + i]) - q[o * p.in + i]) * p.x[r * p.in + i];
      e += d * d;
    }
  return e;
}

QuantizedMatrix Quantize(const Problem& p, QuantOptions o, std::vector<int32_t> outliers = {}) {
  ThreadPool pool(2);
  auto q = QuantizeMatrix(p.w.data(), p.out, p.in, &p.hessian, outliers, o, pool);
  EXPECT_TRUE(q.ok()) << q.status();
  return *q;
}

// The dispatched kernel against its scalar reference at every ISA level this CPU has and every
// code width, e.g. EveryIsaAndWidth/LowBitKernelTest.DispatchedMatchesScalarReference/avx2_3bit.
struct KernelCase {
  kernels::Isa isa;
  int bits;
};
std::string KernelCaseName(const KernelCase& c) {
  return std::string(kernels::IsaName(c.isa)) + "_" + std::to_string(c.bits) + "bit";
}
void PrintTo(const KernelCase& c, std::ostream* os) { *os << KernelCaseName(c); }

class LowBitKernelTest : public ::testing::TestWithParam<KernelCase> {};

TEST_P(LowBitKernelTest, DispatchedMatchesScalarReference) {
  const KernelCase c = GetParam();
  kernels::ScopedIsaForTesting isa(c.isa);
  // symmetric; integer zero points; fractional ones; fractional with 8-bit steps
  for (int variant = 0; variant < 4; ++variant) {
    SCOPED_TRACE("variant " + std::to_string(variant));
    Problem p = MakeProblem(37, 128, 4, 1);
    QuantOptions o;
    o.method = QuantMethod::kRtn;
    o.bits = c.bits;
    o.symmetric = variant == 0;
    o.group_size = 32;
    o.zero_fraction_bits = variant >= 2 ? 4 : 0;
    o.scale_bits = variant == 3 ? 8 : 16;
    QuantizedMatrix q = Quantize(p, o);
    ASSERT_EQ(q.codes.size(), static_cast<size_t>(p.out * p.in * c.bits / 8));
    EXPECT_EQ(q.format.zero_frac_bits, variant >= 2 ? kernels::ZeroFractionBits(4, c.bits) : 0);
    EXPECT_EQ(q.scale_codes.empty(), variant != 3);
    const kernels::LowBitMatrix m = q.view();
    for (int64_t n : {1, 3}) {
      std::vector<float> fast(n * p.out, -1.f), ref(n * p.out, -2.f);
      kernels::LowBitLinearRows(m, p.x.data(), n, 0, p.out, fast.data(), p.out);
      kernels::LowBitLinearRowsScalar(m, p.x.data(), n, 0, p.out, ref.data(), p.out);
      if (c.isa == kernels::Isa::kScalar) {
        EXPECT_EQ(fast, ref);  // the entry point is the reference itself
      }
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_NEAR(fast[i], ref[i], 1e-4f * (1 + std::fabs(ref[i]))) << "n " << n;
    }
  }
}

std::vector<KernelCase> KernelCases() {
  std::vector<KernelCase> cases;
  for (kernels::Isa isa : kernels::SupportedIsas())
    for (int bits = kernels::kMinCodeBits; bits <= kernels::kMaxCodeBits; ++bits) cases.push_back({isa, bits});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(EveryIsaAndWidth, LowBitKernelTest, ::testing::ValuesIn(KernelCases()),
                         [](const ::testing::TestParamInfo<KernelCase>& info) { return KernelCaseName(info.param); });

TEST(LowBitCodesTest, BitStreamRoundTripsAndFourBitsAreNibbles) {
  std::mt19937 rng(5);
  for (int bits = kernels::kMinCodeBits; bits <= kernels::kMaxCodeBits; ++bits) {
    const int64_t in = 64;
    std::vector<uint8_t> row(kernels::CodeRowBytes(in, bits), 0xA5);  // stale bits must be overwritten
    std::vector<int> codes(in);
    for (int64_t i = 0; i < in; ++i) {
      codes[i] = static_cast<int>(rng() % (1u << bits));
      kernels::WriteCode(row.data(), i, bits, codes[i]);
    }
    for (int64_t i = 0; i < in; ++i)
      EXPECT_EQ(kernels::ReadCode(row.data(), i, bits), codes[i]) << bits << " bits, code " << i;
    if (bits == 4) {  // the historical INT4 layout: column 2j low nibble, 2j+1 high nibble of byte j
      for (int64_t i = 0; i < in; ++i) EXPECT_EQ((row[i / 2] >> ((i & 1) * 4)) & 0xF, codes[i]);
    }
  }
}

TEST(LowBitQuantizerTest, EachExtraBitCutsWeightErrorAboutFourfold) {
  // A step half as wide: the rounding error's energy falls ~4x per bit (the planner's
  // KlScaleForBits rests on this): 3..5.5x for round to nearest; for GPTQ's output error at
  // least 2.5x up to 6 bits (the range search, finer at 3-4 bits than the grid's step ratio,
  // narrows some steps), ~2x beyond, where the F16 steps and the dampening start to show.
  Problem p = MakeProblem(32, 128, 8, 3);
  double prev_rtn = 0, prev_gptq = 0;
  for (int bits = kernels::kMinCodeBits; bits <= kernels::kMaxCodeBits; ++bits) {
    QuantOptions o;
    o.bits = bits;
    o.method = QuantMethod::kRtn;
    const double rtn = WeightError(p, Dequantize(Quantize(p, o)));
    o.method = QuantMethod::kGptq;
    const double gptq = OutputError(p, Dequantize(Quantize(p, o)));
    if (bits > kernels::kMinCodeBits) {
      EXPECT_GT(prev_rtn / rtn, 3.0) << bits << " bits";
      EXPECT_LT(prev_rtn / rtn, 5.5) << bits << " bits";
      EXPECT_GT(prev_gptq / gptq, bits <= 6 ? 2.5 : 1.8) << bits << " bits";
    }
    prev_rtn = rtn;
    prev_gptq = gptq;
  }
}

TEST(LowBitQuantizerTest, RoundToNearestErrorIsAtMostHalfAStep) {
  Problem p = MakeProblem(16, 128, 8, 2);
  for (bool symmetric : {true, false}) {
    QuantOptions o;
    o.method = QuantMethod::kRtn;
    o.symmetric = symmetric;
    o.search_grid = false;  // the full min/max range: nothing is clipped
    QuantizedMatrix q = Quantize(p, o);
    std::vector<float> d = Dequantize(q);
    for (int64_t o2 = 0; o2 < p.out; ++o2)
      for (int64_t i = 0; i < p.in; ++i) {
        const float step = F16ToF32(q.scales[o2 * (p.in / q.format.group) + i / q.format.group]);
        // Half a step, plus F16 rounding of the scale stretching the grid at the range ends.
        EXPECT_LE(std::fabs(d[o2 * p.in + i] - p.w[o2 * p.in + i]), 0.5f * step * 1.01f + 1e-6f);
      }
  }
}

TEST(LowBitQuantizerTest, GridSearchNeverIncreasesWeightError) {
  Problem p = MakeProblem(64, 256, 8, 8);
  for (bool symmetric : {true, false}) {
    QuantOptions o;
    o.method = QuantMethod::kRtn;
    o.symmetric = symmetric;
    o.search_grid = false;
    std::vector<float> plain = Dequantize(Quantize(p, o));
    o.search_grid = true;
    std::vector<float> searched = Dequantize(Quantize(p, o));
    const double e_plain = WeightError(p, plain), e_searched = WeightError(p, searched);
    EXPECT_LE(e_searched, e_plain * 1.0001);
    EXPECT_LT(e_searched, e_plain * 0.97) << "the search should find a better clip on Gaussian weights";
  }
}

// A zero point in sixteenths lets the asymmetric grid span each group's range exactly instead
// of snapping its offset to a multiple of the step (which clips up to half a step at one end).
TEST(LowBitQuantizerTest, FractionalZeroPointsLowerWeightError) {
  Problem p = MakeProblem(64, 256, 8, 9);
  QuantOptions o;
  o.method = QuantMethod::kRtn;
  o.search_grid = false;
  o.zero_fraction_bits = 0;
  const double integer = WeightError(p, Dequantize(Quantize(p, o)));
  o.zero_fraction_bits = 4;
  const double fractional = WeightError(p, Dequantize(Quantize(p, o)));
  EXPECT_LT(fractional, integer * 0.97) << "integer " << integer << " fractional " << fractional;
}

// 8-bit steps relative to a per-row F16 step cost almost nothing in accuracy: every candidate
// grid of the range search is built from the step that will be stored.
TEST(LowBitQuantizerTest, EightBitScalesKeepWeightErrorClose) {
  Problem p = MakeProblem(64, 256, 8, 10);
  QuantOptions o;
  o.method = QuantMethod::kRtn;
  o.scale_bits = 16;
  const double f16_steps = WeightError(p, Dequantize(Quantize(p, o)));
  o.scale_bits = 8;
  const double eight_bit_steps = WeightError(p, Dequantize(Quantize(p, o)));
  EXPECT_LT(eight_bit_steps, f16_steps * 1.03) << "f16 steps " << f16_steps << ", 8-bit steps " << eight_bit_steps;
  QuantOptions axe;
  axe.scale_bits = 8;
  axe.accumulator_bits = 16;
  ThreadPool pool(1);
  EXPECT_FALSE(QuantizeMatrix(p.w.data(), p.out, p.in, &p.hessian, {}, axe, pool).ok());
}

TEST(LowBitQuantizerTest, ErrorFeedbackBeatsRoundToNearestOnLayerOutput) {
  Problem p = MakeProblem(32, 256, 512, 3);
  QuantOptions o;
  o.group_size = 64;
  o.method = QuantMethod::kRtn;
  const double rtn = OutputError(p, Dequantize(Quantize(p, o)));
  o.method = QuantMethod::kGptq;
  const double gptq = OutputError(p, Dequantize(Quantize(p, o)));
  o.method = QuantMethod::kGpfq;
  const double gpfq = OutputError(p, Dequantize(Quantize(p, o)));
  EXPECT_LT(gptq, 0.7 * rtn) << "rtn " << rtn << " gptq " << gptq;
  EXPECT_LT(gpfq, 0.9 * rtn) << "rtn " << rtn << " gpfq " << gpfq;
}

TEST(LowBitQuantizerTest, StochasticRoundingIsUnbiasedNearestIsNot) {
  // One value between grid points: the mean over seeds converges to it with stochastic
  // rounding, while round-to-nearest always lands on the same grid point.
  Problem p{1, 32, 0, {}, {}, {}};
  p.w.assign(32, 0.f);
  p.w[0] = 7.0f;  // sets the scale to 1.0 (symmetric: amax / 7)
  p.w[1] = 2.3f;  // 0.3 of a step above a grid point
  QuantOptions o;
  o.method = QuantMethod::kRtn;
  o.symmetric = true;
  o.group_size = 32;
  ThreadPool pool(1);
  double sum = 0;
  const int draws = 4000;
  o.stochastic = true;
  for (int s = 0; s < draws; ++s) {
    o.seed = static_cast<uint64_t>(s);
    auto q = QuantizeMatrix(p.w.data(), 1, 32, nullptr, {}, o, pool);
    ASSERT_TRUE(q.ok());
    sum += Dequantize(*q)[1];
  }
  EXPECT_NEAR(sum / draws, 2.3, 0.03);
  o.stochastic = false;
  auto q = QuantizeMatrix(p.w.data(), 1, 32, nullptr, {}, o, pool);
  EXPECT_NEAR(Dequantize(*q)[1], 2.0, 1e-6);  // biased by -0.3
}

TEST(LowBitQuantizerTest, OutlierChannelsStayExactInFp16) {
  Problem p = MakeProblem(8, 64, 64, 4);
  for (int64_t o = 0; o < p.out; ++o) p.w[o * p.in + 5] = 3.0f + o;  // would wreck the group's scale
  QuantOptions opt;
  opt.method = QuantMethod::kGptq;
  opt.group_size = 32;
  QuantizedMatrix q = Quantize(p, opt, {5});
  std::vector<float> d = Dequantize(q);
  for (int64_t o = 0; o < p.out; ++o) {
    EXPECT_EQ(q.IntegerWeight(o, 5), 0);  // contributes nothing to the INT4 part
    // The group's scale ignored the outlier: small steps.
    EXPECT_LT(F16ToF32(q.scales[o * 2]), 0.1f);
  }
  // GPTQ may have folded earlier columns' error into the FP16 column, but it stays near.
  for (int64_t o = 0; o < p.out; ++o) EXPECT_NEAR(d[o * p.in + 5], 3.0f + o, 0.5f);
}

TEST(AxeTest, GuaranteesNoOverflowForEveryChannel) {
  Problem p = MakeProblem(64, 256, 256, 5);
  for (QuantMethod method : {QuantMethod::kGptq, QuantMethod::kGpfq}) {
    for (int bits : {16, 20}) {
      QuantOptions o;
      o.method = method;
      o.group_size = 128;
      o.accumulator_bits = bits;
      o.tile = 32;
      QuantizedMatrix q = Quantize(p, o);
      AccumulatorReport r = CheckAccumulator(q, bits, 32);
      EXPECT_EQ(r.overflowing_channels, 0) << QuantMethodName(method) << " P=" << bits;
      EXPECT_LE(r.required_bits, bits);
    }
  }
  // Without the constraint, 16 bits is not enough for group-128 INT4: the check can fail.
  QuantOptions o;
  o.group_size = 128;
  QuantizedMatrix q = Quantize(p, o);
  EXPECT_GT(CheckAccumulator(q, 16, 32).overflowing_channels, 0);
}

TEST(AxeTest, CostsLessAccuracyThanNaiveBitReduction) {
  // Same budget two ways: AXE at 16 bits keeps 4-bit codes under an L1 budget; the naive way
  // to make 16 bits safe for group 128 is to shrink the codes to 2 bits (|v| <= 1 → 128·128·1
  // < 2^15). AXE's layer output error must be far smaller.
  Problem p = MakeProblem(32, 256, 512, 6);
  QuantOptions o;
  o.group_size = 128;
  o.accumulator_bits = 16;
  o.method = QuantMethod::kGptq;
  const double axe = OutputError(p, Dequantize(Quantize(p, o)));
  // Naive: symmetric codes limited to {-1, 0, 1} via the tightest budget per element.
  o.accumulator_bits = 0;
  o.symmetric = true;
  QuantizedMatrix naive = Quantize(p, o);
  for (int64_t r = 0; r < naive.format.out; ++r)
    for (int64_t i = 0; i < naive.format.in; ++i) {
      const int v = std::clamp(naive.IntegerWeight(r, i), -1, 1);
      uint8_t& byte = naive.codes[r * (naive.format.in / 2) + i / 2];
      const int code = v + 8;
      byte = static_cast<uint8_t>((i & 1) ? ((byte & 0x0F) | (code << 4)) : ((byte & 0xF0) | code));
    }
  EXPECT_EQ(CheckAccumulator(naive, 16, 128).overflowing_channels, 0);
  EXPECT_LT(axe, 0.5 * OutputError(p, Dequantize(naive)));
}

// Every byte a pack stores for the matrix, in one string.
std::string PackedBytes(const QuantizedMatrix& q) {
  std::string b;
  auto add = [&b](const auto& v) {
    b.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(v[0]));
    b.push_back('|');
  };
  add(q.codes);
  add(q.scales);
  add(q.scale_codes);
  add(q.row_scales);
  add(q.zeros);
  add(q.outlier_cols);
  add(q.outlier_weights);
  return b;
}

TEST(LowBitQuantizerTest, BytesDoNotDependOnTheThreadCount) {
  // in 256: GPTQ's inverse Hessian factor is large enough to be spread over the pool too.
  Problem p = MakeProblem(67, 256, 300, 11);
  ThreadPool one(1), two(2);
  for (QuantMethod method : {QuantMethod::kRtn, QuantMethod::kGptq, QuantMethod::kGpfq}) {
    for (int variant = 0; variant < 3; ++variant) {  // default; 8-bit steps and act-order; symmetric 3-bit
      QuantOptions o;
      o.method = method;
      o.scale_bits = variant == 1 ? 8 : 16;
      o.act_order = variant == 1;
      o.symmetric = variant == 2;
      o.bits = variant == 2 ? 3 : 4;
      const std::vector<int32_t> outliers = {5, 130};
      auto a = QuantizeMatrix(p.w.data(), p.out, p.in, &p.hessian, outliers, o, one);
      auto b = QuantizeMatrix(p.w.data(), p.out, p.in, &p.hessian, outliers, o, two);
      ASSERT_TRUE(a.ok() && b.ok());
      EXPECT_EQ(PackedBytes(*a), PackedBytes(*b)) << QuantMethodName(method) << " variant " << variant;
    }
  }
}

TEST(LowBitQuantizerTest, RejectsBadOptions) {
  Problem p = MakeProblem(4, 96, 4, 7);
  ThreadPool pool(1);
  QuantOptions o;
  o.group_size = 64;  // does not divide 96
  EXPECT_FALSE(QuantizeMatrix(p.w.data(), 4, 96, &p.hessian, {}, o, pool).ok());
  o.group_size = 32;
  EXPECT_FALSE(QuantizeMatrix(p.w.data(), 4, 96, nullptr, {}, o, pool).ok());  // GPTQ without H
  o.accumulator_bits = 4;
  EXPECT_FALSE(QuantizeMatrix(p.w.data(), 4, 96, &p.hessian, {}, o, pool).ok());
  o.accumulator_bits = 0;
  for (int bits : {2, 9}) {  // code widths outside 3..8
    o.bits = bits;
    auto q = QuantizeMatrix(p.w.data(), 4, 96, &p.hessian, {}, o, pool);
    ASSERT_FALSE(q.ok());
    EXPECT_NE(std::string(q.status().message()).find("3 to 8 bits"), std::string::npos) << q.status();
  }
  o.bits = 5;
  o.accumulator_bits = 16;  // AXE's bounds are for 4-bit weights
  EXPECT_FALSE(QuantizeMatrix(p.w.data(), 4, 96, &p.hessian, {}, o, pool).ok());
}

}  // namespace
}  // namespace accullm::quant
