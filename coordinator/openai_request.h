// Parsing and validating OpenAI request bodies (/v1/completions, /v1/chat/completions) into
// one typed request. Everything a client can get wrong is caught here, before any work is
// queued, with the offending field named in `param`.
//
// Unknown fields are ignored (as OpenAI and vLLM do: SDKs send fields a server may not know).
// Known fields that would change the answer in a way this server cannot honour (echo,
// suffix, best_of > n, logit_bias, tools, response_format other than text) are refused.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "coordinator/api_error.h"
#include "text/chat_template.h"

namespace accullm::coordinator {

enum class Endpoint { kCompletions, kChat };

struct OpenAiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;
  // Completions: text or token ids. Chat: messages.
  std::optional<std::string> prompt_text;
  std::vector<int32_t> prompt_ids;
  std::vector<text::ChatMessage> messages;  // content: text parts joined

  std::optional<int64_t> max_tokens;  // absent: completions 16, chat the rest of the context
  float temperature = 1.0f;
  float top_p = 1.0f;
  int top_k = 0;
  float min_p = 0.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  float repetition_penalty = 1.0f;  // vLLM extension
  std::optional<int64_t> seed;
  std::vector<std::string> stop;
  int n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool ignore_eos = false;     // vLLM extension
  // Completions: logprobs = k (0..20) → top-k alternatives. Chat: logprobs=true + top_logprobs.
  int logprobs = -1;  // -1: none
  std::string user;
};

struct RequestLimits {
  int max_n = 16;
  int max_logprobs = 20;
  int max_stop = 4;
};

// `body` must already be known to be valid UTF-8.
std::variant<OpenAiRequest, ApiError> ParseOpenAiRequest(Endpoint endpoint, std::string_view body,
                                                         const RequestLimits& limits);

}  // namespace accullm::coordinator
