// Group-wise quantized linear throughput per code width (3..8 bits, group 32, F16 steps,
// fractional zeros): decode (n = 1, memory-bound: GB/s of stored weights) and prefill
// (n = 64, compute-bound: GFLOP/s), AVX2 vs the scalar reference. Mixed-precision plans put
// 3-, 5- and 6-bit linears beside 4-bit ones: what does a width cost per weight read?
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/low_bit_kernels.h"

namespace accullm::kernels {
namespace {

void Run(benchmark::State& state, bool scalar) {
  const int bits = static_cast<int>(state.range(0));
  const int64_t n = state.range(1), in = 2048, out = 5632, group = 32, groups = in / group;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<uint8_t> codes(static_cast<size_t>(out * CodeRowBytes(in, bits)));
  for (auto& c : codes) c = static_cast<uint8_t>(rng());
  std::vector<uint16_t> scales(static_cast<size_t>(out * groups));
  for (auto& s : scales) s = F32ToF16(0.01f + 0.001f * std::abs(normal(rng)));
  const int frac = ZeroFractionBits(4, bits);
  std::vector<uint8_t> zeros(static_cast<size_t>(out * groups), static_cast<uint8_t>((1 << (bits - 1)) << frac));
  LowBitMatrix m;
  m.out = out;
  m.codes = codes.data();
  m.scales = scales.data();
  m.zeros = zeros.data();
  m.in = in;
  m.group = group;
  m.zero_frac_bits = frac;
  m.bits = bits;
  std::vector<float> x(static_cast<size_t>(in * n)), y(static_cast<size_t>(out * n));
  for (auto& v : x) v = normal(rng);
  for (auto _ : state) {
    if (scalar) LowBitLinearRowsScalar(m, x.data(), n, 0, out, y.data(), out);
    else LowBitLinearRows(m, x.data(), n, 0, out, y.data(), out);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(codes.size() + scales.size() * 2 + zeros.size()));
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * in * out * n * state.iterations(), benchmark::Counter::kIsRate,
                                                 benchmark::Counter::kIs1000);
}

void BM_QuantizedLinear(benchmark::State& s) { Run(s, false); }
void BM_QuantizedLinearScalar(benchmark::State& s) { Run(s, true); }

// TinyLlama's gate/up projection shape (in 2048, out 5632), single-threaded; args: bits, n.
BENCHMARK(BM_QuantizedLinear)->ArgsProduct({{3, 4, 5, 6, 8}, {1, 64}});
BENCHMARK(BM_QuantizedLinearScalar)->ArgsProduct({{4, 6}, {1}});

}  // namespace
}  // namespace accullm::kernels

BENCHMARK_MAIN();
