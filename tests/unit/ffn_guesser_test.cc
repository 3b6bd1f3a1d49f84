// The trained FFN guesser (sparsity predictor "lowrank"): the reduced-rank fit predicts the
// pack's own gate and up (exactly, up to F16 and INT8-activation rounding, at full rank; ever
// worse as the rank shrinks), a pack carrying it loads at format version 2 and skips the
// target share on its calibration text, batch-invariantly, and every malformed guesser file
// or manifest is refused with a message naming what is wrong; its scores are the 8- or 4-bit
// `out` product the runtime and quantize's thresholds share.
#include "model/ffn_guesser.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/scaled_rows.h"
#include "kernels/cpu/silu_mul_mask.h"
#include "model/linear_group.h"
#include "model/pack/manifest.h"
#include "model/transformer.h"
#include "quant/ffn_guesser_fit.h"
#include "quant/ffn_sparsity_calibration.h"
#include "quant/pack_writer.h"
#include "quant/safetensors_writer.h"
#include "tests/support/low_bit_test_pack.h"
#include "tests/support/test_support.h"

namespace accullm::quant {
namespace {

namespace fs = std::filesystem;

// The FFN inputs of one layer over a forward pass.
class FfnInputRecorder : public model::ActivationObserver {
 public:
  explicit FfnInputRecorder(int64_t layer) : layer_(layer) {}
  void Observe(int64_t layer, model::LinearSite site, const float* x, int64_t rows, int64_t width) override {
    if (layer != layer_ || site != model::LinearSite::kMlpIn) return;
    rows_.insert(rows_.end(), x, x + rows * width);
  }
  const std::vector<float>& rows() const { return rows_; }

 private:
  int64_t layer_;
  std::vector<float> rows_;
};

// The pack (calibrated on one sequence) and the calibration sequences, shared by the tests.
class FfnGuesserTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pack_ = new test_support::LowBitTestPack(/*calibration_sequences=*/1);
    chunks_ = &pack_->chunks();
  }
  static void TearDownTestSuite() {
    delete pack_;
    chunks_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(pack_->ok()); }
  static std::string CopyPack(const std::string& name) { return pack_->Copy(name); }
  static void Run(model::Transformer& m, model::ActivationObserver& observer) {
    ASSERT_TRUE(CollectFfnStatistics(m, *chunks_, observer).ok());
  }
  // Fits a rank-`rank` guesser into `dir` (which holds the plain pack) and returns it.
  static std::unique_ptr<model::FfnGuesser> Fit(const std::string& dir, int64_t rank, ThreadPool& pool,
                                                int out_bits = 8) {
    auto m = model::Transformer::Load(dir, &pool, {.sparsity = false});
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return nullptr;
    FfnInputCovariance cov((*m)->config());
    Run(**m, cov);
    EXPECT_EQ(cov.tokens(), 6 * 128);
    const absl::Status s = FitFfnGuesser(**m, cov, rank, dir, pool);
    EXPECT_TRUE(s.ok()) << s;
    auto g = model::FfnGuesser::Load(dir, (*m)->config(), Spec(rank, out_bits));
    EXPECT_TRUE(g.ok()) << g.status();
    return g.ok() ? std::move(*g) : nullptr;
  }
  static model::PackSparsity Spec(int64_t rank, int out_bits = 8) {
    model::PackSparsity s;
    s.predictor = "lowrank";
    s.rank = rank;
    s.guesser_out_bits = out_bits;
    return s;
  }
  // Σ|predicted − true| / Σ|true| of the scores |SiLU(g)·u| on layer `layer`'s calibration inputs.
  static double ScoreError(const std::string& dir, const model::FfnGuesser& g, int64_t layer, ThreadPool& pool) {
    auto m = model::Transformer::Load(dir, &pool, {.sparsity = false});
    EXPECT_TRUE(m.ok());
    FfnInputRecorder rec(layer);
    Run(**m, rec);
    const int64_t h = (*m)->config().hidden_size, inter = (*m)->config().intermediate_size;
    const int64_t n = static_cast<int64_t>(rec.rows().size()) / h;
    std::vector<float> gate(static_cast<size_t>(n * inter)), up(gate.size()), predicted(gate.size());
    const model::TransformerLayer& L = (*m)->layer(layer);
    model::ForwardSameInput({{L.gate.get(), gate.data()}, {L.up.get(), up.data()}}, rec.rows().data(), n, pool);
    kernels::SiluMulMasked(gate.data(), up.data(), n * inter, -1.0f, gate.data());
    g.Scores(layer, rec.rows().data(), n, predicted.data(), pool);
    double err = 0, norm = 0;
    for (size_t i = 0; i < gate.size(); ++i) {
      err += std::fabs(predicted[i] - std::fabs(gate[i]));
      norm += std::fabs(gate[i]);
    }
    return err / norm;
  }

  static test_support::LowBitTestPack* pack_;
  static const std::vector<std::vector<int32_t>>* chunks_;
};
test_support::LowBitTestPack* FfnGuesserTest::pack_ = nullptr;
const std::vector<std::vector<int32_t>>* FfnGuesserTest::chunks_ = nullptr;

TEST_F(FfnGuesserTest, FullRankPredictsTheFfnAndLowerRanksDoWorse) {
  ThreadPool pool(2);
  const std::string dir = CopyPack("fit");
  auto full = Fit(dir, 256, pool);  // the hidden size: the map itself
  ASSERT_NE(full, nullptr);
  // F16 in [256, 256], INT8 out [1536, 256] with an F32 step per row, 8 layers.
  EXPECT_EQ(full->weight_bytes(), static_cast<size_t>(8 * (2 * 256 * 256 + 1536 * 256 + 4 * 1536)));
  double previous = 0;
  for (int64_t layer : {0, 7}) {
    const double e = ScoreError(dir, *full, layer, pool);
    // F16 guesser weights against INT8-quantized activations in the pack's kernels: ~1%.
    EXPECT_LT(e, 0.03) << "layer " << layer;
  }
  for (int64_t rank : {128, 32, 4}) {
    auto g = Fit(dir, rank, pool);
    ASSERT_NE(g, nullptr);
    const double e = ScoreError(dir, *g, 3, pool);
    EXPECT_GT(e, previous) << "rank " << rank;  // a lower rank can only predict worse
    previous = e;
  }
  EXPECT_GT(previous, 0.3);  // rank 4 of 256 is far from the map
}

// What Scores computes, spelled out from the stored tensors: F16 `in`, then `out` requantized
// to 8- or 4-bit rows (kernels/cpu/scaled_rows.h, its scalar reference), then |SiLU(ĝ)·û|. The
// thresholds quantize writes are quantiles of this very function, so it must be the one the
// runtime runs (bit for bit, any ISA level), and a row's scores must not depend on its batch.
class GuesserOutBitsTest : public FfnGuesserTest, public ::testing::WithParamInterface<int> {};

TEST_P(GuesserOutBitsTest, ScoresAreTheIntegerOutProductOfTheStoredWeights) {
  ThreadPool pool(2);
  const int bits = GetParam();
  const std::string dir = CopyPack(absl::StrCat("int", bits));
  auto g = Fit(dir, 24, pool, bits);
  ASSERT_NE(g, nullptr);
  // What a decode step reads, 8 layers: F16 in [24, 256], out's codes (1536 × 24 bytes at 8 bits,
  // 1536 × 12 at 4) and an F32 step per row.
  EXPECT_EQ(g->weight_bytes(), static_cast<size_t>(8 * (2 * 24 * 256 + 1536 * 24 * bits / 8 + 4 * 1536)));
  auto file = model::SafetensorsFile::Open(dir + "/" + model::kGuesserFile);
  ASSERT_TRUE(file.ok()) << file.status();
  constexpr int64_t kLayer = 5, kRows = 4, kHidden = 256, kInter = 768;
  const model::TensorView& in = (*file)->tensors().at(model::GuesserInName(kLayer));
  const model::TensorView& out = (*file)->tensors().at(model::GuesserOutName(kLayer));
  auto in_linear = model::DenseLinear::Create(in, nullptr);
  ASSERT_TRUE(in_linear.ok());
  const kernels::ScaledRows out_rows =
      kernels::QuantizeScaledRows(reinterpret_cast<const uint16_t*>(out.data), 2 * kInter, 24, bits);
  std::vector<float> x(static_cast<size_t>(kRows * kHidden));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * (i % 97 == 0 ? 20.f : 1.f);
  std::vector<float> low(static_cast<size_t>(kRows * 24)), predicted(static_cast<size_t>(kRows * 2 * kInter));
  std::vector<float> want(static_cast<size_t>(kRows * kInter));
  std::vector<float> got(want.size(), -1.f), alone(static_cast<size_t>(kInter), -1.f);
  for (kernels::Isa isa : kernels::SupportedIsas()) {
    kernels::ScopedIsaForTesting level(isa);
    (*in_linear)->Forward(x.data(), kRows, low.data(), pool);  // `in` as DenseLinear runs it at this level
    kernels::ScaledRowsForwardScalar(out_rows, low.data(), kRows, 0, out_rows.blocks(), predicted.data());
    for (int64_t r = 0; r < kRows; ++r) {
      const float* p = predicted.data() + r * 2 * kInter;
      kernels::SiluMulMasked(p, p + kInter, kInter, -1.0f, want.data() + r * kInter);
    }
    for (float& v : want) v = std::fabs(v);
    g->Scores(kLayer, x.data(), kRows, got.data(), pool);
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0) << kernels::IsaName(isa);
    g->Scores(kLayer, x.data() + 2 * kHidden, 1, alone.data(), pool);
    EXPECT_EQ(std::memcmp(alone.data(), want.data() + 2 * kInter, alone.size() * sizeof(float)), 0)
        << "row 2 alone, " << kernels::IsaName(isa);
  }
  // And not the F16 product: the integer copy changes some scores (else this test checks nothing).
  std::vector<float> f16_predicted(predicted.size()), f16_scores(want.size());
  auto out_linear = model::DenseLinear::Create(out, nullptr);
  ASSERT_TRUE(out_linear.ok());
  (*out_linear)->Forward(low.data(), kRows, f16_predicted.data(), pool);
  for (int64_t r = 0; r < kRows; ++r) {
    const float* p = f16_predicted.data() + r * 2 * kInter;
    kernels::SiluMulMasked(p, p + kInter, kInter, -1.0f, f16_scores.data() + r * kInter);
  }
  for (float& v : f16_scores) v = std::fabs(v);
  EXPECT_NE(std::memcmp(f16_scores.data(), want.data(), want.size() * sizeof(float)), 0);
}

INSTANTIATE_TEST_SUITE_P(OutBits, GuesserOutBitsTest, ::testing::Values(8, 4));

TEST_F(FfnGuesserTest, APackWithTheGuesserSkipsTheTargetShareAndLoadsAsVersion2) {
  ThreadPool pool(2);
  const std::string half = CopyPack("half");
  const std::vector<float> dense_logits = [&] {
    auto m = model::Transformer::Load(half, &pool);
    EXPECT_TRUE(m.ok());
    std::vector<float> l(static_cast<size_t>((*m)->config().vocab_size));
    model::KvCache c = (*m)->NewCache(128);
    EXPECT_TRUE((*m)->Forward((*chunks_)[2].data(), 128, c, l.data()).ok());
    return l;
  }();
  auto guesser = Fit(half, 32, pool, 4);  // quantize's default codes
  ASSERT_NE(guesser, nullptr);
  model::PackSparsity sparsity;
  {
    auto m = model::Transformer::Load(half, &pool, {.sparsity = false});
    ASSERT_TRUE(m.ok());
    FfnActivationStatistics stats(**m, pool);
    GuesserScoreStatistics scores(*guesser, (*m)->config(), pool);
    ObserverFanout both({&stats, &scores});
    Run(**m, both);
    sparsity = stats.Thresholds(0.5);
    sparsity.predictor = "lowrank";
    sparsity.rank = 32;
    sparsity.guesser_out_bits = 4;
    sparsity.thresholds = scores.Thresholds(0.5);
  }
  ASSERT_TRUE(WritePackSparsity(half, sparsity).ok());
  auto manifest = model::LoadPackManifest(half);
  ASSERT_TRUE(manifest.ok() && manifest->has_value()) << manifest.status();
  EXPECT_EQ((*manifest)->format_version, 2);
  EXPECT_EQ((*manifest)->sparsity->predictor, "lowrank");
  EXPECT_EQ((*manifest)->sparsity->rank, 32);
  EXPECT_EQ((*manifest)->sparsity->guesser_out_bits, 4);

  auto m = model::Transformer::Load(half, &pool);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_NE((*m)->ffn_neuron_selector(), nullptr);
  (*m)->set_measure_ffn_recall(true);
  std::vector<float> logits(static_cast<size_t>((*m)->config().vocab_size));
  for (const auto& chunk : *chunks_) {
    model::KvCache c = (*m)->NewCache(128);
    ASSERT_TRUE((*m)->Forward(chunk.data(), 128, c, logits.data()).ok());
  }
  for (const auto& c : (*m)->ffn_sparsity_counts()) {
    // The score quantile of each layer on these very tokens: the target within the bin width.
    EXPECT_NEAR(1.0 - static_cast<double>(c.kept) / c.total, 0.5, 0.01);
    EXPECT_GT(c.active, 0);
    EXPECT_GT(c.kept_active, c.active / 2);  // better than chance, short of perfect
    EXPECT_LT(c.kept_active, c.active);
  }
  // Batch invariance: chunk 2's last token alone == in a batch behind chunk 3's 40 tokens.
  {
    model::KvCache alone = (*m)->NewCache(128);
    std::vector<float> a(logits.size()), both(2 * logits.size());
    ASSERT_TRUE((*m)->Forward((*chunks_)[2].data(), 100, alone, a.data()).ok());
    model::KvCache c0 = (*m)->NewCache(128), c1 = (*m)->NewCache(128);
    std::vector<int32_t> tokens((*chunks_)[3].begin(), (*chunks_)[3].begin() + 40);
    tokens.insert(tokens.end(), (*chunks_)[2].begin(), (*chunks_)[2].begin() + 100);
    ASSERT_TRUE((*m)->ForwardBatch(tokens.data(), {{&c0, 40}, {&c1, 100}}, both.data()).ok());
    EXPECT_EQ(std::memcmp(both.data() + logits.size(), a.data(), a.size() * sizeof(float)), 0);
  }
  // --sparsity off: the dense FFN bit for bit, and the guesser file is not even opened.
  auto off = model::Transformer::Load(half, &pool, {.sparsity = false});
  ASSERT_TRUE(off.ok());
  EXPECT_EQ((*off)->ffn_neuron_selector(), nullptr);
  model::KvCache c = (*off)->NewCache(128);
  ASSERT_TRUE((*off)->Forward((*chunks_)[2].data(), 128, c, logits.data()).ok());
  EXPECT_EQ(std::memcmp(logits.data(), dense_logits.data(), logits.size() * sizeof(float)), 0);
}

// Writes `dir`/guesser.safetensors with every layer's tensors as `make` shapes them.
void WriteGuesserFile(const std::string& dir, int64_t layers, int64_t rank, DType dtype, bool nan, bool extra,
                      int64_t drop_layer = -1) {
  SafetensorsWriter w;
  for (int64_t l = 0; l < layers; ++l) {
    if (l == drop_layer) continue;
    for (const auto& [name, shape] : {std::pair{model::GuesserInName(l), std::vector<int64_t>{rank, 256}},
                                      std::pair{model::GuesserOutName(l), std::vector<int64_t>{2 * 768, rank}}}) {
      const size_t n = static_cast<size_t>(shape[0] * shape[1]);
      std::vector<uint8_t> bytes(n * DTypeSize(dtype), 0);
      if (nan && l == 1 && dtype == DType::kF16) {
        const uint16_t q = 0x7e00;
        std::memcpy(bytes.data() + 2 * 5, &q, 2);
      }
      w.Add(name, dtype, shape, bytes.data(), bytes.size());
    }
  }
  if (extra) {
    const uint16_t z = 0;
    w.Add("model.layers.0.mlp.guesser.extra", DType::kF16, {1}, &z, 2);
  }
  ASSERT_TRUE(w.Write(dir + "/" + model::kGuesserFile).ok());
}

TEST_F(FfnGuesserTest, RefusesMalformedGuessers) {
  ThreadPool pool(1);
  auto config = model::ModelConfig::Load(test_support::ModelDir());
  ASSERT_TRUE(config.ok()) << config.status();
  const std::string bad = CopyPack("bad");
  struct Case {
    const char* what;
    int64_t rank;
    DType dtype;
    bool nan, extra;
    int64_t drop;
    int64_t spec_rank;
    const char* message;
  };
  const Case cases[] = {
      {"wrong dtype", 8, DType::kF32, false, false, -1, 8, "must be F16"},
      {"wrong rank in the tensors", 4, DType::kF16, false, false, -1, 8, "shape"},
      {"NaN", 8, DType::kF16, true, false, -1, 8, "NaN"},
      {"an extra tensor", 8, DType::kF16, false, true, -1, 8, "holds 17 tensors"},
      {"a missing layer", 8, DType::kF16, false, true, 3, 8, "guesser tensor model.layers.3.mlp.guesser.in is missing"},
      {"rank beyond hidden", 8, DType::kF16, false, false, -1, 300, "exceeds the hidden size"},
  };
  for (const Case& c : cases) {
    WriteGuesserFile(bad, 8, c.rank, c.dtype, c.nan, c.extra, c.drop);
    auto g = model::FfnGuesser::Load(bad, *config, Spec(c.spec_rank));
    ASSERT_FALSE(g.ok()) << c.what;
    EXPECT_NE(std::string(g.status().message()).find(c.message), std::string::npos) << c.what << ": " << g.status();
  }
  fs::remove(bad + "/" + model::kGuesserFile);
  auto missing = model::FfnGuesser::Load(bad, *config, Spec(8));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("guesser.safetensors"), std::string::npos) << missing.status();
}

TEST(FfnGuesserManifestTest, LowrankNeedsARankAndVersion2) {
  const std::string rest = ", \"target\": 0.5, \"thresholds\": [0.1, 0.2], \"active_thresholds\": [0.1, 0.2]}}";
  auto manifest = [&](int version, const std::string& sparsity_head) {
    return "{\"format\": \"accullm-pack\", \"format_version\": " + std::to_string(version) +
           ", \"layer_precision\": [\"int4\", \"int4\"], \"method\": \"rtn\", \"group_size\": 32, "
           "\"symmetric\": true, \"sparsity\": " +
           sparsity_head + rest;
  };
  auto ok = model::PackManifest::Parse(manifest(2, "{\"predictor\": \"lowrank\", \"rank\": 16"), "accullm.json");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->sparsity->rank, 16);
  auto v1 = model::PackManifest::Parse(manifest(1, "{\"predictor\": \"lowrank\", \"rank\": 16"), "accullm.json");
  ASSERT_FALSE(v1.ok());
  EXPECT_NE(std::string(v1.status().message()).find("needs format_version >= 2"), std::string::npos) << v1.status();
  for (const char* head : {"{\"predictor\": \"lowrank\"", "{\"predictor\": \"lowrank\", \"rank\": 0",
                           "{\"predictor\": \"lowrank\", \"rank\": \"x\""}) {
    auto bad = model::PackManifest::Parse(manifest(2, head), "accullm.json");
    ASSERT_FALSE(bad.ok()) << head;
    EXPECT_NE(std::string(bad.status().message()).find("\"rank\" integer >= 1"), std::string::npos) << bad.status();
  }
  // "guesser_out_bits": absent reads as 8 (packs before the field), 4 and 8 accepted, anything
  // else refused by name, and only beside "lowrank".
  EXPECT_EQ(ok->sparsity->guesser_out_bits, 8);
  auto four = model::PackManifest::Parse(
      manifest(2, "{\"predictor\": \"lowrank\", \"rank\": 16, \"guesser_out_bits\": 4"), "accullm.json");
  ASSERT_TRUE(four.ok()) << four.status();
  EXPECT_EQ(four->sparsity->guesser_out_bits, 4);
  for (const char* head : {"{\"predictor\": \"lowrank\", \"rank\": 16, \"guesser_out_bits\": 5",
                           "{\"predictor\": \"lowrank\", \"rank\": 16, \"guesser_out_bits\": \"4\"",
                           "{\"predictor\": \"cats\", \"guesser_out_bits\": 4"}) {
    auto bad = model::PackManifest::Parse(manifest(2, head), "accullm.json");
    ASSERT_FALSE(bad.ok()) << head;
    EXPECT_NE(std::string(bad.status().message()).find("guesser_out_bits"), std::string::npos) << bad.status();
  }
}

}  // namespace
}  // namespace accullm::quant
