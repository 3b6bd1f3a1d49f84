// A Llama-family decoder (llama, mistral, qwen2): RMSNorm, RoPE, grouped-query attention
// with a KV cache, SwiGLU MLP. FP32 compute over F32/F16/BF16 weights used in place from
// the mmap'd checkpoint. Split into Embed / RunLayers / Head so a pipeline stage can run a
// contiguous range of layers.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "model/ffn_neuron_selector.h"
#include "model/kv_cache.h"
#include "model/linear.h"
#include "model/low_bit_linear.h"
#include "model/model_config.h"
#include "model/pack/manifest.h"
#include "model/rope.h"
#include "model/safetensors.h"

namespace accullm::model {

// One sequence's share of a batch: `n_tokens` consecutive rows of the batch, at positions
// cache->length() .. + n_tokens - 1 of that sequence. The cache is a KvCache (it allocates what
// it lacks) or a pipeline stage's KvBlockTable (it must already hold the blocks).
struct BatchSegment {
  KvSequence* cache = nullptr;
  int64_t n_tokens = 0;
};

// Where a linear layer's input is observed (calibration, evaluation). Linears that share an
// input share a site: q/k/v read kAttnIn, gate/up read kMlpIn.
enum class LinearSite { kAttnIn, kAttnOut, kMlpIn, kMlpDown, kHeadIn, kBlockOut };

// Receives activations during a forward pass (calibration statistics, per-layer errors).
// Called on the forward pass's thread; x is [rows, width] row-major.
class ActivationObserver {
 public:
  virtual ~ActivationObserver() = default;
  virtual void Observe(int64_t layer, LinearSite site, const float* x, int64_t rows, int64_t width) = 0;
};

struct TransformerLayer {
  std::vector<float> attn_norm, mlp_norm;
  std::unique_ptr<LinearOp> q, k, v, o, gate, up, down;
};

struct ModelLoadOptions {
  // Refuse weights that hold NaN or Inf (model/weight_check.h): one pass over every
  // floating-point tensor, checkpoints and packs alike. Off where a process reads only part
  // of the model (under mpirun each pipeline stage checks its own layers, see
  // CheckFiniteWeights, and the coordinator none), so nobody pages in the whole model.
  bool check_finite = true;
  // Low-bit linears compute with FP32 activations (dequantize, then multiply) instead of
  // INT8 activations and integer dot products: golden evaluations (`--exact`). Later issues
  // hang their approximations (activation sparsity, KV quantization) off the same switch.
  bool exact = false;
  // How the INT8 path rounds activations (kernels/cpu/int8_activations.h; `--act-quant`,
  // `--act-error-feedback`, `--act-seed`). Ignored with `exact`.
  kernels::ActQuantConfig activations = {};
  // Lay out every low-bit linear for the integer kernels now (PrepareKernels over all layers
  // and the head), so that load time carries the repack and the first request does not. Off
  // where a process runs part of the model: a pipeline stage prepares its own layers when it
  // learns them (the handshake), the coordinator none.
  bool prepare_kernels = true;
  // Activation sparsity in the FFN when the pack carries thresholds ("sparsity" in
  // accullm.json, model/pack/manifest.h): off runs the FFN dense (`--sparsity off`, A/B and
  // golden evaluations). `exact` implies off.
  bool sparsity = true;
};

// FFN neuron counts of one layer since the last reset (eval's ffn_sparsity and recall, serve's
// sampled recall). `active` and `kept_active` are counted only for the rows whose recall is
// measured: every row while set_measure_ffn_recall is on, else the sampled decode rows of
// set_ffn_recall_sample_rate.
struct FfnSparsityCounts {
  int64_t total = 0;        // neurons × tokens through this layer's FFN
  int64_t kept = 0;         // of which computed (not masked)
  int64_t active = 0;       // truly active: |SiLU(gate)·up| above the pack's active threshold
  int64_t kept_active = 0;  // truly active and kept
  int64_t sparse_rows = 0;  // tokens whose FFN ran through the sparse kernels (decode), not masked
  int64_t recall_rows = 0;  // tokens whose active neurons were counted (the rows behind `active`)
};

class Transformer {
 public:
  // Loads config.json and the safetensors weights of `dir`, checking every shape (and, by
  // default, that every weight is finite).
  static absl::StatusOr<std::unique_ptr<Transformer>> Load(const std::string& dir, ThreadPool* pool,
                                                           const ModelLoadOptions& options = {});

  const ModelConfig& config() const { return config_; }
  int64_t kv_dim() const { return config_.num_kv_heads * config_.head_dim; }
  // How this model's K/V rows are stored in `dtype` (the storage and its byte budget follow it).
  kernels::KvRowFormat kv_format(kernels::KvDType dtype = kernels::KvDType::kF32) const {
    return {dtype, config_.num_kv_heads, config_.head_dim};
  }
  // A private single-sequence cache. The library's default is exact FP32 (calibration, the
  // precision planner and `logits` measure the weights, not the cache); the commands that
  // serve or evaluate take --kv-cache-dtype (default f16) and pass it here or to their pools.
  KvCache NewCache(int64_t capacity = 0, kernels::KvDType dtype = kernels::KvDType::kF32) const;

  // Runs `n` tokens at positions cache.length() .. + n - 1 and appends them to the cache.
  // Writes logits [n, vocab] when all_positions, else only the last token's [vocab].
  absl::Status Forward(const int32_t* tokens, int64_t n, KvCache& cache, float* logits, bool all_positions = false);

  // Continuous batching: several sequences' tokens in one pass (prefill chunks and single
  // decode tokens mixed). `tokens` holds the segments' tokens back to back; writes the logits
  // of each segment's last token to logits[i * vocab]. Every cache grows by its n_tokens.
  absl::Status ForwardBatch(const int32_t* tokens, const std::vector<BatchSegment>& segments, float* logits);

  // Pipeline pieces. hidden is [rows, hidden_size], rows = sum of the segments' n_tokens.
  // RunLayers covers the segments' positions (KvSequence::Cover: a KvCache allocates, a
  // KvBlockTable that is too short is an error) but does not advance the caches' lengths.
  absl::Status Embed(const int32_t* tokens, int64_t n, float* hidden) const;
  absl::Status RunLayers(int64_t layer_begin, int64_t layer_end, float* hidden,
                         const std::vector<BatchSegment>& segments);
  void Head(const float* hidden, int64_t n, float* logits);  // final norm + LM head

  // Observer of linear inputs and block outputs (null: none). Not owned.
  void set_observer(ActivationObserver* observer) { observer_ = observer; }
  // The layers' linear ops, for quantization tools (layer l, or the LM head).
  TransformerLayer& layer(int64_t l) { return layers_[l]; }
  const TransformerLayer& layer(int64_t l) const { return layers_[l]; }
  LinearOp& lm_head() { return *lm_head_; }
  // Replaces the LM head (quantization tools).
  void set_lm_head(std::unique_ptr<LinearOp> head) { lm_head_ = std::move(head); }
  // How every low-bit linear rounds its INT8 input (ModelLoadOptions::activations sets it at
  // load). Before the forward passes; the exact path ignores it.
  void SetActivationQuantization(const kernels::ActQuantConfig& config);
  // Serves embeddings from a low-bit table (its rows are dequantized on lookup).
  void set_low_bit_embedding(std::shared_ptr<const LowBitLinear> table) { low_bit_embed_ = std::move(table); }
  const TensorStore& tensors() const { return *store_; }
  // The NaN/Inf check of what a pipeline stage reads: the weights of layers
  // [layer_begin, layer_end), the embedding table (embed), the final norm and LM head (head).
  absl::Status CheckFiniteWeights(int64_t layer_begin, int64_t layer_end, bool embed, bool head) const;
  // Tiles the low-bit linears of layers [layer_begin, layer_end) and, with `head`, the LM head
  // for the integer kernels (LowBitLinear::Tiles), in parallel over the pool, and, when the
  // FFN is sparse, makes the sparse layouts decode reads (model/sparse_ffn.h). Idempotent; a
  // linear left unprepared is prepared on its first forward pass instead.
  void PrepareKernels(int64_t layer_begin, int64_t layer_end, bool head);
  // The pack manifest when this model was loaded from an AccuLLM pack.
  const std::optional<PackManifest>& pack() const { return pack_; }

  // Whether the FFN skips neurons (the pack has a sparsity with target > 0 and the load
  // options did not turn it off, or a neuron selector is installed).
  bool ffn_sparsity_enabled() const { return !sparsity_thresholds_.empty() || neuron_selector_ != nullptr; }
  // The kept neurons come from `selector` (read before the gate, model/ffn_neuron_selector.h)
  // instead of the CATS thresholds; null restores the thresholds. The caller honours
  // `--sparsity off` / exact by not installing one. Before the forward passes; the sparse
  // layouts the selector needs (gate's rows) are made by the next PrepareKernels or the first
  // decode step.
  void set_ffn_neuron_selector(std::shared_ptr<const FfnNeuronSelector> selector) {
    neuron_selector_ = std::move(selector);
  }
  // The installed selector (a pack's trained guesser, model/ffn_guesser.h), or null.
  const FfnNeuronSelector* ffn_neuron_selector() const { return neuron_selector_.get(); }
  // Whether a decode step (one row) runs the FFN through the sparse kernels (on by default
  // when sparsity is; off runs the masked dense path, the same bits: tests and A/B).
  void set_sparse_ffn_kernels(bool on) { sparse_ffn_kernels_ = on; }
  // Per-layer neuron counts since the last reset (every forward pass adds to them; atomics,
  // so concurrent passes may share a model). With `measure_recall`, the FFN also counts the
  // truly active neurons against the pack's active thresholds (one more compare per neuron).
  std::vector<FfnSparsityCounts> ffn_sparsity_counts() const;
  void ResetFfnSparsityCounts();
  void set_measure_ffn_recall(bool on) { measure_ffn_recall_ = on; }
  // Serve's sampled recall: a share `rate` (0: none, 1: all) of the decode rows (segments of
  // one token) also count their truly active neurons, as eval does for every row. Such a row
  // runs the masked path (dense gate and up, then the mask) instead of the sparse kernels:
  // the same bits (tests/unit/ffn_sparsity_test.cc), so sampling never changes a token. The
  // choice is a keyed hash of the row's position and of its hidden state entering RunLayers,
  // so it is reproducible and does not depend on what else is in the batch. Needs the pack's
  // active thresholds; without them nothing is sampled. Before the forward passes.
  void set_ffn_recall_sample_rate(double rate);
  // Replaces the per-layer thresholds (quantize's search over targets; empty: dense FFN):
  // `thresholds` on |SiLU(gate)| (CATS, or the product rule's prefilter), `product_thresholds`
  // on |SiLU(gate)·up| (the product rule; empty: none). `active_thresholds` may be empty (no
  // recall) or have one entry per layer.
  absl::Status SetFfnSparsity(std::vector<float> thresholds, std::vector<float> active_thresholds,
                              std::vector<float> product_thresholds = {});

  // Bytes of weights streamed per decoded token (bandwidth figures in benchmarks).
  size_t weight_bytes_per_token() const;

 private:
  // Every low-bit linear of the blocks, then the LM head if it is one.
  void ForEachLowBitLinear(const std::function<void(LowBitLinear&)>& fn);
  Transformer(ModelConfig c, ThreadPool* pool) : config_(std::move(c)), pool_(pool), rope_(config_) {}
  void Attention(int64_t layer, const float* x, const std::vector<BatchSegment>& segments, int64_t rows, float* out);
  // recall_rows: per row, whether its active neurons are counted (null: none sampled).
  absl::Status Mlp(int64_t layer, const float* x, int64_t n, const uint8_t* recall_rows, float* out);
  // Which of the batch's rows are recall-sampled (set_ffn_recall_sample_rate); null when none.
  const uint8_t* RecallSampledRows(const float* hidden, const std::vector<BatchSegment>& segments, int64_t rows);
  // The kept neurons of the n rows of x from the installed selector, checked.
  absl::Status SelectNeurons(int64_t layer, const float* x, int64_t n, FfnKeptSets& kept) const;
  // gate = the masked SiLU(gate)·up of the sparse FFN over dense gate and up (up is scratch),
  // row by row by the layer's rule: `kept` (a selector's sets) or, when null, CATS's
  // threshold; counts the neurons. A batch of several rows runs this; its bits per row are
  // what SparseGateUp gives one row.
  // Counts the active neurons of the rows flagged in recall_rows (or of every row while
  // measure_ffn_recall_ is on).
  // The product rule's |SiLU(gate)·up| threshold of `layer`, or kernels' "no product test".
  float ProductThreshold(int64_t layer) const {
    return product_thresholds_.empty() ? -1.0f : product_thresholds_[static_cast<size_t>(layer)];
  }
  void MaskedGateUp(int64_t layer, const float* x, int64_t n, const FfnKeptSets* kept, const uint8_t* recall_rows,
                    float* gate, float* up);

  void Notify(int64_t layer, LinearSite site, const float* x, int64_t rows, int64_t width) {
    if (observer_ != nullptr) observer_->Observe(layer, site, x, rows, width);
  }

  ModelConfig config_;
  ThreadPool* pool_;
  ActivationObserver* observer_ = nullptr;
  Rope rope_;
  std::unique_ptr<TensorStore> store_;
  bool all_weights_finite_ = false;  // Load checked every tensor (ModelLoadOptions::check_finite)
  std::optional<PackManifest> pack_;
  TensorView embed_;
  std::shared_ptr<const LowBitLinear> low_bit_embed_;  // set when the pack stores low-bit embeddings
  std::vector<TransformerLayer> layers_;
  std::vector<float> final_norm_;
  std::unique_ptr<LinearOp> lm_head_;
  // Per layer |SiLU(gate)| thresholds (empty: dense FFN) and the active thresholds of recall.
  // Per layer: |SiLU(gate)| thresholds (CATS, the product rule's prefilter), |SiLU(gate)·up|
  // thresholds (the product rule; empty otherwise), recall's reference.
  std::vector<float> sparsity_thresholds_, product_thresholds_, active_thresholds_;
  bool measure_ffn_recall_ = false;
  // A decode row is recall-sampled when its 64-bit hash is below this (0: off; max: every row).
  uint64_t recall_sample_below_ = 0;
  bool recall_sample_all_ = false;
  bool sparse_ffn_kernels_ = true;
  std::shared_ptr<const FfnNeuronSelector> neuron_selector_;
  struct AtomicFfnCounts {
    std::atomic<int64_t> total{0}, kept{0}, active{0}, kept_active{0}, sparse_rows{0}, recall_rows{0};
  };
  std::unique_ptr<AtomicFfnCounts[]> ffn_counts_;  // one per layer
};

}  // namespace accullm::model
