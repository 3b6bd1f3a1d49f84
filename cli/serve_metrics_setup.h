// The series `serve` sets once at startup (build, model) and on every scrape (the pipeline's
// stages), kept out of serve_command.cc.
#pragma once

#include "model/transformer.h"
#include "monitoring/serving_metrics.h"
#include "pipeline/pipeline_executor.h"
#include "quant/layer_drift_sampler.h"

namespace accullm::cli {

// accullm_build_info and the model series (accullm_model_weight_bytes,
// accullm_model_low_bit_weight_fraction, accullm_model_info).
void SetStartupMetrics(const model::Transformer& model, monitoring::ServingMetrics& metrics);

// Under mpirun: every scrape reads each stage's liveness and the micro-batches in flight from
// the executor (which must outlive the metrics' last scrape, or be cleared with
// metrics.set_before_scrape({}) first).
void ExportPipelineOnScrape(const pipeline::PipelineExecutor& executor, monitoring::ServingMetrics& metrics);

// The sampler's per-linear errors as the metrics series take them.
std::vector<monitoring::LayerErrorSample> LayerErrorSamples(const quant::LayerDriftSampler& drift);

// The model's FFN sparsity counts (cumulative, layers that ran FFN tokens only) as the metrics
// series take them.
std::vector<monitoring::FfnLayerCount> FfnCounts(const model::Transformer& model);

// The share of the transformer blocks' linear weights (by parameter count) a pack holds in
// low-bit codes; 0 for a checkpoint.
double LowBitWeightFraction(const model::Transformer& model);

}  // namespace accullm::cli
