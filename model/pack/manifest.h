// The AccuLLM pack: a model directory that `accullm quantize` writes and every command loads
// like any model. Beside config.json and the tokenizer files it holds `accullm.json` (this
// manifest) and `model.safetensors` with F16 tensors and each quantized linear's tensors
// (named in model/pack/tensor_names.h, read by model/pack/pack_reader.h).
// Versioning (docs/formats.md): optional additive fields keep kPackFormatVersion; a layout
// change bumps it; a reader refuses a version newer than its own, saying so.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/json.hpp"

namespace accullm::model {

inline constexpr int kPackFormatVersion = 2;
// Version 2 added the trained FFN guesser (sparsity predictor "lowrank" with a tensor file of
// its own): a version-1 reader refuses such a pack as newer instead of running it wrong.
inline constexpr int kPackFormatVersionGuesser = 2;
inline constexpr const char* kPackManifestFile = "accullm.json";
// The guesser's tensors (sparsity predictor "lowrank"), beside model.safetensors.
inline constexpr const char* kGuesserFile = "guesser.safetensors";

struct PackCanary {
  std::string prompt;
  std::vector<int32_t> ids;
  std::string logits_tensor;  // F32 [vocab]: full-precision logits of the last prompt position
};

// Activation sparsity in the FFN (optional "sparsity" object). With predictor "cats", neuron j
// of layer l is skipped for a token when |SiLU(gate_j(x))| <= thresholds[l]: its h_j is +0 and
// down reads that zero. With predictor "lowrank" (the trained guesser, model/ffn_guesser.h),
// the rule reads a prediction from the FFN input instead: j is skipped when
// |SiLU(ĝ_j)·û_j| <= thresholds[l], [ĝ; û] = out_l · (in_l · x) with rank-`rank` matrices
// stored in kGuesserFile. `active_thresholds[l]` defines which neurons truly matter
// (|SiLU(gate_j)·up_j| above it), the reference that eval's recall is measured against. Both
// come from calibration quantiles at `target` (the share of neurons skipped). With predictor
// "product", j is skipped when |SiLU(gate_j)| <= gate_thresholds[l] (a prefilter: up_j is not
// computed) or |SiLU(gate_j)·up_j| <= thresholds[l] (down's column is not read): the rule that
// defines an active neuron, so what it misses is the prefilter's alone. `layer_targets`, when
// present, are the per-layer shares the thresholds were taken at (`accullm quantize --sparsity
// auto` allocates them by measured sensitivity); `target` is then their mean. Readers that
// predate the field run the pack dense: same weights, exact FFN, only slower.
struct PackSparsity {
  std::string predictor;  // "cats" (dense gate, threshold on |SiLU(gate)|), "product" or "lowrank"
  int64_t rank = 0;       // "lowrank" only: the guesser's rank (>= 1)
  // "lowrank" only, optional "guesser_out_bits": the codes the guesser's `out` runs on (8 or 4,
  // made at load from its F16 tensor, model/ffn_guesser.h). The thresholds were taken through
  // that representation, so it is part of what the pack means; absent (older packs): 8.
  int guesser_out_bits = 8;
  double target = 0;                     // intended share of FFN neurons skipped, [0, 1)
  std::vector<float> thresholds;         // per layer, finite, >= 0
  std::vector<float> active_thresholds;  // per layer, finite, >= 0
  std::vector<float> gate_thresholds;    // "product" only: per layer, finite, >= 0
  std::vector<double> layer_targets;     // optional: per layer, [0, 1)
  std::string measured_on;               // "quantized" or "source": which model's gate set the thresholds
  int64_t calibration_tokens = 0;
};

struct PackManifest {
  int format_version = 0;
  // The model the pack was quantized from, as the writer recorded it ("source_model": path and
  // hash, 16 hex digits of FNV-1a over config.json, tensor headers and sampled bytes). Empty
  // when the manifest has none.
  std::string source_model_path;
  std::string source_model_hash;
  // Per block: "fp16" or "int4". "int4" means low-bit at any width 3..8 (linear_bits gives the
  // widths): the string predates other widths and stays, since packs on disk carry it.
  std::vector<std::string> layer_precision;
  // Linears kept FP16 inside low-bit blocks, by checkpoint prefix ("model.layers.7.mlp.down_proj").
  std::set<std::string> fp16_linears;
  std::string embeddings = "fp16";  // token embedding table: "fp16" or "int3".."int8" (group-wise)
  std::string lm_head = "fp16";     // LM head: "fp16", "int3".."int7" (group-wise) or "int8" (per row)
  // Code width of the block linears that are not 4 bits ("model.layers.0.mlp.down_proj" → 5):
  // mixed-precision plans.
  std::map<std::string, int> linear_bits;
  std::string method;
  int64_t group_size = 0;
  // "down_group_size" (optional): the blocks' mlp.down_proj group along its inputs, when the
  // quantizer was asked for another than group_size (32, 64 or 128). A reader that ignores it
  // refuses the pack on down's step tensor shapes rather than misreading them.
  int64_t down_group_size = 0;
  bool symmetric = true;
  int zero_fraction_bits = 0;  // qzeros hold zero·2^f (0: integer zero points; 4: sixteenths, capped at 8 - bits)
  int scale_bits = 16;         // 16: F16 .scales; 8: U8 .scales relative to F16 .row_scales
  int accumulator_bits = 0;
  int64_t tile = 0;
  std::vector<PackCanary> canaries;
  std::optional<PackSparsity> sparsity;  // absent: dense FFN

  // Code width of a quantized matrix: the embeddings' and the head's from their format
  // strings, a block linear's from linear_bits (4 when not listed).
  int BitsOf(const std::string& prefix) const;
  // Group size of a quantized matrix: down_group_size for the blocks' mlp.down_proj when the
  // manifest has one, else group_size.
  int64_t GroupOf(const std::string& prefix) const;
  // Whether `prefix` names a block's down projection ("model.layers.L.mlp.down_proj"): the
  // linear down_group_size applies to (here and in the quantizer that writes it).
  static bool IsBlockDownProjection(std::string_view prefix);

  // Parses and validates accullm.json text (`what` names the file in errors).
  static absl::StatusOr<PackManifest> Parse(const std::string& text, const std::string& what);
};

// The "sparsity" object of accullm.json, validated against `layers` blocks (the count of
// layer_precision). Exposed for the writer, which adds it to a pack after calibration.
absl::StatusOr<PackSparsity> ParsePackSparsity(const boost::json::value& v, size_t layers);

// The code width of a storage format name: "int3".."int8" → 3..8; anything else (e.g.
// "fp16") 0.
int FormatBits(const std::string& format);

// The manifest of `dir`, or nullopt when `dir` is a plain checkpoint (no accullm.json).
absl::StatusOr<std::optional<PackManifest>> LoadPackManifest(const std::string& dir);

}  // namespace accullm::model
