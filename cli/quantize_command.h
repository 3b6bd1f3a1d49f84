#pragma once
#include <CLI/CLI.hpp>
#include <functional>
namespace accullm::cli {
// Adds `quantize` (model → mixed-precision pack) and `plan` (the precision plan table).
void AddQuantizeCommand(CLI::App& app, std::function<int()>& run);
void AddPlanCommand(CLI::App& app, std::function<int()>& run);
}  // namespace accullm::cli
