#include "cli/model_loading.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace accullm::cli {

absl::StatusOr<LoadedModel> LoadModel(const std::string& dir, int threads, bool need_tokenizer,
                                      const model::ModelLoadOptions& options) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat("model directory not found: ", dir));
  }
  LoadedModel m;
  m.pool = std::make_unique<ThreadPool>(threads);
  ASSIGN_OR_RETURN(m.transformer, model::Transformer::Load(dir, m.pool.get(), options));
  const std::string tok_path = dir + "/tokenizer.json";
  if (::stat(tok_path.c_str(), &st) == 0) {
    ASSIGN_OR_RETURN(m.tokenizer, text::Tokenizer::Load(dir));
  } else if (need_tokenizer) {
    return absl::NotFoundError(absl::StrCat(dir, ": no tokenizer.json (use --prompt-ids and --output-ids for "
                                                 "weights-only checkpoints)"));
  }
  return m;
}

}  // namespace accullm::cli
