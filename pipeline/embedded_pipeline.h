// The embedded default (`accullm serve` without mpirun, `generate`, the scheduler's in-process
// constructor): the very pipeline mpirun runs, with one stage. The stage is a PipelineStage
// (pipeline_stage.h) — the code every stage rank runs, embed → layers → head → sample — that
// accepted the same hello through the same check, and every micro-batch reaches it as the
// same wire bytes, decoded and validated as a rank would. Only the hand-off differs: with one
// stage there is nothing to overlap, so the scheduler's thread runs the stage itself at
// Launch instead of handing each micro-batch to a stage thread and getting the result back
// through the executor's monitor thread (three sleeps and wake-ups per decode step; measured
// in docs/benchmarks.md: 30–60 µs of a ~2 ms step on the fixture model). There is no liveness
// to watch: a stage error fails the pipeline at once, with its message. The stage owns the KV
// cache contents; the scheduler owns the block tables (which block ids each sequence uses)
// and tells the stage through the items (wire.h BatchItem::blocks), as under mpirun.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/transformer.h"
#include "pipeline/batch_assembler.h"
#include "pipeline/batch_executor.h"
#include "pipeline/pipeline_executor.h"
#include "pipeline/pipeline_stage.h"

namespace accullm::pipeline {

class EmbeddedPipeline final : public BatchExecutor {
 public:
  // `config` gives the KV pool (block size, blocks) and the context; the stage's hello is the
  // one a one-stage mpirun pipeline would get, refused the same way (model, context, weights).
  static absl::StatusOr<std::unique_ptr<EmbeddedPipeline>> Start(model::Transformer& model, PipelineConfig config);
  // Logs the stage's shutdown line (unless it failed), as a stage rank does on Shutdown.
  ~EmbeddedPipeline() override;
  EmbeddedPipeline(const EmbeddedPipeline&) = delete;
  EmbeddedPipeline& operator=(const EmbeddedPipeline&) = delete;

  void Open(SequenceSetup setup) override { assembler_.Open(setup); }
  void Release(uint64_t seq) override { assembler_.Release(seq); }
  void Truncate(uint64_t seq, int64_t length) override { assembler_.Truncate(seq, length); }
  // Runs the micro-batch through the stage on the calling thread; Wait hands out its tokens.
  absl::StatusOr<uint64_t> Launch(std::vector<int32_t> tokens, std::vector<ExecItem> items) override;
  // Unavailable (with the stage's error) once the stage failed: nothing runs again.
  absl::StatusOr<std::vector<SampledToken>> Wait(uint64_t ticket) override;

 private:
  EmbeddedPipeline(std::unique_ptr<PipelineStage> stage, int64_t kv_block_size)
      : assembler_(kv_block_size), stage_(std::move(stage)) {}
  // Runs one encoded micro-batch through the stage: its decoded Result, or why it failed.
  absl::StatusOr<std::vector<SampledToken>> RunStage(uint64_t id, const std::vector<uint8_t>& bytes);

  BatchAssembler assembler_;
  std::unique_ptr<PipelineStage> stage_;
  uint64_t next_batch_ = 0, stage_bytes_sent_ = 0;         // the stage's results, encoded
  std::map<uint64_t, std::vector<SampledToken>> results_;  // launched, not yet waited for
  std::string error_;                                      // the stage failed
};

}  // namespace accullm::pipeline
