// A metrics-only HTTP endpoint for ranks that serve no API (pipeline stages under mpirun) and
// for `serve --metrics-port`: GET (or HEAD) /metrics answers the text `render` returns,
// GET /healthz answers ok, anything else 404/405. One network thread; requests carry no body
// (one is refused), headers are bounded (8 KiB, read buffer included), and every read and write
// has a deadline, so no client can make it hold memory or hang. A request never runs model
// code: `render` only reads counters.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"

namespace accullm::monitoring {

class MetricsHttpServer {
 public:
  // `render` may be called from the server's thread at any time until Stop returns.
  MetricsHttpServer(std::string host, int port, std::function<std::string()> render);
  ~MetricsHttpServer();  // stops
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Binds and starts serving on its own thread; port() is the bound port (0 asks for any).
  absl::Status Start();
  int port() const;
  void Stop();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace accullm::monitoring
