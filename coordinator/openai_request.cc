#include "coordinator/openai_request.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "boost/json.hpp"

namespace accullm::coordinator {

namespace json = boost::json;

namespace {

// Reads typed fields of the request object; the first error wins.
class FieldReader {
 public:
  explicit FieldReader(const json::object& o) : o_(o) {}
  std::optional<ApiError> error;

  const json::value* Find(std::string_view key) const {
    const json::value* v = o_.if_contains(key);
    return v == nullptr || v->is_null() ? nullptr : v;
  }
  void Fail(std::string message, std::string_view param) {
    if (!error) error = BadRequest(std::move(message), std::string(param));
  }

  std::optional<double> Number(std::string_view key, double lo, double hi) {
    const json::value* v = Find(key);
    if (v == nullptr) return std::nullopt;
    double d;
    if (v->is_double()) d = v->get_double();
    else if (v->is_int64()) d = static_cast<double>(v->get_int64());
    else if (v->is_uint64()) d = static_cast<double>(v->get_uint64());
    else {
      Fail(absl::StrCat("'", std::string(key), "' must be a number"), key);
      return std::nullopt;
    }
    if (!(d >= lo && d <= hi)) {
      Fail(absl::StrCat("'", std::string(key), "' must be in [", lo, ", ", hi, "], got ", d), key);
      return std::nullopt;
    }
    return d;
  }
  std::optional<int64_t> Int(std::string_view key, int64_t lo, int64_t hi) {
    const json::value* v = Find(key);
    if (v == nullptr) return std::nullopt;
    int64_t x;
    if (v->is_int64()) x = v->get_int64();
    else if (v->is_uint64() && v->get_uint64() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      x = static_cast<int64_t>(v->get_uint64());
    else if (v->is_double() && std::floor(v->get_double()) == v->get_double() && std::fabs(v->get_double()) < 9e18)
      x = static_cast<int64_t>(v->get_double());
    else {
      Fail(absl::StrCat("'", std::string(key), "' must be an integer"), key);
      return std::nullopt;
    }
    if (x < lo || x > hi) {
      Fail(absl::StrCat("'", std::string(key), "' must be in [", lo, ", ", hi, "], got ", x), key);
      return std::nullopt;
    }
    return x;
  }
  std::optional<bool> Bool(std::string_view key) {
    const json::value* v = Find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_bool()) {
      Fail(absl::StrCat("'", std::string(key), "' must be a boolean"), key);
      return std::nullopt;
    }
    return v->get_bool();
  }
  std::optional<std::string> String(std::string_view key) {
    const json::value* v = Find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) {
      Fail(absl::StrCat("'", std::string(key), "' must be a string"), key);
      return std::nullopt;
    }
    return std::string(v->get_string());
  }

 private:
  const json::object& o_;
};

void ParseStop(FieldReader& r, const RequestLimits& limits, OpenAiRequest& req) {
  const json::value* v = r.Find("stop");
  if (v == nullptr) return;
  if (v->is_string()) {
    req.stop.emplace_back(v->get_string());
  } else if (v->is_array()) {
    for (const auto& s : v->get_array()) {
      if (!s.is_string()) return r.Fail("'stop' must be a string or an array of strings", "stop");
      req.stop.emplace_back(s.get_string());
    }
  } else {
    return r.Fail("'stop' must be a string or an array of strings", "stop");
  }
  if (static_cast<int>(req.stop.size()) > limits.max_stop)
    return r.Fail(absl::StrCat("'stop' may hold at most ", limits.max_stop, " sequences"), "stop");
  for (const auto& s : req.stop)
    if (s.empty()) return r.Fail("stop sequences must not be empty", "stop");
}

// "prompt": a string, a list of one string, a list of token ids, or a list of one such list.
void ParsePrompt(FieldReader& r, OpenAiRequest& req) {
  const json::value* v = r.Find("prompt");
  if (v == nullptr) return r.Fail("'prompt' is required", "prompt");
  auto ids_from = [&](const json::array& a) {
    for (const auto& x : a) {
      if (!x.is_int64() || x.get_int64() < 0 || x.get_int64() > std::numeric_limits<int32_t>::max())
        return r.Fail("'prompt' token ids must be non-negative integers", "prompt");
      req.prompt_ids.push_back(static_cast<int32_t>(x.get_int64()));
    }
  };
  if (v->is_string()) {
    req.prompt_text = std::string(v->get_string());
  } else if (v->is_array()) {
    const json::array& a = v->get_array();
    if (a.empty()) return r.Fail("'prompt' must not be empty", "prompt");
    if (a[0].is_string() || a[0].is_array()) {
      if (a.size() != 1)
        return r.Fail("only one prompt per request is supported (use n for several choices)", "prompt");
      if (a[0].is_string()) req.prompt_text = std::string(a[0].get_string());
      else ids_from(a[0].get_array());
    } else {
      ids_from(a);
    }
  } else {
    return r.Fail("'prompt' must be a string, an array of strings or an array of token ids", "prompt");
  }
  if (req.prompt_text && req.prompt_text->empty()) r.Fail("'prompt' must not be empty", "prompt");
  if (!req.prompt_text && req.prompt_ids.empty() && !r.error) r.Fail("'prompt' must not be empty", "prompt");
}

void ParseMessages(FieldReader& r, OpenAiRequest& req) {
  const json::value* v = r.Find("messages");
  if (v == nullptr) return r.Fail("'messages' is required", "messages");
  if (!v->is_array() || v->get_array().empty()) return r.Fail("'messages' must be a non-empty array", "messages");
  for (size_t i = 0; i < v->get_array().size(); ++i) {
    const json::value& m = v->get_array()[i];
    const std::string param = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return r.Fail(absl::StrCat(param, " must be an object"), param);
    const json::object& o = m.get_object();
    const json::value* role = o.if_contains("role");
    if (role == nullptr || !role->is_string())
      return r.Fail(absl::StrCat(param, ".role must be a string"), param + ".role");
    text::ChatMessage turn;
    turn.role = std::string(role->get_string());
    if (turn.role != "system" && turn.role != "developer" && turn.role != "user" && turn.role != "assistant" &&
        turn.role != "tool")
      return r.Fail(
          absl::StrCat(param, ".role '", turn.role, "' is not one of system, developer, user, assistant, tool"),
          param + ".role");
    const json::value* content = o.if_contains("content");
    if (content == nullptr || content->is_null()) {
      if (turn.role != "assistant") return r.Fail(absl::StrCat(param, ".content is required"), param + ".content");
    } else if (content->is_string()) {
      turn.content = std::string(content->get_string());
    } else if (content->is_array()) {
      for (const auto& part : content->get_array()) {
        const json::object* po = part.if_object();
        const json::value* type = po ? po->if_contains("type") : nullptr;
        const json::value* text = po ? po->if_contains("text") : nullptr;
        if (type == nullptr || !type->is_string() || type->get_string() != "text" || text == nullptr ||
            !text->is_string())
          return r.Fail(absl::StrCat(param, ".content parts must be {\"type\": \"text\", \"text\": string}"),
                        param + ".content");
        turn.content += std::string(text->get_string());
      }
    } else {
      return r.Fail(absl::StrCat(param, ".content must be a string or an array of text parts"), param + ".content");
    }
    req.messages.push_back(std::move(turn));
  }
}

}  // namespace

std::variant<OpenAiRequest, ApiError> ParseOpenAiRequest(Endpoint endpoint, std::string_view body,
                                                         const RequestLimits& limits) {
  boost::system::error_code ec;
  json::value root = json::parse(json::string_view(body.data(), body.size()), ec);
  if (ec) return BadRequest(absl::StrCat("request body is not valid JSON: ", ec.message()), "", "invalid_json");
  if (!root.is_object()) return BadRequest("request body must be a JSON object", "", "invalid_json");
  FieldReader r(root.get_object());
  OpenAiRequest req;
  req.endpoint = endpoint;
  const bool chat = endpoint == Endpoint::kChat;

  if (auto m = r.String("model")) req.model = *m;
  else if (!r.error) r.Fail("'model' is required", "model");
  if (chat) ParseMessages(r, req);
  else ParsePrompt(r, req);

  if (auto x = r.Int("max_tokens", 1, std::numeric_limits<int32_t>::max())) req.max_tokens = *x;
  if (chat) {
    if (auto x = r.Int("max_completion_tokens", 1, std::numeric_limits<int32_t>::max())) req.max_tokens = *x;
  }
  if (auto x = r.Number("temperature", 0, 2)) req.temperature = static_cast<float>(*x);
  if (auto x = r.Number("top_p", 0, 1)) {
    if (*x <= 0) r.Fail("'top_p' must be in (0, 1]", "top_p");
    req.top_p = static_cast<float>(*x);
  }
  if (auto x = r.Int("top_k", -1, std::numeric_limits<int32_t>::max())) req.top_k = *x < 0 ? 0 : static_cast<int>(*x);
  if (auto x = r.Number("min_p", 0, 1)) req.min_p = static_cast<float>(*x);
  if (auto x = r.Number("presence_penalty", -2, 2)) req.presence_penalty = static_cast<float>(*x);
  if (auto x = r.Number("frequency_penalty", -2, 2)) req.frequency_penalty = static_cast<float>(*x);
  if (auto x = r.Number("repetition_penalty", 0, 100)) {
    if (*x <= 0) r.Fail("'repetition_penalty' must be in (0, 100]", "repetition_penalty");
    req.repetition_penalty = static_cast<float>(*x);
  }
  if (auto x = r.Int("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())) req.seed = *x;
  ParseStop(r, limits, req);
  if (auto x = r.Int("n", 1, limits.max_n)) req.n = static_cast<int>(*x);
  if (auto x = r.Bool("stream")) req.stream = *x;
  if (const json::value* so = r.Find("stream_options")) {
    const json::value* iu = so->is_object() ? so->get_object().if_contains("include_usage") : nullptr;
    if (!so->is_object() || (iu != nullptr && !iu->is_bool() && !iu->is_null()))
      r.Fail("'stream_options' must be an object {\"include_usage\": bool}", "stream_options");
    else if (iu != nullptr && iu->is_bool()) req.include_usage = iu->get_bool();
  }
  if (auto x = r.Bool("ignore_eos")) req.ignore_eos = *x;
  if (auto x = r.String("user")) req.user = *x;
  if (chat) {
    const bool want = r.Bool("logprobs").value_or(false);
    const auto top = r.Int("top_logprobs", 0, limits.max_logprobs);
    if (top && !want && !r.error) r.Fail("'top_logprobs' needs 'logprobs': true", "top_logprobs");
    if (want) req.logprobs = static_cast<int>(top.value_or(0));
  } else {
    if (auto x = r.Int("logprobs", 0, limits.max_logprobs)) req.logprobs = static_cast<int>(*x);
  }

  // Fields whose meaning this server cannot honour are refused rather than silently ignored.
  if (!chat) {
    if (r.Bool("echo").value_or(false)) r.Fail("'echo' is not supported", "echo");
    if (r.String("suffix")) r.Fail("'suffix' is not supported", "suffix");
    if (auto b = r.Int("best_of", 1, limits.max_n); b && *b != req.n)
      r.Fail("'best_of' other than n is not supported", "best_of");
  } else {
    if (const json::value* t = r.Find("tools"); t && (!t->is_array() || !t->get_array().empty()))
      r.Fail("'tools' are not supported", "tools");
    if (const json::value* f = r.Find("response_format")) {
      const json::value* type = f->is_object() ? f->get_object().if_contains("type") : nullptr;
      if (type == nullptr || !type->is_string() || type->get_string() != "text")
        r.Fail("only response_format {\"type\": \"text\"} is supported", "response_format");
    }
  }
  if (const json::value* lb = r.Find("logit_bias"); lb && (!lb->is_object() || !lb->get_object().empty()))
    r.Fail("'logit_bias' is not supported", "logit_bias");
  if (r.error) return *r.error;
  return req;
}

}  // namespace accullm::coordinator
