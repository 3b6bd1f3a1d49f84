#pragma once
#include <CLI/CLI.hpp>
#include <functional>
namespace accullm::cli {
// Adds `logits` (raw logits of every prompt position, for comparing engines).
void AddLogitsCommand(CLI::App& app, std::function<int()>& run);
}  // namespace accullm::cli
