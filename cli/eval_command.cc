#include "cli/eval_command.h"

#include <cstdio>
#include <filesystem>

#include "boost/json.hpp"
#include "cli/cli_common.h"
#include "cli/ffn_sparsity_report.h"
#include "cli/model_loading.h"
#include "common/json.h"
#include "common/mapped_file.h"
#include "model/low_bit_linear.h"
#include "quant/evaluation.h"
#include "quant/model_quantizer.h"

namespace accullm::cli {

namespace {

struct EvalFlags {
  std::string model, reference, data;
  int64_t ctx = 512, max_chunks = 0;
  bool json = false;
  int threads = 0;
  ActQuantFlags act_quant;
  bool exact = false;
  std::string sparsity = "on";
  std::string kv_cache_dtype = kDefaultKvCacheDType;
  std::string kv_int8_rounding;  // empty: what int8 stores (kernels::kKvInt8Rounding)
};

// Shares of the transformer blocks' linear weights by storage, and their average bits per weight.
struct BlockWeightMix {
  double at_most_4bit_fraction = 0;  // integer codes of at most 4 bits (the "INT4 share")
  double quantized_fraction = 0;     // integer codes of any width (3..8 bits)
  double bits_per_weight = 0;        // stored bits (codes, steps, zeros, FP16 parts) per weight
};

BlockWeightMix BlockWeights(model::Transformer& m) {
  double at_most_4bit = 0, quantized = 0, total = 0, bits = 0;
  for (int64_t l = 0; l < m.config().num_layers; ++l) {
    for (const auto& bl : quant::BlockLinears()) {
      const model::LinearOp& op = *(m.layer(l).*bl.op);
      const double params = static_cast<double>(op.in_features() * op.out_features());
      total += params;
      bits += 8.0 * static_cast<double>(op.weight_bytes());
      if (const auto* q = dynamic_cast<const model::LowBitLinear*>(&op); q != nullptr) {
        quantized += params;
        if (q->weights().matrix.bits <= 4) at_most_4bit += params;
      }
    }
  }
  if (total == 0) return {};
  return {at_most_4bit / total, quantized / total, bits / total};
}

uint64_t WeightFileBytes(const std::string& dir) {
  namespace fs = std::filesystem;
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".safetensors") total += e.file_size(ec);
  }
  return total;
}

int RunEval(const EvalFlags& f) {
  const std::string model_dir = f.model.empty() ? DefaultModelDir() : f.model;
  auto activations = ActQuantFromFlags(f.act_quant, f.exact);
  if (!activations.ok()) return ReportError(activations.status());
  auto model = LoadModel(model_dir, f.threads, /*need_tokenizer=*/false,
                         {.exact = f.exact, .activations = *activations, .sparsity = f.sparsity != "off"});
  if (!model.ok()) return ReportError(model.status());
  auto reference = LoadModel(f.reference, f.threads, /*need_tokenizer=*/true);
  if (!reference.ok()) return ReportError(reference.status());
  auto text = ReadTextFile(f.data);
  if (!text.ok()) return ReportError(text.status());
  const text::Tokenizer& tok = *reference->tokenizer;
  std::vector<int32_t> stream = tok.Encode(*text, /*add_special=*/true);
  const int32_t bos =
      tok.bos_id().value_or(static_cast<int32_t>(std::max<int64_t>(0, reference->transformer->config().bos_token_id)));
  quant::EvalOptions opts;
  opts.ctx = f.ctx;
  opts.max_chunks = f.max_chunks;
  auto kv_dtype = KvCacheDType(f.kv_cache_dtype);
  if (!kv_dtype.ok()) return ReportError(kv_dtype.status());
  opts.kv_dtype = *kv_dtype;
  if (!f.kv_int8_rounding.empty()) {
    if (opts.kv_dtype != kernels::KvDType::kInt8)
      return ReportError(absl::InvalidArgumentError("--kv-int8-rounding needs --kv-cache-dtype int8"));
    auto rounding = kernels::ParseKvInt8Rounding(f.kv_int8_rounding);
    if (!rounding.ok()) return ReportError(rounding.status());
    opts.kv_int8_rounding = *rounding;
  }
  model->transformer->set_measure_ffn_recall(true);
  model->transformer->ResetFfnSparsityCounts();
  auto r = quant::Evaluate(*model->transformer, *reference->transformer, stream, bos, opts);
  if (!r.ok()) return ReportError(r.status());
  const FfnSparsityReport sparsity = SparsityOf(model->transformer->ffn_sparsity_counts());
  const BlockWeightMix mix = BlockWeights(*model->transformer);
  const uint64_t bytes = WeightFileBytes(model_dir);
  if (r->nonfinite_positions > 0) {
    // Loud, but the report still follows: KL +Inf and no agreement there, not a fake 0.
    std::fprintf(stderr, "warning: the model's logits were NaN or Inf at %lld of %lld scored positions\n",
                 static_cast<long long>(r->nonfinite_positions), static_cast<long long>(r->positions));
  }
  if (f.json) {
    // Non-finite figures (a model whose logits are NaN) are JSON null, never bare NaN.
    boost::json::array layers;
    for (double e : r->layer_relative_error) layers.push_back(FiniteOrNull(e));
    boost::json::object o{
        {"perplexity", FiniteOrNull(r->perplexity)},
        {"reference_perplexity", FiniteOrNull(r->reference_perplexity)},
        {"ppl_ratio", FiniteOrNull(r->perplexity / r->reference_perplexity)},
        {"kl_mean", FiniteOrNull(r->kl_mean)},
        {"kl_p99", FiniteOrNull(r->kl_p99)},
        {"kl_max", FiniteOrNull(r->kl_max)},
        {"top1_agreement", r->top1_agreement},
        {"nonfinite_positions", r->nonfinite_positions},
        // The key keeps its first name: scripts and the integration tests read it, and
        // it still measures what it did (codes of at most 4 bits, "INT4 share").
        {"int4_weight_fraction", mix.at_most_4bit_fraction},
        {"quantized_weight_fraction", mix.quantized_fraction},
        {"block_bits_per_weight", mix.bits_per_weight},
        {"weight_bytes", bytes},
        {"positions", r->positions},
        {"chunks", r->chunks},
        {"ctx", f.ctx},
        {"kv_cache_dtype", kernels::KvDTypeName(opts.kv_dtype)},
        {"kv_int8_rounding",
         opts.kv_dtype == kernels::KvDType::kInt8 ? kernels::KvInt8RoundingName(opts.kv_int8_rounding) : ""},
        {"layer_relative_error", std::move(layers)},
        // Share of FFN neurons skipped over every token run, and the share of the truly
        // active ones (|SiLU(gate)·up| above the pack's active threshold) that were kept.
        {"ffn_sparsity", sparsity.skipped},
        {"guesser_recall", sparsity.recall},
        {"ffn_sparsity_per_layer", boost::json::value_from(sparsity.layer_skipped)},
        {"guesser_recall_per_layer", boost::json::value_from(sparsity.layer_recall)}};
    std::printf("%s\n", boost::json::serialize(o).c_str());
    return 0;
  }
  std::printf("model %s vs reference %s on %s\n", model_dir.c_str(), f.reference.c_str(), f.data.c_str());
  std::printf("%lld chunks of %lld tokens, %lld scored positions (second half of each chunk)\n",
              static_cast<long long>(r->chunks), static_cast<long long>(f.ctx), static_cast<long long>(r->positions));
  std::printf("KV cache %s%s%s (the reference's: f32)\n", kernels::KvDTypeName(opts.kv_dtype),
              opts.kv_dtype == kernels::KvDType::kInt8 ? ", rounding " : "",
              opts.kv_dtype == kernels::KvDType::kInt8 ? kernels::KvInt8RoundingName(opts.kv_int8_rounding) : "");
  std::printf("%-28s %s\n", "metric", "value");
  std::printf("%-28s %.4f\n", "perplexity", r->perplexity);
  std::printf("%-28s %.4f\n", "reference perplexity", r->reference_perplexity);
  std::printf("%-28s %.5f\n", "ppl ratio", r->perplexity / r->reference_perplexity);
  std::printf("%-28s %.6f\n", "KL mean", r->kl_mean);
  std::printf("%-28s %.6f\n", "KL p99", r->kl_p99);
  std::printf("%-28s %.2f%%\n", "top-1 agreement", 100 * r->top1_agreement);
  if (r->nonfinite_positions > 0)
    std::printf("%-28s %lld\n", "NaN/Inf logits (positions)", static_cast<long long>(r->nonfinite_positions));
  std::printf("%-28s %.1f%%\n", "INT4 share of block weights", 100 * mix.at_most_4bit_fraction);
  std::printf("%-28s %.3f\n", "block bits per weight", mix.bits_per_weight);
  std::printf("%-28s %llu\n", "weight bytes", static_cast<unsigned long long>(bytes));
  std::printf("%-28s %.1f%%\n", "FFN neurons skipped", 100 * sparsity.skipped);
  std::printf("%-28s %.2f%%\n", "recall of active neurons", 100 * sparsity.recall);
  std::printf("per-layer relative output error, FFN neurons skipped, recall:\n");
  for (size_t l = 0; l < r->layer_relative_error.size(); ++l) {
    std::printf("  layer %2zu  %.5f  %5.1f%%  %6.2f%%\n", l, r->layer_relative_error[l],
                100 * sparsity.layer_skipped[l], 100 * sparsity.layer_recall[l]);
  }
  return 0;
}

}  // namespace

void AddEvalCommand(CLI::App& app, std::function<int()>& run) {
  auto flags = std::make_shared<EvalFlags>();
  CLI::App* cmd = app.add_subcommand("eval", "Accuracy of a model or pack against its full-precision reference");
  cmd->footer("Protocol (llama.cpp's): the text is tokenized as one stream and cut into --ctx-token chunks whose\n"
              "first token is BOS; the second half of each chunk is scored. KL divergence and top-1 agreement\n"
              "compare against the reference's distributions on the same positions.");
  cmd->add_option("--model", flags->model, "Model or pack to evaluate (default: the embedded model)");
  cmd->add_option("--reference", flags->reference, "Full-precision model directory")->required();
  cmd->add_option("--data", flags->data, "Evaluation text (never the calibration text)")->required();
  cmd->add_option("--ctx", flags->ctx, "Chunk length in tokens")->capture_default_str()->check(CLI::Range(8, 1 << 16));
  cmd->add_option("--max-chunks", flags->max_chunks, "Evaluate at most this many chunks (0 = all)")
      ->capture_default_str();
  cmd->add_flag("--json", flags->json, "Print one JSON object");
  AddActQuantFlags(*cmd, flags->act_quant);
  AddExactFlag(*cmd, flags->exact);
  AddSparsityFlag(*cmd, flags->sparsity);
  AddKvCacheDTypeFlag(*cmd, flags->kv_cache_dtype);
  cmd->add_option("--kv-int8-rounding", flags->kv_int8_rounding,
                  "With --kv-cache-dtype int8: how codes are rounded, to compare the candidates docs/accuracy.md "
                  "measured (nearest, feedback: error carried along the head dimension, stochastic: hashed draws, "
                  "refit: nearest with a least-squares scale); default: what int8 stores (refit)")
      ->check(CLI::IsMember({"nearest", "feedback", "stochastic", "refit"}));
  cmd->add_option("--threads,-t", flags->threads, "Compute threads (default: all cores)");
  cmd->callback([&run, flags] { run = [flags] { return RunEval(*flags); }; });
}

}  // namespace accullm::cli
