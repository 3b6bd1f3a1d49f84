// Small pieces shared by the accullm subcommands.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace accullm::cli {

// The embedded default model: $ACCULLM_MODEL, else the one shipped in the repository.
std::string DefaultModelDir();

// "1,2,3" → ids; whitespace around commas allowed; clear errors otherwise.
absl::StatusOr<std::vector<int32_t>> ParseIdList(const std::string& text);

// --exact, the same words on every command that runs a model (ModelLoadOptions::exact).
void AddExactFlag(CLI::App& cmd, bool& exact);

// --sparsity on|off, the same words on every command that runs a model
// (ModelLoadOptions::sparsity): "off" runs a sparse pack's FFN dense. Stored as "on"/"off".
void AddSparsityFlag(CLI::App& cmd, std::string& sparsity);

// Prints "error: <message>" on one line to stderr and returns the exit status 1.
int ReportError(const absl::Status& status);

}  // namespace accullm::cli
