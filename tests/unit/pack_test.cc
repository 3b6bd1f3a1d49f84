// Packs: what `accullm quantize` writes loads back as the same INT4 model; malformed or
// mismatched packs are refused with a clear error.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "common/mapped_file.h"
#include "gtest/gtest.h"
#include "kernels/cpu/isa.h"
#include "model/int8_linear.h"
#include "model/low_bit_linear.h"
#include "model/pack/manifest.h"
#include "model/transformer.h"
#include "quant/calibration.h"
#include "quant/canary_check.h"
#include "quant/evaluation.h"
#include "quant/model_quantizer.h"
#include "quant/pack_writer.h"
#include "quant/safetensors_writer.h"

namespace accullm::quant {
namespace {

namespace fs = std::filesystem;
const std::string kModelDir = std::string(ACCULLM_SOURCE_DIR) + "/models/tinystories-llama";

class PackTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Per process: ctest runs each test case as its own process, possibly in parallel.
    dir_ = new std::string(::testing::TempDir() + "accullm_pack_test_" + std::to_string(::getpid()));
    fs::remove_all(*dir_);
    ThreadPool pool(2);
    auto model = model::Transformer::Load(kModelDir, &pool);
    ASSERT_TRUE(model.ok()) << model.status();
    // A quick GPTQ calibration on a few synthetic sequences is enough to exercise the format.
    CalibrationStats stats(&pool, 6.0f);
    std::vector<std::vector<int32_t>> chunks;
    for (int c = 0; c < 2; ++c) {
      std::vector<int32_t> ids = {1};
      for (int i = 0; i < 63; ++i) ids.push_back(3 + (i * 37 + c * 11) % 2000);
      chunks.push_back(ids);
    }
    ASSERT_TRUE(RunCalibration(**model, chunks, stats).ok());
    // One canary: the full-precision logits of a prompt's last position (the drift check).
    CanaryLogits canary{"ids 1,420,435,261,394", {1, 420, 435, 261, 394}, {}};
    canary.logits.resize((*model)->config().vocab_size);
    model::KvCache fp_cache = (*model)->NewCache(16);
    ASSERT_TRUE((*model)->Forward(canary.ids.data(), canary.ids.size(), fp_cache, canary.logits.data()).ok());
    ModelQuantOptions opts;
    opts.outliers.top_fraction = 0.01;  // force some FP16 outlier columns
    opts.lm_head_bits = 8;              // and the 8-bit head format
    opts.quant.scale_bits = 8;          // and 8-bit group steps
    opts.embedding_bits = 5;            // and a 5-bit embedding table
    opts.down_group_size = 64;          // and down at its own group (the manifest's down_group_size)
    // Blocks and single linears FP16 (2.down, 3.v inside INT4 blocks).
    auto plan = sharding::PrecisionPlan::FromFp16Spec("first:1,last:1,2.down,3.v", (*model)->config().num_layers);
    ASSERT_TRUE(plan.ok());
    // Mixed code widths: every width from 3 to 8 somewhere.
    plan->linear_bits = {{{1, 0}, 3}, {{2, 4}, 6}, {{3, 3}, 7}, {{4, 6}, 5}, {{5, 2}, 8}};
    auto mats = QuantizeModel(**model, stats, *plan, opts, pool);
    ASSERT_TRUE(mats.ok()) << mats.status();
    PackDescription desc;
    ASSERT_TRUE(QuantizeEmbeddingsAndHead(**model, stats, opts, pool, {}, &*mats, &desc.int8).ok());
    ASSERT_EQ(desc.int8.count("lm_head"), 1u);
    desc.source_dir = kModelDir;
    desc.plan = *plan;
    desc.options = opts;
    desc.canaries = {canary};
    auto bytes = WritePack(**model, *mats, desc, *dir_);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    // Logits of the in-memory quantized model, for the round trip.
    std::vector<int32_t> prompt = {1, 420, 435, 261, 394};
    expected_ = new std::vector<float>((*model)->config().vocab_size);
    model::KvCache cache = (*model)->NewCache(16);
    ASSERT_TRUE((*model)->Forward(prompt.data(), prompt.size(), cache, expected_->data()).ok());
  }
  static void TearDownTestSuite() {
    for (const char* name : {"version", "missing", "plan", "count", "manifest", "nomanifest", "linear", "unknown",
                             "zerobits", "head8", "widthfp16", "widthmissing", "embedwidth", "nan", "inf", "nanhead",
                             "downgroup"})
      fs::remove_all(*dir_ + "_" + name);
    fs::remove_all(*dir_);
    delete dir_;
    delete expected_;
  }

  // A copy of the pack with `edit` applied to a fresh directory.
  std::string CopyPack(const std::string& name) {
    const std::string out = *dir_ + "_" + name;
    fs::remove_all(out);
    fs::copy(*dir_, out, fs::copy_options::recursive);
    return out;
  }
  static void Replace(const std::string& path, const std::string& from, const std::string& to) {
    auto text = ReadTextFile(path);
    ASSERT_TRUE(text.ok());
    const size_t at = text->find(from);
    ASSERT_NE(at, std::string::npos) << from;
    text->replace(at, from.size(), to);
    std::ofstream(path, std::ios::binary) << *text;
  }
  // Rewrites the pack's safetensors without tensor `drop`.
  static void DropTensor(const std::string& pack, const std::string& drop) {
    auto f = model::SafetensorsFile::Open(pack + "/model.safetensors");
    ASSERT_TRUE(f.ok());
    SafetensorsWriter w;
    for (const auto& [name, t] : (*f)->tensors())
      if (name != drop) w.Add(name, t.dtype, t.shape, t.data, t.nbytes);
    f->reset();
    ASSERT_TRUE(w.Write(pack + "/model.safetensors").ok());
  }
  // Rewrites the pack's safetensors with element `at` (-1: every element) of F16 tensor
  // `name` set to `value`.
  static void Poison(const std::string& pack, const std::string& name, int64_t at, float value) {
    auto f = model::SafetensorsFile::Open(pack + "/model.safetensors");
    ASSERT_TRUE(f.ok());
    SafetensorsWriter w;
    std::vector<uint16_t> h;
    for (const auto& [n, t] : (*f)->tensors()) {
      if (n != name) {
        w.Add(n, t.dtype, t.shape, t.data, t.nbytes);
        continue;
      }
      ASSERT_EQ(t.dtype, DType::kF16) << name;
      h.resize(static_cast<size_t>(t.numel()));
      std::memcpy(h.data(), t.data, t.nbytes);
      for (int64_t i = 0; i < t.numel(); ++i)
        if (at < 0 || i == at) h[i] = F32ToF16(value);
      w.Add(n, t.dtype, t.shape, h.data(), t.nbytes);
    }
    f->reset();
    ASSERT_TRUE(w.Write(pack + "/model.safetensors").ok());
  }
  std::string LoadError(const std::string& dir) {
    ThreadPool pool(1);
    auto m = model::Transformer::Load(dir, &pool);
    EXPECT_FALSE(m.ok());
    return m.ok() ? "" : std::string(m.status().message());
  }

  static std::string* dir_;
  static std::vector<float>* expected_;
};
std::string* PackTest::dir_ = nullptr;
std::vector<float>* PackTest::expected_ = nullptr;

TEST_F(PackTest, LoadsBackAsTheSameQuantizedModel) {
  ThreadPool pool(2);
  // Exact: the in-memory quantized model computes with FP32 activations too.
  auto m = model::Transformer::Load(*dir_, &pool, {.exact = true});
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE((*m)->pack().has_value());
  EXPECT_EQ((*m)->pack()->zero_fraction_bits, 4);  // the default: zero points in sixteenths
  EXPECT_EQ((*m)->pack()->scale_bits, 8);
  const int64_t n = (*m)->config().num_layers;
  for (int64_t l = 0; l < n; ++l) {
    const bool int4 = dynamic_cast<const model::LowBitLinear*>((*m)->layer(l).q.get()) != nullptr;
    EXPECT_EQ(int4, l != 0 && l != n - 1) << "layer " << l;
  }
  EXPECT_NE(dynamic_cast<const model::Int8Linear*>(&(*m)->lm_head()), nullptr);
  EXPECT_EQ((*m)->pack()->lm_head, "int8");
  // The plan's single FP16 linears came back dense, their neighbours INT4.
  EXPECT_EQ(dynamic_cast<const model::LowBitLinear*>((*m)->layer(2).down.get()), nullptr);
  EXPECT_NE(dynamic_cast<const model::LowBitLinear*>((*m)->layer(2).up.get()), nullptr);
  EXPECT_EQ(dynamic_cast<const model::LowBitLinear*>((*m)->layer(3).v.get()), nullptr);
  EXPECT_NE(dynamic_cast<const model::LowBitLinear*>((*m)->layer(3).k.get()), nullptr);
  // Some outlier columns were stored and came back.
  const auto* q = dynamic_cast<const model::LowBitLinear*>((*m)->layer(1).q.get());
  ASSERT_NE(q, nullptr);
  EXPECT_FALSE(q->weights().outlier_cols.empty());
  // Every code width came back as planned; the rest are 4 bits.
  auto width = [&](const model::LinearOp* op) {
    const auto* l = dynamic_cast<const model::LowBitLinear*>(op);
    return l == nullptr ? 0 : l->weights().matrix.bits;
  };
  EXPECT_EQ(width((*m)->layer(1).q.get()), 3);
  EXPECT_EQ(width((*m)->layer(2).gate.get()), 6);
  EXPECT_EQ(width((*m)->layer(3).o.get()), 7);
  EXPECT_EQ(width((*m)->layer(4).down.get()), 5);
  EXPECT_EQ(width((*m)->layer(5).v.get()), 8);
  EXPECT_EQ(width((*m)->layer(5).k.get()), 4);
  EXPECT_EQ((*m)->pack()->embeddings, "int5");
  std::vector<int32_t> prompt = {1, 420, 435, 261, 394};
  std::vector<float> logits((*m)->config().vocab_size);
  model::KvCache cache = (*m)->NewCache(16);
  ASSERT_TRUE((*m)->Forward(prompt.data(), prompt.size(), cache, logits.data()).ok());
  // The pack stores the FP16 blocks and embeddings in F16: a small difference only.
  double num = 0, den = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    num = std::max(num, static_cast<double>(std::fabs(logits[i] - (*expected_)[i])));
    den = std::max(den, static_cast<double>(std::fabs((*expected_)[i])));
  }
  EXPECT_LT(num / den, 2e-3);
}

// The default arithmetic (INT8 activations, integer dot products) against exact FP32
// activations on the same pack: close (the accuracy targets are checked end to end by the
// quantize integration tests), and every low-bit linear really switched.
TEST_F(PackTest, Int8ActivationsStayCloseToExact) {
  ThreadPool pool(2);
  auto fast = model::Transformer::Load(*dir_, &pool);
  auto exact = model::Transformer::Load(*dir_, &pool, {.exact = true});
  ASSERT_TRUE(fast.ok() && exact.ok());
  const auto* q = dynamic_cast<const model::LowBitLinear*>((*fast)->layer(1).q.get());
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(q->uses_int8_activations());
  EXPECT_FALSE(dynamic_cast<const model::LowBitLinear*>((*exact)->layer(1).q.get())->uses_int8_activations());
  // The per-row INT8 head runs the integer kernels over its codes; `--exact` keeps FP32.
  const auto* head = dynamic_cast<const model::LowBitLinear*>(&(*fast)->lm_head());
  ASSERT_NE(head, nullptr);
  EXPECT_TRUE(head->uses_int8_activations());
  EXPECT_EQ(head->weights().matrix.bits, 8);
  EXPECT_NE(dynamic_cast<const model::Int8Linear*>(&(*exact)->lm_head()), nullptr);
  std::vector<int32_t> prompt = {1, 420, 435, 261, 394, 17, 1200, 88};
  const int64_t vocab = (*fast)->config().vocab_size;
  std::vector<float> a(vocab), b(vocab);
  model::KvCache ca = (*fast)->NewCache(16), cb = (*exact)->NewCache(16);
  ASSERT_TRUE((*fast)->Forward(prompt.data(), prompt.size(), ca, a.data()).ok());
  ASSERT_TRUE((*exact)->Forward(prompt.data(), prompt.size(), cb, b.data()).ok());
  auto log_softmax = [](std::vector<float> v) {
    const double mx = *std::max_element(v.begin(), v.end());
    double z = 0;
    for (float x : v) z += std::exp(x - mx);
    std::vector<double> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = v[i] - mx - std::log(z);
    return out;
  };
  const auto la = log_softmax(a), lb = log_softmax(b);
  double kl = 0;
  for (int64_t i = 0; i < vocab; ++i) kl += std::exp(lb[i]) * (lb[i] - la[i]);
  EXPECT_LT(kl, 0.01);
  EXPECT_EQ(std::max_element(a.begin(), a.end()) - a.begin(), std::max_element(b.begin(), b.end()) - b.begin());
  EXPECT_NE(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);  // really another path
}

// Batch invariance, the identity property every mode relies on: a sequence's logits are the
// same bits alone or in a batch of 16, through one prefill pass or prefill then a decode
// step, with 1 or 2 threads, at every ISA level this CPU runs (mixed 3..8-bit widths, FP16
// outlier columns, 8-bit steps and the INT8 head: the pack of this suite), under every
// activation rounding (stochastic draws are keyed by the row, never by a counter).
TEST_F(PackTest, Int8LogitsDoNotDependOnBatchKernelOrThreads) {
  std::vector<kernels::ActQuantConfig> modes(4);
  modes[1].rounding = modes[3].rounding = kernels::ActRounding::kStochastic;
  modes[2].error_feedback = modes[3].error_feedback = true;
  modes[1].seed = modes[3].seed = 7;
  std::vector<std::vector<float>> first_of_mode;
  for (const kernels::ActQuantConfig& mode : modes) {
    SCOPED_TRACE(std::string(kernels::ActRoundingName(mode.rounding)) + (mode.error_feedback ? "+feedback" : ""));
    for (kernels::Isa isa : kernels::SupportedIsas()) {
      kernels::ScopedIsaForTesting level(isa);
      std::vector<std::vector<float>> seen;  // seq 0's last logits, per way of computing them
      for (int threads : {1, 2}) {
        ThreadPool pool(threads);
        auto m = model::Transformer::Load(*dir_, &pool, {.activations = mode});
        ASSERT_TRUE(m.ok()) << m.status();
        const int64_t vocab = (*m)->config().vocab_size;
        std::vector<std::vector<int32_t>> prompts;
        for (int s = 0; s < 16; ++s) {
          std::vector<int32_t> p = {1};
          for (int i = 0; i < 3 + s; ++i) p.push_back(3 + (i * 131 + s * 17) % 2000);
          prompts.push_back(p);
        }
        std::vector<float> logits(vocab);
        {  // alone, one prefill pass
          model::KvCache c = (*m)->NewCache(32);
          ASSERT_TRUE((*m)->Forward(prompts[0].data(), prompts[0].size(), c, logits.data()).ok());
          seen.push_back(logits);
        }
        {  // alone, prefill of all but the last token, then one decode step
          model::KvCache c = (*m)->NewCache(32);
          const int64_t n = static_cast<int64_t>(prompts[0].size());
          ASSERT_TRUE((*m)->Forward(prompts[0].data(), n - 1, c, logits.data()).ok());
          ASSERT_TRUE((*m)->Forward(prompts[0].data() + n - 1, 1, c, logits.data()).ok());
          seen.push_back(logits);
        }
        {  // in a batch of 16 sequences
          std::vector<model::KvCache> caches;
          for (int s = 0; s < 16; ++s) caches.push_back((*m)->NewCache(32));
          std::vector<int32_t> tokens;
          std::vector<model::BatchSegment> segments;
          for (int s = 0; s < 16; ++s) {
            tokens.insert(tokens.end(), prompts[s].begin(), prompts[s].end());
            segments.push_back({&caches[s], static_cast<int64_t>(prompts[s].size())});
          }
          std::vector<float> all(16 * vocab);
          ASSERT_TRUE((*m)->ForwardBatch(tokens.data(), segments, all.data()).ok());
          seen.emplace_back(all.begin(), all.begin() + vocab);
        }
      }
      for (size_t i = 1; i < seen.size(); ++i)
        EXPECT_EQ(std::memcmp(seen[i].data(), seen[0].data(), seen[0].size() * sizeof(float)), 0)
            << "way " << i << " at " << kernels::IsaName(isa);
      if (isa == kernels::Isa::kScalar) first_of_mode.push_back(seen[0]);
    }
  }
  // Each mode really rounds differently.
  ASSERT_EQ(first_of_mode.size(), modes.size());
  for (size_t i = 1; i < modes.size(); ++i)
    EXPECT_NE(std::memcmp(first_of_mode[i].data(), first_of_mode[0].data(), first_of_mode[0].size() * sizeof(float)), 0)
        << "mode " << i << " gave nearest's logits";
}

TEST_F(PackTest, RefusesNanInAnF16Weight) {
  const std::string p = CopyPack("nan");
  Poison(p, "model.layers.0.self_attn.q_proj.weight", 3 * 256 + 4, std::numeric_limits<float>::quiet_NaN());
  const std::string e = LoadError(p);
  EXPECT_NE(e.find("tensor \"model.layers.0.self_attn.q_proj.weight\" (F16 [256, 256]) holds NaN at [3, 4]"),
            std::string::npos)
      << e;
}

TEST_F(PackTest, RefusesInfInTheStepsOfAnIntCodeLinear) {
  const std::string p = CopyPack("inf");
  Poison(p, "model.layers.1.mlp.up_proj.row_scales", 17, std::numeric_limits<float>::infinity());
  const std::string e = LoadError(p);
  EXPECT_NE(e.find("tensor \"model.layers.1.mlp.up_proj.row_scales\" (F16 [768]) holds Inf at [17]"), std::string::npos)
      << e;
}

// The drift check of a pack whose logits are NaN: a failure (KL +Inf, no top-1 match), never
// the "KL 0" that std::max(0.0, NaN) made of it. The load-time scan is off to get there.
TEST_F(PackTest, CanaryCheckFailsOnNanLogits) {
  ThreadPool pool(2);
  {
    auto good = model::Transformer::Load(*dir_, &pool);
    ASSERT_TRUE(good.ok()) << good.status();
    auto r = CheckCanaries(**good);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->size(), 1u);
    EXPECT_TRUE((*r)[0].finite);
    EXPECT_TRUE((*r)[0].top1_match);
    EXPECT_GT((*r)[0].kl, 0);
    EXPECT_LT((*r)[0].kl, 0.2);
  }
  const std::string p = CopyPack("nanhead");
  Poison(p, "lm_head.q8scales", -1, std::numeric_limits<float>::quiet_NaN());
  EXPECT_NE(LoadError(p).find("lm_head.q8scales"), std::string::npos);
  auto m = model::Transformer::Load(p, &pool, {.check_finite = false});
  ASSERT_TRUE(m.ok()) << m.status();
  auto r = CheckCanaries(**m);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_FALSE((*r)[0].finite);
  EXPECT_FALSE((*r)[0].top1_match);
  EXPECT_EQ((*r)[0].kl, std::numeric_limits<double>::infinity());

  // `accullm eval` on the same model: +Inf KL, no agreement, a NaN perplexity, counted.
  auto reference = model::Transformer::Load(kModelDir, &pool);
  ASSERT_TRUE(reference.ok()) << reference.status();
  std::vector<int32_t> stream;
  for (int i = 0; i < 32; ++i) stream.push_back(3 + (i * 53) % 2000);
  EvalOptions opts;
  opts.ctx = 16;
  auto e = Evaluate(**m, **reference, stream, 1, opts);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->positions, 2 * 7);
  EXPECT_EQ(e->nonfinite_positions, e->positions);
  EXPECT_EQ(e->kl_mean, std::numeric_limits<double>::infinity());
  EXPECT_EQ(e->kl_max, std::numeric_limits<double>::infinity());
  EXPECT_EQ(e->top1_agreement, 0);
  EXPECT_FALSE(std::isfinite(e->perplexity));
}

TEST_F(PackTest, RefusesWrongFormatVersion) {
  const std::string p = CopyPack("version");
  Replace(p + "/accullm.json", "\"format_version\":2", "\"format_version\":99");
  const std::string error = LoadError(p);
  EXPECT_NE(error.find("version 99 is not supported"), std::string::npos) << error;
  EXPECT_NE(error.find("newer than this build"), std::string::npos) << error;
}

TEST_F(PackTest, ManifestRecordsTheSourceModel) {
  auto manifest = model::LoadPackManifest(*dir_);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  ASSERT_TRUE(manifest->has_value());
  EXPECT_EQ((*manifest)->source_model_path, kModelDir);
  // 16 hex digits (FNV-1a of the source's config, tensor headers and sampled bytes).
  ASSERT_EQ((*manifest)->source_model_hash.size(), 16u);
  EXPECT_EQ((*manifest)->source_model_hash.find_first_not_of("0123456789abcdef"), std::string::npos);
}

// The smallest manifest a reader accepts: what earlier packs (and other writers) may hold.
std::string MinimalManifest(const std::string& extra) {
  return "{\"format\": \"accullm-pack\", \"format_version\": 1, \"layer_precision\": [\"int4\"], "
         "\"method\": \"rtn\", \"group_size\": 32, \"symmetric\": true" +
         extra + "}";
}

TEST(PackManifestTest, SourceModelIsOptional) {
  auto m = model::PackManifest::Parse(MinimalManifest(""), "accullm.json");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->source_model_path, "");
  EXPECT_EQ(m->source_model_hash, "");
  auto with = model::PackManifest::Parse(MinimalManifest(", \"source_model\": {\"path\": \"/m\", \"hash\": \"00ff\"}"),
                                         "accullm.json");
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_EQ(with->source_model_path, "/m");
  EXPECT_EQ(with->source_model_hash, "00ff");
  EXPECT_FALSE(model::PackManifest::Parse(MinimalManifest(", \"source_model\": \"/m\""), "accullm.json").ok());
}

TEST_F(PackTest, DownGroupRecordedAndNeeded) {
  auto manifest = model::LoadPackManifest(*dir_);
  ASSERT_TRUE(manifest.ok() && manifest->has_value());
  EXPECT_EQ((*manifest)->down_group_size, 64);
  EXPECT_EQ((*manifest)->GroupOf("model.layers.1.mlp.down_proj"), 64);
  EXPECT_EQ((*manifest)->GroupOf("model.layers.1.mlp.up_proj"), 32);
  EXPECT_EQ((*manifest)->GroupOf("lm_head"), 32);
  // A reader that ignores the field reads down at group_size: refused on the steps' shape.
  const std::string p = CopyPack("downgroup");
  Replace(p + "/accullm.json", ",\"down_group_size\":64", "");
  const std::string e = LoadError(p);
  EXPECT_NE(e.find("mlp.down_proj"), std::string::npos) << e;
}

TEST(PackManifestTest, DownGroupSizeIsOptionalAndChecked) {
  auto plain = model::PackManifest::Parse(MinimalManifest(""), "accullm.json");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->GroupOf("model.layers.0.mlp.down_proj"), 32);
  auto with = model::PackManifest::Parse(MinimalManifest(", \"down_group_size\": 128"), "accullm.json");
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_EQ(with->GroupOf("model.layers.0.mlp.down_proj"), 128);
  EXPECT_EQ(with->GroupOf("model.layers.0.mlp.gate_proj"), 32);
  auto bad = model::PackManifest::Parse(MinimalManifest(", \"down_group_size\": 48"), "accullm.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("must be 32, 64 or 128"), std::string::npos) << bad.status();
}

TEST(PackManifestTest, VersionsUpToThisBuildsRead) {
  EXPECT_TRUE(model::PackManifest::Parse(MinimalManifest(""), "accullm.json").ok());
  auto zero = model::PackManifest::Parse(
      "{\"format\": \"accullm-pack\", \"format_version\": 0, \"layer_precision\": [], \"method\": \"rtn\", "
      "\"group_size\": 32, \"symmetric\": true}",
      "accullm.json");
  EXPECT_FALSE(zero.ok());
}

TEST_F(PackTest, RefusesMissingTensor) {
  const std::string p = CopyPack("missing");
  DropTensor(p, "model.layers.2.mlp.up_proj.scales");
  const std::string e = LoadError(p);
  EXPECT_NE(e.find("missing tensor"), std::string::npos) << e;
  EXPECT_NE(e.find("model.layers.2.mlp.up_proj.scales"), std::string::npos) << e;
}

TEST_F(PackTest, RefusesPlanDisagreeingWithTensors) {
  const std::string p = CopyPack("plan");
  Replace(p + "/accullm.json", "\"layer_precision\":[\"fp16\",\"int4\"", "\"layer_precision\":[\"fp16\",\"fp16\"");
  const std::string e = LoadError(p);
  EXPECT_NE(e.find("disagrees"), std::string::npos) << e;
}

TEST_F(PackTest, RefusesFp16LinearTheManifestDoesNotList) {
  const std::string p = CopyPack("linear");
  Replace(p + "/accullm.json", "\"model.layers.2.mlp.down_proj\",", "");
  const std::string e = LoadError(p);
  EXPECT_NE(e.find("disagrees"), std::string::npos) << e;
  EXPECT_NE(e.find("model.layers.2.mlp.down_proj"), std::string::npos) << e;
}

TEST_F(PackTest, RefusesFp16LinearTheModelDoesNotHave) {
  const std::string p = CopyPack("unknown");
  Replace(p + "/accullm.json", "\"fp16_linears\":[", "\"fp16_linears\":[\"model.layers.99.mlp.down_proj\",");
  const std::string e = LoadError(p);
  EXPECT_NE(e.find("names 1 linear(s) this model does not have"), std::string::npos) << e;
}

TEST_F(PackTest, RefusesUnknownZeroPointFormat) {
  const std::string p = CopyPack("zerobits");
  Replace(p + "/accullm.json", "\"zero_fraction_bits\":4", "\"zero_fraction_bits\":3");
  const std::string e = LoadError(p);
  EXPECT_NE(e.find("\"zero_fraction_bits\" must be 0 or 4"), std::string::npos) << e;
}

TEST_F(PackTest, RefusesCodeWidthForAnFp16Linear) {
  const std::string p = CopyPack("widthfp16");
  Replace(p + "/accullm.json", "\"linear_bits\":{", "\"linear_bits\":{\"model.layers.2.mlp.down_proj\":5,");
  const std::string e = LoadError(p);
  EXPECT_NE(e.find("\"linear_bits\" names 1 linear(s) that are not quantized"), std::string::npos) << e;
}

TEST_F(PackTest, RefusesCodesOfAnotherWidthThanTheManifestSays) {
  const std::string p = CopyPack("widthmissing");
  Replace(p + "/accullm.json", "\"model.layers.2.mlp.gate_proj\":6", "\"model.layers.2.mlp.gate_proj\":5");
  const std::string e = LoadError(p);
  EXPECT_NE(e.find("model.layers.2.mlp.gate_proj.qweight"), std::string::npos) << e;
  EXPECT_NE(e.find("accullm.json says 5-bit codes for a [768, 256] matrix: U8 [768, 160]"), std::string::npos) << e;
}

TEST_F(PackTest, RefusesUnknownEmbeddingFormat) {
  const std::string p = CopyPack("embedwidth");
  Replace(p + "/accullm.json", "\"embeddings\":\"int5\"", "\"embeddings\":\"int9\"");
  const std::string e = LoadError(p);
  EXPECT_NE(e.find("\"embeddings\" must be \"fp16\" or \"int3\" to \"int8\""), std::string::npos) << e;
}

TEST_F(PackTest, RefusesInt8HeadTheManifestDoesNotDeclare) {
  const std::string p = CopyPack("head8");
  Replace(p + "/accullm.json", "\"lm_head\":\"int8\"", "\"lm_head\":\"fp16\"");
  const std::string e = LoadError(p);
  EXPECT_NE(e.find("lm_head is INT8 but accullm.json says fp16"), std::string::npos) << e;
}

TEST_F(PackTest, RefusesPlanWithWrongLayerCount) {
  const std::string p = CopyPack("count");
  Replace(p + "/accullm.json", "\"layer_precision\":[\"fp16\",", "\"layer_precision\":[");
  EXPECT_NE(LoadError(p).find("plan has 7 layers"), std::string::npos);
}

TEST_F(PackTest, RefusesMalformedManifest) {
  const std::string p = CopyPack("manifest");
  std::ofstream(p + "/accullm.json") << "{\"format\": \"accullm-pack\", ";
  EXPECT_NE(LoadError(p).find("invalid JSON"), std::string::npos);
}

TEST_F(PackTest, RefusesLowBitTensorsWithoutManifest) {
  const std::string p = CopyPack("nomanifest");
  fs::remove(p + "/accullm.json");
  EXPECT_NE(LoadError(p).find("no accullm.json"), std::string::npos);
}

}  // namespace
}  // namespace accullm::quant
