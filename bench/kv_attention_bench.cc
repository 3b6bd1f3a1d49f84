// One decode step's attention of one layer over a long cached context, per KV cache dtype:
// TinyLlama-1.1B's heads (32 query heads sharing 4 KV heads of 64), one thread, rows in a
// paged KvBlockStorage (16-position blocks, shuffled) as the transformer reads them. What a
// compact cache buys at long context is fewer bytes per position read; what it costs is the
// conversion inside the kernel's blocked loop. bytes_per_second counts the stored K/V bytes
// read. Compare dtypes as ratios from one interleaved run (the machine is shared):
//   build/bench/kv_attention_bench --benchmark_repetitions=5
//     --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
//   (one command line)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/kv_row_format.h"
#include "model/kv_cache.h"

namespace accullm {
namespace {

constexpr int64_t kHeads = 32, kKvHeads = 4, kHeadDim = 64, kBlock = 16;

void BM_DecodeAttention(benchmark::State& state) {
  const auto dtype = static_cast<kernels::KvDType>(state.range(0));
  const int64_t positions = state.range(1);
  const kernels::KvRowFormat format{dtype, kKvHeads, kHeadDim};
  const int64_t blocks = (positions + kBlock - 1) / kBlock;
  model::KvBlockStorage storage(1, format, kBlock, blocks);
  std::vector<int32_t> order(static_cast<size_t>(blocks));
  for (int64_t b = 0; b < blocks; ++b) order[b] = static_cast<int32_t>(b);
  std::mt19937 rng(1);
  std::shuffle(order.begin(), order.end(), rng);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> row(static_cast<size_t>(format.kv_dim()));
  std::vector<const void*> k_rows(positions), v_rows(positions);
  for (int64_t p = 0; p < positions; ++p) {
    const int32_t b = order[p / kBlock];
    for (int kv = 0; kv < 2; ++kv) {
      for (float& x : row) x = normal(rng);
      void* dst = kv == 0 ? storage.k(b, 0, p % kBlock) : storage.v(b, 0, p % kBlock);
      kernels::EncodeKvRow(format, row.data(), {0, p, kv}, dst);
      (kv == 0 ? k_rows : v_rows)[p] = dst;
    }
  }
  std::vector<float> q(kHeads * kHeadDim), out(kHeads * kHeadDim), scores(positions);
  for (float& x : q) x = normal(rng);
  const kernels::KvRows kv{k_rows.data(), v_rows.data(), dtype};
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  const int64_t group = kHeads / kKvHeads;
  for (auto _ : state) {
    for (int64_t h = 0; h < kKvHeads; ++h)
      kernels::CausalAttentionGroup(q.data() + h * group * kHeadDim, group, kv, h, positions - 1, kHeadDim, scale,
                                    scores.data(), out.data() + h * group * kHeadDim);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * positions * 2 * format.row_bytes());
  state.SetLabel(kernels::KvDTypeName(dtype));
}
BENCHMARK(BM_DecodeAttention)
    ->ArgsProduct({{0, 1, 2, 3}, {512, 4096, 16384}})
    ->ArgNames({"dtype", "positions"})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace accullm

BENCHMARK_MAIN();
