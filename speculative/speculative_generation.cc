#include "speculative/speculative_generation.h"

#include <algorithm>
#include <optional>

#include "model/end_of_sequence.h"
#include "text/stop_text.h"

namespace accullm::speculative {

absl::StatusOr<GenerationResult> GenerateSpeculatively(
    SpeculativeDecoder& decoder, const model::ModelConfig& config, const text::Tokenizer* tokenizer,
    const GenerationRequest& request, const std::function<void(int32_t token, std::string_view text)>& on_token,
    const std::function<void(std::string_view text)>& on_text) {
  if (request.max_tokens < 1) return absl::InvalidArgumentError("max_tokens must be at least 1");
  if (!request.stop.empty() && tokenizer == nullptr)
    return absl::InvalidArgumentError("stop sequences need a tokenizer");
  const std::vector<int32_t> eos = model::EndOfSequenceIds(config, tokenizer);
  std::optional<text::StopText> stop_text;
  if (tokenizer != nullptr) stop_text.emplace(*tokenizer, request.stop);
  auto text_out = [&](std::string_view text) {
    if (on_text && !text.empty()) on_text(text);
  };

  GenerationResult result;
  auto prefill = decoder.Prefill(request.prompt);
  if (!prefill.ok()) return prefill.status();
  std::vector<int32_t> produced = {*prefill};
  while (true) {
    for (int32_t id : produced) {
      if (!request.ignore_eos && std::find(eos.begin(), eos.end(), id) != eos.end()) {
        result.finish = "stop";
        if (stop_text) text_out(stop_text->Finish());
        return result;
      }
      result.ids.push_back(id);
      text::StopText::Piece piece = stop_text ? stop_text->Push(id) : text::StopText::Piece{};
      if (on_token) on_token(id, piece.text);
      if (piece.stopped) {
        result.finish = "stop";
        return result;
      }
      if (static_cast<int64_t>(result.ids.size()) >= request.max_tokens) {
        result.finish = "length";
        if (stop_text) text_out(stop_text->Finish());
        return result;
      }
    }
    auto step = decoder.Step(request.max_tokens - static_cast<int64_t>(result.ids.size()));
    if (!step.ok()) return step.status();
    produced = std::move(*step);
  }
}

}  // namespace accullm::speculative
