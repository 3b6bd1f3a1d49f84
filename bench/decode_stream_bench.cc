// Decode streams every weight from DRAM once per token: how close does the integer decode
// kernel (one activation row, tiled INT4 g32 weights) come to the read bandwidth of one core?
// BM_DecodeStream runs the kernel over 16 gate/up-shaped matrices (in 2048, out 5632, ~93 MB
// of tiles: far more than the L3), one thread; BM_ReadProbe sums 256 MiB of uint64 on one
// thread, as `accullm bench`'s probe does on every thread. Compare their bytes_per_second,
// run interleaved on a noisy machine: build/bench/decode_stream_bench --benchmark_repetitions=5
// --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
// Arg: 1 = AVX2, 2 = AVX-512 VNNI.
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/linear_kernels.h"
#include "kernels/cpu/low_bit_int8_kernels.h"
#include "kernels/cpu/low_bit_tiles.h"

namespace accullm::kernels {
namespace {

constexpr int64_t kIn = 2048, kOut = 5632, kGroup = 32, kMatrices = 16;

// The tiled matrices, made once (tiling 93 MB takes longer than a benchmark run).
const std::vector<LowBitTiles>& Matrices() {
  static const auto* tiles = [] {
    auto* all = new std::vector<LowBitTiles>();
    std::mt19937 rng(1);
    std::normal_distribution<float> normal;
    const int64_t groups = kIn / kGroup;
    std::vector<uint8_t> codes(static_cast<size_t>(kOut * CodeRowBytes(kIn, 4)));
    std::vector<uint16_t> scales(static_cast<size_t>(kOut * groups));
    std::vector<uint8_t> zeros(static_cast<size_t>(kOut * groups));
    for (int64_t i = 0; i < kMatrices; ++i) {
      for (auto& c : codes) c = static_cast<uint8_t>(rng());
      for (auto& s : scales) s = F32ToF16(0.01f + 0.001f * std::abs(normal(rng)));
      const int frac = ZeroFractionBits(4, 4);
      for (auto& z : zeros) z = static_cast<uint8_t>((rng() % 16) << frac);
      LowBitMatrix m;
      m.codes = codes.data();
      m.scales = scales.data();
      m.zeros = zeros.data();
      m.out = kOut;
      m.in = kIn;
      m.group = kGroup;
      m.zero_frac_bits = frac;
      m.bits = 4;
      all->push_back(TileLowBitMatrix(m));
    }
    return all;
  }();
  return *tiles;
}

void BM_DecodeStream(benchmark::State& state) {
  const bool avx512 = state.range(0) == 2;
  const auto& mats = Matrices();
  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(kIn)), y(static_cast<size_t>(kOut));
  for (auto& v : x) v = normal(rng);
  Int8Activations xq;
  QuantizeInt8Blocks(x.data(), 1, kIn, kGroup, nullptr, xq);
  size_t bytes = 0;
  for (const auto& t : mats) bytes += t.bytes();
  for (auto _ : state) {
    for (const auto& t : mats) {
      const bool ran = avx512 ? LowBitInt8RowsAvx512(t, xq, 0, t.tiles, y.data(), kOut)
                              : LowBitInt8RowsAvx2(t, xq, 0, t.tiles, y.data(), kOut);
      if (!ran) {
        state.SkipWithError("this CPU lacks the ISA");
        return;
      }
      benchmark::DoNotOptimize(y.data());
    }
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
}
BENCHMARK(BM_DecodeStream)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

// The same for F16 weights (the FP16 LM head, FP16 blocks): 4 matrices of 2048 x 5632 (92 MB).
void BM_DecodeStreamF16(benchmark::State& state) {
  constexpr int64_t kF16Matrices = 4;
  static const auto* mats = [] {
    auto* all = new std::vector<std::vector<uint16_t>>();
    std::mt19937 rng(3);
    std::normal_distribution<float> normal;
    for (int64_t i = 0; i < kF16Matrices; ++i) {
      all->emplace_back(static_cast<size_t>(kIn * kOut));
      for (auto& v : all->back()) v = F32ToF16(0.02f * normal(rng));
    }
    return all;
  }();
  std::vector<float> x(static_cast<size_t>(kIn), 0.5f), y(static_cast<size_t>(kOut));
  for (auto _ : state) {
    for (const auto& w : *mats) {
      LinearRows(DType::kF16, w.data(), kIn, x.data(), 1, 0, kOut, y.data(), kOut);
      benchmark::DoNotOptimize(y.data());
    }
  }
  state.SetBytesProcessed(state.iterations() * kF16Matrices * kIn * kOut * 2);
}
BENCHMARK(BM_DecodeStreamF16)->Unit(benchmark::kMillisecond);

void BM_ReadProbe(benchmark::State& state) {
  const size_t n = size_t{256} << 20 >> 3;
  static const auto* buf = new std::vector<uint64_t>(n, 1);
  for (auto _ : state) {
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    const uint64_t* p = buf->data();
    for (size_t i = 0; i + 4 <= n; i += 4) {
      s0 += p[i];
      s1 += p[i + 1];
      s2 += p[i + 2];
      s3 += p[i + 3];
    }
    benchmark::DoNotOptimize(s0 + s1 + s2 + s3);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(n * sizeof(uint64_t)));
}
BENCHMARK(BM_ReadProbe)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace accullm::kernels

BENCHMARK_MAIN();
