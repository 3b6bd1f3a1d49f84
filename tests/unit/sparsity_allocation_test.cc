// The per-layer sparsity search of `quantize --sparsity auto` (quant/sparsity_allocation.h),
// against cost functions whose best allocation is known.
#include "quant/sparsity_allocation.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace accullm::quant {
namespace {

// KL added by layer l at share s: weight[l]·s², summed over layers (additive, as measured on
// the fixture), top-1 falling with the KL.
struct AdditiveCost {
  std::vector<double> weight;
  double dense_kl = 0.001;
  double interaction = 0;  // extra KL when several layers skip at once (breaks additivity)
  int calls = 0;
  absl::StatusOr<SparsityCost> operator()(const std::vector<double>& t) {
    ++calls;
    double kl = dense_kl, sparse_layers = 0, skipped = 0;
    for (size_t l = 0; l < t.size(); ++l) {
      kl += weight[l] * t[l] * t[l];
      sparse_layers += t[l] > 0 ? 1 : 0;
      skipped += t[l] / static_cast<double>(t.size());
    }
    if (sparse_layers > 1) kl += interaction * (sparse_layers - 1);
    return SparsityCost{.kl = kl, .top1 = 1 - 10 * (kl - dense_kl), .skipped = skipped};
  }
};

TEST(SparsityAllocationTest, GivesTheCheapLayersMoreAndStaysWithinTheBudget) {
  AdditiveCost cost{.weight = {0.004, 0.001, 0.001, 0.016}};
  const SparsityCost dense{.kl = cost.dense_kl, .top1 = 1};
  const SparsityBudget budget{.max_kl = 0.00125, .min_top1 = 0};
  auto a = AllocateSparsity(4, dense, budget, [&](const auto& t) { return cost(t); });
  ASSERT_TRUE(a.ok()) << a.status();
  const std::vector<double>& t = a->targets;
  ASSERT_EQ(t.size(), 4u);
  EXPECT_GT(t[1], t[0]);  // four times cheaper: more skipped
  EXPECT_GT(t[0], t[3]);
  EXPECT_DOUBLE_EQ(t[1], t[2]);
  EXPECT_LE(a->cost.kl, budget.max_kl);
  // The optimum of sum w·s² = 0.00025 with equal marginal cost w·s: s ∝ 1/w. Greedy on a 0.05
  // grid lands within a step of it on each layer.
  const double k = std::sqrt(0.00025 / (1 / 0.004 + 2 / 0.001 + 1 / 0.016));
  const std::vector<double> best = {k / 0.004, k / 0.001, k / 0.001, k / 0.016};
  for (size_t l = 0; l < 4; ++l) EXPECT_NEAR(t[l], std::min(0.9, best[l]), 0.05 + 1e-9) << l;
  EXPECT_EQ(a->measurements, cost.calls);
}

TEST(SparsityAllocationTest, BacksOffWhenTheLayersDoNotAddUp) {
  // Each layer alone is cheap, together they cost more than the sum: the whole allocation
  // breaks the budget and the search must fall back to a prefix that keeps it.
  AdditiveCost cost{.weight = {0.001, 0.001, 0.001}, .interaction = 0.0001};
  const SparsityCost dense{.kl = cost.dense_kl, .top1 = 1};
  const SparsityBudget budget{.max_kl = 0.0013, .min_top1 = 0};
  auto a = AllocateSparsity(3, dense, budget, [&](const auto& t) { return cost(t); });
  ASSERT_TRUE(a.ok()) << a.status();
  auto again = cost(a->targets);
  EXPECT_LE(again->kl, budget.max_kl);
  EXPECT_NEAR(a->cost.kl, again->kl, 1e-15);  // the reported cost is the allocation's own
  double sum = 0;
  for (double s : a->targets) sum += s;
  EXPECT_GT(sum, 0);
  // Without the interaction, the same budget allows strictly more.
  AdditiveCost plain{.weight = {0.001, 0.001, 0.001}};
  auto b = AllocateSparsity(3, dense, budget, [&](const auto& t) { return plain(t); });
  ASSERT_TRUE(b.ok());
  double sum_b = 0;
  for (double s : b->targets) sum_b += s;
  EXPECT_GT(sum_b, sum);
}

TEST(SparsityAllocationTest, TheTop1BudgetBindsToo) {
  AdditiveCost cost{.weight = {0.001, 0.001}};
  const SparsityCost dense{.kl = cost.dense_kl, .top1 = 1};
  auto loose = AllocateSparsity(2, dense, {.max_kl = 0.0012, .min_top1 = 0}, [&](const auto& t) { return cost(t); });
  auto tight =
      AllocateSparsity(2, dense, {.max_kl = 0.0012, .min_top1 = 1 - 0.0005}, [&](const auto& t) { return cost(t); });
  ASSERT_TRUE(loose.ok() && tight.ok());
  EXPECT_GE(tight->cost.top1, 1 - 0.0005);
  EXPECT_LT(tight->targets[0] + tight->targets[1], loose->targets[0] + loose->targets[1]);
}

TEST(SparsityAllocationTest, NothingFitsLeavesTheModelDense) {
  AdditiveCost cost{.weight = {1.0, 1.0}};
  const SparsityCost dense{.kl = cost.dense_kl, .top1 = 1};
  auto a = AllocateSparsity(2, dense, {.max_kl = 0.0010001, .min_top1 = 0}, [&](const auto& t) { return cost(t); });
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->targets, std::vector<double>(2, 0.0));
  EXPECT_EQ(a->cost.kl, dense.kl);
  // A failing measurement is the search's failure, not a silent dense pack.
  auto failed = AllocateSparsity(2, dense, {.max_kl = 1, .min_top1 = 0},
                                 [](const auto&) -> absl::StatusOr<SparsityCost> { return absl::DataLossError("x"); });
  EXPECT_FALSE(failed.ok());
  EXPECT_FALSE(AllocateSparsity(0, dense, {.max_kl = 1}, [&](const auto& t) { return cost(t); }).ok());
}

}  // namespace
}  // namespace accullm::quant
