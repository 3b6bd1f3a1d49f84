#include "model/low_bit_linear.h"

#include <algorithm>
#include <atomic>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/mapped_file.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/low_bit_axe16_kernels.h"
#include "kernels/cpu/low_bit_int8_kernels.h"
#include "kernels/cpu/low_bit_kernels.h"

namespace accullm::model {

absl::StatusOr<std::unique_ptr<LowBitLinear>> LowBitLinear::Create(LowBitLinearWeights w, std::vector<float> bias) {
  const kernels::LowBitMatrix& m = w.matrix;
  if (m.out <= 0 || m.in <= 0 || m.in % 8 != 0) return absl::InvalidArgumentError("quantized matrix: bad shape");
  if (m.group <= 0 || m.in % m.group != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("quantized matrix: group size ", m.group, " does not divide ", m.in));
  }
  if (m.codes == nullptr || (m.scales == nullptr && (m.scale_codes == nullptr || m.row_scales == nullptr)))
    return absl::InvalidArgumentError("quantized matrix: missing arrays");
  if (m.bits < kernels::kMinCodeBits || m.bits > kernels::kMaxCodeBits) {
    return absl::InvalidArgumentError(absl::StrCat("quantized matrix: ", m.bits, "-bit codes (3 to 8 supported)"));
  }
  if (m.zero_frac_bits < 0 || m.zero_frac_bits > kernels::ZeroFractionBits(4, m.bits)) {
    return absl::InvalidArgumentError(absl::StrCat("quantized matrix: zero points with ", m.zero_frac_bits,
                                                   " fraction bits (at most ", kernels::ZeroFractionBits(4, m.bits),
                                                   " at ", m.bits, " bits)"));
  }
  for (size_t i = 0; i < w.outlier_cols.size(); ++i) {
    if (w.outlier_cols[i] < 0 || w.outlier_cols[i] >= m.in || (i > 0 && w.outlier_cols[i] <= w.outlier_cols[i - 1])) {
      return absl::InvalidArgumentError("quantized matrix: outlier channels must be sorted, unique and < in");
    }
  }
  if (!w.outlier_cols.empty() && w.outlier_weights == nullptr) {
    return absl::InvalidArgumentError("quantized matrix: outlier channels without weights");
  }
  if (!bias.empty() && static_cast<int64_t>(bias.size()) != m.out)
    return absl::InvalidArgumentError("quantized matrix: bias size");
  auto l = std::unique_ptr<LowBitLinear>(new LowBitLinear());
  l->w_ = std::move(w);
  l->bias_ = std::move(bias);
  l->outlier_mask_.assign(static_cast<size_t>(l->w_.matrix.in), 0);
  for (int32_t c : l->w_.outlier_cols) l->outlier_mask_[c] = 1;
  return l;
}

size_t LowBitLinear::weight_bytes() const {
  return static_cast<size_t>(kernels::StoredBytes(w_.matrix)) +
         w_.outlier_cols.size() * static_cast<size_t>(w_.matrix.out) * 2;
}

size_t LowBitLinear::streamed_bytes() const {
  if (!int8_) return weight_bytes();
  // The tiled copy: 3-bit codes take a nibble, 5..7-bit ones a byte (low_bit_tiles.h).
  return kernels::LowBitTilesBytes(w_.matrix, TileOptions()) +
         w_.outlier_cols.size() * static_cast<size_t>(w_.matrix.out) * 2;
}

bool LowBitLinear::UseInt8Activations() {
  if (!kernels::LowBitTilesRefusal(w_.matrix).empty()) return false;
  int8_ = true;
  return true;
}

void LowBitLinear::DequantizeRow(int64_t o, float* dst) const {
  kernels::DequantizeLowBitRow(w_.matrix, o, dst);
  const size_t k = w_.outlier_cols.size();
  for (size_t j = 0; j < k; ++j) dst[w_.outlier_cols[j]] = F16ToF32(w_.outlier_weights[o * k + j]);
}

void LowBitLinear::AddOutliersAndBias(const float* x, int64_t n, int64_t o0, int64_t o1, float* y) const {
  const int64_t in = w_.matrix.in, out = w_.matrix.out, k = static_cast<int64_t>(w_.outlier_cols.size());
  if (k > 0) {  // the sparse FP16 part: a few columns, so a plain loop
    for (int64_t o = o0; o < o1; ++o) {
      const uint16_t* w = w_.outlier_weights + o * k;
      for (int64_t r = 0; r < n; ++r) {
        float acc = 0.f;
        for (int64_t j = 0; j < k; ++j) acc += F16ToF32(w[j]) * x[r * in + w_.outlier_cols[j]];
        y[r * out + o] += acc;
      }
    }
  }
  if (!bias_.empty()) {
    for (int64_t r = 0; r < n; ++r)
      for (int64_t o = o0; o < o1; ++o) y[r * out + o] += bias_[o];
  }
}

bool LowBitLinear::SharesInt8Input(const LowBitLinear& other) const {
  return int8_ && other.int8_ && act_quant_ == other.act_quant_ && w_.matrix.in == other.w_.matrix.in &&
         w_.matrix.group == other.w_.matrix.group && w_.outlier_cols == other.w_.outlier_cols;
}

kernels::Int8Activations& LowBitLinear::InputScratch() {
  // One per thread, as several models may run in one process.
  thread_local kernels::Int8Activations scratch;
  return scratch;
}

void LowBitLinear::QuantizeInput(const float* x, int64_t n, kernels::Int8Activations& xq) const {
  kernels::QuantizeInt8Blocks(x, n, w_.matrix.in, w_.matrix.group,
                              w_.outlier_cols.empty() ? nullptr : outlier_mask_.data(), xq, act_quant_);
  // The 16-bit kernel's per-lane activation sums: once per quantized input, not per thread
  // (cleared otherwise, so a linear sharing xq never reads another input's sums).
  xq.lane_sums.clear();
  if (axe16_ && kernels::Axe16KernelActive()) kernels::Axe16LaneSums(xq, xq.lane_sums);
}

kernels::TileOptions LowBitLinear::TileOptions() const {
  // A matrix that may run the AXE 16-bit kernel keeps a byte per 5- or 6-bit code (the
  // layout that kernel reads); every other one streams them in bit planes.
  return {.planes = !(w_.accumulator_bits > 0 && w_.accumulator_bits <= 16)};
}

const kernels::LowBitTiles& LowBitLinear::Tiles(ThreadPool& pool) const {
  std::call_once(tiled_, [&] {
    auto tiles = std::make_unique<kernels::LowBitTiles>(kernels::AllocateLowBitTiles(w_.matrix, TileOptions()));
    pool.ParallelFor(tiles->tiles,
                     [&](int64_t t0, int64_t t1) { kernels::FillLowBitTiles(w_.matrix, t0, t1, *tiles); });
    // The pack's word is not taken on trust: a forged or damaged matrix would give wrong
    // results in 16 bits, so its bound is checked (one pass over the tiled codes).
    if (w_.accumulator_bits > 0 && w_.accumulator_bits <= 16 && kernels::Axe16FormatRefusal(*tiles).empty()) {
      std::atomic<bool> fits{true};
      pool.ParallelFor(tiles->tiles, [&](int64_t t0, int64_t t1) {
        if (kernels::Axe16WorstLaneL1(*tiles, t0, t1) > kernels::kAxe16MaxLaneL1) fits = false;
      });
      axe16_ = fits;
    }
    tiles_ = std::move(tiles);
    // The kernels read the tiled copy from now on: the mapped pack pages need not stay
    // resident beside it (the scalar level, `--exact` and embedding lookups read them again
    // on demand).
    ReleaseMappedPages();
  });
  return *tiles_;
}

void LowBitLinear::ReleaseMappedPages() const {
  const kernels::LowBitMatrix& m = w_.matrix;
  const int64_t entries = m.out * m.groups_per_row();
  ReleaseResidentPages(m.codes, static_cast<size_t>(m.out * kernels::CodeRowBytes(m.in, m.bits)));
  if (m.scales != nullptr) ReleaseResidentPages(m.scales, static_cast<size_t>(entries) * sizeof(uint16_t));
  if (m.scale_codes != nullptr) ReleaseResidentPages(m.scale_codes, static_cast<size_t>(entries));
  if (m.zeros != nullptr) ReleaseResidentPages(m.zeros, static_cast<size_t>(entries));
}

const kernels::SparseRowsLayout& LowBitLinear::SparseRows(ThreadPool& pool) const {
  std::call_once(sparse_rows_made_, [&] {
    auto rows = std::make_unique<kernels::SparseRowsLayout>(kernels::AllocateSparseRows(w_.matrix));
    pool.ParallelFor(
        w_.matrix.out, [&](int64_t r0, int64_t r1) { kernels::FillSparseRows(w_.matrix, r0, r1, *rows); },
        /*min_chunk=*/64);
    sparse_bytes_ += rows->bytes();
    sparse_rows_ = std::move(rows);
    ReleaseMappedPages();
  });
  return *sparse_rows_;
}

bool LowBitLinear::SparseFfnJoinable(const LowBitLinear& up, const LowBitLinear& down) const {
  return kernels::SparseFfnRefusal(&w_.matrix, up.w_.matrix, down.w_.matrix).empty();
}

bool LowBitLinear::SparseUpDownJoinable(const LowBitLinear& down) const {
  return kernels::SparseFfnRefusal(nullptr, w_.matrix, down.w_.matrix).empty();
}

const kernels::SparseFfnLayouts& LowBitLinear::SparseFfn(const LowBitLinear& up, const LowBitLinear& down,
                                                         ThreadPool& pool) const {
  return JointSparseFfn(this, up, down, pool);
}

const kernels::SparseFfnLayouts& LowBitLinear::SparseUpDown(const LowBitLinear& down, ThreadPool& pool) const {
  return JointSparseFfn(nullptr, *this, down, pool);
}

const kernels::SparseFfnLayouts& LowBitLinear::JointSparseFfn(const LowBitLinear* gate, const LowBitLinear& up,
                                                              const LowBitLinear& down, ThreadPool& pool) const {
  std::call_once(sparse_ffn_made_, [&] {
    const kernels::LowBitMatrix *g = gate != nullptr ? &gate->w_.matrix : nullptr, &u = up.w_.matrix,
                                &d = down.w_.matrix;
    auto joint = std::make_unique<kernels::SparseFfnLayouts>(kernels::AllocateSparseFfn(g, u, d));
    pool.ParallelFor(
        u.out, [&](int64_t r0, int64_t r1) { kernels::FillSparseFfnRows(g, u, r0, r1, *joint); },
        /*min_chunk=*/64);
    pool.ParallelFor(joint->down.blocks(),
                     [&](int64_t b0, int64_t b1) { kernels::FillSparseFfnColumns(d, b0, b1, *joint); });
    sparse_bytes_ += joint->rows.bytes() + joint->down.bytes();
    sparse_ffn_ = std::move(joint);
    if (gate != nullptr) gate->ReleaseMappedPages();
    up.ReleaseMappedPages();
    down.ReleaseMappedPages();
  });
  return *sparse_ffn_;
}

const kernels::SparseColumnsLayout& LowBitLinear::SparseColumns(ThreadPool& pool) const {
  std::call_once(sparse_columns_made_, [&] {
    auto columns = std::make_unique<kernels::SparseColumnsLayout>(kernels::AllocateSparseColumns(w_.matrix));
    pool.ParallelFor(columns->blocks(),
                     [&](int64_t b0, int64_t b1) { kernels::FillSparseColumns(w_.matrix, b0, b1, *columns); });
    sparse_bytes_ += columns->bytes();
    sparse_columns_ = std::move(columns);
    ReleaseMappedPages();
  });
  return *sparse_columns_;
}

size_t LowBitLinear::sparse_bytes() const { return sparse_bytes_.load(); }

void LowBitLinear::AddOutliersAndBiasRows(const float* x, const int32_t* kept, int64_t k0, int64_t k1, float* y) const {
  // AddOutliersAndBias's operations for one row, in its order: the outlier sum, then the bias.
  const int64_t k = static_cast<int64_t>(w_.outlier_cols.size());
  if (k > 0) {
    for (int64_t i = k0; i < k1; ++i) {
      const uint16_t* w = w_.outlier_weights + static_cast<int64_t>(kept[i]) * k;
      float acc = 0.f;
      for (int64_t j = 0; j < k; ++j) acc += F16ToF32(w[j]) * x[w_.outlier_cols[j]];
      y[i] += acc;
    }
  }
  if (!bias_.empty()) {
    for (int64_t i = k0; i < k1; ++i) y[i] += bias_[kept[i]];
  }
}

void LowBitLinear::ForwardSparseRows(const kernels::SparseRowsLayout& rows, const kernels::Int8Activations& xq,
                                     const float* x, const int32_t* kept, int64_t k0, int64_t k1, float* y) const {
  kernels::SparseRowsInt8(rows, xq, kept, k0, k1, y);
  AddOutliersAndBiasRows(x, kept, k0, k1, y);
}

void LowBitLinear::ForwardSparsePairRows(const kernels::SparseRowsLayout& pair, const LowBitLinear& up,
                                         const kernels::Int8Activations& xq, const float* x, const int32_t* kept,
                                         int64_t k0, int64_t k1, float* g, float* u) const {
  kernels::SparsePairRowsInt8(pair, xq, kept, k0, k1, g, u);
  if (g != nullptr) AddOutliersAndBiasRows(x, kept, k0, k1, g);
  up.AddOutliersAndBiasRows(x, kept, k0, k1, u);
}

void LowBitLinear::ForwardSparseColumns(const kernels::SparseColumnsLayout& columns, const kernels::Int8Activations& xq,
                                        const kernels::SparseNeurons& nonzero, const float* x, int64_t b0, int64_t b1,
                                        float* y) const {
  kernels::SparseDownInt8(columns, xq, nonzero, b0, b1, y);
  AddOutliersAndBias(x, 1, b0 * kernels::kSparseDownBlockOutputs,
                     std::min(w_.matrix.out, b1 * kernels::kSparseDownBlockOutputs), y);
}

void LowBitLinear::ForwardTiles(const kernels::LowBitTiles& tiles, const kernels::Int8Activations& xq, const float* x,
                                int64_t n, int64_t t0, int64_t t1, float* y) const {
  const int64_t out = w_.matrix.out;
  // The lane sums are there when this input was quantized for a 16-bit linear (a group
  // sharing one input quantized by a linear without the guarantee runs in 32 bits).
  if (axe16_ && static_cast<int64_t>(xq.lane_sums.size()) == xq.rows * xq.blocks())
    kernels::LowBitInt8RowsAxe16(w_.matrix, tiles, xq, xq.lane_sums.data(), t0, t1, y, out);
  else kernels::LowBitInt8Rows(w_.matrix, tiles, xq, t0, t1, y, out);
  AddOutliersAndBias(x, n, t0 * kernels::kTileRows, std::min(out, t1 * kernels::kTileRows), y);
}

void LowBitLinear::ForwardInt8(const float* x, int64_t n, float* y, ThreadPool& pool) const {
  kernels::Int8Activations& xq = InputScratch();
  const kernels::LowBitTiles& tiles = Tiles(pool);
  QuantizeInput(x, n, xq);
  pool.ParallelFor(tiles.tiles, [&](int64_t t0, int64_t t1) { ForwardTiles(tiles, xq, x, n, t0, t1, y); });
}

void LowBitLinear::Forward(const float* x, int64_t n, float* y, ThreadPool& pool) const {
  if (int8_) return ForwardInt8(x, n, y, pool);
  const int64_t out = w_.matrix.out;
  pool.ParallelFor(
      out,
      [&](int64_t o0, int64_t o1) {
        kernels::LowBitLinearRows(w_.matrix, x, n, o0, o1, y, out);
        AddOutliersAndBias(x, n, o0, o1, y);
      },
      /*min_chunk=*/16);
}

}  // namespace accullm::model
