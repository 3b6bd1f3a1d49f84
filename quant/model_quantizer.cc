#include "quant/model_quantizer.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/low_bit_linear.h"
#include "model/pack/manifest.h"
#include "quant/calibration.h"
#include "quant/hessian_factors.h"

namespace accullm::quant {

const std::vector<BlockLinear>& BlockLinears() {
  static const std::vector<BlockLinear> kLinears = {
      {sharding::kBlockLinearNames[0], model::LinearSite::kAttnIn, &model::TransformerLayer::q},
      {sharding::kBlockLinearNames[1], model::LinearSite::kAttnIn, &model::TransformerLayer::k},
      {sharding::kBlockLinearNames[2], model::LinearSite::kAttnIn, &model::TransformerLayer::v},
      {sharding::kBlockLinearNames[3], model::LinearSite::kAttnOut, &model::TransformerLayer::o},
      {sharding::kBlockLinearNames[4], model::LinearSite::kMlpIn, &model::TransformerLayer::gate},
      {sharding::kBlockLinearNames[5], model::LinearSite::kMlpIn, &model::TransformerLayer::up},
      {sharding::kBlockLinearNames[6], model::LinearSite::kMlpDown, &model::TransformerLayer::down},
  };
  return kLinears;
}

CalibrationNeeds CalibrationNeedsOf(const ModelQuantOptions& o) {
  CalibrationNeeds n;
  n.second_moments = o.quant.method != QuantMethod::kRtn || o.correct_input_mismatch;
  n.any = n.second_moments || o.outliers.enabled;
  return n;
}

std::string LinearPrefix(int64_t layer, const BlockLinear& l) {
  return absl::StrCat("model.layers.", layer, ".", l.name);
}

std::vector<int32_t> SelectOutlierChannels(const SiteStats& s, const OutlierOptions& o) {
  std::vector<int32_t> order(static_cast<size_t>(s.width));
  for (int32_t i = 0; i < s.width; ++i) order[i] = i;
  if (!o.enabled) return {};
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return s.absmax[a] > s.absmax[b]; });
  const int64_t cap = static_cast<int64_t>(o.max_fraction * s.width);
  std::vector<int32_t> chosen;
  if (o.top_fraction > 0) {
    const int64_t k = std::min<int64_t>(cap > 0 ? cap : s.width, static_cast<int64_t>(o.top_fraction * s.width + 0.5));
    chosen.assign(order.begin(), order.begin() + k);
  } else {
    for (int32_t c : order) {
      if (static_cast<int64_t>(chosen.size()) >= cap || s.absmax[c] <= o.threshold) break;
      chosen.push_back(c);
    }
  }
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

absl::StatusOr<std::vector<float>> LinearWeights(const model::Transformer& model, const std::string& prefix) {
  ASSIGN_OR_RETURN(model::TensorView w, model.tensors().Get(prefix + ".weight"));
  if (w.shape.size() != 2) return absl::InvalidArgumentError(absl::StrCat(prefix, ".weight is not 2-D"));
  return model::TensorToF32(w, w.numel());
}

absl::StatusOr<std::unique_ptr<model::LinearOp>> MakeLowBitLinear(const model::Transformer& model,
                                                                  const std::string& prefix,
                                                                  std::shared_ptr<const QuantizedMatrix> m,
                                                                  int accumulator_bits) {
  std::vector<float> bias;
  if (model.tensors().Has(prefix + ".bias")) {
    ASSIGN_OR_RETURN(model::TensorView b, model.tensors().Get(prefix + ".bias"));
    ASSIGN_OR_RETURN(bias, model::TensorToF32(b, m->format.out));
  }
  model::LowBitLinearWeights w;
  w.matrix = m->view();
  w.outlier_cols = m->outlier_cols;
  w.outlier_weights = m->outlier_cols.empty() ? nullptr : m->outlier_weights.data();
  w.keep_alive = m;
  w.accumulator_bits = accumulator_bits;
  ASSIGN_OR_RETURN(auto op, model::LowBitLinear::Create(std::move(w), std::move(bias)));
  return std::unique_ptr<model::LinearOp>(std::move(op));
}

absl::StatusOr<std::vector<double>> InputMismatchCorrection(const SiteStats& s, double dampening, ThreadPool* pool) {
  const int64_t n = s.width;
  if (static_cast<int64_t>(s.cross.size()) != n * n) return absl::FailedPreconditionError("no cross moments");
  std::vector<double> h(static_cast<size_t>(n * n));
  double mean_diag = 0;
  for (int64_t i = 0; i < n; ++i) mean_diag += s.hessian[i * n + i];
  mean_diag = mean_diag > 0 ? mean_diag / n : 1;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) h[i * n + j] = h[j * n + i] = s.hessian[i * n + j];
  for (int64_t i = 0; i < n; ++i) h[i * n + i] += dampening * mean_diag + (s.hessian[i * n + i] == 0 ? 1 : 0);
  if (!CholeskyLower(h, n, pool)) return absl::FailedPreconditionError("calibration Hessian is not positive definite");
  // Row i of B solves (H + λI) bᵢᵀ = Δᵢᵀ (H is symmetric): forward then back substitution.
  // Rows are independent: spread over the pool, each summed as on one thread.
  std::vector<double> b(static_cast<size_t>(n * n));
  auto rows = [&](int64_t i0, int64_t i1) {
    std::vector<double> y(static_cast<size_t>(n));
    for (int64_t i = i0; i < i1; ++i) {
      for (int64_t k = 0; k < n; ++k) {
        // Δ[i][k] = C[i][k] - H[i][k] (H from its upper triangle).
        const double hik = i <= k ? s.hessian[i * n + k] : s.hessian[k * n + i];
        double v = s.cross[i * n + k] - hik;
        for (int64_t j = 0; j < k; ++j) v -= h[k * n + j] * y[j];
        y[k] = v / h[k * n + k];
      }
      for (int64_t k = n - 1; k >= 0; --k) {
        double v = y[k];
        for (int64_t j = k + 1; j < n; ++j) v -= h[j * n + k] * b[i * n + j];
        b[i * n + k] = v / h[k * n + k];
      }
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(n, rows);
  } else {
    rows(0, n);
  }
  return b;
}

absl::StatusOr<std::vector<std::unique_ptr<model::LinearOp>>> QuantizeBlock(
    model::Transformer& model, int64_t layer, const CalibrationStats& stats, const ModelQuantOptions& options,
    ThreadPool& pool, QuantizedMatrices* out, const LinearMask* which, const LinearBits* bits) {
  std::vector<std::unique_ptr<model::LinearOp>> new_ops;
  std::map<int, std::vector<double>> corrections;  // per input site, shared by its linears
  for (int li = 0; li < sharding::kBlockLinears; ++li) {
    const BlockLinear& bl = BlockLinears()[li];
    if (which != nullptr && !(*which)[li]) {
      new_ops.push_back(nullptr);  // stays as it is
      continue;
    }
    const std::string prefix = LinearPrefix(layer, bl);
    const SiteStats* site = stats.Get(layer, bl.site);
    if (site == nullptr && options.quant.method != QuantMethod::kRtn) {
      return absl::FailedPreconditionError(absl::StrCat("no calibration statistics for ", prefix));
    }
    ASSIGN_OR_RETURN(std::vector<float> w, LinearWeights(model, prefix));
    if (site != nullptr && !site->cross.empty() && options.correct_input_mismatch) {
      auto it = corrections.find(static_cast<int>(bl.site));
      if (it == corrections.end()) {
        ASSIGN_OR_RETURN(auto b, InputMismatchCorrection(*site, options.quant.dampening, &pool));
        it = corrections.emplace(static_cast<int>(bl.site), std::move(b)).first;
      }
      const std::vector<double>& b = it->second;
      const int64_t in = site->width, rows = static_cast<int64_t>(w.size()) / in;
      pool.ParallelFor(rows, [&](int64_t r0, int64_t r1) {
        std::vector<double> delta(static_cast<size_t>(in));
        for (int64_t r = r0; r < r1; ++r) {
          float* wr = w.data() + r * in;
          std::fill(delta.begin(), delta.end(), 0.0);
          for (int64_t i = 0; i < in; ++i) {
            if (wr[i] == 0.f) continue;
            const double* bi = b.data() + i * in;
            for (int64_t j = 0; j < in; ++j) delta[j] += wr[i] * bi[j];
          }
          for (int64_t j = 0; j < in; ++j) wr[j] += static_cast<float>(delta[j]);
        }
      });
    }
    model::LinearOp& current = *(model.layer(layer).*bl.op);
    const int64_t rows = current.out_features(), cols = current.in_features();
    std::vector<int32_t> outliers =
        site != nullptr ? SelectOutlierChannels(*site, options.outliers) : std::vector<int32_t>{};
    QuantOptions qo = options.quant;
    if (bits != nullptr) qo.bits = (*bits)[li];
    if (options.down_group_size > 0 && model::PackManifest::IsBlockDownProjection(prefix))
      qo.group_size = options.down_group_size;
    ASSIGN_OR_RETURN(QuantizedMatrix q,
                     QuantizeMatrix(w.data(), rows, cols, site ? &site->hessian : nullptr, outliers, qo, pool));
    auto shared = std::make_shared<const QuantizedMatrix>(std::move(q));
    ASSIGN_OR_RETURN(auto op, MakeLowBitLinear(model, prefix, shared, qo.accumulator_bits));
    new_ops.push_back(std::move(op));
    if (out != nullptr) (*out)[prefix] = shared;
  }
  std::vector<std::unique_ptr<model::LinearOp>> displaced;
  size_t i = 0;
  for (const BlockLinear& bl : BlockLinears()) {
    if (new_ops[i] == nullptr) {
      displaced.push_back(nullptr);
    } else {
      displaced.push_back(std::move(model.layer(layer).*bl.op));
      model.layer(layer).*bl.op = std::move(new_ops[i]);
    }
    ++i;
  }
  return displaced;
}

void RestoreBlock(model::Transformer& model, int64_t layer, std::vector<std::unique_ptr<model::LinearOp>> ops) {
  size_t i = 0;
  for (const BlockLinear& bl : BlockLinears()) {
    if (ops[i] != nullptr) model.layer(layer).*bl.op = std::move(ops[i]);
    ++i;
  }
}

absl::StatusOr<QuantizedMatrices> QuantizeModel(model::Transformer& model, CalibrationStats& stats,
                                                const sharding::PrecisionPlan& plan, const ModelQuantOptions& options,
                                                ThreadPool& pool,
                                                const std::vector<std::vector<int32_t>>& sequential_chunks,
                                                const ProgressFn& progress, model::Transformer* reference) {
  const int64_t n = model.config().num_layers;
  if (static_cast<int64_t>(plan.layers.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat("plan has ", plan.layers.size(), " layers, the model ", n));
  }
  QuantizedMatrices out;
  const int64_t total = plan.CountLowBit();
  const bool recollect = !sequential_chunks.empty() && CalibrationNeedsOf(options).any;
  const bool paired = reference != nullptr && options.correct_input_mismatch;
  int64_t last_low_bit = -1;
  for (int64_t l = 0; l < n; ++l)
    if (plan.layers[l] == sharding::LayerPrecision::kLowBit) last_low_bit = l;
  std::optional<BlockwiseCalibration> blockwise;
  if (recollect && !paired) {
    ASSIGN_OR_RETURN(BlockwiseCalibration b, BlockwiseCalibration::Start(model, sequential_chunks));
    blockwise.emplace(std::move(b));
  }
  int64_t done = 0;
  for (int64_t l = 0; l <= last_low_bit; ++l) {
    if (plan.layers[l] == sharding::LayerPrecision::kLowBit) {
      if (progress) progress(done, total, absl::StrCat("layer ", l));
      if (recollect && done > 0) {  // upstream blocks changed: re-collect this one's inputs
        stats.Clear(l);
        if (paired) {
          RETURN_IF_ERROR(RunPairedCalibration(*reference, model, l, sequential_chunks, stats));
        } else {
          RETURN_IF_ERROR(blockwise->Observe(stats));
        }
      }
      LinearMask which;
      LinearBits bits;
      for (int li = 0; li < sharding::kBlockLinears; ++li) {
        which[li] = plan.LinearIsLowBit(l, li);
        bits[li] = plan.LinearBits(l, li);
      }
      auto displaced = QuantizeBlock(model, l, stats, options, pool, &out, &which, &bits);
      if (!displaced.ok()) return displaced.status();
      ++done;
    }
    // The next blocks' inputs pass through this one as it now is.
    if (blockwise.has_value() && l < last_low_bit) RETURN_IF_ERROR(blockwise->Advance());
  }
  if (progress) progress(done, total, "done");
  return out;
}

absl::Status QuantizeEmbeddingsAndHead(model::Transformer& model, CalibrationStats& stats,
                                       const ModelQuantOptions& options, ThreadPool& pool,
                                       const std::vector<std::vector<int32_t>>& sequential_chunks,
                                       QuantizedMatrices* out, Int8Matrices* out8) {
  const model::ModelConfig& c = model.config();
  const bool lm_head_int8 = options.lm_head_bits == 8, lm_head_grouped = options.lm_head_bits > 0 && !lm_head_int8;
  if (lm_head_int8) {
    if (!model.tensors().Has("lm_head.weight")) {
      return absl::InvalidArgumentError("the LM head is tied to the embeddings: it cannot be INT8 on its own");
    }
    ASSIGN_OR_RETURN(std::vector<float> w, LinearWeights(model, "lm_head"));
    auto q =
        std::make_shared<const model::Int8Quantized>(model::QuantizeInt8Rows(w.data(), c.vocab_size, c.hidden_size));
    model::Int8Data d;
    d.out = q->out;
    d.in = q->in;
    d.codes = q->codes.data();
    d.scales = q->scales.data();
    d.keep_alive = q;
    ASSIGN_OR_RETURN(auto op, model::Int8Linear::Create(std::move(d), {}));
    model.set_lm_head(std::move(op));
    if (out8 != nullptr) (*out8)["lm_head"] = q;
  }
  if (options.embedding_bits > 0) {
    ASSIGN_OR_RETURN(std::vector<float> w, LinearWeights(model, "model.embed_tokens"));
    QuantOptions q = options.quant;
    q.bits = options.embedding_bits;
    q.method = QuantMethod::kRtn;  // a lookup table: no input statistics to feed back
    q.search_grid = true;
    q.accumulator_bits = 0;
    ASSIGN_OR_RETURN(QuantizedMatrix m, QuantizeMatrix(w.data(), c.vocab_size, c.hidden_size, nullptr, {}, q, pool));
    auto shared = std::make_shared<const QuantizedMatrix>(std::move(m));
    ASSIGN_OR_RETURN(auto op, MakeLowBitLinear(model, "model.embed_tokens", shared, q.accumulator_bits));
    model.set_low_bit_embedding(
        std::shared_ptr<const model::LowBitLinear>(static_cast<model::LowBitLinear*>(op.release())));
    (*out)["model.embed_tokens"] = shared;
  }
  if (lm_head_grouped) {
    if (!model.tensors().Has("lm_head.weight")) {
      return absl::InvalidArgumentError("the LM head is tied to the embeddings: quantize the embeddings alone");
    }
    const int64_t head_layer = c.num_layers;  // the observer's index for the head's input
    if (!sequential_chunks.empty() && CalibrationNeedsOf(options).any) {
      stats.Clear(head_layer);
      stats.set_layer_filter(head_layer);
      absl::Status s = RunCalibration(model, sequential_chunks, stats);
      stats.set_layer_filter(-1);
      RETURN_IF_ERROR(s);
    }
    const SiteStats* site = stats.Get(head_layer, model::LinearSite::kHeadIn);
    if (site == nullptr && options.quant.method != QuantMethod::kRtn) {
      return absl::FailedPreconditionError("no calibration statistics for the LM head");
    }
    ASSIGN_OR_RETURN(std::vector<float> w, LinearWeights(model, "lm_head"));
    std::vector<int32_t> outliers = site ? SelectOutlierChannels(*site, options.outliers) : std::vector<int32_t>{};
    QuantOptions q = options.quant;
    q.bits = options.lm_head_bits;
    ASSIGN_OR_RETURN(QuantizedMatrix m, QuantizeMatrix(w.data(), c.vocab_size, c.hidden_size,
                                                       site ? &site->hessian : nullptr, outliers, q, pool));
    auto shared = std::make_shared<const QuantizedMatrix>(std::move(m));
    ASSIGN_OR_RETURN(auto op, MakeLowBitLinear(model, "lm_head", shared, q.accumulator_bits));
    model.set_lm_head(std::move(op));
    (*out)["lm_head"] = shared;
  }
  return absl::OkStatus();
}

}  // namespace accullm::quant
