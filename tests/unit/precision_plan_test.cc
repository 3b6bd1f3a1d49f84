// Precision plans: explicit specs (blocks and single linears), and the measured planner's
// budgets — blocks by sensitivity, linears by KL saved per weight or per extra bit — on
// synthetic sensitivities whose best answer is known.
#include "sharding/precision_plan.h"

#include <gtest/gtest.h>

#include "quant/precision_planner.h"

namespace accullm::sharding {
namespace {

TEST(PrecisionPlan, ParsesBlocksAndSingleLinears) {
  auto p = PrecisionPlan::FromFp16Spec("last:1,2.down,3.self_attn.v_proj,7.q", 8);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->layers[7], LayerPrecision::kFp16);
  EXPECT_EQ(p->CountLowBit(), 7);
  EXPECT_FALSE(p->LinearIsLowBit(2, 6));
  EXPECT_FALSE(p->LinearIsLowBit(3, 2));
  EXPECT_TRUE(p->LinearIsLowBit(2, 0));
  EXPECT_FALSE(p->LinearIsLowBit(7, 1));  // FP16 block: every linear
  // 7.q is dropped: block 7 is FP16 anyway.
  EXPECT_EQ(p->fp16_linears.size(), 2u);
  EXPECT_EQ(p->Fp16LinearNames(),
            (std::vector<std::string>{"model.layers.2.mlp.down_proj", "model.layers.3.self_attn.v_proj"}));
  EXPECT_EQ(p->Describe(), "fp16: [7] int4: [0,1,2,3,4,5,6] fp16 linears: [2.down,3.v]");
}

TEST(PrecisionPlan, RefusesBadLinearSpecs) {
  for (const char* bad : {"2.dwn", "9.down", "x.down", "-1.q", "2."}) {
    auto p = PrecisionPlan::FromFp16Spec(bad, 8);
    EXPECT_FALSE(p.ok()) << bad;
  }
  auto p = PrecisionPlan::FromFp16Spec("2.dwn", 8);
  EXPECT_NE(p.status().message().find("unknown block linear \"dwn\""), absl::string_view::npos) << p.status();
}

// Two blocks; linear i of block l has `params[i]` weights and KL `kl[l][i]`.
std::vector<quant::LayerSensitivity> Synthetic(const std::vector<std::array<double, kBlockLinears>>& kl) {
  const std::array<int64_t, kBlockLinears> params = {100, 50, 50, 100, 300, 300, 300};
  std::vector<quant::LayerSensitivity> out;
  for (size_t l = 0; l < kl.size(); ++l) {
    quant::LayerSensitivity s;
    s.layer = static_cast<int64_t>(l);
    for (int i = 0; i < kBlockLinears; ++i) {
      quant::LinearSensitivity ls;
      ls.linear = i;
      ls.kl = kl[l][i];
      ls.params = params[i];
      ls.fp16_bytes = params[i] * 2;
      ls.four_bit_bytes = params[i] / 2 + params[i] / 16;  // 4.5 bits
      s.kl += ls.kl;
      s.fp16_bytes += ls.fp16_bytes;
      s.four_bit_bytes += ls.four_bit_bytes;
      s.linears.push_back(ls);
    }
    out.push_back(s);
  }
  return out;
}

TEST(PrecisionPlanner, ShareBudgetKeepsMostKlPerWeight) {
  // 2400 weights, 25% = 600. Per weight: 1.v (0.5/50) and 0.k (0.2/50) lead, then 1.down
  // (0.9/300); 0.down (0.6/300) would overflow the budget (50+50+300+300 > 600) and is
  // skipped; 0.q (0.1/100), then 0.v and 1.k (0.01/50) fill it to exactly 600.
  auto sens = Synthetic({{0.1, 0.2, 0.01, 0.01, 0.05, 0.05, 0.6}, {0.01, 0.01, 0.5, 0.01, 0.05, 0.05, 0.9}});
  quant::PlanBudget b;
  b.fp16_share = 0.25;
  auto plan = quant::ChoosePlan(sens, b);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->Describe(), "fp16: [] int4: [0,1] fp16 linears: [0.q,0.k,0.v,1.k,1.v,1.down]");
  EXPECT_NEAR(quant::AtMost4BitShare(sens, *plan), 0.75, 1e-9);
  EXPECT_GE(quant::AtMost4BitShare(sens, *plan), 0.75);
}

TEST(PrecisionPlanner, BitsBudgetIsRespectedAndAFullBlockBecomesFp16) {
  auto sens = Synthetic({{1, 1, 1, 1, 1, 1, 1}, {0.001, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001}});
  quant::PlanBudget b;
  b.widths = {4};     // FP16 or INT4 only
  b.avg_bits = 10.3;  // block 0 all FP16 (16 bits on half the weights) + block 1 INT4 (4.5) = 10.25
  auto plan = quant::ChoosePlan(sens, b);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->Describe(), "fp16: [0] int4: [1]");
  EXPECT_LE(quant::AverageBits(sens, *plan), 10.3);
  b.avg_bits = 4.0;  // below all-INT4
  EXPECT_FALSE(quant::ChoosePlan(sens, b).ok());
}

TEST(PrecisionPlanner, BitsBudgetMovesBitsFromInsensitiveToSensitiveLinears) {
  // KL proportional to the weights, block 0 1000x more sensitive per weight. At the all-INT4
  // budget the best plan takes a bit from every linear of block 1 (3 bits: KL x4.5 on tiny
  // values) and gives it to block 0 (5 bits: KL /4): predicted KL 12·0.25 + 0.012·4.5
  // instead of 12.012.
  auto sens = Synthetic({{1, 0.5, 0.5, 1, 3, 3, 3}, {0.001, 0.0005, 0.0005, 0.001, 0.003, 0.003, 0.003}});
  quant::PlanBudget b;
  b.avg_bits = quant::AverageBits(sens, PrecisionPlan::AllLowBit(2));
  auto plan = quant::ChoosePlan(sens, b);
  ASSERT_TRUE(plan.ok()) << plan.status();
  double kl = 0;
  for (int i = 0; i < kBlockLinears; ++i) {
    EXPECT_EQ(plan->LinearBits(0, i), 5) << kBlockLinearShortNames[i];
    EXPECT_EQ(plan->LinearBits(1, i), 3) << kBlockLinearShortNames[i];
    kl += sens[0].linears[i].KlAt(5) + sens[1].linears[i].KlAt(3);
  }
  EXPECT_TRUE(plan->fp16_linears.empty());
  EXPECT_LE(quant::AverageBits(sens, *plan), b.avg_bits + 1e-12);
  EXPECT_NEAR(kl, 12 * 0.25 + 0.012 * 4.5, 1e-12);
  EXPECT_EQ(quant::AtMost4BitShare(sens, *plan), 0.5);  // block 1's 3-bit half
  // More bits: the sensitive block climbs further (FP16 is never worth it over 8 bits).
  b.avg_bits = 7.0;
  plan = quant::ChoosePlan(sens, b);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_LE(quant::AverageBits(sens, *plan), 7.0);
  for (int i = 0; i < kBlockLinears; ++i) EXPECT_GE(plan->LinearBits(0, i), 6) << kBlockLinearShortNames[i];
  EXPECT_TRUE(plan->fp16_linears.empty());
  // Below the narrowest plan (every linear at 3 bits) nothing fits.
  b.avg_bits = 3.0;
  auto refused = quant::ChoosePlan(sens, b);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("below the narrowest plan"), absl::string_view::npos) << refused.status();
  // Widths outside 3..8 are refused.
  b.avg_bits = 4.5;
  b.widths = {2, 4};
  EXPECT_FALSE(quant::ChoosePlan(sens, b).ok());
}

TEST(PrecisionPlanner, BlockBudgetStillPicksWholeBlocks) {
  auto sens = Synthetic({{0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}, {0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2}});
  quant::PlanBudget b;
  b.fp16_layers = 1;
  auto plan = quant::ChoosePlan(sens, b);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->Describe(), "fp16: [1] int4: [0]");
}

}  // namespace
}  // namespace accullm::sharding
