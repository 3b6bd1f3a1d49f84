#include "coordinator/openai_response.h"

#include <chrono>

#include "common/json.h"

namespace accullm::coordinator {

// Why a request was aborted: the server shutting down, or the executor's failure (a pipeline
// stage that died), which the client should see.
std::string AbortMessage(const std::string& error) {
  return error.empty() ? "the request was aborted: the server is shutting down" : "the request was aborted: " + error;
}

namespace json = boost::json;

ResponseBuilder::ResponseBuilder(const OpenAiRequest& request, std::string id, std::string model,
                                 const text::Tokenizer& tokenizer, int64_t prompt_tokens, int32_t last_prompt_id)
    : chat_(request.endpoint == Endpoint::kChat), stream_include_usage_(request.include_usage),
      logprobs_(request.logprobs), id_(std::move(id)), model_(std::move(model)),
      created_(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                   .count()),
      tokenizer_(tokenizer), prompt_tokens_(prompt_tokens), last_prompt_id_(last_prompt_id),
      choices_(static_cast<size_t>(request.n)) {}

std::string ResponseBuilder::Data(const json::value& v) { return "data: " + json::serialize(v) + "\n\n"; }

std::string ResponseBuilder::TokenText(int32_t prev, int32_t id) const {
  const std::string before = tokenizer_.Decode({prev}, /*skip_special=*/false);
  const std::string both = tokenizer_.Decode({prev, id}, /*skip_special=*/false);
  if (both.size() >= before.size() && both.compare(0, before.size(), before) == 0) return both.substr(before.size());
  return tokenizer_.Decode({id}, /*skip_special=*/false);
}

json::object ResponseBuilder::Envelope(bool chunk) const {
  json::object o;
  o["id"] = id_;
  o["object"] = chat_ ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  o["created"] = created_;
  o["model"] = model_;
  o["system_fingerprint"] = "accullm-0.1.0";
  return o;
}

json::object ResponseBuilder::Usage() const {
  json::object u;
  const int64_t c = completion_tokens();
  u["prompt_tokens"] = prompt_tokens_;
  u["completion_tokens"] = c;
  u["total_tokens"] = prompt_tokens_ + c;
  return u;
}

int64_t ResponseBuilder::completion_tokens() const {
  int64_t c = 0;
  for (const auto& ch : choices_) c += ch.completion_tokens;
  return c;
}

// Logprobs go through FiniteOrNull: a broken model's NaN must not make the body invalid JSON.
json::value ResponseBuilder::LogprobsJson(const std::vector<TokenLogprob>& tokens, size_t text_offset,
                                          int32_t prev) const {
  if (logprobs_ < 0) return nullptr;
  if (chat_) {
    auto entry = [&](int32_t id, float lp) {
      const std::string t = TokenText(prev, id);
      json::object o;
      o["token"] = t;
      o["logprob"] = FiniteOrNull(lp);
      json::array bytes;
      for (unsigned char b : t) bytes.push_back(b);
      o["bytes"] = std::move(bytes);
      return o;
    };
    json::array content;
    for (const auto& t : tokens) {
      json::object o = entry(t.id, t.logprob);
      json::array top;
      for (const auto& [id, lp] : t.top) top.push_back(entry(id, lp));
      o["top_logprobs"] = std::move(top);
      content.push_back(std::move(o));
      prev = t.id;
    }
    json::object r;
    r["content"] = std::move(content);
    return r;
  }
  json::array toks, lps, tops, offsets;
  for (const auto& t : tokens) {
    const std::string s = TokenText(prev, t.id);
    toks.push_back(json::value(s));
    lps.push_back(FiniteOrNull(t.logprob));
    json::object top;
    for (const auto& [id, lp] : t.top) top[TokenText(prev, id)] = FiniteOrNull(lp);
    tops.push_back(std::move(top));
    offsets.push_back(text_offset);
    text_offset += s.size();
    prev = t.id;
  }
  json::object r;
  r["tokens"] = std::move(toks);
  r["token_logprobs"] = std::move(lps);
  r["top_logprobs"] = std::move(tops);
  r["text_offset"] = std::move(offsets);
  return r;
}

void ResponseBuilder::Accumulate(const StreamEvent& e) {
  if (e.index < 0 || e.index >= static_cast<int>(choices_.size())) return;
  Choice& c = choices_[e.index];
  c.text += e.text;
  c.tokens.insert(c.tokens.end(), e.tokens.begin(), e.tokens.end());
  c.completion_tokens = e.completion_tokens;
  if (!e.finish_reason.empty() && c.finish_reason.empty()) {
    c.finish_reason = e.finish_reason;
    ++finished_;
    if (e.finish_reason == "abort") {
      aborted_ = true;
      if (abort_error_.empty()) abort_error_ = e.error;
    }
    if (e.finish_reason == "error" && error_.empty()) error_ = e.error.empty() ? "generation failed" : e.error;
  }
}

std::string ResponseBuilder::SseFirst() {
  if (!chat_) return {};
  std::string out;
  for (size_t i = 0; i < choices_.size(); ++i) {
    json::object o = Envelope(true);
    json::object delta;
    delta["role"] = "assistant";
    delta["content"] = "";
    json::object ch;
    ch["index"] = i;
    ch["delta"] = std::move(delta);
    ch["logprobs"] = nullptr;
    ch["finish_reason"] = nullptr;
    o["choices"] = json::array{std::move(ch)};
    out += Data(o);
  }
  return out;
}

std::string ResponseBuilder::Sse(const StreamEvent& e) {
  const bool valid = e.index >= 0 && e.index < static_cast<int>(choices_.size());
  const size_t offset = valid ? choices_[e.index].text.size() : 0;
  const int32_t prev =
      valid && !choices_[e.index].tokens.empty() ? choices_[e.index].tokens.back().id : last_prompt_id_;
  Accumulate(e);
  if (e.finish_reason == "error" || e.finish_reason == "abort") {
    // Mid-stream failure: an error object, as OpenAI sends one, then the stream ends.
    json::object err;
    err["message"] = e.finish_reason == "abort" ? AbortMessage(e.error) : e.error;
    err["type"] = e.finish_reason == "abort" ? "service_unavailable_error" : "internal_error";
    err["param"] = nullptr;
    err["code"] = nullptr;
    json::object o;
    o["error"] = std::move(err);
    return Data(o);
  }
  if (e.text.empty() && e.finish_reason.empty() && logprobs_ < 0) return {};
  json::object o = Envelope(true);
  json::object ch;
  ch["index"] = e.index;
  if (chat_) {
    json::object delta;
    if (!e.text.empty() || e.finish_reason.empty()) delta["content"] = e.text;
    ch["delta"] = std::move(delta);
  } else {
    ch["text"] = e.text;
  }
  ch["logprobs"] = e.tokens.empty() ? json::value(nullptr) : LogprobsJson(e.tokens, offset, prev);
  ch["finish_reason"] = e.finish_reason.empty() ? json::value(nullptr) : json::value(e.finish_reason);
  o["choices"] = json::array{std::move(ch)};
  if (stream_include_usage_) o["usage"] = nullptr;
  return Data(o);
}

std::string ResponseBuilder::SseEnd() const {
  std::string out;
  if (stream_include_usage_) {
    json::object o = Envelope(true);
    o["choices"] = json::array();
    o["usage"] = Usage();
    out += Data(o);
  }
  out += "data: [DONE]\n\n";
  return out;
}

std::string ResponseBuilder::FinalJson() const {
  json::object o = Envelope(false);
  json::array arr;
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
    json::object ch;
    ch["index"] = i;
    if (chat_) {
      json::object msg;
      msg["role"] = "assistant";
      msg["content"] = c.text;
      ch["message"] = std::move(msg);
    } else {
      ch["text"] = c.text;
    }
    ch["logprobs"] = LogprobsJson(c.tokens, 0, last_prompt_id_);
    ch["finish_reason"] = c.finish_reason;
    arr.push_back(std::move(ch));
  }
  o["choices"] = std::move(arr);
  o["usage"] = Usage();
  return json::serialize(o);
}

}  // namespace accullm::coordinator
