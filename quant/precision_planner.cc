#include "quant/precision_planner.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "quant/evaluation.h"

namespace accullm::quant {

namespace {

// Mean KL(P_ref || P_model) over the second half of each chunk, with the reference
// distributions computed once beforehand. Only blocks from `layer` on differ from full
// precision, so the run starts from each chunk's hidden states at that block's input.
absl::StatusOr<double> MeanKlFrom(model::Transformer& model, int64_t layer,
                                  const std::vector<std::vector<float>>& hidden_in,
                                  const std::vector<std::vector<double>>& ref_logprobs) {
  const int64_t vocab = model.config().vocab_size, layers = model.config().num_layers;
  double total = 0;
  int64_t count = 0;
  size_t k = 0;
  std::vector<double> lp;
  std::vector<float> hidden, logits;
  for (const auto& h : hidden_in) {
    const int64_t n = static_cast<int64_t>(h.size()) / model.config().hidden_size;
    hidden = h;
    logits.resize(static_cast<size_t>(n * vocab));
    model::KvCache cache = model.NewCache(n);
    RETURN_IF_ERROR(model.RunLayers(layer, layers, hidden.data(), {model::BatchSegment{&cache, n}}));
    model.Head(hidden.data(), n, logits.data());
    for (int64_t j = n / 2; j < n - 1; ++j, ++k) {
      LogSoftmax(logits.data() + j * vocab, vocab, lp);
      total += KlDivergence(ref_logprobs[k], lp);
      ++count;
    }
  }
  return count > 0 ? total / count : 0.0;
}

}  // namespace

double KlScaleForBits(int bits) {
  if (bits >= 16) return 0.0;
  if (bits <= 3) return 4.5;
  return std::pow(0.25, bits - 4);
}

double LinearSensitivity::KlAt(int bits) const { return kl * KlScaleForBits(bits); }

absl::StatusOr<std::vector<LayerSensitivity>> MeasureSensitivity(
    model::Transformer& model, const CalibrationStats& stats, const ModelQuantOptions& options,
    const std::vector<std::vector<int32_t>>& chunks, ThreadPool& pool, const ProgressFn& progress, bool per_linear) {
  const model::ModelConfig& c = model.config();
  const int64_t vocab = c.vocab_size;
  // Reference distributions of the full-precision model.
  std::vector<std::vector<double>> ref;
  for (const auto& chunk : chunks) {
    const int64_t n = static_cast<int64_t>(chunk.size());
    std::vector<float> logits(static_cast<size_t>(n * vocab));
    model::KvCache cache = model.NewCache(n);
    RETURN_IF_ERROR(model.Forward(chunk.data(), n, cache, logits.data(), true));
    for (int64_t j = n / 2; j < n - 1; ++j) {
      ref.emplace_back();
      LogSoftmax(logits.data() + j * vocab, vocab, ref.back());
    }
  }
  // Each chunk's hidden states at the input of block l (full precision), advanced block by block.
  std::vector<std::vector<float>> hidden_in;
  for (const auto& chunk : chunks) {
    hidden_in.emplace_back(chunk.size() * static_cast<size_t>(c.hidden_size));
    RETURN_IF_ERROR(model.Embed(chunk.data(), static_cast<int64_t>(chunk.size()), hidden_in.back().data()));
  }
  std::vector<LayerSensitivity> out;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    if (progress) progress(l, c.num_layers, absl::StrCat("sensitivity of layer ", l));
    if (l > 0) {
      for (size_t i = 0; i < chunks.size(); ++i) {
        const int64_t n = static_cast<int64_t>(chunks[i].size());
        model::KvCache cache = model.NewCache(n);
        RETURN_IF_ERROR(model.RunLayers(l - 1, l, hidden_in[i].data(), {model::BatchSegment{&cache, n}}));
      }
    }
    LayerSensitivity s;
    s.layer = l;
    double max_abs = 0;
    for (auto site : {model::LinearSite::kAttnIn, model::LinearSite::kAttnOut, model::LinearSite::kMlpIn,
                      model::LinearSite::kMlpDown}) {
      if (const SiteStats* st = stats.Get(l, site))
        for (float a : st->absmax) max_abs = std::max<double>(max_abs, a);
    }
    s.outlier_score = max_abs / options.outliers.threshold;
    QuantizedMatrices mats;
    ASSIGN_OR_RETURN(auto displaced, QuantizeBlock(model, l, stats, options, pool, &mats));
    for (const auto& op : displaced) s.fp16_bytes += op->in_features() * op->out_features() * 2;
    for (const auto& [name, m] : mats) s.four_bit_bytes += m->StoredBytes();
    auto kl = MeanKlFrom(model, l, hidden_in, ref);
    // Each linear alone: the other six go back to full precision for the measurement.
    model::TransformerLayer& layer = model.layer(l);
    const auto& bl = BlockLinears();
    for (int i = 0; per_linear && kl.ok() && i < sharding::kBlockLinears; ++i) {
      LinearSensitivity ls;
      ls.linear = i;
      const model::LinearOp& fp = *displaced[i];
      ls.params = fp.in_features() * fp.out_features();
      ls.fp16_bytes = ls.params * 2;
      ls.four_bit_bytes = mats.at(LinearPrefix(l, bl[i]))->StoredBytes();
      for (int j = 0; j < sharding::kBlockLinears; ++j)
        if (j != i) std::swap(layer.*bl[j].op, displaced[j]);
      auto lkl = MeanKlFrom(model, l, hidden_in, ref);
      for (int j = 0; j < sharding::kBlockLinears; ++j)
        if (j != i) std::swap(layer.*bl[j].op, displaced[j]);
      if (!lkl.ok()) {
        kl = lkl.status();
        break;
      }
      ls.kl = *lkl;
      s.linears.push_back(ls);
    }
    RestoreBlock(model, l, std::move(displaced));
    if (!kl.ok()) return kl.status();
    s.kl = *kl;
    out.push_back(s);
  }
  if (progress) progress(c.num_layers, c.num_layers, "sensitivity done");
  return out;
}

double AverageBits(const std::vector<LayerSensitivity>& sens, const sharding::PrecisionPlan& plan) {
  double bits = 0, weights = 0;
  for (size_t l = 0; l < sens.size(); ++l) {
    weights += sens[l].fp16_bytes / 2.0;
    const bool fp16 = plan.layers[l] == sharding::LayerPrecision::kFp16;
    if (fp16 || sens[l].linears.empty()) {
      bits += 8.0 * (fp16 ? sens[l].fp16_bytes : sens[l].four_bit_bytes);
      continue;
    }
    for (const auto& ls : sens[l].linears) {
      const int64_t layer = static_cast<int64_t>(l);
      bits += 8.0 * ls.BytesAt(plan.StorageBits(layer, ls.linear));
    }
  }
  return weights > 0 ? bits / weights : 0;
}

double AtMost4BitShare(const std::vector<LayerSensitivity>& sens, const sharding::PrecisionPlan& plan) {
  double at_most_4 = 0, all = 0;
  for (size_t l = 0; l < sens.size(); ++l) {
    all += sens[l].fp16_bytes / 2.0;
    if (plan.layers[l] == sharding::LayerPrecision::kFp16) continue;
    if (sens[l].linears.empty()) {
      at_most_4 += sens[l].fp16_bytes / 2.0;
      continue;
    }
    for (const auto& ls : sens[l].linears) {
      const int64_t layer = static_cast<int64_t>(l);
      if (plan.StorageBits(layer, ls.linear) <= 4) at_most_4 += static_cast<double>(ls.params);
    }
  }
  return all > 0 ? at_most_4 / all : 0;
}

namespace {

// Bits budgets with several widths: a multiple-choice knapsack over linears solved by its
// Lagrangian relaxation (predicted KL is close to additive over linears), then filled greedily.
absl::StatusOr<sharding::PrecisionPlan> ChooseWidths(const std::vector<LayerSensitivity>& sens,
                                                     const PlanBudget& budget) {
  const int64_t n = static_cast<int64_t>(sens.size());
  std::vector<int> options = budget.widths;
  for (int w : options) {
    if (w < 3 || w > 8) return absl::InvalidArgumentError(absl::StrCat("code width ", w, " (3 to 8 supported)"));
  }
  options.push_back(16);  // FP16
  std::sort(options.begin(), options.end());
  options.erase(std::unique(options.begin(), options.end()), options.end());
  struct Item {
    int64_t layer;
    const LinearSensitivity* s;
    size_t choice = 0;  // index into options
  };
  std::vector<Item> items;
  double weights = 0;
  for (const auto& ls : sens) {
    if (ls.linears.size() != static_cast<size_t>(sharding::kBlockLinears))
      return absl::FailedPreconditionError("a per-linear budget needs per-linear sensitivities");
    for (const auto& s : ls.linears) {
      items.push_back({ls.layer, &s});
      weights += static_cast<double>(s.params);
    }
  }
  const double budget_bits = budget.avg_bits * weights;
  auto total_bits = [&] {
    double b = 0;
    for (const Item& it : items) b += 8.0 * static_cast<double>(it.s->BytesAt(options[it.choice]));
    return b;
  };
  auto choose = [&](double lambda) {
    for (Item& it : items) {
      double best = INFINITY;
      for (size_t k = 0; k < options.size(); ++k) {
        const double cost = it.s->KlAt(options[k]) + lambda * 8.0 * static_cast<double>(it.s->BytesAt(options[k]));
        if (cost < best) {
          best = cost;
          it.choice = k;
        }
      }
    }
  };
  // With a huge λ every linear takes its cheapest width: if that does not fit, nothing does.
  choose(1e30);
  if (total_bits() > budget_bits) {
    return absl::InvalidArgumentError(absl::StrCat("--avg-bits ", budget.avg_bits, " is below the narrowest plan's ",
                                                   total_bits() / weights, " bits"));
  }
  double lo = -40, hi = 30;  // log10 λ: the smallest λ whose choice fits
  for (int iter = 0; iter < 200; ++iter) {
    const double mid = 0.5 * (lo + hi);
    choose(std::pow(10.0, mid));
    (total_bits() > budget_bits ? lo : hi) = mid;
  }
  choose(std::pow(10.0, hi));
  // What the relaxation leaves: single upgrades, most KL saved per extra bit first.
  for (;;) {
    const double used = total_bits();
    Item* best_item = nullptr;
    size_t best_choice = 0;
    double best_gain = 0;
    for (Item& it : items) {
      const double kl_now = it.s->KlAt(options[it.choice]);
      const double bits_now = 8.0 * static_cast<double>(it.s->BytesAt(options[it.choice]));
      for (size_t k = it.choice + 1; k < options.size(); ++k) {
        const double extra = 8.0 * static_cast<double>(it.s->BytesAt(options[k])) - bits_now;
        const double saved = kl_now - it.s->KlAt(options[k]);
        if (extra <= 0 || saved <= 0 || used + extra > budget_bits) continue;
        if (saved / extra > best_gain) {
          best_gain = saved / extra;
          best_item = &it;
          best_choice = k;
        }
      }
    }
    if (best_item == nullptr) break;
    best_item->choice = best_choice;
  }
  sharding::PrecisionPlan plan = sharding::PrecisionPlan::AllLowBit(n);
  for (const Item& it : items) {
    const int bits = options[it.choice];
    if (bits == 16) {
      plan.fp16_linears.insert({it.layer, it.s->linear});
    } else if (bits != 4) {
      plan.linear_bits[{it.layer, it.s->linear}] = bits;
    }
  }
  return plan;
}

// Linear-granularity plans: greedy by KL saved per unit of cost, keeping every linear that
// still fits (a knapsack heuristic; measured KL is close to additive over linears).
absl::StatusOr<sharding::PrecisionPlan> ChooseLinears(const std::vector<LayerSensitivity>& sens,
                                                      const PlanBudget& budget) {
  const int64_t n = static_cast<int64_t>(sens.size());
  sharding::PrecisionPlan plan = sharding::PrecisionPlan::AllLowBit(n);
  struct Item {
    int64_t layer;
    const LinearSensitivity* s;
    double cost;
  };
  std::vector<Item> items;
  double total_params = 0;
  for (const auto& ls : sens) {
    if (ls.linears.size() != static_cast<size_t>(sharding::kBlockLinears))
      return absl::FailedPreconditionError("a per-linear budget needs per-linear sensitivities");
    for (const auto& s : ls.linears) {
      const double cost =
          budget.fp16_share > 0 ? static_cast<double>(s.params) : 8.0 * (s.fp16_bytes - s.four_bit_bytes);
      items.push_back({ls.layer, &s, std::max(cost, 1.0)});
      total_params += static_cast<double>(s.params);
    }
  }
  std::stable_sort(items.begin(), items.end(),
                   [](const Item& a, const Item& b) { return a.s->kl / a.cost > b.s->kl / b.cost; });
  if (budget.avg_bits > 0 && AverageBits(sens, plan) > budget.avg_bits) {
    return absl::InvalidArgumentError(absl::StrCat("--avg-bits ", budget.avg_bits, " is below the all-INT4 plan's ",
                                                   AverageBits(sens, plan), " bits"));
  }
  double fp16_params = 0;
  for (const Item& it : items) {
    if (budget.fp16_share > 0) {
      if (fp16_params + static_cast<double>(it.s->params) > budget.fp16_share * total_params + 0.5) continue;
      fp16_params += static_cast<double>(it.s->params);
      plan.fp16_linears.insert({it.layer, it.s->linear});
    } else {
      plan.fp16_linears.insert({it.layer, it.s->linear});
      if (AverageBits(sens, plan) > budget.avg_bits) plan.fp16_linears.erase({it.layer, it.s->linear});
    }
  }
  // A block whose seven linears all stay FP16 is an FP16 block.
  for (int64_t l = 0; l < n; ++l) {
    int count = 0;
    for (int i = 0; i < sharding::kBlockLinears; ++i) count += plan.fp16_linears.count({l, i}) ? 1 : 0;
    if (count < sharding::kBlockLinears) continue;
    plan.layers[l] = sharding::LayerPrecision::kFp16;
    for (int i = 0; i < sharding::kBlockLinears; ++i) plan.fp16_linears.erase({l, i});
  }
  return plan;
}

}  // namespace

absl::StatusOr<sharding::PrecisionPlan> ChoosePlan(const std::vector<LayerSensitivity>& sens,
                                                   const PlanBudget& budget) {
  const int64_t n = static_cast<int64_t>(sens.size());
  if (budget.fp16_share > 0 || (budget.avg_bits > 0 && !sens.empty() && !sens[0].linears.empty())) {
    if (budget.fp16_share > 1) return absl::InvalidArgumentError("the FP16 share must be within [0, 1]");
    if (budget.fp16_share <= 0 && budget.widths != std::vector<int>{4}) return ChooseWidths(sens, budget);
    return ChooseLinears(sens, budget);
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    if (sens[a].kl != sens[b].kl) return sens[a].kl > sens[b].kl;
    return sens[a].outlier_score > sens[b].outlier_score;
  });
  sharding::PrecisionPlan plan = sharding::PrecisionPlan::AllLowBit(n);
  if (budget.fp16_layers >= 0) {
    if (budget.fp16_layers > n)
      return absl::InvalidArgumentError(
          absl::StrCat("--fp16-layers ", budget.fp16_layers, " exceeds the ", n, " layers"));
    for (int64_t i = 0; i < budget.fp16_layers; ++i) plan.layers[order[i]] = sharding::LayerPrecision::kFp16;
    return plan;
  }
  if (budget.avg_bits > 0) {
    if (AverageBits(sens, plan) > budget.avg_bits) {
      return absl::InvalidArgumentError(absl::StrCat("--avg-bits ", budget.avg_bits, " is below the all-INT4 plan's ",
                                                     AverageBits(sens, plan), " bits"));
    }
    for (int64_t i = 0; i < n; ++i) {
      plan.layers[order[i]] = sharding::LayerPrecision::kFp16;
      if (AverageBits(sens, plan) > budget.avg_bits) {
        plan.layers[order[i]] = sharding::LayerPrecision::kLowBit;
        break;
      }
    }
    return plan;
  }
  return absl::InvalidArgumentError("no precision budget given");
}

}  // namespace accullm::quant
