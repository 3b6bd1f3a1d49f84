// Activation sparsity (CATS) around the FFN: the manifest's "sparsity" object (valid and every
// malformed case), the quantile histogram, and a pack end to end: thresholds from its own
// quantized FFN on calibration text, written into the manifest, loaded back; target 0 and
// --sparsity off give the dense logits bit for bit, and the share skipped on the calibration
// text lands on the target.
#include <cmath>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/isa.h"
#include "model/ffn_neuron_selector.h"
#include "model/pack/manifest.h"
#include "model/transformer.h"
#include "quant/evaluation.h"
#include "quant/ffn_sparsity_calibration.h"
#include "quant/pack_writer.h"
#include "tests/support/low_bit_test_pack.h"
#include "tests/support/test_support.h"

namespace accullm::quant {
namespace {

// A manifest with two layers and `sparsity` as the value of "sparsity" (empty: none).
std::string ManifestWith(const std::string& sparsity) {
  return "{\"format\": \"accullm-pack\", \"format_version\": 1, \"layer_precision\": [\"int4\", \"int4\"], "
         "\"method\": \"rtn\", \"group_size\": 32, \"symmetric\": true" +
         (sparsity.empty() ? std::string() : ", \"sparsity\": " + sparsity) + "}";
}

std::string SparsityError(const std::string& sparsity) {
  auto m = model::PackManifest::Parse(ManifestWith(sparsity), "accullm.json");
  EXPECT_FALSE(m.ok()) << sparsity;
  return m.ok() ? "" : std::string(m.status().message());
}

TEST(PackSparsityManifestTest, AbsentMeansDense) {
  auto m = model::PackManifest::Parse(ManifestWith(""), "accullm.json");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->sparsity.has_value());
}

TEST(PackSparsityManifestTest, ParsesAValidObject) {
  auto m = model::PackManifest::Parse(
      ManifestWith("{\"predictor\": \"cats\", \"target\": 0.5, \"thresholds\": [0.25, 0], \"active_thresholds\": "
                   "[0.125, 1], \"measured_on\": \"quantized\", \"calibration_tokens\": 512}"),
      "accullm.json");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE(m->sparsity.has_value());
  EXPECT_EQ(m->sparsity->predictor, "cats");
  EXPECT_EQ(m->sparsity->target, 0.5);
  EXPECT_EQ(m->sparsity->thresholds, (std::vector<float>{0.25f, 0.0f}));
  EXPECT_EQ(m->sparsity->active_thresholds, (std::vector<float>{0.125f, 1.0f}));
  EXPECT_EQ(m->sparsity->measured_on, "quantized");
  EXPECT_EQ(m->sparsity->calibration_tokens, 512);
}

TEST(PackSparsityManifestTest, ParsesTheProductRuleWithLayerTargets) {
  auto m = model::PackManifest::Parse(
      ManifestWith("{\"predictor\": \"product\", \"target\": 0.3, \"thresholds\": [0.25, 0.5], "
                   "\"active_thresholds\": [0.25, 0.5], \"gate_thresholds\": [0.01, 0], \"layer_targets\": [0.4, "
                   "0.2]}"),
      "accullm.json");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE(m->sparsity.has_value());
  EXPECT_EQ(m->sparsity->predictor, "product");
  EXPECT_EQ(m->sparsity->gate_thresholds, (std::vector<float>{0.01f, 0.0f}));
  ASSERT_EQ(m->sparsity->layer_targets.size(), 2u);
  EXPECT_NEAR(m->sparsity->layer_targets[0], 0.4, 1e-7);
  EXPECT_NEAR(m->sparsity->layer_targets[1], 0.2, 1e-7);
}

TEST(PackSparsityManifestTest, RefusesEachMalformedField) {
  const std::string ok_rest = ", \"thresholds\": [0.1, 0.2], \"active_thresholds\": [0.1, 0.2]}";
  struct Case {
    std::string sparsity, message;
  };
  const std::vector<Case> cases = {
      {"[1, 2]", "must be an object"},
      {"{\"target\": 0.5" + ok_rest, "predictor"},
      {"{\"predictor\": \"guesser\", \"target\": 0.5" + ok_rest, "this build knows \"cats\", \"product\""},
      {"{\"predictor\": \"cats\"" + ok_rest, "target"},
      {"{\"predictor\": \"cats\", \"target\": \"half\"" + ok_rest, "target"},
      {"{\"predictor\": \"cats\", \"target\": -0.1" + ok_rest, "[0, 1)"},
      {"{\"predictor\": \"cats\", \"target\": 1" + ok_rest, "[0, 1)"},
      {"{\"predictor\": \"cats\", \"target\": 1.5" + ok_rest, "[0, 1)"},
      {"{\"predictor\": \"cats\", \"target\": 0.5, \"active_thresholds\": [0.1, 0.2]}", "\"thresholds\" array"},
      {"{\"predictor\": \"cats\", \"target\": 0.5, \"thresholds\": 0.1, \"active_thresholds\": [0.1, 0.2]}",
       "\"thresholds\" array"},
      {"{\"predictor\": \"cats\", \"target\": 0.5, \"thresholds\": [0.1], \"active_thresholds\": [0.1, 0.2]}",
       "has 1 entries but the pack has 2 layers"},
      {"{\"predictor\": \"cats\", \"target\": 0.5, \"thresholds\": [0.1, 0.2, 0.3], \"active_thresholds\": [0.1, "
       "0.2]}",
       "has 3 entries but the pack has 2 layers"},
      {"{\"predictor\": \"cats\", \"target\": 0.5, \"thresholds\": [0.1, -0.2], \"active_thresholds\": [0.1, 0.2]}",
       "finite and >= 0"},
      {"{\"predictor\": \"cats\", \"target\": 0.5, \"thresholds\": [0.1, \"x\"], \"active_thresholds\": [0.1, 0.2]}",
       "not a number"},
      {"{\"predictor\": \"cats\", \"target\": 0.5, \"thresholds\": [0.1, 1e39], \"active_thresholds\": [0.1, 0.2]}",
       "finite and >= 0"},
      {"{\"predictor\": \"cats\", \"target\": 0.5, \"thresholds\": [0.1, 0.2]}", "\"active_thresholds\" array"},
      {"{\"predictor\": \"cats\", \"target\": 0.5, \"thresholds\": [0.1, 0.2], \"active_thresholds\": [0.1, -1]}",
       "finite and >= 0"},
      {"{\"predictor\": \"cats\", \"target\": 0.5, \"thresholds\": [0.1, 0.2], \"active_thresholds\": [0.1, 0.2], "
       "\"measured_on\": \"gpu\"}",
       "measured_on"},
      {"{\"predictor\": \"cats\", \"target\": 0.5, \"thresholds\": [0.1, 0.2], \"active_thresholds\": [0.1, 0.2], "
       "\"calibration_tokens\": -5}",
       "calibration_tokens"},
      {"{\"predictor\": \"product\", \"target\": 0.5" + ok_rest, "needs \"gate_thresholds\""},
      {"{\"predictor\": \"product\", \"target\": 0.5, \"thresholds\": [0.1, 0.2], \"active_thresholds\": [0.1, "
       "0.2], \"gate_thresholds\": [0.1]}",
       "has 1 entries"},
      {"{\"predictor\": \"product\", \"target\": 0.5, \"thresholds\": [0.1, 0.2], \"active_thresholds\": [0.1, "
       "0.2], \"gate_thresholds\": [0.1, -3]}",
       "finite and >= 0"},
      {"{\"predictor\": \"cats\", \"target\": 0.5, \"thresholds\": [0.1, 0.2], \"active_thresholds\": [0.1, 0.2], "
       "\"gate_thresholds\": [0.1, 0.2]}",
       "predictor \"product\" only"},
      {"{\"predictor\": \"cats\", \"target\": 0.5, \"thresholds\": [0.1, 0.2], \"active_thresholds\": [0.1, 0.2], "
       "\"layer_targets\": [0.1, 1.0]}",
       "[0, 1)"},
      {"{\"predictor\": \"cats\", \"target\": 0.5, \"thresholds\": [0.1, 0.2], \"active_thresholds\": [0.1, 0.2], "
       "\"layer_targets\": [0.1]}",
       "has 1 entries"},
  };
  for (const Case& c : cases) {
    const std::string e = SparsityError(c.sparsity);
    EXPECT_NE(e.find(c.message), std::string::npos) << c.sparsity << " -> " << e;
    EXPECT_NE(e.find("accullm.json"), std::string::npos) << e;  // the error names the file
  }
}

TEST(MagnitudeHistogramTest, QuantilesOfAKnownDistribution) {
  MagnitudeHistogram h;
  EXPECT_EQ(h.Quantile(0.5), 0.0f);  // nothing counted
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> d(0.0f, 2.0f);
  std::vector<float> v(200000);
  for (float& x : v) {
    x = d(rng);
    h.Add(x);
  }
  h.Add(std::nanf(""));  // not counted
  EXPECT_EQ(h.count(), static_cast<int64_t>(v.size()));
  std::sort(v.begin(), v.end());
  for (double share : {0.1, 0.3, 0.5, 0.7, 0.9, 0.99}) {
    const float exact = v[static_cast<size_t>(share * v.size())];
    EXPECT_NEAR(h.Quantile(share), exact, 2e-3 * exact) << share;  // within the bin width (2^-9 relative)
    // The defining property: about `share` of the values lie at or below it.
    const double below = static_cast<double>(std::upper_bound(v.begin(), v.end(), h.Quantile(share)) - v.begin());
    EXPECT_NEAR(below / v.size(), share, 2e-3) << share;
  }
  EXPECT_EQ(h.Quantile(0.0), 0.0f);
}

// A small INT4 pack of the embedded model (GPTQ on a few calibration sequences), shared by
// the tests below, and the calibration sequences the sparsity thresholds come from.
class FfnSparsityPackTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pack_ = new test_support::LowBitTestPack(/*calibration_sequences=*/2);
    dir_ = &pack_->dir();
    chunks_ = &pack_->chunks();
  }
  static void TearDownTestSuite() {
    delete pack_;
    dir_ = nullptr;
    chunks_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(pack_->ok()); }

  static std::string CopyPack(const std::string& name) { return pack_->Copy(name); }
  // A copy of the pack with the thresholds for `target` in its manifest; "" and a test failure
  // when it cannot be made.
  static std::string SparseCopy(const std::string& name, double target) {
    const std::string dir = CopyPack(name);
    if (dir.empty()) return "";
    const absl::Status st = WritePackSparsity(dir, Measure(target));
    EXPECT_TRUE(st.ok()) << st;
    return st.ok() ? dir : "";
  }
  // A copy with the product rule at `target` in every layer and a gate prefilter keeping
  // `prefilter_recall` of the active neurons.
  static std::string ProductCopy(const std::string& name, double target, double prefilter_recall) {
    const std::string dir = CopyPack(name);
    if (dir.empty()) return "";
    ThreadPool pool(2);
    auto m = model::Transformer::Load(*dir_, &pool);
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return "";
    FfnActivationStatistics stats(**m, pool);
    EXPECT_TRUE(CollectFfnStatistics(**m, *chunks_, stats).ok());
    model::PackSparsity s = stats.ProductThresholds(
        std::vector<double>(static_cast<size_t>((*m)->config().num_layers), target), prefilter_recall);
    s.measured_on = "quantized";
    const absl::Status st = WritePackSparsity(dir, s);
    EXPECT_TRUE(st.ok()) << st;
    return st.ok() ? dir : "";
  }
  // That copy loaded on `pool`; nullptr and a test failure when it cannot be.
  static std::unique_ptr<model::Transformer> LoadSparseCopy(const std::string& name, double target, ThreadPool& pool,
                                                            const model::ModelLoadOptions& options = {}) {
    const std::string dir = SparseCopy(name, target);
    return dir.empty() ? nullptr : test_support::LoadModelOrFail(dir, &pool, options);
  }
  // Thresholds measured on the pack's own FFN over the calibration chunks.
  static model::PackSparsity Measure(double target) {
    ThreadPool pool(2);
    auto m = model::Transformer::Load(*dir_, &pool);
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return {};
    FfnActivationStatistics stats(**m, pool);
    EXPECT_TRUE(CollectFfnStatistics(**m, *chunks_, stats).ok());
    EXPECT_EQ(stats.tokens(), 6 * 128);
    model::PackSparsity s = stats.Thresholds(target);
    s.measured_on = "quantized";
    return s;
  }
  // Last-position logits of every calibration chunk, back to back.
  static std::vector<float> Logits(model::Transformer& m) {
    const int64_t vocab = m.config().vocab_size;
    std::vector<float> all;
    std::vector<float> logits(static_cast<size_t>(vocab));
    for (const auto& chunk : *chunks_) {
      model::KvCache cache = m.NewCache(static_cast<int64_t>(chunk.size()));
      EXPECT_TRUE(m.Forward(chunk.data(), static_cast<int64_t>(chunk.size()), cache, logits.data()).ok());
      all.insert(all.end(), logits.begin(), logits.end());
    }
    return all;
  }
  static std::vector<float> LogitsOf(const std::string& dir, const model::ModelLoadOptions& options = {}) {
    ThreadPool pool(2);
    auto m = model::Transformer::Load(dir, &pool, options);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? Logits(**m) : std::vector<float>{};
  }
  static bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
    return !a.empty() && a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  }

  static test_support::LowBitTestPack* pack_;
  static const std::string* dir_;  // the pack
  static const std::vector<std::vector<int32_t>>* chunks_;
};
test_support::LowBitTestPack* FfnSparsityPackTest::pack_ = nullptr;
const std::string* FfnSparsityPackTest::dir_ = nullptr;
const std::vector<std::vector<int32_t>>* FfnSparsityPackTest::chunks_ = nullptr;

TEST_F(FfnSparsityPackTest, TargetZeroAndSparsityOffGiveTheDenseLogitsBitForBit) {
  const std::vector<float> dense = LogitsOf(*dir_);
  const std::string zero = SparseCopy("zero", 0.0);
  ASSERT_FALSE(zero.empty());
  auto manifest = model::LoadPackManifest(zero);
  ASSERT_TRUE(manifest.ok() && manifest->has_value() && (*manifest)->sparsity.has_value());
  EXPECT_EQ((*manifest)->sparsity->target, 0.0);
  EXPECT_TRUE(SameBits(LogitsOf(zero), dense)) << "target 0 must run the dense FFN";

  const std::string half = SparseCopy("half", 0.5);
  ASSERT_FALSE(half.empty());
  EXPECT_TRUE(SameBits(LogitsOf(half, {.sparsity = false}), dense)) << "--sparsity off";
  EXPECT_FALSE(SameBits(LogitsOf(half), dense)) << "target 0.5 must change something";
}

TEST_F(FfnSparsityPackTest, SkipsTheTargetShareOnTheCalibrationText) {
  ThreadPool pool(2);
  auto m = LoadSparseCopy("half", 0.5, pool);
  ASSERT_NE(m, nullptr);
  ASSERT_TRUE(m->ffn_sparsity_enabled());
  m->set_measure_ffn_recall(true);
  Logits(*m);  // the same chunks the thresholds came from
  int64_t total = 0, kept = 0, active = 0, kept_active = 0;
  const auto counts = m->ffn_sparsity_counts();
  ASSERT_EQ(counts.size(), static_cast<size_t>(m->config().num_layers));
  for (const auto& c : counts) {
    EXPECT_EQ(c.total, 6 * 128 * m->config().intermediate_size);
    // Per layer too: each layer's threshold is its own quantile. (Exactly 0.5 up to the
    // histogram's bin width: the same tokens, the same bits.)
    EXPECT_NEAR(1.0 - static_cast<double>(c.kept) / c.total, 0.5, 0.01);
    total += c.total;
    kept += c.kept;
    active += c.active;
    kept_active += c.kept_active;
  }
  EXPECT_NEAR(1.0 - static_cast<double>(kept) / total, 0.5, 0.01);
  // Truly active neurons: the product's quantile at the same share.
  EXPECT_NEAR(static_cast<double>(active) / total, 0.5, 0.01);
  const double recall = static_cast<double>(kept_active) / active;
  EXPECT_GT(recall, 0.5);
  EXPECT_LT(recall, 1.0);  // the gate alone does not decide the product
  m->ResetFfnSparsityCounts();
  EXPECT_EQ(m->ffn_sparsity_counts()[0].total, 0);
}

TEST_F(FfnSparsityPackTest, SparseLogitsDoNotDependOnTheBatch) {
  ThreadPool pool(2);
  auto m = LoadSparseCopy("half", 0.5, pool);
  ASSERT_NE(m, nullptr);
  const int64_t vocab = m->config().vocab_size;
  const std::vector<int32_t> a((*chunks_)[0].begin(), (*chunks_)[0].begin() + 20);
  const std::vector<int32_t> b((*chunks_)[1].begin(), (*chunks_)[1].begin() + 33);
  std::vector<float> alone(static_cast<size_t>(vocab));
  model::KvCache ca = m->NewCache(64);
  ASSERT_TRUE(m->Forward(a.data(), static_cast<int64_t>(a.size()), ca, alone.data()).ok());
  model::KvCache c0 = m->NewCache(64), c1 = m->NewCache(64);
  std::vector<int32_t> tokens = b;
  tokens.insert(tokens.end(), a.begin(), a.end());
  std::vector<float> both(static_cast<size_t>(2 * vocab));
  ASSERT_TRUE(m->ForwardBatch(tokens.data(),
                              {{&c0, static_cast<int64_t>(b.size())}, {&c1, static_cast<int64_t>(a.size())}},
                              both.data())
                  .ok());
  EXPECT_EQ(std::memcmp(both.data() + vocab, alone.data(), vocab * sizeof(float)), 0);
}

// ---- The sparse kernels at decode (model/sparse_ffn.h) ----

// Neurons j with (j + 3·layer) % 5 < fifths, the same for every token: a fixed list.
class FixedNeuronSelector final : public model::FfnNeuronSelector {
 public:
  explicit FixedNeuronSelector(int64_t inter, int fifths = 3) : inter_(inter), fifths_(fifths) {}
  bool Keeps(int64_t layer, int64_t j) const { return (j + 3 * layer) % 5 < fifths_; }
  int64_t KeptCount(int64_t layer) const {
    int64_t n = 0;
    for (int64_t j = 0; j < inter_; ++j) n += Keeps(layer, j) ? 1 : 0;
    return n;
  }
  absl::Status Select(int64_t layer, const float*, int64_t n, ThreadPool&, model::FfnKeptSets& out) const override {
    out.neurons.clear();
    out.row_begin.assign(1, 0);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t j = 0; j < inter_; ++j)
        if (Keeps(layer, j)) out.neurons.push_back(static_cast<int32_t>(j));
      out.row_begin.push_back(static_cast<int64_t>(out.neurons.size()));
    }
    return absl::OkStatus();
  }

 private:
  int64_t inter_;
  int fifths_;
};

// Test-only "oracle": keeps each row's `keep` neurons of largest |SiLU(gate)·up|, computed
// densely from the layer's own linears (what a perfect predictor would name).
class OracleNeuronSelector final : public model::FfnNeuronSelector {
 public:
  OracleNeuronSelector(model::Transformer& m, int64_t keep) : m_(m), keep_(keep) {}
  absl::Status Select(int64_t layer, const float* x, int64_t n, ThreadPool& pool,
                      model::FfnKeptSets& out) const override {
    const int64_t inter = m_.config().intermediate_size;
    std::vector<float> g(static_cast<size_t>(inter)), u(g.size()), h(g.size());
    out.neurons.clear();
    out.row_begin.assign(1, 0);
    for (int64_t r = 0; r < n; ++r) {  // row by row: a row's set depends on that row alone
      m_.layer(layer).gate->Forward(x + r * m_.config().hidden_size, 1, g.data(), pool);
      m_.layer(layer).up->Forward(x + r * m_.config().hidden_size, 1, u.data(), pool);
      kernels::SiluMul(g.data(), u.data(), inter, h.data());
      std::vector<int32_t> order(static_cast<size_t>(inter));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int32_t a, int32_t b) { return std::fabs(h[a]) > std::fabs(h[b]); });
      order.resize(static_cast<size_t>(keep_));
      std::sort(order.begin(), order.end());
      out.neurons.insert(out.neurons.end(), order.begin(), order.end());
      out.row_begin.push_back(static_cast<int64_t>(out.neurons.size()));
    }
    ++calls_;
    return absl::OkStatus();
  }
  mutable std::atomic<int64_t> calls_{0};

 private:
  model::Transformer& m_;
  int64_t keep_;
};

// A selector that breaks the contract in one of three ways.
class BrokenNeuronSelector final : public model::FfnNeuronSelector {
 public:
  enum Kind { kDescending, kOutOfRange, kWrongRows };
  explicit BrokenNeuronSelector(Kind kind) : kind_(kind) {}
  absl::Status Select(int64_t, const float*, int64_t n, ThreadPool&, model::FfnKeptSets& out) const override {
    out.neurons.clear();
    out.row_begin.assign(1, 0);
    for (int64_t r = 0; r < n; ++r) {
      if (kind_ == kDescending) out.neurons.insert(out.neurons.end(), {5, 3});
      else out.neurons.insert(out.neurons.end(), {1, 1 << 30});
      out.row_begin.push_back(static_cast<int64_t>(out.neurons.size()));
    }
    if (kind_ == kWrongRows) out.row_begin.pop_back();
    return absl::OkStatus();
  }

 private:
  Kind kind_;
};

// Decodes `steps` tokens after a prompt, one Forward of one row each (the sparse kernels),
// and runs the same tokens as the middle row of 3-row batches (the masked dense path) beside
// two other sequences: every decoded token's logits must be the same bits.
void ExpectDecodeEqualsTheBatchedToken(model::Transformer& m, const std::vector<int32_t>& prompt,
                                       const std::vector<int32_t>& other, int steps) {
  const int64_t vocab = m.config().vocab_size, n = static_cast<int64_t>(prompt.size());
  model::KvCache alone = m.NewCache(64), mid = m.NewCache(64), first = m.NewCache(64), last = m.NewCache(64);
  std::vector<float> logits(static_cast<size_t>(vocab)), batch(static_cast<size_t>(3 * vocab));
  ASSERT_TRUE(m.Forward(prompt.data(), n, alone, logits.data()).ok());
  ASSERT_TRUE(m.Forward(prompt.data(), n, mid, logits.data()).ok());
  ASSERT_TRUE(m.Forward(other.data(), 7, first, logits.data()).ok());
  ASSERT_TRUE(m.Forward(other.data() + 7, 5, last, logits.data()).ok());
  m.ResetFfnSparsityCounts();
  for (int step = 0; step < steps; ++step) {
    const int32_t token = other[static_cast<size_t>(12 + step)];
    ASSERT_TRUE(m.Forward(&token, 1, alone, logits.data()).ok());
    const auto decoded = m.ffn_sparsity_counts();
    for (const auto& c : decoded) EXPECT_EQ(c.sparse_rows, step + 1) << "decode must run the sparse kernels";
    const int32_t rows[3] = {other[static_cast<size_t>(step)], token, other[static_cast<size_t>(20 + step)]};
    ASSERT_TRUE(m.ForwardBatch(rows, {{&first, 1}, {&mid, 1}, {&last, 1}}, batch.data()).ok());
    for (const auto& c : m.ffn_sparsity_counts()) EXPECT_EQ(c.sparse_rows, step + 1) << "a batch runs masked";
    EXPECT_EQ(std::memcmp(batch.data() + vocab, logits.data(), vocab * sizeof(float)), 0) << "step " << step;
  }
}

TEST_F(FfnSparsityPackTest, CatsDecodeThroughTheSparseKernelsIsTheMaskedPathBitForBit) {
  ThreadPool pool(2);
  auto m = LoadSparseCopy("half", 0.5, pool);
  ASSERT_NE(m, nullptr);
  const std::vector<int32_t> prompt((*chunks_)[0].begin(), (*chunks_)[0].begin() + 11);
  ExpectDecodeEqualsTheBatchedToken(*m, prompt, (*chunks_)[1], 4);
  // About half the neurons were skipped at decode too (the thresholds' target).
  int64_t total = 0, kept = 0;
  for (const auto& c : m->ffn_sparsity_counts()) {
    total += c.total;
    kept += c.kept;
  }
  EXPECT_GT(kept, total / 5);
  EXPECT_LT(kept, 4 * total / 5);
}

// Counts summed over the layers: share skipped and recall.
std::pair<double, double> SkippedAndRecall(const model::Transformer& m) {
  int64_t total = 0, kept = 0, active = 0, kept_active = 0;
  for (const auto& c : m.ffn_sparsity_counts()) {
    total += c.total;
    kept += c.kept;
    active += c.active;
    kept_active += c.kept_active;
  }
  return {total > 0 ? 1.0 - static_cast<double>(kept) / total : 0.0,
          active > 0 ? static_cast<double>(kept_active) / active : 0.0};
}

TEST_F(FfnSparsityPackTest, ProductRuleSkipsTheTargetAndMissesOnlyWhatThePrefilterDrops) {
  const std::string exact = ProductCopy("product_exact", 0.5, 1.0);
  const std::string loose = ProductCopy("product_prefilter", 0.5, 0.95);
  ASSERT_FALSE(exact.empty() || loose.empty());
  auto manifest = model::LoadPackManifest(loose);
  ASSERT_TRUE(manifest.ok() && manifest->has_value() && (*manifest)->sparsity.has_value());
  EXPECT_EQ((*manifest)->sparsity->predictor, "product");
  EXPECT_EQ((*manifest)->sparsity->thresholds, (*manifest)->sparsity->active_thresholds);
  for (float g : (*manifest)->sparsity->gate_thresholds) EXPECT_GT(g, 0.0f) << "a prefilter at recall 0.95";
  ThreadPool pool(2);
  for (const auto& [dir, min_recall] : {std::pair{exact, 1.0}, std::pair{loose, 0.93}}) {
    auto m = test_support::LoadModelOrFail(dir, &pool);
    ASSERT_NE(m, nullptr);
    m->set_measure_ffn_recall(true);
    Logits(*m);  // the calibration chunks: the thresholds' own tokens
    const auto [skipped, recall] = SkippedAndRecall(*m);
    // The product test alone skips the target share; the prefilter adds its misses.
    EXPECT_GE(skipped, 0.49) << dir;
    EXPECT_LE(skipped, 0.5 + (1 - min_recall) * 0.5 + 0.01) << dir;
    if (min_recall == 1.0) {
      EXPECT_EQ(recall, 1.0) << "without a prefilter the rule keeps every active neuron";
    } else {
      EXPECT_GE(recall, min_recall) << dir;
      EXPECT_LT(recall, 1.0) << "the prefilter drops some active neurons";
    }
  }
  // Dearer than CATS per neuron skipped (up is computed), but closer to the dense logits at the
  // same share: the product decides what matters.
  const std::vector<float> dense = LogitsOf(*dir_), product = LogitsOf(exact), cats = LogitsOf(SparseCopy("c5", 0.5));
  double d_product = 0, d_cats = 0;
  for (size_t i = 0; i < dense.size(); ++i) {
    d_product += (product[i] - dense[i]) * (product[i] - dense[i]);
    d_cats += (cats[i] - dense[i]) * (cats[i] - dense[i]);
  }
  EXPECT_GT(d_product, 0);
  EXPECT_LT(d_product, d_cats);
}

TEST_F(FfnSparsityPackTest, ProductDecodeThroughTheSparseKernelsIsTheMaskedPathBitForBit) {
  ThreadPool pool(2);
  auto m = test_support::LoadModelOrFail(ProductCopy("product_decode", 0.5, 0.95), &pool);
  ASSERT_NE(m, nullptr);
  const std::vector<int32_t> prompt((*chunks_)[0].begin(), (*chunks_)[0].begin() + 11);
  ExpectDecodeEqualsTheBatchedToken(*m, prompt, (*chunks_)[1], 4);
  EXPECT_GT(SkippedAndRecall(*m).first, 0.3);
}

// `quantize --sparsity auto` scores every candidate against reference logits computed once:
// the same figures as evaluating against the reference model itself.
TEST_F(FfnSparsityPackTest, EvaluationAgainstStoredReferenceLogitsIsTheSame) {
  ThreadPool pool(2);
  auto pack = LoadSparseCopy("eval_ref", 0.5, pool);
  auto source = test_support::LoadModelOrFail(test_support::ModelDir(), &pool);
  ASSERT_NE(pack, nullptr);
  ASSERT_NE(source, nullptr);
  std::vector<int32_t> stream;
  for (const auto& c : *chunks_) stream.insert(stream.end(), c.begin(), c.end());
  EvalOptions options;
  options.ctx = 64;
  options.max_chunks = 5;
  auto direct = Evaluate(*pack, *source, stream, 1, options);
  auto reference = ReferenceLogits::Compute(*source, stream, 1, options);
  ASSERT_TRUE(direct.ok() && reference.ok());
  auto stored = Evaluate(*pack, *reference, stream, 1);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->positions, direct->positions);
  EXPECT_EQ(stored->positions, 5 * (64 - 1 - 32));
  EXPECT_EQ(stored->kl_mean, direct->kl_mean);
  EXPECT_EQ(stored->kl_p99, direct->kl_p99);
  EXPECT_EQ(stored->top1_agreement, direct->top1_agreement);
  EXPECT_EQ(stored->perplexity, direct->perplexity);
  EXPECT_EQ(stored->reference_perplexity, direct->reference_perplexity);
  EXPECT_GT(stored->kl_mean, 0);
  // Another text than the logits were computed on is refused, not scored against the wrong ones.
  std::vector<int32_t> shorter(stream.begin(), stream.begin() + 3 * 64);
  EXPECT_FALSE(Evaluate(*pack, *reference, shorter, 1).ok());
}

TEST_F(FfnSparsityPackTest, SparseKernelsOffGiveTheSameDecodeBits) {
  ThreadPool pool(2);
  auto m = LoadSparseCopy("half", 0.5, pool);
  ASSERT_NE(m, nullptr);
  const int64_t vocab = m->config().vocab_size;
  auto decode = [&](bool sparse_kernels) {
    m->set_sparse_ffn_kernels(sparse_kernels);
    m->ResetFfnSparsityCounts();
    model::KvCache cache = m->NewCache(64);
    std::vector<float> all, logits(static_cast<size_t>(vocab));
    for (int i = 0; i < 12; ++i) {  // token by token from the start: every step is one row
      EXPECT_TRUE(m->Forward(&(*chunks_)[2][static_cast<size_t>(i)], 1, cache, logits.data()).ok());
      all.insert(all.end(), logits.begin(), logits.end());
    }
    EXPECT_EQ(m->ffn_sparsity_counts()[0].sparse_rows, sparse_kernels ? 12 : 0);
    return all;
  };
  const std::vector<float> sparse = decode(true), masked = decode(false);
  EXPECT_TRUE(SameBits(sparse, masked));
}

TEST_F(FfnSparsityPackTest, DecodeAtTargetZeroAndWithSparsityOffIsTheDensePackBitForBit) {
  auto decode = [&](const std::string& dir, const model::ModelLoadOptions& options, bool sparse = false) {
    ThreadPool pool(2);
    auto m = model::Transformer::Load(dir, &pool, options);
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return std::vector<float>{};
    const int64_t vocab = (*m)->config().vocab_size;
    model::KvCache cache = (*m)->NewCache(16);
    std::vector<float> all, logits(static_cast<size_t>(vocab));
    for (int i = 0; i < 10; ++i) {  // one row per step: where the sparse kernels would run
      EXPECT_TRUE((*m)->Forward(&(*chunks_)[1][static_cast<size_t>(i)], 1, cache, logits.data()).ok());
      all.insert(all.end(), logits.begin(), logits.end());
    }
    for (const auto& c : (*m)->ffn_sparsity_counts()) EXPECT_EQ(c.sparse_rows, sparse ? 10 : 0);
    return all;
  };
  const std::vector<float> dense = decode(*dir_, {});
  const std::string zero = SparseCopy("zero", 0.0);
  ASSERT_FALSE(zero.empty());
  EXPECT_TRUE(SameBits(decode(zero, {}), dense)) << "target 0";
  const std::string half = SparseCopy("half", 0.5);
  ASSERT_FALSE(half.empty());
  EXPECT_TRUE(SameBits(decode(half, {.sparsity = false}), dense)) << "--sparsity off";
  EXPECT_FALSE(SameBits(decode(half, {}, /*sparse=*/true), dense)) << "target 0.5 must change something";
}

TEST_F(FfnSparsityPackTest, PredictedNeuronsDecodeThroughTheSparseKernelsIsTheMaskedPathBitForBit) {
  ThreadPool pool(2);
  auto m = model::Transformer::Load(*dir_, &pool);  // no thresholds: the selector alone
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_FALSE((*m)->ffn_sparsity_enabled());
  const int64_t inter = (*m)->config().intermediate_size;
  // 60% kept runs the sparse kernels; 80% the dense tiles at AVX-512 (SparseFfnMaxKeptShare;
  // AVX2 runs 80% sparse too). At every ISA level.
  for (kernels::Isa isa : kernels::SupportedIsas())
    for (int fifths : {3, 4}) {
      kernels::ScopedIsaForTesting level(isa);
      SCOPED_TRACE(std::string(kernels::IsaName(isa)) + ", " + std::to_string(fifths) + " fifths kept");
      (*m)->ResetFfnSparsityCounts();
      auto fixed = std::make_shared<FixedNeuronSelector>(inter, fifths);
      (*m)->set_ffn_neuron_selector(fixed);
      ASSERT_TRUE((*m)->ffn_sparsity_enabled());
      const std::vector<int32_t> prompt((*chunks_)[3].begin(), (*chunks_)[3].begin() + 9);
      ExpectDecodeEqualsTheBatchedToken(**m, prompt, (*chunks_)[4], 3);
      const auto counts = (*m)->ffn_sparsity_counts();
      for (size_t l = 0; l < counts.size(); ++l) {
        EXPECT_EQ(counts[l].total, 3 * 4 * inter);  // 3 steps of 4 rows (decode + the batch of 3)
        EXPECT_EQ(counts[l].kept, 3 * 4 * fixed->KeptCount(static_cast<int64_t>(l)));
      }
    }
}

TEST_F(FfnSparsityPackTest, AnOracleSelectorKeepsItsCountAndBeatsAFixedListOfTheSameSize) {
  ThreadPool pool(2);
  auto m = model::Transformer::Load(*dir_, &pool);
  ASSERT_TRUE(m.ok()) << m.status();
  const int64_t inter = (*m)->config().intermediate_size, vocab = (*m)->config().vocab_size;
  const std::vector<int32_t> tokens((*chunks_)[5].begin(), (*chunks_)[5].begin() + 16);
  auto decode = [&]() {
    model::KvCache cache = (*m)->NewCache(32);
    std::vector<float> all, logits(static_cast<size_t>(vocab));
    for (int32_t t : tokens) {
      EXPECT_TRUE((*m)->Forward(&t, 1, cache, logits.data()).ok());
      all.insert(all.end(), logits.begin(), logits.end());
    }
    return all;
  };
  const std::vector<float> dense = decode();
  auto error = [&](const std::vector<float>& got) {
    double e = 0;
    for (size_t i = 0; i < got.size(); ++i) e += std::fabs(got[i] - dense[i]);
    return e;
  };
  auto oracle = std::make_shared<OracleNeuronSelector>(**m, inter / 5 * 3);
  (*m)->set_ffn_neuron_selector(oracle);
  (*m)->ResetFfnSparsityCounts();
  const double oracle_error = error(decode());
  EXPECT_GT(oracle->calls_.load(), 0);
  for (const auto& c : (*m)->ffn_sparsity_counts()) {
    EXPECT_EQ(c.kept, 16 * (inter / 5 * 3));
    EXPECT_EQ(c.sparse_rows, 16);
  }
  (*m)->set_ffn_neuron_selector(std::make_shared<FixedNeuronSelector>(inter));
  const double fixed_error = error(decode());
  EXPECT_GT(oracle_error, 0.0);
  EXPECT_LT(oracle_error, fixed_error);  // keeping the largest products matters
}

TEST_F(FfnSparsityPackTest, ASelectorBreakingItsContractFailsTheForwardPass) {
  ThreadPool pool(2);
  auto m = model::Transformer::Load(*dir_, &pool);
  ASSERT_TRUE(m.ok()) << m.status();
  std::vector<float> logits(static_cast<size_t>(3 * (*m)->config().vocab_size));
  for (auto kind :
       {BrokenNeuronSelector::kDescending, BrokenNeuronSelector::kOutOfRange, BrokenNeuronSelector::kWrongRows}) {
    (*m)->set_ffn_neuron_selector(std::make_shared<BrokenNeuronSelector>(kind));
    for (int64_t n : {1, 3}) {  // the sparse kernels and the masked path
      model::KvCache cache = (*m)->NewCache(8);
      const absl::Status st = (*m)->Forward((*chunks_)[0].data(), n, cache, logits.data());
      EXPECT_FALSE(st.ok()) << kind << " " << n;
      EXPECT_NE(std::string(st.message()).find("FFN neuron selector"), std::string::npos) << st;
    }
  }
}

TEST_F(FfnSparsityPackTest, WriterRefusesSparsityTheReaderWouldRefuse) {
  const std::string bad = CopyPack("bad");
  model::PackSparsity s = Measure(0.5);
  s.thresholds.pop_back();  // one short
  const absl::Status st = WritePackSparsity(bad, s);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(std::string(st.message()).find("entries but the pack has"), std::string::npos) << st;
  auto manifest = model::LoadPackManifest(bad);  // untouched, still loads, still dense
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_FALSE((*manifest)->sparsity.has_value());
}

TEST_F(FfnSparsityPackTest, ExactImpliesDense) {
  ThreadPool pool(1);
  auto m = LoadSparseCopy("half", 0.5, pool, {.exact = true});
  ASSERT_NE(m, nullptr);
  EXPECT_FALSE(m->ffn_sparsity_enabled());
}

// Serve's sampled recall (--sparsity-recall-sample-rate): a sampled decode row runs the masked
// path and counts its active neurons as eval does; the logits keep their bits at every rate.
TEST_F(FfnSparsityPackTest, SampledRecallCountsDecodeRowsAndKeepsTheLogitsBits) {
  ThreadPool pool(2);
  auto m = LoadSparseCopy("half", 0.5, pool);
  ASSERT_NE(m, nullptr);
  const int64_t vocab = m->config().vocab_size;
  const int kSteps = 24;
  // A prompt chunk of 8 rows (never sampled: not a decode row), then kSteps decode rows.
  auto decode = [&](double rate, bool measure_all = false) {
    m->set_ffn_recall_sample_rate(rate);
    m->set_measure_ffn_recall(measure_all);
    model::KvCache cache = m->NewCache(64);
    std::vector<float> all, logits(static_cast<size_t>(vocab));
    EXPECT_TRUE(m->Forward((*chunks_)[5].data(), 8, cache, logits.data()).ok());
    m->ResetFfnSparsityCounts();
    for (int i = 0; i < kSteps; ++i) {
      EXPECT_TRUE(m->Forward(&(*chunks_)[5][static_cast<size_t>(8 + i)], 1, cache, logits.data()).ok());
      all.insert(all.end(), logits.begin(), logits.end());
    }
    return all;
  };
  const std::vector<float> off = decode(0);
  for (const auto& c : m->ffn_sparsity_counts()) {
    EXPECT_EQ(c.sparse_rows, kSteps);  // every decode row ran the sparse kernels
    EXPECT_EQ(c.recall_rows, 0);
    EXPECT_EQ(c.active, 0);
  }
  const std::vector<float> every = decode(1);
  EXPECT_TRUE(SameBits(every, off)) << "rate 1 must not change a logit";
  const auto sampled_all = m->ffn_sparsity_counts();
  for (const auto& c : sampled_all) {
    EXPECT_EQ(c.recall_rows, kSteps);  // every decode token of the layer, no prompt row
    EXPECT_EQ(c.sparse_rows, 0);
    EXPECT_GT(c.active, 0);
    EXPECT_LE(c.kept_active, c.active);
    EXPECT_LE(c.kept_active, c.kept);
  }
  // The same counts as eval's measurement over the same rows: one machinery, not two.
  const std::vector<float> measured = decode(0, /*measure_all=*/true);
  EXPECT_TRUE(SameBits(measured, off));
  const auto eval_counts = m->ffn_sparsity_counts();
  for (size_t l = 0; l < eval_counts.size(); ++l) {
    EXPECT_EQ(sampled_all[l].active, eval_counts[l].active) << "layer " << l;
    EXPECT_EQ(sampled_all[l].kept_active, eval_counts[l].kept_active) << "layer " << l;
    EXPECT_EQ(sampled_all[l].kept, eval_counts[l].kept) << "layer " << l;
  }
  // A share: some rows, the same ones in every layer (chosen once per pass), same bits.
  const std::vector<float> some = decode(0.3);
  EXPECT_TRUE(SameBits(some, off)) << "rate 0.3 must not change a logit";
  const auto sampled_some = m->ffn_sparsity_counts();
  EXPECT_GT(sampled_some[0].recall_rows, 0);
  EXPECT_LT(sampled_some[0].recall_rows, kSteps);
  for (const auto& c : sampled_some) {
    EXPECT_EQ(c.recall_rows, sampled_some[0].recall_rows);
    EXPECT_EQ(c.recall_rows + c.sparse_rows, kSteps);
  }
  // Reproducible: the same run samples the same rows.
  decode(0.3);
  EXPECT_EQ(m->ffn_sparsity_counts()[0].recall_rows, sampled_some[0].recall_rows);
  EXPECT_EQ(m->ffn_sparsity_counts()[0].active, sampled_some[0].active);
}

TEST_F(FfnSparsityPackTest, RecallSamplingOfARowDoesNotDependOnTheBatch) {
  ThreadPool pool(2);
  auto m = LoadSparseCopy("half", 0.5, pool);
  ASSERT_NE(m, nullptr);
  m->set_ffn_recall_sample_rate(0.5);
  const int64_t vocab = m->config().vocab_size;
  const int kSeqs = 3, kSteps = 8;
  std::vector<float> logits(static_cast<size_t>(kSeqs * vocab));
  auto prefilled = [&](std::vector<model::KvCache>& caches) {
    caches.clear();
    for (int s = 0; s < kSeqs; ++s) {
      caches.push_back(m->NewCache(64));
      EXPECT_TRUE(m->Forward((*chunks_)[s].data(), 5 + s, caches.back(), logits.data()).ok());
    }
  };
  auto token = [&](int s, int step) { return (*chunks_)[s][static_cast<size_t>(5 + s + step)]; };
  // Each sequence decoded alone, then the three decoded together in one batch per step.
  std::vector<model::KvCache> caches;
  prefilled(caches);
  m->ResetFfnSparsityCounts();
  std::vector<float> alone;
  for (int step = 0; step < kSteps; ++step) {
    for (int s = 0; s < kSeqs; ++s) {
      const int32_t t = token(s, step);
      ASSERT_TRUE(m->Forward(&t, 1, caches[static_cast<size_t>(s)], logits.data()).ok());
      alone.insert(alone.end(), logits.begin(), logits.begin() + vocab);
    }
  }
  const auto counts_alone = m->ffn_sparsity_counts();
  prefilled(caches);
  m->ResetFfnSparsityCounts();
  std::vector<float> batched;
  for (int step = 0; step < kSteps; ++step) {
    const int32_t rows[kSeqs] = {token(0, step), token(1, step), token(2, step)};
    ASSERT_TRUE(m->ForwardBatch(rows, {{&caches[0], 1}, {&caches[1], 1}, {&caches[2], 1}}, logits.data()).ok());
    batched.insert(batched.end(), logits.begin(), logits.end());
  }
  const auto counts_batched = m->ffn_sparsity_counts();
  EXPECT_TRUE(SameBits(batched, alone));
  EXPECT_GT(counts_alone[0].recall_rows, 0);
  EXPECT_LT(counts_alone[0].recall_rows, kSeqs * kSteps);
  for (size_t l = 0; l < counts_alone.size(); ++l) {
    EXPECT_EQ(counts_batched[l].recall_rows, counts_alone[l].recall_rows) << "layer " << l;
    EXPECT_EQ(counts_batched[l].active, counts_alone[l].active) << "layer " << l;
    EXPECT_EQ(counts_batched[l].kept_active, counts_alone[l].kept_active) << "layer " << l;
  }
}

}  // namespace
}  // namespace accullm::quant
