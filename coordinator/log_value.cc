#include "coordinator/log_value.h"

#include "absl/strings/str_format.h"
#include "text/unicode_tables.h"

namespace accullm::coordinator {

namespace {

bool Bare(std::string_view v) {
  if (v.empty()) return false;
  for (char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7F || c == '"' || c == '=' || c == '\\') return false;
  }
  return true;
}

// The code point of a well-formed sequence of `len` bytes.
char32_t Decode(const unsigned char* p, size_t len) {
  if (len == 2) return (p[0] & 0x1Fu) << 6 | (p[1] & 0x3Fu);
  if (len == 3) return (p[0] & 0x0Fu) << 12 | (p[1] & 0x3Fu) << 6 | (p[2] & 0x3Fu);
  return (p[0] & 0x07u) << 18 | (p[1] & 0x3Fu) << 12 | (p[2] & 0x3Fu) << 6 | (p[3] & 0x3Fu);
}

// Printable code points that still end or reorder a line where they are displayed.
bool Invisible(char32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 || cp == 0x200E || cp == 0x200F ||
         (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

}  // namespace

std::string LogValue(std::string_view v) {
  if (Bare(v)) return std::string(v);
  std::string out = "\"";
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < v.size();) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c < 0x20 || c == 0x7F) {
        out += absl::StrFormat("\\x%02x", c);
      } else {
        out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    bool complete = false;
    const size_t len = text::Utf8SequenceLength(v.substr(i), &complete);
    if (!complete) {  // not UTF-8: the byte, spelled out
      out += absl::StrFormat("\\x%02x", c);
      ++i;
      continue;
    }
    if (const char32_t cp = Decode(p + i, len); Invisible(cp)) {
      out += absl::StrFormat("\\u%04x", static_cast<uint32_t>(cp));
    } else {
      out.append(v.substr(i, len));
    }
    i += len;
  }
  return out + "\"";
}

}  // namespace accullm::coordinator
