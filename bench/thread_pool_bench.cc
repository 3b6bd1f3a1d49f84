// The thread pool's cost per ParallelFor: a decode step of the TinyLlama geometry makes ~110
// calls (q/k/v, attention, o, gate/up, down per layer, 22 layers, the head), so a 20 µs round
// trip is 2.2 ms of a ~25 ms token. BM_ParallelForEmpty is the pure round trip (work items do
// nothing); BM_ParallelForTouch gives each item a little memory work, as a decode linear's tiles
// do, so the workers' wake-up latency shows against a realistic body.
//   build/bench/thread_pool_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "common/thread_pool.h"

namespace accullm {
namespace {

void BM_ParallelForEmpty(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  std::atomic<int64_t> sink{0};
  for (auto _ : state) {
    pool.ParallelFor(352, [&](int64_t b, int64_t e) { sink.fetch_add(e - b, std::memory_order_relaxed); });
  }
  benchmark::DoNotOptimize(sink.load());
}
BENCHMARK(BM_ParallelForEmpty)->Arg(1)->Arg(2)->UseRealTime();

void BM_ParallelForTouch(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  // 352 items of 4 KiB each (a 1.4 MiB matrix, as q_proj at 4 bits): in cache after the first
  // pass, so the time is the pool plus a fixed amount of work.
  std::vector<uint64_t> data(352 * 512, 1);
  std::vector<uint64_t> sums(352);
  for (auto _ : state) {
    pool.ParallelFor(352, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        uint64_t s = 0;
        for (int64_t j = 0; j < 512; ++j) s += data[i * 512 + j];
        sums[i] = s;
      }
    });
    benchmark::DoNotOptimize(sums.data());
  }
}
BENCHMARK(BM_ParallelForTouch)->Arg(1)->Arg(2)->UseRealTime();

}  // namespace
}  // namespace accullm

BENCHMARK_MAIN();
