// `accullm tokenize`: text -> token ids with a model's tokenizer.json (and ids -> text).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace accullm::cli {

// Adds the `tokenize` subcommand; sets *run to the action main() calls when it was chosen.
//
//   accullm tokenize [--tokenizer FILE_OR_DIR] (--text T | --file F | --jsonl F | --decode IDS)
//                    [--no-special | --no-bos]
//
// --text / --file print the ids as one JSON array, e.g. [1, 420, 435]. --jsonl reads one
// JSON string per line and prints one JSON array per line (blank lines are skipped).
// --decode "1,2,3" prints the decoded text instead. BOS/EOS are added as the tokenizer's
// post-processor / tokenizer_config.json say unless --no-special (alias --no-bos).
// FILE_OR_DIR is a tokenizer.json or a model directory holding one; default: the embedded
// model. Every failure prints one line "error: ..." to stderr and exits non-zero.
void AddTokenizeCommand(CLI::App& app, std::function<int()>& run);

}  // namespace accullm::cli
