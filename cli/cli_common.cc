#include "cli/cli_common.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status.h"

namespace accullm::cli {

std::string DefaultModelDir() {
  if (const char* env = std::getenv("ACCULLM_MODEL"); env != nullptr && *env != '\0') return env;
  return ACCULLM_DEFAULT_MODEL_DIR;
}

absl::StatusOr<std::vector<int32_t>> ParseIdList(const std::string& text) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    int32_t id;
    if (!absl::SimpleAtoi(part, &id) || id < 0) {
      return absl::InvalidArgumentError(absl::StrCat("invalid token id \"", part, "\" in id list"));
    }
    ids.push_back(id);
  }
  if (ids.empty()) return absl::InvalidArgumentError("empty id list");
  return ids;
}

int ReportError(const absl::Status& status) {
  std::string msg(status.message());
  for (char& c : msg)
    if (c == '\n') c = ' ';
  std::fprintf(stderr, "error: %s\n", msg.c_str());
  return 1;
}

void AddExactFlag(CLI::App& cmd, bool& exact) {
  cmd.add_flag("--exact", exact,
               "Low-bit linears compute with FP32 activations (dequantize, then multiply) instead of INT8 activations "
               "and integer dot products: slower, the reference for golden evaluations");
}

void AddActQuantFlags(CLI::App& cmd, ActQuantFlags& flags) {
  cmd.add_option("--act-quant", flags.rounding,
                 "Rounding of the INT8 activations at the low-bit linears' inputs (per weight group, outlier channels "
                 "exact): nearest, or stochastic (drawn from a hash of the seed and the row, so a row's result does "
                 "not depend on its batch)")
      ->check(CLI::IsMember({"nearest", "stochastic"}))
      ->capture_default_str();
  cmd.add_flag("--act-error-feedback", flags.error_feedback,
               "Carry each channel's rounding error into the next channel of its group");
  cmd.add_option("--act-seed", flags.seed, "Seed of the stochastic rounding")->capture_default_str();
}

absl::StatusOr<kernels::ActQuantConfig> ActQuantFromFlags(const ActQuantFlags& flags, bool exact) {
  kernels::ActQuantConfig c;
  ASSIGN_OR_RETURN(c.rounding, kernels::ParseActRounding(flags.rounding));
  c.error_feedback = flags.error_feedback;
  c.seed = flags.seed;
  if (exact && !c.is_plain_nearest())
    return absl::InvalidArgumentError("--act-quant/--act-error-feedback round INT8 activations; --exact has none");
  return c;
}

void AddSparsityFlag(CLI::App& cmd, std::string& sparsity) {
  cmd.add_option("--sparsity", sparsity,
                 "FFN activation sparsity of packs made with quantize --sparsity: on (skip the FFN neurons the pack's "
                 "rule drops: |SiLU(gate)|, |SiLU(gate)*up| or the trained guesser's score at or under its per-layer "
                 "threshold) or off (dense FFN: A/B runs and golden evaluations). --exact implies off. Packs without "
                 "thresholds always run dense")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
}

void AddKvCacheDTypeFlag(CLI::App& cmd, std::string& dtype) {
  cmd.add_option("--kv-cache-dtype", dtype,
                 "How the KV cache stores keys and values: f16 (half of f32's bytes, rounded to nearest even), bf16 "
                 "(same size, wider range, coarser), int8 (a quarter plus a float scale per position and KV head, "
                 "least-squares fitted) or f32 (exact). Attention reads each dtype directly; docs/accuracy.md gives "
                 "the measured KL against f32")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "int8"}))
      ->capture_default_str();
}

absl::StatusOr<kernels::KvDType> KvCacheDType(const std::string& name) { return kernels::ParseKvDType(name); }

}  // namespace accullm::cli
