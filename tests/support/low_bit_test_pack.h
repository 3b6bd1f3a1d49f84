// A quantized pack of the embedded model for a suite's tests (tests/unit/ffn_sparsity_test.cc,
// ffn_guesser_test.cc): written once, in SetUpTestSuite, from the calibration text, and the
// calibration sequences beside it. Tests that change a pack (its manifest, a guesser file)
// change a copy of it, so every test starts from the same pack.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace accullm::test_support {

class LowBitTestPack {
 public:
  // The embedded model's calib.txt cut into 6 sequences of 128 tokens; the first
  // `calibration_sequences` of them calibrate the quantizer (ModelQuantOptions' defaults, every
  // layer low-bit), and the pack is written into a fresh scratch directory. When a step fails a
  // test failure is recorded and ok() is false.
  explicit LowBitTestPack(int calibration_sequences);

  bool ok() const { return ok_; }
  // The pack: read it, do not change it.
  const std::string& dir() const { return dir_; }
  const std::vector<std::vector<int32_t>>& chunks() const { return chunks_; }
  // A fresh copy of the pack named `name` (an earlier copy of that name is replaced), removed
  // with the pack; "" and a test failure when it cannot be made.
  std::string Copy(const std::string& name) const;

 private:
  void Write(int calibration_sequences);  // sets ok_ when every step succeeded

  ScopedTempDir scratch_{"accullm_low_bit_pack"};
  std::string dir_;
  std::vector<std::vector<int32_t>> chunks_;
  bool ok_ = false;
};

}  // namespace accullm::test_support
