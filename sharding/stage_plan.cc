#include "sharding/stage_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/json.h"
#include "common/status.h"
#include "model/transformer.h"

namespace accullm::sharding {

namespace {

double LinearFlops(const model::LinearOp& op) {
  return 2.0 * static_cast<double>(op.in_features()) * op.out_features();
}

std::string Human(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f %s", bytes, units[u]);
  return buf;
}

}  // namespace

ModelCost CostFromModel(model::Transformer& model, kernels::KvDType kv_dtype) {
  const model::ModelConfig& c = model.config();
  ModelCost cost;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    model::TransformerLayer& L = model.layer(l);
    LayerCost lc;
    for (model::LinearOp* op : {L.q.get(), L.k.get(), L.v.get(), L.o.get(), L.gate.get(), L.up.get(), L.down.get()}) {
      lc.weight_bytes += static_cast<double>(op->weight_bytes());
      lc.flops_per_token += LinearFlops(*op);
    }
    lc.weight_bytes += 2.0 * c.hidden_size * sizeof(float);  // the two norms
    lc.kv_bytes_per_position = static_cast<double>(model::KvBytesPerPosition(1, model.kv_format(kv_dtype)));
    cost.layers.push_back(lc);
  }
  cost.head_bytes = static_cast<double>(model.lm_head().weight_bytes()) + c.hidden_size * sizeof(float);
  cost.head_flops_per_token = LinearFlops(model.lm_head());
  // Tied embeddings share the head's tensor, but the first stage still maps it.
  cost.embed_bytes = static_cast<double>(c.vocab_size) * c.hidden_size *
                     static_cast<double>(model.lm_head().weight_bytes()) /
                     std::max(1.0, static_cast<double>(model.lm_head().in_features()) * model.lm_head().out_features());
  cost.activation_bytes_per_token = static_cast<double>(c.hidden_size) * sizeof(float);
  return cost;
}

ModelCost CostFromConfig(const model::ModelConfig& c, const std::optional<PrecisionPlan>& plan, int64_t group_size) {
  ModelCost cost;
  const double h = static_cast<double>(c.hidden_size), kvd = static_cast<double>(c.num_kv_heads * c.head_dim);
  const double qd = static_cast<double>(c.num_heads * c.head_dim), inter = static_cast<double>(c.intermediate_size);
  const double params = h * qd + 2 * h * kvd + qd * h + 3 * h * inter;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const bool low_bit = plan.has_value() && l < static_cast<int64_t>(plan->layers.size()) &&
                         plan->layers[static_cast<size_t>(l)] == LayerPrecision::kLowBit;
    const double per_weight = low_bit ? 0.5 + 2.0 / static_cast<double>(std::max<int64_t>(1, group_size)) : 2.0;
    LayerCost lc;
    lc.weight_bytes = params * per_weight + 2 * h * 2;
    lc.flops_per_token = 2 * params;
    lc.kv_bytes_per_position = 2 * kvd * 2;  // FP16 KV on GPUs
    cost.layers.push_back(lc);
  }
  cost.embed_bytes = static_cast<double>(c.vocab_size) * h * 2;
  cost.head_bytes = static_cast<double>(c.vocab_size) * h * 2 + h * 2;
  cost.head_flops_per_token = 2.0 * c.vocab_size * h;
  cost.activation_bytes_per_token = h * 2;  // bf16 on the wire at scale
  return cost;
}

double StagePlan::bottleneck_seconds() const {
  double m = 0;
  for (const auto& s : stages) m = std::max(m, s.step_seconds);
  return m;
}

absl::StatusOr<StagePlan> PlanStages(const ModelCost& cost, int workers, const PlannerOptions& o) {
  const int64_t L = static_cast<int64_t>(cost.layers.size());
  if (workers < 1) return absl::InvalidArgumentError("--workers must be at least 1");
  if (L < workers)
    return absl::InvalidArgumentError(absl::StrCat("the model has ", L, " layers: it cannot be split over ", workers,
                                                   " workers (each stage needs at least one layer)"));
  std::vector<double> budget(static_cast<size_t>(workers), std::numeric_limits<double>::infinity());
  if (o.memory_bytes.size() == 1) std::fill(budget.begin(), budget.end(), o.memory_bytes[0]);
  else if (o.memory_bytes.size() == static_cast<size_t>(workers)) budget = o.memory_bytes;
  else if (!o.memory_bytes.empty())
    return absl::InvalidArgumentError(absl::StrCat(o.memory_bytes.size(), " memory budgets for ", workers,
                                                   " workers (give one value, or one per worker)"));
  // Prefix sums so a range's bytes/FLOPs/KV are O(1).
  std::vector<double> wb(L + 1, 0), fl(L + 1, 0), kv(L + 1, 0);
  for (int64_t l = 0; l < L; ++l) {
    wb[l + 1] = wb[l] + cost.layers[l].weight_bytes;
    fl[l + 1] = fl[l] + cost.layers[l].flops_per_token;
    kv[l + 1] = kv[l] + cost.layers[l].kv_bytes_per_position;
  }
  const double tokens = static_cast<double>(std::max<int64_t>(1, o.tokens_per_step));
  auto stage = [&](int s, int64_t b, int64_t e) {
    StageAssignment a;
    a.layer_begin = b, a.layer_end = e;
    a.weight_bytes = wb[e] - wb[b];
    double flops = (fl[e] - fl[b]) * tokens;
    if (s == 0) a.weight_bytes += cost.embed_bytes;
    if (s == workers - 1) a.weight_bytes += cost.head_bytes, flops += cost.head_flops_per_token * tokens;
    a.kv_bytes = (kv[e] - kv[b]) * static_cast<double>(o.kv_positions);
    a.memory_bytes = a.weight_bytes + a.kv_bytes;
    a.budget_bytes = budget[s];
    // Roofline-ish: streaming the weights and doing the math overlap; the send to the next
    // stage (or the sampled ids back) follows.
    a.step_seconds = std::max(a.weight_bytes / o.memory_bandwidth, flops / o.flops);
    if (s < workers - 1) a.step_seconds += cost.activation_bytes_per_token * tokens / o.link_bandwidth;
    return a;
  };
  // best[s][e]: the smallest bottleneck placing layers [0, e) on stages 0..s with stage s
  // ending at e; from[s][e] its begin.
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(workers, std::vector<double>(L + 1, inf));
  std::vector<std::vector<int64_t>> from(workers, std::vector<int64_t>(L + 1, -1));
  for (int s = 0; s < workers; ++s) {
    for (int64_t e = s + 1; e <= L - (workers - 1 - s); ++e) {
      for (int64_t b = s; b < e; ++b) {
        const double prev = s == 0 ? (b == 0 ? 0 : inf) : best[s - 1][b];
        if (prev == inf) continue;
        const StageAssignment a = stage(s, b, e);
        if (a.memory_bytes > a.budget_bytes) continue;
        const double v = std::max(prev, a.step_seconds);
        // Ties: prefer the later begin (earlier stages lighter: stage 0 also embeds).
        if (v < best[s][e] || (v == best[s][e] && b > from[s][e])) best[s][e] = v, from[s][e] = b;
      }
    }
  }
  if (best[workers - 1][L] == inf) {
    double total = wb[L] + cost.embed_bytes + cost.head_bytes + kv[L] * static_cast<double>(o.kv_positions);
    double sum_budget = 0;
    for (double b : budget) sum_budget += b;
    return absl::ResourceExhaustedError(absl::StrCat("the model does not fit: it needs ", Human(total), " (weights ",
                                                     Human(wb[L] + cost.embed_bytes + cost.head_bytes), " + KV cache ",
                                                     Human(kv[L] * static_cast<double>(o.kv_positions)), " for ",
                                                     o.kv_positions, " positions) and ", workers, " worker(s) offer ",
                                                     Human(sum_budget),
                                                     " in total; no split into contiguous layer ranges fits every "
                                                     "worker's budget (add workers, memory, or quantize)"));
  }
  StagePlan plan;
  plan.num_layers = L;
  plan.stages.resize(static_cast<size_t>(workers));
  int64_t e = L;
  for (int s = workers - 1; s >= 0; --s) {
    const int64_t b = from[s][e];
    plan.stages[static_cast<size_t>(s)] = stage(s, b, e);
    e = b;
  }
  return plan;
}

StagePlan EvenStagePlan(int64_t num_layers, int workers) {
  StagePlan p;
  p.num_layers = num_layers;
  int64_t b = 0;
  for (int s = 0; s < workers; ++s) {
    const int64_t n = num_layers / workers + (s < num_layers % workers ? 1 : 0);
    StageAssignment a;
    a.layer_begin = b, a.layer_end = b + n;
    b += n;
    p.stages.push_back(a);
  }
  return p;
}

absl::Status ValidateStagePlan(const StagePlan& plan, int64_t num_layers, int workers, uint64_t fingerprint) {
  if (static_cast<int>(plan.stages.size()) != workers)
    return absl::FailedPreconditionError(absl::StrCat("the plan has ", plan.stages.size(), " stages but ", workers,
                                                      " worker rank(s) were started (mpirun -np ",
                                                      plan.stages.size() + 1, " for this plan)"));
  if (plan.num_layers != num_layers)
    return absl::FailedPreconditionError(
        absl::StrCat("the plan is for a model with ", plan.num_layers, " layers; this model has ", num_layers));
  if (plan.model_fingerprint != 0 && fingerprint != 0 && plan.model_fingerprint != fingerprint)
    return absl::FailedPreconditionError("the plan was made for a different model (fingerprint mismatch)");
  int64_t next = 0;
  for (size_t s = 0; s < plan.stages.size(); ++s) {
    const auto& a = plan.stages[s];
    if (a.layer_begin != next || a.layer_end <= a.layer_begin || a.layer_end > num_layers)
      return absl::FailedPreconditionError(absl::StrCat("plan stage ", s, " has layers [", a.layer_begin, ", ",
                                                        a.layer_end,
                                                        "): stages must be contiguous, non-empty, starting at ", next));
    next = a.layer_end;
  }
  if (next != num_layers)
    return absl::FailedPreconditionError(absl::StrCat("the plan covers layers [0, ", next, ") of ", num_layers));
  return absl::OkStatus();
}

uint64_t ModelFingerprint(const model::ModelConfig& c) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](int64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= static_cast<uint64_t>(v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  for (int64_t v : {c.vocab_size, c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads, c.num_kv_heads,
                    c.head_dim, c.max_position_embeddings})
    mix(v);
  for (char ch : c.model_type) mix(ch);
  mix(static_cast<int64_t>(c.rope_theta * 1000));
  mix(c.tie_word_embeddings ? 1 : 0);
  return h;
}

std::string FormatStagePlan(const StagePlan& plan) {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof(line), "%-6s %-10s %-8s %-14s %-14s %-14s %-12s %s\n", "stage", "layers", "count",
                "weights", "kv_cache", "memory", "budget", "step_ms");
  out << line;
  for (size_t s = 0; s < plan.stages.size(); ++s) {
    const auto& a = plan.stages[s];
    std::string layers = absl::StrCat(a.layer_begin, "-", a.layer_end - 1);
    std::string extra = s == 0 ? " +embed" : "";
    if (s + 1 == plan.stages.size()) extra += " +head";
    std::snprintf(line, sizeof(line), "%-6zu %-10s %-8lld %-14s %-14s %-14s %-12s %.3f%s\n", s, layers.c_str(),
                  static_cast<long long>(a.layer_end - a.layer_begin), Human(a.weight_bytes).c_str(),
                  Human(a.kv_bytes).c_str(), Human(a.memory_bytes).c_str(),
                  std::isinf(a.budget_bytes) ? "unlimited" : Human(a.budget_bytes).c_str(), a.step_seconds * 1e3,
                  extra.c_str());
    out << line;
  }
  std::snprintf(line, sizeof(line),
                "bottleneck stage step: %.3f ms (pipeline throughput bound: %.1f micro-batches/s)\n",
                plan.bottleneck_seconds() * 1e3, plan.bottleneck_seconds() > 0 ? 1.0 / plan.bottleneck_seconds() : 0.0);
  out << line;
  return out.str();
}

std::string StagePlanToJson(const StagePlan& plan) {
  boost::json::object o;
  o["format"] = "accullm-stage-plan";
  o["version"] = 1;
  o["num_layers"] = plan.num_layers;
  char fp[32];
  std::snprintf(fp, sizeof(fp), "%016llx", static_cast<unsigned long long>(plan.model_fingerprint));
  o["model_fingerprint"] = fp;
  boost::json::array stages;
  for (const auto& a : plan.stages) {
    boost::json::object s;
    s["layer_begin"] = a.layer_begin;
    s["layer_end"] = a.layer_end;
    s["memory_bytes"] = a.memory_bytes;
    s["step_seconds"] = a.step_seconds;
    stages.push_back(std::move(s));
  }
  o["stages"] = std::move(stages);
  return boost::json::serialize(o) + "\n";
}

absl::StatusOr<StagePlan> StagePlanFromJson(const std::string& text, const std::string& what) {
  ASSIGN_OR_RETURN(boost::json::value v, ParseJson(text, what));
  if (!v.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": not a JSON object"));
  const auto& o = v.as_object();
  ASSIGN_OR_RETURN(std::string format, GetString(o, "format"));
  if (format != "accullm-stage-plan")
    return absl::InvalidArgumentError(absl::StrCat(what, ": not an AccuLLM stage plan"));
  ASSIGN_OR_RETURN(int64_t version, GetInt(o, "version"));
  if (version != 1)
    return absl::InvalidArgumentError(absl::StrCat(what, ": plan version ", version, " (this build reads 1)"));
  StagePlan p;
  ASSIGN_OR_RETURN(p.num_layers, GetInt(o, "num_layers"));
  ASSIGN_OR_RETURN(std::optional<std::string> fp, GetOptionalString(o, "model_fingerprint"));
  if (fp.has_value()) {
    char* end = nullptr;
    p.model_fingerprint = std::strtoull(fp->c_str(), &end, 16);
    if (fp->empty() || fp->size() > 16 || *end != '\0')
      return absl::InvalidArgumentError(absl::StrCat(what, ": model_fingerprint is not hex"));
  }
  const auto* stages = o.if_contains("stages");
  if (stages == nullptr || !stages->is_array() || stages->as_array().empty())
    return absl::InvalidArgumentError(absl::StrCat(what, ": 'stages' must be a non-empty array"));
  for (const auto& sv : stages->as_array()) {
    if (!sv.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": a stage is not an object"));
    StageAssignment a;
    ASSIGN_OR_RETURN(a.layer_begin, GetInt(sv.as_object(), "layer_begin"));
    ASSIGN_OR_RETURN(a.layer_end, GetInt(sv.as_object(), "layer_end"));
    p.stages.push_back(a);
  }
  if (absl::Status s = ValidateStagePlan(p, p.num_layers, static_cast<int>(p.stages.size()), 0); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", s.message()));
  return p;
}

absl::Status WriteStagePlanFile(const std::string& path, const StagePlan& plan) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  f << StagePlanToJson(plan);
  if (!f.good()) return absl::DataLossError(absl::StrCat("writing ", path, " failed"));
  return absl::OkStatus();
}

absl::StatusOr<StagePlan> ReadStagePlanFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("plan file ", path, " not found"));
  std::ostringstream ss;
  ss << f.rdbuf();
  if (ss.str().size() > (1 << 20)) return absl::InvalidArgumentError(absl::StrCat(path, ": plan file too large"));
  return StagePlanFromJson(ss.str(), path);
}

absl::StatusOr<double> ParseByteSize(const std::string& text) {
  static const std::pair<const char*, double> kUnits[] = {{"KiB", 1024.0},
                                                          {"MiB", 1024.0 * 1024},
                                                          {"GiB", 1024.0 * 1024 * 1024},
                                                          {"TiB", 1024.0 * 1024 * 1024 * 1024},
                                                          {"KB", 1e3},
                                                          {"MB", 1e6},
                                                          {"GB", 1e9},
                                                          {"TB", 1e12},
                                                          {"K", 1024.0},
                                                          {"M", 1024.0 * 1024},
                                                          {"G", 1024.0 * 1024 * 1024},
                                                          {"B", 1.0}};
  std::string t(text);
  t.erase(std::remove_if(t.begin(), t.end(), [](char c) { return c == ' '; }), t.end());
  double mult = 1;
  for (const auto& [suffix, m] : kUnits) {
    const std::string s(suffix);
    if (t.size() > s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0) {
      mult = m;
      t.resize(t.size() - s.size());
      break;
    }
  }
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (t.empty() || end == nullptr || *end != '\0' || !std::isfinite(v) || v <= 0)
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a size (e.g. 8GiB, 512MiB, 2GB)"));
  return v * mult;
}

absl::StatusOr<std::vector<double>> ParseMemoryBudgets(const std::string& text, int workers) {
  std::vector<double> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    ASSIGN_OR_RETURN(double b, ParseByteSize(std::string(part)));
    out.push_back(b);
  }
  if (out.size() != 1 && out.size() != static_cast<size_t>(workers))
    return absl::InvalidArgumentError(
        absl::StrCat("--memory has ", out.size(), " values for ", workers, " workers (give one, or one per worker)"));
  if (out.size() == 1) out.assign(static_cast<size_t>(workers), out[0]);
  return out;
}

}  // namespace accullm::sharding
