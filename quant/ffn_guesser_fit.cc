#include "quant/ffn_guesser_fit.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/status.h"
#include "model/linear_group.h"
#include "quant/safetensors_writer.h"

namespace accullm::quant {
namespace {

using RowMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// B [hidden, 2·inter]: row k = [gate(e_k), up(e_k)], the pack's own linears on unit vectors.
// A one-hot row quantizes exactly to INT8 (its block's scale is the one value / 127), so this
// reads the stored weights as the inference kernels combine them.
RowMatrixD LinearMapOf(model::TransformerLayer& L, int64_t hidden, int64_t inter, ThreadPool& pool) {
  std::vector<float> eye(static_cast<size_t>(hidden * hidden), 0.0f);
  for (int64_t k = 0; k < hidden; ++k) eye[static_cast<size_t>(k * hidden + k)] = 1.0f;
  std::vector<float> g(static_cast<size_t>(hidden * inter)), u(g.size());
  model::ForwardSameInput({{L.gate.get(), g.data()}, {L.up.get(), u.data()}}, eye.data(), hidden, pool);
  RowMatrixD b(hidden, 2 * inter);
  for (int64_t k = 0; k < hidden; ++k) {
    for (int64_t j = 0; j < inter; ++j) {
      b(k, j) = g[static_cast<size_t>(k * inter + j)];
      b(k, inter + j) = u[static_cast<size_t>(k * inter + j)];
    }
  }
  return b;
}

std::vector<uint16_t> ToF16(const RowMatrixD& m) {
  std::vector<uint16_t> out(static_cast<size_t>(m.size()));
  for (Eigen::Index i = 0; i < m.size(); ++i) out[static_cast<size_t>(i)] = F32ToF16(static_cast<float>(m.data()[i]));
  return out;
}

}  // namespace

FfnInputCovariance::FfnInputCovariance(const model::ModelConfig& config)
    : hidden_(config.hidden_size),
      sums_(static_cast<size_t>(config.num_layers), std::vector<double>(static_cast<size_t>(hidden_ * hidden_), 0.0)) {}

FfnInputCovariance::~FfnInputCovariance() = default;

void FfnInputCovariance::Observe(int64_t layer, model::LinearSite site, const float* x, int64_t rows,
                                 int64_t width) {
  if (site != model::LinearSite::kMlpIn || width != hidden_) return;
  Eigen::Map<RowMatrixD> sum(sums_[static_cast<size_t>(layer)].data(), hidden_, hidden_);
  const Eigen::Map<const RowMatrixF> xs(x, rows, width);
  // Σ x xᵀ in double (the lower triangle; rankUpdate is the BLAS syrk).
  sum.selfadjointView<Eigen::Lower>().rankUpdate(xs.cast<double>().transpose());
  if (layer == 0) tokens_ += rows;
}

size_t FfnWeightBytes(const model::Transformer& pack) {
  size_t bytes = 0;
  for (int64_t l = 0; l < pack.config().num_layers; ++l) {
    const model::TransformerLayer& L = pack.layer(l);
    bytes += L.gate->weight_bytes() + L.up->weight_bytes() + L.down->weight_bytes();
  }
  return bytes;
}

int64_t DefaultGuesserRank(const model::Transformer& pack, double byte_share) {
  const model::ModelConfig& c = pack.config();
  // The mean over layers (a mixed plan keeps some FFN linears FP16).
  const double ffn_bytes =
      static_cast<double>(FfnWeightBytes(pack)) / static_cast<double>(std::max<int64_t>(c.num_layers, 1));
  // F16: 2 bytes per entry of in [r, hidden] and out [2·inter, r].
  const double per_rank = 2.0 * static_cast<double>(c.hidden_size + 2 * c.intermediate_size);
  const auto r = static_cast<int64_t>(std::floor(byte_share * ffn_bytes / per_rank));
  return std::clamp<int64_t>(r, 1, c.hidden_size);
}

absl::Status FitFfnGuesser(model::Transformer& pack, const FfnInputCovariance& covariance, int64_t rank,
                           const std::string& pack_dir, ThreadPool& pool) {
  const model::ModelConfig& c = pack.config();
  const int64_t d = c.hidden_size, inter = c.intermediate_size;
  if (rank < 1 || rank > d) return absl::InvalidArgumentError(absl::StrCat("guesser rank must be in [1, ", d, "]"));
  if (covariance.tokens() < d) {
    return absl::FailedPreconditionError(absl::StrCat("the guesser needs at least ", d,
                                                      " calibration tokens (one per hidden dimension); got ",
                                                      covariance.tokens()));
  }
  SafetensorsWriter writer;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    RowMatrixD cov = Eigen::Map<const RowMatrixD>(covariance.lower(l).data(), d, d);
    cov = cov.selfadjointView<Eigen::Lower>();
    cov /= static_cast<double>(covariance.tokens());
    // A small ridge keeps the factor defined when some direction never occurs in calibration.
    const double ridge = 1e-6 * std::max(cov.trace() / static_cast<double>(d), 1e-30);
    cov.diagonal().array() += ridge;
    Eigen::LLT<RowMatrixD> llt(cov);
    if (llt.info() != Eigen::Success)
      return absl::InternalError(absl::StrCat("layer ", l, ": the FFN input covariance is not positive definite"));
    const RowMatrixD b = LinearMapOf(pack.layer(l), d, inter, pool);
    const RowMatrixD z = llt.matrixU() * b;  // Lᵀ B: U = Lᵀ
    const RowMatrixD zzt = z * z.transpose();
    Eigen::SelfAdjointEigenSolver<RowMatrixD> eig(zzt);
    if (eig.info() != Eigen::Success) return absl::InternalError(absl::StrCat("layer ", l, ": eigensolver failed"));
    // Eigenvalues ascend: the top r are the last columns.
    RowMatrixD v(2 * inter, rank);
    for (int64_t k = 0; k < rank; ++k) {
      const Eigen::Index col = d - 1 - k;
      const double sigma = std::sqrt(std::max(eig.eigenvalues()(col), 0.0));
      if (sigma > 0) {
        v.col(k) = z.transpose() * eig.eigenvectors().col(col) / sigma;
      } else {
        v.col(k).setZero();  // a direction the data never excites predicts nothing
      }
    }
    const RowMatrixD in = (b * v).transpose();  // [rank, hidden]
    const std::vector<uint16_t> in16 = ToF16(in), out16 = ToF16(v);
    for (uint16_t h : in16) {
      if (!std::isfinite(F16ToF32(h))) return absl::InternalError(absl::StrCat("layer ", l, ": guesser overflows F16"));
    }
    for (uint16_t h : out16) {
      if (!std::isfinite(F16ToF32(h))) return absl::InternalError(absl::StrCat("layer ", l, ": guesser overflows F16"));
    }
    writer.Add(model::GuesserInName(l), DType::kF16, {rank, d}, in16.data(), in16.size() * 2);
    writer.Add(model::GuesserOutName(l), DType::kF16, {2 * inter, rank}, out16.data(), out16.size() * 2);
  }
  writer.AddMetadata("accullm.guesser", absl::StrCat("lowrank rank ", rank, ", ", covariance.tokens(), " tokens"));
  return writer.Write(absl::StrCat(pack_dir, "/", model::kGuesserFile));
}

GuesserScoreStatistics::GuesserScoreStatistics(const model::FfnGuesser& guesser, const model::ModelConfig& config,
                                               ThreadPool& pool)
    : guesser_(guesser), pool_(pool), inter_(config.intermediate_size),
      scores_(static_cast<size_t>(config.num_layers)) {}

void GuesserScoreStatistics::Observe(int64_t layer, model::LinearSite site, const float* x, int64_t rows,
                                     int64_t width) {
  (void)width;
  if (site != model::LinearSite::kMlpIn) return;
  buffer_.resize(static_cast<size_t>(rows * inter_));
  guesser_.Scores(layer, x, rows, buffer_.data(), pool_);
  MagnitudeHistogram& h = scores_[static_cast<size_t>(layer)];
  for (float s : buffer_) h.Add(s);
}

std::vector<float> GuesserScoreStatistics::Thresholds(double target) const {
  std::vector<float> out;
  for (const MagnitudeHistogram& h : scores_) out.push_back(h.Quantile(target));
  return out;
}

}  // namespace accullm::quant
