// Door: the JSON body of POST /v1/completions and /v1/chat/completions. The first byte picks
// the endpoint; the rest is the body, checked for UTF-8 first as ApiService does. A request
// that validates must hold only values the scheduler accepts.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "coordinator/openai_request.h"
#include "tests/fuzz/fuzz_input.h"
#include "text/unicode_tables.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace accullm;
  using namespace accullm::coordinator;
  if (size == 0) return 0;
  const Endpoint endpoint = (data[0] & 1) ? Endpoint::kChat : Endpoint::kCompletions;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  if (!text::IsValidUtf8(body)) return 0;
  const RequestLimits limits;
  auto parsed = ParseOpenAiRequest(endpoint, body, limits);
  if (auto* e = std::get_if<ApiError>(&parsed)) {
    if (e->http_status < 400 || e->http_status > 499) fuzz::Broken("a bad request body got a non-4xx status");
    return 0;
  }
  const OpenAiRequest& r = std::get<OpenAiRequest>(parsed);
  if (r.n < 1 || r.n > limits.max_n) fuzz::Broken("n outside [1, max_n] accepted");
  if (static_cast<int>(r.stop.size()) > limits.max_stop) fuzz::Broken("more stop strings than max_stop accepted");
  if (r.logprobs > limits.max_logprobs) fuzz::Broken("logprobs over max_logprobs accepted");
  for (float v : {r.temperature, r.top_p, r.min_p, r.presence_penalty, r.frequency_penalty, r.repetition_penalty}) {
    if (!std::isfinite(v)) fuzz::Broken("a non-finite sampling parameter accepted");
  }
  if (r.max_tokens && *r.max_tokens < 1) fuzz::Broken("max_tokens < 1 accepted");
  for (int32_t id : r.prompt_ids) {
    if (id < 0) fuzz::Broken("a negative prompt token id accepted");
  }
  if (endpoint == Endpoint::kChat ? r.messages.empty() : (!r.prompt_text && r.prompt_ids.empty()))
    fuzz::Broken("a request without a prompt accepted");
  return 0;
}
