// The generation loop: prefill the prompt, then decode token by token with a Sampler,
// streaming UTF-8-safe text, honouring max_tokens, EOS and stop sequences.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/sampler.h"
#include "model/transformer.h"
#include "text/tokenizer.h"

namespace accullm {

struct GenerationOptions {
  int64_t max_tokens = 128;
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop sequences (text); need a tokenizer
  bool ignore_eos = false;
  int64_t context = 0;  // KV capacity; 0 = the model's max_position_embeddings
};

struct GenerationResult {
  std::vector<int32_t> ids;   // generated ids (a stop sequence's tokens included)
  std::string text;           // generated text, cut before a stop sequence
  std::string finish_reason;  // "stop" (EOS or stop sequence) or "length"
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

struct GenerationCallbacks {
  std::function<void(std::string_view)> on_text;  // each newly final piece of text
  std::function<void(int32_t)> on_token;          // each generated id
};

// `tokenizer` may be null (ids only: no text, no stop sequences).
absl::StatusOr<GenerationResult> Generate(Transformer& model, const text::Tokenizer* tokenizer,
                                          const std::vector<int32_t>& prompt, const GenerationOptions& options,
                                          const GenerationCallbacks& callbacks = {});

// The ids that end a sequence: the tokenizer's EOS tokens (when there is a tokenizer) and
// config.json's eos_token_id(s), each once.
std::vector<int32_t> EndOfSequenceIds(const ModelConfig& config, const text::Tokenizer* tokenizer);

}  // namespace accullm
