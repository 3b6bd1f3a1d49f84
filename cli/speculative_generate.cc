#include "cli/speculative_generate.h"

#include <chrono>
#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "speculative/draft_source_check.h"
#include "speculative/model_draft_proposer.h"
#include "speculative/ngram_draft_proposer.h"
#include "speculative/speculative_generation.h"

namespace accullm::cli {

absl::StatusOr<SpeculativeGenerateResult> RunSpeculativeGenerate(LoadedModel& target, const text::Tokenizer* tokenizer,
                                                                 const coordinator::SequenceParams& request,
                                                                 const SpeculativeGenerateOptions& options) {
  using Clock = std::chrono::steady_clock;
  model::Transformer& model = *target.transformer;
  const int64_t capacity = static_cast<int64_t>(request.prompt.size()) + request.max_tokens;
  std::unique_ptr<model::Transformer> draft_model;
  std::unique_ptr<speculative::DraftProposer> proposer;
  if (options.mode == "draft") {
    // The draft shares the target's thread pool: they take turns, and a second pool's workers
    // would spin against the first's on every step.
    ASSIGN_OR_RETURN(draft_model, model::Transformer::Load(options.draft_dir, target.pool.get(), options.load));
    RETURN_IF_ERROR(speculative::CheckDraftMatchesTarget(*draft_model, options.draft_dir, model, options.target_dir));
    proposer = std::make_unique<speculative::ModelDraftProposer>(*draft_model, request.sampling, capacity);
  } else if (options.mode == "ngram") {
    proposer = std::make_unique<speculative::NgramDraftProposer>();
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown speculation mode \"", options.mode, "\""));
  }
  speculative::SpeculationConfig config;
  config.max_draft_tokens = options.draft_tokens;
  config.pause_below = options.pause_below;
  config.kv_dtype = options.kv_dtype;
  speculative::SpeculativeDecoder decoder(model, proposer.get(), request.sampling, config, capacity);
  speculative::GenerationRequest g;
  g.prompt = request.prompt;
  g.max_tokens = request.max_tokens;
  g.stop = request.stop;
  g.ignore_eos = request.ignore_eos;

  SpeculativeGenerateResult result;
  const auto t0 = Clock::now();
  auto t_first = t0;
  bool first = true;
  auto print = [&](std::string_view text) {
    if (!options.print_text || text.empty()) return;
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  };
  auto generated = speculative::GenerateSpeculatively(
      decoder, model.config(), tokenizer, g,
      [&](int32_t, std::string_view text) {
        if (first) t_first = Clock::now();
        first = false;
        print(text);
      },
      print);
  if (!generated.ok()) return generated.status();
  if (first) t_first = Clock::now();  // EOS first: the prefill was all the work
  result.ids = std::move(generated->ids);
  result.finish = std::move(generated->finish);
  result.prefill_s = std::chrono::duration<double>(t_first - t0).count();
  result.decode_s = std::chrono::duration<double>(Clock::now() - t_first).count();
  result.stats = decoder.stats();
  return result;
}

std::string SpeculationSummary(const std::string& mode, int64_t max_draft_tokens,
                               const speculative::SpeculationStats& s) {
  std::string out = absl::StrFormat(
      "speculation: %s, up to %d draft tokens | steps: %d, %.2f tokens/step | drafted: %d, accepted: %d, "
      "acceptance rate: %.3f",
      mode, max_draft_tokens, s.steps, s.steps > 0 ? static_cast<double>(s.generated) / s.steps : 0.0, s.drafted,
      s.accepted, s.acceptance_rate());
  if (s.steps > 0) {
    absl::StrAppendFormat(&out, " | per step: draft %.3f ms, verify %.3f ms", 1e3 * s.draft_seconds / s.steps,
                          1e3 * s.verify_seconds / s.steps);
  }
  absl::StrAppend(&out, "\nacceptance by draft position i (drafts accepted through i / drafts reaching i):");
  for (size_t i = 0; i < s.drafted_at.size(); ++i) {
    if (s.drafted_at[i] == 0) continue;
    absl::StrAppendFormat(&out, " %d: %.3f (%d/%d)", i + 1, static_cast<double>(s.accepted_at[i]) / s.drafted_at[i],
                          s.accepted_at[i], s.drafted_at[i]);
  }
  return out;
}

}  // namespace accullm::cli
