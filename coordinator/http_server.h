// HTTP/1.1 on Boost.Beast: keep-alive, many concurrent connections on a fixed number of
// network threads (C++20 coroutines, one strand per connection), body and header limits,
// chunked SSE streaming, client-disconnect detection, and SIGTERM/SIGINT draining. Network
// threads never run model compute: generation is handed to the scheduler through
// ApiService and its events are awaited.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "coordinator/api_service.h"

namespace accullm::coordinator {

struct HttpServerConfig {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: an ephemeral port (see port())
  int threads = 2;
  size_t max_body_bytes = 1 << 20;
  size_t max_header_bytes = 16 << 10;
  int max_connections = 1024;
  double keepalive_timeout_s = 30;
  double write_timeout_s = 60;
  double drain_timeout_s = 30;
};

class HttpServer {
 public:
  HttpServer(HttpServerConfig config, ApiService& service);
  ~HttpServer();

  // Binds and listens; port() is the bound port afterwards.
  absl::Status Listen();
  int port() const;
  // Serves until SIGTERM/SIGINT or Shutdown(), then drains: readiness fails and new requests
  // get 503, requests in flight finish (or are aborted after drain_timeout_s), and it returns.
  void Run();
  // The same as receiving SIGTERM; safe from any thread.
  void Shutdown();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace accullm::coordinator
