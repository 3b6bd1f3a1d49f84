// `accullm bench --draft PACK`: golden mode's cost model, measured. On top of the target's
// own decode speed: the draft's decode step, a serving step's drafting for 16 sequences
// (sequence by sequence and batched), one verification pass of k + 1 rows at several
// k, and a real speculative run (greedy, over the benchmark's prompt) with its acceptance
// rate. The speedup they imply at acceptance rate a and draft length K is
//   E[tokens per step] / (K * t_draft + t_verify(K + 1)) * t_target,
//   E[tokens per step] = (1 - a^(K+1)) / (1 - a)   (each draft token accepted with probability a),
// printed for the measured rate and for any rate given with --assume-acceptance (the fixture's
// measured rates, where the benchmark's geometry has random weights and so means little).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/model_loading.h"
#include "common/json.h"
#include "kernels/kv_row_format.h"

namespace accullm::cli {

struct SpeculationBenchOptions {
  std::string target_dir, draft_dir;
  model::ModelLoadOptions load;
  std::vector<int32_t> prompt;
  kernels::KvDType kv_dtype = kernels::KvDType::kF32;  // the target's cache (and the draft's)
  int64_t gen_tokens = 64;
  int repeat = 3;
  int64_t draft_tokens = 4;               // K of the cost model and of the speculative run
  std::vector<double> assume_acceptance;  // extra rates to evaluate the model at
  double target_token_seconds = 0;        // the target's decode step, measured by the caller
};

struct SpeculationBench {
  double draft_token_seconds = 0;
  std::vector<std::pair<int64_t, double>> verify_seconds;  // (rows = k + 1, seconds per pass)
  double acceptance_rate = 0;
  double speculative_tokens_per_s = 0;
  double tokens_per_step = 0;
  // Inside the speculative run, per step: drafting and verification (forward + sampling) as
  // the decoder timed them; against the isolated passes above they show the loop's overhead.
  double run_draft_ms_per_step = 0, run_verify_ms_per_step = 0;
  std::vector<double> draft_position_acceptance;
  // One serving step's drafting for `draft_step_sequences` sequences of K draft tokens each
  // (after the benchmark's prompt and one new token each): sequence by sequence (K one-row
  // passes each) and batched as the scheduler drafts (K passes of a row per sequence).
  int64_t draft_step_sequences = 0;
  double draft_step_sequential_seconds = 0, draft_step_batched_seconds = 0;
  std::vector<std::pair<double, double>> model_speedup;  // (acceptance rate, implied speedup at K)
};

absl::StatusOr<SpeculationBench> RunSpeculationBench(LoadedModel& target, const SpeculationBenchOptions& options);

// Implied speedup over the target alone (see above).
double SpeculativeSpeedup(double acceptance, int64_t k, double t_target, double t_draft, double t_verify);

void AddToJson(const SpeculationBench& b, boost::json::object& o);
void Print(const SpeculationBench& b, int64_t draft_tokens);

}  // namespace accullm::cli
