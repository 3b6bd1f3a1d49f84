// Linear kernel throughput: decode (n = 1, memory-bound: GB/s of weights) and prefill
// (n = 64, compute-bound: GFLOP/s), SIMD vs the scalar reference, per weight dtype.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/cpu/linear_kernels.h"

namespace accullm::kernels {
namespace {

void Run(benchmark::State& state, DType dtype, bool scalar) {
  const int64_t in = state.range(0), out = state.range(1), n = state.range(2);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<uint8_t> w(in * out * DTypeSize(dtype));
  for (size_t i = 0; i < w.size() / 2; ++i) reinterpret_cast<uint16_t*>(w.data())[i] = F32ToF16(normal(rng) * 0.1f);
  if (dtype == DType::kF32)
    for (int64_t i = 0; i < in * out; ++i) reinterpret_cast<float*>(w.data())[i] = normal(rng);
  std::vector<float> x(in * n), y(out * n);
  for (auto& v : x) v = normal(rng);
  for (auto _ : state) {
    if (scalar) LinearRowsScalar(dtype, w.data(), in, x.data(), n, 0, out, y.data(), out);
    else LinearRows(dtype, w.data(), in, x.data(), n, 0, out, y.data(), out);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(w.size()));
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * in * out * n * state.iterations(), benchmark::Counter::kIsRate,
                                                 benchmark::Counter::kIs1000);
}

void BM_LinearF16(benchmark::State& s) { Run(s, DType::kF16, false); }
void BM_LinearF16Scalar(benchmark::State& s) { Run(s, DType::kF16, true); }
void BM_LinearBF16(benchmark::State& s) { Run(s, DType::kBF16, false); }
void BM_LinearF32(benchmark::State& s) { Run(s, DType::kF32, false); }

// TinyLlama's gate/up projection shape (in 2048, out 5632), single-threaded.
BENCHMARK(BM_LinearF16)->Args({2048, 5632, 1})->Args({2048, 5632, 64});
BENCHMARK(BM_LinearF16Scalar)->Args({2048, 5632, 1});
BENCHMARK(BM_LinearBF16)->Args({2048, 5632, 1})->Args({2048, 5632, 64});
BENCHMARK(BM_LinearF32)->Args({2048, 5632, 1})->Args({2048, 5632, 64});

}  // namespace
}  // namespace accullm::kernels

BENCHMARK_MAIN();
