// Group-wise quantized linear throughput per code width (3..8 bits, group 32, F16 steps,
// fractional zeros): decode (n = 1, memory-bound: GB/s of stored weights) and prefill
// (n = 64, compute-bound: GFLOP/s), AVX2 vs the scalar reference. Mixed-precision plans put
// 3-, 5- and 6-bit linears beside 4-bit ones: what does a width cost per weight read?
// BM_QuantizedLinearInt8: the integer-dot kernels (INT8 activations, tiled weights) per ISA
// (arg 3: 1 = AVX2, 2 = AVX-512 VNNI), activation quantization included; bytes = the tiled
// weights streamed.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/low_bit_int8_kernels.h"
#include "kernels/cpu/low_bit_kernels.h"

namespace accullm::kernels {
namespace {

struct Matrix {
  std::vector<uint8_t> codes, zeros;
  std::vector<uint16_t> scales;
  LowBitMatrix m;
  size_t bytes() const { return codes.size() + scales.size() * 2 + zeros.size(); }
};

Matrix MakeMatrix(int bits, int64_t in, int64_t out, int64_t group, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  const int64_t groups = in / group;
  Matrix w;
  w.codes.resize(static_cast<size_t>(out * CodeRowBytes(in, bits)));
  for (auto& c : w.codes) c = static_cast<uint8_t>(rng());
  w.scales.resize(static_cast<size_t>(out * groups));
  for (auto& s : w.scales) s = F32ToF16(0.01f + 0.001f * std::abs(normal(rng)));
  const int frac = ZeroFractionBits(4, bits);
  w.zeros.assign(static_cast<size_t>(out * groups), static_cast<uint8_t>((1 << (bits - 1)) << frac));
  w.m.codes = w.codes.data();
  w.m.scales = w.scales.data();
  w.m.zeros = w.zeros.data();
  w.m.out = out;
  w.m.in = in;
  w.m.group = group;
  w.m.zero_frac_bits = frac;
  w.m.bits = bits;
  return w;
}

void BM_QuantizedLinearInt8(benchmark::State& state) {
  const int bits = static_cast<int>(state.range(0));
  const int64_t n = state.range(1), in = 2048, out = 5632, group = 32;
  const bool avx512 = state.range(2) == 2;
  std::mt19937 rng(1);
  Matrix w = MakeMatrix(bits, in, out, group, rng);
  const LowBitTiles tiles = TileLowBitMatrix(w.m);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(in * n)), y(static_cast<size_t>(out * n));
  for (auto& v : x) v = normal(rng);
  Int8Activations xq;
  for (auto _ : state) {
    QuantizeInt8Blocks(x.data(), n, in, group, nullptr, xq);
    const bool ran = avx512 ? LowBitInt8RowsAvx512(tiles, xq, 0, tiles.tiles, y.data(), out)
                            : LowBitInt8RowsAvx2(tiles, xq, 0, tiles.tiles, y.data(), out);
    if (!ran) {
      state.SkipWithError("this CPU lacks the ISA");
      break;
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(tiles.bytes()));
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * in * out * n * state.iterations(), benchmark::Counter::kIsRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_QuantizedLinearInt8)->ArgsProduct({{3, 4, 5, 8}, {1, 64}, {1, 2}});

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
