// Builds OpenAI response bodies from the scheduler's events: SSE chunks for stream=true
// ("data: {...}\n\n" ... "data: [DONE]\n\n") and the whole JSON object otherwise, for
// text_completion and chat.completion alike.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "boost/json.hpp"
#include "coordinator/generation_stream.h"
#include "coordinator/openai_request.h"
#include "text/tokenizer.h"

namespace accullm::coordinator {

// The client-facing message of an aborted request (`error`: the executor's failure, or empty
// when the server shut down).
std::string AbortMessage(const std::string& error);

class ResponseBuilder {
 public:
  // `last_prompt_id`: the prompt's last token, so the first generated token's text is decoded
  // in context (SentencePiece drops a leading space from a token decoded alone).
  ResponseBuilder(const OpenAiRequest& request, std::string id, std::string model, const text::Tokenizer& tokenizer,
                  int64_t prompt_tokens, int32_t last_prompt_id);

  // Streaming. First(): chunks sent before any token (chat: the assistant role).
  std::string SseFirst();
  // Chunks for one event (also accumulates it).
  std::string Sse(const StreamEvent& e);
  // After every choice finished: the usage chunk when asked, then [DONE].
  std::string SseEnd() const;

  // Non-streaming.
  void Accumulate(const StreamEvent& e);
  std::string FinalJson() const;

  bool done() const { return finished_ == static_cast<int>(choices_.size()); }
  // Any choice that ended with "error" / "abort": the response cannot be a normal answer.
  bool failed() const { return !error_.empty() || aborted_; }
  bool aborted() const { return aborted_; }
  // Empty when the server shut down; else the executor's failure (e.g. a dead stage).
  const std::string& abort_error() const { return abort_error_; }
  const std::string& error() const { return error_; }
  int64_t prompt_tokens() const { return prompt_tokens_; }
  int64_t completion_tokens() const;
  const std::string& id() const { return id_; }

 private:
  struct Choice {
    std::string text;
    std::string finish_reason;
    std::vector<TokenLogprob> tokens;
    int64_t completion_tokens = 0;
  };
  boost::json::object Envelope(bool chunk) const;
  boost::json::value LogprobsJson(const std::vector<TokenLogprob>& tokens, size_t text_offset, int32_t prev) const;
  boost::json::object Usage() const;
  // The text `id` adds after `prev`.
  std::string TokenText(int32_t prev, int32_t id) const;
  static std::string Data(const boost::json::value& v);

  bool chat_;
  bool stream_include_usage_;
  int logprobs_;
  std::string id_;
  std::string model_;
  int64_t created_;
  const text::Tokenizer& tokenizer_;
  int64_t prompt_tokens_;
  int32_t last_prompt_id_;
  std::vector<Choice> choices_;
  int finished_ = 0;
  bool aborted_ = false;
  std::string abort_error_;
  std::string error_;
};

}  // namespace accullm::coordinator
