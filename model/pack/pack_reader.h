// Reading linear layers out of a checkpoint or an AccuLLM pack: the tensors named in
// model/pack/tensor_names.h become a LowBitLinear (the low-bit matrix a view of the mmap'd
// tensors), an Int8Linear, or, for plain tensors, a DenseLinear. Every tensor is checked
// against what the manifest and config.json imply (dtype, shape) before it is used; errors
// name the file and the tensor.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "model/linear.h"
#include "model/pack/manifest.h"
#include "model/safetensors.h"

namespace accullm::model {

// Linear `prefix` [out, in] (+ `prefix.bias` when has_bias). With a manifest (`pack`
// non-null), `quantized_expected` says whether the plan stores it low-bit, and the tensors
// must agree; without one, quantized tensors are refused.
absl::StatusOr<std::unique_ptr<LinearOp>> LoadLinear(const TensorStore& store, const std::string& prefix, int64_t out,
                                                     int64_t in, bool has_bias, const PackManifest* pack = nullptr,
                                                     bool quantized_expected = false);

// The per-row INT8 matrix `prefix.q8weight` / `prefix.q8scales` (the LM head). With
// `integer_block` > 0 (it must divide `in`) it becomes a LowBitLinear over the same mapped
// codes — 8-bit codes, zero point 128, the row's step repeated for every block of
// `integer_block` columns — so that INT8 activations (one scale per block) run the integer
// kernels on it; with 0 an Int8Linear (rows dequantized to FP32: `--exact`). Both compute
// (code − 128)·step for every weight.
absl::StatusOr<std::unique_ptr<LinearOp>> LoadInt8Linear(const TensorStore& store, const std::string& prefix,
                                                         int64_t out, int64_t in, int64_t integer_block = 0);

}  // namespace accullm::model
