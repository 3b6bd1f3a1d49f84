#include "cli/bench_speculation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include "common/status.h"
#include "speculative/draft_source_check.h"
#include "speculative/model_draft_proposer.h"
#include "speculative/speculative_generation.h"

namespace accullm::cli {

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

int32_t Argmax(const float* logits, int64_t vocab) {
  return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
}

}  // namespace

double SpeculativeSpeedup(double a, int64_t k, double t_target, double t_draft, double t_verify) {
  const double expected = a >= 1 ? static_cast<double>(k + 1) : (1 - std::pow(a, static_cast<double>(k + 1))) / (1 - a);
  const double step = static_cast<double>(k) * t_draft + t_verify;
  return step > 0 ? expected * t_target / step : 0;
}

absl::StatusOr<SpeculationBench> RunSpeculationBench(LoadedModel& target, const SpeculationBenchOptions& o) {
  model::Transformer& model = *target.transformer;
  // The draft shares the target's pool: they take turns (as in generate and serve).
  ASSIGN_OR_RETURN(std::unique_ptr<model::Transformer> draft,
                   model::Transformer::Load(o.draft_dir, target.pool.get(), o.load));
  RETURN_IF_ERROR(speculative::CheckDraftMatchesTarget(*draft, o.draft_dir, model, o.target_dir));
  const int64_t vocab = model.config().vocab_size;
  const int64_t n = static_cast<int64_t>(o.prompt.size());
  const int reps = std::max(1, o.repeat);
  SpeculationBench b;

  // The draft's decode step.
  {
    std::vector<float> logits(static_cast<size_t>(vocab));
    double best = 1e30;
    for (int rep = 0; rep < reps; ++rep) {
      model::KvCache cache = draft->NewCache(n + o.gen_tokens, o.kv_dtype);
      RETURN_IF_ERROR(draft->Forward(o.prompt.data(), n, cache, logits.data()));
      int32_t next = Argmax(logits.data(), vocab);
      const auto t0 = Clock::now();
      for (int64_t i = 0; i < o.gen_tokens; ++i) {
        RETURN_IF_ERROR(draft->Forward(&next, 1, cache, logits.data()));
        next = Argmax(logits.data(), vocab);
      }
      best = std::min(best, Since(t0));
    }
    b.draft_token_seconds = best / static_cast<double>(o.gen_tokens);
  }

  // A serving step's drafting for 16 sequences (the scheduler's case): each sequence's
  // cache holds the prompt, each gets one new token of its own and drafts K tokens, alone one
  // after the other or all in one batch (speculative::ProposeBatch). Both redo the same rows
  // every repetition (the new token is fed again after the prompt).
  {
    constexpr int64_t kSequences = 16;
    model::SamplingParams greedy;
    std::vector<std::unique_ptr<speculative::ModelDraftProposer>> proposers;
    std::vector<std::vector<int32_t>> contexts;
    std::vector<int32_t> unused;
    for (int64_t i = 0; i < kSequences; ++i) {
      proposers.push_back(std::make_unique<speculative::ModelDraftProposer>(*draft, greedy, n + 1 + o.draft_tokens));
      contexts.push_back(o.prompt);
      contexts.back().push_back(o.prompt[static_cast<size_t>(i % n)]);
      RETURN_IF_ERROR(proposers.back()->Propose(contexts.back(), 1, unused));  // the prompt's rows
    }
    double sequential = 1e30, batched = 1e30;
    for (int rep = 0; rep < reps; ++rep) {
      auto t0 = Clock::now();
      for (int64_t i = 0; i < kSequences; ++i)
        RETURN_IF_ERROR(
            proposers[static_cast<size_t>(i)]->Propose(contexts[static_cast<size_t>(i)], o.draft_tokens, unused));
      sequential = std::min(sequential, Since(t0));
      std::vector<speculative::DraftRequest> requests;
      for (int64_t i = 0; i < kSequences; ++i)
        requests.push_back(
            {proposers[static_cast<size_t>(i)].get(), contexts[static_cast<size_t>(i)], o.draft_tokens, {}, {}});
      t0 = Clock::now();
      speculative::ProposeBatch(absl::MakeSpan(requests));
      batched = std::min(batched, Since(t0));
      for (const auto& r : requests) RETURN_IF_ERROR(r.status);
    }
    b.draft_step_sequences = kSequences;
    b.draft_step_sequential_seconds = sequential;
    b.draft_step_batched_seconds = batched;
  }

  // One verification pass of k + 1 rows after the prompt (all rows' logits, as golden mode
  // needs), rolled back after each pass.
  {
    const std::vector<int64_t> ks = {1, 2, 4, 8, o.draft_tokens};
    model::KvCache cache = model.NewCache(n + 16 + o.draft_tokens, o.kv_dtype);
    std::vector<float> logits(static_cast<size_t>(vocab));
    RETURN_IF_ERROR(model.Forward(o.prompt.data(), n, cache, logits.data()));
    std::vector<int64_t> done;
    for (int64_t k : ks) {
      if (std::find(done.begin(), done.end(), k) != done.end()) continue;
      done.push_back(k);
      std::vector<int32_t> rows(static_cast<size_t>(k + 1));
      for (int64_t i = 0; i <= k; ++i) rows[static_cast<size_t>(i)] = o.prompt[static_cast<size_t>(i % n)];
      std::vector<float> all(static_cast<size_t>((k + 1) * vocab));
      double best = 1e30;
      for (int rep = 0; rep < std::max(3, reps); ++rep) {
        const auto t0 = Clock::now();
        RETURN_IF_ERROR(model.Forward(rows.data(), k + 1, cache, all.data(), /*all_positions=*/true));
        best = std::min(best, Since(t0));
        cache.Truncate(n);
      }
      b.verify_seconds.emplace_back(k + 1, best);
    }
  }

  // A real speculative run: greedy, the benchmark's prompt, the target's exact tokens.
  {
    model::SamplingParams greedy;
    speculative::SpeculationConfig config;
    config.max_draft_tokens = o.draft_tokens;
    config.kv_dtype = o.kv_dtype;
    const int64_t capacity = n + o.gen_tokens;
    speculative::ModelDraftProposer proposer(*draft, greedy, capacity);
    speculative::SpeculativeDecoder decoder(model, &proposer, greedy, config, capacity);
    speculative::GenerationRequest g;
    g.prompt = o.prompt;
    g.max_tokens = o.gen_tokens;
    g.ignore_eos = true;
    auto first = Clock::now();
    bool started = false;
    const auto t0 = Clock::now();
    auto out = speculative::GenerateSpeculatively(decoder, model.config(), nullptr, g, [&](int32_t, std::string_view) {
      if (!started) first = Clock::now();
      started = true;
    });
    if (!out.ok()) return out.status();
    const double decode_s = Since(first);
    (void)t0;
    const speculative::SpeculationStats& s = decoder.stats();
    b.acceptance_rate = s.acceptance_rate();
    b.tokens_per_step = s.steps > 0 ? static_cast<double>(s.generated) / s.steps : 0;
    b.run_draft_ms_per_step = s.steps > 0 ? 1e3 * s.draft_seconds / s.steps : 0;
    b.run_verify_ms_per_step = s.steps > 0 ? 1e3 * s.verify_seconds / s.steps : 0;
    // The first token comes from the prefill; the rest from the steps.
    b.speculative_tokens_per_s = out->ids.size() > 1 ? static_cast<double>(out->ids.size() - 1) / decode_s : 0;
    for (size_t i = 0; i < s.drafted_at.size(); ++i)
      if (s.drafted_at[i] > 0)
        b.draft_position_acceptance.push_back(static_cast<double>(s.accepted_at[i]) / s.drafted_at[i]);
  }

  double t_verify = 0;
  for (const auto& [rows, sec] : b.verify_seconds)
    if (rows == o.draft_tokens + 1) t_verify = sec;
  std::vector<double> rates = {b.acceptance_rate};
  rates.insert(rates.end(), o.assume_acceptance.begin(), o.assume_acceptance.end());
  for (double a : rates)
    b.model_speedup.emplace_back(
        a, SpeculativeSpeedup(a, o.draft_tokens, o.target_token_seconds, b.draft_token_seconds, t_verify));
  return b;
}

void AddToJson(const SpeculationBench& b, boost::json::object& o) {
  o["draft_decode_tokens_per_s"] = b.draft_token_seconds > 0 ? 1.0 / b.draft_token_seconds : 0.0;
  boost::json::object verify;
  for (const auto& [rows, sec] : b.verify_seconds) verify[std::to_string(rows)] = sec * 1e3;
  o["verify_pass_ms"] = std::move(verify);  // by rows (k + 1)
  o["draft_step_sequences"] = b.draft_step_sequences;
  o["draft_step_sequential_ms"] = b.draft_step_sequential_seconds * 1e3;
  o["draft_step_batched_ms"] = b.draft_step_batched_seconds * 1e3;
  o["acceptance_rate"] = b.acceptance_rate;
  o["tokens_per_step"] = b.tokens_per_step;
  o["speculative_decode_tokens_per_s"] = b.speculative_tokens_per_s;
  o["run_draft_ms_per_step"] = b.run_draft_ms_per_step;
  o["run_verify_ms_per_step"] = b.run_verify_ms_per_step;
  boost::json::array pos;
  for (double p : b.draft_position_acceptance) pos.push_back(p);
  o["acceptance_by_draft_position"] = std::move(pos);
  boost::json::array model;
  for (const auto& [a, s] : b.model_speedup) model.push_back(boost::json::object{{"acceptance", a}, {"speedup", s}});
  o["cost_model_speedup"] = std::move(model);
}

void Print(const SpeculationBench& b, int64_t k) {
  std::printf("draft decode: %.2f tokens/s (%.2f ms a token)\n", 1.0 / b.draft_token_seconds,
              1e3 * b.draft_token_seconds);
  std::printf("drafting %lld tokens for %lld sequences: %.2f ms sequence by sequence, %.2f ms batched\n", (long long)k,
              (long long)b.draft_step_sequences, 1e3 * b.draft_step_sequential_seconds,
              1e3 * b.draft_step_batched_seconds);
  std::printf("verification pass (all rows' logits):");
  for (const auto& [rows, sec] : b.verify_seconds) std::printf(" %lld rows %.2f ms;", (long long)rows, 1e3 * sec);
  std::printf(
      "\nspeculative decode (greedy, up to %lld draft tokens): %.2f tokens/s, acceptance %.3f, %.2f tokens/step\n",
      (long long)k, b.speculative_tokens_per_s, b.acceptance_rate, b.tokens_per_step);
  std::printf("inside that run, per step: drafting %.2f ms, verification %.2f ms\n", b.run_draft_ms_per_step,
              b.run_verify_ms_per_step);
  std::printf("acceptance by draft position:");
  for (size_t i = 0; i < b.draft_position_acceptance.size(); ++i)
    std::printf(" %zu: %.3f", i + 1, b.draft_position_acceptance[i]);
  std::printf("\ncost model at K = %lld (speedup over the target alone):", (long long)k);
  for (const auto& [a, s] : b.model_speedup) std::printf(" acceptance %.3f -> %.2fx;", a, s);
  std::printf("\n");
}

}  // namespace accullm::cli
