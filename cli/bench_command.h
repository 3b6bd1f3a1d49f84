#pragma once
#include <CLI/CLI.hpp>
#include <functional>
namespace accullm::cli {
// Adds `bench`: prefill and decode throughput of a model.
void AddBenchCommand(CLI::App& app, std::function<int()>& run);
}  // namespace accullm::cli
