// Accuracy of a (quantized) model against its full-precision reference, with llama.cpp's
// perplexity protocol: the text is tokenized as one stream and cut into ctx-token chunks
// whose first token is replaced by BOS; only the second half of each chunk is scored. KL
// divergence KL(P_ref || P_model) and top-1 agreement use the same positions.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "model/transformer.h"

namespace accullm::quant {

struct EvalOptions {
  int64_t ctx = 512;
  int64_t max_chunks = 0;  // 0 = all
  // How the model under test stores its KV cache (dtype and INT8 rounding); the reference
  // always keeps FP32 rows, so KL and top-1 include the cache's rounding.
  kernels::KvDType kv_dtype = kernels::KvDType::kF32;
  kernels::KvInt8Rounding kv_int8_rounding = kernels::kKvInt8Rounding;
};

struct EvalResult {
  double perplexity = 0, reference_perplexity = 0;
  double kl_mean = 0, kl_p99 = 0, kl_max = 0;
  double top1_agreement = 0;  // 0..1
  int64_t positions = 0, chunks = 0;
  // Scored positions where the model's logits held NaN or Inf: their KL is +Inf, they never
  // agree on the top-1 token, and the perplexity becomes NaN or Inf (never a fake 0).
  int64_t nonfinite_positions = 0;
  // Per transformer block: ||h_model - h_ref|| / ||h_ref|| of the block's output, over all tokens.
  std::vector<double> layer_relative_error;
};

absl::StatusOr<EvalResult> Evaluate(model::Transformer& model, model::Transformer& reference,
                                    const std::vector<int32_t>& stream, int32_t bos, const EvalOptions& options);

// The reference model's logits at the scored positions of a text, computed once: a search
// that evaluates many variants of one model against the same reference (quantize --sparsity
// auto) runs the reference once instead of every time. [chunks, scored, vocab] floats.
class ReferenceLogits {
 public:
  static absl::StatusOr<ReferenceLogits> Compute(model::Transformer& reference, const std::vector<int32_t>& stream,
                                                 int32_t bos, const EvalOptions& options);
  const EvalOptions& options() const { return options_; }
  int64_t chunks() const { return chunks_; }
  int64_t vocab() const { return vocab_; }
  // The logits of scored position k (0 = position ctx/2) of chunk c.
  const float* At(int64_t c, int64_t k) const { return logits_.data() + (c * scored_ + k) * vocab_; }

 private:
  EvalOptions options_;
  int64_t chunks_ = 0, vocab_ = 0, scored_ = 0;
  std::vector<float> logits_;
};

// Evaluate against precomputed reference logits (same stream, bos and options as they were
// computed with): the same figures but layer_relative_error, which needs the reference's
// hidden states (left empty).
absl::StatusOr<EvalResult> Evaluate(model::Transformer& model, const ReferenceLogits& reference,
                                    const std::vector<int32_t>& stream, int32_t bos);

// Log-softmax of one row of logits (double precision), for scoring.
void LogSoftmax(const float* logits, int64_t n, std::vector<double>& out);

// KL(P || Q) from log-probabilities, clamped at 0 (rounding can make it slightly negative).
// +Inf when either side holds NaN or +Inf (logits that were not finite): a broken model must
// never read as a perfect match (std::max(0.0, NaN) is 0). Tokens with P = 0 (log_p = -Inf)
// add nothing; Q = 0 where P > 0 is +Inf, as it should be.
double KlDivergence(const std::vector<double>& log_p, const std::vector<double>& log_q);

// True when every one of the `n` logits is finite.
bool AllFinite(const float* logits, int64_t n);

}  // namespace accullm::quant
