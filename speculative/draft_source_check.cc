#include "speculative/draft_source_check.h"

#include "absl/strings/str_cat.h"
#include "model/pack/source_hash.h"

namespace accullm::speculative {

absl::Status CheckDraftMatchesTarget(const model::Transformer& draft, const std::string& draft_dir,
                                     const model::Transformer& target, const std::string& target_dir) {
  if (!draft.pack().has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the draft ", draft_dir,
                     " is not an AccuLLM pack (no accullm.json): the draft must be a pack that `accullm "
                     "quantize` made from the target model ",
                     target_dir));
  }
  const model::PackManifest& m = *draft.pack();
  if (m.source_model_hash.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the draft pack ", draft_dir,
                                                   " records no source model hash, so it cannot be checked against "
                                                   "the target model ",
                                                   target_dir, "; quantize the target again to make a checkable pack"));
  }
  const std::string target_hash = model::SourceModelHash(target.tensors(), target_dir);
  if (target_hash != m.source_model_hash) {
    return absl::InvalidArgumentError(absl::StrCat("the draft pack ", draft_dir, " was quantized from another model (",
                                                   m.source_model_path, ", source hash ", m.source_model_hash,
                                                   ") than the target ", target_dir, " (hash ", target_hash,
                                                   "): the draft must be a pack of the target model"));
  }
  // The hash covers config.json, so this holds; checked anyway before rows of one vocabulary
  // are compared with tokens of another.
  if (draft.config().vocab_size != target.config().vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("the draft's vocabulary (", draft.config().vocab_size,
                                                   ") differs from the target's (", target.config().vocab_size, ")"));
  }
  return absl::OkStatus();
}

}  // namespace accullm::speculative
