// The AVX2 integer-dot kernel with 32-bit accumulation (low_bit_int8_kernels.h) against the
// 16-bit one AXE packs allow (low_bit_axe16_kernels.h), on TinyLlama's gate/up shape
// (in 2048, out 5632), 4-bit codes with integer zero points whose groups keep AXE's 16-bit
// L1 budget (Σ|code − zero| ≤ 255, as `quantize --accumulator-bits 16` writes them),
// single-threaded, activation quantization included. Args: group, rows (1 = decode,
// 64 = prefill), path (0 = 32-bit, 1 = 16-bit wrapped (what runs), 2 = 16-bit signed
// weights (vpsignb)). Run with --benchmark_enable_random_interleaving=true
// --benchmark_repetitions=5: the machine is shared and noisy, so compare ratios within a run.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/low_bit_axe16_kernels.h"
#include "kernels/cpu/low_bit_int8_kernels.h"

namespace accullm::kernels {
namespace {

struct AxeMatrix {
  std::vector<uint8_t> codes, zeros;
  std::vector<uint16_t> scales;
  LowBitMatrix m;
};

AxeMatrix MakeAxeMatrix(int64_t in, int64_t out, int64_t group, std::mt19937& rng) {
  const int64_t groups = in / group;
  const int64_t budget = 255;  // AxeL1Budget(16)
  AxeMatrix w;
  w.codes.assign(static_cast<size_t>(out * CodeRowBytes(in, 4)), 0);
  std::uniform_int_distribution<int> zero(6, 9);
  std::normal_distribution<float> normal(0.f, 2.f);
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t g = 0; g < groups; ++g) {
      const int z = zero(rng);
      w.zeros.push_back(static_cast<uint8_t>(z));
      int64_t left = budget;
      for (int64_t i = g * group; i < (g + 1) * group; ++i) {
        int v = std::clamp(static_cast<int>(std::lround(normal(rng))), -z, 15 - z);
        v = static_cast<int>(std::clamp<int64_t>(v, -left, left));
        left -= std::abs(v);
        WriteCode(w.codes.data() + o * CodeRowBytes(in, 4), i, 4, z + v);
      }
    }
  }
  for (int64_t i = 0; i < out * groups; ++i) w.scales.push_back(F32ToF16(0.01f));
  w.m.codes = w.codes.data();
  w.m.scales = w.scales.data();
  w.m.zeros = w.zeros.data();
  w.m.out = out;
  w.m.in = in;
  w.m.group = group;
  w.m.bits = 4;
  w.m.zero_frac_bits = 0;
  return w;
}

void BM_Axe16(benchmark::State& state) {
  const int64_t group = state.range(0), n = state.range(1), in = 2048, out = 5632;
  const int path = static_cast<int>(state.range(2));
  std::mt19937 rng(1);
  const AxeMatrix w = MakeAxeMatrix(in, out, group, rng);
  const LowBitTiles tiles = TileLowBitMatrix(w.m, {.planes = false});  // what the 16-bit kernel reads
  if (!Axe16Fits(tiles)) {
    state.SkipWithError("matrix breaks the 16-bit bound");
    return;
  }
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(in * n)), y(static_cast<size_t>(out * n));
  for (auto& v : x) v = normal(rng);
  Int8Activations xq;
  std::vector<int32_t> lanes;
  for (auto _ : state) {
    QuantizeInt8Blocks(x.data(), n, in, group, nullptr, xq);
    if (path == 1) Axe16LaneSums(xq, lanes);  // part of the wrapped kernel's cost
    const bool ran = path == 0
                         ? LowBitInt8RowsAvx2(tiles, xq, 0, tiles.tiles, y.data(), out)
                         : LowBitInt8RowsAxe16Avx2(tiles, xq, lanes.data(), 0, tiles.tiles, y.data(), out,
                                                   path == 1 ? Axe16Variant::kWrapped : Axe16Variant::kSignedWeights);
    if (!ran) {
      state.SkipWithError("this CPU lacks AVX2");
      break;
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(tiles.bytes()));
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * in * out * n * state.iterations(), benchmark::Counter::kIsRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_Axe16)->ArgNames({"group", "rows", "path"})->ArgsProduct({{32, 64, 128}, {1, 64}, {0, 1, 2}});

}  // namespace
}  // namespace accullm::kernels

BENCHMARK_MAIN();
