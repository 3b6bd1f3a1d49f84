// The int8 dot-product peak of one core, for the fraction the prefill kernels reach
// (docs/benchmarks.md): independent vpdpbusd (AVX-512 VNNI, 64 u8×s8 multiply-adds each) or
// vpmaddubsw+vpmaddwd+vpaddd (AVX2, 32 per three instructions) on registers, no memory
// traffic. Counters: int8 multiply-adds per second ("MAC/s"); a GFLOP-style figure is twice it.
//   build/bench/int8_dot_peak_bench
#include <benchmark/benchmark.h>

#include <cstdint>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/isa.h"

namespace accullm::kernels {
namespace {

constexpr int64_t kSteps = 1 << 16;

#if ACCULLM_HAVE_X86_SIMD
// 12 independent accumulators: more than vpdpbusd's latency × throughput, so the loop runs
// at the issue rate (the accumulator differs per instruction, so nothing is computed once).
__attribute__((target("avx512f,avx512bw,avx512vnni"), noinline)) int64_t DpbusdLoop(int64_t steps) {
  __m512i acc[12];
  for (auto& a : acc) a = _mm512_setzero_si512();
  __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
  for (int64_t i = 0; i < steps; ++i) {
    for (auto& a : acc) a = _mm512_dpbusd_epi32(a, u, s);
    __asm__ volatile("" : "+v"(u), "+v"(s));  // keeps the operands opaque to the compiler
  }
  __m512i sum = acc[0];
  for (int k = 1; k < 12; ++k) sum = _mm512_add_epi32(sum, acc[k]);
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, sum);
  int64_t total = 0;
  for (int32_t v : lanes) total += v;
  return total;
}

__attribute__((target("avx2"))) inline __m256i Step(__m256i a, __m256i u, __m256i s, __m256i ones) {
  return _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones));
}

__attribute__((target("avx2"), noinline)) int64_t MaddubsLoop(int64_t steps) {
  // Six chains, each with its own weights register (one shared operand pair would let the
  // compiler compute the products once per step); named registers, not an array, so that no
  // accumulator lives in memory.
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
  __m256i u0 = _mm256_set1_epi8(3), u1 = _mm256_set1_epi8(4), u2 = _mm256_set1_epi8(5);
  __m256i u3 = _mm256_set1_epi8(6), u4 = _mm256_set1_epi8(7), u5 = _mm256_set1_epi8(8);
  __m256i s = _mm256_set1_epi8(-2);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t i = 0; i < steps; ++i) {
    a0 = Step(a0, u0, s, ones);
    a1 = Step(a1, u1, s, ones);
    a2 = Step(a2, u2, s, ones);
    a3 = Step(a3, u3, s, ones);
    a4 = Step(a4, u4, s, ones);
    a5 = Step(a5, u5, s, ones);
    __asm__ volatile("" : "+x"(u0), "+x"(u1), "+x"(u2), "+x"(u3), "+x"(u4), "+x"(u5), "+x"(s));
  }
  const __m256i sum =
      _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)), _mm256_add_epi32(a4, a5));
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), sum);
  int64_t total = 0;
  for (int32_t v : lanes) total += v;
  return total;
}
#endif

void BM_Int8DotPeak(benchmark::State& state) {
#if ACCULLM_HAVE_X86_SIMD
  const bool avx512 = state.range(0) == 2;
  if (DetectedIsa() < (avx512 ? Isa::kAvx512 : Isa::kAvx2)) {
    state.SkipWithError("this CPU lacks the ISA");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(avx512 ? DpbusdLoop(kSteps) : MaddubsLoop(kSteps));
  const double macs_per_step = avx512 ? 12.0 * 64 : 6.0 * 32;
  state.counters["MAC/s"] = benchmark::Counter(macs_per_step * kSteps * static_cast<double>(state.iterations()),
                                               benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
#else
  state.SkipWithError("x86 SIMD not built");
#endif
}
BENCHMARK(BM_Int8DotPeak)->Arg(1)->Arg(2);

}  // namespace
}  // namespace accullm::kernels

BENCHMARK_MAIN();
