// Jinja runtime values with JavaScript semantics: number formatting, String(), JSON,
// == / ===, truthiness, and the Unicode string helpers (whitespace, case, UTF-16 length)
// that make @huggingface/jinja's output what it is.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "text/jinja_internal.h"
#include "text/unicode_tables.h"

namespace accullm::text::jinja {

// ---- Value ------------------------------------------------------------------------------
const Value* Object::Find(std::string_view key) const {
  for (const auto& [k, v] : entries)
    if (k == key) return &v;
  return nullptr;
}

void Object::Set(std::string key, Value value) {
  for (auto& [k, v] : entries) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

Value Value::Null() {
  Value v;
  v.kind_ = Kind::kNull;
  return v;
}
Value Value::Bool(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.b_ = b;
  return v;
}
Value Value::Int(double x) {
  Value v;
  v.kind_ = Kind::kInt;
  v.num_ = x;
  return v;
}
Value Value::Float(double x) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.num_ = x;
  return v;
}
Value Value::Number(double x) { return std::isfinite(x) && std::trunc(x) == x ? Int(x) : Float(x); }
Value Value::String(std::string s) {
  Value v;
  v.kind_ = Kind::kString;
  v.str_ = std::make_shared<const std::string>(std::move(s));
  return v;
}
Value Value::Array(std::vector<Value> items, bool tuple) {
  Value v;
  v.kind_ = Kind::kArray;
  v.flag_ = tuple;
  v.arr_ = std::make_shared<std::vector<Value>>(std::move(items));
  return v;
}
Value Value::MakeObject(Object o) {
  Value v;
  v.kind_ = Kind::kObject;
  v.obj_ = std::make_shared<Object>(std::move(o));
  return v;
}
Value Value::Namespace(Object o) {
  Value v = MakeObject(std::move(o));
  v.kind_ = Kind::kNamespace;
  return v;
}
Value Value::KeywordArgs(Object o) {
  Value v = MakeObject(std::move(o));
  v.flag_ = true;
  return v;
}
Value Value::Func(std::shared_ptr<const Function> f) {
  Value v;
  v.kind_ = Kind::kFunction;
  v.fn_ = std::move(f);
  return v;
}

const void* Value::identity() const {
  switch (kind_) {
    case Kind::kArray: return arr_.get();
    case Kind::kObject:
    case Kind::kNamespace: return obj_.get();
    case Kind::kFunction: return fn_.get();
    default: return nullptr;
  }
}

namespace {
// JS orders "array index" keys (canonical uint32 < 2^32-1) first, ascending.
bool IsArrayIndexKey(std::string_view k, uint64_t* index) {
  if (k.empty() || k.size() > 10 || (k.size() > 1 && k[0] == '0')) return false;
  uint64_t v = 0;
  for (char c : k) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v >= 4294967295ull) return false;
  *index = v;
  return true;
}
}  // namespace

Value Value::FromJson(const boost::json::value& json) {
  switch (json.kind()) {
    case boost::json::kind::null: return Null();
    case boost::json::kind::bool_: return Bool(json.get_bool());
    case boost::json::kind::int64: return Number(static_cast<double>(json.get_int64()));
    case boost::json::kind::uint64: return Number(static_cast<double>(json.get_uint64()));
    case boost::json::kind::double_: return Number(json.get_double());
    case boost::json::kind::string: return String(std::string(json.get_string()));
    case boost::json::kind::array: {
      std::vector<Value> items;
      items.reserve(json.get_array().size());
      for (const auto& e : json.get_array()) items.push_back(FromJson(e));
      return Array(std::move(items));
    }
    case boost::json::kind::object: {
      Object o;
      std::vector<std::pair<uint64_t, const boost::json::key_value_pair*>> indexed;
      for (const auto& kv : json.get_object()) {
        uint64_t idx;
        if (IsArrayIndexKey(std::string_view(kv.key().data(), kv.key().size()), &idx)) indexed.emplace_back(idx, &kv);
      }
      std::sort(indexed.begin(), indexed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      for (const auto& [idx, kv] : indexed) o.Set(std::string(kv->key()), FromJson(kv->value()));
      for (const auto& kv : json.get_object()) {
        uint64_t idx;
        if (!IsArrayIndexKey(std::string_view(kv.key().data(), kv.key().size()), &idx))
          o.Set(std::string(kv.key()), FromJson(kv.value()));
      }
      return MakeObject(std::move(o));
    }
  }
  return Value();
}

const Value* Args::Kw(std::string_view name) const {
  for (const auto& [k, v] : kw)
    if (k == name) return &v;
  return nullptr;
}

// ---- JS semantics ---------------------------------------------------------------------
bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined:
    case Kind::kNull: return false;
    case Kind::kBool: return v.boolean();
    case Kind::kInt:
    case Kind::kFloat: return v.number() != 0 && !std::isnan(v.number());
    case Kind::kString: return !v.str().empty();
    case Kind::kArray: return !v.array().empty();
    case Kind::kObject: return !v.object().entries.empty();
    case Kind::kNamespace:
    case Kind::kFunction: return true;
  }
  return false;
}

const char* TypeName(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined: return "UndefinedValue";
    case Kind::kNull: return "NullValue";
    case Kind::kBool: return "BooleanValue";
    case Kind::kInt: return "IntegerValue";
    case Kind::kFloat: return "FloatValue";
    case Kind::kString: return "StringValue";
    case Kind::kArray: return v.is_tuple() ? "TupleValue" : "ArrayValue";
    case Kind::kObject: return v.is_kwargs() ? "KeywordArgumentsValue" : "ObjectValue";
    case Kind::kNamespace: return "NamespaceValue";
    case Kind::kFunction: return "FunctionValue";
  }
  return "Value";
}

// Number.prototype.toString(): shortest round-trip digits, JS's exponent rules.
std::string JsNumberToString(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == 0) return "0";
  std::string out = v < 0 ? "-" : "";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), std::fabs(v), std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));
  size_t e_pos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_pos))
    if (c != '.') digits.push_back(c);
  int exp10 = 0;
  std::from_chars(sci.data() + e_pos + (sci[e_pos + 1] == '+' ? 2 : 1), sci.data() + sci.size(), exp10);
  const int k = static_cast<int>(digits.size());
  const int n = exp10 + 1;  // value = 0.digits × 10^n
  if (k <= n && n <= 21) {
    out += digits + std::string(static_cast<size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out += digits.substr(0, static_cast<size_t>(n)) + "." + digits.substr(static_cast<size_t>(n));
  } else if (-6 < n && n <= 0) {
    out += "0." + std::string(static_cast<size_t>(-n), '0') + digits;
  } else {
    const int e = n - 1;
    out += digits.substr(0, 1);
    if (k > 1) out += "." + digits.substr(1);
    out += absl::StrCat("e", e >= 0 ? "+" : "-", std::abs(e));
  }
  return out;
}

namespace {

// FloatValue.toString(): integral floats keep a ".0" (toFixed(1)), -0 is "-0.0".
std::string FloatToString(double v) {
  if (v == 0 && std::signbit(v)) return "-0.0";
  if (std::isfinite(v) && std::trunc(v) == v) {
    if (std::fabs(v) >= 1e21) return JsNumberToString(v);
    char buf[400];
    std::snprintf(buf, sizeof(buf), "%.1f", v);
    return buf;
  }
  return JsNumberToString(v);
}

constexpr int kMaxJsonDepth = 128;  // a namespace holding itself must not recurse forever

// RuntimeValue.toString() of an array element (null and undefined spell themselves).
absl::StatusOr<std::string> ElementToString(const Value& v) {
  if (v.is_null()) return std::string("null");
  if (v.is_undefined()) return std::string("undefined");
  return OutputString(v);
}

void AppendHex4(uint32_t unit, std::string* out) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "\\u%04x", unit);
  out->append(buf);
}

// JSON.stringify(string), optionally with Python-style ensure_ascii.
std::string JsonQuote(std::string_view s, bool ensure_ascii) {
  std::string out = "\"";
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          if (c < 0x20 || (ensure_ascii && c == 0x7f)) AppendHex4(c, &out);
          else out.push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    bool complete = false;
    size_t len = Utf8SequenceLength(s.substr(i), &complete);
    if (!complete || len == 0) len = 1;
    if (ensure_ascii) {
      size_t p = i;
      char32_t cp = complete ? NextCodePoint(s, &p) : 0xFFFD;
      if (cp >= 0x10000) {
        cp -= 0x10000;
        AppendHex4(0xD800 + (cp >> 10), &out);
        AppendHex4(0xDC00 + (cp & 0x3FF), &out);
      } else {
        AppendHex4(cp, &out);
      }
    } else {
      out.append(s.substr(i, len));
    }
    i += len;
  }
  out += "\"";
  return out;
}

// Stand-in for String.prototype.localeCompare on keys: case-insensitive first, then
// lower case before upper case (ICU's tertiary order for ASCII letters).
bool LocaleLess(const std::string& a, const std::string& b) {
  std::string la = ToLowerJs(a), lb = ToLowerJs(b);
  if (la != lb) return la < lb;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (a[i] == b[i]) continue;
    bool a_lower = a[i] >= 'a' && a[i] <= 'z';
    return a_lower;
  }
  return a.size() < b.size();
}

// JS primitive view of a value's .value, for == and ===.
struct Prim {
  enum Type { kUndef, kNull, kBool, kNum, kStr, kObj } type;
  double num = 0;
  std::string str;
  const void* id = nullptr;
};

Prim ToPrim(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined: return {Prim::kUndef, 0, {}, nullptr};
    case Kind::kNull: return {Prim::kNull, 0, {}, nullptr};
    case Kind::kBool: return {Prim::kBool, v.boolean() ? 1.0 : 0.0, {}, nullptr};
    case Kind::kInt:
    case Kind::kFloat: return {Prim::kNum, v.number(), {}, nullptr};
    case Kind::kString: return {Prim::kStr, 0, v.str(), nullptr};
    default: {
      Prim p{Prim::kObj, 0, {}, nullptr};
      p.id = v.identity();
      return p;
    }
  }
}

// Number(string): JS StringToNumber.
double JsStringToNumber(std::string_view s) {
  s = TrimEndJs(TrimStartJs(s));
  if (s.empty()) return 0;
  if (s == "Infinity" || s == "+Infinity") return INFINITY;
  if (s == "-Infinity") return -INFINITY;
  if (s.size() > 2 && s[0] == '0' &&
      (s[1] == 'x' || s[1] == 'X' || s[1] == 'o' || s[1] == 'O' || s[1] == 'b' || s[1] == 'B')) {
    int base = (s[1] == 'x' || s[1] == 'X') ? 16 : (s[1] == 'o' || s[1] == 'O') ? 8 : 2;
    double v = 0;
    for (char c : s.substr(2)) {
      int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
              : (c >= 'a' && c <= 'f')                    ? c - 'a' + 10
              : (c >= 'A' && c <= 'F')                    ? c - 'A' + 10
                                                          : 99;
      if (d >= base) return NAN;
      v = v * base + d;
    }
    return v;
  }
  // StrDecimalLiteral: [+-] (digits [. digits] | . digits) [(e|E) [+-] digits]
  size_t i = 0;
  if (s[i] == '+' || s[i] == '-') ++i;
  size_t int_digits = 0, frac_digits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++int_digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++frac_digits;
  }
  if (int_digits + frac_digits == 0) return NAN;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++exp_digits;
    if (exp_digits == 0) return NAN;
  }
  if (i != s.size()) return NAN;
  return std::strtod(std::string(s).c_str(), nullptr);
}

}  // namespace

absl::StatusOr<std::string> OutputString(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined:
    case Kind::kNull: return std::string();
    case Kind::kBool: return std::string(v.boolean() ? "true" : "false");
    case Kind::kInt: return JsNumberToString(v.number());
    case Kind::kFloat: return FloatToString(v.number());
    case Kind::kString: return v.str();
    case Kind::kArray:
    case Kind::kObject:
    case Kind::kNamespace: {
      JsonOptions o;
      o.undefined_as_null = false;
      return ToJson(v, o);
    }
    case Kind::kFunction: break;
  }
  return RenderError("cannot print a function");
}

absl::StatusOr<std::string> JsString(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined: return std::string("undefined");
    case Kind::kNull: return std::string("null");
    case Kind::kBool: return std::string(v.boolean() ? "true" : "false");
    case Kind::kInt:
    case Kind::kFloat: return JsNumberToString(v.number());
    case Kind::kString: return v.str();
    case Kind::kArray: {
      std::string out;
      for (size_t i = 0; i < v.array().size(); ++i) {
        if (i) out += ",";
        ASSIGN_OR_RETURN(std::string e, ElementToString(v.array()[i]));
        out += e;
      }
      return out;
    }
    case Kind::kObject:
    case Kind::kNamespace: return std::string("[object Map]");
    case Kind::kFunction: break;
  }
  return RenderError("cannot convert a function to a string");
}

absl::StatusOr<std::string> ToJson(const Value& v, const JsonOptions& options, int depth) {
  if (depth > kMaxJsonDepth) return RenderError("value nested too deeply for tojson (a cycle?)");
  std::string item_sep = ", ", key_sep = ": ";
  if (options.has_separators) {
    item_sep = options.item_sep;
    key_sep = options.key_sep;
  } else if (options.indent > 0) {
    item_sep = ",";
  }
  switch (v.kind()) {
    case Kind::kNull: return std::string("null");
    case Kind::kUndefined: return std::string(options.undefined_as_null ? "null" : "undefined");
    case Kind::kInt:
    case Kind::kFloat: return std::isfinite(v.number()) ? JsNumberToString(v.number()) : std::string("null");
    case Kind::kBool: return std::string(v.boolean() ? "true" : "false");
    case Kind::kString: return JsonQuote(v.str(), options.ensure_ascii);
    case Kind::kArray:
    case Kind::kObject:
    case Kind::kNamespace: {
      if (v.is_kwargs()) break;
      const std::string indent(static_cast<size_t>(std::max(options.indent, 0)), ' ');
      std::string base = "\n";
      for (int i = 0; i < depth; ++i) base += indent;
      const std::string child = base + indent;
      const bool pretty = options.indent > 0;
      std::vector<std::string> core;
      if (v.is_array()) {
        for (const Value& e : v.array()) {
          ASSIGN_OR_RETURN(std::string s, ToJson(e, options, depth + 1));
          core.push_back(std::move(s));
        }
        if (pretty && !core.empty()) return "[" + child + absl::StrJoin(core, item_sep + child) + base + "]";
        return "[" + absl::StrJoin(core, item_sep) + "]";
      }
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& e : v.object().entries) entries.push_back(&e);
      if (options.sort_keys)
        std::stable_sort(entries.begin(), entries.end(),
                         [](auto* a, auto* b) { return LocaleLess(a->first, b->first); });
      for (const auto* e : entries) {
        ASSIGN_OR_RETURN(std::string s, ToJson(e->second, options, depth + 1));
        std::string item = JsonQuote(e->first, options.ensure_ascii) + key_sep + s;
        core.push_back(pretty ? child + item : item);
      }
      if (pretty && !core.empty()) return "{" + absl::StrJoin(core, item_sep) + base + "}";
      return "{" + absl::StrJoin(core, item_sep) + "}";
    }
    case Kind::kFunction: break;
  }
  return RenderError(absl::StrCat("Cannot convert to JSON: ", TypeName(v)));
}

bool StrictEquals(const Value& a, const Value& b) {
  Prim x = ToPrim(a), y = ToPrim(b);
  if (x.type == Prim::kBool && y.type == Prim::kBool) return x.num == y.num;
  if (x.type != y.type) return false;
  switch (x.type) {
    case Prim::kUndef:
    case Prim::kNull: return true;
    case Prim::kNum: return x.num == y.num;
    case Prim::kStr: return x.str == y.str;
    case Prim::kObj: return x.id == y.id;
    default: return false;
  }
}

bool LooseEquals(const Value& a, const Value& b) {
  Prim x = ToPrim(a), y = ToPrim(b);
  // Objects compared with primitives become strings first (ToPrimitive).
  for (int round = 0; round < 4; ++round) {
    if (x.type == y.type) {
      switch (x.type) {
        case Prim::kUndef:
        case Prim::kNull: return true;
        case Prim::kBool:
        case Prim::kNum: return x.num == y.num;
        case Prim::kStr: return x.str == y.str;
        case Prim::kObj: return x.id == y.id;
      }
    }
    const bool x_nullish = x.type == Prim::kUndef || x.type == Prim::kNull;
    const bool y_nullish = y.type == Prim::kUndef || y.type == Prim::kNull;
    if (x_nullish || y_nullish) return x_nullish && y_nullish;
    if (x.type == Prim::kBool) {
      x.type = Prim::kNum;
      continue;
    }
    if (y.type == Prim::kBool) {
      y.type = Prim::kNum;
      continue;
    }
    if (x.type == Prim::kNum && y.type == Prim::kStr) return x.num == JsStringToNumber(y.str);
    if (x.type == Prim::kStr && y.type == Prim::kNum) return JsStringToNumber(x.str) == y.num;
    if (x.type == Prim::kObj) {
      auto s = JsString(a);
      if (!s.ok()) return false;
      x = Prim{Prim::kStr, 0, *s};
      continue;
    }
    if (y.type == Prim::kObj) {
      auto s = JsString(b);
      if (!s.ok()) return false;
      y = Prim{Prim::kStr, 0, *s};
      continue;
    }
    return false;
  }
  return false;
}

// ---- Unicode helpers --------------------------------------------------------------------
namespace {
char32_t DecodeAt(std::string_view s, size_t pos, size_t* len) {
  bool complete = false;
  size_t n = Utf8SequenceLength(s.substr(pos), &complete);
  if (!complete || n == 0) {
    *len = 1;
    return 0xFFFD;
  }
  size_t p = pos;
  char32_t cp = NextCodePoint(s, &p);
  *len = p - pos;
  return cp;
}

bool IsJsSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

// Simple case mappings for the scripts chat content commonly uses (Latin-1, Latin
// Extended-A, Greek, Cyrillic); other characters are left unchanged.
void AppendUpper(char32_t c, std::string* out) {
  char32_t u = c;
  if (c >= 'a' && c <= 'z') u = c - 32;
  else if (c == 0xDF) {
    out->append("SS");
    return;
  } else if (c == 0xB5) u = 0x39C;
  else if (c >= 0xE0 && c <= 0xFE && c != 0xF7) u = c - 0x20;
  else if (c == 0xFF) u = 0x178;
  else if (c == 0x131) u = 'I';
  else if (c == 0x17F) u = 'S';
  else if (c == 0x149) {
    out->append("\xCA\xBC"
                "N");
    return;
  } else if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) {
    if (c & 1) u = c - 1;
  } else if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) {
    if (!(c & 1)) u = c - 1;
  } else if (c == 0x3C2) u = 0x3A3;
  else if (c >= 0x3B1 && c <= 0x3C9) u = c - 0x20;
  else if (c >= 0x430 && c <= 0x44F) u = c - 0x20;
  else if (c >= 0x450 && c <= 0x45F) u = c - 0x50;
  AppendUtf8(u, out);
}

void AppendLower(char32_t c, std::string* out) {
  char32_t l = c;
  if (c >= 'A' && c <= 'Z') l = c + 32;
  else if (c >= 0xC0 && c <= 0xDE && c != 0xD7) l = c + 0x20;
  else if (c == 0x178) l = 0xFF;
  else if (c == 0x130) {
    out->append("i\xCC\x87");
    return;
  } else if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) {
    if (!(c & 1)) l = c + 1;
  } else if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) {
    if (c & 1) l = c + 1;
  } else if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) l = c + 0x20;
  else if (c >= 0x410 && c <= 0x42F) l = c + 0x20;
  else if (c >= 0x400 && c <= 0x40F) l = c + 0x50;
  AppendUtf8(l, out);
}
}  // namespace

size_t JsSpaceLen(std::string_view s, size_t pos) {
  if (pos >= s.size()) return 0;
  const unsigned char c = static_cast<unsigned char>(s[pos]);
  if (c < 0x80) return IsJsSpace(c) ? 1 : 0;
  size_t len;
  char32_t cp = DecodeAt(s, pos, &len);
  return IsJsSpace(cp) ? len : 0;
}

std::string_view TrimStartJs(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t n = JsSpaceLen(s, i);
    if (n == 0) break;
    i += n;
  }
  return s.substr(i);
}

std::string_view TrimEndJs(std::string_view s) {
  size_t end = 0, i = 0;
  while (i < s.size()) {
    size_t n = JsSpaceLen(s, i);
    if (n > 0) {
      i += n;
      continue;
    }
    size_t len;
    DecodeAt(s, i, &len);
    i += len;
    end = i;
  }
  return s.substr(0, end);
}

std::string ToUpperJs(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : static_cast<char>(c));
      ++i;
      continue;
    }
    size_t len;
    char32_t cp = DecodeAt(s, i, &len);
    AppendUpper(cp, &out);
    i += len;
  }
  return out;
}

std::string ToLowerJs(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : static_cast<char>(c));
      ++i;
      continue;
    }
    size_t len;
    char32_t cp = DecodeAt(s, i, &len);
    AppendLower(cp, &out);
    i += len;
  }
  return out;
}

size_t Utf16Length(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size();) {
    size_t len;
    char32_t cp = DecodeAt(s, i, &len);
    n += cp >= 0x10000 ? 2 : 1;
    i += len;
  }
  return n;
}

std::vector<std::string> CodePoints(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t len;
    DecodeAt(s, i, &len);
    out.emplace_back(s.substr(i, len));
    i += len;
  }
  return out;
}

bool Utf16At(std::string_view s, double index, std::string* out) {
  const double length = static_cast<double>(Utf16Length(s));
  double k = index >= 0 ? index : length + index;
  if (k < 0 || k >= length) return false;
  const size_t target = static_cast<size_t>(k);
  size_t unit = 0;
  for (size_t i = 0; i < s.size();) {
    size_t len;
    char32_t cp = DecodeAt(s, i, &len);
    size_t width = cp >= 0x10000 ? 2 : 1;
    if (target < unit + width) {
      // Half of a surrogate pair cannot be UTF-8; node prints it as U+FFFD too.
      if (width == 2) *out = "\xEF\xBF\xBD";
      else *out = std::string(s.substr(i, len));
      return true;
    }
    unit += width;
    i += len;
  }
  return false;
}

}  // namespace accullm::text::jinja
