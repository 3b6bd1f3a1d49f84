// OpenAI request parsing and validation, UTF-8 checking, the constant-time key compare,
// error bodies and response/SSE formatting (non-finite numbers never reach a body).
#include <gtest/gtest.h>

#include <limits>

#include "boost/json.hpp"
#include "coordinator/api_error.h"
#include "coordinator/api_service.h"
#include "coordinator/openai_request.h"
#include "coordinator/openai_response.h"
#include "monitoring/serving_metrics.h"
#include "text/unicode_tables.h"

namespace accullm::coordinator {
namespace {

OpenAiRequest Ok(Endpoint e, const std::string& body) {
  auto r = ParseOpenAiRequest(e, body, RequestLimits{});
  if (auto* err = std::get_if<ApiError>(&r)) ADD_FAILURE() << err->message;
  return std::get<OpenAiRequest>(r);
}

ApiError Err(Endpoint e, const std::string& body) {
  auto r = ParseOpenAiRequest(e, body, RequestLimits{});
  EXPECT_TRUE(std::holds_alternative<ApiError>(r)) << body;
  return std::holds_alternative<ApiError>(r) ? std::get<ApiError>(r) : ApiError{};
}

TEST(OpenAiRequest, CompletionFields) {
  auto r = Ok(Endpoint::kCompletions,
              R"({"model":"m","prompt":"hi","max_tokens":5,"temperature":0.5,"top_p":0.9,"top_k":10,"min_p":0.1,
                  "seed":-3,"stop":["a","b"],"n":2,"stream":true,"stream_options":{"include_usage":true},
                  "logprobs":3,"presence_penalty":0.5,"frequency_penalty":-0.5,"user":"u","unknown":[1]})");
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(*r.prompt_text, "hi");
  EXPECT_EQ(*r.max_tokens, 5);
  EXPECT_FLOAT_EQ(r.temperature, 0.5f);
  EXPECT_EQ(r.top_k, 10);
  EXPECT_EQ(*r.seed, -3);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.n, 2);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.logprobs, 3);
  EXPECT_EQ(r.user, "u");
}

TEST(OpenAiRequest, PromptForms) {
  EXPECT_EQ(Ok(Endpoint::kCompletions, R"({"model":"m","prompt":["x"]})").prompt_text, "x");
  EXPECT_EQ(Ok(Endpoint::kCompletions, R"({"model":"m","prompt":[1,2,3]})").prompt_ids,
            (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(Ok(Endpoint::kCompletions, R"({"model":"m","prompt":[[4,5]]})").prompt_ids, (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(Err(Endpoint::kCompletions, R"({"model":"m","prompt":["x","y"]})").param, "prompt");
  EXPECT_EQ(Err(Endpoint::kCompletions, R"({"model":"m","prompt":[-1]})").param, "prompt");
  EXPECT_EQ(Err(Endpoint::kCompletions, R"({"model":"m","prompt":""})").param, "prompt");
}

TEST(OpenAiRequest, ChatMessages) {
  auto r = Ok(Endpoint::kChat, R"({"model":"m","messages":[{"role":"system","content":"s"},
      {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
      "logprobs":true,"top_logprobs":2,"max_completion_tokens":9})");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.logprobs, 2);
  EXPECT_EQ(*r.max_tokens, 9);
  EXPECT_EQ(Err(Endpoint::kChat, R"({"model":"m","messages":[]})").param, "messages");
  EXPECT_EQ(Err(Endpoint::kChat, R"({"model":"m","messages":[{"role":"user"}]})").param, "messages[0].content");
  EXPECT_EQ(Err(Endpoint::kChat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"top_logprobs":2})").param,
            "top_logprobs");
  EXPECT_EQ(Err(Endpoint::kChat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{}]})").param,
            "tools");
}

TEST(OpenAiRequest, TypeAndRangeErrors) {
  const std::string base = R"({"model":"m","prompt":"x",)";
  EXPECT_EQ(Err(Endpoint::kCompletions, base + R"("max_tokens":"5"})").param, "max_tokens");
  EXPECT_EQ(Err(Endpoint::kCompletions, base + R"("max_tokens":0})").param, "max_tokens");
  EXPECT_EQ(Err(Endpoint::kCompletions, base + R"("temperature":2.5})").param, "temperature");
  EXPECT_EQ(Err(Endpoint::kCompletions, base + R"("top_p":0})").param, "top_p");
  EXPECT_EQ(Err(Endpoint::kCompletions, base + R"("n":17})").param, "n");
  EXPECT_EQ(Err(Endpoint::kCompletions, base + R"("stop":[""]})").param, "stop");
  EXPECT_EQ(Err(Endpoint::kCompletions, base + R"("stream":1})").param, "stream");
  EXPECT_EQ(Err(Endpoint::kCompletions, base + R"("logprobs":21})").param, "logprobs");
  EXPECT_EQ(Err(Endpoint::kCompletions, base + R"("echo":true})").param, "echo");
  EXPECT_EQ(Err(Endpoint::kCompletions, base + R"("logit_bias":{"5":1}})").param, "logit_bias");
  EXPECT_EQ(Err(Endpoint::kCompletions, "{nope").code, "invalid_json");
  EXPECT_EQ(Err(Endpoint::kCompletions, "3").code, "invalid_json");
  EXPECT_EQ(Err(Endpoint::kCompletions, R"({"prompt":"x"})").param, "model");
}

TEST(Utf8, Validation) {
  EXPECT_TRUE(text::IsValidUtf8("plain ascii"));
  EXPECT_TRUE(text::IsValidUtf8("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_FALSE(text::IsValidUtf8("\xFF"));
  EXPECT_FALSE(text::IsValidUtf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(text::IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(text::IsValidUtf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(text::IsValidUtf8("\xE2\x82"));          // truncated
}

TEST(Auth, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret2"));
  EXPECT_FALSE(ConstantTimeEquals("", "x"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(ApiErrors, BodyAndStatusMapping) {
  const auto v = boost::json::parse(BadRequest("bad", "max_tokens", "c").ToJson());
  EXPECT_EQ(v.at("error").at("message").as_string(), "bad");
  EXPECT_EQ(v.at("error").at("param").as_string(), "max_tokens");
  EXPECT_TRUE(boost::json::parse(BadRequest("bad").ToJson()).at("error").at("param").is_null());
  EXPECT_EQ(FromStatus(absl::ResourceExhaustedError("x")).http_status, 429);
  EXPECT_EQ(FromStatus(absl::InvalidArgumentError("x")).http_status, 400);
  EXPECT_EQ(FromStatus(absl::UnavailableError("x")).http_status, 503);
  EXPECT_EQ(FromStatus(absl::InternalError("x")).http_status, 500);
}

TEST(ServerChatTemplate, DefaultTranscriptForBaseModels) {
  auto p = text::ChatTemplate::Load(std::string(ACCULLM_SOURCE_DIR) + "/models/tinystories-llama", "");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->is_default());  // no special tokens in the transcript: the tokenizer adds BOS
  EXPECT_EQ(*p->Render({{"user", "Hi"}}, true), "user: Hi\nassistant:");
  EXPECT_EQ(*p->Render({{"system", "Be kind."}, {"user", "Hi"}}, true), "system: Be kind.\nuser: Hi\nassistant:");
}

// A broken model's NaN logprobs once made `"token_logprobs":[NaN,NaN]`, which JSON parsers
// reject (boost::json::parse here, as JSON.parse and the OpenAI SDKs): non-finite → null.
TEST(ResponseBuilder, NonFiniteLogprobsAreJsonNull) {
  auto tok = text::Tokenizer::Load(std::string(ACCULLM_SOURCE_DIR) + "/models/tinystories-llama");
  ASSERT_TRUE(tok.ok()) << tok.status();
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  StreamEvent e;
  e.text = "ab";
  e.tokens = {{420, nan, {{420, nan}, {435, -inf}}}, {435, -0.5f, {{435, -0.5f}, {261, inf}}}};
  e.finish_reason = "length";
  e.completion_tokens = 2;

  OpenAiRequest completions = Ok(Endpoint::kCompletions, R"({"model": "m", "prompt": "x", "logprobs": 2})");
  ResponseBuilder rb(completions, "cmpl-1", "m", **tok, 1, 1);
  rb.Accumulate(e);
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(rb.FinalJson(), ec);
  ASSERT_FALSE(ec) << rb.FinalJson();
  const auto& lp = v.at("choices").at(0).at("logprobs");
  EXPECT_TRUE(lp.at("token_logprobs").at(0).is_null());
  EXPECT_EQ(lp.at("token_logprobs").at(1).as_double(), -0.5);
  auto nulls = [](const boost::json::value& top) {
    int n = 0;
    for (const auto& kv : top.as_object()) n += kv.value().is_null();
    return n;
  };
  EXPECT_EQ(nulls(lp.at("top_logprobs").at(0)), 2);  // NaN and -Inf
  EXPECT_EQ(nulls(lp.at("top_logprobs").at(1)), 1);  // -0.5 stays, +Inf does not

  OpenAiRequest chat =
      Ok(Endpoint::kChat, R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true,
                                               "logprobs": true, "top_logprobs": 2})");
  ResponseBuilder sb(chat, "chat-1", "m", **tok, 1, 1);
  const std::string sse = sb.Sse(e);
  ASSERT_EQ(sse.rfind("data: ", 0), 0u) << sse;
  const boost::json::value c = boost::json::parse(sse.substr(6), ec);
  ASSERT_FALSE(ec) << sse;
  const auto& content = c.at("choices").at(0).at("logprobs").at("content");
  EXPECT_TRUE(content.at(0).at("logprob").is_null());
  EXPECT_TRUE(content.at(0).at("top_logprobs").at(0).at("logprob").is_null());
  EXPECT_TRUE(content.at(0).at("top_logprobs").at(1).at("logprob").is_null());
  EXPECT_EQ(content.at(1).at("logprob").as_double(), -0.5);
  EXPECT_TRUE(content.at(1).at("top_logprobs").at(1).at("logprob").is_null());
}

// A failed canary (non-finite logits) is exported as +Inf KL and no top-1 match, never 0.
TEST(ServingMetrics, FailedCanaryReadsInfinite) {
  monitoring::ServingMetrics m("pack");
  m.SetCanary(0, std::numeric_limits<double>::infinity(), false);
  const std::string text = m.Serialize();
  EXPECT_NE(text.find("accullm_canary_kl_divergence{canary=\"0\",model_name=\"pack\"} +Inf"), std::string::npos)
      << text;
  EXPECT_NE(text.find("accullm_canary_top1_match{canary=\"0\",model_name=\"pack\"} 0"), std::string::npos) << text;
}

}  // namespace
}  // namespace accullm::coordinator
