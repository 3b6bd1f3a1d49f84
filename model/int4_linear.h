// A linear layer with group-wise low-bit weights (INT4 by default; 3..8 bits, see
// kernels/cpu/int4_kernels.h) plus, optionally, a few input channels kept in
// FP16 (dense-and-sparse: outlier channels whose activations are too large for 4-bit
// weights to serve well). y = W_int4 · x + W_fp16[:, outliers] · x[outliers] (+ bias).
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/activation_quant.h"
#include "kernels/cpu/int4_kernels.h"
#include "model/linear.h"

namespace accullm {

// The arrays of one INT4 matrix, owned (freshly quantized) or borrowed (mmap'd pack).
struct Int4Data {
  int64_t out = 0, in = 0, group = 0;
  int bits = 4;                      // code width, 3..8
  const uint8_t* codes = nullptr;    // [out, in·bits/8]
  const uint16_t* scales = nullptr;  // F16 [out, in/group]
  const uint8_t* zeros = nullptr;    // [out, in/group] or null (symmetric)
  int zero_frac_bits = 0;            // fraction bits of the zero points (0..min(4, 8 - bits))
  const uint8_t* scale_codes = nullptr;  // 8-bit scales [out, in/group] (then `scales` is unused)
  const uint16_t* row_scales = nullptr;  // F16 [out]
  std::vector<int32_t> outlier_cols;         // sorted input channels kept in FP16
  const uint16_t* outlier_weights = nullptr;  // F16 [out, outlier_cols.size()]
  std::shared_ptr<const void> keep_alive;     // owner of the arrays above
};

class Int4Linear final : public LinearOp {
 public:
  // Validates sizes (in even, group divides in, outlier columns in range and sorted).
  static absl::StatusOr<std::unique_ptr<Int4Linear>> Create(Int4Data data, std::vector<float> bias);

  int64_t in_features() const override { return d_.in; }
  int64_t out_features() const override { return d_.out; }
  void Forward(const float* x, int64_t n, float* y, ThreadPool& pool) const override;
  size_t weight_bytes() const override;
  const Int4Data& data() const { return d_; }
  // Runtime INT8 activation quantization of this layer's input (outlier channels excluded);
  // null = off. Simulated: inputs are replaced by their dequantized INT8 values.
  void set_activation_quant(std::shared_ptr<const kernels::ActQuantConfig> config) { act_quant_ = std::move(config); }

  // Row o of W (all columns, outliers included) as float: embedding lookups.
  void DequantizeRow(int64_t o, float* dst) const;

 private:
  Int4Data d_;
  kernels::Int4Matrix m_;
  std::vector<float> bias_;
  std::shared_ptr<const kernels::ActQuantConfig> act_quant_;
  std::vector<char> outlier_mask_;  // [in]: channels the activation quantizer leaves exact
  mutable uint64_t act_calls_ = 0;  // fresh stochastic draws per call, reproducible per seed
};

}  // namespace accullm
