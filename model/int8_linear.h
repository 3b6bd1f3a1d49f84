// A linear layer with row-wise INT8 weights (one F16 step per output row, codes offset by
// 128): half the bytes of FP16 at a KL cost that measures as noise — the LM head's format
// when 4 bits cost too much (docs/accuracy.md).
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/int8_kernels.h"
#include "model/linear.h"

namespace accullm::model {

// The arrays of one INT8 matrix, owned (freshly quantized) or borrowed (mmap'd pack).
struct Int8Data {
  int64_t out = 0, in = 0;
  const uint8_t* codes = nullptr;    // [out, in], value + 128
  const uint16_t* scales = nullptr;  // F16 [out]
  std::shared_ptr<const void> keep_alive;
};

// Round-to-nearest INT8 of W [out, in]: per row, step = max|w| / 127.
struct Int8Quantized {
  int64_t out = 0, in = 0;
  std::vector<uint8_t> codes;
  std::vector<uint16_t> scales;
};
Int8Quantized QuantizeInt8Rows(const float* w, int64_t out, int64_t in);

class Int8Linear final : public LinearOp {
 public:
  static absl::StatusOr<std::unique_ptr<Int8Linear>> Create(Int8Data data, std::vector<float> bias);

  int64_t in_features() const override { return d_.in; }
  int64_t out_features() const override { return d_.out; }
  void Forward(const float* x, int64_t n, float* y, ThreadPool& pool) const override;
  size_t weight_bytes() const override { return static_cast<size_t>(d_.out * d_.in + d_.out * 2); }
  const Int8Data& data() const { return d_; }

 private:
  Int8Data d_;
  kernels::Int8Matrix m_;
  std::vector<float> bias_;
};

}  // namespace accullm::model
