// A whole generation through a SpeculativeDecoder, ending exactly as the scheduler ends a
// sequence (coordinator/scheduler.cc, CompleteOldest): an EOS token ends it with "stop" and is
// not part of the output; a stop sequence ends it with "stop" after the token that completed
// it; max_tokens ends it with "length". Tokens a step produced past the end are dropped (they
// cost a little work, never a different output).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "speculative/speculative_decoder.h"
#include "text/tokenizer.h"

namespace accullm::speculative {

struct GenerationRequest {
  std::vector<int32_t> prompt;
  int64_t max_tokens = 0;  // >= 1; the decoder's capacity must hold prompt + max_tokens
  std::vector<std::string> stop;
  bool ignore_eos = false;
};

struct GenerationResult {
  std::vector<int32_t> ids;  // the generated tokens (no EOS)
  std::string finish;        // "stop" or "length"
};

// `tokenizer` may be null (ids only: no text, no stop sequences), as for the scheduler; EOS
// ids come from model::EndOfSequenceIds(config, tokenizer). `on_token` (may be empty) gets
// each kept token with the text it made final; `on_text` (may be empty) gets final text that
// comes with no token (what a stop check held back, released at the end).
absl::StatusOr<GenerationResult> GenerateSpeculatively(
    SpeculativeDecoder& decoder, const model::ModelConfig& config, const text::Tokenizer* tokenizer,
    const GenerationRequest& request, const std::function<void(int32_t token, std::string_view text)>& on_token = {},
    const std::function<void(std::string_view text)>& on_text = {});

}  // namespace accullm::speculative
