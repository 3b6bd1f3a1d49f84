#include "monitoring/metrics_http_server.h"

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "boost/asio.hpp"
#include "boost/beast.hpp"

namespace accullm::monitoring {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

constexpr size_t kMaxRequestBytes = 8 << 10;
constexpr auto kIoTimeout = std::chrono::seconds(10);
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

}  // namespace

class MetricsHttpServer::Impl {
 public:
  Impl(std::string host, int port, std::function<std::string()> render)
      : host_(std::move(host)), port_(port), render_(std::move(render)), acceptor_(io_) {}

  absl::Status Start() {
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(host_, ec);
    if (ec) return absl::InvalidArgumentError(absl::StrCat("metrics server: bad host '", host_, "': ", ec.message()));
    const tcp::endpoint ep(address, static_cast<unsigned short>(port_));
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return absl::UnavailableError(
          absl::StrCat("metrics server: cannot listen on ", host_, ":", port_, ": ", ec.message()));
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, Accept(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
    return absl::OkStatus();
  }

  int port() const { return port_; }

  void Stop() {
    asio::post(io_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
    });
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  asio::awaitable<void> Accept() {
    while (acceptor_.is_open()) {
      auto [ec, socket] = co_await acceptor_.async_accept(kNoThrow);
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
        continue;  // e.g. out of descriptors for a moment: keep serving
      }
      asio::co_spawn(io_, Serve(beast::tcp_stream(std::move(socket))), asio::detached);
    }
  }

  // One request per connection (Connection: close): scrapes are seconds apart.
  asio::awaitable<void> Serve(beast::tcp_stream stream) {
    beast::flat_buffer buffer(kMaxRequestBytes);    // bounds the header section and any trailer
    http::request_parser<http::empty_body> parser;  // a request with a body is an error
    parser.header_limit(kMaxRequestBytes);
    stream.expires_after(kIoTimeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, kNoThrow);
    http::response<http::string_body> res;
    res.version(11);
    res.set(http::field::server, "accullm");
    res.keep_alive(false);
    if (ec) {
      if (ec == http::error::end_of_stream || ec == beast::error::timeout) co_return;
      res.result(http::status::bad_request);
      res.set(http::field::content_type, "text/plain");
      res.body() = "bad request\n";
    } else {
      const auto& req = parser.get();
      const std::string_view target = req.target();
      const std::string_view path = target.substr(0, target.find('?'));
      const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
      if (path != "/metrics" && path != "/healthz") {
        res.result(http::status::not_found);
        res.set(http::field::content_type, "text/plain");
        res.body() = "not found: this port serves GET /metrics and /healthz\n";
      } else if (!get) {
        res.result(http::status::method_not_allowed);
        res.set(http::field::allow, "GET, HEAD");
        res.set(http::field::content_type, "text/plain");
        res.body() = "use GET\n";
      } else if (path == "/healthz") {
        res.result(http::status::ok);
        res.set(http::field::content_type, "application/json");
        res.body() = R"({"status":"ok"})";
      } else {
        res.result(http::status::ok);
        res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        res.body() = render_();
      }
      res.prepare_payload();
      if (req.method() == http::verb::head) {
        const auto length = res.body().size();
        res.body().clear();
        res.content_length(length);
      }
    }
    if (ec) res.prepare_payload();
    stream.expires_after(kIoTimeout);
    co_await http::async_write(stream, res, kNoThrow);
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }

  std::string host_;
  int port_;
  std::function<std::string()> render_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
};

MetricsHttpServer::MetricsHttpServer(std::string host, int port, std::function<std::string()> render)
    : impl_(std::make_unique<Impl>(std::move(host), port, std::move(render))) {}
MetricsHttpServer::~MetricsHttpServer() { Stop(); }
absl::Status MetricsHttpServer::Start() { return impl_->Start(); }
int MetricsHttpServer::port() const { return impl_->port(); }
void MetricsHttpServer::Stop() { impl_->Stop(); }

}  // namespace accullm::monitoring
