#include "cli/generate_command.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/cli_common.h"
#include "cli/golden_pack.h"
#include "cli/model_loading.h"
#include "cli/speculative_generate.h"
#include "coordinator/scheduler.h"
#include "spdlog/spdlog.h"

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
  bool exact = false;
  ActQuantFlags act_quant;
  std::string sparsity = "on";
  std::string kv_cache_dtype = kDefaultKvCacheDType;
  std::string draft;      // golden mode: a pack of --model drafts, --model verifies
  std::string speculate;  // draft | ngram | off; default: draft with --draft, else off
  int64_t draft_tokens = 4;
  std::optional<double> draft_min_acceptance;  // unset: the mode's default
  bool golden = false;    // --model PACK: its source model verifies, the pack drafts
  std::string reference;  // with --golden: the source model, when not where the pack recorded it
};

// `generate` is one request through the same scheduler and stage runner as `serve` (the
// embedded one-stage pipeline), so its tokens are the server's for the same request. With
// speculation (which the scheduler does not do yet) it runs speculative/'s single-sequence
// loop instead (cli/speculative_generate.h): the same tokens, by the accept/reject rule.
int RunGenerate(GenerateFlags f) {
  using Clock = std::chrono::steady_clock;
  if (absl::Status st = ApplyGoldenFlags(f.golden, f.reference, f.model, f.draft); !st.ok()) return ReportError(st);
  const bool ids_in = !f.prompt_ids.empty();
  const std::string speculate = !f.speculate.empty() ? f.speculate : f.draft.empty() ? "off" : "draft";
  if (speculate == "draft" && f.draft.empty())
    return ReportError(absl::InvalidArgumentError("--speculate draft needs --draft PACK"));
  if (speculate != "draft" && !f.draft.empty())
    return ReportError(absl::InvalidArgumentError(absl::StrCat("--draft is not used with --speculate ", speculate)));
  auto activations_or = ActQuantFromFlags(f.act_quant, f.exact);
  if (!activations_or.ok()) return ReportError(activations_or.status());
  const kernels::ActQuantConfig activations = *activations_or;
  const std::string model_dir = f.model.empty() ? DefaultModelDir() : f.model;
  const model::ModelLoadOptions load_options{
      .exact = f.exact, .activations = activations, .sparsity = f.sparsity != "off"};
  auto loaded =
      LoadModel(model_dir, f.threads, /*need_tokenizer=*/!(ids_in && f.output_ids) || !f.stop.empty(), load_options);
  if (!loaded.ok()) return ReportError(loaded.status());
  model::Transformer& model = *loaded->transformer;
  const model::ModelConfig& mc = model.config();
  coordinator::SequenceParams p;
  if (ids_in) {
    auto ids = ParseIdList(f.prompt_ids);
    if (!ids.ok()) return ReportError(ids.status());
    p.prompt = *ids;
  } else {
    p.prompt = loaded->tokenizer->Encode(f.prompt, /*add_special=*/true);
  }
  if (p.prompt.empty()) return ReportError(absl::InvalidArgumentError("the prompt is empty"));
  if (f.max_tokens < 0) return ReportError(absl::InvalidArgumentError("max_tokens must be >= 0"));
  for (int32_t id : p.prompt)
    if (id < 0 || id >= mc.vocab_size)
      return ReportError(
          absl::InvalidArgumentError(absl::StrCat("prompt id ", id, " is outside the vocabulary of ", mc.vocab_size)));
  const int64_t context = f.context > 0 ? f.context : mc.max_position_embeddings;
  if (context > mc.max_position_embeddings)
    return ReportError(absl::InvalidArgumentError(
        absl::StrCat("--context ", context, " exceeds the model's ", mc.max_position_embeddings, " positions")));
  const int64_t prompt_tokens = static_cast<int64_t>(p.prompt.size());
  if (prompt_tokens >= context) {
    return ReportError(absl::OutOfRangeError(
        absl::StrCat("prompt of ", prompt_tokens, " tokens does not fit the context of ", context, " positions")));
  }
  // A full context ends the generation with finish "length", as a server request would be
  // refused: so at most the room the prompt leaves.
  p.max_tokens = std::min(f.max_tokens, context - prompt_tokens);
  p.stop = f.stop;
  p.ignore_eos = f.ignore_eos;
  p.sampling.temperature = f.temperature;
  p.sampling.top_k = f.top_k;
  p.sampling.top_p = f.top_p;
  p.sampling.min_p = f.min_p;
  p.sampling.repetition_penalty = f.repeat_penalty;
  p.sampling.presence_penalty = f.presence_penalty;
  p.sampling.frequency_penalty = f.frequency_penalty;
  p.sampling.seed = f.seed >= 0 ? static_cast<uint64_t>(f.seed) : std::random_device{}();
  if (absl::Status st = p.sampling.Validate(); !st.ok()) return ReportError(st);

  // --output-ids without a tokenizer (or stop sequences): ids only.
  const text::Tokenizer* tok = f.output_ids && f.stop.empty() ? nullptr : loaded->tokenizer.get();
  std::vector<int32_t> ids;
  std::string finish = "length";
  double prefill_s = 0, decode_s = 0;
  std::string speculation_summary;
  auto kv_dtype = KvCacheDType(f.kv_cache_dtype);
  if (!kv_dtype.ok()) return ReportError(kv_dtype.status());
  if (p.max_tokens > 0 && speculate != "off") {
    SpeculativeGenerateOptions so{.mode = speculate,
                                  .target_dir = model_dir,
                                  .draft_dir = f.draft,
                                  .draft_tokens = f.draft_tokens,
                                  .pause_below = DraftPauseBelow(speculate, f.draft_min_acceptance),
                                  .load = load_options,
                                  .print_text = !f.output_ids,
                                  .kv_dtype = *kv_dtype};
    auto r = RunSpeculativeGenerate(*loaded, tok, p, so);
    if (!r.ok()) return ReportError(r.status());
    ids = std::move(r->ids);
    finish = std::move(r->finish);
    prefill_s = r->prefill_s;
    decode_s = r->decode_s;
    speculation_summary = SpeculationSummary(speculate, f.draft_tokens, r->stats);
  } else if (p.max_tokens > 0) {
    spdlog::set_level(spdlog::level::warn);  // the stage's lifecycle lines are serve's business
    constexpr int64_t kBlock = 16;
    // The pool's format is the stage's (Scheduler::CreateEmbedded passes it in the hello).
    model::KvBlockPool budget(0, model.kv_format(*kv_dtype), kBlock, (context + kBlock - 1) / kBlock);
    coordinator::SchedulerConfig sc;
    sc.context = context;
    sc.max_num_seqs = 1;
    sc.max_batch_tokens = context;  // the whole prompt in one prefill, as a single request gets
    sc.prefill_chunk = context;
    auto scheduler = coordinator::Scheduler::CreateEmbedded(model, tok, budget, sc, nullptr);
    if (!scheduler.ok()) return ReportError(scheduler.status());
    auto stream = std::make_shared<coordinator::GenerationStream>(1);
    std::mutex mu;
    std::condition_variable cv;
    bool pending = false;
    stream->SetNotifier([&] {
      std::lock_guard<std::mutex> lock(mu);
      pending = true;
      cv.notify_one();
    });
    (*scheduler)->Start();
    const auto t0 = Clock::now();
    auto t_first = t0;
    if (absl::Status st = (*scheduler)->Submit({p}, stream); !st.ok()) return ReportError(st);
    std::string error;
    bool done = false;
    while (!done) {
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return pending; });
        pending = false;
      }
      for (auto& e : stream->Drain()) {
        if (ids.empty() && !e.tokens.empty()) t_first = Clock::now();
        for (const auto& t : e.tokens) ids.push_back(t.id);
        if (!f.output_ids && !e.text.empty()) {
          std::fwrite(e.text.data(), 1, e.text.size(), stdout);
          std::fflush(stdout);
        }
        if (!e.finish_reason.empty()) {
          finish = e.finish_reason;
          error = e.error;
          done = true;
        }
      }
    }
    (*scheduler)->Stop();
    stream->SetNotifier({});
    if (finish == "error") return ReportError(absl::InternalError(error));
    if (ids.empty()) t_first = Clock::now();  // EOS first: the prefill was all the work
    prefill_s = std::chrono::duration<double>(t_first - t0).count();
    decode_s = std::chrono::duration<double>(Clock::now() - t_first).count();
  }
  if (f.output_ids) {
    std::printf("%s\n", absl::StrJoin(ids, ",").c_str());
  } else {
    std::printf("\n");
  }
  std::fflush(stdout);
  const double pre_tps = prompt_tokens / std::max(prefill_s, 1e-9);
  const int64_t gen = static_cast<int64_t>(ids.size());
  // The first generated token comes from the prefill, so decode speed counts the rest.
  const double dec_tps = gen > 1 ? (gen - 1) / std::max(decode_s, 1e-9) : 0.0;
  std::fprintf(
      stderr, "prompt: %lld tokens, %.1f tokens/s | generation: %lld tokens, %.1f tokens/s | finish: %s | seed: %llu\n",
      static_cast<long long>(prompt_tokens), pre_tps, static_cast<long long>(gen), dec_tps, finish.c_str(),
      static_cast<unsigned long long>(p.sampling.seed));
  if (!speculation_summary.empty()) std::fprintf(stderr, "%s\n", speculation_summary.c_str());
  return 0;
}

}  // namespace

void AddGenerateCommand(CLI::App& app, std::function<int()>& run) {
  auto flags = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text from a prompt, streaming it to stdout");
  cmd->footer("Only the generated text (or, with --output-ids, the comma-separated ids) goes to stdout;\n"
              "statistics go to stderr. --prompt-ids are used exactly as given (no BOS added).\n"
              "Speculation (--draft PACK or --speculate ngram) gives the same tokens as --model alone for the\n"
              "same seed, greedy or sampled, and adds drafted/accepted tokens and the acceptance rate (overall and\n"
              "per draft position) to the statistics.\n"
              "Example: accullm generate --prompt \"Once upon a time\" --temperature 0 --max-tokens 32\n"
              "Golden: accullm generate --model FP_DIR --draft PACK --prompt \"Once upon a time\" --seed 1\n"
              "        accullm generate --model PACK --golden --prompt \"Once upon a time\" --seed 1");
  cmd->add_option("--model", flags->model, "Model directory (default: the embedded model, or $ACCULLM_MODEL)");
  auto* p = cmd->add_option("--prompt", flags->prompt, "Prompt text (BOS added per the tokenizer)");
  auto* pi = cmd->add_option("--prompt-ids", flags->prompt_ids, "Prompt as comma-separated token ids, used as given");
  p->excludes(pi);
  cmd->add_option("--max-tokens,-n", flags->max_tokens, "Maximum tokens to generate")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature,--temp", flags->temperature, "Sampling temperature; 0 = greedy")
      ->capture_default_str();
  cmd->add_option("--top-k", flags->top_k, "Keep the k most likely tokens; 0 = off")->capture_default_str();
  cmd->add_option("--top-p", flags->top_p, "Nucleus sampling mass; 1 = off")->capture_default_str();
  cmd->add_option("--min-p", flags->min_p, "Drop tokens below min-p × the top probability; 0 = off")
      ->capture_default_str();
  cmd->add_option("--repeat-penalty", flags->repeat_penalty, "Repetition penalty on seen tokens; 1 = off")
      ->capture_default_str();
  cmd->add_option("--presence-penalty", flags->presence_penalty, "OpenAI presence penalty")->capture_default_str();
  cmd->add_option("--frequency-penalty", flags->frequency_penalty, "OpenAI frequency penalty")->capture_default_str();
  cmd->add_option("--seed", flags->seed, "Random seed (default: random, printed at the end)");
  cmd->add_option("--stop", flags->stop, "Stop sequence (repeatable); not included in the output");
  cmd->add_flag("--output-ids", flags->output_ids, "Print generated token ids instead of text");
  cmd->add_flag("--ignore-eos", flags->ignore_eos, "Keep generating past end-of-sequence tokens");
  cmd->add_option("--threads,-t", flags->threads, "Compute threads (default: all cores)");
  AddActQuantFlags(*cmd, flags->act_quant);
  AddExactFlag(*cmd, flags->exact);
  AddSparsityFlag(*cmd, flags->sparsity);
  AddKvCacheDTypeFlag(*cmd, flags->kv_cache_dtype);
  cmd->add_option("--context", flags->context, "Context length in tokens (default: the model's maximum)");
  cmd->add_option("--draft", flags->draft,
                  "Golden mode: a pack quantized from --model drafts tokens and --model verifies them, so the "
                  "output is --model's own, token for token, for the same seed (refused unless the pack records "
                  "--model as its source)");
  AddGoldenFlag(*cmd, flags->golden);
  cmd->add_option("--reference", flags->reference,
                  "With --golden: the pack's full-precision source model, when it is not where the pack recorded it");
  cmd->add_option("--speculate", flags->speculate,
                  "Speculative decoding: draft (with --draft; the default when --draft is given), ngram (prompt "
                  "lookup: continue the longest recent n-gram seen earlier in prompt + output; no draft model) or "
                  "off (the default otherwise)")
      ->check(CLI::IsMember({"draft", "ngram", "off"}));
  cmd->add_option("--draft-tokens", flags->draft_tokens,
                  "The most tokens one step drafts; the draft length adapts to the acceptance rate within it")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  AddDraftMinAcceptanceFlag(*cmd, flags->draft_min_acceptance);
  cmd->callback([&run, flags, cmd] {
    if (cmd->count("--prompt") == 0 && cmd->count("--prompt-ids") == 0) {
      throw CLI::ValidationError("generate", "one of --prompt or --prompt-ids is required");
    }
    run = [flags] { return RunGenerate(*flags); };
  });
}

}  // namespace accullm::cli
