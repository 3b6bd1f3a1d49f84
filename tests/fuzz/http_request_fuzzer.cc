// Door: the bytes of an HTTP/1.1 connection. They are read exactly as the server reads them
// (coordinator/http_request_reader.h: Beast's request parser with the server's body, header
// and chunk-extension limits, a read buffer of the server's size), request after request while
// the connection is kept alive, from an in-memory stream instead of a socket; each complete
// body then goes through the OpenAI request validation of both endpoints. Any exception Beast
// throws (as it once did for a 64 KiB trailer field) escapes and libFuzzer reports it.
//
// The first byte picks the limits (so that small inputs can reach them) and how many bytes
// each read returns (the server sees whatever TCP delivers).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "boost/asio/buffer.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http.hpp"
#include "coordinator/http_request_reader.h"
#include "coordinator/openai_request.h"
#include "text/unicode_tables.h"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;

// A SyncReadStream over the fuzz input: at most `chunk` bytes per read, then end of stream.
class MemoryStream {
 public:
  MemoryStream(const uint8_t* data, size_t size, size_t chunk) : data_(data), left_(size), chunk_(chunk) {}
  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers, boost::system::error_code& ec) {
    if (left_ == 0) {
      ec = boost::asio::error::eof;
      return 0;
    }
    ec = {};
    size_t done = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers);
         ++it) {
      const boost::asio::mutable_buffer b = *it;
      const size_t n = std::min({b.size(), left_, chunk_ - done});
      std::memcpy(b.data(), data_, n);
      data_ += n;
      left_ -= n;
      done += n;
      if (left_ == 0 || done == chunk_) break;
    }
    return done;
  }
  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers) {
    boost::system::error_code ec;
    const size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  const uint8_t* data_;
  size_t left_;
  size_t chunk_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace accullm;
  using namespace accullm::coordinator;
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  // Header limit: the server's minimum, default and maximum (--max-header-bytes).
  constexpr size_t kHeaderLimits[] = {1024, 16 << 10, kMaxHeaderLimit, 16 << 10};
  const size_t max_header = kHeaderLimits[mode & 3];
  const size_t max_body = (mode & 4) ? (1 << 20) : 64;  // the default --max-body-bytes, or a tiny one
  constexpr size_t kChunks[] = {1, 7, 512, 1 << 20};
  MemoryStream stream(data + 1, size - 1, kChunks[(mode >> 3) & 3]);
  beast::flat_buffer buffer(RequestReadBufferBytes(max_header));
  for (int request = 0; request < 8; ++request) {
    RequestParser parser;
    ConfigureRequestParser(parser, max_body, max_header);
    boost::system::error_code ec;
    http::read_header(stream, buffer, parser, ec);
    if (ec) break;
    if (!SupportedTransferEncoding(parser.get()[http::field::transfer_encoding])) break;
    if (!IdentityContentEncoding(parser.get()[http::field::content_encoding])) break;
    http::read(stream, buffer, parser, ec);
    if (ec) {
      (void)IsParseError(ec);
      break;
    }
    const std::string& body = parser.get().body();
    if (body.size() > max_body) __builtin_trap();  // the limit the server relies on
    if (text::IsValidUtf8(body)) {
      const RequestLimits limits;
      (void)ParseOpenAiRequest(Endpoint::kCompletions, body, limits);
      (void)ParseOpenAiRequest(Endpoint::kChat, body, limits);
    }
    if (!parser.get().keep_alive()) break;
  }
  return 0;
}
