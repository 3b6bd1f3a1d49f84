// Writes an AccuLLM pack directory (see model/pack/manifest.h): config and tokenizer files
// copied, accullm.json, and model.safetensors with low-bit linears for quantized blocks and
// F16 for the rest (norms stay F32: they are tiny and sit on the residual path). Tensor names
// come from model/pack/tensor_names.h, the table the reader (model/pack/pack_reader.h) uses.
// It lives in quant/, not beside the reader in model/pack/: it writes the quantizer's output
// (QuantizedMatrices, Int8Matrices) and model/ must not depend on quant/.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/pack/manifest.h"
#include "model/transformer.h"
#include "quant/model_quantizer.h"
#include "sharding/precision_plan.h"

namespace accullm::quant {

struct CanaryLogits {
  std::string prompt;
  std::vector<int32_t> ids;
  std::vector<float> logits;  // full precision, last prompt position
};

struct PackDescription {
  std::string source_dir;
  sharding::PrecisionPlan plan;
  ModelQuantOptions options;
  std::string calibration_file;
  int64_t calibration_tokens = 0;
  std::vector<CanaryLogits> canaries;
  Int8Matrices int8;  // INT8 linears (the LM head), by prefix
};

// `model` is the source model (its TensorStore supplies every non-quantized tensor).
// Returns the bytes of model.safetensors written. Writes into `out_dir` in place (the
// manifest last): `accullm quantize` gives it a staging directory that only becomes the pack
// once complete and on disk (pack_staging.h), so no reader ever sees a half-written pack.
absl::StatusOr<size_t> WritePack(const model::Transformer& model, const QuantizedMatrices& matrices,
                                 const PackDescription& description, const std::string& out_dir);

}  // namespace accullm::quant
