#include "text/tokenizer_patterns.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "text/unicode_tables.h"

namespace accullm::text {
namespace {

constexpr std::string_view kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

constexpr size_t kNoMatch = std::string_view::npos;

// A cursor over valid UTF-8 that knows each code point's class.
struct Text {
  std::string_view s;
  // Code point at `pos` (pos < size) and the position after it.
  char32_t At(size_t pos, size_t* next) const {
    *next = pos;
    return NextCodePoint(s, next);
  }
  CharClass ClassAt(size_t pos, size_t* next) const { return ClassOf(At(pos, next)); }
  size_t End() const { return s.size(); }
  // End of the run of characters of class `c` starting at `pos`.
  size_t RunOf(CharClass c, size_t pos) const {
    while (pos < s.size()) {
      size_t next;
      if (ClassAt(pos, &next) != c) break;
      pos = next;
    }
    return pos;
  }
  size_t RunOfNewlines(size_t pos) const {
    while (pos < s.size() && (s[pos] == '\r' || s[pos] == '\n')) ++pos;
    return pos;
  }
};

// Oniguruma's case-insensitive match of a pattern letter: ASCII case pairs, plus U+017F
// LATIN SMALL LETTER LONG S, whose simple case folding is 's'.
bool FoldEquals(char32_t c, char lower) {
  if (c == static_cast<char32_t>(lower) || c == static_cast<char32_t>(lower - 'a' + 'A')) return true;
  return lower == 's' && c == 0x17F;
}

// 's|'t|'re|'ve|'m|'ll|'d at `pos` (which holds an apostrophe). Returns the end or kNoMatch.
size_t MatchContraction(const Text& t, size_t pos, bool ignore_case) {
  size_t p1;
  t.At(pos, &p1);
  if (p1 >= t.End()) return kNoMatch;
  size_t p2;
  const char32_t c1 = t.At(p1, &p2);
  auto eq = [&](char32_t c, char lower) {
    return ignore_case ? FoldEquals(c, lower) : c == static_cast<char32_t>(lower);
  };
  if (eq(c1, 's') || eq(c1, 't') || eq(c1, 'm') || eq(c1, 'd')) return p2;
  if (p2 >= t.End()) return kNoMatch;
  size_t p3;
  const char32_t c2 = t.At(p2, &p3);
  if ((eq(c1, 'r') && eq(c2, 'e')) || (eq(c1, 'v') && eq(c2, 'e')) || (eq(c1, 'l') && eq(c2, 'l'))) return p3;
  return kNoMatch;
}

// Whitespace alternatives shared by all patterns, at `pos` whose character is whitespace.
// `newline_rule`: Llama-3's \s*[\r\n]+ comes first. Then \s+(?!\S), then \s+.
size_t MatchWhitespace(const Text& t, size_t pos, bool newline_rule) {
  const size_t run_end = t.RunOf(CharClass::kSpace, pos);
  if (newline_rule) {
    // Backtracking \s* gives back characters until [\r\n]+ can match: the match ends just
    // after the last \r or \n of the whitespace run.
    for (size_t q = run_end; q > pos; --q) {
      const char c = t.s[q - 1];
      if (c == '\r' || c == '\n') return q;
      if (static_cast<unsigned char>(c) >= 0x80) {
        // Step back over a multi-byte whitespace character as one unit.
        while (q - 1 > pos && (static_cast<unsigned char>(t.s[q - 1]) & 0xC0) == 0x80) --q;
      }
    }
  }
  if (run_end == t.End()) return run_end;  // \s+ followed by end: (?!\S) holds
  // Otherwise \s+(?!\S) gives back the last whitespace character, if the run has two or more.
  size_t last = run_end - 1;
  while ((static_cast<unsigned char>(t.s[last]) & 0xC0) == 0x80) --last;
  if (last > pos) return last;
  return run_end;  // \s+
}

size_t MatchGpt2At(const Text& t, size_t pos) {
  size_t next;
  const char32_t c0 = t.At(pos, &next);
  if (c0 == '\'') {
    size_t e = MatchContraction(t, pos, /*ignore_case=*/false);
    if (e != kNoMatch) return e;
  }
  const CharClass k0 = ClassOf(c0);
  // ' '?\p{L}+ | ' '?\p{N}+ | ' '?[^\s\p{L}\p{N}]+
  size_t body = pos;
  CharClass kb = k0;
  if (c0 == ' ' && next < t.End()) {
    size_t after;
    const CharClass k1 = t.ClassAt(next, &after);
    if (k1 != CharClass::kSpace) {
      body = next;
      kb = k1;
    }
  }
  if (kb != CharClass::kSpace) return t.RunOf(kb, body);
  return MatchWhitespace(t, pos, /*newline_rule=*/false);
}

size_t MatchLlama3At(const Text& t, size_t pos, size_t max_digits) {
  size_t next;
  const char32_t c0 = t.At(pos, &next);
  if (c0 == '\'') {
    size_t e = MatchContraction(t, pos, /*ignore_case=*/true);
    if (e != kNoMatch) return e;
  }
  const CharClass k0 = ClassOf(c0);
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (k0 == CharClass::kLetter) return t.RunOf(CharClass::kLetter, pos);
  if (k0 != CharClass::kNumber && c0 != '\r' && c0 != '\n' && next < t.End()) {
    size_t after;
    if (t.ClassAt(next, &after) == CharClass::kLetter) return t.RunOf(CharClass::kLetter, next);
  }
  // \p{N}{1,max}
  if (k0 == CharClass::kNumber) {
    size_t p = pos;
    for (size_t n = 0; n < max_digits && p < t.End(); ++n) {
      size_t after;
      if (t.ClassAt(p, &after) != CharClass::kNumber) break;
      p = after;
    }
    return p;
  }
  // ' '?[^\s\p{L}\p{N}]+[\r\n]*
  size_t body = kNoMatch;
  if (k0 == CharClass::kOther) {
    body = pos;
  } else if (c0 == ' ' && next < t.End()) {
    size_t after;
    if (t.ClassAt(next, &after) == CharClass::kOther) body = next;
  }
  if (body != kNoMatch) return t.RunOfNewlines(t.RunOf(CharClass::kOther, body));
  // Only whitespace remains (every other class was handled above).
  return MatchWhitespace(t, pos, /*newline_rule=*/true);
}

}  // namespace

absl::StatusOr<SplitPattern> RecognizeSplitPattern(std::string_view regex) {
  if (regex == kGpt2Regex) return SplitPattern::kGpt2;
  if (regex == kLlama3Regex) return SplitPattern::kLlama3;
  if (regex == kQwen2Regex) return SplitPattern::kQwen2;
  return absl::UnimplementedError(
      absl::StrCat("unsupported Split regex (only the GPT-2, Llama-3 and Qwen2 patterns are implemented): ",
                   absl::string_view(regex.data(), regex.size())));
}

void FindPatternMatches(SplitPattern pattern, std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) {
  const Text t{text};
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = kNoMatch;
    switch (pattern) {
      case SplitPattern::kGpt2: end = MatchGpt2At(t, pos); break;
      case SplitPattern::kLlama3: end = MatchLlama3At(t, pos, 3); break;
      case SplitPattern::kQwen2: end = MatchLlama3At(t, pos, 1); break;
    }
    if (end == kNoMatch || end == pos) {  // no match here: the regex search moves on
      size_t next;
      t.At(pos, &next);
      pos = next;
      continue;
    }
    matches->emplace_back(pos, end);
    pos = end;
  }
}

}  // namespace accullm::text
