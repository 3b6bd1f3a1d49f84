#include "cli/golden_pack.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cli/cli_common.h"
#include "model/pack/manifest.h"
#include "speculative/draft_length.h"

namespace accullm::cli {

absl::StatusOr<GoldenModels> ResolveGoldenPack(const std::string& pack_flag, const std::string& draft,
                                               const std::string& reference) {
  if (!draft.empty())
    return absl::InvalidArgumentError("--golden runs --model PACK with the pack as its own draft: drop --draft");
  const std::string pack = pack_flag.empty() ? DefaultModelDir() : pack_flag;
  auto manifest = model::LoadPackManifest(pack);
  if (!manifest.ok()) return manifest.status();
  if (!manifest->has_value())
    return absl::InvalidArgumentError(
        absl::StrCat("--golden needs --model PACK (a pack made by accullm quantize); ", pack, " is not one"));
  std::string source = reference.empty() ? (*manifest)->source_model_path : reference;
  if (source.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("--golden: the pack ", pack, " records no source model; name it with --reference FP_DIR"));
  if (reference.empty() && !std::filesystem::is_directory(source))
    return absl::NotFoundError(absl::StrCat("--golden: the source model the pack ", pack, " records, ", source,
                                            ", is not here; name it with --reference FP_DIR"));
  return GoldenModels{.target = source, .draft = pack};
}

absl::Status ApplyGoldenFlags(bool golden, const std::string& reference, std::string& model, std::string& draft) {
  if (!golden) {
    if (reference.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError("--reference needs --golden (it names the source model of --model PACK)");
  }
  auto resolved = ResolveGoldenPack(model, draft, reference);
  if (!resolved.ok()) return resolved.status();
  model = resolved->target;
  draft = resolved->draft;
  return absl::OkStatus();
}

void AddDraftMinAcceptanceFlag(CLI::App& cmd, std::optional<double>& floor) {
  cmd.add_option("--draft-min-acceptance", floor,
                 "Pause drafting for a sequence while its running acceptance rate is under this (plain decode, one "
                 "probe token every 8 steps): a draft that is rarely accepted costs more than it saves. Default 0.5 "
                 "with a draft model, 0.25 with ngram; 0 = always draft. Changes only the speed, never the tokens")
      ->check(CLI::Range(0.0, 1.0));
}

double DraftPauseBelow(const std::string& mode, const std::optional<double>& flag) {
  if (flag) return *flag;
  return speculative::DefaultPauseBelow(mode == "ngram");
}

void AddGoldenFlag(CLI::App& cmd, bool& golden) {
  cmd.add_flag("--golden", golden,
               "Run --model PACK golden: its full-precision source model (--reference FP_DIR, else the path the "
               "pack recorded, checked by its hash) answers and the pack drafts, so every token is the source's own");
}

}  // namespace accullm::cli
