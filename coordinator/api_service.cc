#include "coordinator/api_service.h"

#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "boost/json.hpp"
#include "coordinator/log_value.h"
#include "spdlog/spdlog.h"
#include "text/unicode_tables.h"

namespace accullm::coordinator {

namespace json = boost::json;

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  const size_t n = std::max(a.size(), b.size());
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = diff | static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

namespace {

std::string Path(const std::string& target) { return target.substr(0, target.find('?')); }

}  // namespace

ApiService::ApiService(ServiceConfig config, Scheduler& scheduler, const text::Tokenizer& tokenizer,
                       const text::ChatTemplate& chat, monitoring::ServingMetrics& metrics)
    : config_(std::move(config)), scheduler_(scheduler), tokenizer_(tokenizer), chat_(chat), metrics_(metrics),
      id_salt_(std::random_device{}() | (static_cast<uint64_t>(std::random_device{}()) << 32)) {}

std::string ApiService::NewId(const char* prefix) {
  return absl::StrFormat("%s-%016x%08x", prefix, id_salt_, next_id_.fetch_add(1));
}

HttpReply ApiService::Error(const ApiError& e) { return HttpReply{e.http_status, "application/json", e.ToJson()}; }

bool ApiService::Authorized(const HttpRequestView& r) const {
  if (config_.api_key.empty()) return true;
  constexpr std::string_view kBearer = "Bearer ";
  std::string_view h = r.authorization;
  if (h.size() < kBearer.size() || !absl::EqualsIgnoreCase(absl::string_view(h.data(), kBearer.size()),
                                                           absl::string_view(kBearer.data(), kBearer.size())))
    return false;
  return ConstantTimeEquals(h.substr(kBearer.size()), config_.api_key);
}

void ApiService::LogRequest(const HttpRequestView& r, int status, double seconds) const {
  // Method, path and remote come from the client (or its connection): escaped, every one.
  spdlog::info("request method={} path={} status={} latency_ms={:.1f} remote={}", LogValue(r.method),
               LogValue(Path(r.target)), status, seconds * 1e3, LogValue(r.remote));
}

RouteResult ApiService::Route(const HttpRequestView& r) {
  const std::string path = Path(r.target);
  const bool get = r.method == "GET", post = r.method == "POST";
  auto reply = [&](HttpReply h) {
    RouteResult rr;
    rr.reply = std::move(h);
    return rr;
  };
  // Probes are always open: load balancers and kubelets carry no key.
  if (path == "/healthz" && get) return reply({200, "application/json", R"({"status":"ok"})"});
  if (path == "/readyz" && get) {
    if (draining()) return reply({503, "application/json", R"({"status":"draining"})"});
    return reply({200, "application/json", R"({"status":"ready"})"});
  }
  if (path == "/metrics" && get) {
    if (config_.metrics_need_key && !Authorized(r)) {
      metrics_.RequestRejected("unauthorized");
      return reply(Error({401, "authentication_error", "missing or invalid API key", "", "invalid_api_key"}));
    }
    return reply({200, "text/plain; version=0.0.4; charset=utf-8", metrics_.Serialize()});
  }
  const bool known = path == "/v1/models" || path == "/v1/completions" || path == "/v1/chat/completions";
  if (!known) return reply(Error({404, "not_found_error", absl::StrCat("no route for ", r.method, " ", path), "", ""}));
  if (!Authorized(r)) {
    metrics_.RequestRejected("unauthorized");
    return reply(Error({401, "authentication_error", "missing or invalid API key (Authorization: Bearer KEY)", "",
                        "invalid_api_key"}));
  }
  if (path == "/v1/models") {
    if (!get) return reply(Error({405, "invalid_request_error", "use GET", "", "method_not_allowed"}));
    json::object m;
    m["id"] = config_.model_name;
    m["object"] = "model";
    m["created"] = 0;
    m["owned_by"] = "accullm";
    m["max_model_len"] = scheduler_.config().context;
    json::object list;
    list["object"] = "list";
    list["data"] = json::array{std::move(m)};
    return reply({200, "application/json", json::serialize(list)});
  }
  if (!post) return reply(Error({405, "invalid_request_error", "use POST", "", "method_not_allowed"}));
  return Generate(r, path == "/v1/chat/completions" ? Endpoint::kChat : Endpoint::kCompletions);
}

RouteResult ApiService::Generate(const HttpRequestView& r, Endpoint endpoint) {
  RouteResult rr;
  auto fail = [&](const ApiError& e, const char* reason) {
    metrics_.RequestRejected(reason);
    rr.reply = Error(e);
    return std::move(rr);
  };
  if (draining()) {
    return fail(
        {503, "service_unavailable_error", "the server is draining and accepts no new requests", "", "draining"},
        "draining");
  }
  if (!text::IsValidUtf8(r.body))
    return fail(BadRequest("request body is not valid UTF-8", "", "invalid_utf8"), "invalid");
  auto parsed = ParseOpenAiRequest(endpoint, r.body, config_.limits);
  if (auto* e = std::get_if<ApiError>(&parsed)) return fail(*e, "invalid");
  OpenAiRequest req = std::move(std::get<OpenAiRequest>(parsed));
  if (req.model != config_.model_name) {
    return fail(BadRequest(absl::StrCat("the model '", req.model, "' does not exist; this server serves '",
                                        config_.model_name, "'"),
                           "model", "model_not_found"),
                "invalid");
  }

  // Prompt → ids (network thread: tokenization is cheap and keeps the compute thread busy
  // with the model only).
  std::vector<int32_t> prompt;
  if (endpoint == Endpoint::kChat) {
    auto text = chat_.Render(req.messages, /*add_generation_prompt=*/true);
    if (!text.ok())
      return fail(BadRequest(std::string(text.status().message()), "messages", "chat_template"), "invalid");
    prompt = tokenizer_.Encode(*text, /*add_special=*/chat_.is_default());
  } else if (req.prompt_text) {
    prompt = tokenizer_.Encode(*req.prompt_text, /*add_special=*/true);
  } else {
    prompt = req.prompt_ids;
    for (int32_t id : prompt)
      if (id >= tokenizer_.vocab_size())
        return fail(BadRequest(absl::StrCat("token id ", id, " is outside the vocabulary"), "prompt"), "invalid");
  }
  const int64_t context = scheduler_.config().context;
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  if (n_prompt == 0) return fail(BadRequest("the prompt is empty after tokenization", "prompt"), "invalid");
  if (n_prompt >= context) {
    return fail(BadRequest(absl::StrCat("the prompt has ", n_prompt, " tokens; this model's context is ", context,
                                        " tokens (at least one must be left to generate)"),
                           endpoint == Endpoint::kChat ? "messages" : "prompt", "context_length_exceeded"),
                "invalid");
  }
  int64_t max_tokens;
  if (req.max_tokens) {
    max_tokens = *req.max_tokens;
    if (n_prompt + max_tokens > context) {
      return fail(BadRequest(absl::StrCat("max_tokens (", max_tokens, ") + the prompt (", n_prompt,
                                          " tokens) exceeds this model's context of ", context, " tokens"),
                             "max_tokens", "context_length_exceeded"),
                  "invalid");
    }
  } else {
    // OpenAI's defaults: 16 for completions, the rest of the context for chat.
    max_tokens = endpoint == Endpoint::kChat ? context - n_prompt : std::min<int64_t>(16, context - n_prompt);
  }

  std::vector<SequenceParams> choices;
  const uint64_t base_seed = req.seed ? static_cast<uint64_t>(*req.seed) : std::random_device{}();
  for (int i = 0; i < req.n; ++i) {
    SequenceParams p;
    p.prompt = prompt;
    p.max_tokens = max_tokens;
    p.sampling.temperature = req.temperature;
    p.sampling.top_p = req.top_p;
    p.sampling.top_k = req.top_k;
    p.sampling.min_p = req.min_p;
    p.sampling.presence_penalty = req.presence_penalty;
    p.sampling.frequency_penalty = req.frequency_penalty;
    p.sampling.repetition_penalty = req.repetition_penalty;
    // Choice i draws from seed + i: n choices differ, and each is reproducible on its own.
    p.sampling.seed = base_seed + static_cast<uint64_t>(i);
    p.stop = req.stop;
    p.ignore_eos = req.ignore_eos;
    p.logprobs = req.logprobs;
    choices.push_back(std::move(p));
  }
  const std::string id = NewId(endpoint == Endpoint::kChat ? "chatcmpl" : "cmpl");
  auto stream = std::make_shared<GenerationStream>(req.n);
  auto builder = std::make_unique<ResponseBuilder>(req, id, config_.model_name, tokenizer_, n_prompt, prompt.back());
  const absl::Status st = scheduler_.Submit(std::move(choices), stream);
  if (!st.ok()) {
    ApiError e = FromStatus(st);
    return fail(e, e.http_status == 429 ? "queue_full" : "invalid");
  }
  rr.job = std::make_unique<GenerationJob>(*this, std::move(req), id, Path(r.target), r.remote, std::move(stream),
                                           std::move(builder));
  return rr;
}

GenerationJob::GenerationJob(ApiService& service, OpenAiRequest request, std::string id, std::string path,
                             std::string remote, std::shared_ptr<GenerationStream> stream,
                             std::unique_ptr<ResponseBuilder> builder)
    : service_(service), request_(std::move(request)), id_(std::move(id)), path_(std::move(path)),
      remote_(std::move(remote)), stream_(std::move(stream)), builder_(std::move(builder)),
      start_(std::chrono::steady_clock::now()) {
  service_.active_jobs_.fetch_add(1);
}

GenerationJob::~GenerationJob() {
  // Whatever happened to the client, the scheduler must stop working for it.
  if (!builder_->done()) stream_->Cancel();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count();
  spdlog::info("request id={} method=POST path={} status={} stream={} n={} prompt_tokens={} completion_tokens={} "
               "client_gone={} latency_ms={:.1f} user={} remote={}",
               LogValue(id_), LogValue(path_), status_, request_.stream, request_.n, builder_->prompt_tokens(),
               builder_->completion_tokens(), client_gone_, ms, LogValue(request_.user), LogValue(remote_));
  service_.active_jobs_.fetch_sub(1);
}

HttpReply GenerationJob::FinalReply() const {
  if (builder_->aborted()) {
    const std::string& why = builder_->abort_error();
    return service_.Error(
        {503, "service_unavailable_error", AbortMessage(why), "", why.empty() ? "draining" : "unavailable"});
  }
  if (!builder_->error().empty()) return service_.Error({500, "internal_error", builder_->error(), "", ""});
  return HttpReply{200, "application/json", builder_->FinalJson()};
}

}  // namespace accullm::coordinator
