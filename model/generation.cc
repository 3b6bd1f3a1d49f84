#include "model/generation.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "text/stop_text.h"

namespace accullm {

std::vector<int32_t> EndOfSequenceIds(const ModelConfig& config, const text::Tokenizer* tokenizer) {
  std::vector<int32_t> eos;
  if (tokenizer != nullptr) eos = tokenizer->eos_ids();
  for (int64_t e : config.eos_token_ids)
    if (std::find(eos.begin(), eos.end(), e) == eos.end()) eos.push_back(static_cast<int32_t>(e));
  return eos;
}

absl::StatusOr<GenerationResult> Generate(Transformer& model, const text::Tokenizer* tokenizer,
                                          const std::vector<int32_t>& prompt, const GenerationOptions& options,
                                          const GenerationCallbacks& callbacks) {
  using Clock = std::chrono::steady_clock;
  RETURN_IF_ERROR(options.sampling.Validate());
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  if (options.max_tokens < 0) return absl::InvalidArgumentError("max_tokens must be >= 0");
  if (!options.stop.empty() && tokenizer == nullptr) {
    return absl::InvalidArgumentError("stop sequences need a tokenizer");
  }
  for (const auto& s : options.stop)
    if (s.empty()) return absl::InvalidArgumentError("stop sequences must not be empty");
  const ModelConfig& cfg = model.config();
  KvCache cache = model.NewCache(options.context);
  if (static_cast<int64_t>(prompt.size()) >= cache.capacity()) {
    return absl::OutOfRangeError(absl::StrCat("prompt of ", prompt.size(), " tokens does not fit the context of ",
                                              cache.capacity(), " positions"));
  }
  const std::vector<int32_t> eos = EndOfSequenceIds(cfg, tokenizer);

  GenerationResult result;
  result.prompt_tokens = static_cast<int64_t>(prompt.size());
  result.finish_reason = "length";
  std::vector<float> logits(static_cast<size_t>(cfg.vocab_size));
  std::vector<int32_t> history = prompt;
  Sampler sampler(options.sampling);
  std::unique_ptr<text::StopText> stop_text;
  if (tokenizer != nullptr) stop_text = std::make_unique<text::StopText>(*tokenizer, options.stop);
  bool stopped_by_sequence = false;

  auto t0 = Clock::now();
  RETURN_IF_ERROR(model.Forward(prompt.data(), static_cast<int64_t>(prompt.size()), cache, logits.data()));
  auto t1 = Clock::now();
  result.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

  for (int64_t step = 0; step < options.max_tokens; ++step) {
    if (step > 0) {
      if (cache.length() >= cache.capacity()) break;  // context full: finish with "length"
      const int32_t last = result.ids.back();
      RETURN_IF_ERROR(model.Forward(&last, 1, cache, logits.data()));
    }
    const int32_t id = sampler.Sample(logits.data(), cfg.vocab_size, history);
    history.push_back(id);
    const bool is_eos = !options.ignore_eos && std::find(eos.begin(), eos.end(), id) != eos.end();
    if (is_eos) {
      result.finish_reason = "stop";
      break;
    }
    result.ids.push_back(id);
    if (callbacks.on_token) callbacks.on_token(id);
    if (stop_text) {
      text::StopText::Piece piece = stop_text->Push(id);
      if (!piece.text.empty() && callbacks.on_text) callbacks.on_text(piece.text);
      if (piece.stopped) {
        stopped_by_sequence = true;
        result.finish_reason = "stop";
        break;
      }
    }
  }
  if (stop_text) {
    if (!stopped_by_sequence) {
      const std::string rest = stop_text->Finish();
      if (!rest.empty() && callbacks.on_text) callbacks.on_text(rest);
    }
    result.text = stop_text->text();
  }
  result.decode_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  return result;
}

}  // namespace accullm
