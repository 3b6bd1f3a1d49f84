// `accullm chat-template`: renders a conversation with a model's chat template.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace accullm::cli {

// Adds the `chat-template` subcommand; sets *run to the action main() calls when chosen.
//
//   accullm chat-template [--model DIR] [--template FILE] --messages FILE.json
//                         [--no-generation-prompt]
//
// FILE.json is a JSON list of messages ({"role", "content"} and any other fields the
// template reads), or an object {"messages": [...], ...} whose other keys become template
// variables (tools, date_string, ...). Prints the rendered prompt exactly, with no newline
// added. DIR defaults to the embedded model; --template replaces its template. Every
// failure (including the template's raise_exception) prints one line "error: ..." to stderr
// and exits 1.
void AddChatTemplateCommand(CLI::App& app, std::function<int()>& run);

}  // namespace accullm::cli
