#include "cli/generate_command.h"

#include <cstdio>
#include <random>

#include "absl/strings/str_join.h"
#include "cli/cli_common.h"
#include "cli/model_loading.h"
#include "model/generation.h"

namespace accullm::cli {

namespace {

struct GenerateFlags {
  std::string model;
  std::string prompt;
  std::string prompt_ids;
  int64_t max_tokens = 128;
  float temperature = 0.8f;
  int top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;
  float presence_penalty = 0.f;
  float frequency_penalty = 0.f;
  int64_t seed = -1;
  std::vector<std::string> stop;
  bool output_ids = false;
  bool ignore_eos = false;
  int threads = 0;
  int64_t context = 0;
};

int RunGenerate(const GenerateFlags& f) {
  const bool ids_in = !f.prompt_ids.empty();
  auto loaded = LoadModel(f.model.empty() ? DefaultModelDir() : f.model, f.threads,
                          /*need_tokenizer=*/!(ids_in && f.output_ids) || !f.stop.empty());
  if (!loaded.ok()) return ReportError(loaded.status());
  std::vector<int32_t> prompt;
  if (ids_in) {
    auto ids = ParseIdList(f.prompt_ids);
    if (!ids.ok()) return ReportError(ids.status());
    prompt = *ids;
  } else {
    prompt = loaded->tokenizer->Encode(f.prompt, /*add_special=*/true);
  }
  GenerationOptions opts;
  opts.max_tokens = f.max_tokens;
  opts.stop = f.stop;
  opts.ignore_eos = f.ignore_eos;
  opts.context = f.context;
  opts.sampling.temperature = f.temperature;
  opts.sampling.top_k = f.top_k;
  opts.sampling.top_p = f.top_p;
  opts.sampling.min_p = f.min_p;
  opts.sampling.repetition_penalty = f.repeat_penalty;
  opts.sampling.presence_penalty = f.presence_penalty;
  opts.sampling.frequency_penalty = f.frequency_penalty;
  opts.sampling.seed = f.seed >= 0 ? static_cast<uint64_t>(f.seed) : std::random_device{}();

  GenerationCallbacks cb;
  if (!f.output_ids) {
    cb.on_text = [](std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    };
  }
  // --output-ids without a tokenizer: generate ids only.
  const text::Tokenizer* tok = f.output_ids && f.stop.empty() ? nullptr : loaded->tokenizer.get();
  auto result = Generate(*loaded->transformer, tok, prompt, opts, cb);
  if (!result.ok()) return ReportError(result.status());
  if (f.output_ids) {
    std::printf("%s\n", absl::StrJoin(result->ids, ",").c_str());
  } else {
    std::printf("\n");
  }
  std::fflush(stdout);
  const double pre_tps = result->prompt_tokens / std::max(result->prefill_seconds, 1e-9);
  const int64_t gen = static_cast<int64_t>(result->ids.size());
  // The first generated token comes from the prefill, so decode speed counts the rest.
  const double dec_tps = gen > 1 ? (gen - 1) / std::max(result->decode_seconds, 1e-9) : 0.0;
  std::fprintf(stderr,
               "prompt: %lld tokens, %.1f tokens/s | generation: %lld tokens, %.1f tokens/s | finish: %s | seed: %llu\n",
               static_cast<long long>(result->prompt_tokens), pre_tps, static_cast<long long>(gen), dec_tps,
               result->finish_reason.c_str(), static_cast<unsigned long long>(opts.sampling.seed));
  return 0;
}

}  // namespace

void AddGenerateCommand(CLI::App& app, std::function<int()>& run) {
  auto flags = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text from a prompt, streaming it to stdout");
  cmd->footer(
      "Only the generated text (or, with --output-ids, the comma-separated ids) goes to stdout;\n"
      "statistics go to stderr. --prompt-ids are used exactly as given (no BOS added).\n"
      "Example: accullm generate --prompt \"Once upon a time\" --temperature 0 --max-tokens 32");
  cmd->add_option("--model", flags->model, "Model directory (default: the embedded model, or $ACCULLM_MODEL)");
  auto* p = cmd->add_option("--prompt", flags->prompt, "Prompt text (BOS added per the tokenizer)");
  auto* pi = cmd->add_option("--prompt-ids", flags->prompt_ids, "Prompt as comma-separated token ids, used as given");
  p->excludes(pi);
  cmd->add_option("--max-tokens,-n", flags->max_tokens, "Maximum tokens to generate")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature,--temp", flags->temperature, "Sampling temperature; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", flags->top_k, "Keep the k most likely tokens; 0 = off")->capture_default_str();
  cmd->add_option("--top-p", flags->top_p, "Nucleus sampling mass; 1 = off")->capture_default_str();
  cmd->add_option("--min-p", flags->min_p, "Drop tokens below min-p × the top probability; 0 = off")->capture_default_str();
  cmd->add_option("--repeat-penalty", flags->repeat_penalty, "Repetition penalty on seen tokens; 1 = off")->capture_default_str();
  cmd->add_option("--presence-penalty", flags->presence_penalty, "OpenAI presence penalty")->capture_default_str();
  cmd->add_option("--frequency-penalty", flags->frequency_penalty, "OpenAI frequency penalty")->capture_default_str();
  cmd->add_option("--seed", flags->seed, "Random seed (default: random, printed at the end)");
  cmd->add_option("--stop", flags->stop, "Stop sequence (repeatable); not included in the output");
  cmd->add_flag("--output-ids", flags->output_ids, "Print generated token ids instead of text");
  cmd->add_flag("--ignore-eos", flags->ignore_eos, "Keep generating past end-of-sequence tokens");
  cmd->add_option("--threads,-t", flags->threads, "Compute threads (default: all cores)");
  cmd->add_option("--context", flags->context, "Context length in tokens (default: the model's maximum)");
  cmd->callback([&run, flags, cmd] {
    if (cmd->count("--prompt") == 0 && cmd->count("--prompt-ids") == 0) {
      throw CLI::ValidationError("generate", "one of --prompt or --prompt-ids is required");
    }
    run = [flags] { return RunGenerate(*flags); };
  });
}

}  // namespace accullm::cli
