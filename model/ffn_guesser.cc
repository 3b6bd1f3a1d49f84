#include "model/ffn_guesser.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/mapped_file.h"
#include "common/status.h"
#include "kernels/cpu/kept_by_product.h"
#include "kernels/cpu/silu_mul_mask.h"
#include "model/weight_check.h"

namespace accullm::model {

std::string GuesserInName(int64_t layer) { return absl::StrCat("model.layers.", layer, ".mlp.guesser.in"); }
std::string GuesserOutName(int64_t layer) { return absl::StrCat("model.layers.", layer, ".mlp.guesser.out"); }

namespace {

absl::StatusOr<TensorView> GuesserTensor(const SafetensorsFile& file, const std::string& name,
                                         const std::vector<int64_t>& shape) {
  auto it = file.tensors().find(name);
  if (it == file.tensors().end())
    return absl::InvalidArgumentError(absl::StrCat(file.path(), ": the guesser tensor ", name, " is missing"));
  const TensorView& t = it->second;
  if (t.dtype != DType::kF16)
    return absl::InvalidArgumentError(absl::StrCat(file.path(), ": the guesser tensor ", name, " must be F16"));
  if (t.shape != shape) return ShapeError(t, shape);
  RETURN_IF_ERROR(CheckFinite(t));
  return t;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FfnGuesser>> FfnGuesser::Load(const std::string& dir, const ModelConfig& config,
                                                             const PackSparsity& sparsity) {
  if (sparsity.predictor != "lowrank" || sparsity.rank < 1)
    return absl::InvalidArgumentError("the FFN guesser needs sparsity predictor \"lowrank\" with a rank >= 1");
  if (sparsity.rank > config.hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat(dir, "/", kPackManifestFile, ": guesser rank ", sparsity.rank,
                                                   " exceeds the hidden size ", config.hidden_size));
  }
  auto g = std::unique_ptr<FfnGuesser>(new FfnGuesser());
  ASSIGN_OR_RETURN(g->file_, SafetensorsFile::Open(absl::StrCat(dir, "/", kGuesserFile)));
  g->rank_ = sparsity.rank;
  g->inter_ = config.intermediate_size;
  for (int64_t l = 0; l < config.num_layers; ++l) {
    ASSIGN_OR_RETURN(TensorView in, GuesserTensor(*g->file_, GuesserInName(l), {g->rank_, config.hidden_size}));
    ASSIGN_OR_RETURN(TensorView out, GuesserTensor(*g->file_, GuesserOutName(l), {2 * g->inter_, g->rank_}));
    Layer layer;
    ASSIGN_OR_RETURN(layer.in, DenseLinear::Create(in, nullptr));
    layer.out = kernels::QuantizeScaledRows(reinterpret_cast<const uint16_t*>(out.data), 2 * g->inter_, g->rank_,
                                            sparsity.guesser_out_bits);
    ReleaseResidentPages(out.data, out.nbytes);  // read once: the integer copy is what runs
    g->layers_.push_back(std::move(layer));
  }
  // Every expected tensor is there; anything more is not a guesser this build wrote.
  const size_t expected = 2 * static_cast<size_t>(config.num_layers);
  if (g->file_->tensors().size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(g->file_->path(), ": holds ", g->file_->tensors().size(),
                                                   " tensors; the guesser of ", config.num_layers, " layers has ",
                                                   expected));
  }
  return g;
}

size_t FfnGuesser::weight_bytes() const {
  size_t bytes = 0;
  for (const Layer& l : layers_) bytes += l.in->weight_bytes() + l.out.bytes();
  return bytes;
}

void FfnGuesser::Predict(int64_t layer, const float* x, int64_t n, float* predicted, ThreadPool& pool) const {
  const Layer& L = layers_[static_cast<size_t>(layer)];
  thread_local std::vector<float> low;
  low.resize(static_cast<size_t>(n * rank_));
  L.in->Forward(x, n, low.data(), pool);
  // A pointer, not the thread_local vector: inside the lambda that name would be the
  // workers' own (empty) buffer.
  const float* low_rows = low.data();
  pool.ParallelFor(L.out.blocks(),
                   [&](int64_t b0, int64_t b1) { kernels::ScaledRowsForward(L.out, low_rows, n, b0, b1, predicted); });
}

void FfnGuesser::Scores(int64_t layer, const float* x, int64_t n, float* scores, ThreadPool& pool) const {
  thread_local std::vector<float> predicted;
  predicted.resize(static_cast<size_t>(n * 2 * inter_));
  Predict(layer, x, n, predicted.data(), pool);
  for (int64_t r = 0; r < n; ++r) {
    const float* p = predicted.data() + r * 2 * inter_;
    // SiLU·up keeping every neuron (threshold below any magnitude): the kernels' own SiLU.
    float* s = scores + r * inter_;
    kernels::SiluMulMasked(p, p + inter_, inter_, -1.0f, s);
    for (int64_t j = 0; j < inter_; ++j) s[j] = std::fabs(s[j]);
  }
}

absl::Status GuesserNeuronSelector::Select(int64_t layer, const float* x, int64_t n, ThreadPool& pool,
                                           FfnKeptSets& out) const {
  if (layer < 0 || static_cast<size_t>(layer) >= thresholds_.size())
    return absl::InvalidArgumentError(absl::StrCat("the guesser has no threshold for layer ", layer));
  const int64_t inter = guesser_->intermediate_size();
  thread_local std::vector<float> predicted;
  predicted.resize(static_cast<size_t>(n * 2 * inter));
  guesser_->Predict(layer, x, n, predicted.data(), pool);
  const float threshold = thresholds_[static_cast<size_t>(layer)];
  out.neurons.clear();
  out.row_begin.assign(1, 0);
  for (int64_t r = 0; r < n; ++r) {
    const float* p = predicted.data() + r * 2 * inter;
    // Scores' test (score > threshold) without the scores: the same decisions, one exp per
    // neuron only near the threshold (kernels/cpu/kept_by_product.h).
    const size_t base = out.neurons.size();
    out.neurons.resize(base + static_cast<size_t>(inter));
    const int64_t count = kernels::KeptByProduct(p, p + inter, inter, threshold, out.neurons.data() + base);
    out.neurons.resize(base + static_cast<size_t>(count));
    out.row_begin.push_back(static_cast<int64_t>(out.neurons.size()));
  }
  return absl::OkStatus();
}

}  // namespace accullm::model
