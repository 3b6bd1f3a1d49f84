#include "pipeline/embedded_pipeline.h"

#include "sharding/stage_plan.h"
#include "pipeline/wire.h"
#include "pipeline/pipeline_stage.h"

namespace accullm::pipeline {

absl::StatusOr<std::unique_ptr<EmbeddedPipeline>> EmbeddedPipeline::Start(Transformer& model, PipelineConfig config) {
  std::unique_ptr<EmbeddedPipeline> p(new EmbeddedPipeline());
  // A thread of this process cannot go silent without the process dying with it: heartbeats
  // stay (they cost nothing) but no timeout may cut a long batch on a slow or busy machine.
  config.heartbeat_ms = 1000;
  config.timeout_ms = 24u * 3600 * 1000;
  config.batch_timeout_ms = 24u * 3600 * 1000;
  config.activation_transport = pipeline::ActivationTransport::kMpi;  // activations never leave the stage
  config.join_activation_channel = nullptr;
  config.micro_batches = 1;  // one stage: nothing to overlap
  p->stage_ = std::thread([&model, t = &p->hub_.at(1)] { RunPipelineStage(*t, model); });
  StagePlan plan = EvenStagePlan(model.config().num_layers, 1);
  plan.model_fingerprint = ModelFingerprint(model.config());
  auto e = PipelineExecutor::Start(p->hub_.at(0), model.config(), plan, config);
  if (!e.ok()) {
    // The stage is waiting for (or refused) the hello: tell it to go, then join it.
    (void)p->hub_.at(0).Send(1, pipeline::Encode(pipeline::Message{0, pipeline::Shutdown{}}));
    p->stage_.join();
    return e.status();
  }
  p->executor_ = std::move(*e);
  return p;
}

EmbeddedPipeline::~EmbeddedPipeline() {
  if (executor_) executor_->Shutdown();
  if (stage_.joinable()) stage_.join();
}

}  // namespace accullm::pipeline
