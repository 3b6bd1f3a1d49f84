// Small pieces shared by the accullm subcommands.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cpu/activation_quant.h"
#include "kernels/kv_row_format.h"

namespace accullm::cli {

// The embedded default model: $ACCULLM_MODEL, else the one shipped in the repository.
std::string DefaultModelDir();

// "1,2,3" → ids; whitespace around commas allowed; clear errors otherwise.
absl::StatusOr<std::vector<int32_t>> ParseIdList(const std::string& text);

// --exact, the same words on every command that runs a model (ModelLoadOptions::exact).
void AddExactFlag(CLI::App& cmd, bool& exact);

// --act-quant nearest|stochastic, --act-error-feedback, --act-seed S: how the INT8 path rounds
// activations (ModelLoadOptions::activations), the same words on every command that runs a model.
struct ActQuantFlags {
  std::string rounding = "nearest";
  bool error_feedback = false;
  uint64_t seed = 0;
};
void AddActQuantFlags(CLI::App& cmd, ActQuantFlags& flags);
// The quantizer's options; an error when they ask for anything but plain nearest rounding
// with --exact (FP32 activations: nothing is rounded).
absl::StatusOr<kernels::ActQuantConfig> ActQuantFromFlags(const ActQuantFlags& flags, bool exact);
// --sparsity on|off, the same words on every command that runs a model
// (ModelLoadOptions::sparsity): "off" runs a sparse pack's FFN dense. Stored as "on"/"off".
void AddSparsityFlag(CLI::App& cmd, std::string& sparsity);
// --kv-cache-dtype f32|f16|bf16|int8 (default f16), the same words on serve, generate and eval:
// how the KV cache stores keys and values (kernels/kv_row_format.h). The CLI checks the
// spelling; KvCacheDType turns it into the enum.
inline constexpr const char* kDefaultKvCacheDType = "f16";
void AddKvCacheDTypeFlag(CLI::App& cmd, std::string& dtype);
absl::StatusOr<kernels::KvDType> KvCacheDType(const std::string& name);

// Prints "error: <message>" on one line to stderr and returns the exit status 1.
int ReportError(const absl::Status& status);

}  // namespace accullm::cli
