// The INT8 activation quantizer per rounding mode (kernels/cpu/int8_activations.h): one row
// (decode) of width 2048 and 5632 (TinyLlama's hidden and MLP widths), group 32. Nearest runs
// the vectorized path, the other modes scalar code: what each costs per value, beside the
// integer dot product it feeds (quantized_linear_bench: ~5.8M multiply-adds per 2048×2816 row).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/cpu/int8_activations.h"

namespace accullm::kernels {
namespace {

void BM_QuantizeInt8Blocks(benchmark::State& state) {
  const int64_t in = state.range(0);
  ActQuantConfig mode;
  mode.rounding = state.range(1) != 0 ? ActRounding::kStochastic : ActRounding::kNearest;
  mode.error_feedback = state.range(2) != 0;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(in));
  for (auto& v : x) v = normal(rng);
  Int8Activations xq;
  for (auto _ : state) {
    QuantizeInt8Blocks(x.data(), 1, in, 32, nullptr, xq, mode);
    benchmark::DoNotOptimize(xq.q.data());
  }
  state.SetItemsProcessed(state.iterations() * in);
  state.SetLabel(std::string(ActRoundingName(mode.rounding)) + (mode.error_feedback ? "+feedback" : ""));
}
BENCHMARK(BM_QuantizeInt8Blocks)->ArgsProduct({{2048, 5632}, {0, 1}, {0, 1}});

}  // namespace
}  // namespace accullm::kernels

BENCHMARK_MAIN();
