// The embedded default (`accullm serve` without mpirun, the scheduler's in-process
// constructor): the very pipeline mpirun runs, with one stage. Rank 0 is the coordinator's
// PipelineExecutor, rank 1 a thread running RunPipelineStage over the whole model, and the
// in-process transport carries the same wire messages MPI would. So one stage runner (embed
// → layers → head → sample) serves every mode by construction, and the stage owns the KV
// cache contents while the scheduler only counts blocks.
#pragma once

#include <memory>
#include <thread>

#include "absl/status/statusor.h"
#include "model/transformer.h"
#include "transport/transport.h"
#include "pipeline/pipeline_executor.h"

namespace accullm::pipeline {

class EmbeddedPipeline {
 public:
  // `config` gives the KV pool (block size, blocks), the context and the activation format;
  // its liveness timeouts are replaced by ones that never fire for a thread of this process
  // (a stage error still fails the executor at once, with its message).
  static absl::StatusOr<std::unique_ptr<EmbeddedPipeline>> Start(Transformer& model, PipelineConfig config);
  // Shuts the stage down and joins it.
  ~EmbeddedPipeline();
  EmbeddedPipeline(const EmbeddedPipeline&) = delete;
  EmbeddedPipeline& operator=(const EmbeddedPipeline&) = delete;

  PipelineExecutor& executor() { return *executor_; }

 private:
  EmbeddedPipeline() = default;

  transport::InProcessHub hub_{2};
  std::thread stage_;
  std::unique_ptr<PipelineExecutor> executor_;
};

}  // namespace accullm::pipeline
