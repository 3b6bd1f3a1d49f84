// Loading what a subcommand needs from a model directory, with clear errors.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "model/transformer.h"
#include "text/tokenizer.h"

namespace accullm::cli {

struct LoadedModel {
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<model::Transformer> transformer;
  std::unique_ptr<text::Tokenizer> tokenizer;  // null when not asked for and absent
};

// threads <= 0: all hardware threads. need_tokenizer: fail when tokenizer.json is absent.
absl::StatusOr<LoadedModel> LoadModel(const std::string& dir, int threads, bool need_tokenizer,
                                      const model::ModelLoadOptions& options = {});

}  // namespace accullm::cli
