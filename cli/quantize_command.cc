#include "cli/quantize_command.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/cli_common.h"
#include "cli/model_loading.h"
#include "cli/progress.h"
#include "cli/sharding_plan_command.h"
#include "common/mapped_file.h"
#include "common/status.h"
#include "model/pack/manifest.h"
#include "quant/axe.h"
#include "quant/calibration.h"
#include "quant/evaluation.h"
#include "quant/ffn_guesser_fit.h"
#include "quant/ffn_sparsity_calibration.h"
#include "quant/model_quantizer.h"
#include "quant/pack_staging.h"
#include "quant/pack_writer.h"
#include "quant/precision_planner.h"
#include "quant/sparsity_allocation.h"

namespace accullm::cli {

namespace {

struct QuantizeFlags {
  std::string model, out, calib;
  std::string method = "gptq";
  int64_t group = 32;
  int64_t down_group = 0;  // 0: --group
  bool symmetric = false;
  bool stochastic = false;
  uint64_t seed = 0;
  int64_t calib_samples = 32, calib_seq_len = 512, sensitivity_samples = 4;
  std::string fp16_layers;
  double avg_bits = 0;
  double fp16_share = -1;  // < 0: not given
  float outlier_threshold = 6.0f;
  double outlier_fraction = 0.0, outlier_max_fraction = 0.03;
  bool no_outliers = false;
  bool sequential = true;
  bool mismatch = false;
  bool act_order = false;
  std::string grid_search = "auto";
  std::string zero_point = "fractional";
  int scale_bits = 16;
  double dampening = 0.01;
  std::string embeddings = "fp16", lm_head = "fp16";
  std::string bit_widths = "3,4,5,6,8";
  int accumulator_bits = 0;
  int naive_accumulator_bits = 0;
  int64_t tile = 0;
  int threads = 0;
  std::string sparsity = "off";              // off, auto or a target share of FFN neurons skipped
  std::string sparsity_predictor = "cats";   // cats, product or lowrank (the trained guesser)
  double sparsity_prefilter_recall = 0.995;  // product: share of active neurons the gate prefilter keeps
  std::string guesser_rank = "auto";         // auto (10% of the FFN's bytes) or a rank
  int guesser_out_bits = 4;                  // the codes the guesser's wide `out` product runs on
  double sparsity_kl_budget = 0.25, sparsity_top1_budget = 0.25;
};

// --sparsity: "off", "auto", or a target share in [0, 1).
absl::StatusOr<double> ParseSparsityTarget(const std::string& text) {
  double t = 0;
  if (!absl::SimpleAtod(text, &t) || !std::isfinite(t) || t < 0 || t >= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--sparsity \"", text, "\": expected off, auto or a share of FFN neurons skipped in [0, 1)"));
  }
  return t;
}

// "3,4,5,6,8" → {3, 4, 5, 6, 8}; widths outside 3..8 or other text are refused.
absl::StatusOr<std::vector<int>> ParseBitWidths(const std::string& text) {
  std::vector<int> widths;
  for (absl::string_view w : absl::StrSplit(text, ',')) {
    int bits = 0;
    if (!absl::SimpleAtoi(w, &bits) || bits < 3 || bits > 8) {
      return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": expected widths 3..8, e.g. 3,4,5,6,8"));
    }
    widths.push_back(bits);
  }
  return widths;
}

// NaN and Inf parse as doubles and pass CLI::Range (every comparison with NaN is false); they
// would reach accullm.json as bare NaN / Infinity, which no JSON parser reads (ours included).
const CLI::Validator kFinite(
    [](std::string& v) {
      double d = 0;
      return absl::SimpleAtod(v, &d) && std::isfinite(d) ? std::string() : "\"" + v + "\" is not a finite number";
    },
    "FINITE");

void AddCommonOptions(CLI::App* cmd, QuantizeFlags& f) {
  cmd->add_option("--model", f.model, "Full-precision model directory (default: the embedded model)");
  cmd->add_option("--method", f.method, "rtn, gptq (OPTQ) or gpfq")
      ->check(CLI::IsMember({"rtn", "gptq", "optq", "gpfq"}))
      ->capture_default_str();
  cmd->add_option("--group", f.group, "Group size along the input dimension (low-bit codes of every width)")
      ->check(CLI::IsMember({32, 64, 128}))
      ->capture_default_str();
  cmd->add_option("--down-group", f.down_group,
                  "Group size of the blocks' mlp.down_proj alone (default: --group). With activation sparsity "
                  "down touches every group at common shares and pays each group's steps, zeros and epilogue "
                  "per output, so 128 there makes the sparse FFN faster (docs/benchmarks.md) at an accuracy "
                  "cost (docs/accuracy.md, \"Down at group 128\"). Not with the accumulator options")
      ->check(CLI::IsMember({32, 64, 128}));
  cmd->add_flag("--symmetric", f.symmetric, "Symmetric grids (no zero points); default asymmetric");
  cmd->add_flag("--stochastic", f.stochastic, "Stochastic rounding (counter-based RNG, reproducible for --seed)");
  cmd->add_option("--seed", f.seed, "Seed for stochastic rounding")->capture_default_str();
  cmd->add_option("--calib", f.calib, "Calibration text (default: calib.txt in the model directory)");
  cmd->add_option("--calib-samples", f.calib_samples, "Calibration sequences")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--calib-seq-len", f.calib_seq_len, "Tokens per calibration sequence")
      ->capture_default_str()
      ->check(CLI::Range(16, 1 << 16));
  cmd->add_option("--sensitivity-samples", f.sensitivity_samples,
                  "Calibration sequences used to measure layer sensitivity")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--fp16-share", f.fp16_share,
                  "Share of block-linear weights kept FP16, spent on the linears with the most measured KL per weight "
                  "(default 0.25 when no other budget is given)")
      ->check(kFinite)
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option(
      "--fp16-layers", f.fp16_layers,
      "Whole FP16 blocks instead: a count N (the N most sensitive, measured), or explicit: first:2,last:2 / "
      "layers:0,5 / 6.down,7.gate (single linears: q k v o gate up down) / none");
  cmd->add_option(
         "--avg-bits", f.avg_bits,
         "Mixed precision under a bit budget: each block linear gets a code width from --bit-widths (or FP16), "
         "minimising the predicted KL while block-linear bits/weight (scales and zeros included) stay within this")
      ->check(kFinite);
  cmd->add_option("--bit-widths", f.bit_widths,
                  "With --avg-bits: the code widths a linear may get, e.g. 3,4,5,6,8; 4 = FP16 or INT4 only")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& v) {  // refused at once, not after calibration
            auto w = ParseBitWidths(v);
            return w.ok() ? std::string() : std::string(w.status().message());
          },
          "3..8,..."));
  cmd->add_option("--outlier-threshold", f.outlier_threshold,
                  "Input channels with calibration |x| above this stay FP16")
      ->capture_default_str()
      ->check(kFinite);
  cmd->add_option("--outlier-fraction", f.outlier_fraction,
                  "Instead of the threshold: the top fraction of channels by |x| (<= 0.01)")
      ->check(kFinite)
      ->check(CLI::Range(0.0, 0.01));
  cmd->add_option("--outlier-max-fraction", f.outlier_max_fraction, "Cap on outlier channels per layer")
      ->capture_default_str()
      ->check(kFinite)
      ->check(CLI::Range(0.0, 0.05));
  cmd->add_flag("--no-outliers", f.no_outliers, "Quantize every input channel (no FP16 outlier channels)");
  cmd->add_option("--accumulator-bits", f.accumulator_bits,
                  "AXE: guarantee INT8 dot products fit a signed P-bit accumulator")
      ->check(CLI::Range(10, 32));
  cmd->add_option("--tile", f.tile, "AXE: inputs per inner accumulation tile (default: the group)");
  cmd->add_option("--naive-accumulator-bits", f.naive_accumulator_bits,
                  "For comparison with AXE: make P-bit accumulators safe by shrinking every weight's range instead")
      ->check(CLI::Range(10, 32));
  cmd->add_flag("!--no-sequential", f.sequential,
                "Calibrate every block on the full-precision model (faster, less accurate)");
  cmd->add_flag("--mismatch-correction", f.mismatch,
                "Sequential runs: aim each block at the full-precision layer's output (cross moments with a "
                "full-precision copy); off by default: it did not help on the fixture (docs/accuracy.md)");
  cmd->add_flag("--act-order", f.act_order,
                "GPTQ/GPFQ: quantize columns by decreasing Hessian diagonal (static groups)");
  cmd->add_option("--grid-search", f.grid_search,
                  "Shrink each group's range (low and high ends independently) to minimise the Hessian-weighted "
                  "rounding error: on, off, or auto (on, except under --accumulator-bits and the naive bound)")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  cmd->add_option("--scale-bits", f.scale_bits,
                  "Group steps: 16 (F16 each) or 8 (8 bits relative to an F16 step per row: 0.19 fewer bits per "
                  "weight at group 32; not with --accumulator-bits)")
      ->check(CLI::IsMember({16, 8}))
      ->capture_default_str();
  cmd->add_option(
         "--zero-point", f.zero_point,
         "Asymmetric grids: zero points in 1/16 steps (fractional: the grid's offset fits each group's range) or "
         "integer (multiples of the scale); AXE always uses integer")
      ->check(CLI::IsMember({"fractional", "integer"}))
      ->capture_default_str();
  cmd->add_option("--dampening", f.dampening, "GPTQ/GPFQ: fraction of the mean Hessian diagonal added to it")
      ->capture_default_str()
      ->check(kFinite)
      ->check(CLI::Range(0.0, 10.0));
  cmd->add_option("--embeddings", f.embeddings,
                  "Token embedding table: fp16 or int3..int8 (group-wise, round to nearest)")
      ->check(CLI::IsMember({"fp16", "int3", "int4", "int5", "int6", "int7", "int8"}))
      ->capture_default_str();
  cmd->add_option("--lm-head", f.lm_head,
                  "LM head: fp16, int3..int7 (group-wise, the chosen method) or int8 (one step per row)")
      ->check(CLI::IsMember({"fp16", "int3", "int4", "int5", "int6", "int7", "int8"}))
      ->capture_default_str();
  cmd->add_option("--threads,-t", f.threads, "Compute threads (default: all cores)");
}

absl::StatusOr<quant::ModelQuantOptions> MakeOptions(const QuantizeFlags& f) {
  quant::ModelQuantOptions o;
  ASSIGN_OR_RETURN(o.quant.method, quant::ParseQuantMethod(f.method));
  o.quant.group_size = f.group;
  if (f.down_group > 0 && f.down_group != f.group) {
    if (f.accumulator_bits > 0 || f.naive_accumulator_bits > 0 || f.tile > 0)
      return absl::InvalidArgumentError(
          "--down-group with --accumulator-bits, --naive-accumulator-bits or --tile is not supported: their "
          "bounds are derived for one group size");
    o.down_group_size = f.down_group;
  }
  o.quant.symmetric = f.symmetric;
  o.quant.stochastic = f.stochastic;
  o.quant.seed = f.seed;
  o.quant.accumulator_bits = f.accumulator_bits;
  o.quant.tile = f.tile;
  o.quant.act_order = f.act_order;
  o.quant.dampening = f.dampening;
  o.quant.zero_fraction_bits = f.zero_point == "fractional" ? 4 : 0;
  o.quant.scale_bits = f.scale_bits;
  if (f.naive_accumulator_bits > 0) {
    if (f.accumulator_bits > 0)
      return absl::InvalidArgumentError("--naive-accumulator-bits and --accumulator-bits exclude each other");
    o.quant.max_code_magnitude = quant::NaiveMaxCodeMagnitude(f.naive_accumulator_bits, f.group);
    if (o.quant.max_code_magnitude == 0) {
      return absl::InvalidArgumentError("no INT4 weight range keeps that accumulator safe for this group size");
    }
    // A symmetric grid around zero so the bound is the whole constraint.
    o.quant.symmetric = true;
  }
  o.embedding_bits = model::FormatBits(f.embeddings);  // fp16: 0
  o.lm_head_bits = model::FormatBits(f.lm_head);
  o.correct_input_mismatch = f.mismatch;
  // Measured on the fixture (all blocks INT4, GPTQ g32, 40 chunks): with integer zero points the
  // search barely matters (KL 0.002786 → 0.002765), with fractional ones it does (0.002714 →
  // 0.002416): the free offset lets each end of the range be clipped on its own.
  // Under AXE (integer zeros, a budget-fitted scale) it did not help: 16-bit GPTQ g128 ppl
  // ratio 1.0035 without, 1.0049 with (the recipe of tests/integration/quantize_axe_test.sh).
  o.quant.search_grid =
      f.grid_search == "on" || (f.grid_search == "auto" && f.naive_accumulator_bits == 0 && f.accumulator_bits == 0);
  o.outliers.enabled = !f.no_outliers;
  o.outliers.threshold = f.outlier_threshold;
  o.outliers.top_fraction = f.outlier_fraction;
  o.outliers.max_fraction = std::max(f.outlier_max_fraction, f.outlier_fraction);
  return o;
}

// Everything quantize and plan share: model, calibration statistics, sensitivity chunks.
struct Prepared {
  LoadedModel loaded;
  std::unique_ptr<quant::CalibrationStats> stats;
  std::vector<std::vector<int32_t>> sensitivity_chunks;
  std::vector<std::vector<int32_t>> chunks;  // all calibration sequences
  std::vector<int32_t> calib_stream;         // the calibration text's tokens (sparsity's auto search)
  int32_t bos = 0;
  std::string calib_path;  // empty when no calibration ran
  std::string model_dir;
};

bool IsExplicitSpec(const std::string& s) {
  return s == "none" || absl::StrContains(s, "first:") || absl::StrContains(s, "last:") ||
         absl::StartsWith(s, "layers:") || absl::StrContains(s, ".");
}

// Loads the model and, unless nothing will read them, runs the calibration passes.
// `measure_plan`: the precision plan will be measured (it runs the model on the calibration text).
absl::StatusOr<Prepared> Prepare(const QuantizeFlags& f, const quant::ModelQuantOptions& o, bool measure_plan) {
  Prepared p;
  p.model_dir = f.model.empty() ? DefaultModelDir() : f.model;
  ASSIGN_OR_RETURN(p.loaded, LoadModel(p.model_dir, f.threads, /*need_tokenizer=*/true));
  if (p.loaded.transformer->pack().has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(p.model_dir, " is already an AccuLLM pack; quantize the full-precision model"));
  }
  const quant::CalibrationNeeds needs = quant::CalibrationNeedsOf(o);
  p.stats = std::make_unique<quant::CalibrationStats>(p.loaded.pool.get(), f.outlier_threshold, needs.second_moments);
  if (!needs.any && !measure_plan) {
    // Round to nearest with an explicit plan, no outlier channels and no mismatch correction
    // reads no statistic: the passes would only cost time (minutes at TinyLlama's size).
    std::fprintf(stderr, "calibrate: skipped (round to nearest with an explicit plan and no outlier channels reads no "
                         "calibration statistics)\n");
    return p;
  }
  p.calib_path = f.calib.empty() ? p.model_dir + "/calib.txt" : f.calib;
  auto text = ReadTextFile(p.calib_path);
  if (!text.ok()) {
    return absl::NotFoundError(absl::StrCat("calibration text ", p.calib_path, " not found (pass --calib FILE)"));
  }
  const text::Tokenizer& tok = *p.loaded.tokenizer;
  std::vector<int32_t> stream = tok.Encode(*text, /*add_special=*/false);
  const int32_t bos =
      tok.bos_id().value_or(static_cast<int32_t>(std::max<int64_t>(0, p.loaded.transformer->config().bos_token_id)));
  const int64_t seq_len = std::min(f.calib_seq_len, p.loaded.transformer->config().max_position_embeddings);
  auto chunks = quant::MakeCalibrationChunks(stream, bos, f.calib_samples, seq_len);
  if (chunks.empty()) return absl::InvalidArgumentError(absl::StrCat(p.calib_path, ": no calibration tokens"));
  {
    Progress progress("calibrate");
    for (size_t i = 0; i < chunks.size(); ++i) {
      progress.Update(static_cast<int64_t>(i), static_cast<int64_t>(chunks.size()), "sequences");
      RETURN_IF_ERROR(quant::RunCalibration(*p.loaded.transformer, {chunks[i]}, *p.stats));
    }
    progress.Update(static_cast<int64_t>(chunks.size()), static_cast<int64_t>(chunks.size()), "sequences");
  }
  const size_t ns = std::min<size_t>(static_cast<size_t>(f.sensitivity_samples), chunks.size());
  p.sensitivity_chunks.assign(chunks.begin(), chunks.begin() + static_cast<std::ptrdiff_t>(ns));
  p.chunks = std::move(chunks);
  p.calib_stream = std::move(stream);
  p.bos = bos;
  return p;
}

struct PlanChoice {
  sharding::PrecisionPlan plan;
  std::vector<quant::LayerSensitivity> sensitivity;  // empty for explicit plans
};

absl::StatusOr<PlanChoice> ChoosePrecision(const QuantizeFlags& f, Prepared& p, const quant::ModelQuantOptions& o,
                                           bool always_measure) {
  const int64_t n = p.loaded.transformer->config().num_layers;
  PlanChoice c;
  const bool explicit_spec = IsExplicitSpec(f.fp16_layers);
  if (!explicit_spec || always_measure) {
    Progress progress("sensitivity");
    ASSIGN_OR_RETURN(c.sensitivity, quant::MeasureSensitivity(
                                        *p.loaded.transformer, *p.stats, o, p.sensitivity_chunks, *p.loaded.pool,
                                        [&](int64_t d, int64_t t, const std::string& w) { progress.Update(d, t, w); }));
  }
  if (explicit_spec) {
    std::string spec = f.fp16_layers;
    if (absl::StartsWith(spec, "layers:")) spec = spec.substr(7);
    ASSIGN_OR_RETURN(c.plan, sharding::PrecisionPlan::FromFp16Spec(spec, n));
    return c;
  }
  quant::PlanBudget budget;
  const int given = (f.fp16_layers.empty() ? 0 : 1) + (f.avg_bits > 0 ? 1 : 0) + (f.fp16_share >= 0 ? 1 : 0);
  if (given > 1)
    return absl::InvalidArgumentError("give one precision budget: --fp16-share, --fp16-layers or --avg-bits");
  if (!f.fp16_layers.empty()) {
    if (!absl::SimpleAtoi(f.fp16_layers, &budget.fp16_layers) || budget.fp16_layers < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--fp16-layers \"", f.fp16_layers, "\": expected a count, first:N,last:M, layers:i,j or none"));
    }
  } else if (f.avg_bits > 0) {
    budget.avg_bits = f.avg_bits;
    auto widths = ParseBitWidths(f.bit_widths);  // validated by the option already
    if (!widths.ok()) return absl::InvalidArgumentError(absl::StrCat("--bit-widths ", widths.status().message()));
    budget.widths = *widths;
  } else if (f.fp16_share >= 0) {
    budget.fp16_share = f.fp16_share;
    if (f.fp16_share == 0) return PlanChoice{sharding::PrecisionPlan::AllLowBit(n), c.sensitivity};
  } else {
    budget.fp16_share = 0.25;  // default: a quarter of the weights FP16, where they buy the most
  }
  ASSIGN_OR_RETURN(c.plan, quant::ChoosePlan(c.sensitivity, budget));
  return c;
}

void PrintPlanTable(const PlanChoice& c, const quant::ModelQuantOptions& o) {
  std::printf("%-6s %-14s %-8s %-10s %s\n", "layer", "sensitivity", "outlier", "precision", "bytes");
  for (size_t l = 0; l < c.plan.layers.size(); ++l) {
    const bool fp16 = c.plan.layers[l] == sharding::LayerPrecision::kFp16;
    std::string precision = sharding::LayerPrecisionName(c.plan.layers[l]);
    std::vector<std::string> kept;
    for (int i = 0; i < sharding::kBlockLinears; ++i)
      if (c.plan.fp16_linears.count({static_cast<int64_t>(l), i})) kept.push_back(sharding::kBlockLinearShortNames[i]);
    if (!fp16 && !kept.empty()) precision = absl::StrCat("int4, fp16: ", absl::StrJoin(kept, ","));
    std::vector<std::string> widths;
    for (int i = 0; i < sharding::kBlockLinears; ++i) {
      const int64_t layer = static_cast<int64_t>(l);
      if (c.plan.LinearIsLowBit(layer, i) && c.plan.LinearBits(layer, i) != 4)
        widths.push_back(absl::StrCat(sharding::kBlockLinearShortNames[i], ":", c.plan.LinearBits(layer, i)));
    }
    if (!fp16 && !widths.empty()) absl::StrAppend(&precision, kept.empty() ? ", " : "; ", absl::StrJoin(widths, ","));
    if (c.sensitivity.empty()) {
      std::printf("%-6zu %-14s %-8s %-10s %s\n", l, "-", "-", precision.c_str(), "-");
      continue;
    }
    const auto& s = c.sensitivity[l];
    int64_t bytes = fp16 ? s.fp16_bytes : s.four_bit_bytes;
    if (!fp16 && !s.linears.empty()) {
      bytes = 0;
      for (const auto& ls : s.linears) {
        const int64_t layer = static_cast<int64_t>(l);
        bytes += ls.BytesAt(c.plan.StorageBits(layer, ls.linear));
      }
    }
    std::printf("%-6zu %-14.6f %-8.2f %-10s %lld\n", l, s.kl, s.outlier_score, precision.c_str(),
                static_cast<long long>(bytes));
  }
  if (!c.sensitivity.empty() && !c.sensitivity[0].linears.empty()) {
    std::printf("per-linear sensitivity (mean KL with only that linear INT4):\n%-6s", "layer");
    for (const char* name : sharding::kBlockLinearShortNames) std::printf(" %-10s", name);
    std::printf("\n");
    for (const auto& s : c.sensitivity) {
      std::printf("%-6lld", static_cast<long long>(s.layer));
      for (const auto& ls : s.linears) {
        const std::string v = absl::StrFormat("%.2e%s", ls.kl, c.plan.LinearIsLowBit(s.layer, ls.linear) ? "" : "*");
        std::printf(" %-10s", v.c_str());
      }
      std::printf("\n");
    }
    std::printf("(* = kept FP16)\n");
  }
  if (!c.sensitivity.empty()) {
    std::printf("INT4 share of block-linear weights: %.1f%%; average bits per block-linear weight: %.3f (method %s, "
                "group %lld%s, %s)\n",
                100.0 * quant::AtMost4BitShare(c.sensitivity, c.plan), quant::AverageBits(c.sensitivity, c.plan),
                quant::QuantMethodName(o.quant.method), static_cast<long long>(o.quant.group_size),
                o.down_group_size > 0 ? absl::StrFormat(" (down %lld)", o.down_group_size).c_str() : "",
                o.quant.symmetric ? "symmetric" : "asymmetric");
  }
}

const char* const kCanaryPrompts[] = {"Once upon a time", "The little dog saw a big",
                                      "Tom and Lily went to the park. They"};

// The guesser's rank: --guesser-rank, or the largest whose F16 weights cost at most 10% of
// an FFN's stored bytes (at 50% sparsity a dearer guesser eats much of the gain).
absl::StatusOr<int64_t> GuesserRank(const QuantizeFlags& f, const model::Transformer& pack) {
  if (f.guesser_rank == "auto") return quant::DefaultGuesserRank(pack, 0.10);
  int64_t r = 0;
  if (!absl::SimpleAtoi(f.guesser_rank, &r) || r < 1 || r > pack.config().hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat("--guesser-rank \"", f.guesser_rank,
                                                   "\": expected auto or an integer in [1, ", pack.config().hidden_size,
                                                   "]"));
  }
  return r;
}

// Activation sparsity: thresholds from the written pack's own FFN (quantized gates, INT8
// activations: what the runtime computes) on the calibration chunks — of |SiLU(gate)| for CATS,
// of the guesser's predicted scores for lowrank (fitted first, from the same pass's FFN inputs;
// its scores binned in a second pass) — then, for `auto`, the highest target of 0.3..0.9 whose
// cost on the calibration text stays within the budget against the same pack run dense. Adds
// "sparsity" (and for lowrank model::kGuesserFile) to the pack.
absl::Status AddSparsity(const QuantizeFlags& f, Prepared& p, const std::string& pack_dir) {
  if (p.chunks.empty()) return absl::FailedPreconditionError("--sparsity needs calibration text");
  const bool lowrank = f.sparsity_predictor == "lowrank";
  ThreadPool& pool = *p.loaded.pool;
  ASSIGN_OR_RETURN(auto pack, model::Transformer::Load(pack_dir, &pool, {.check_finite = false, .sparsity = false}));
  quant::FfnActivationStatistics stats(*pack, pool);
  std::optional<quant::FfnInputCovariance> covariance;
  if (lowrank) covariance.emplace(pack->config());
  quant::ObserverFanout observers({&stats});
  if (lowrank) observers.Add(&*covariance);
  {
    Progress progress("sparsity statistics");
    for (size_t i = 0; i < p.chunks.size(); ++i) {
      progress.Update(static_cast<int64_t>(i), static_cast<int64_t>(p.chunks.size()), "sequences");
      RETURN_IF_ERROR(quant::CollectFfnStatistics(*pack, {p.chunks[i]}, observers));
    }
  }
  int64_t rank = 0;
  std::shared_ptr<const model::FfnGuesser> guesser;
  std::optional<quant::GuesserScoreStatistics> scores;
  if (lowrank) {
    ASSIGN_OR_RETURN(rank, GuesserRank(f, *pack));
    RETURN_IF_ERROR(quant::FitFfnGuesser(*pack, *covariance, rank, pack_dir, pool));
    model::PackSparsity spec;
    spec.predictor = "lowrank";
    spec.rank = rank;
    spec.guesser_out_bits = f.guesser_out_bits;
    ASSIGN_OR_RETURN(guesser, model::FfnGuesser::Load(pack_dir, pack->config(), spec));
    scores.emplace(*guesser, pack->config(), pool);
    Progress progress("guesser scores");
    for (size_t i = 0; i < p.chunks.size(); ++i) {
      progress.Update(static_cast<int64_t>(i), static_cast<int64_t>(p.chunks.size()), "sequences");
      RETURN_IF_ERROR(quant::CollectFfnStatistics(*pack, {p.chunks[i]}, *scores));
    }
    const size_t ffn_bytes = quant::FfnWeightBytes(*pack);
    std::printf("sparsity: guesser rank %lld, %.1f KiB read per token (%.1f%% of the FFN weights)\n",
                static_cast<long long>(rank), static_cast<double>(guesser->weight_bytes()) / 1024,
                100.0 * static_cast<double>(guesser->weight_bytes()) / static_cast<double>(ffn_bytes));
  }
  // The thresholds at a share per layer: CATS's |SiLU(gate)| quantiles, the product rule's
  // |SiLU(gate)·up| quantiles (with its gate prefilter), or the guesser's score quantiles.
  const bool product = f.sparsity_predictor == "product";
  auto thresholds_at = [&](const std::vector<double>& targets) {
    model::PackSparsity th =
        product ? stats.ProductThresholds(targets, f.sparsity_prefilter_recall) : stats.Thresholds(targets);
    if (lowrank) {
      th.predictor = "lowrank";
      th.rank = rank;
      th.guesser_out_bits = f.guesser_out_bits;
      for (size_t l = 0; l < targets.size(); ++l) th.thresholds[l] = scores->Threshold(l, targets[l]);
    }
    return th;
  };
  const size_t layers = static_cast<size_t>(pack->config().num_layers);
  std::vector<double> targets;
  if (f.sparsity == "auto") {
    // The source model, fresh from disk (the quantizer replaced the loaded one's layers).
    ASSIGN_OR_RETURN(auto source, model::Transformer::Load(p.model_dir, &pool, {.check_finite = false}));
    quant::EvalOptions eo;
    eo.ctx = std::min<int64_t>(f.calib_seq_len, source->config().max_position_embeddings);
    eo.max_chunks = f.sensitivity_samples * 2;
    // The source's logits once: every measurement below compares against the same ones.
    ASSIGN_OR_RETURN(const quant::ReferenceLogits reference,
                     quant::ReferenceLogits::Compute(*source, p.calib_stream, p.bos, eo));
    source.reset();
    ASSIGN_OR_RETURN(quant::EvalResult dense, quant::Evaluate(*pack, reference, p.calib_stream, p.bos));
    std::printf("sparsity auto, predictor %s (calibration text, %lld positions; budget: KL increase <= %.0f%% of the "
                "dense pack's KL %.6f, top-1 drop <= %.2f points); shares per layer by measured sensitivity\n",
                f.sparsity_predictor.c_str(), static_cast<long long>(dense.positions), 100 * f.sparsity_kl_budget,
                dense.kl_mean, f.sparsity_top1_budget);
    auto measure = [&](const std::vector<double>& shares) -> absl::StatusOr<quant::SparsityCost> {
      const model::PackSparsity th = thresholds_at(shares);
      RETURN_IF_ERROR(pack->SetFfnSparsity(product ? th.gate_thresholds : th.thresholds, {},
                                           product ? th.thresholds : std::vector<float>{}));
      if (lowrank)
        pack->set_ffn_neuron_selector(std::make_shared<model::GuesserNeuronSelector>(guesser, th.thresholds));
      pack->ResetFfnSparsityCounts();
      ASSIGN_OR_RETURN(quant::EvalResult r, quant::Evaluate(*pack, reference, p.calib_stream, p.bos));
      int64_t total = 0, kept = 0;
      for (const auto& c : pack->ffn_sparsity_counts()) {
        total += c.total;
        kept += c.kept;
      }
      return quant::SparsityCost{
          .kl = r.kl_mean,
          .top1 = r.top1_agreement,
          .skipped = total > 0 ? static_cast<double>(total - kept) / static_cast<double>(total) : 0.0};
    };
    std::printf("%-12s %-44s %-10s %-8s %-9s %s\n", "phase", "share per layer", "KL mean", "top-1 %", "skipped %",
                "within budget");
    auto report = [](const char* phase, const std::vector<double>& shares, const quant::SparsityCost& c, bool ok) {
      std::string list;
      for (double t : shares) absl::StrAppend(&list, list.empty() ? "" : ",", absl::StrFormat("%.2f", t));
      std::printf("%-12s %-44s %-10.6f %-8.2f %-9.1f %s\n", phase, list.c_str(), c.kl, 100 * c.top1, 100 * c.skipped,
                  ok ? "yes" : "no");
      std::fflush(stdout);
    };
    const quant::SparsityBudget budget{.max_kl = dense.kl_mean * (1 + f.sparsity_kl_budget),
                                       .min_top1 = dense.top1_agreement - f.sparsity_top1_budget / 100};
    ASSIGN_OR_RETURN(
        quant::SparsityAllocation a,
        quant::AllocateSparsity(static_cast<int64_t>(layers), {.kl = dense.kl_mean, .top1 = dense.top1_agreement},
                                budget, measure, report));
    double mean = 0;
    for (double t : a.targets) mean += t / static_cast<double>(layers);
    if (mean == 0) {
      std::printf("sparsity auto: no share within the budget (%lld measurements); the pack stays dense\n",
                  static_cast<long long>(a.measurements));
      if (lowrank) std::filesystem::remove(absl::StrCat(pack_dir, "/", model::kGuesserFile));
      return absl::OkStatus();
    }
    std::printf("sparsity auto: mean share %.3f (%lld measurements): KL %.6f, top-1 %.2f%%, %.1f%% skipped\n", mean,
                static_cast<long long>(a.measurements), a.cost.kl, 100 * a.cost.top1, 100 * a.cost.skipped);
    targets = a.targets;
  } else {
    ASSIGN_OR_RETURN(double target, ParseSparsityTarget(f.sparsity));
    targets.assign(layers, target);
  }
  model::PackSparsity sparsity = thresholds_at(targets);
  if (f.sparsity != "auto") {  // one share for all: `target` says it, exactly as given
    sparsity.layer_targets.clear();
    sparsity.target = targets[0];
  }
  if (product) {
    std::string shares;
    double mean = 0;
    for (size_t l = 0; l < layers; ++l) {
      const double up_skipped = stats.SampledGateShareAtOrBelow(l, sparsity.gate_thresholds[l]);
      mean += up_skipped / static_cast<double>(layers);
      absl::StrAppend(&shares, l > 0 ? "," : "", absl::StrFormat("%.2f", up_skipped));
    }
    std::printf("sparsity: the gate prefilter (recall %.3f) skips up for %.1f%% of the neurons on the calibration "
                "tokens (per layer %s)\n",
                f.sparsity_prefilter_recall, 100 * mean, shares.c_str());
  }
  sparsity.measured_on = "quantized";
  RETURN_IF_ERROR(quant::WritePackSparsity(pack_dir, sparsity));
  std::printf("sparsity: predictor %s, target %.3f, thresholds from %lld calibration tokens of the quantized "
              "model\n",
              sparsity.predictor.c_str(), sparsity.target, static_cast<long long>(sparsity.calibration_tokens));
  return absl::OkStatus();
}

int RunQuantize(const QuantizeFlags& f) {
  auto opts = MakeOptions(f);
  if (!opts.ok()) return ReportError(opts.status());
  if (f.out.empty()) return ReportError(absl::InvalidArgumentError("--out PACK is required"));
  const bool sparsity = f.sparsity != "off";
  if (sparsity && f.sparsity != "auto") {
    if (auto t = ParseSparsityTarget(f.sparsity); !t.ok()) return ReportError(t.status());  // before calibrating
  }
  // Checked before any work: what --out holds now (absent, empty or a pack) stays intact
  // until the new pack is complete on disk (quant/pack_staging.h).
  auto staging = quant::PackStaging::Prepare(f.out, f.model.empty() ? DefaultModelDir() : f.model);
  if (!staging.ok()) return ReportError(staging.status());
  auto prepared = Prepare(f, *opts, /*measure_plan=*/!IsExplicitSpec(f.fp16_layers) || sparsity);
  if (!prepared.ok()) return ReportError(prepared.status());
  Prepared& p = *prepared;
  model::Transformer& model = *p.loaded.transformer;
  auto choice = ChoosePrecision(f, p, *opts, /*always_measure=*/false);
  if (!choice.ok()) return ReportError(choice.status());
  // Canaries: full-precision logits, recorded before any layer is quantized.
  quant::PackDescription desc;
  for (const char* prompt : kCanaryPrompts) {
    quant::CanaryLogits c;
    c.prompt = prompt;
    c.ids = p.loaded.tokenizer->Encode(prompt, true);
    c.logits.resize(static_cast<size_t>(model.config().vocab_size));
    model::KvCache cache = model.NewCache(static_cast<int64_t>(c.ids.size()));
    if (auto s = model.Forward(c.ids.data(), static_cast<int64_t>(c.ids.size()), cache, c.logits.data()); !s.ok())
      return ReportError(s);
    desc.canaries.push_back(std::move(c));
  }
  quant::QuantizedMatrices mats;
  // A second, untouched view of the same mmap'd weights: the full-precision reference that
  // input-mismatch correction aims at.
  std::unique_ptr<model::Transformer> reference;
  if (f.sequential && opts->correct_input_mismatch) {
    auto r = model::Transformer::Load(p.model_dir, p.loaded.pool.get(), {.check_finite = false});  // checked above
    if (!r.ok()) return ReportError(r.status());
    reference = std::move(*r);
  }
  {
    Progress progress("quantize");
    auto q = quant::QuantizeModel(
        model, *p.stats, choice->plan, *opts, *p.loaded.pool,
        f.sequential ? p.chunks : std::vector<std::vector<int32_t>>{},
        [&](int64_t d, int64_t t, const std::string& w) { progress.Update(d, t, w); }, reference.get());
    if (!q.ok()) return ReportError(q.status());
    mats = std::move(*q);
    if (auto s = quant::QuantizeEmbeddingsAndHead(model, *p.stats, *opts, *p.loaded.pool,
                                                  f.sequential ? p.chunks : std::vector<std::vector<int32_t>>{}, &mats,
                                                  &desc.int8);
        !s.ok()) {
      return ReportError(s);
    }
  }
  desc.source_dir = p.model_dir;
  desc.plan = choice->plan;
  desc.options = *opts;
  desc.calibration_file = p.calib_path;
  desc.calibration_tokens = p.stats->tokens();
  if (absl::Status st = (*staging)->Create(); !st.ok()) return ReportError(st);
  const std::string& pack_dir = (*staging)->dir();
  auto bytes = quant::WritePack(model, mats, desc, pack_dir);
  if (!bytes.ok()) return ReportError(bytes.status());
  if (!choice->sensitivity.empty()) PrintPlanTable(*choice, *opts);
  if (opts->quant.accumulator_bits > 0 || f.naive_accumulator_bits > 0) {
    const int bits = opts->quant.accumulator_bits > 0 ? opts->quant.accumulator_bits : f.naive_accumulator_bits;
    // The AXE guarantee, checked exhaustively: worst-case INT8 dot products per channel.
    int64_t channels = 0, overflowing = 0, worst = 0;
    for (const auto& [name, m] : mats) {
      if (name == "model.embed_tokens") continue;  // a lookup table, not a dot product
      const quant::AccumulatorReport r = quant::CheckAccumulator(*m, bits, opts->quant.tile);
      channels += r.channels;
      overflowing += r.overflowing_channels;
      worst = std::max(worst, r.worst_magnitude);
    }
    std::printf("accumulator check: %lld of %lld output channels can overflow a signed %d-bit accumulator "
                "(tile %lld, INT8 activations); worst reachable |partial sum| %lld\n",
                static_cast<long long>(overflowing), static_cast<long long>(channels), bits,
                static_cast<long long>(opts->quant.tile > 0 ? opts->quant.tile : opts->quant.group_size),
                static_cast<long long>(worst));
  }
  if (sparsity) {
    if (auto s = AddSparsity(f, p, pack_dir); !s.ok()) return ReportError(s);
  }
  if (absl::Status st = (*staging)->Publish(); !st.ok()) return ReportError(st);
  std::printf("wrote %s: %zu bytes of weights, plan %s\n", f.out.c_str(), *bytes, choice->plan.Describe().c_str());
  return 0;
}

int RunPlan(const QuantizeFlags& f) {
  auto opts = MakeOptions(f);
  if (!opts.ok()) return ReportError(opts.status());
  auto prepared = Prepare(f, *opts, /*measure_plan=*/true);
  if (!prepared.ok()) return ReportError(prepared.status());
  auto choice = ChoosePrecision(f, *prepared, *opts, /*always_measure=*/true);
  if (!choice.ok()) return ReportError(choice.status());
  PrintPlanTable(*choice, *opts);
  return 0;
}

}  // namespace

void AddQuantizeCommand(CLI::App& app, std::function<int()>& run) {
  auto flags = std::make_shared<QuantizeFlags>();
  CLI::App* cmd = app.add_subcommand(
      "quantize", "Quantize a model into a mixed-precision pack (INT4 and FP16, or 3..8-bit widths)");
  cmd->footer(
      "Defaults (recommended): GPTQ (sequential, natural column order), group 32, asymmetric with zero points in\n"
      "sixteenths of a step and a 2-D range search, outlier channels (|x| > 6, at most 3% of a layer's inputs) in "
      "FP16,\n"
      "and 25% of the block-linear weights FP16 where the measured KL per weight is highest (KL divergence when only\n"
      "that linear is INT4). Under a size budget: --avg-bits B (each linear gets 3..8 bits or FP16 by measured\n"
      "sensitivity) with --scale-bits 8 --embeddings int5 --lm-head int6 --no-outliers. See docs/accuracy.md for the\n"
      "measurements behind them.\n"
      "The pack is a directory every command loads like a model: accullm generate --model PACK.");
  cmd->add_option("--out", flags->out,
                  "Pack directory to write: absent, empty or an existing pack (replaced only once the new one is "
                  "complete on disk; anything else is refused). Never left half-written: see docs/formats.md")
      ->required();
  AddCommonOptions(cmd, *flags);
  cmd->add_option("--sparsity", flags->sparsity,
                  "FFN activation sparsity: off, a target share of FFN neurons skipped per token (e.g. 0.5: per-layer "
                  "thresholds of --sparsity-predictor at that calibration quantile, measured on the quantized pack), "
                  "or auto (a share per layer, 0..0.9 in steps of 0.1, allocated by each layer's measured cost: the "
                  "most neurons skipped within --sparsity-kl-budget and --sparsity-top1-budget on the calibration "
                  "text against the same pack dense). Runs skip neurons unless given --sparsity off")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& v) {
            if (v == "off" || v == "auto") return std::string();
            auto t = ParseSparsityTarget(v);
            return t.ok() ? std::string() : std::string(t.status().message());
          },
          "off|auto|TARGET"));
  cmd->add_option("--sparsity-predictor", flags->sparsity_predictor,
                  "Which rule skips FFN neurons: cats (a dense gate, then |SiLU(gate)| against a per-layer "
                  "threshold: up and down skipped), product (a dense gate, up for the neurons a loose |SiLU(gate)| "
                  "prefilter keeps, then |SiLU(gate)*up| against a per-layer threshold: down skipped; the most "
                  "accurate per share, see docs/accuracy.md) or lowrank (a trained rank-r guesser predicts gate and "
                  "up from the FFN input, so gate rows are skipped too; stored in guesser.safetensors, pack format "
                  "version 2)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cats", "product", "lowrank"}));
  cmd->add_option("--sparsity-prefilter-recall", flags->sparsity_prefilter_recall,
                  "--sparsity-predictor product: the share of the truly active neurons (|SiLU(gate)*up| above the "
                  "threshold) the gate prefilter must keep on the calibration tokens; 1 = no prefilter (up dense)")
      ->capture_default_str()
      ->check(kFinite)
      ->check(CLI::Range(0.5, 1.0));
  cmd->add_option("--guesser-rank", flags->guesser_rank,
                  "--sparsity-predictor lowrank: the guesser's rank, or auto (the largest whose F16 weights cost at "
                  "most 10% of an FFN's stored bytes; at run time it reads less, see --guesser-out-bits)")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& v) {
            int64_t r = 0;
            if (v == "auto" || (absl::SimpleAtoi(v, &r) && r >= 1)) return std::string();
            return std::string("must be auto or an integer >= 1");
          },
          "auto|RANK"));
  cmd->add_option("--guesser-out-bits", flags->guesser_out_bits,
                  "--sparsity-predictor lowrank: the codes (8 or 4, one step per row, made at load) the guesser's "
                  "wide product [2*intermediate, rank] runs on; its thresholds are taken through them and the pack "
                  "records them (4: the guesser reads ~half the bytes of 8, see docs/accuracy.md)")
      ->capture_default_str()
      ->check(CLI::IsMember({4, 8}));
  cmd->add_option("--sparsity-kl-budget", flags->sparsity_kl_budget,
                  "--sparsity auto: allowed KL increase as a share of the dense pack's KL")
      ->capture_default_str()
      ->check(kFinite)
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--sparsity-top1-budget", flags->sparsity_top1_budget,
                  "--sparsity auto: allowed top-1 agreement drop in percentage points")
      ->capture_default_str()
      ->check(kFinite)
      ->check(CLI::Range(0.0, 100.0));
  cmd->callback([&run, flags] { run = [flags] { return RunQuantize(*flags); }; });
}

void AddPlanCommand(CLI::App& app, std::function<int()>& run) {
  auto flags = std::make_shared<QuantizeFlags>();
  auto sharding = std::make_shared<ShardingPlanFlags>();
  CLI::App* cmd =
      app.add_subcommand("plan", "Print the measured precision plan: sensitivity, outliers, precision, bytes");
  cmd->footer("Takes the same options as quantize; nothing is written.\n"
              "With --workers N: the layer -> pipeline stage plan instead (docs/cluster.md).");
  AddCommonOptions(cmd, *flags);
  cmd->add_option("--workers", sharding->workers, "Pipeline stages: print the sharding plan instead")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--memory", sharding->memory, "With --workers: memory per worker, e.g. 8GiB or 8GiB,4GiB,4GiB");
  cmd->add_option("--out", sharding->out, "With --workers: write the plan file for serve --plan");
  cmd->add_option("--kv-positions", sharding->kv_positions,
                  "With --workers: KV positions each stage holds (default: serve's)");
  cmd->add_option("--kv-cache-dtype", sharding->kv_cache_dtype,
                  "With --workers: the KV cache dtype serve will use (its bytes per position)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "int8"}))
      ->capture_default_str();
  cmd->add_option("--tokens-per-step", sharding->tokens_per_step,
                  "With --workers: rows per micro-batch in the cost model")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->callback([&run, flags, sharding] {
    if (sharding->workers > 0) {
      sharding->model = flags->model;
      sharding->threads = flags->threads;
      run = [sharding] { return RunShardingPlan(*sharding); };
    } else {
      run = [flags] { return RunPlan(*flags); };
    }
  });
}

}  // namespace accullm::cli
