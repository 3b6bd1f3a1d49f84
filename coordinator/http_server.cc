#include "coordinator/http_server.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "boost/asio.hpp"
#include "boost/asio/experimental/awaitable_operators.hpp"
#include "boost/asio/experimental/concurrent_channel.hpp"
#include "boost/beast.hpp"
#include "coordinator/http_request_reader.h"
#include "coordinator/log_value.h"
#include "spdlog/spdlog.h"

namespace accullm::coordinator {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using Signal = asio::experimental::concurrent_channel<void(boost::system::error_code)>;
constexpr auto kNoThrow = asio::as_tuple(use_awaitable);

namespace {

std::chrono::steady_clock::duration Dur(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

constexpr double kOverLimitProbeTimeoutS = 2;

std::string_view RequestPath(std::string_view target) { return target.substr(0, target.find('?')); }

bool IsProbePath(std::string_view target) {
  const std::string_view path = RequestPath(target);
  return path == "/healthz" || path == "/readyz";
}

}  // namespace

class HttpServer::Impl {
 public:
  Impl(HttpServerConfig c, ApiService& s)
      : config_(std::move(c)), service_(s), control_(asio::make_strand(io_)), acceptor_(io_),
        signals_(io_, SIGTERM, SIGINT) {}

  absl::Status Listen() {
    if (config_.max_header_bytes < 1024 || config_.max_header_bytes > kMaxHeaderLimit) {
      return absl::InvalidArgumentError(
          absl::StrCat("the header limit must be between 1024 and ", kMaxHeaderLimit, " bytes"));
    }
    boost::system::error_code ec;
    const auto addr = asio::ip::make_address(config_.host, ec);
    if (ec) return absl::InvalidArgumentError(absl::StrCat("--host ", config_.host, " is not an IP address"));
    const tcp::endpoint ep(addr, static_cast<unsigned short>(config_.port));
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", config_.host, ":", config_.port, ": ", ec.message()));
    }
    port_ = acceptor_.local_endpoint().port();
    return absl::OkStatus();
  }

  int port() const { return port_; }

  void Run() {
    signals_.async_wait(asio::bind_executor(control_, [this](const boost::system::error_code& ec, int sig) {
      if (!ec) {
        spdlog::info("signal {} received: draining", sig);
        StartDrain();
      }
    }));
    asio::co_spawn(control_, Accept(), asio::detached);
    std::vector<std::thread> threads;
    for (int i = 1; i < std::max(1, config_.threads); ++i) threads.emplace_back([this] { RunGuarded(); });
    RunGuarded();
    for (auto& t : threads) t.join();
  }

  void Shutdown() {
    asio::post(control_, [this] { StartDrain(); });
  }

 private:
  // The last line of defence: an exception escaping a completion handler unwinds io_.run()
  // and, uncaught, terminates the process for every client. It costs one connection instead.
  void RunGuarded() {
    while (true) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        spdlog::error("network thread: a connection failed with an exception ({}); it is dropped", e.what());
      } catch (...) {
        spdlog::error("network thread: a connection failed with an unknown exception; it is dropped");
      }
    }
  }

  void StartDrain() {
    if (drain_started_.exchange(true)) return;
    service_.BeginDrain();
    signals_.cancel();
    asio::co_spawn(control_, Drain(), asio::detached);
  }

  // Waits for the jobs in flight; aborts them after the drain timeout; then stops.
  awaitable<void> Drain() {
    const auto start = std::chrono::steady_clock::now();
    asio::steady_timer timer(io_);
    bool aborted = false;
    while (service_.active_jobs() > 0) {
      const auto elapsed = std::chrono::steady_clock::now() - start;
      if (!aborted && elapsed > Dur(config_.drain_timeout_s)) {
        spdlog::warn("drain timeout: aborting {} request(s) in flight", service_.active_jobs());
        service_.AbortAll();
        aborted = true;
      }
      if (elapsed > Dur(config_.drain_timeout_s + 5)) break;  // writes stuck on dead clients
      timer.expires_after(std::chrono::milliseconds(20));
      co_await timer.async_wait(kNoThrow);
    }
    boost::system::error_code ec;
    acceptor_.close(ec);
    spdlog::info("drained: stopping");
    io_.stop();
  }

  awaitable<void> Accept() {
    while (acceptor_.is_open()) {
      auto [ec, sock] = co_await acceptor_.async_accept(asio::make_strand(io_), kNoThrow);
      if (ec) {
        if (!acceptor_.is_open()) break;
        continue;
      }
      asio::co_spawn(sock.get_executor(), Session(std::move(sock)), [](std::exception_ptr e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            spdlog::error("connection failed: {}", LogValue(ex.what()));  // may quote request bytes
          }
        }
      });
    }
  }

  template <class Body>
  static void CommonHeaders(http::response<Body>& res, bool keep_alive) {
    res.set(http::field::server, "accullm");
    res.keep_alive(keep_alive);
  }

  // Callers pass named objects only: GCC 12 mis-destroys temporaries that live across a
  // co_await in the same full expression (double free), so no temporaries in co_await calls.
  // A reply to HEAD carries the headers of the GET reply (Content-Length included), no body.
  awaitable<bool> WriteReply(beast::tcp_stream& stream, std::string_view endpoint, const HttpReply& reply,
                             unsigned version, bool keep_alive, std::string_view request_id = {}, bool head = false) {
    service_.metrics().HttpResponse(endpoint, reply.status);
    stream.expires_after(Dur(config_.write_timeout_s));
    if (head) {
      http::response<http::empty_body> res{static_cast<http::status>(reply.status), version};
      CommonHeaders(res, keep_alive);
      res.set(http::field::content_type, reply.content_type);
      if (!request_id.empty()) res.set("x-request-id", request_id);
      res.content_length(reply.body.size());
      http::response_serializer<http::empty_body> sr{res};
      auto [ec, n] = co_await http::async_write_header(stream, sr, kNoThrow);
      co_return !ec;
    }
    http::response<http::string_body> res{static_cast<http::status>(reply.status), version};
    CommonHeaders(res, keep_alive);
    res.set(http::field::content_type, reply.content_type);
    if (!request_id.empty()) res.set("x-request-id", request_id);
    res.body() = reply.body;
    res.prepare_payload();
    auto [ec, n] = co_await http::async_write(stream, res, kNoThrow);
    co_return !ec;
  }

  // Answers an error and logs it; the caller closes the connection (its bytes are unread).
  awaitable<void> Refuse(beast::tcp_stream& stream, unsigned version, const HttpRequestView& view, int status,
                         std::string type, std::string message, std::string code, std::string_view reason) {
    const ApiError e{status, std::move(type), std::move(message), "", std::move(code)};
    const HttpReply reply{status, "application/json", e.ToJson()};
    if (!reason.empty()) service_.metrics().RequestRejected(std::string(reason));
    const std::string_view endpoint = monitoring::EndpointLabel(view.target);
    co_await WriteReply(stream, endpoint, reply, version, false);
    service_.LogRequest(view, status, 0);
    co_await LingeringClose(stream);
  }

  // Closing a socket with unread request bytes makes the kernel send RST, which can destroy the
  // error reply before the client reads it. So, as nginx does, stop sending, then read and
  // discard for a bounded time (and volume, to bound the CPU spent) before the socket is closed.
  static awaitable<void> LingeringClose(beast::tcp_stream& stream) {
    boost::system::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    constexpr size_t kMaxDiscardBytes = 64 << 20;
    std::vector<char> scratch(64 << 10);
    size_t discarded = 0;
    stream.expires_after(std::chrono::seconds(2));
    while (discarded < kMaxDiscardBytes) {
      auto [e, n] = co_await stream.async_read_some(asio::buffer(scratch), kNoThrow);
      if (e) break;
      discarded += n;
    }
  }

  // Waits for the scheduler's next events or the client going away. Returns false when the
  // client closed the connection (EOF or reset; pipelined data does not count).
  static awaitable<bool> WaitForEvents(Signal& signal, beast::tcp_stream& stream, bool& watch_client) {
    if (!watch_client) {
      co_await signal.async_receive(kNoThrow);
      co_return true;
    }
    auto which =
        co_await (signal.async_receive(kNoThrow) || stream.socket().async_wait(tcp::socket::wait_read, kNoThrow));
    if (which.index() == 0) co_return true;
    char byte;
    boost::system::error_code ec;
    const size_t n = stream.socket().receive(asio::buffer(&byte, 1), tcp::socket::message_peek, ec);
    if (ec == asio::error::would_block || (!ec && n > 0)) {
      watch_client = false;  // the client sent more (a pipelined request): stop watching
      co_return true;
    }
    co_return false;
  }

  // Drives a generation to its end. Returns whether the connection is still usable.
  awaitable<bool> RunJob(beast::tcp_stream& stream, std::string_view endpoint, GenerationJob& job, unsigned version,
                         bool keep_alive) {
    Signal signal(co_await asio::this_coro::executor, 1);
    job.stream().SetNotifier([&signal] { signal.try_send(boost::system::error_code{}); });
    struct ClearNotifier {
      GenerationJob& job;
      ~ClearNotifier() { job.stream().SetNotifier({}); }
    } clear{job};
    bool watch_client = true;
    stream.socket().non_blocking(true);
    ResponseBuilder& b = job.builder();

    if (!job.streaming()) {
      while (true) {
        for (const auto& e : job.stream().Drain()) b.Accumulate(e);
        if (b.done()) break;
        if (!co_await WaitForEvents(signal, stream, watch_client)) {
          job.stream().Cancel();
          job.set_outcome(499, true);
          co_return false;
        }
      }
      const HttpReply reply = job.FinalReply();
      const std::string_view id = job.id();
      const bool ok = co_await WriteReply(stream, endpoint, reply, version, keep_alive, id);
      job.set_outcome(reply.status, !ok);
      co_return (ok && keep_alive);
    }

    http::response<http::empty_body> res{http::status::ok, version};
    CommonHeaders(res, keep_alive);
    res.set(http::field::content_type, "text/event-stream");
    res.set(http::field::cache_control, "no-cache");
    res.set("x-request-id", job.id());
    res.chunked(true);
    http::response_serializer<http::empty_body> sr{res};
    service_.metrics().HttpResponse(endpoint, 200);
    job.set_outcome(200, false);
    auto write_chunk = [&](const std::string& data) -> awaitable<bool> {
      stream.expires_after(Dur(config_.write_timeout_s));
      const auto chunk = http::make_chunk(asio::buffer(data));
      auto [ec, n] = co_await asio::async_write(stream, chunk, kNoThrow);
      co_return !ec;
    };
    stream.expires_after(Dur(config_.write_timeout_s));
    if (auto [ec, n] = co_await http::async_write_header(stream, sr, kNoThrow); ec) {
      job.stream().Cancel();
      job.set_outcome(200, true);
      co_return false;
    }
    std::string out = b.SseFirst();
    while (true) {
      for (const auto& e : job.stream().Drain()) out += b.Sse(e);
      if (b.done()) out += b.SseEnd();
      if (!out.empty() && !co_await write_chunk(out)) {
        job.stream().Cancel();  // the client went away mid-stream: free its sequence now
        job.set_outcome(200, true);
        co_return false;
      }
      out.clear();
      if (b.done()) break;
      if (!co_await WaitForEvents(signal, stream, watch_client)) {
        job.stream().Cancel();
        job.set_outcome(200, true);
        co_return false;
      }
    }
    stream.expires_after(Dur(config_.write_timeout_s));
    const auto last = http::make_chunk_last();
    auto [ec, n] = co_await asio::async_write(stream, last, kNoThrow);
    co_return !ec && keep_alive;
  }

  awaitable<void> Session(tcp::socket socket) {
    struct Count {
      std::atomic<int>& n;
      explicit Count(std::atomic<int>& c) : n(c) { ++n; }
      ~Count() { --n; }
    } count(connections_);
    std::string remote;
    {
      boost::system::error_code ec;
      const auto ep = socket.remote_endpoint(ec);
      if (!ec) remote = absl::StrCat(ep.address().to_string(), ":", ep.port());
    }
    {
      // Streaming writes small chunks: without this, Nagle + delayed ACK add ~40 ms.
      boost::system::error_code ec;
      socket.set_option(tcp::no_delay(true), ec);
    }
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer(RequestReadBufferBytes(config_.max_header_bytes));
    // Over the connection limit a connection may still ask for a probe (a client holding many
    // idle connections must not fail the kubelet's liveness check); anything else gets 503.
    const bool over_limit = connections_.load() > config_.max_connections;
    const std::string too_large_message =
        absl::StrCat("request body exceeds the limit of ", config_.max_body_bytes, " bytes");
    while (true) {
      // Chunk extensions mean nothing to this API; long ones are refused before they pile up.
      RequestParser parser;
      ConfigureRequestParser(parser, config_.max_body_bytes, config_.max_header_bytes);
      stream.expires_after(Dur(over_limit ? kOverLimitProbeTimeoutS : config_.keepalive_timeout_s));
      auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, kNoThrow);
      HttpRequestView view;
      view.remote = remote;
      // A Content-Length over the limit fails once every field is parsed (the header is not
      // "done" then): its route and key are known, and the 413 is counted under that route.
      if (parser.is_header_done() || ec == http::error::body_limit) {
        view.method = std::string(parser.get().method_string());
        view.target = std::string(parser.get().target());
        view.authorization = std::string(parser.get()[http::field::authorization]);
      }
      const unsigned version = parser.is_header_done() ? parser.get().version() : 11;
      if (ec == http::error::header_limit) {
        co_await Refuse(stream, version, view, 431, "invalid_request_error", "request headers too large",
                        "headers_too_large", "too_large");
        break;
      }
      if (ec == http::error::body_limit) {  // Content-Length over the limit: the body is never read
        co_await Refuse(stream, version, view, 413, "invalid_request_error", too_large_message, "request_too_large",
                        "too_large");
        break;
      }
      if (IsParseError(ec)) {
        co_await Refuse(stream, version, view, 400, "invalid_request_error",
                        absl::StrCat("malformed HTTP request: ", ec.message()), "malformed_request", "invalid");
        break;
      }
      if (ec) break;  // closed or timed out: nothing to answer
      const auto start = std::chrono::steady_clock::now();
      if (over_limit && !IsProbePath(view.target)) {
        co_await Refuse(stream, version, view, 503, "service_unavailable_error", "too many connections",
                        "too_many_connections", "");
        break;
      }
      if (!SupportedTransferEncoding(parser.get()[http::field::transfer_encoding])) {
        co_await Refuse(stream, version, view, 501, "invalid_request_error",
                        "this transfer coding is not supported (Transfer-Encoding must be chunked or absent)",
                        "unsupported_transfer_encoding", "invalid");
        break;
      }
      if (!IdentityContentEncoding(parser.get()[http::field::content_encoding])) {
        co_await Refuse(stream, version, view, 415, "invalid_request_error",
                        "compressed request bodies are not supported (Content-Encoding must be identity)",
                        "unsupported_content_encoding", "invalid");
        break;
      }
      if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
        http::response<http::empty_body> cont{http::status::continue_, version};
        stream.expires_after(Dur(config_.write_timeout_s));
        if (auto [e2, n2] = co_await http::async_write(stream, cont, kNoThrow); e2) break;
      }
      stream.expires_after(Dur(config_.keepalive_timeout_s));
      auto [ec2, n2] = co_await http::async_read(stream, buffer, parser, kNoThrow);
      if (ec2 == http::error::body_limit) {
        co_await Refuse(stream, version, view, 413, "invalid_request_error", too_large_message, "request_too_large",
                        "too_large");
        break;
      }
      if (ec2 == http::error::buffer_overflow || ec2 == http::error::bad_chunk_extension) {
        co_await Refuse(stream, version, view, 400, "invalid_request_error",
                        absl::StrCat("chunk extensions over ", kMaxChunkExtensionBytes,
                                     " bytes, or chunk lines and trailer fields over ",
                                     config_.max_header_bytes + kChunkLineRoom, " bytes, are not accepted"),
                        "chunk_metadata_too_large", "too_large");
        break;
      }
      if (IsParseError(ec2)) {
        co_await Refuse(stream, version, view, 400, "invalid_request_error",
                        absl::StrCat("malformed HTTP request body: ", ec2.message()), "malformed_request", "invalid");
        break;
      }
      if (ec2) break;
      const bool keep_alive = parser.get().keep_alive() && !over_limit;
      const bool head = view.method == "HEAD";
      if (head) view.method = "GET";  // routed as GET; the reply keeps its headers and drops the body
      view.body = std::move(parser.get().body());
      RouteResult routed = service_.Route(view);
      if (head) view.method = "HEAD";
      const bool keep = keep_alive && !service_.draining();
      const std::string_view endpoint = monitoring::EndpointLabel(view.target);
      auto seconds_since_start = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      };
      if (!routed.job) {
        const std::string_view no_id;
        const bool ok = co_await WriteReply(stream, endpoint, routed.reply, version, keep, no_id, head);
        service_.metrics().ObserveHttpLatency(endpoint, seconds_since_start());
        if (!IsProbePath(view.target) && RequestPath(view.target) != "/metrics")
          service_.LogRequest(view, routed.reply.status, seconds_since_start());
        if (!ok || !keep) break;
        continue;
      }
      stream.expires_never();
      const bool reusable = co_await RunJob(stream, endpoint, *routed.job, version, keep);
      service_.metrics().ObserveHttpLatency(endpoint, seconds_since_start());
      routed.job.reset();  // logs the request
      stream.socket().non_blocking(false);
      if (!reusable) break;
    }
    boost::system::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  HttpServerConfig config_;
  ApiService& service_;
  asio::io_context io_;
  // The acceptor, the signal set and the drain are touched only here: with several network
  // threads, the drain closing the acceptor while another thread starts the next accept on it
  // would be a data race (Asio objects are not thread-safe).
  asio::strand<asio::io_context::executor_type> control_;
  tcp::acceptor acceptor_;
  asio::signal_set signals_;
  int port_ = 0;
  std::atomic<bool> drain_started_{false};
  std::atomic<int> connections_{0};
};

HttpServer::HttpServer(HttpServerConfig config, ApiService& service)
    : impl_(std::make_unique<Impl>(std::move(config), service)) {}
HttpServer::~HttpServer() = default;
absl::Status HttpServer::Listen() { return impl_->Listen(); }
int HttpServer::port() const { return impl_->port(); }
void HttpServer::Run() { impl_->Run(); }
void HttpServer::Shutdown() { impl_->Shutdown(); }

}  // namespace accullm::coordinator
