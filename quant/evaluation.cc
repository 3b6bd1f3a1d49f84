#include "quant/evaluation.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace accullm::quant {

void LogSoftmax(const float* logits, int64_t n, std::vector<double>& out) {
  out.resize(static_cast<size_t>(n));
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(logits[i] - mx);
  const double lse = mx + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[i] = logits[i] - lse;
}

double KlDivergence(const std::vector<double>& log_p, const std::vector<double>& log_q) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  double kl = 0;
  for (size_t v = 0; v < log_p.size(); ++v) {
    const double p = log_p[v], q = log_q[v];
    if (std::isnan(p) || std::isnan(q) || p == kInf || q == kInf) return kInf;
    if (p == -kInf) continue;  // 0 · log(0 / q) = 0
    kl += std::exp(p) * (p - q);
  }
  return std::isnan(kl) ? kInf : std::max(0.0, kl);
}

bool AllFinite(const float* logits, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(logits[i])) return false;
  return true;
}

namespace {

// Keeps each block's output of the latest forward pass.
class BlockOutputRecorder final : public model::ActivationObserver {
 public:
  void Observe(int64_t layer, model::LinearSite site, const float* x, int64_t rows, int64_t width) override {
    if (site != model::LinearSite::kBlockOut) return;
    if (outputs.size() <= static_cast<size_t>(layer)) outputs.resize(layer + 1);
    outputs[layer].assign(x, x + rows * width);
  }
  std::vector<std::vector<float>> outputs;
};

// The scored positions of a run: the second half of each chunk but its last token.
struct PositionScorer {
  double nll = 0, nll_ref = 0;
  int64_t agree = 0, nonfinite = 0;
  std::vector<double> pm, pr, kls;

  // Model logits a, reference logits b (vocab each) predicting token `next`.
  void Add(const float* a, const float* b, int64_t vocab, int32_t next) {
    LogSoftmax(a, vocab, pm);
    LogSoftmax(b, vocab, pr);
    nll -= pm[next];
    nll_ref -= pr[next];
    kls.push_back(KlDivergence(pr, pm));
    // max_element over NaN is meaningless (comparisons are false): no agreement.
    const bool finite = AllFinite(a, vocab);
    if (!finite) ++nonfinite;
    agree += finite && AllFinite(b, vocab) && (std::max_element(a, a + vocab) - a) == (std::max_element(b, b + vocab) - b);
  }

  EvalResult Finish(int64_t chunks) const {
    EvalResult r;
    r.chunks = chunks;
    r.positions = static_cast<int64_t>(kls.size());
    r.nonfinite_positions = nonfinite;
    r.perplexity = std::exp(nll / r.positions);
    r.reference_perplexity = std::exp(nll_ref / r.positions);
    double sum = 0;
    for (double k : kls) sum += k;
    r.kl_mean = sum / r.positions;
    std::vector<double> sorted = kls;
    std::sort(sorted.begin(), sorted.end());
    r.kl_p99 = sorted[static_cast<size_t>(std::min<double>(sorted.size() - 1, std::ceil(0.99 * sorted.size()) - 1))];
    r.kl_max = sorted.back();
    r.top1_agreement = static_cast<double>(agree) / r.positions;
    return r;
  }
};

absl::StatusOr<int64_t> ChunkCount(const std::vector<int32_t>& stream, const EvalOptions& opt) {
  if (opt.ctx < 4) return absl::InvalidArgumentError("evaluation context must be at least 4 tokens");
  int64_t chunks = static_cast<int64_t>(stream.size()) / opt.ctx;
  if (opt.max_chunks > 0) chunks = std::min(chunks, opt.max_chunks);
  if (chunks == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("evaluation text has ", stream.size(), " tokens, fewer than one chunk of ", opt.ctx));
  }
  return chunks;
}

std::vector<int32_t> Chunk(const std::vector<int32_t>& stream, int64_t c, int64_t ctx, int32_t bos) {
  std::vector<int32_t> chunk(stream.begin() + c * ctx, stream.begin() + (c + 1) * ctx);
  chunk[0] = bos;
  return chunk;
}

absl::Status ForwardChunk(model::Transformer& model, const std::vector<int32_t>& chunk, const EvalOptions& opt,
                          float* logits) {
  kernels::KvRowFormat format = model.kv_format(opt.kv_dtype);
  format.int8_rounding = opt.kv_int8_rounding;
  model::KvCache cache(model.config().num_layers, format, opt.ctx);
  return model.Forward(chunk.data(), opt.ctx, cache, logits, true);
}

}  // namespace

absl::StatusOr<EvalResult> Evaluate(model::Transformer& model, model::Transformer& reference,
                                    const std::vector<int32_t>& stream, int32_t bos, const EvalOptions& opt) {
  const int64_t vocab = model.config().vocab_size;
  if (reference.config().vocab_size != vocab)
    return absl::InvalidArgumentError("model and reference vocabularies differ");
  ASSIGN_OR_RETURN(const int64_t chunks, ChunkCount(stream, opt));
  const int64_t layers = model.config().num_layers;
  BlockOutputRecorder rec_model, rec_ref;
  model.set_observer(&rec_model);
  reference.set_observer(&rec_ref);
  std::vector<double> err_num(static_cast<size_t>(layers), 0), err_den(static_cast<size_t>(layers), 0);
  std::vector<float> lm(static_cast<size_t>(opt.ctx * vocab)), lr(static_cast<size_t>(opt.ctx * vocab));
  PositionScorer scorer;
  absl::Status status;
  for (int64_t c = 0; c < chunks && status.ok(); ++c) {
    const std::vector<int32_t> chunk = Chunk(stream, c, opt.ctx, bos);
    model::KvCache cr = reference.NewCache(opt.ctx);
    status = ForwardChunk(model, chunk, opt, lm.data());
    if (status.ok()) status = reference.Forward(chunk.data(), opt.ctx, cr, lr.data(), true);
    if (!status.ok()) break;
    for (int64_t l = 0; l < layers && l < static_cast<int64_t>(rec_model.outputs.size()); ++l) {
      const auto& a = rec_model.outputs[l];
      const auto& b = rec_ref.outputs[l];
      for (size_t i = 0; i < a.size(); ++i) {
        err_num[l] += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
        err_den[l] += static_cast<double>(b[i]) * b[i];
      }
    }
    for (int64_t j = opt.ctx / 2; j < opt.ctx - 1; ++j)
      scorer.Add(lm.data() + j * vocab, lr.data() + j * vocab, vocab, chunk[j + 1]);
  }
  model.set_observer(nullptr);
  reference.set_observer(nullptr);
  RETURN_IF_ERROR(status);
  EvalResult r = scorer.Finish(chunks);
  for (int64_t l = 0; l < layers; ++l)
    r.layer_relative_error.push_back(err_den[l] > 0 ? std::sqrt(err_num[l] / err_den[l]) : 0);
  return r;
}

absl::StatusOr<ReferenceLogits> ReferenceLogits::Compute(model::Transformer& reference,
                                                         const std::vector<int32_t>& stream, int32_t bos,
                                                         const EvalOptions& opt) {
  ASSIGN_OR_RETURN(const int64_t chunks, ChunkCount(stream, opt));
  ReferenceLogits out;
  out.options_ = opt;
  out.chunks_ = chunks;
  out.vocab_ = reference.config().vocab_size;
  out.scored_ = opt.ctx - 1 - opt.ctx / 2;
  out.logits_.reserve(static_cast<size_t>(chunks * out.scored_ * out.vocab_));
  std::vector<float> lr(static_cast<size_t>(opt.ctx * out.vocab_));
  for (int64_t c = 0; c < chunks; ++c) {
    const std::vector<int32_t> chunk = Chunk(stream, c, opt.ctx, bos);
    model::KvCache cr = reference.NewCache(opt.ctx);
    RETURN_IF_ERROR(reference.Forward(chunk.data(), opt.ctx, cr, lr.data(), true));
    out.logits_.insert(out.logits_.end(), lr.begin() + (opt.ctx / 2) * out.vocab_,
                       lr.begin() + (opt.ctx / 2 + out.scored_) * out.vocab_);
  }
  return out;
}

absl::StatusOr<EvalResult> Evaluate(model::Transformer& model, const ReferenceLogits& reference,
                                    const std::vector<int32_t>& stream, int32_t bos) {
  const EvalOptions& opt = reference.options();
  const int64_t vocab = model.config().vocab_size;
  if (reference.vocab() != vocab) return absl::InvalidArgumentError("model and reference vocabularies differ");
  ASSIGN_OR_RETURN(const int64_t chunks, ChunkCount(stream, opt));
  if (chunks != reference.chunks())
    return absl::InvalidArgumentError("the reference logits were computed on another text");
  std::vector<float> lm(static_cast<size_t>(opt.ctx * vocab));
  PositionScorer scorer;
  for (int64_t c = 0; c < chunks; ++c) {
    const std::vector<int32_t> chunk = Chunk(stream, c, opt.ctx, bos);
    RETURN_IF_ERROR(ForwardChunk(model, chunk, opt, lm.data()));
    for (int64_t j = opt.ctx / 2; j < opt.ctx - 1; ++j)
      scorer.Add(lm.data() + j * vocab, reference.At(c, j - opt.ctx / 2), vocab, chunk[j + 1]);
  }
  return scorer.Finish(chunks);
}

}  // namespace accullm::quant
