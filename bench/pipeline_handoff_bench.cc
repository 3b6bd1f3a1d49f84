// Single-stream decode step through the embedded pipeline, as run now (the one stage on the
// caller's thread: EmbeddedPipeline) and as before (the same stage in a thread of its own over
// the in-process transport, results back through the PipelineExecutor's monitor thread: three
// thread hand-offs per step). The difference is the hand-offs' cost; the compute is the same
// PipelineStage::Run. One sequence decodes greedily and is rolled back to its prompt every
// 128 steps, so every step attends over 5..133 positions in both. Counters per step: the whole
// process's CPU time and voluntary context switches (the pool's workers' included).
// Compare with interleaved repetitions (the machine is shared):
//   build/bench/pipeline_handoff_bench --benchmark_repetitions=10
//     --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
// (ACCULLM_BENCH_THREADS=1: no pool workers, so the only context switches are the hand-offs.)
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <cstdlib>
#include <memory>
#include <thread>

#include "common/thread_pool.h"
#include "model/transformer.h"
#include "pipeline/embedded_pipeline.h"
#include "pipeline/pipeline_executor.h"
#include "pipeline/pipeline_stage.h"
#include "sharding/stage_plan.h"
#include "transport/transport.h"

namespace accullm::pipeline {
namespace {

const std::string kModel = std::string(ACCULLM_SOURCE_DIR) + "/models/tinystories-llama";
constexpr int64_t kContext = 256, kBlocks = 64, kRollback = 128;

// Compute threads: ACCULLM_BENCH_THREADS (default 2, as `generate -t 2`).
model::Transformer& Model() {
  static ThreadPool pool(std::getenv("ACCULLM_BENCH_THREADS") ? std::atoi(std::getenv("ACCULLM_BENCH_THREADS")) : 2);
  static std::unique_ptr<model::Transformer> model = [] {
    auto m = model::Transformer::Load(kModel, &pool);
    if (!m.ok()) std::abort();
    return std::move(*m);
  }();
  return *model;
}

PipelineConfig Config() {
  PipelineConfig pc;
  pc.kv_blocks = kBlocks;
  pc.context = kContext;
  pc.micro_batches = 1;
  pc.heartbeat_ms = 1000;
  pc.timeout_ms = 24u * 3600 * 1000;
  pc.batch_timeout_ms = 24u * 3600 * 1000;
  return pc;
}

// Whole-process CPU seconds and voluntary context switches (a thread going to sleep: every
// hand-off costs one), which the machine's other load does not change the way it changes
// wall time.
struct ProcessUsage {
  double cpu_seconds;
  long switches;
  static ProcessUsage Now() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return {u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6, u.ru_nvcsw};
  }
};

// Decodes one token per iteration through `e`.
void Decode(benchmark::State& state, BatchExecutor& e) {
  model::KvBlockPool accounting(0, Model().kv_format(), 16, kBlocks);
  model::KvCache cache(&accounting, kContext);
  const std::vector<int32_t> prompt = {1, 420, 435, 261, 394};
  const int64_t n = static_cast<int64_t>(prompt.size());
  e.Open(SequenceSetup{1, {}, -1, {}, {}});
  auto step = [&](std::vector<int32_t> tokens) {
    const int64_t rows = static_cast<int64_t>(tokens.size());
    if (!cache.Reserve(cache.length() + rows).ok()) std::abort();
    auto ticket = e.Launch(std::move(tokens), {{1, &cache, rows, true}});
    auto got = ticket.ok() ? e.Wait(*ticket) : ticket.status();
    if (!got.ok() || got->size() != 1) std::abort();
    return (*got)[0].id;
  };
  int32_t last = step(prompt);
  const int32_t first = last;
  const ProcessUsage before = ProcessUsage::Now();
  for (auto _ : state) {
    if (cache.length() >= n + kRollback) {
      e.Truncate(1, n);
      cache.Truncate(n);
      last = first;
    }
    last = step({last});
  }
  const ProcessUsage after = ProcessUsage::Now();
  const double steps = static_cast<double>(state.iterations());
  state.counters["process_cpu_us"] = (after.cpu_seconds - before.cpu_seconds) * 1e6 / steps;
  state.counters["switches"] = static_cast<double>(after.switches - before.switches) / steps;
  e.Release(1);
}

void BM_DecodeStepOnCallerThread(benchmark::State& state) {
  auto p = EmbeddedPipeline::Start(Model(), Config());
  if (!p.ok()) std::abort();
  Decode(state, **p);
}
BENCHMARK(BM_DecodeStepOnCallerThread)->Unit(benchmark::kMicrosecond)->MinTime(1.0)->UseRealTime();

void BM_DecodeStepStageThreadAndMonitor(benchmark::State& state) {
  transport::InProcessHub hub(2);
  std::thread stage([&] { RunPipelineStage(hub.at(1), Model()); });
  sharding::StagePlan plan = sharding::EvenStagePlan(Model().config().num_layers, 1);
  plan.model_fingerprint = sharding::ModelFingerprint(Model().config());
  auto e = PipelineExecutor::Start(hub.at(0), Model().config(), plan, Config());
  if (!e.ok()) std::abort();
  Decode(state, **e);
  (*e)->Shutdown();
  stage.join();
}
BENCHMARK(BM_DecodeStepStageThreadAndMonitor)->Unit(benchmark::kMicrosecond)->MinTime(1.0)->UseRealTime();

}  // namespace
}  // namespace accullm::pipeline

BENCHMARK_MAIN();
