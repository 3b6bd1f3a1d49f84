// `accullm plan --workers N [--memory 8GiB[,..]] [--out plan.json]`: the layer → pipeline
// stage assignment (sharding/stage_plan.h) instead of the precision table.
#pragma once

#include <string>

namespace accullm::cli {

struct ShardingPlanFlags {
  std::string model;
  int workers = 0;
  std::string memory;         // empty: unlimited
  std::string out;            // plan file to write (serve --plan)
  int64_t kv_positions = -1;  // -1: the serve default (--kv-cache-mb 256 worth of positions)
  int64_t tokens_per_step = 1;
  int threads = 0;
  std::string kv_cache_dtype = "f16";  // serve's --kv-cache-dtype: the KV bytes each stage holds
};

int RunShardingPlan(const ShardingPlanFlags& f);

}  // namespace accullm::cli
