// `generate --speculate draft|ngram`: one sequence through speculative/'s decoder instead of
// the scheduler (the scheduler does not speculate yet), with the same stop rules, so the
// tokens are the target's alone for the same request and seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/model_loading.h"
#include "coordinator/scheduler.h"
#include "speculative/speculative_decoder.h"

namespace accullm::cli {

struct SpeculativeGenerateOptions {
  std::string mode;                                    // "draft" or "ngram"
  std::string target_dir;                              // --model (for the draft's source check)
  std::string draft_dir;                               // --draft (mode "draft")
  int64_t draft_tokens = 4;                            // --draft-tokens: the most tokens one step drafts
  double pause_below = 0.0;                            // --draft-min-acceptance, resolved (DraftPauseBelow)
  model::ModelLoadOptions load;                        // the draft loads as the target does
  bool print_text = true;                              // stream the text to stdout as it becomes final
  kernels::KvDType kv_dtype = kernels::KvDType::kF32;  // the target's cache (--kv-cache-dtype)
};

struct SpeculativeGenerateResult {
  std::vector<int32_t> ids;
  std::string finish;
  double prefill_s = 0, decode_s = 0;
  speculative::SpeculationStats stats;
};

// `request` as generate builds it for the scheduler (prompt, max_tokens >= 1, stop,
// ignore_eos, sampling); `tokenizer` may be null (ids only), as for the scheduler.
absl::StatusOr<SpeculativeGenerateResult> RunSpeculativeGenerate(LoadedModel& target, const text::Tokenizer* tokenizer,
                                                                 const coordinator::SequenceParams& request,
                                                                 const SpeculativeGenerateOptions& options);

// The statistics line(s) for stderr: drafted/accepted tokens, the acceptance rate overall and
// per draft position.
std::string SpeculationSummary(const std::string& mode, int64_t max_draft_tokens,
                               const speculative::SpeculationStats& stats);

}  // namespace accullm::cli
