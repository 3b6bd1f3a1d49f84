#include "cli/bench_command.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "absl/strings/str_cat.h"
#include "cli/bench_speculation.h"
#include "cli/cli_common.h"
#include "cli/ffn_sparsity_report.h"
#include "cli/golden_pack.h"
#include "cli/model_loading.h"
#include "common/json.h"
#include "common/mapped_file.h"
#include "kernels/cpu/isa.h"

namespace accullm::cli {

namespace {

struct BenchFlags {
  std::string model;
  int64_t prompt_tokens = 128;
  int64_t gen_tokens = 64;
  std::string text;  // prompt and decode feed from this text's tokens; empty: pseudo-random ids, greedy
  int repeat = 3;
  int threads = 0;
  bool bandwidth = true;
  bool json = false;
  bool exact = false;
  ActQuantFlags act_quant;
  std::string sparsity = "on";
  double sparsity_recall_sample_rate = 0;  // serve's sampled recall, to price it (serve's default: 0.01)
  std::string isa;                         // empty: ACCULLM_ISA or the detected level
  std::string kv_cache_dtype = kDefaultKvCacheDType;
  std::string draft;  // golden mode's cost model: a pack of --model
  int64_t draft_tokens = 4;
  std::vector<double> assume_acceptance;
  bool golden = false;    // --model PACK: the cost model with its source model as the target
  std::string reference;  // with --golden: the source model, when not where the pack recorded it
};

// Multiply-adds of one token through the block linears (the prefill GEMMs' work), and of the
// LM head (run once per prefill, on the last position).
int64_t LayerMacsPerToken(const model::ModelConfig& c) {
  const int64_t q_dim = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  return c.num_layers *
         (c.hidden_size * (q_dim + 2 * kv) + q_dim * c.hidden_size + 3 * c.hidden_size * c.intermediate_size);
}

// Read bandwidth of this machine with the same thread pool: the ceiling for decode, which
// streams every weight once per token.
double MeasureReadBandwidthGBs(ThreadPool& pool) {
  using Clock = std::chrono::steady_clock;
  const size_t n = size_t{256} << 20 >> 3;  // 256 MiB of uint64
  std::vector<uint64_t> buf(n, 1);
  std::vector<uint64_t> partial(static_cast<size_t>(pool.size()) * 64, 0);
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = Clock::now();
    pool.ParallelFor(
        static_cast<int64_t>(n),
        [&](int64_t b, int64_t e) {
          uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          int64_t i = b;
          for (; i + 4 <= e; i += 4) {
            s0 += buf[i];
            s1 += buf[i + 1];
            s2 += buf[i + 2];
            s3 += buf[i + 3];
          }
          for (; i < e; ++i) s0 += buf[i];
          partial[static_cast<size_t>(b % 64)] += s0 + s1 + s2 + s3;  // keeps the loads alive
        },
        int64_t{1} << 16);
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  uint64_t sink = 0;
  for (uint64_t v : partial) sink += v;
  if (sink == 42) std::printf(" ");
  return static_cast<double>(n * sizeof(uint64_t)) / best / 1e9;
}

int RunBench(BenchFlags f) {
  if (absl::Status st = ApplyGoldenFlags(f.golden, f.reference, f.model, f.draft); !st.ok()) return ReportError(st);
  using Clock = std::chrono::steady_clock;
  if (!f.isa.empty()) {
    // Before any kernel runs: the level is resolved once, from ACCULLM_ISA, on first use.
    if (!kernels::ParseIsa(f.isa).has_value())
      return ReportError(absl::InvalidArgumentError("--isa: expected scalar, avx2 or avx512, got \"" + f.isa + "\""));
    ::setenv("ACCULLM_ISA", f.isa.c_str(), 1);
  }
  const std::string dir = f.model.empty() ? DefaultModelDir() : f.model;
  auto kv_dtype = KvCacheDType(f.kv_cache_dtype);
  if (!kv_dtype.ok()) return ReportError(kv_dtype.status());
  auto t_load = Clock::now();
  auto activations = ActQuantFromFlags(f.act_quant, f.exact);
  if (!activations.ok()) return ReportError(activations.status());
  auto loaded = LoadModel(dir, f.threads, /*need_tokenizer=*/!f.text.empty(),
                          {.exact = f.exact, .activations = *activations, .sparsity = f.sparsity != "off"});
  if (!loaded.ok()) return ReportError(loaded.status());
  const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();
  model::Transformer& model = *loaded->transformer;
  model.set_ffn_recall_sample_rate(f.sparsity_recall_sample_rate);
  const model::ModelConfig& c = model.config();
  if (f.prompt_tokens + f.gen_tokens > c.max_position_embeddings) {
    return ReportError(absl::InvalidArgumentError("--prompt-tokens + --gen-tokens exceed the model's context"));
  }
  // The ids: a text's tokens (prompt, then one per decode step), or deterministic pseudo-random
  // ids for the prompt and greedy decoding (no tokenizer needed).
  std::vector<int32_t> ids;
  const bool from_text = !f.text.empty();
  if (from_text) {
    auto text = ReadTextFile(f.text);
    if (!text.ok()) return ReportError(text.status());
    ids = loaded->tokenizer->Encode(*text, /*add_special=*/true);
    if (static_cast<int64_t>(ids.size()) < f.prompt_tokens + f.gen_tokens) {
      return ReportError(absl::InvalidArgumentError(absl::StrCat(f.text, " has ", ids.size(),
                                                                 " tokens; --prompt-tokens + --gen-tokens need ",
                                                                 f.prompt_tokens + f.gen_tokens)));
    }
  } else {
    ids.resize(static_cast<size_t>(f.prompt_tokens));
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (auto& id : ids) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      id = static_cast<int32_t>((state >> 33) % static_cast<uint64_t>(c.vocab_size));
    }
  }
  const std::vector<int32_t> prompt(ids.begin(), ids.begin() + f.prompt_tokens);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  double best_prefill = 1e30, best_decode = 1e30;
  // The share of FFN neurons the decode steps skipped (sparse packs with sparsity on): what the
  // decode speed was measured at, which on a pack's own data can differ from its target.
  std::optional<double> decode_skipped;
  for (int rep = 0; rep < std::max(1, f.repeat); ++rep) {
    model::KvCache cache = model.NewCache(f.prompt_tokens + f.gen_tokens, *kv_dtype);
    auto t0 = Clock::now();
    if (auto s = model.Forward(prompt.data(), f.prompt_tokens, cache, logits.data()); !s.ok()) return ReportError(s);
    auto t1 = Clock::now();
    int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    model.ResetFfnSparsityCounts();
    for (int64_t i = 0; i < f.gen_tokens; ++i) {
      if (from_text) next = ids[static_cast<size_t>(f.prompt_tokens + i)];
      if (auto s = model.Forward(&next, 1, cache, logits.data()); !s.ok()) return ReportError(s);
      next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }
    auto t2 = Clock::now();
    const FfnSparsityReport sparsity = SparsityOf(model.ffn_sparsity_counts());
    if (sparsity.neurons > 0) decode_skipped = sparsity.skipped;
    best_prefill = std::min(best_prefill, std::chrono::duration<double>(t1 - t0).count());
    best_decode = std::min(best_decode, std::chrono::duration<double>(t2 - t1).count());
  }
  const double prefill_tps = f.prompt_tokens / best_prefill;
  const double decode_tps = f.gen_tokens / best_decode;
  const double bytes_per_token = static_cast<double>(model.weight_bytes_per_token());
  const double gbs = decode_tps * bytes_per_token / 1e9;
  // Attention's own work (QK and PV over the growing prefix) is left out: at the prompt
  // lengths benchmarked it is a few percent of the linears'.
  const double prefill_gflops = 2.0 *
                                (static_cast<double>(LayerMacsPerToken(c)) * f.prompt_tokens +
                                 static_cast<double>(c.hidden_size) * c.vocab_size) /
                                best_prefill / 1e9;
  const double peak = f.bandwidth ? MeasureReadBandwidthGBs(*loaded->pool) : 0.0;
  std::optional<SpeculationBench> spec;
  if (!f.draft.empty()) {
    SpeculationBenchOptions so;
    so.target_dir = dir;
    so.draft_dir = f.draft;
    so.load = {.exact = f.exact, .activations = *activations, .sparsity = f.sparsity != "off"};
    so.prompt = prompt;
    so.kv_dtype = *kv_dtype;
    so.gen_tokens = f.gen_tokens;
    so.repeat = f.repeat;
    so.draft_tokens = f.draft_tokens;
    so.assume_acceptance = f.assume_acceptance;
    so.target_token_seconds = best_decode / static_cast<double>(f.gen_tokens);
    auto b = RunSpeculationBench(*loaded, so);
    if (!b.ok()) return ReportError(b.status());
    spec = std::move(*b);
  }
  if (f.json) {
    boost::json::object o;
    o["model"] = dir;
    o["threads"] = loaded->pool->size();
    o["isa"] = kernels::IsaName(kernels::ActiveIsa());
    o["exact"] = f.exact;
    o["kv_cache_dtype"] = f.kv_cache_dtype;
    o["prompt_tokens"] = f.prompt_tokens;
    o["gen_tokens"] = f.gen_tokens;
    o["text"] = from_text ? boost::json::value(f.text) : boost::json::value(nullptr);
    o["load_seconds"] = load_s;
    o["prefill_tokens_per_s"] = prefill_tps;
    o["prefill_gflops"] = prefill_gflops;
    o["decode_tokens_per_s"] = decode_tps;
    o["decode_bytes_per_token"] = bytes_per_token;
    o["decode_gb_s"] = gbs;
    o["bandwidth_gb_s"] = f.bandwidth ? boost::json::value(peak) : boost::json::value(nullptr);
    o["decode_bandwidth_fraction"] = f.bandwidth ? boost::json::value(gbs / peak) : boost::json::value(nullptr);
    o["decode_ffn_skipped"] = decode_skipped ? boost::json::value(*decode_skipped) : boost::json::value(nullptr);
    if (spec) AddToJson(*spec, o);
    std::printf("%s\n", boost::json::serialize(o).c_str());
    return 0;
  }
  std::printf("model: %s\n", dir.c_str());
  std::printf("geometry: hidden %lld, intermediate %lld, layers %lld, heads %lld/%lld kv, vocab %lld\n",
              (long long)c.hidden_size, (long long)c.intermediate_size, (long long)c.num_layers, (long long)c.num_heads,
              (long long)c.num_kv_heads, (long long)c.vocab_size);
  std::printf("threads: %d, isa: %s, load: %.2f s, best of %d runs\n", loaded->pool->size(),
              kernels::IsaName(kernels::ActiveIsa()), load_s, std::max(1, f.repeat));
  std::printf("prefill: %lld tokens, %.1f tokens/s, %.1f GFLOP/s in the block linears and head\n",
              (long long)f.prompt_tokens, prefill_tps, prefill_gflops);
  std::printf("decode: %lld tokens, %.2f tokens/s, %.2f GB/s of weights streamed\n", (long long)f.gen_tokens,
              decode_tps, gbs);
  if (decode_skipped) std::printf("decode skipped %.1f%% of FFN neurons\n", 100.0 * *decode_skipped);
  if (f.bandwidth) {
    std::printf("memory read bandwidth: %.2f GB/s measured; decode achieves %.0f%% of it\n", peak, 100.0 * gbs / peak);
  }
  if (spec) Print(*spec, f.draft_tokens);
  return 0;
}

}  // namespace

void AddBenchCommand(CLI::App& app, std::function<int()>& run) {
  auto flags = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand("bench", "Measure prefill and decode tokens/s of a model");
  cmd->footer(
      "Uses pseudo-random prompt ids and greedy decoding (no tokenizer needed) unless --text; reports the best\n"
      "of --repeat runs.\n"
      "Decode streams every weight once per token: bytes per token = the weights as the kernels read them.\n"
      "The bandwidth probe sums 256 MiB of uint64 with the same thread pool (best of 3): the roofline that\n"
      "decode_bandwidth_fraction divides by.");
  cmd->add_option("--model", flags->model, "Model directory (default: the embedded model)");
  cmd->add_option("--prompt-tokens", flags->prompt_tokens, "Prompt length")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--text", flags->text,
                  "Take the prompt and every decode step's input from this text's tokens (the model's tokenizer; "
                  "decode is then teacher-forced, the same cost per step) instead of pseudo-random ids and greedy "
                  "decoding. For sparse packs: their thresholds were set on text, and on other inputs (random ids "
                  "on a random-weight geometry checkpoint) the FFN can skip far more than the target; "
                  "decode_ffn_skipped says what it skipped")
      ->check(CLI::ExistingFile);
  cmd->add_option("--gen-tokens", flags->gen_tokens, "Tokens to decode")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--repeat", flags->repeat, "Runs; the best is reported")->capture_default_str();
  cmd->add_option("--threads,-t", flags->threads, "Compute threads (default: all cores)");
  cmd->add_flag("!--no-bandwidth", flags->bandwidth, "Skip measuring the machine's memory read bandwidth");
  AddActQuantFlags(*cmd, flags->act_quant);
  AddSparsityFlag(*cmd, flags->sparsity);
  cmd->add_option("--sparsity-recall-sample-rate", flags->sparsity_recall_sample_rate,
                  "Sparse packs: decode with serve's sampled recall on at this rate (0..1), to measure its cost")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  AddExactFlag(*cmd, flags->exact);
  AddKvCacheDTypeFlag(*cmd, flags->kv_cache_dtype);
  cmd->add_option("--isa", flags->isa,
                  "Kernel level: scalar, avx2 or avx512 (default: $ACCULLM_ISA, else the best this CPU runs; "
                  "clamped to what it has)");
  cmd->add_option("--draft", flags->draft,
                  "Golden mode's cost model: a pack of --model as the draft; adds the draft's decode speed, "
                  "verification passes of k+1 rows, a greedy speculative run (acceptance rate) and the implied "
                  "speedup");
  AddGoldenFlag(*cmd, flags->golden);
  cmd->add_option("--reference", flags->reference,
                  "With --golden: the pack's full-precision source model, when it is not where the pack recorded it");
  cmd->add_option("--draft-tokens", flags->draft_tokens, "With --draft: K, the most tokens one step drafts")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option("--assume-acceptance", flags->assume_acceptance,
                  "With --draft: also evaluate the cost model at these acceptance rates (e.g. a model's measured "
                  "rate, where this model's random weights make its own meaningless)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--json", flags->json,
                "One JSON object on stdout: prefill_tokens_per_s, prefill_gflops, decode_tokens_per_s, "
                "decode_bytes_per_token, decode_gb_s, bandwidth_gb_s, decode_bandwidth_fraction (null with "
                "--no-bandwidth), decode_ffn_skipped (the share of FFN neurons the decode steps skipped: 0 with "
                "--sparsity off or a dense pack); with --draft also draft_decode_tokens_per_s, "
                "verify_pass_ms, acceptance_rate, tokens_per_step, speculative_decode_tokens_per_s, "
                "acceptance_by_draft_position, cost_model_speedup");
  cmd->callback([&run, flags] { run = [flags] { return RunBench(*flags); }; });
}

}  // namespace accullm::cli
