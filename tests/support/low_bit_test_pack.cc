#include "tests/support/low_bit_test_pack.h"

#include <filesystem>
#include <system_error>

#include "common/mapped_file.h"
#include "common/thread_pool.h"
#include "gtest/gtest.h"
#include "model/transformer.h"
#include "quant/calibration.h"
#include "quant/model_quantizer.h"
#include "quant/pack_writer.h"
#include "sharding/precision_plan.h"

namespace accullm::test_support {

namespace fs = std::filesystem;

LowBitTestPack::LowBitTestPack(int calibration_sequences) {
  if (scratch_.path().empty()) return;  // ScopedTempDir recorded why
  dir_ = scratch_.Path("pack");
  Write(calibration_sequences);
}

void LowBitTestPack::Write(int calibration_sequences) {
  ThreadPool pool(2);
  auto model = LoadModelOrFail(ModelDir(), &pool);
  ASSERT_NE(model, nullptr);
  auto tok = LoadTokenizerOrFail(ModelDir());
  ASSERT_NE(tok, nullptr);
  auto text = ReadTextFile(ModelDir() + "/calib.txt");
  ASSERT_TRUE(text.ok()) << text.status();
  chunks_ = quant::MakeCalibrationChunks(tok->Encode(*text, false), 1, /*samples=*/6, /*seq_len=*/128);
  ASSERT_EQ(chunks_.size(), 6u);
  ASSERT_LE(calibration_sequences, 6);
  quant::CalibrationStats stats(&pool, 6.0f);
  const std::vector<std::vector<int32_t>> calibration(chunks_.begin(), chunks_.begin() + calibration_sequences);
  ASSERT_TRUE(quant::RunCalibration(*model, calibration, stats).ok());
  auto plan = sharding::PrecisionPlan::AllLowBit(model->config().num_layers);
  quant::ModelQuantOptions opts;
  auto mats = quant::QuantizeModel(*model, stats, plan, opts, pool);
  ASSERT_TRUE(mats.ok()) << mats.status();
  quant::PackDescription desc;
  desc.source_dir = ModelDir();
  desc.plan = plan;
  desc.options = opts;
  auto bytes = quant::WritePack(*model, *mats, desc, dir_);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ok_ = true;
}

std::string LowBitTestPack::Copy(const std::string& name) const {
  if (!ok_) {
    ADD_FAILURE() << "no pack to copy";
    return "";
  }
  const std::string out = scratch_.Path("copy_" + name);
  std::error_code ec;
  fs::remove_all(out, ec);
  if (!ec) fs::copy(dir_, out, fs::copy_options::recursive, ec);
  if (ec) {
    ADD_FAILURE() << "copying " << dir_ << " to " << out << ": " << ec.message();
    return "";
  }
  return out;
}

}  // namespace accullm::test_support
