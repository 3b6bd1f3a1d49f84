// The load-time NaN/Inf scan: every float dtype, every kind of non-finite value, anywhere in
// a tensor; integer tensors left alone; a store checked in parallel chunks reports the first
// bad tensor by name; a checkpoint holding NaN is refused by Transformer::Load, and a pipeline
// stage's check covers its own layers only.
#include "model/weight_check.h"

#include <unistd.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "gtest/gtest.h"
#include "model/transformer.h"
#include "quant/safetensors_writer.h"

namespace accullm::model {
namespace {

namespace fs = std::filesystem;
const std::string kModelDir = std::string(ACCULLM_SOURCE_DIR) + "/models/tinystories-llama";
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// `values` stored as `t` (F32, F16 or BF16).
std::vector<uint8_t> Encode(DType t, const std::vector<float>& values) {
  std::vector<uint8_t> out(values.size() * DTypeSize(t));
  for (size_t i = 0; i < values.size(); ++i) {
    if (t == DType::kF32) {
      std::memcpy(out.data() + 4 * i, &values[i], 4);
    } else {
      const uint16_t h = t == DType::kF16 ? F32ToF16(values[i]) : F32ToBf16(values[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

// Finite values at the edges of each format: largest, smallest normal and subnormal, ±0.
std::vector<float> EdgeValues(DType t, size_t n) {
  const float max = t == DType::kF32 ? FLT_MAX : t == DType::kF16 ? 65504.f : 3.3895314e38f;
  std::vector<float> v(n);
  const float edges[] = {max, -max, 0.f, -0.f, 6e-8f, -6e-8f, 1e-38f, 1.f, -2.5f};
  for (size_t i = 0; i < n; ++i) v[i] = edges[i % 9];
  return v;
}

class FirstNonFiniteTest : public ::testing::TestWithParam<DType> {};

TEST_P(FirstNonFiniteTest, FindsTheFirstNanOrInfAnywhere) {
  const DType t = GetParam();
  const size_t n = 10000;  // more than one of the scan's blocks
  std::vector<float> v = EdgeValues(t, n);
  EXPECT_EQ(FirstNonFinite(t, Encode(t, v).data(), n), -1) << DTypeName(t);
  for (float bad : {kNan, -kNan, kInf, -kInf}) {
    for (size_t at : {size_t{0}, size_t{4095}, size_t{4096}, size_t{7777}, n - 1}) {
      std::vector<float> w = v;
      w[at] = bad;
      if (at + 10 < n) w[at + 10] = kNan;  // a later bad element does not hide the first
      EXPECT_EQ(FirstNonFinite(t, Encode(t, w).data(), n), static_cast<int64_t>(at))
          << DTypeName(t) << " " << bad << " at " << at;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(FloatTypes, FirstNonFiniteTest, ::testing::Values(DType::kF32, DType::kF16, DType::kBF16));

TEST(WeightCheck, F32ValuesBeyondF16RangeAreFine) {
  // 1e30 is Inf only once converted to F16: the scan reads the stored type.
  std::vector<float> v = {1e30f, -1e30f};
  EXPECT_EQ(FirstNonFinite(DType::kF32, Encode(DType::kF32, v).data(), 2), -1);
}

TEST(WeightCheck, SignallingNanAndUnalignedData) {
  const uint32_t snan = 0x7f800001u;  // NaN with the quiet bit clear
  std::vector<uint8_t> bytes(1 + 3 * 4, 0);
  std::memcpy(bytes.data() + 1 + 2 * 4, &snan, 4);  // an odd address
  EXPECT_EQ(FirstNonFinite(DType::kF32, bytes.data() + 1, 3), 2);
}

TEST(WeightCheck, IntegerTensorsAreNotScanned) {
  std::vector<uint8_t> ff(64, 0xff);  // all-ones bytes would be NaN as floats
  EXPECT_EQ(FirstNonFinite(DType::kU8, ff.data(), 64), -1);
  EXPECT_EQ(FirstNonFinite(DType::kI32, ff.data(), 16), -1);
}

TEST(WeightCheck, ErrorNamesFileTensorValueAndPosition) {
  std::vector<float> v(12, 0.5f);
  v[1 * 4 + 2] = -kInf;
  const std::vector<uint8_t> bytes = Encode(DType::kF16, v);
  TensorView t{"lm_head.weight", DType::kF16, {3, 4}, bytes.data(), bytes.size(), "/m/model.safetensors"};
  const absl::Status st = CheckFinite(t);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(),
            "/m/model.safetensors: tensor \"lm_head.weight\" (F16 [3, 4]) holds -Inf at [1, 2]: a corrupt or badly "
            "converted file; NaN and Inf weights are refused");
  v[1 * 4 + 2] = 0.f;
  const std::vector<uint8_t> fine = Encode(DType::kF16, v);
  t.data = fine.data();
  EXPECT_TRUE(CheckFinite(t).ok());
}

class StoreCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "accullm_weight_check_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(StoreCheckTest, ChunkedParallelScanReportsTheFirstBadTensorByName) {
  // "big" spans several of the store scan's chunks; its Inf sits in a late one.
  const size_t n = (size_t{1} << 20) * 3 + 5;
  std::vector<float> big(n, 0.25f);
  big[n - 3] = kInf;
  std::vector<float> small(100, 1.f);
  small[7] = kNan;
  std::vector<uint8_t> codes(256, 0xff);
  quant::SafetensorsWriter w;
  const auto b = Encode(DType::kF16, big), s = Encode(DType::kBF16, small), c = Encode(DType::kF32, {1.f, 2.f});
  w.Add("b.big", DType::kF16, {static_cast<int64_t>(n)}, b.data(), b.size());
  w.Add("c.small", DType::kBF16, {10, 10}, s.data(), s.size());
  w.Add("a.clean", DType::kF32, {2}, c.data(), c.size());
  w.Add("a.codes", DType::kU8, {256}, codes.data(), codes.size());
  ASSERT_TRUE(w.Write(dir_ + "/model.safetensors").ok());
  auto store = TensorStore::OpenDirectory(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  ThreadPool pool(3);
  for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
    const absl::Status st = CheckFinite(**store, {}, p);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find("tensor \"b.big\" (F16 [3145733]) holds Inf at [3145730]"), std::string::npos) << st;
  }
  auto only = [](const std::string& want) { return [want](const std::string& name) { return name == want; }; };
  const absl::Status st = CheckFinite(**store, only("c.small"), &pool);
  EXPECT_NE(st.message().find("tensor \"c.small\" (BF16 [10, 10]) holds NaN at [0, 7]"), std::string::npos) << st;
  EXPECT_TRUE(CheckFinite(**store, only("a.clean"), &pool).ok());
  EXPECT_TRUE(CheckFinite(**store, only("a.codes"), &pool).ok());
}

TEST_F(StoreCheckTest, CheckpointWithNanIsRefusedAtLoad) {
  // The embedded model with one NaN in layer 3's down projection.
  auto src = SafetensorsFile::Open(kModelDir + "/model.safetensors");
  ASSERT_TRUE(src.ok()) << src.status();
  const std::string bad = "model.layers.3.mlp.down_proj.weight";
  std::vector<uint8_t> poisoned;
  quant::SafetensorsWriter w;
  for (const auto& [name, t] : (*src)->tensors()) {
    if (name != bad) {
      w.Add(name, t.dtype, t.shape, t.data, t.nbytes);
      continue;
    }
    ASSERT_EQ(t.dtype, DType::kF32);
    poisoned.assign(t.data, t.data + t.nbytes);
    std::memcpy(poisoned.data() + 4 * (5 * t.shape[1] + 9), &kNan, 4);
    w.Add(name, t.dtype, t.shape, poisoned.data(), poisoned.size());
  }
  ASSERT_TRUE(w.Write(dir_ + "/model.safetensors").ok());
  fs::copy_file(kModelDir + "/config.json", dir_ + "/config.json");

  ThreadPool pool(2);
  auto refused = Transformer::Load(dir_, &pool);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("tensor \"" + bad + "\" (F32 [256, 768]) holds NaN at [5, 9]"),
            std::string::npos)
      << refused.status();

  // Without the load-time scan (a pipeline stage), each stage checks what it reads.
  auto m = Transformer::Load(dir_, &pool, {.check_finite = false});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE((*m)->CheckFiniteWeights(0, 3, true, false).ok());
  EXPECT_TRUE((*m)->CheckFiniteWeights(4, 8, false, true).ok());
  const absl::Status st = (*m)->CheckFiniteWeights(3, 4, false, false);
  EXPECT_NE(st.message().find(bad), std::string::npos) << st;
}

}  // namespace
}  // namespace accullm::model
