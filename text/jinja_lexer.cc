// Jinja lexer: a port of @huggingface/jinja's tokenize(), byte for byte where it matters
// for output (whitespace control, trim_blocks/lstrip_blocks as regex substitutions done
// before lexing, string escapes), plus {% raw %} blocks.
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/enum_names.h"
#include "text/jinja_internal.h"
#include "text/unicode_tables.h"

namespace accullm::text::jinja {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsWordChar(char c) {  // JS /\w/ without the u flag: ASCII only
  return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
// Start of a line for JS's multiline ^: after \n, \r, U+2028, U+2029.
bool AtLineStart(std::string_view s, size_t i) {
  if (i == 0) return true;
  char p = s[i - 1];
  if (p == '\n' || p == '\r') return true;
  return i >= 3 && static_cast<unsigned char>(s[i - 3]) == 0xE2 && static_cast<unsigned char>(s[i - 2]) == 0x80 &&
         (static_cast<unsigned char>(s[i - 1]) == 0xA8 || static_cast<unsigned char>(s[i - 1]) == 0xA9);
}

// Text plus, for each byte, its offset in the stage's input (so errors can name the
// line and column of the template as written, not as preprocessed).
struct Mapped {
  std::string text;
  std::vector<uint32_t> at;
  void Push(char c, size_t src) {
    text.push_back(c);
    at.push_back(static_cast<uint32_t>(src));
  }
  void Append(std::string_view s, size_t src) {
    for (size_t k = 0; k < s.size(); ++k) Push(s[k], src + k);
  }
  void Truncate(size_t n) {
    text.resize(n);
    at.resize(n);
  }
};

// /^[ \t]*({[#%-])/gm → "$1"
Mapped LstripBlocks(std::string_view s) {
  Mapped out;
  size_t i = 0;
  while (i < s.size()) {
    if (AtLineStart(s, i)) {
      size_t j = i;
      while (j < s.size() && (s[j] == ' ' || s[j] == '\t')) ++j;
      if (j + 1 < s.size() && s[j] == '{' && (s[j + 1] == '#' || s[j + 1] == '%' || s[j + 1] == '-')) {
        out.Append(s.substr(j, 2), j);
        i = j + 2;
        continue;
      }
    }
    out.Push(s[i], i);
    ++i;
  }
  return out;
}

// /([#%-]})\n/g → "$1"
Mapped TrimBlocks(std::string_view s) {
  Mapped out;
  size_t i = 0;
  while (i < s.size()) {
    if (i + 2 < s.size() && (s[i] == '#' || s[i] == '%' || s[i] == '-') && s[i + 1] == '}' && s[i + 2] == '\n') {
      out.Append(s.substr(i, 2), i);
      i += 3;
      continue;
    }
    out.Push(s[i], i);
    ++i;
  }
  return out;
}

size_t SkipJsSpace(std::string_view s, size_t i) {
  while (i < s.size()) {
    size_t n = JsSpaceLen(s, i);
    if (n == 0) break;
    i += n;
  }
  return i;
}

// Matches {%-? \s* (end)?generation \s* -?%} at i; returns its end, or npos.
size_t MatchGenerationTag(std::string_view s, size_t i, bool* lstrip, bool* rstrip) {
  if (s.substr(i, 2) != "{%") return std::string_view::npos;
  size_t j = i + 2;
  *lstrip = j < s.size() && s[j] == '-';
  if (*lstrip) ++j;
  j = SkipJsSpace(s, j);
  if (s.substr(j, 3) == "end") j += 3;
  if (s.substr(j, 10) != "generation") return std::string_view::npos;
  j = SkipJsSpace(s, j + 10);
  *rstrip = j < s.size() && s[j] == '-';
  if (*rstrip) ++j;
  if (s.substr(j, 2) != "%}") return std::string_view::npos;
  return j + 2;
}

// transformers' {% generation %} markers: dropped, with their -/- whitespace control.
Mapped StripGenerationTags(std::string_view s) {
  Mapped out;
  size_t protected_len = 0;  // output before this belongs to an earlier match
  size_t i = 0;
  while (i < s.size()) {
    bool lstrip = false, rstrip = false;
    size_t end = s[i] == '{' ? MatchGenerationTag(s, i, &lstrip, &rstrip) : std::string_view::npos;
    if (end == std::string_view::npos) {
      out.Push(s[i], i);
      ++i;
      continue;
    }
    if (lstrip) {
      std::string_view tail = std::string_view(out.text).substr(protected_len);
      out.Truncate(protected_len + TrimEndJs(tail).size());
    }
    size_t after = SkipJsSpace(s, end);
    if (!rstrip) out.Append(s.substr(end, after - end), end);
    protected_len = out.text.size();
    i = after;
  }
  return out;
}

// All of HF's preprocessing, with each output byte's offset in `source`.
Mapped PreprocessMapped(std::string_view source) {
  std::string_view s = source;
  if (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  Mapped a = LstripBlocks(s);
  Mapped b = TrimBlocks(a.text);
  Mapped c = StripGenerationTags(b.text);
  for (uint32_t& p : c.at) p = a.at[b.at[p]];
  return c;
}

class Lexer {
 public:
  Lexer(std::string_view original, Mapped pre) : src_(std::move(pre.text)), origin_(std::move(pre.at)) {
    origin_.push_back(static_cast<uint32_t>(original.size()));  // end of input
    line_starts_.push_back(0);
    for (size_t i = 0; i < original.size(); ++i)
      if (original[i] == '\n') line_starts_.push_back(i + 1);
  }

  absl::StatusOr<std::vector<Token>> Run();

 private:
  absl::Status Error(std::string_view msg, size_t pos) const {
    int line, col;
    LineCol(pos, &line, &col);
    return absl::InvalidArgumentError(
        absl::StrCat("chat template: line ", line, ", column ", col, ": ", std::string(msg)));
  }
  void LineCol(size_t pos, int* line, int* col) const {
    pos = origin_[std::min(pos, origin_.size() - 1)];
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    size_t idx = static_cast<size_t>(it - line_starts_.begin()) - 1;
    *line = static_cast<int>(idx + 1);
    *col = static_cast<int>(pos - line_starts_[idx] + 1);
  }
  void Push(Tok type, std::string value, size_t pos) {
    Token t{type, std::move(value)};
    LineCol(pos, &t.line, &t.col);
    tokens_.push_back(std::move(t));
  }
  Tok LastType() const { return tokens_.back().type; }
  bool At(std::string_view lit) const { return std::string_view(src_).substr(pos_, lit.size()) == lit; }
  void StripTrailingWhitespace() {
    if (tokens_.empty() || LastType() != Tok::kText) return;
    std::string& v = tokens_.back().value;
    v.resize(TrimEndJs(v).size());
    if (v.empty()) tokens_.pop_back();
  }
  void SkipLeadingWhitespace() { pos_ = SkipJsSpace(src_, pos_); }
  absl::StatusOr<std::string> LexString(char quote);
  std::string Digits() {
    size_t start = pos_;
    while (pos_ < src_.size() && IsDigit(src_[pos_])) ++pos_;
    return src_.substr(start, pos_ - start);
  }
  // {% raw %}...{% endraw %} at pos_ (after optional '-'); false when this is not one.
  absl::StatusOr<bool> TryRaw();

  std::string src_;
  std::vector<uint32_t> origin_;  // offset in the original template of each byte of src_
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int curly_depth_ = 0;
  bool force_text_ = false;
};

// Matches "{%-? raw -?%}" style tags: returns the end of the tag or npos.
size_t MatchWordTag(std::string_view s, size_t i, std::string_view word, bool* lstrip, bool* rstrip) {
  if (s.substr(i, 2) != "{%") return std::string_view::npos;
  size_t j = i + 2;
  *lstrip = j < s.size() && s[j] == '-';
  if (*lstrip) ++j;
  j = SkipJsSpace(s, j);
  if (s.substr(j, word.size()) != word) return std::string_view::npos;
  j += word.size();
  if (j < s.size() && IsWordChar(s[j])) return std::string_view::npos;
  j = SkipJsSpace(s, j);
  *rstrip = j < s.size() && s[j] == '-';
  if (*rstrip) ++j;
  if (s.substr(j, 2) != "%}") return std::string_view::npos;
  return j + 2;
}

absl::StatusOr<bool> Lexer::TryRaw() {
  bool lstrip, rstrip;
  size_t open_end = MatchWordTag(src_, pos_, "raw", &lstrip, &rstrip);
  if (open_end == std::string_view::npos) return false;
  size_t search = open_end;
  while (true) {
    size_t at = src_.find("{%", search);
    if (at == std::string::npos) return Error("{% raw %} without {% endraw %}", pos_);
    bool end_lstrip, end_rstrip;
    size_t close_end = MatchWordTag(src_, at, "endraw", &end_lstrip, &end_rstrip);
    if (close_end == std::string_view::npos) {
      search = at + 2;
      continue;
    }
    if (lstrip) StripTrailingWhitespace();
    std::string_view content = std::string_view(src_).substr(open_end, at - open_end);
    if (rstrip) content = TrimStartJs(content);
    if (end_lstrip) content = TrimEndJs(content);
    if (!content.empty()) Push(Tok::kText, std::string(content), open_end);
    pos_ = close_end;
    if (end_rstrip) SkipLeadingWhitespace();
    force_text_ = true;
    return true;
  }
}

absl::StatusOr<std::string> Lexer::LexString(char quote) {
  const size_t start = pos_;
  ++pos_;  // opening quote
  std::string out;
  while (true) {
    if (pos_ >= src_.size()) return Error("unterminated string literal", start);
    char c = src_[pos_];
    if (c == quote) break;
    if (c != '\\') {
      out.push_back(c);
      ++pos_;
      continue;
    }
    ++pos_;
    if (pos_ >= src_.size()) return Error("unexpected end of input in string literal", start);
    char e = src_[pos_++];
    if (e == 'x' || e == 'u') {
      size_t len = e == 'x' ? 2 : 4;
      std::string hex = src_.substr(pos_, len);
      bool ok = hex.size() == len && std::all_of(hex.begin(), hex.end(),
                                                 [](char h) { return std::isxdigit(static_cast<unsigned char>(h)); });
      if (!ok) return Error(absl::StrCat("invalid escape sequence \\", std::string(1, e), hex), pos_ - 2);
      pos_ += len;
      char32_t cp = static_cast<char32_t>(std::stoul(hex, nullptr, 16));
      if (cp >= 0xD800 && cp <= 0xDBFF && src_.compare(pos_, 2, "\\u") == 0 && pos_ + 6 <= src_.size()) {
        // A surrogate pair written as two escapes is one character.
        std::string low = src_.substr(pos_ + 2, 4);
        if (std::all_of(low.begin(), low.end(), [](char h) { return std::isxdigit(static_cast<unsigned char>(h)); })) {
          char32_t lo = static_cast<char32_t>(std::stoul(low, nullptr, 16));
          if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            pos_ += 6;
          }
        }
      }
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;  // a lone surrogate prints as U+FFFD
      AppendUtf8(cp, &out);
      continue;
    }
    switch (e) {
      case 'n': out.push_back('\n'); break;
      case 't': out.push_back('\t'); break;
      case 'r': out.push_back('\r'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'v': out.push_back('\v'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      case '\\': out.push_back('\\'); break;
      default: return Error(absl::StrCat("unexpected escaped character: ", std::string(1, e)), pos_ - 1);
    }
  }
  ++pos_;  // closing quote
  return out;
}

absl::StatusOr<std::vector<Token>> Lexer::Run() {
  static constexpr std::pair<std::string_view, Tok> kTable[] = {
      {"{%", Tok::kOpenStatement},  {"%}", Tok::kCloseStatement},
      {"{{", Tok::kOpenExpression}, {"}}", Tok::kCloseExpression},
      {"(", Tok::kOpenParen},       {")", Tok::kCloseParen},
      {"{", Tok::kOpenCurly},       {"}", Tok::kCloseCurly},
      {"[", Tok::kOpenSquare},      {"]", Tok::kCloseSquare},
      {",", Tok::kComma},           {".", Tok::kDot},
      {":", Tok::kColon},           {"|", Tok::kPipe},
      {"<=", Tok::kComparison},     {">=", Tok::kComparison},
      {"==", Tok::kComparison},     {"!=", Tok::kComparison},
      {"<", Tok::kComparison},      {">", Tok::kComparison},
      {"+", Tok::kAdditive},        {"-", Tok::kAdditive},
      {"~", Tok::kAdditive},        {"**", Tok::kPower},
      {"*", Tok::kMultiplicative},  {"//", Tok::kMultiplicative},
      {"/", Tok::kMultiplicative},  {"%", Tok::kMultiplicative},
      {"=", Tok::kEquals},
  };
  const size_t n = src_.size();
  while (pos_ < n) {
    // Text outside tags.
    bool text_mode = tokens_.empty() || force_text_ || LastType() == Tok::kCloseStatement ||
                     LastType() == Tok::kCloseExpression || LastType() == Tok::kComment;
    force_text_ = false;
    if (text_mode) {
      size_t start = pos_;
      while (pos_ < n && !(src_[pos_] == '{' && pos_ + 1 < n &&
                           (src_[pos_ + 1] == '%' || src_[pos_ + 1] == '{' || src_[pos_ + 1] == '#')))
        ++pos_;
      if (pos_ > start) {
        Push(Tok::kText, src_.substr(start, pos_ - start), start);
        continue;
      }
    }
    // Comments.
    if (At("{#")) {
      const size_t start = pos_;
      pos_ += 2;
      bool strip_before = pos_ < n && src_[pos_] == '-';
      if (strip_before) ++pos_;
      size_t end = src_.find("#}", pos_);
      if (end == std::string::npos) return Error("missing end of comment tag", start);
      std::string comment = src_.substr(pos_, end - pos_);
      bool strip_after = !comment.empty() && comment.back() == '-';
      if (strip_after) comment.pop_back();
      if (strip_before) StripTrailingWhitespace();
      Push(Tok::kComment, std::move(comment), start);
      pos_ = end + 2;
      if (strip_after) SkipLeadingWhitespace();
      continue;
    }
    if (At("{%")) {
      ASSIGN_OR_RETURN(bool raw, TryRaw());
      if (raw) continue;
    }
    if (At("{%-")) {
      StripTrailingWhitespace();
      Push(Tok::kOpenStatement, "{%", pos_);
      pos_ += 3;
      continue;
    }
    if (At("{{-")) {
      StripTrailingWhitespace();
      Push(Tok::kOpenExpression, "{{", pos_);
      curly_depth_ = 0;
      pos_ += 3;
      continue;
    }
    SkipLeadingWhitespace();
    if (pos_ >= n) return Error("unexpected end of input inside a tag", n);
    if (At("-%}")) {
      Push(Tok::kCloseStatement, "%}", pos_);
      pos_ += 3;
      SkipLeadingWhitespace();
      continue;
    }
    if (At("-}}")) {
      Push(Tok::kCloseExpression, "}}", pos_);
      pos_ += 3;
      SkipLeadingWhitespace();
      continue;
    }
    const char c = src_[pos_];
    if (c == '-' || c == '+') {
      if (tokens_.empty() || LastType() == Tok::kText)
        return Error(absl::StrCat("unexpected character: ", std::string(1, c)), pos_);
      Tok last = LastType();
      if (last != Tok::kIdent && last != Tok::kNumber && last != Tok::kString && last != Tok::kCloseParen &&
          last != Tok::kCloseSquare) {
        // Unary sign, folded into a following number literal.
        const size_t start = pos_++;
        std::string num = Digits();
        if (!num.empty() && pos_ + 1 < n && src_[pos_] == '.' && IsDigit(src_[pos_ + 1])) {
          ++pos_;
          num += "." + Digits();
        }
        if (num.empty()) Push(Tok::kUnary, std::string(1, c), start);
        else Push(Tok::kNumber, std::string(1, c) + num, start);
        continue;
      }
    }
    bool matched = false;
    for (const auto& [seq, type] : kTable) {
      if (seq == "}}" && curly_depth_ > 0) continue;
      if (!At(seq)) continue;
      Push(type, std::string(seq), pos_);
      if (type == Tok::kOpenExpression) curly_depth_ = 0;
      else if (type == Tok::kOpenCurly) ++curly_depth_;
      else if (type == Tok::kCloseCurly) --curly_depth_;
      pos_ += seq.size();
      matched = true;
      break;
    }
    if (matched) continue;
    if (c == '\'' || c == '"') {
      const size_t start = pos_;
      ASSIGN_OR_RETURN(std::string s, LexString(c));
      Push(Tok::kString, std::move(s), start);
      continue;
    }
    if (IsDigit(c)) {
      const size_t start = pos_;
      std::string num = Digits();
      bool after_dot = !tokens_.empty() && LastType() == Tok::kDot;
      if (!after_dot && pos_ + 1 < n && src_[pos_] == '.' && IsDigit(src_[pos_ + 1])) {
        ++pos_;
        num += "." + Digits();
      }
      Push(Tok::kNumber, std::move(num), start);
      continue;
    }
    if (IsWordChar(c)) {
      const size_t start = pos_;
      while (pos_ < n && IsWordChar(src_[pos_])) ++pos_;
      Push(Tok::kIdent, src_.substr(start, pos_ - start), start);
      continue;
    }
    return Error(absl::StrCat("unexpected character: ", std::string(1, c)), pos_);
  }
  return std::move(tokens_);
}

// How a token reads in error messages.
constexpr EnumName<Tok> kTokNames[] = {
    {Tok::kText, "text"},
    {Tok::kNumber, "number"},
    {Tok::kString, "string"},
    {Tok::kIdent, "identifier"},
    {Tok::kEquals, "'='"},
    {Tok::kOpenParen, "'('"},
    {Tok::kCloseParen, "')'"},
    {Tok::kOpenStatement, "'{%'"},
    {Tok::kCloseStatement, "'%}'"},
    {Tok::kOpenExpression, "'{{'"},
    {Tok::kCloseExpression, "'}}'"},
    {Tok::kOpenSquare, "'['"},
    {Tok::kCloseSquare, "']'"},
    {Tok::kOpenCurly, "'{'"},
    {Tok::kCloseCurly, "'}'"},
    {Tok::kComma, "','"},
    {Tok::kDot, "'.'"},
    {Tok::kColon, "':'"},
    {Tok::kPipe, "'|'"},
    {Tok::kAdditive, "additive operator"},
    {Tok::kMultiplicative, "multiplicative operator"},
    {Tok::kPower, "'**'"},
    {Tok::kComparison, "comparison operator"},
    {Tok::kUnary, "unary operator"},
    {Tok::kComment, "comment"},
};
static_assert(NamesEveryValue(kTokNames, Tok::kText, Tok::kComment));

}  // namespace

const char* TokName(Tok t) { return NameOf(kTokNames, t, "token"); }

std::string Preprocess(std::string_view source) { return PreprocessMapped(source).text; }

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source) {
  if (source.size() >= (1u << 31)) return absl::InvalidArgumentError("chat template: template too large");
  Lexer lexer(source, PreprocessMapped(source));
  return lexer.Run();
}

}  // namespace accullm::text::jinja
