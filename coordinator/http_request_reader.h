// How the HTTP server reads a request with Beast: the parser's limits (body, header section,
// chunk extensions), the read buffer that bounds chunk lines and trailers, and which header
// values it accepts. One definition for the server's sessions (http_server.cc) and the HTTP
// fuzz target (tests/fuzz/http_request_fuzzer.cc), so the target parses exactly as the
// server does, without a socket.
#pragma once

#include <cstddef>
#include <string_view>

#include "boost/beast/http.hpp"

namespace accullm::coordinator {

// Beast stores each header or trailer field in 16-bit lengths and throws std::length_error
// (from inside a completion handler, where nothing can catch it per connection) for a field
// of 65,535 bytes or more. Its header limit bounds the header section only; trailers and chunk
// lines are bounded by nothing but the read buffer. So the read buffer is the bound: a header
// limit plus room for one chunk line, and both stay well under Beast's field limit.
inline constexpr size_t kMaxHeaderLimit = 48 << 10;
inline constexpr size_t kChunkLineRoom = 4 << 10;
inline constexpr size_t kMaxChunkExtensionBytes = 1 << 10;

using RequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

// Sets a fresh parser's body and header limits and refuses chunk extensions over
// kMaxChunkExtensionBytes (bad_chunk_extension) before they pile up in memory.
void ConfigureRequestParser(RequestParser& parser, size_t max_body_bytes, size_t max_header_bytes);

// The capacity of a connection's read buffer (beast::flat_buffer's maximum): the header limit
// plus kChunkLineRoom. A chunk line or trailer that does not fit ends in buffer_overflow.
inline size_t RequestReadBufferBytes(size_t max_header_bytes) { return max_header_bytes + kChunkLineRoom; }

// Only `chunked` (what Beast decodes) is accepted: any other transfer coding would hand
// still-encoded bytes to the JSON parser.
bool SupportedTransferEncoding(std::string_view te);

// Only identity content (no compressed bodies).
bool IdentityContentEncoding(std::string_view ce);

// Errors the HTTP parser reports about the client's bytes (as opposed to the socket closing).
bool IsParseError(const boost::system::error_code& ec);

}  // namespace accullm::coordinator
