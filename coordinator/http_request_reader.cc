#include "coordinator/http_request_reader.h"

#include <cstdint>

namespace accullm::coordinator {

namespace beast = boost::beast;
namespace http = beast::http;

namespace {

// Beast keeps a reference to the chunk-header callback: it must outlive every parser, so it
// is one object with static storage, not a lambda in the caller's scope.
struct ChunkExtensionLimit {
  void operator()(std::uint64_t, std::string_view extensions, boost::system::error_code& ec) const {
    if (extensions.size() > kMaxChunkExtensionBytes) ec = http::error::bad_chunk_extension;
  }
};
ChunkExtensionLimit kChunkExtensionLimit;  // not const: Beast refuses a const callback

}  // namespace

void ConfigureRequestParser(RequestParser& parser, size_t max_body_bytes, size_t max_header_bytes) {
  parser.body_limit(max_body_bytes);
  parser.header_limit(static_cast<std::uint32_t>(max_header_bytes));
  parser.on_chunk_header(kChunkExtensionLimit);
}

bool SupportedTransferEncoding(std::string_view te) {
  if (te.empty()) return true;
  while (!te.empty() && (te.front() == ' ' || te.front() == '\t')) te.remove_prefix(1);
  while (!te.empty() && (te.back() == ' ' || te.back() == '\t')) te.remove_suffix(1);
  return beast::iequals(te, "chunked");
}

bool IdentityContentEncoding(std::string_view ce) { return ce.empty() || beast::iequals(ce, "identity"); }

bool IsParseError(const boost::system::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

}  // namespace accullm::coordinator
