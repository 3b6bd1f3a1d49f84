// The names of a pack's quantized tensors: `<prefix><suffix>`, prefix = the checkpoint name of
// the linear ("model.layers.3.mlp.down_proj", "lm_head", "model.embed_tokens"). The one table
// the pack reader (model/pack/pack_reader.cc) and the pack writer (quant/pack_writer.cc) both
// use, so the two cannot drift apart. These strings are the on-disk format: never rename one
// (docs/formats.md describes each tensor).
#pragma once

#include <string>

namespace accullm::model::pack_tensor {

// A low-bit matrix (kernels/low_bit_matrix.h).
inline constexpr char kCodes[] = ".qweight";                 // U8 [out, in·bits/8]
inline constexpr char kScales[] = ".scales";                 // F16 (or U8 step codes) [out, in/group]
inline constexpr char kRowScales[] = ".row_scales";          // F16 [out], with 8-bit step codes
inline constexpr char kZeros[] = ".qzeros";                  // U8 [out, in/group], asymmetric only
inline constexpr char kOutlierCols[] = ".outlier_cols";      // I32 [k], optional
inline constexpr char kOutlierWeight[] = ".outlier_weight";  // F16 [out, k]

// An INT8 matrix with one step per row (the LM head).
inline constexpr char kInt8Codes[] = ".q8weight";   // U8 [out, in], value + 128
inline constexpr char kInt8Scales[] = ".q8scales";  // F16 [out]

// Unquantized tensors keep the checkpoint's names.
inline constexpr char kWeight[] = ".weight";
inline constexpr char kBias[] = ".bias";

// The full-precision logits of canary prompt `index` (F32 [vocab]).
inline std::string CanaryLogits(size_t index) { return "accullm.canary." + std::to_string(index) + ".logits"; }

}  // namespace accullm::model::pack_tensor
