// The 16-bit-accumulation path on the real fixture model: quantized with an accumulator
// guarantee (`accullm quantize --accumulator-bits 16 --tile T`, here in-process like
// pack_test.cc), written as a pack and loaded back at ACCULLM_ISA=avx2, its logits with the
// 16-bit path are the very bits of the 32-bit path (and of the scalar reference), on prefill,
// decode and batched steps; verify mode counts no overflow; every linear whose quantization
// carried the guarantee takes the path.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/low_bit_axe16_kernels.h"
#include "model/low_bit_linear.h"
#include "model/transformer.h"
#include "quant/calibration.h"
#include "quant/model_quantizer.h"
#include "quant/pack_writer.h"
#include "tests/support/test_support.h"

namespace accullm::quant {
namespace {

namespace fs = std::filesystem;

struct Recipe {
  int64_t group, tile;
  bool symmetric;
  QuantMethod method;
};

// Writes the fixture model quantized under a 16-bit guarantee (every block INT4, INT4 head
// under the guarantee too, a 4-bit embedding table without it when symmetric) to `dir`.
void WriteAxePack(const Recipe& r, const std::string& dir) {
  ThreadPool pool(2);
  auto model = model::Transformer::Load(test_support::ModelDir(), &pool);
  ASSERT_TRUE(model.ok()) << model.status();
  CalibrationStats stats(&pool, 6.0f);
  std::vector<std::vector<int32_t>> chunks;
  for (int c = 0; c < 2; ++c) {
    std::vector<int32_t> ids = {1};
    for (int i = 0; i < 63; ++i) ids.push_back(3 + (i * 37 + c * 11) % 2000);
    chunks.push_back(ids);
  }
  ASSERT_TRUE(RunCalibration(**model, chunks, stats).ok());
  ModelQuantOptions opts;
  opts.quant.method = r.method;
  opts.quant.group_size = r.group;
  opts.quant.symmetric = r.symmetric;
  opts.quant.accumulator_bits = 16;
  opts.quant.tile = r.tile;
  opts.quant.search_grid = false;     // as `quantize` does under --accumulator-bits
  opts.outliers.top_fraction = 0.01;  // FP16 outlier columns beside the guarantee
  opts.lm_head_bits = 4;
  // A table without the guarantee, where its zero-point format can share the pack (AXE's
  // zeros are integers; an asymmetric table's would have fraction bits).
  opts.embedding_bits = r.symmetric ? 4 : 0;
  auto plan = sharding::PrecisionPlan::FromFp16Spec("none", (*model)->config().num_layers);
  ASSERT_TRUE(plan.ok()) << plan.status();
  auto mats = QuantizeModel(**model, stats, *plan, opts, pool);
  ASSERT_TRUE(mats.ok()) << mats.status();
  PackDescription desc;
  ASSERT_TRUE(QuantizeEmbeddingsAndHead(**model, stats, opts, pool, {}, &*mats, &desc.int8).ok());
  desc.source_dir = test_support::ModelDir();
  desc.plan = *plan;
  desc.options = opts;
  auto bytes = WritePack(**model, *mats, desc, dir);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
}

// The last-position logits of a prefill, a decode step after it, and a batch of 6 sequences
// (prefill chunks of 2..12 tokens: 4-row blocks and remainders), back to back.
std::vector<float> Logits(model::Transformer& m) {
  const int64_t vocab = m.config().vocab_size;
  std::vector<float> all, logits(static_cast<size_t>(vocab));
  std::vector<int32_t> prompt = {1, 420, 435, 261, 394, 17, 1200, 88, 5};
  model::KvCache c = m.NewCache(32);
  EXPECT_TRUE(m.Forward(prompt.data(), static_cast<int64_t>(prompt.size()), c, logits.data()).ok());
  all.insert(all.end(), logits.begin(), logits.end());
  const int32_t next = 77;
  EXPECT_TRUE(m.Forward(&next, 1, c, logits.data()).ok());
  all.insert(all.end(), logits.begin(), logits.end());
  std::vector<model::KvCache> caches;
  std::vector<int32_t> tokens;
  std::vector<model::BatchSegment> segments;
  for (int s = 0; s < 6; ++s) caches.push_back(m.NewCache(32));
  for (int s = 0; s < 6; ++s) {
    const int64_t n = 2 + 2 * s;
    for (int64_t i = 0; i < n; ++i) tokens.push_back(static_cast<int32_t>(3 + (i * 131 + s * 17) % 2000));
    segments.push_back({&caches[s], n});
  }
  std::vector<float> batch(static_cast<size_t>(6 * vocab));
  EXPECT_TRUE(m.ForwardBatch(tokens.data(), segments, batch.data()).ok());
  all.insert(all.end(), batch.begin(), batch.end());
  return all;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void CheckPack(const Recipe& r) {
  if (kernels::DetectedIsa() < kernels::Isa::kAvx2) GTEST_SKIP() << "this CPU has no AVX2";
  test_support::ScopedTempDir tmp("accullm_axe16_pack");
  const std::string dir = tmp.Path("pack");
  WriteAxePack(r, dir);
  if (::testing::Test::HasFatalFailure()) return;
  kernels::ScopedIsaForTesting avx2(kernels::Isa::kAvx2);
  ASSERT_EQ(kernels::ActiveIsa(), kernels::Isa::kAvx2);
  ThreadPool pool(2);
  auto m = model::Transformer::Load(dir, &pool);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE((*m)->pack().has_value());
  EXPECT_EQ((*m)->pack()->accumulator_bits, 16);

  const kernels::Axe16Mode previous = kernels::SetAxe16ModeForTesting(kernels::Axe16Mode::kVerify);
  const kernels::Axe16Overflows before = kernels::Axe16VerifyTotals();
  const std::vector<float> sixteen = Logits(**m);
  const kernels::Axe16Overflows after = kernels::Axe16VerifyTotals();
  kernels::SetAxe16ModeForTesting(kernels::Axe16Mode::kOff);
  const std::vector<float> thirty_two = Logits(**m);
  kernels::SetAxe16ModeForTesting(previous);

  // Every linear quantized under the guarantee took the 16-bit path.
  int axe16 = 0, linears = 0;
  for (int64_t l = 0; l < (*m)->config().num_layers; ++l) {
    model::TransformerLayer& layer = (*m)->layer(l);
    for (auto* op : {&layer.q, &layer.k, &layer.v, &layer.o, &layer.gate, &layer.up, &layer.down}) {
      const auto* lb = dynamic_cast<const model::LowBitLinear*>(op->get());
      ASSERT_NE(lb, nullptr);
      ++linears;
      axe16 += lb->uses_axe16() ? 1 : 0;
    }
  }
  EXPECT_EQ(axe16, linears);
  const auto* head = dynamic_cast<const model::LowBitLinear*>(&(*m)->lm_head());
  ASSERT_NE(head, nullptr);
  EXPECT_TRUE(head->uses_axe16());
  EXPECT_EQ(head->weights().accumulator_bits, 16);

  EXPECT_TRUE(SameBits(sixteen, thirty_two)) << "16-bit path vs 32-bit path at avx2";
  EXPECT_GT(after.lane_sums - before.lane_sums, 0) << "verify mode saw no 16-bit call";
  std::printf("verify: %lld lane sums, %lld outside int16, largest |lane sum| %lld\n",
              static_cast<long long>(after.lane_sums - before.lane_sums),
              static_cast<long long>(after.out_of_range - before.out_of_range), static_cast<long long>(after.largest));
  EXPECT_EQ(after.out_of_range - before.out_of_range, 0) << "lane sums outside int16";
  // (Logits at another ISA level differ through the float kernels, attention and norms: the
  // integer linears' equality to the scalar reference is low_bit_axe16_kernels_test's.)
}

TEST(Axe16PackTest, Group128Tile32AsymmetricGptqLogitsAreTheThirtyTwoBitBits) {
  CheckPack({128, 32, false, QuantMethod::kGptq});
}

TEST(Axe16PackTest, Group64SymmetricRtnLogitsAreTheThirtyTwoBitBits) { CheckPack({64, 0, true, QuantMethod::kRtn}); }

TEST(Axe16PackTest, Group32Tile8AsymmetricGptqLogitsAreTheThirtyTwoBitBits) {
  CheckPack({32, 8, false, QuantMethod::kGptq});
}

// Quantized in-process (eval right after quantize, no pack in between), a linear carries the
// guarantee it was quantized under (MakeLowBitLinear), so it takes the 16-bit path exactly as
// the same linear loaded from a pack does; without the guarantee it does not.
TEST(Axe16InProcessTest, AnInProcessQuantizedLinearTakesTheSixteenBitPathOfItsPack) {
  if (kernels::DetectedIsa() < kernels::Isa::kAvx2) GTEST_SKIP() << "this CPU has no AVX2: no 16-bit path to take";
  kernels::ScopedIsaForTesting avx2(kernels::Isa::kAvx2);
  ThreadPool pool(2);
  for (int accumulator_bits : {16, 0}) {
    SCOPED_TRACE(accumulator_bits);
    auto model = model::Transformer::Load(test_support::ModelDir(), &pool);
    ASSERT_TRUE(model.ok()) << model.status();
    CalibrationStats stats(&pool, 6.0f);  // RTN without outliers reads no statistics
    ModelQuantOptions opts;
    opts.quant.method = QuantMethod::kRtn;
    opts.quant.group_size = 64;
    opts.quant.symmetric = true;
    opts.quant.accumulator_bits = accumulator_bits;
    opts.quant.search_grid = false;
    opts.outliers.enabled = false;
    auto displaced = QuantizeBlock(**model, 0, stats, opts, pool, nullptr);
    ASSERT_TRUE(displaced.ok()) << displaced.status();
    model::TransformerLayer& layer = (*model)->layer(0);
    const int64_t in = layer.q->in_features();
    std::vector<float> x(static_cast<size_t>(3 * in)), y;
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
    for (auto* op : {&layer.q, &layer.k, &layer.v, &layer.gate, &layer.up}) {
      auto* lb = dynamic_cast<model::LowBitLinear*>(op->get());
      ASSERT_NE(lb, nullptr);
      EXPECT_EQ(lb->weights().accumulator_bits, accumulator_bits);
      ASSERT_TRUE(lb->UseInt8Activations());
      y.assign(static_cast<size_t>(3 * lb->out_features()), 0.f);
      lb->Forward(x.data(), 3, y.data(), pool);
      EXPECT_EQ(lb->uses_axe16(), accumulator_bits == 16);
    }
  }
}

}  // namespace
}  // namespace accullm::quant
