#include "model/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/grow_buffer.h"
#include "common/status.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/silu_mul_mask.h"
#include "model/ffn_guesser.h"
#include "model/linear_group.h"
#include "model/low_bit_linear.h"
#include "model/pack/manifest.h"
#include "model/pack/pack_reader.h"
#include "model/pack/tensor_names.h"
#include "model/sparse_ffn.h"
#include "model/weight_check.h"

namespace accullm::model {

namespace {

// Columns per activation scale when the per-row INT8 LM head runs the integer kernels: the
// widest of 128/64/32 dividing the hidden size. On the fixture's 5.44-bit pack (40 chunks of
// valid.txt) blocks of 32, 64 and 128 gave KL 0.000595 / 0.000596 / 0.000598 against 0.000581
// with FP32 activations in the head, while the steps and zero points each block adds cost
// 2.3% of the head's bytes at 128 and 9.4% at 32.
int64_t Int8HeadBlock(int64_t hidden) {
  for (int64_t block : {128, 64, 32})
    if (hidden % block == 0) return block;
  return 0;  // FP32 activations (Int8Linear)
}

absl::StatusOr<std::vector<float>> LoadVector(const TensorStore& store, const std::string& name, int64_t n) {
  ASSIGN_OR_RETURN(TensorView t, store.Get(name));
  if (t.shape != std::vector<int64_t>{n}) return ShapeError(t, {n});
  return TensorToF32(t, n);
}

// Every buffer of a forward pass, reused across layers and calls (grown, never shrunk), so a
// warm decode step allocates nothing (forward_allocation_test): a 128-row prefill would
// otherwise map and zero ~6 MB per layer for gate and up alone, and a decode step paid ~20
// small allocations per layer. One set per calling thread (the pool's workers write into the
// caller's through pointers); every element is written before it is read, so what a buffer
// held before does not matter. Each buffer has one user at a time: `hidden` and `last` live
// through a whole Forward/ForwardBatch, `normed`/`delta` through RunLayers and Head, the rest
// within one layer.
struct LayerScratch {
  std::vector<float> hidden, last, normed, delta;
  std::vector<float> q, k, v, ctx, gate, up;
  // Attention: each batch row's sequence and position, and the K/V row pointers of every
  // sequence back to back (sequence s's from kv_table_begin[s]).
  std::vector<int32_t> row_segment;
  std::vector<int64_t> row_pos, kv_table_begin;
  std::vector<const void*> k_table, v_table;
  std::vector<BatchSegment> one_segment;  // Forward's single sequence
  FfnKeptSets kept;                       // a neuron selector's output
  std::vector<uint8_t> recall_rows;       // RunLayers' recall-sampled rows
};
LayerScratch& Scratch() {
  thread_local LayerScratch scratch;
  return scratch;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Transformer>> Transformer::Load(const std::string& dir, ThreadPool* pool,
                                                               const ModelLoadOptions& options) {
  ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::Load(dir));
  auto t = std::unique_ptr<Transformer>(new Transformer(std::move(config), pool));
  const ModelConfig& c = t->config_;
  ASSIGN_OR_RETURN(t->pack_, LoadPackManifest(dir));
  const PackManifest* pack = nullptr;  // null: plain checkpoint
  if (t->pack_.has_value()) {
    pack = &*t->pack_;
    if (static_cast<int64_t>(pack->layer_precision.size()) != c.num_layers) {
      return absl::InvalidArgumentError(absl::StrCat(dir, "/accullm.json: plan has ", pack->layer_precision.size(),
                                                     " layers but config.json has ", c.num_layers));
    }
  }
  ASSIGN_OR_RETURN(t->store_, TensorStore::OpenDirectory(dir));
  const TensorStore& s = *t->store_;
  const int64_t h = c.hidden_size, q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;

  const bool embed_low_bit = pack != nullptr && pack->embeddings != "fp16";
  if (embed_low_bit) {
    ASSIGN_OR_RETURN(auto table, LoadLinear(s, "model.embed_tokens", c.vocab_size, h, false, pack, true));
    t->low_bit_embed_ = std::shared_ptr<const LowBitLinear>(static_cast<LowBitLinear*>(table.release()));
  } else {
    if (s.Has(absl::StrCat("model.embed_tokens", pack_tensor::kCodes))) {
      if (pack == nullptr)
        return absl::InvalidArgumentError(
            absl::StrCat("model.embed_tokens", pack_tensor::kCodes, " found but there is no accullm.json manifest"));
      return absl::InvalidArgumentError(
          "pack plan disagrees with its tensors: quantized embeddings but accullm.json says fp16");
    }
    ASSIGN_OR_RETURN(t->embed_, s.Get("model.embed_tokens.weight"));
    if (t->embed_.shape != std::vector<int64_t>{c.vocab_size, h}) return ShapeError(t->embed_, {c.vocab_size, h});
    if (t->embed_.dtype != DType::kF32 && t->embed_.dtype != DType::kF16 && t->embed_.dtype != DType::kBF16) {
      return absl::InvalidArgumentError("model.embed_tokens.weight must be F32, F16 or BF16");
    }
  }
  t->layers_.resize(static_cast<size_t>(c.num_layers));
  size_t fp16_linears_seen = 0, linear_bits_seen = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    TransformerLayer& L = t->layers_[l];
    ASSIGN_OR_RETURN(L.attn_norm, LoadVector(s, p + "input_layernorm.weight", h));
    ASSIGN_OR_RETURN(L.mlp_norm, LoadVector(s, p + "post_attention_layernorm.weight", h));
    const bool quantized_block = pack != nullptr && pack->layer_precision[l] == "int4";
    // Low-bit unless the plan keeps this linear FP16 inside its quantized block.
    auto quantized = [&](const char* linear) {
      if (pack != nullptr && pack->fp16_linears.count(p + linear) != 0) {
        ++fp16_linears_seen;
        return false;
      }
      if (quantized_block && pack->linear_bits.count(p + linear) != 0) ++linear_bits_seen;
      return quantized_block;
    };
    ASSIGN_OR_RETURN(
        L.q, LoadLinear(s, p + "self_attn.q_proj", q_dim, h, c.attention_bias, pack, quantized("self_attn.q_proj")));
    ASSIGN_OR_RETURN(
        L.k, LoadLinear(s, p + "self_attn.k_proj", kv_dim, h, c.attention_bias, pack, quantized("self_attn.k_proj")));
    ASSIGN_OR_RETURN(
        L.v, LoadLinear(s, p + "self_attn.v_proj", kv_dim, h, c.attention_bias, pack, quantized("self_attn.v_proj")));
    ASSIGN_OR_RETURN(L.o, LoadLinear(s, p + "self_attn.o_proj", h, q_dim, false, pack, quantized("self_attn.o_proj")));
    ASSIGN_OR_RETURN(L.gate, LoadLinear(s, p + "mlp.gate_proj", c.intermediate_size, h, c.mlp_bias, pack,
                                        quantized("mlp.gate_proj")));
    ASSIGN_OR_RETURN(
        L.up, LoadLinear(s, p + "mlp.up_proj", c.intermediate_size, h, c.mlp_bias, pack, quantized("mlp.up_proj")));
    ASSIGN_OR_RETURN(L.down, LoadLinear(s, p + "mlp.down_proj", h, c.intermediate_size, c.mlp_bias, pack,
                                        quantized("mlp.down_proj")));
  }
  if (pack != nullptr && fp16_linears_seen != pack->fp16_linears.size()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, "/accullm.json: \"fp16_linears\" names ",
                                                   pack->fp16_linears.size() - fp16_linears_seen,
                                                   " linear(s) this model does not have"));
  }
  if (pack != nullptr && linear_bits_seen != pack->linear_bits.size()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, "/accullm.json: \"linear_bits\" names ",
                                                   pack->linear_bits.size() - linear_bits_seen,
                                                   " linear(s) that are not quantized in this pack"));
  }
  ASSIGN_OR_RETURN(t->final_norm_, LoadVector(s, "model.norm.weight", h));
  // Group-wise low-bit head ("int3".."int7"); "int8" is the per-row INT8 format below.
  const bool head_low_bit = pack != nullptr && pack->lm_head != "fp16" && pack->lm_head != "int8";
  if (c.tie_word_embeddings && !s.Has(absl::StrCat("lm_head", pack_tensor::kWeight)) &&
      !s.Has(absl::StrCat("lm_head", pack_tensor::kCodes))) {
    if (t->low_bit_embed_ != nullptr) {  // tied and low-bit: the head reads the same table
      ASSIGN_OR_RETURN(auto head, LowBitLinear::Create(t->low_bit_embed_->weights(), {}));
      t->lm_head_ = std::move(head);
    } else {
      ASSIGN_OR_RETURN(auto head, DenseLinear::Create(t->embed_, nullptr));
      t->lm_head_ = std::move(head);
    }
  } else {
    const bool head_int8 = pack != nullptr && pack->lm_head == "int8";
    if (head_int8 != s.Has(absl::StrCat("lm_head", pack_tensor::kInt8Codes))) {
      return absl::InvalidArgumentError(absl::StrCat("pack plan disagrees with its tensors: lm_head is ",
                                                     head_int8 ? "not INT8" : "INT8", " but accullm.json says ",
                                                     pack != nullptr ? pack->lm_head : "nothing (no manifest)"));
    }
    if (head_int8) {
      // INT8 activations: the integer kernels over the same codes (Int8HeadBlock).
      const int64_t block = options.exact ? 0 : Int8HeadBlock(h);
      ASSIGN_OR_RETURN(t->lm_head_, LoadInt8Linear(s, "lm_head", c.vocab_size, h, block));
    } else {
      ASSIGN_OR_RETURN(t->lm_head_, LoadLinear(s, "lm_head", c.vocab_size, h, false, pack, head_low_bit));
    }
  }
  t->ffn_counts_ = std::make_unique<AtomicFfnCounts[]>(static_cast<size_t>(c.num_layers));
  // Target 0 (or --sparsity off, or --exact) runs the dense fused path: bit-identical logits.
  if (pack != nullptr && pack->sparsity.has_value()) {
    if (static_cast<int64_t>(pack->sparsity->thresholds.size()) != c.num_layers)  // Parse checked it; keep it local
      return absl::InvalidArgumentError(
          absl::StrCat(dir, "/accullm.json: sparsity thresholds do not match the layers"));
    if (options.sparsity && !options.exact && pack->sparsity->target > 0) {
      t->sparsity_thresholds_ = pack->sparsity->thresholds;
      t->active_thresholds_ = pack->sparsity->active_thresholds;
      if (pack->sparsity->predictor == "product") {
        t->product_thresholds_ = pack->sparsity->thresholds;
        t->sparsity_thresholds_ = pack->sparsity->gate_thresholds;
      }
      if (pack->sparsity->predictor == "lowrank") {
        // The trained guesser chooses the neurons before the gate; its thresholds are the
        // manifest's (quantiles of its scores).
        ASSIGN_OR_RETURN(std::shared_ptr<const FfnGuesser> guesser, FfnGuesser::Load(dir, c, *pack->sparsity));
        t->neuron_selector_ = std::make_shared<GuesserNeuronSelector>(std::move(guesser), pack->sparsity->thresholds);
      }
    }
  }
  if (!options.exact) {
    t->ForEachLowBitLinear([&](LowBitLinear& l) {
      l.UseInt8Activations();
      l.set_activation_quant(options.activations);
    });
  }
  if (options.prepare_kernels) t->PrepareKernels(0, c.num_layers, /*head=*/true);
  // Last, after the cheaper structural checks. Every tensor, the pack's canary logits too.
  // The cost is one read of the weights (memory-bandwidth bound, split over the pool): the
  // pages the first forward pass would fault in anyway; for plain checkpoints as for packs,
  // since a NaN in either serves the same garbage.
  if (options.check_finite) {
    RETURN_IF_ERROR(CheckFinite(s, {}, pool));
    t->all_weights_finite_ = true;
  }
  return t;
}

absl::Status Transformer::CheckFiniteWeights(int64_t layer_begin, int64_t layer_end, bool embed, bool head) const {
  // Load already read every tensor (the embedded stage, `generate`): the mapped bytes cannot
  // have changed, so a second pass would only double the start-up reads.
  if (all_weights_finite_) return absl::OkStatus();
  // A tied head without tensors of its own reads the embedding table.
  const bool head_reads_embed = !store_->Has(absl::StrCat("lm_head", pack_tensor::kWeight)) &&
                                !store_->Has(absl::StrCat("lm_head", pack_tensor::kCodes)) &&
                                !store_->Has(absl::StrCat("lm_head", pack_tensor::kInt8Codes));
  auto select = [&](const std::string& name) {
    constexpr absl::string_view kLayers = "model.layers.";
    if (absl::StartsWith(name, kLayers)) {
      int64_t l = -1;
      const size_t dot = name.find('.', kLayers.size());
      if (dot == std::string::npos || !absl::SimpleAtoi(name.substr(kLayers.size(), dot - kLayers.size()), &l))
        return true;  // not a block tensor after all: cheap enough to check anyway
      return l >= layer_begin && l < layer_end;
    }
    if (absl::StartsWith(name, "model.embed_tokens.")) return embed || (head && head_reads_embed);
    if (absl::StartsWith(name, "lm_head.") || absl::StartsWith(name, "model.norm.")) return head;
    return false;  // e.g. a pack's canary logits: the coordinator's, which does not compute
  };
  return CheckFinite(*store_, select, pool_);
}

void Transformer::ForEachLowBitLinear(const std::function<void(LowBitLinear&)>& fn) {
  auto visit = [&](LinearOp* op) {
    if (auto* low_bit = dynamic_cast<LowBitLinear*>(op)) fn(*low_bit);
  };
  for (auto& L : layers_) {
    for (LinearOp* op : {L.q.get(), L.k.get(), L.v.get(), L.o.get(), L.gate.get(), L.up.get(), L.down.get()}) visit(op);
  }
  visit(lm_head_.get());
}

void Transformer::PrepareKernels(int64_t layer_begin, int64_t layer_end, bool head) {
  auto prepare = [&](LinearOp* op) {
    if (auto* low_bit = dynamic_cast<LowBitLinear*>(op); low_bit != nullptr && low_bit->uses_int8_activations())
      low_bit->Tiles(*pool_);
  };
  for (int64_t l = std::max<int64_t>(0, layer_begin); l < std::min<int64_t>(layer_end, config_.num_layers); ++l) {
    const TransformerLayer& L = layers_[static_cast<size_t>(l)];
    for (LinearOp* op : {L.q.get(), L.k.get(), L.v.get(), L.o.get(), L.gate.get(), L.up.get(), L.down.get()})
      prepare(op);
    if (ffn_sparsity_enabled() && sparse_ffn_kernels_) {
      if (auto sparse = SparseFfnLinearsOf(*L.gate, *L.up, *L.down))
        PrepareSparseFfn(*sparse, neuron_selector_ != nullptr, *pool_);
    }
  }
  if (head) prepare(lm_head_.get());
}

void Transformer::SetActivationQuantization(const kernels::ActQuantConfig& config) {
  ForEachLowBitLinear([&](LowBitLinear& l) { l.set_activation_quant(config); });
}

KvCache Transformer::NewCache(int64_t capacity, kernels::KvDType dtype) const {
  if (capacity <= 0) capacity = config_.max_position_embeddings;
  return KvCache(config_.num_layers, kv_format(dtype), capacity);
}

size_t Transformer::weight_bytes_per_token() const {
  size_t total = lm_head_->streamed_bytes();
  for (const auto& L : layers_) {
    for (const LinearOp* op : {L.q.get(), L.k.get(), L.v.get(), L.o.get(), L.gate.get(), L.up.get(), L.down.get()})
      total += op->streamed_bytes();
  }
  return total;
}

absl::Status Transformer::Embed(const int32_t* tokens, int64_t n, float* hidden) const {
  const int64_t h = config_.hidden_size;
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", tokens[i], " is outside the vocabulary [0, ", config_.vocab_size, ")"));
    }
    if (low_bit_embed_ != nullptr) {
      low_bit_embed_->DequantizeRow(tokens[i], hidden + i * h);
    } else {
      const size_t row_bytes = static_cast<size_t>(h) * DTypeSize(embed_.dtype);
      ConvertToF32(embed_.dtype, embed_.data + row_bytes * tokens[i], hidden + i * h, static_cast<size_t>(h));
    }
  }
  return absl::OkStatus();
}

void Transformer::Attention(int64_t layer, const float* x, const std::vector<BatchSegment>& segments, int64_t rows,
                            float* out) {
  const ModelConfig& c = config_;
  const TransformerLayer& L = layers_[layer];
  const int64_t hd = c.head_dim, nh = c.num_heads, nkv = c.num_kv_heads, group = nh / nkv;
  const int64_t q_dim = nh * hd, kvd = nkv * hd;
  LayerScratch& scratch = Scratch();
  float* q = GrowBuffer(scratch.q, rows * q_dim);
  float* k = GrowBuffer(scratch.k, rows * kvd);
  float* v = GrowBuffer(scratch.v, rows * kvd);
  float* ctx = GrowBuffer(scratch.ctx, rows * q_dim);
  Notify(layer, LinearSite::kAttnIn, x, rows, c.hidden_size);
  ForwardSameInput({{L.q.get(), q}, {L.k.get(), k}, {L.v.get(), v}}, x, rows, *pool_);
  // Which sequence and position each batch row belongs to.
  int32_t* row_segment = GrowBuffer(scratch.row_segment, rows);
  int64_t* row_pos = GrowBuffer(scratch.row_pos, rows);
  int64_t row = 0;
  int64_t max_pos = 0;
  for (size_t s = 0; s < segments.size(); ++s) {
    KvSequence& cache = *segments[s].cache;
    for (int64_t t = 0; t < segments[s].n_tokens; ++t, ++row) {
      const int64_t pos = cache.length() + t;
      row_segment[row] = static_cast<int32_t>(s);
      row_pos[row] = pos;
      max_pos = std::max(max_pos, pos);
      rope_.Apply(q + row * q_dim, nh, pos);
      rope_.Apply(k + row * kvd, nkv, pos);
      // Stored in the cache's dtype (rounded to nearest even, or int8 with a scale per head):
      // the row's bytes depend on its own values and position only.
      kernels::EncodeKvRow(cache.format(), k + row * kvd, {layer, pos, 0}, cache.k(layer, pos));
      kernels::EncodeKvRow(cache.format(), v + row * kvd, {layer, pos, 1}, cache.v(layer, pos));
    }
  }
  // The kernel reaches the paged cache through each sequence's row pointers for this layer,
  // positions [0, length + n_tokens).
  int64_t* table_begin = GrowBuffer(scratch.kv_table_begin, static_cast<int64_t>(segments.size()) + 1);
  table_begin[0] = 0;
  for (size_t s = 0; s < segments.size(); ++s)
    table_begin[s + 1] = table_begin[s] + segments[s].cache->length() + segments[s].n_tokens;
  const void** k_table = GrowBuffer(scratch.k_table, table_begin[segments.size()]);
  const void** v_table = GrowBuffer(scratch.v_table, table_begin[segments.size()]);
  for (size_t s = 0; s < segments.size(); ++s) {
    KvSequence& cache = *segments[s].cache;
    for (int64_t j = 0; j < table_begin[s + 1] - table_begin[s]; ++j) {
      k_table[table_begin[s] + j] = cache.k(layer, j);
      v_table[table_begin[s] + j] = cache.v(layer, j);
    }
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // One work item per (row, K/V head, part of its query heads): the query heads that share a
  // K/V head run together so each cached row is fetched once for all of them. A decode step
  // has few (row, K/V head) pairs, so a group is split into parts until there are about two
  // items per thread; a head's bits do not depend on which heads share its call
  // (attention.h), so neither the split nor the thread count changes a result.
  const int64_t parts = std::clamp<int64_t>(2 * pool_->size() / std::max<int64_t>(1, rows * nkv), 1, group);
  const int64_t heads_per_part = (group + parts - 1) / parts;
  pool_->ParallelFor(rows * nkv * parts, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;  // the scalar reference's, grown per worker
    float* s = GrowBuffer(scores, max_pos + 1);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t r = item / (nkv * parts), kvh = item / parts % nkv, part = item % parts;
      const int64_t head = kvh * group + part * heads_per_part;
      const int64_t heads = std::min(heads_per_part, (kvh + 1) * group - head);
      if (heads <= 0) continue;
      const int64_t first = table_begin[row_segment[r]];
      const kernels::KvRows kv{k_table + first, v_table + first, segments[row_segment[r]].cache->format().dtype};
      kernels::CausalAttentionGroup(q + r * q_dim + head * hd, heads, kv, kvh, row_pos[r], hd, scale, s,
                                    ctx + r * q_dim + head * hd);
    }
  });
  Notify(layer, LinearSite::kAttnOut, ctx, rows, q_dim);
  L.o->Forward(ctx, rows, out, *pool_);
}

std::vector<FfnSparsityCounts> Transformer::ffn_sparsity_counts() const {
  std::vector<FfnSparsityCounts> out(static_cast<size_t>(config_.num_layers));
  for (size_t l = 0; l < out.size(); ++l) {
    const AtomicFfnCounts& c = ffn_counts_[l];
    out[l] = {c.total.load(),       c.kept.load(),        c.active.load(),
              c.kept_active.load(), c.sparse_rows.load(), c.recall_rows.load()};
  }
  return out;
}

absl::Status Transformer::SetFfnSparsity(std::vector<float> thresholds, std::vector<float> active_thresholds,
                                         std::vector<float> product_thresholds) {
  const size_t layers = static_cast<size_t>(config_.num_layers);
  if ((!thresholds.empty() && thresholds.size() != layers) ||
      (!active_thresholds.empty() && active_thresholds.size() != layers) ||
      (!product_thresholds.empty() && product_thresholds.size() != layers) ||
      (!product_thresholds.empty() && thresholds.empty())) {
    return absl::InvalidArgumentError(absl::StrCat("FFN sparsity needs one threshold per layer (", layers, ")"));
  }
  sparsity_thresholds_ = std::move(thresholds);
  product_thresholds_ = std::move(product_thresholds);
  active_thresholds_ = std::move(active_thresholds);
  return absl::OkStatus();
}

void Transformer::ResetFfnSparsityCounts() {
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    AtomicFfnCounts& c = ffn_counts_[l];
    c.total = 0;
    c.kept = 0;
    c.active = 0;
    c.kept_active = 0;
    c.sparse_rows = 0;
    c.recall_rows = 0;
  }
}

void Transformer::set_ffn_recall_sample_rate(double rate) {
  recall_sample_all_ = rate >= 1.0;
  // rate · 2^64, so that a uniform 64-bit hash falls under it with probability rate.
  recall_sample_below_ = rate <= 0.0 || recall_sample_all_ ? 0 : static_cast<uint64_t>(std::ldexp(rate, 64));
}

namespace {
// splitmix64's finalizer: a well-mixed 64-bit value from any 64-bit input.
uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The key of a row's recall sampling: its position and the bits of its hidden state (a fixed
// seed, so a run is reproducible; no clock, no counter, nothing from the rest of the batch).
uint64_t RecallSampleHash(int64_t position, const float* row, int64_t width) {
  uint64_t h = Mix64(0x5ca1ab1eULL ^ static_cast<uint64_t>(position));
  for (int64_t i = 0; i < width; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &row[i], sizeof(bits));
    h = Mix64(h ^ bits);
  }
  return h;
}
}  // namespace

const uint8_t* Transformer::RecallSampledRows(const float* hidden, const std::vector<BatchSegment>& segments,
                                              int64_t rows) {
  if ((recall_sample_below_ == 0 && !recall_sample_all_) || measure_ffn_recall_ || active_thresholds_.empty() ||
      !ffn_sparsity_enabled())
    return nullptr;
  const int64_t h = config_.hidden_size;
  std::vector<uint8_t>& sampled = Scratch().recall_rows;
  sampled.assign(static_cast<size_t>(rows), 0);
  bool any = false;
  int64_t row = 0;
  for (const BatchSegment& seg : segments) {
    if (seg.n_tokens == 1) {  // a decode row; prompt chunks are not sampled
      const bool pick =
          recall_sample_all_ || RecallSampleHash(seg.cache->length(), hidden + row * h, h) < recall_sample_below_;
      sampled[static_cast<size_t>(row)] = pick ? 1 : 0;
      any = any || pick;
    }
    row += seg.n_tokens;
  }
  return any ? sampled.data() : nullptr;
}

absl::Status Transformer::SelectNeurons(int64_t layer, const float* x, int64_t n, FfnKeptSets& kept) const {
  RETURN_IF_ERROR(neuron_selector_->Select(layer, x, n, *pool_, kept));
  // The kernels index weights by these numbers: a wrong list is an error, never a wild read.
  const int64_t inter = config_.intermediate_size;
  if (kept.rows() != n || kept.row_begin[0] != 0 ||
      kept.row_begin[static_cast<size_t>(n)] != static_cast<int64_t>(kept.neurons.size()))
    return absl::InternalError(absl::StrCat("FFN neuron selector, layer ", layer, ": row_begin does not describe ", n,
                                            " rows of ", kept.neurons.size(), " neurons"));
  for (int64_t r = 0; r < n; ++r) {
    if (kept.count(r) < 0 || kept.count(r) > inter)
      return absl::InternalError(absl::StrCat("FFN neuron selector, layer ", layer, ": row ", r, " keeps ",
                                              kept.count(r), " of ", inter, " neurons"));
    const int32_t* row = kept.row(r);
    for (int64_t k = 0; k < kept.count(r); ++k) {
      if (row[k] < 0 || row[k] >= inter || (k > 0 && row[k] <= row[k - 1]))
        return absl::InternalError(absl::StrCat("FFN neuron selector, layer ", layer, ": row ", r,
                                                "'s neurons are not strictly ascending in [0, ", inter, ")"));
    }
  }
  return absl::OkStatus();
}

void Transformer::MaskedGateUp(int64_t layer, const float* x, int64_t n, const FfnKeptSets* kept,
                               const uint8_t* recall_rows, float* gate, float* up) {
  const TransformerLayer& L = layers_[layer];
  const int64_t inter = config_.intermediate_size;
  // Dense gate and up (one shared INT8 input), then the mask row by row: the same linears'
  // bits as the fused dense path, so a neuron that is kept carries its dense value.
  ForwardSameInput({{L.gate.get(), gate}, {L.up.get(), up}}, x, n, *pool_);
  const float threshold = sparsity_thresholds_.empty() ? 0.0f : sparsity_thresholds_[static_cast<size_t>(layer)];
  const float product_threshold = ProductThreshold(layer);
  const bool can_count = !active_thresholds_.empty();
  const float active_threshold = can_count ? active_thresholds_[static_cast<size_t>(layer)] : 0.0f;
  AtomicFfnCounts& counts = ffn_counts_[layer];
  pool_->ParallelFor(n, [&](int64_t r0, int64_t r1) {
    kernels::FfnMaskCounts c;
    int64_t counted_rows = 0;
    for (int64_t r = r0; r < r1; ++r) {
      float* g = gate + r * inter;
      const float* u = up + r * inter;
      // The rule: one line per source of kept neurons (a new rule is one more case here and
      // its one-row form in SparseGateUp).
      kernels::FfnMaskCounts rc;
      const bool recall = can_count && (measure_ffn_recall_ || (recall_rows != nullptr && recall_rows[r] != 0));
      if (kept != nullptr) {
        rc = kernels::SiluMulKept(g, u, inter, kept->row(r), kept->count(r), recall, active_threshold, g);
      } else if (recall) {
        rc = kernels::SiluMulMaskedCounting(g, u, inter, threshold, product_threshold, active_threshold, g);
      } else {
        rc.kept = kernels::SiluMulMasked(g, u, inter, threshold, product_threshold, g);
      }
      c.kept += rc.kept;
      c.active += rc.active;
      c.kept_active += rc.kept_active;
      counted_rows += recall ? 1 : 0;
    }
    counts.kept += c.kept;
    counts.active += c.active;
    counts.kept_active += c.kept_active;
    counts.recall_rows += counted_rows;
  });
  counts.total += n * inter;
}

absl::Status Transformer::Mlp(int64_t layer, const float* x, int64_t n, const uint8_t* recall_rows, float* out) {
  const TransformerLayer& L = layers_[layer];
  const int64_t inter = config_.intermediate_size;
  LayerScratch& scratch = Scratch();
  float* gate = GrowBuffer(scratch.gate, n * inter);
  float* up = GrowBuffer(scratch.up, n * inter);
  Notify(layer, LinearSite::kMlpIn, x, n, config_.hidden_size);
  AtomicFfnCounts& counts = ffn_counts_[layer];
  if (!ffn_sparsity_enabled()) {
    ForwardGateUpSilu(*L.gate, *L.up, x, n, gate, up, *pool_);
    counts.total += n * inter;
    counts.kept += n * inter;  // dense: nothing skipped, so recall is 1 without counting
    Notify(layer, LinearSite::kMlpDown, gate, n, inter);
    L.down->Forward(gate, n, out, *pool_);
    return absl::OkStatus();
  }
  const FfnKeptSets* kept = nullptr;
  if (neuron_selector_ != nullptr) {
    RETURN_IF_ERROR(SelectNeurons(layer, x, n, scratch.kept));
    kept = &scratch.kept;
  }
  // Decode: the sparse kernels, unless recall is measured for this row (it needs every
  // neuron's product; the masked path gives the same bits).
  std::optional<SparseFfnLinears> sparse;
  const bool row_sampled = recall_rows != nullptr && recall_rows[0] != 0;
  if (n == 1 && sparse_ffn_kernels_ && !measure_ffn_recall_ && !row_sampled)
    sparse = SparseFfnLinearsOf(*L.gate, *L.up, *L.down);
  if (sparse.has_value()) {
    const float threshold = sparsity_thresholds_.empty() ? 0.0f : sparsity_thresholds_[static_cast<size_t>(layer)];
    const int64_t k =
        SparseGateUp(*sparse, x, kept != nullptr ? kept->row(0) : nullptr, kept != nullptr ? kept->count(0) : 0,
                     threshold, ProductThreshold(layer), gate, *pool_);
    counts.total += inter;
    counts.kept += k;
    counts.sparse_rows += 1;
    Notify(layer, LinearSite::kMlpDown, gate, 1, inter);
    SparseDown(*sparse, kept != nullptr, gate, out, *pool_);
    return absl::OkStatus();
  }
  MaskedGateUp(layer, x, n, kept, recall_rows, gate, up);
  Notify(layer, LinearSite::kMlpDown, gate, n, inter);
  L.down->Forward(gate, n, out, *pool_);
  return absl::OkStatus();
}

absl::Status Transformer::RunLayers(int64_t layer_begin, int64_t layer_end, float* hidden,
                                    const std::vector<BatchSegment>& segments) {
  const int64_t h = config_.hidden_size;
  int64_t rows = 0;
  for (const auto& seg : segments) {
    if (seg.cache == nullptr || seg.n_tokens <= 0) return absl::InvalidArgumentError("empty batch segment");
    RETURN_IF_ERROR(seg.cache->Cover(seg.cache->length() + seg.n_tokens));
    rows += seg.n_tokens;
  }
  // Chosen once from the rows entering this pass, so every layer counts the same tokens.
  const uint8_t* recall_rows = RecallSampledRows(hidden, segments, rows);
  LayerScratch& scratch = Scratch();
  float* normed = GrowBuffer(scratch.normed, rows * h);
  float* delta = GrowBuffer(scratch.delta, rows * h);
  for (int64_t l = layer_begin; l < layer_end; ++l) {
    kernels::RmsNorm(hidden, layers_[l].attn_norm.data(), rows, h, config_.rms_norm_eps, normed);
    Attention(l, normed, segments, rows, delta);
    kernels::AddInPlace(hidden, delta, rows * h);
    kernels::RmsNorm(hidden, layers_[l].mlp_norm.data(), rows, h, config_.rms_norm_eps, normed);
    RETURN_IF_ERROR(Mlp(l, normed, rows, recall_rows, delta));
    kernels::AddInPlace(hidden, delta, rows * h);
    Notify(l, LinearSite::kBlockOut, hidden, rows, h);
  }
  return absl::OkStatus();
}

void Transformer::Head(const float* hidden, int64_t n, float* logits) {
  const int64_t h = config_.hidden_size;
  float* normed = GrowBuffer(Scratch().normed, n * h);
  kernels::RmsNorm(hidden, final_norm_.data(), n, h, config_.rms_norm_eps, normed);
  Notify(config_.num_layers, LinearSite::kHeadIn, normed, n, h);
  lm_head_->Forward(normed, n, logits, *pool_);
}

absl::Status Transformer::Forward(const int32_t* tokens, int64_t n, KvCache& cache, float* logits, bool all_positions) {
  if (n <= 0) return absl::InvalidArgumentError("no tokens to run");
  const int64_t h = config_.hidden_size;
  LayerScratch& scratch = Scratch();
  float* hidden = GrowBuffer(scratch.hidden, n * h);
  RETURN_IF_ERROR(Embed(tokens, n, hidden));
  scratch.one_segment.assign(1, BatchSegment{&cache, n});  // within its capacity once warm
  RETURN_IF_ERROR(RunLayers(0, config_.num_layers, hidden, scratch.one_segment));
  cache.set_length(cache.length() + n);
  if (all_positions) {
    Head(hidden, n, logits);
  } else {
    Head(hidden + (n - 1) * h, 1, logits);
  }
  return absl::OkStatus();
}

absl::Status Transformer::ForwardBatch(const int32_t* tokens, const std::vector<BatchSegment>& segments,
                                       float* logits) {
  if (segments.empty()) return absl::InvalidArgumentError("empty batch");
  const int64_t h = config_.hidden_size;
  int64_t rows = 0;
  for (const auto& seg : segments) rows += seg.n_tokens;
  LayerScratch& scratch = Scratch();
  float* hidden = GrowBuffer(scratch.hidden, rows * h);
  RETURN_IF_ERROR(Embed(tokens, rows, hidden));
  RETURN_IF_ERROR(RunLayers(0, config_.num_layers, hidden, segments));
  // Only each sequence's last row needs the LM head.
  float* last = GrowBuffer(scratch.last, static_cast<int64_t>(segments.size()) * h);
  int64_t row = 0;
  for (size_t s = 0; s < segments.size(); ++s) {
    row += segments[s].n_tokens;
    std::copy_n(hidden + (row - 1) * h, h, last + s * h);
    segments[s].cache->set_length(segments[s].cache->length() + segments[s].n_tokens);
  }
  Head(last, static_cast<int64_t>(segments.size()), logits);
  return absl::OkStatus();
}

}  // namespace accullm::model
