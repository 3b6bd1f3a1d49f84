// A linear layer with group-wise low-bit weights (3..8-bit codes, kernels/low_bit_matrix.h)
// plus, optionally, a few input channels kept in FP16 (dense-and-sparse: outlier channels
// whose activations are too large for low-bit weights to serve well).
// y = W_lowbit · x + W_fp16[:, outliers] · x[outliers] (+ bias).
//
// Two ways to compute W_lowbit · x:
//  - INT8 activations (UseInt8Activations; what serving runs): x is quantized per weight
//    group to INT8 and multiplied with the codes by integer dot products over a tiled copy of
//    the weights (kernels/cpu/low_bit_int8_kernels.h). Bit-identical at every ISA level,
//    batch size and thread count.
//    A one-row FFN with activation sparsity (model/sparse_ffn.h) reads second copies instead:
//    SparseRows (gate/up: skip output rows) and SparseColumns (down: skip input neurons).
//  - exact (the default of a freshly created linear; `--exact`): each row is dequantized to
//    FP32 and multiplied with FP32 x (kernels/cpu/low_bit_kernels.h). Golden evaluations and
//    the quantizer's own calibration passes use it.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cpu/activation_quant.h"
#include "kernels/cpu/int8_activations.h"
#include "kernels/cpu/low_bit_tiles.h"
#include "kernels/cpu/sparse_ffn_kernels.h"
#include "kernels/cpu/sparse_ffn_layouts.h"
#include "kernels/low_bit_matrix.h"
#include "model/linear.h"

namespace accullm::model {

// What a LowBitLinear computes with: the low-bit matrix (a view), its FP16 outlier columns,
// and whatever keeps the arrays alive (a pack's mmap, or the quantizer's output).
struct LowBitLinearWeights {
  kernels::LowBitMatrix matrix;
  std::vector<int32_t> outlier_cols;          // sorted input channels kept in FP16
  const uint16_t* outlier_weights = nullptr;  // F16 [out, outlier_cols.size()]
  std::shared_ptr<const void> keep_alive;     // owner of the arrays above
  // The signed accumulator width its quantization guaranteed for INT8 activations (AXE,
  // `quantize --accumulator-bits P`; 0: none). At most 16 lets the AVX2 integer kernel
  // accumulate in 16 bits (kernels/cpu/low_bit_axe16_kernels.h), bit-identically.
  int accumulator_bits = 0;
};

class LowBitLinear final : public LinearOp {
 public:
  // Validates sizes (in a multiple of 8, group divides in, outlier columns in range and sorted).
  static absl::StatusOr<std::unique_ptr<LowBitLinear>> Create(LowBitLinearWeights weights, std::vector<float> bias);

  int64_t in_features() const override { return w_.matrix.in; }
  int64_t out_features() const override { return w_.matrix.out; }
  void Forward(const float* x, int64_t n, float* y, ThreadPool& pool) const override;
  size_t weight_bytes() const override;
  size_t streamed_bytes() const override;
  const LowBitLinearWeights& weights() const { return w_; }
  // How the INT8 path rounds this layer's input (kernels/cpu/int8_activations.h; default:
  // nearest). Set before the forward passes; the exact path ignores it.
  void set_activation_quant(const kernels::ActQuantConfig& config) { act_quant_ = config; }
  const kernels::ActQuantConfig& activation_quant() const { return act_quant_; }

  // Row o of W (all columns, outliers included) as float: embedding lookups.
  void DequantizeRow(int64_t o, float* dst) const;

  // Computes with INT8 activations from now on. The weights are tiled (a copy in the integer
  // kernels' layout) by Tiles: at load (Transformer::PrepareKernels) or, for a pipeline stage,
  // once it knows its layers, so a stage tiles only the layers it runs; else on the first
  // forward pass. False, and nothing changes, when the integer
  // kernels cannot run this matrix exactly (kernels::LowBitTilesRefusal).
  bool UseInt8Activations();
  bool uses_int8_activations() const { return int8_; }
  // Whether the INT8 forward runs the 16-bit-accumulation dispatch: the weights carry a
  // guarantee of at most 16 bits and their tiles pass its check (Axe16Fits, done when the
  // weights are tiled: false until the first INT8 forward pass).
  bool uses_axe16() const { return axe16_; }

  // The steps of an INT8 forward pass, for running several linears that read the same input
  // in one pass over the pool (model/linear_group.h).
  // True when `other` quantizes its input exactly as this one does (same width, block, exact
  // channels and rounding), so one Int8Activations serves both; both must use INT8 activations.
  bool SharesInt8Input(const LowBitLinear& other) const;
  void QuantizeInput(const float* x, int64_t n, kernels::Int8Activations& xq) const;
  // The calling thread's buffer for a quantized input (reused without allocating once grown;
  // the pool's workers read the caller's through references, never their own).
  static kernels::Int8Activations& InputScratch();
  // How Tiles lays the codes out (TileOptions::planes unless the AXE kernel may read them).
  kernels::TileOptions TileOptions() const;
  // The tiled copy (made on first use, in parallel over the pool) and its tile count.
  const kernels::LowBitTiles& Tiles(ThreadPool& pool) const;
  // y rows' outputs [t0·16, t1·16) ∩ [0, out): the integer kernel, then outliers and bias.
  void ForwardTiles(const kernels::LowBitTiles& tiles, const kernels::Int8Activations& xq, const float* x, int64_t n,
                    int64_t t0, int64_t t1, float* y) const;

  // The sparse FFN's copies of the weights (kernels/cpu/sparse_ffn_layouts.h), made on first
  // use in parallel over the pool, beside the tiles (which a batch of several rows still
  // runs): a second copy of this matrix, sparse_bytes() of it. Rows: gate and up (skip output
  // rows); columns: down (skip input neurons). INT8 activations only.
  const kernels::SparseRowsLayout& SparseRows(ThreadPool& pool) const;
  const kernels::SparseColumnsLayout& SparseColumns(ThreadPool& pool) const;
  // On gate, with its up and down (kernels::SparseFfnRefusal empty): one joint layout whose
  // unit j holds gate's row j, up's row j and down's strip of neuron j, so a kept neuron is one
  // run of lines (kernels::SparseFfnLayouts); made on first use, counted in this linear's
  // sparse_bytes(). For a predictor's lists it replaces gate's and up's SparseRows and down's
  // SparseColumns copies.
  const kernels::SparseFfnLayouts& SparseFfn(const LowBitLinear& up, const LowBitLinear& down, ThreadPool& pool) const;
  bool SparseFfnJoinable(const LowBitLinear& up, const LowBitLinear& down) const;
  // On up, with its down: the same with up's row alone in each unit (CATS and the product rule,
  // whose gate runs dense); replaces up's SparseRows and down's SparseColumns there.
  const kernels::SparseFfnLayouts& SparseUpDown(const LowBitLinear& down, ThreadPool& pool) const;
  bool SparseUpDownJoinable(const LowBitLinear& down) const;
  // Bytes of the sparse layouts made so far (0 before the first use).
  size_t sparse_bytes() const;
  // One activation row x (xq its quantized form): y[k] = output row kept[k] for k in
  // [k0, k1): the sparse kernel, then outliers and bias, as ForwardTiles computes that row.
  void ForwardSparseRows(const kernels::SparseRowsLayout& rows, const kernels::Int8Activations& xq, const float* x,
                         const int32_t* kept, int64_t k0, int64_t k1, float* y) const;
  // The same for a pair layout: g[k], u[k] = this (gate) linear's and up's output rows
  // kept[k], k in [k0, k1); g == nullptr: up only.
  void ForwardSparsePairRows(const kernels::SparseRowsLayout& pair, const LowBitLinear& up,
                             const kernels::Int8Activations& xq, const float* x, const int32_t* kept, int64_t k0,
                             int64_t k1, float* g, float* u) const;
  // One activation row x whose quantized codes' nonzero entries are `nonzero`: y's outputs of
  // 128-output blocks [b0, b1), as ForwardTiles computes them (the kernel reads only the
  // nonzero neurons' strips).
  void ForwardSparseColumns(const kernels::SparseColumnsLayout& columns, const kernels::Int8Activations& xq,
                            const kernels::SparseNeurons& nonzero, const float* x, int64_t b0, int64_t b1,
                            float* y) const;

 private:
  void ForwardInt8(const float* x, int64_t n, float* y, ThreadPool& pool) const;
  // SparseFfn (gate: this) and SparseUpDown (gate null, up: this): made once, kept here.
  const kernels::SparseFfnLayouts& JointSparseFfn(const LowBitLinear* gate, const LowBitLinear& up,
                                                  const LowBitLinear& down, ThreadPool& pool) const;
  // y rows [o0, o1) += the FP16 outlier columns' part and the bias.
  void AddOutliersAndBias(const float* x, int64_t n, int64_t o0, int64_t o1, float* y) const;
  // The same for one activation row and the output rows kept[k0 .. k1) (y[k]: row kept[k]).
  void AddOutliersAndBiasRows(const float* x, const int32_t* kept, int64_t k0, int64_t k1, float* y) const;
  // The mapped pack pages of the codes, steps and zeros need not stay resident once a copy
  // the kernels read exists (the exact path and embedding lookups page them in again).
  void ReleaseMappedPages() const;

  LowBitLinearWeights w_;
  std::vector<float> bias_;
  kernels::ActQuantConfig act_quant_;
  std::vector<char> outlier_mask_;  // [in]: channels the activation quantizer leaves exact
  bool int8_ = false;               // INT8 activations
  mutable std::once_flag tiled_;
  mutable std::unique_ptr<kernels::LowBitTiles> tiles_;  // built on the first INT8 forward
  mutable bool axe16_ = false;                           // set with tiles_
  mutable std::once_flag sparse_rows_made_, sparse_columns_made_, sparse_ffn_made_;
  mutable std::unique_ptr<kernels::SparseRowsLayout> sparse_rows_;
  mutable std::unique_ptr<kernels::SparseColumnsLayout> sparse_columns_;
  mutable std::unique_ptr<kernels::SparseFfnLayouts> sparse_ffn_;
  mutable std::atomic<size_t> sparse_bytes_{0};
};

}  // namespace accullm::model
