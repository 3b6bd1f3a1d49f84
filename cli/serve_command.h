// `accullm serve`: the OpenAI-compatible REST service (coordinator/).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace accullm::cli {

void AddServeCommand(CLI::App& app, std::function<int()>& run);

}  // namespace accullm::cli
