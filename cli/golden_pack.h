#pragma once
// --golden: a pack alone, run golden. The pack drafts and its full-precision source model
// answers, so the tokens are the source's own (speculative/: the accept/reject rule with
// position-keyed draws). Shared by serve, generate and bench so the three resolve the same
// flags the same way.
#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace accullm::cli {

struct GoldenModels {
  std::string target;  // the full-precision model that answers
  std::string draft;   // the pack that drafts
};

// `pack` is --model (empty: the embedded default), `reference` is --reference FP_DIR (empty:
// the source path the pack's manifest recorded). Refused when --draft is also given, when
// `pack` is not a pack, or when no source model can be found. The source is checked against
// the pack's recorded hash later, where the draft is loaded (speculative/draft_source_check.h).
absl::StatusOr<GoldenModels> ResolveGoldenPack(const std::string& pack, const std::string& draft,
                                               const std::string& reference);

// generate's and bench's --golden / --reference: with --golden, `model` becomes the source and
// `draft` the pack (ResolveGoldenPack); --reference alone is refused (it means nothing there).
absl::Status ApplyGoldenFlags(bool golden, const std::string& reference, std::string& model, std::string& draft);

// `--golden`, with the same help in every command.
void AddGoldenFlag(CLI::App& cmd, bool& golden);

// `--draft-min-acceptance A` (generate, serve): drafting pauses for a sequence while its running
// acceptance rate is under A (speculative/draft_length.h); unset: the mode's default.
void AddDraftMinAcceptanceFlag(CLI::App& cmd, std::optional<double>& floor);
// The floor of `mode` ("draft" or "ngram"): `flag` when given, else the mode's default.
double DraftPauseBelow(const std::string& mode, const std::optional<double>& flag);

}  // namespace accullm::cli
