#include "cli/sharding_plan_command.h"

#include <cstdio>

#include "cli/cli_common.h"
#include "cli/model_loading.h"
#include "sharding/stage_plan.h"

namespace accullm::cli {

int RunShardingPlan(const ShardingPlanFlags& f) {
  const std::string dir = f.model.empty() ? DefaultModelDir() : f.model;
  // Planning reads shapes and sizes only: no pass over the weights (a stage checks its own).
  auto loaded = LoadModel(dir, f.threads, /*need_tokenizer=*/false, {.check_finite = false, .prepare_kernels = false});
  if (!loaded.ok()) return ReportError(loaded.status());
  model::Transformer& model = *loaded->transformer;
  sharding::PlannerOptions o;
  if (!f.memory.empty()) {
    auto budgets = sharding::ParseMemoryBudgets(f.memory, f.workers);
    if (!budgets.ok()) return ReportError(budgets.status());
    o.memory_bytes = *budgets;
  }
  const model::ModelConfig& c = model.config();
  if (f.kv_positions >= 0) {
    o.kv_positions = f.kv_positions;
  }
  auto kv_dtype = KvCacheDType(f.kv_cache_dtype);
  if (!kv_dtype.ok()) return ReportError(kv_dtype.status());
  const kernels::KvRowFormat kv_format = model.kv_format(*kv_dtype);
  if (f.kv_positions < 0) {  // what `serve` reserves by default: 256 MiB of KV over all layers
    o.kv_positions = static_cast<int64_t>(256.0 * 1024 * 1024 / model::KvBytesPerPosition(c.num_layers, kv_format));
  }
  o.tokens_per_step = f.tokens_per_step;
  auto plan = sharding::PlanStages(sharding::CostFromModel(model, *kv_dtype), f.workers, o);
  if (!plan.ok()) return ReportError(plan.status());
  plan->model_fingerprint = sharding::ModelFingerprint(c);
  std::printf("model %s: %lld layers, %d workers, KV cache %lld positions\n", dir.c_str(),
              static_cast<long long>(c.num_layers), f.workers, static_cast<long long>(o.kv_positions));
  std::printf("%s", sharding::FormatStagePlan(*plan).c_str());
  if (!f.out.empty()) {
    if (absl::Status st = sharding::WriteStagePlanFile(f.out, *plan); !st.ok()) return ReportError(st);
    std::printf("wrote %s (accullm serve --plan %s under mpirun -np %d)\n", f.out.c_str(), f.out.c_str(),
                f.workers + 1);
  }
  return 0;
}

}  // namespace accullm::cli
