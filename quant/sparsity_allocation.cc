#include "quant/sparsity_allocation.h"

#include <cmath>

#include "absl/status/status.h"
#include "common/status.h"

namespace accullm::quant {

namespace {

bool Within(const SparsityCost& c, const SparsityBudget& b) { return c.kl <= b.max_kl && c.top1 >= b.min_top1; }

}  // namespace

absl::StatusOr<SparsityAllocation> AllocateSparsity(int64_t layers, const SparsityCost& dense,
                                                    const SparsityBudget& budget, const SparsityMeasure& measure,
                                                    const SparsityReport& report, double step, double max_share) {
  if (layers <= 0 || !(step > 0) || !(max_share > 0) || max_share >= 1)
    return absl::InvalidArgumentError("sparsity allocation: needs layers > 0 and 0 < step, max_share < 1");
  SparsityAllocation out;
  out.targets.assign(static_cast<size_t>(layers), 0.0);
  out.cost = dense;
  const int levels = static_cast<int>(std::floor(max_share / step + 1e-9));
  const double kl_room = budget.max_kl - dense.kl;
  if (levels < 1 || !(kl_room > 0)) return out;
  // Rounded to 1e-9: 3 × 0.1 is 0.30000000000000004, and the manifest shows these shares.
  auto share = [&](int level) { return std::round(level * step * 1e9) / 1e9; };

  // 1. Each layer alone: added[l][k] = KL added at level k + 1, up to the first level that alone
  // breaks the budget (not kept).
  std::vector<std::vector<double>> added(static_cast<size_t>(layers));
  for (int64_t l = 0; l < layers; ++l) {
    std::vector<double> targets(static_cast<size_t>(layers), 0.0);
    for (int k = 1; k <= levels; ++k) {
      targets[static_cast<size_t>(l)] = share(k);
      ASSIGN_OR_RETURN(SparsityCost c, measure(targets));
      ++out.measurements;
      const bool within = Within(c, budget);
      if (report) report("layer alone", targets, c, within);
      if (!within) break;
      added[static_cast<size_t>(l)].push_back(std::max(0.0, c.kl - dense.kl));
    }
  }

  // 2. Greedy by the least KL added per step of share, within the summed budget.
  std::vector<int> level(static_cast<size_t>(layers), 0);
  std::vector<int64_t> raised;  // the order of the raises, for step 3
  double summed = 0;
  for (;;) {
    int64_t best = -1;
    double best_cost = 0;
    for (int64_t l = 0; l < layers; ++l) {
      const auto& a = added[static_cast<size_t>(l)];
      const int k = level[static_cast<size_t>(l)];
      if (k >= static_cast<int>(a.size())) continue;
      const double increment = a[static_cast<size_t>(k)] - (k > 0 ? a[static_cast<size_t>(k - 1)] : 0.0);
      if (summed + increment > kl_room) continue;
      if (best < 0 || increment < best_cost) {
        best = l;
        best_cost = increment;
      }
    }
    if (best < 0) break;
    summed += best_cost;
    ++level[static_cast<size_t>(best)];
    raised.push_back(best);
  }

  // 3. The whole allocation; if it breaks the budget, the longest prefix of the raises that
  // keeps it (binary search: cost grows along the prefix), measured.
  auto targets_after = [&](size_t raises) {
    std::vector<int> counts(static_cast<size_t>(layers), 0);
    for (size_t i = 0; i < raises; ++i) ++counts[static_cast<size_t>(raised[i])];
    std::vector<double> targets;
    for (int k : counts) targets.push_back(share(k));
    return targets;
  };
  size_t lo = 0, hi = raised.size() + 1;  // prefix lo is within (0: dense); hi and above are not
  while (hi - lo > 1) {
    const size_t mid = hi == raised.size() + 1 ? raised.size() : lo + (hi - lo) / 2;
    std::vector<double> targets = targets_after(mid);
    ASSIGN_OR_RETURN(SparsityCost c, measure(targets));
    ++out.measurements;
    const bool within = Within(c, budget);
    if (report) report("allocation", targets, c, within);
    if (within) {
      lo = mid;
      out.targets = std::move(targets);
      out.cost = c;
    } else {
      hi = mid;
    }
  }
  return out;
}

}  // namespace accullm::quant
