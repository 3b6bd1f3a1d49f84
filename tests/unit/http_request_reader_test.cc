// The HTTP request parser as the server configures it (coordinator/http_request_reader.h), fed
// in the pieces TCP may deliver.
#include "coordinator/http_request_reader.h"

#include <string>
#include <vector>

#include "boost/asio/buffer.hpp"
#include "gtest/gtest.h"

namespace accullm::coordinator {
namespace {

namespace http = boost::beast::http;

// Feeds `pieces` one after another as a read loop does (unconsumed bytes stay in front of the
// next piece); returns the parser's last error (success once the request is complete).
boost::system::error_code Feed(RequestParser& parser, const std::vector<std::string>& pieces) {
  std::string buffer;
  boost::system::error_code ec;
  for (const std::string& piece : pieces) {
    buffer += piece;
    while (!buffer.empty() && !parser.is_done()) {
      const size_t used = parser.put(boost::asio::buffer(buffer), ec);
      buffer.erase(0, used);
      if (ec == http::error::need_more) {
        ec = {};
        break;
      }
      if (ec) return ec;
      if (used == 0) break;
    }
  }
  return parser.is_done() ? boost::system::error_code{} : http::error::need_more;
}

const std::string kHead = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

TEST(HttpRequestReaderTest, AFinalChunkAloneArrivingInPiecesCompletesTheRequest) {
  // Beast 1.74 asserts n >= 5 here (a previous chunk's CRLF assumed); with assertions on (the
  // sanitizer tree) that aborted the server on a valid request until
  // common/boost_assert_handler.cc. The fuzz corpus keeps the input that found it.
  RequestParser parser;
  ConfigureRequestParser(parser, 1 << 20, 16 << 10);
  const boost::system::error_code ec = Feed(parser, {kHead, "0\r\n", "\r", "\n"});
  EXPECT_FALSE(ec) << ec.message();
  ASSERT_TRUE(parser.is_done());
  EXPECT_EQ(parser.get().body(), "");
}

TEST(HttpRequestReaderTest, ChunkedBodyInOneByteReadsIsTheWholeBody) {
  const std::string body = "{\"model\":\"m\",\"prompt\":\"hi\"}";
  std::vector<std::string> pieces = {kHead};
  const std::string wire = "1b\r\n" + body + "\r\n0\r\n\r\n";
  for (char c : wire) pieces.emplace_back(1, c);
  RequestParser parser;
  ConfigureRequestParser(parser, 1 << 20, 16 << 10);
  const boost::system::error_code ec = Feed(parser, pieces);
  EXPECT_FALSE(ec) << ec.message();
  ASSERT_TRUE(parser.is_done());
  EXPECT_EQ(parser.get().body(), body);
}

TEST(HttpRequestReaderTest, OnlyChunkedAndIdentityAreAccepted) {
  EXPECT_TRUE(SupportedTransferEncoding("chunked"));
  EXPECT_FALSE(SupportedTransferEncoding("gzip, chunked"));
  EXPECT_TRUE(IdentityContentEncoding(""));
  EXPECT_FALSE(IdentityContentEncoding("gzip"));
}

}  // namespace
}  // namespace accullm::coordinator
