// Boost's assertions (BOOST_ASSERT, BOOST_VERIFY) where assertions are on (no NDEBUG: Debug
// builds and the sanitizer tree; CMakeLists.txt defines BOOST_ENABLE_ASSERT_DEBUG_HANDLER
// there) come here instead of assert(). Every one aborts as assert() would, except an
// assertion Boost itself has since removed as wrong: there the code after it is correct, so
// aborting would turn a valid request into a crash of the server (a remote crash in any build
// with assertions on). Release builds never call this (BOOST_ASSERT is empty under NDEBUG).
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "boost/assert.hpp"

namespace boost {

namespace {

bool EndsWith(const char* s, const char* suffix) {
  const size_t n = std::strlen(s), k = std::strlen(suffix);
  return n >= k && std::strcmp(s + n - k, suffix) == 0;
}

// Beast (1.74, Debian 12) asserts n >= 5 when its chunked parser re-enters a final chunk whose
// trailer section is incomplete, assuming the CRLF of a previous chunk; a body whose only chunk
// is the last one, read in pieces ("0\r\n", then "\r", then "\n"), arrives there with n = 3 or
// 4, and the code after the assertion correctly asks for more bytes. Upstream dropped it as wrong
// (boostorg/beast pull request 2861). Found by the http_request fuzz target.
bool KnownWrongAssertion(const char* expr, const char* file) {
  return std::strcmp(expr, "n >= 5") == 0 && EndsWith(file, "boost/beast/http/impl/basic_parser.ipp");
}

}  // namespace

void assertion_failed(char const* expr, char const* function, char const* file, long line) {
  if (KnownWrongAssertion(expr, file)) return;
  std::fprintf(stderr, "%s:%ld: %s: Assertion `%s' failed.\n", file, line, function, expr);
  std::abort();
}

void assertion_failed_msg(char const* expr, char const* msg, char const* function, char const* file, long line) {
  std::fprintf(stderr, "%s:%ld: %s: Assertion `%s' failed: %s\n", file, line, function, expr, msg);
  std::abort();
}

}  // namespace boost
