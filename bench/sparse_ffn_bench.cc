// FFN decode time, dense against sparse (kernels/cpu/sparse_ffn_kernels.h), on the TinyLlama
// FFN shape (hidden 2048, intermediate 5632, INT4 g32 with fractional zero points, F16
// steps), one thread, one token: gate and up (INT8 x), SiLU·up, INT8 h, down. Every iteration
// runs the FFN of kLayers layers in turn (~82 MB of dense tiles plus as much of sparse
// layouts: far more than the L3), as decode streams them. The guesser's cost is not here.
//   BM_DenseFfn/part            the tiled dense kernels (LowBitInt8Rows)
//   BM_SparseFfn/kept_pct/part/cats  the sparse kernels with a random kept set of kept_pct % of
//                               the neurons per layer (sorted, as a predictor emits them)
//   part: 0 = the whole FFN, 1 = gate + up only, 2 = down only (on the same masked h)
//   cats: 0 = a predictor's list (gate over the kept rows too; the predictor's own cost is not
//         here), 1 = CATS (gate dense over its tiles, SiLU and the threshold selection over
//         every neuron, then up over the kept rows; the kept set is the random one)
// Compare ratios measured in one interleaved run on a noisy machine:
//   build/bench/sparse_ffn_bench --benchmark_enable_random_interleaving=true
//     --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// One FFN takes the iteration time / kLayers (counter ffn_per_s: FFNs per second).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/low_bit_int8_kernels.h"
#include "kernels/cpu/low_bit_tiles.h"
#include "kernels/cpu/silu_mul_mask.h"
#include "kernels/cpu/sparse_ffn_kernels.h"
#include "kernels/cpu/sparse_ffn_layouts.h"

namespace accullm::kernels {
namespace {

constexpr int64_t kHidden = 2048, kInter = 5632, kGroup = 32, kLayers = 4;

struct OwnedMatrix {
  std::vector<uint8_t> codes, zeros;
  std::vector<uint16_t> scales;
  LowBitMatrix m;
};

OwnedMatrix RandomMatrix(int64_t out, int64_t in, std::mt19937& rng) {
  OwnedMatrix w;
  std::normal_distribution<float> normal;
  const int frac = ZeroFractionBits(4, 4);
  w.codes.resize(static_cast<size_t>(out * CodeRowBytes(in, 4)));
  w.scales.resize(static_cast<size_t>(out * in / kGroup));
  w.zeros.resize(w.scales.size());
  for (auto& c : w.codes) c = static_cast<uint8_t>(rng());
  for (auto& s : w.scales) s = F32ToF16(0.01f + 0.001f * std::abs(normal(rng)));
  for (auto& z : w.zeros) z = static_cast<uint8_t>((rng() % 16) << frac);
  w.m.codes = w.codes.data();
  w.m.scales = w.scales.data();
  w.m.zeros = w.zeros.data();
  w.m.out = out;
  w.m.in = in;
  w.m.group = kGroup;
  w.m.zero_frac_bits = frac;
  w.m.bits = 4;
  return w;
}

struct Layer {
  OwnedMatrix gate, up, down;
  LowBitTiles gate_tiles, up_tiles, down_tiles;
  SparseRowsLayout gate_rows, up_rows;
  SparseColumnsLayout down_columns;
};

const std::vector<Layer>& Layers() {
  static const auto* layers = [] {
    auto* all = new std::vector<Layer>(kLayers);
    std::mt19937 rng(1);
    for (Layer& l : *all) {
      l.gate = RandomMatrix(kInter, kHidden, rng);
      l.up = RandomMatrix(kInter, kHidden, rng);
      l.down = RandomMatrix(kHidden, kInter, rng);
      l.gate_tiles = TileLowBitMatrix(l.gate.m);
      l.up_tiles = TileLowBitMatrix(l.up.m);
      l.down_tiles = TileLowBitMatrix(l.down.m);
      l.gate_rows = MakeSparseRows(l.gate.m);
      l.up_rows = MakeSparseRows(l.up.m);
      l.down_columns = MakeSparseColumns(l.down.m);
    }
    return all;
  }();
  return *layers;
}

std::vector<float> Input(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(kHidden));
  for (auto& v : x) v = normal(rng);
  return x;
}

void BM_DenseFfn(benchmark::State& state) {
  const int part = static_cast<int>(state.range(0));
  const auto& layers = Layers();
  const std::vector<float> x = Input(2);
  std::vector<float> gate(kInter), up(kInter), h(kInter), y(kHidden);
  Int8Activations xq, hq;
  QuantizeInt8Blocks(x.data(), 1, kHidden, kGroup, nullptr, xq);
  for (auto _ : state) {
    for (const Layer& l : layers) {
      if (part != 2) {
        QuantizeInt8Blocks(x.data(), 1, kHidden, kGroup, nullptr, xq);
        LowBitInt8Rows(l.gate.m, l.gate_tiles, xq, 0, l.gate_tiles.tiles, gate.data(), kInter);
        LowBitInt8Rows(l.up.m, l.up_tiles, xq, 0, l.up_tiles.tiles, up.data(), kInter);
        SiluMul(gate.data(), up.data(), kInter, h.data());
      }
      if (part != 1) {
        QuantizeInt8Blocks(h.data(), 1, kInter, kGroup, nullptr, hq);
        LowBitInt8Rows(l.down.m, l.down_tiles, hq, 0, l.down_tiles.tiles, y.data(), kHidden);
      }
      benchmark::DoNotOptimize(y.data());
      benchmark::DoNotOptimize(h.data());
    }
  }
  state.counters["ffn_per_s"] =
      benchmark::Counter(static_cast<double>(kLayers), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_DenseFfn)->ArgName("part")->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

void BM_SparseFfn(benchmark::State& state) {
  const int64_t kept_pct = state.range(0);
  const int part = static_cast<int>(state.range(1));
  const bool cats = state.range(2) != 0;
  const auto& layers = Layers();
  const std::vector<float> x = Input(2);
  // One random kept set per layer, sorted.
  std::vector<std::vector<int32_t>> kept(kLayers);
  std::mt19937 rng(3);
  for (auto& k : kept) {
    k.resize(kInter);
    std::iota(k.begin(), k.end(), 0);
    std::shuffle(k.begin(), k.end(), rng);
    k.resize(static_cast<size_t>(kInter * kept_pct / 100));
    std::sort(k.begin(), k.end());
  }
  std::vector<float> gate(kInter), up(kInter), h(kInter, 0.f), y(kHidden), silu(kInter);
  std::vector<int32_t> survivors(kInter);
  // For part 2: the masked h of each layer, as parts 0 and 1 would make it.
  std::vector<std::vector<float>> masked(kLayers, std::vector<float>(kInter, 0.f));
  const std::vector<float> hidden = Input(4);
  for (int64_t l = 0; l < kLayers; ++l)
    for (int32_t j : kept[l]) masked[l][j] = hidden[j % kHidden];
  Int8Activations xq, hq;
  SparseNeurons nonzero;
  for (auto _ : state) {
    for (int64_t li = 0; li < kLayers; ++li) {
      const Layer& l = layers[li];
      const std::vector<int32_t>& k = kept[li];
      const int64_t n = static_cast<int64_t>(k.size());
      const float* down_in = masked[li].data();
      if (part != 2) {
        QuantizeInt8Blocks(x.data(), 1, kHidden, kGroup, nullptr, xq);
        std::fill(h.begin(), h.end(), 0.f);
        if (cats) {
          LowBitInt8Rows(l.gate.m, l.gate_tiles, xq, 0, l.gate_tiles.tiles, gate.data(), kInter);
          SiluOfRange(gate.data(), kInter, silu.data());
          benchmark::DoNotOptimize(KeptAboveThreshold(silu.data(), kInter, 0.1f, survivors.data()));
          SparseRowsInt8(l.up_rows, xq, k.data(), 0, n, up.data());
          for (int64_t i = 0; i < n; ++i) h[k[i]] = silu[k[i]] * up[i];
        } else {
          SparseRowsInt8(l.gate_rows, xq, k.data(), 0, n, gate.data());
          SparseRowsInt8(l.up_rows, xq, k.data(), 0, n, up.data());
          SiluMulScatter(gate.data(), up.data(), k.data(), 0, n, h.data());
        }
        down_in = h.data();
      }
      if (part != 1) {
        QuantizeInt8Blocks(down_in, 1, kInter, kGroup, nullptr, hq);
        FindNonzeroNeurons(hq, nonzero);
        SparseDownInt8(l.down_columns, hq, nonzero, 0, l.down_columns.blocks(), y.data());
      }
      benchmark::DoNotOptimize(y.data());
      benchmark::DoNotOptimize(h.data());
    }
  }
  state.counters["ffn_per_s"] =
      benchmark::Counter(static_cast<double>(kLayers), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_SparseFfn)
    ->ArgNames({"kept_pct", "part", "cats"})
    ->ArgsProduct({{100, 50, 30, 10}, {0, 1, 2}, {0}})
    ->ArgsProduct({{100, 50, 30, 10}, {0}, {1}})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace accullm::kernels

BENCHMARK_MAIN();
