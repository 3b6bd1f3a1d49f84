#include "pipeline/embedded_pipeline.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "pipeline/wire.h"
#include "sharding/stage_plan.h"
#include "spdlog/spdlog.h"

namespace accullm::pipeline {

absl::StatusOr<std::unique_ptr<EmbeddedPipeline>> EmbeddedPipeline::Start(model::Transformer& model,
                                                                          PipelineConfig config) {
  const model::ModelConfig& c = model.config();
  config.activation_transport = pipeline::ActivationTransport::kMpi;  // activations never leave the stage
  RETURN_IF_ERROR(CheckActivationDType(config.activations));
  sharding::StagePlan plan = sharding::EvenStagePlan(c.num_layers, 1);
  plan.model_fingerprint = sharding::ModelFingerprint(c);
  RETURN_IF_ERROR(sharding::ValidateStagePlan(plan, c.num_layers, 1, plan.model_fingerprint));
  // The hello a one-stage pipeline sends rank 1, through the wire and the stage's own check.
  const std::vector<uint8_t> bytes = Encode(Message{0, StageHello(c, plan, config, 0)});
  ASSIGN_OR_RETURN(Message m, Decode(bytes.data(), bytes.size()));
  const Hello& hello = std::get<Hello>(m.body);
  const HelloAck ack = CheckHello(hello, model, /*rank=*/1, /*size=*/2, nullptr);
  if (!ack.ok) return absl::FailedPreconditionError(absl::StrCat("worker rank 1 refused: ", ack.message));
  auto stage = std::make_unique<PipelineStage>(model, hello, 1);
  stage->LogStart();
  return std::unique_ptr<EmbeddedPipeline>(new EmbeddedPipeline(std::move(stage), hello.kv_block_size));
}

EmbeddedPipeline::~EmbeddedPipeline() {
  if (error_.empty()) stage_->LogShutdown(stage_bytes_sent_);  // a failed stage rank exits without it
}

absl::StatusOr<std::vector<SampledToken>> EmbeddedPipeline::RunStage(uint64_t id, const std::vector<uint8_t>& bytes) {
  // Decoded and validated exactly as a stage rank decodes what it receives.
  ASSIGN_OR_RETURN(Message in, Decode(bytes.data(), bytes.size()));
  ASSIGN_OR_RETURN(Message out, stage_->Run(id, std::get<Batch>(in.body)));
  const std::vector<uint8_t> back = Encode(out);
  stage_bytes_sent_ += back.size();
  ASSIGN_OR_RETURN(Message res, Decode(back.data(), back.size()));
  auto* r = std::get_if<Result>(&res.body);
  if (r == nullptr) return absl::InternalError("the one stage did not produce a result");
  return std::move(r->tokens);
}

absl::StatusOr<uint64_t> EmbeddedPipeline::Launch(std::vector<int32_t> tokens, std::vector<ExecItem> items) {
  if (!error_.empty()) return absl::UnavailableError(error_);
  Batch b = assembler_.Take(std::move(tokens), items, DType::kF32);
  const uint64_t id = ++next_batch_;
  const std::vector<uint8_t> bytes = Encode(Message{id, std::move(b)});
  absl::StatusOr<std::vector<SampledToken>> got = RunStage(id, bytes);
  if (!got.ok()) {
    // As a stage rank would report it; the stage's state is now unknown, so nothing runs again.
    error_ = absl::StrCat("stage 0 (rank 1): ", got.status().message());
    spdlog::error("pipeline failed: batch {}: {}", id, error_);
    return id;  // Wait reports it, as it would for a stage rank
  }
  results_[id] = std::move(*got);
  return id;
}

absl::StatusOr<std::vector<SampledToken>> EmbeddedPipeline::Wait(uint64_t ticket) {
  if (!error_.empty()) return absl::UnavailableError(error_);  // every Wait, as PipelineExecutor's
  auto it = results_.find(ticket);
  if (it == results_.end()) return absl::InvalidArgumentError(absl::StrCat("no micro-batch ", ticket, " in flight"));
  std::vector<SampledToken> r = std::move(it->second);
  results_.erase(it);
  return r;
}

}  // namespace accullm::pipeline
