#pragma once
#include <CLI/CLI.hpp>
#include <functional>
namespace accullm::cli {
// Adds `eval`: accuracy of a model (pack) against its full-precision reference.
void AddEvalCommand(CLI::App& app, std::function<int()>& run);
}  // namespace accullm::cli
