// The endpoints, independent of the HTTP transport: authentication, readiness and draining,
// request validation, tokenization and chat templating (on the calling network thread, never
// model compute), and submission to the scheduler. A generation request becomes a
// GenerationJob that the transport drives (SSE or one JSON body) until every choice ends.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/generation_stream.h"
#include "coordinator/openai_request.h"
#include "coordinator/openai_response.h"
#include "coordinator/scheduler.h"
#include "monitoring/serving_metrics.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace accullm::coordinator {

struct ServiceConfig {
  std::string model_name;
  std::string api_key;           // empty: no authentication
  bool metrics_need_key = true;  // /metrics behind the API key too (when one is set)
  RequestLimits limits;
};

struct HttpRequestView {
  std::string method;
  std::string target;         // path, query string included
  std::string authorization;  // the Authorization header
  std::string body;
  std::string remote;  // peer address, for logs
};

struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

class ApiService;

// One generation request in flight. Its destructor writes the request's log line.
class GenerationJob {
 public:
  GenerationJob(ApiService& service, OpenAiRequest request, std::string id, std::string path, std::string remote,
                std::shared_ptr<GenerationStream> stream, std::unique_ptr<ResponseBuilder> builder);
  ~GenerationJob();
  GenerationJob(const GenerationJob&) = delete;
  GenerationJob& operator=(const GenerationJob&) = delete;

  bool streaming() const { return request_.stream; }
  const std::string& id() const { return id_; }
  GenerationStream& stream() { return *stream_; }
  ResponseBuilder& builder() { return *builder_; }
  // The final HTTP status and whether the client went away, for the log line.
  void set_outcome(int status, bool client_gone) { status_ = status, client_gone_ = client_gone; }
  // Non-streaming: the reply once builder().done().
  HttpReply FinalReply() const;

 private:
  ApiService& service_;
  OpenAiRequest request_;
  std::string id_, path_, remote_;
  std::shared_ptr<GenerationStream> stream_;
  std::unique_ptr<ResponseBuilder> builder_;
  std::chrono::steady_clock::time_point start_;
  int status_ = 0;
  bool client_gone_ = false;
};

struct RouteResult {
  HttpReply reply;                     // used when job is null
  std::unique_ptr<GenerationJob> job;  // a generation to drive
};

class ApiService {
 public:
  ApiService(ServiceConfig config, Scheduler& scheduler, const text::Tokenizer& tokenizer,
             const text::ChatTemplate& chat, monitoring::ServingMetrics& metrics);

  RouteResult Route(const HttpRequestView& request);

  // Draining: readiness fails, new generations get 503; jobs in flight continue.
  void BeginDrain() { draining_.store(true); }
  bool draining() const { return draining_.load(); }
  int active_jobs() const { return active_jobs_.load(); }
  // Drain timeout: aborts every sequence still waiting or running.
  void AbortAll() { scheduler_.CancelAll(); }

  // One structured line per request (generation jobs log their own, with token counts).
  void LogRequest(const HttpRequestView& r, int status, double seconds) const;
  monitoring::ServingMetrics& metrics() { return metrics_; }

 private:
  friend class GenerationJob;
  HttpReply Error(const ApiError& e);
  RouteResult Generate(const HttpRequestView& r, Endpoint endpoint);
  bool Authorized(const HttpRequestView& r) const;
  std::string NewId(const char* prefix);

  ServiceConfig config_;
  Scheduler& scheduler_;
  const text::Tokenizer& tokenizer_;
  const text::ChatTemplate& chat_;  // the model's, --chat-template, or the default transcript
  monitoring::ServingMetrics& metrics_;
  std::atomic<bool> draining_{false};
  std::atomic<int> active_jobs_{0};
  std::atomic<uint64_t> next_id_{0};
  uint64_t id_salt_;
};

// Equal strings → true, in time that depends only on the lengths (no early exit on the
// first differing byte), so a key cannot be guessed byte by byte from response times.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace accullm::coordinator
