#pragma once
#include <CLI/CLI.hpp>
#include <functional>
namespace accullm::cli {
// Adds `generate`; sets `run` to its action when chosen.
void AddGenerateCommand(CLI::App& app, std::function<int()>& run);
}  // namespace accullm::cli
