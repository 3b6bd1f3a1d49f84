// Jinja builtins with @huggingface/jinja's behaviour: filters, tests, attribute/method
// lookup on strings, lists and dicts, and the globals (raise_exception, range,
// namespace, strftime_now). Anything HF rejects we reject too, with a clear message.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "text/jinja_internal.h"

namespace accullm::text::jinja {
namespace {

using Fn = std::function<absl::StatusOr<Value>(const std::vector<Value>&)>;

// A builtin taking HF-style arguments: positionals, then one keyword-arguments object
// when any keyword was given (that is how @huggingface/jinja passes them).
Value Builtin(std::string name, Fn f) {
  auto fn = std::make_shared<Function>();
  fn->name = std::move(name);
  fn->call = [f = std::move(f)](Interpreter&, const Args& args, const EnvPtr&) -> absl::StatusOr<Value> {
    std::vector<Value> js = args.pos;
    if (!args.kw.empty()) {
      Object o;
      for (const auto& [k, v] : args.kw) o.Set(k, v);
      js.push_back(Value::KeywordArgs(std::move(o)));
    }
    return f(js);
  };
  return Value::Func(std::move(fn));
}

// String(x) of an array element inside Array.prototype.join (null/undefined → "").
absl::StatusOr<std::string> JoinPiece(const Value& v) {
  if (v.is_null() || v.is_undefined()) return std::string();
  return JsString(v);
}

std::string TitleCase(std::string_view s) {  // /\b\w/g → upper case, ASCII word chars
  auto word = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  };
  std::string out(s);
  for (size_t i = 0; i < out.size(); ++i)
    if (word(out[i]) && (i == 0 || !word(out[i - 1])) && out[i] >= 'a' && out[i] <= 'z') out[i] -= 32;
  return out;
}

std::string Capitalize(std::string_view s) {  // charAt(0).toUpperCase() + rest
  if (s.empty()) return std::string();
  std::vector<std::string> cps = CodePoints(s.substr(0, std::min<size_t>(4, s.size())));
  const std::string& first = cps[0];
  if (first.size() == 4) return std::string(s);  // astral: a lone surrogate does not change
  return ToUpperJs(first) + std::string(s.substr(first.size()));
}

std::string IndentLines(std::string_view s, const std::string& pad, bool first, bool blank) {
  std::string out;
  size_t line = 0, start = 0;
  while (true) {
    size_t nl = s.find('\n', start);
    std::string_view piece = s.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    if (line > 0) out += '\n';
    const bool skip = (!first && line == 0) || (!blank && piece.empty());
    if (!skip) out += pad;
    out.append(piece);
    if (nl == std::string_view::npos) break;
    start = nl + 1;
    ++line;
  }
  return out;
}

double ParseIntJs(std::string_view s) {  // parseInt(s, 10); NaN when no digits
  s = TrimStartJs(s);
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  double v = 0;
  size_t digits = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') v = v * 10 + (s[i++] - '0'), ++digits;
  if (digits == 0) return NAN;
  return neg ? -v : v;
}

double ParseFloatJs(std::string_view s) {  // parseFloat: longest decimal prefix
  s = TrimStartJs(s);
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  if (s.substr(i, 8) == "Infinity") return s[0] == '-' ? -INFINITY : INFINITY;
  size_t digits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    size_t j = i + 1, frac = 0;
    while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j, ++frac;
    if (digits + frac > 0) {
      i = j;
      digits += frac;
    }
  }
  if (digits == 0) return NAN;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    size_t j = i + 1;
    if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
    size_t exp = 0;
    while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j, ++exp;
    if (exp > 0) i = j;
  }
  return std::strtod(std::string(s.substr(0, i)).c_str(), nullptr);
}

// compareRuntimeValues(): numbers (and booleans) with each other, strings with strings.
absl::StatusOr<int> Compare(const Value& a, const Value& b, bool case_sensitive) {
  if (a.is_null() && b.is_null()) return 0;
  if (a.is_null() || b.is_null() || a.is_undefined() != b.is_undefined())
    return RenderError(absl::StrCat("cannot compare ", TypeName(a), " with ", TypeName(b)));
  if (a.is_undefined()) return 0;
  auto numeric = [](const Value& v) { return v.is_number() || v.kind() == Kind::kBool; };
  auto num = [](const Value& v) { return v.kind() == Kind::kBool ? (v.boolean() ? 1.0 : 0.0) : v.number(); };
  if (numeric(a) && numeric(b)) return num(a) < num(b) ? -1 : (num(a) > num(b) ? 1 : 0);
  if (std::string(TypeName(a)) != TypeName(b))
    return RenderError(absl::StrCat("cannot compare different types: ", TypeName(a), " and ", TypeName(b)));
  if (!a.is_string()) return RenderError(absl::StrCat("cannot compare type: ", TypeName(a)));
  // JS compares UTF-16 code units; for valid UTF-8 that differs from byte order only
  // between astral characters and U+E000..U+FFFF, which sort keys rarely contain.
  std::string x = case_sensitive ? a.str() : ToLowerJs(a.str());
  std::string y = case_sensitive ? b.str() : ToLowerJs(b.str());
  return x < y ? -1 : (x > y ? 1 : 0);
}

// Sorts stably; the first comparison error is returned.
absl::StatusOr<std::vector<Value>> SortValues(
    std::vector<Value> items, bool reverse, const std::function<absl::StatusOr<int>(const Value&, const Value&)>& cmp) {
  absl::Status error;
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    if (!error.ok()) return false;
    auto r = cmp(a, b);
    if (!r.ok()) {
      error = r.status();
      return false;
    }
    return reverse ? *r > 0 : *r < 0;
  });
  if (!error.ok()) return error;
  return items;
}

// getAttributeValue(): dotted path through dicts and list indices.
Value AttributePath(const Value& item, std::string_view path) {
  Value v = item;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part(path.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (v.is_object() || v.kind() == Kind::kNamespace) {
      const Value* f = v.object().Find(part);
      v = f ? *f : Value();
    } else if (v.is_array()) {
      double idx = ParseIntJs(part);
      if (std::isnan(idx) || idx < 0 || idx >= static_cast<double>(v.array().size())) return Value();
      v = v.array()[static_cast<size_t>(idx)];
    } else {
      return Value();
    }
    if (dot == std::string_view::npos) return v;
    start = dot + 1;
  }
}

// Key for `unique`: JS Set semantics (SameValueZero; containers by identity).
std::string UniqueKey(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined: return "u";
    case Kind::kNull: return "n";
    case Kind::kBool: return v.boolean() ? "b1" : "b0";
    case Kind::kInt:
    case Kind::kFloat:
      return std::isnan(v.number()) ? "NaN" : absl::StrCat("d", JsNumberToString(v.number() == 0 ? 0.0 : v.number()));
    case Kind::kString: return "s" + v.str();
    default: return absl::StrCat("o", reinterpret_cast<uintptr_t>(v.identity()));
  }
}

Value StringMember(const Interpreter& in, const Value& self, const std::string& name) {
  const std::string s = self.str();
  if (name == "length") return Value::Int(static_cast<double>(Utf16Length(s)));
  if (name == "upper")
    return Builtin(name, [s](auto&) -> absl::StatusOr<Value> { return Value::String(ToUpperJs(s)); });
  if (name == "lower")
    return Builtin(name, [s](auto&) -> absl::StatusOr<Value> { return Value::String(ToLowerJs(s)); });
  if (name == "strip")  // HF ignores strip's argument: all whitespace goes
    return Builtin(
        name, [s](auto&) -> absl::StatusOr<Value> { return Value::String(std::string(TrimEndJs(TrimStartJs(s)))); });
  if (name == "lstrip")
    return Builtin(name, [s](auto&) -> absl::StatusOr<Value> { return Value::String(std::string(TrimStartJs(s))); });
  if (name == "rstrip")
    return Builtin(name, [s](auto&) -> absl::StatusOr<Value> { return Value::String(std::string(TrimEndJs(s))); });
  if (name == "title")
    return Builtin(name, [s](auto&) -> absl::StatusOr<Value> { return Value::String(TitleCase(s)); });
  if (name == "capitalize")
    return Builtin(name, [s](auto&) -> absl::StatusOr<Value> { return Value::String(Capitalize(s)); });
  if (name == "startswith" || name == "endswith") {
    const bool starts = name == "startswith";
    return Builtin(name, [s, starts, name](const std::vector<Value>& args) -> absl::StatusOr<Value> {
      if (args.empty()) return RenderError(absl::StrCat(name, "() requires at least one argument"));
      auto test = [&](const std::string& p) {
        if (p.size() > s.size()) return false;
        return starts ? s.compare(0, p.size(), p) == 0 : s.compare(s.size() - p.size(), p.size(), p) == 0;
      };
      if (args[0].is_string()) return Value::Bool(test(args[0].str()));
      if (args[0].is_array()) {
        for (const Value& p : args[0].array()) {
          if (!p.is_string()) return RenderError(absl::StrCat(name, "() tuple elements must be strings"));
          if (test(p.str())) return Value::Bool(true);
        }
        return Value::Bool(false);
      }
      return RenderError(absl::StrCat(name, "() argument must be a string or tuple of strings"));
    });
  }
  if (name == "split") {
    const size_t max_items = in.options().limits.max_items;
    return Builtin(name, [s, max_items](const std::vector<Value>& args) -> absl::StatusOr<Value> {
      Value sep = args.size() > 0 ? args[0] : Value::Null();
      if (!sep.is_string() && !sep.is_null()) return RenderError("sep argument must be a string or null");
      Value maxsplit = args.size() > 1 ? args[1] : Value::Int(-1);
      if (maxsplit.kind() != Kind::kInt) return RenderError("maxsplit argument must be a number");
      const double max = maxsplit.number();
      std::vector<Value> out;
      if (sep.is_null()) {
        std::string_view text = TrimStartJs(s);
        size_t i = 0;
        while (i < text.size()) {
          while (i < text.size() && JsSpaceLen(text, i) > 0) i += JsSpaceLen(text, i);
          if (i >= text.size()) break;
          size_t start = i;
          while (i < text.size() && JsSpaceLen(text, i) == 0) ++i;
          if (max != -1 && static_cast<double>(out.size()) >= max) {
            out.push_back(Value::String(std::string(text.substr(start))));
            break;
          }
          out.push_back(Value::String(std::string(text.substr(start, i - start))));
          if (out.size() > max_items) return RenderError("split() produced too many items");
        }
      } else {
        const std::string& d = sep.str();
        if (d.empty()) return RenderError("empty separator");
        std::vector<std::string> parts;
        size_t start = 0;
        while (true) {
          size_t at = s.find(d, start);
          parts.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
          if (parts.size() > max_items) return RenderError("split() produced too many items");
          if (at == std::string::npos) break;
          start = at + d.size();
        }
        if (max != -1 && static_cast<double>(parts.size()) > max) {
          const size_t keep = max < 0 ? 0 : static_cast<size_t>(max);
          std::string tail;
          for (size_t i = keep; i < parts.size(); ++i) tail += (i > keep ? d : "") + parts[i];
          parts.resize(keep);
          parts.push_back(std::move(tail));
        }
        for (auto& p : parts) out.push_back(Value::String(std::move(p)));
      }
      return Value::Array(std::move(out));
    });
  }
  if (name == "replace") {
    const size_t max_bytes = in.options().limits.max_output_bytes;
    return Builtin(name, [s, max_bytes](const std::vector<Value>& args) -> absl::StatusOr<Value> {
      if (args.size() < 2) return RenderError("replace() requires at least two arguments");
      if (!args[0].is_string() || !args[1].is_string()) return RenderError("replace() arguments must be strings");
      Value count = Value::Null();
      if (args.size() > 2) {
        if (args[2].is_kwargs()) {
          const Value* c = args[2].object().Find("count");
          if (c) count = *c;
        } else {
          count = args[2];
        }
      }
      if (count.kind() != Kind::kInt && !count.is_null())
        return RenderError("replace() count argument must be a number or null");
      double remaining = count.is_null() || count.number() < 0 ? INFINITY : count.number();
      const std::string& from = args[0].str();
      const std::string& to = args[1].str();
      std::string out;
      if (from.empty()) {  // /(?=)/gu: before every code point and at the end
        for (const std::string& cp : CodePoints(s)) {
          if (remaining > 0) out += to, --remaining;
          out += cp;
          if (out.size() > max_bytes) return RenderError("replace() result too long");
        }
        if (remaining > 0) out += to;
        return Value::String(std::move(out));
      }
      size_t start = 0;
      while (remaining > 0) {
        size_t at = s.find(from, start);
        if (at == std::string::npos) break;
        out.append(s, start, at - start);
        out += to;
        start = at + from.size();
        --remaining;
        if (out.size() > max_bytes) return RenderError("replace() result too long");
      }
      out.append(s, start, std::string::npos);
      if (out.size() > max_bytes) return RenderError("replace() result too long");
      return Value::String(std::move(out));
    });
  }
  return Value();
}

absl::StatusOr<Value> DictSort(const Value& self, const std::vector<Value>& all_args) {
  std::vector<Value> args;
  const Object* kw = nullptr;
  for (const Value& a : all_args) {
    if (a.is_kwargs()) kw = &a.object();
    else args.push_back(a);
  }
  auto pick = [&](size_t i, const char* name, Value def) {
    if (i < args.size()) return args[i];
    if (kw != nullptr && kw->Find(name) != nullptr) return *kw->Find(name);
    return def;
  };
  Value case_sensitive = pick(0, "case_sensitive", Value::Bool(false));
  if (case_sensitive.kind() != Kind::kBool) return RenderError("case_sensitive must be a boolean");
  Value by = pick(1, "by", Value::String("key"));
  if (!by.is_string()) return RenderError("by must be a string");
  if (by.str() != "key" && by.str() != "value") return RenderError("by must be either 'key' or 'value'");
  Value reverse = pick(2, "reverse", Value::Bool(false));
  if (reverse.kind() != Kind::kBool) return RenderError("reverse must be a boolean");
  std::vector<Value> pairs;
  for (const auto& [k, v] : self.object().entries) pairs.push_back(Value::Array({Value::String(k), v}));
  const size_t index = by.str() == "key" ? 0 : 1;
  const bool cs = case_sensitive.boolean();
  ASSIGN_OR_RETURN(pairs, SortValues(std::move(pairs), reverse.boolean(), [&](const Value& a, const Value& b) {
                     return Compare(a.array()[index], b.array()[index], cs);
                   }));
  return Value::Array(std::move(pairs));
}

Value ObjectMember(const Value& self, const std::string& name) {
  if (name == "get") {
    return Builtin(name, [self](const std::vector<Value>& args) -> absl::StatusOr<Value> {
      if (args.empty() || !args[0].is_string())
        return RenderError(
            absl::StrCat("Object key must be a string: got ", args.empty() ? "UndefinedValue" : TypeName(args[0])));
      const Value* v = self.object().Find(args[0].str());
      if (v) return *v;
      return args.size() > 1 ? args[1] : Value::Null();
    });
  }
  if (name == "items") {
    return Builtin(name, [self](auto&) -> absl::StatusOr<Value> {
      std::vector<Value> out;
      for (const auto& [k, v] : self.object().entries) out.push_back(Value::Array({Value::String(k), v}));
      return Value::Array(std::move(out));
    });
  }
  if (name == "keys") {
    return Builtin(name, [self](auto&) -> absl::StatusOr<Value> {
      std::vector<Value> out;
      for (const auto& [k, v] : self.object().entries) out.push_back(Value::String(k));
      return Value::Array(std::move(out));
    });
  }
  if (name == "values") {
    return Builtin(name, [self](auto&) -> absl::StatusOr<Value> {
      std::vector<Value> out;
      for (const auto& [k, v] : self.object().entries) out.push_back(v);
      return Value::Array(std::move(out));
    });
  }
  if (name == "dictsort") {
    return Builtin(name, [self](const std::vector<Value>& args) { return DictSort(self, args); });
  }
  return Value();
}

absl::StatusOr<Value> ToJsonFilter(const Value& operand, const Args& args) {
  JsonOptions o;
  if (const Value* indent = args.Kw("indent"); indent && !indent->is_null()) {
    if (indent->kind() != Kind::kInt) return RenderError("If set, indent must be a number");
    if (indent->number() < 0) return RenderError("indent must not be negative");
    if (indent->number() > 64) return RenderError("indent is too large");
    o.indent = static_cast<int>(indent->number());
  }
  if (const Value* ea = args.Kw("ensure_ascii")) {
    if (ea->kind() != Kind::kBool) return RenderError("If set, ensure_ascii must be a boolean");
    o.ensure_ascii = ea->boolean();
  }
  if (const Value* sk = args.Kw("sort_keys")) {
    if (sk->kind() != Kind::kBool) return RenderError("If set, sort_keys must be a boolean");
    o.sort_keys = sk->boolean();
  }
  if (const Value* sep = args.Kw("separators"); sep && !sep->is_null()) {
    if (!sep->is_array()) return RenderError("If set, separators must be a tuple of two strings");
    if (sep->array().size() != 2 || !sep->array()[0].is_string() || !sep->array()[1].is_string())
      return RenderError("separators must be a tuple of two strings");
    o.has_separators = true;
    o.item_sep = sep->array()[0].str();
    o.key_sep = sep->array()[1].str();
  }
  ASSIGN_OR_RETURN(std::string s, ToJson(operand, o));
  return Value::String(std::move(s));
}

}  // namespace

absl::StatusOr<Value> Interpreter::GetMember(const Value& object, const Value& property) {
  if (object.is_object() || object.kind() == Kind::kNamespace) {
    if (!property.is_string())
      return RenderError(absl::StrCat("cannot access property with non-string: got ", TypeName(property)));
    if (const Value* v = object.object().Find(property.str())) return *v;
    if (object.is_object()) return ObjectMember(object, property.str());
    return Value();
  }
  if (object.is_array() || object.is_string()) {
    if (property.kind() == Kind::kInt) {
      if (object.is_string()) {
        std::string ch;
        if (!Utf16At(object.str(), property.number(), &ch)) return Value();
        return Value::String(std::move(ch));
      }
      const double n = static_cast<double>(object.array().size());
      double k = property.number() >= 0 ? property.number() : n + property.number();
      if (k < 0 || k >= n) return Value();
      return object.array()[static_cast<size_t>(k)];
    }
    if (property.is_string()) {
      if (object.is_string()) return StringMember(*this, object, property.str());
      if (property.str() == "length") return Value::Int(static_cast<double>(object.array().size()));
      return Value();
    }
    return RenderError(absl::StrCat("cannot access property with non-string/non-number: got ", TypeName(property)));
  }
  if (!property.is_string())
    return RenderError(absl::StrCat("cannot access property with non-string: got ", TypeName(property)));
  return Value();
}

absl::StatusOr<bool> Interpreter::ApplyTest(const std::string& name, const Value& v, const Value* arg) {
  if (name == "boolean") return v.kind() == Kind::kBool;
  if (name == "callable") return v.kind() == Kind::kFunction;
  if (name == "odd" || name == "even") {
    if (v.kind() != Kind::kInt) return RenderError(absl::StrCat("cannot ", name, " on ", TypeName(v)));
    const bool odd = std::fmod(v.number(), 2) != 0;
    return name == "odd" ? odd : !odd;
  }
  if (name == "false") return v.kind() == Kind::kBool && !v.boolean();
  if (name == "true") return v.kind() == Kind::kBool && v.boolean();
  if (name == "none") return v.is_null();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.kind() == Kind::kInt;
  if (name == "iterable") return (v.is_array() && !v.is_tuple()) || v.is_string();
  if (name == "mapping") return v.is_object();
  if (name == "sequence") return v.is_array() || v.is_object() || v.is_string();
  if (name == "lower") return v.is_string() && v.str() == ToLowerJs(v.str());
  if (name == "upper") return v.is_string() && v.str() == ToUpperJs(v.str());
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "equalto" || name == "eq") return StrictEquals(v, arg ? *arg : Value());
  return RenderError(absl::StrCat("unknown test: ", name));
}

absl::StatusOr<Value> Interpreter::ApplyFilter(const Value& operand, const Node& filter, const EnvPtr& env) {
  auto cannot = [&](const std::string& name) {
    return RenderError(absl::StrCat("cannot apply filter \"", name, "\" to type: ", TypeName(operand)));
  };
  if (filter.kind == NodeKind::kIdent) {
    const std::string& name = filter.text;
    if (name == "safe") return operand;
    if (name == "tojson") {
      ASSIGN_OR_RETURN(std::string s, ToJson(operand, JsonOptions{}));
      RETURN_IF_ERROR(CheckString(s.size()));
      return Value::String(std::move(s));
    }
    if (operand.is_array()) {
      const auto& a = operand.array();
      if (name == "list") return operand;
      if (name == "first") return a.empty() ? Value() : a.front();
      if (name == "last") return a.empty() ? Value() : a.back();
      if (name == "length") return Value::Int(static_cast<double>(a.size()));
      if (name == "reverse") return Value::Array(std::vector<Value>(a.rbegin(), a.rend()));
      if (name == "sort") {
        ASSIGN_OR_RETURN(auto sorted,
                         SortValues(a, false, [](const Value& x, const Value& y) { return Compare(x, y, false); }));
        return Value::Array(std::move(sorted));
      }
      if (name == "join") {
        std::string out;
        for (const Value& e : a) {
          ASSIGN_OR_RETURN(std::string p, JoinPiece(e));
          out += p;
          RETURN_IF_ERROR(CheckString(out.size()));
        }
        return Value::String(std::move(out));
      }
      if (name == "string") {
        JsonOptions o;
        o.undefined_as_null = false;
        ASSIGN_OR_RETURN(std::string s, ToJson(operand, o));
        return Value::String(std::move(s));
      }
      if (name == "unique") {
        absl::flat_hash_set<std::string> seen;
        std::vector<Value> out;
        for (const Value& e : a)
          if (seen.insert(UniqueKey(e)).second) out.push_back(e);
        return Value::Array(std::move(out));
      }
      return RenderError(absl::StrCat("unknown ArrayValue filter: ", name));
    }
    if (operand.is_string()) {
      const std::string& s = operand.str();
      if (name == "length") return Value::Int(static_cast<double>(Utf16Length(s)));
      if (name == "upper") return Value::String(ToUpperJs(s));
      if (name == "lower") return Value::String(ToLowerJs(s));
      if (name == "title") return Value::String(TitleCase(s));
      if (name == "capitalize") return Value::String(Capitalize(s));
      if (name == "trim") return Value::String(std::string(TrimEndJs(TrimStartJs(s))));
      if (name == "indent") {
        std::string r = IndentLines(s, "    ", false, false);
        RETURN_IF_ERROR(CheckString(r.size()));
        return Value::String(std::move(r));
      }
      if (name == "join" || name == "string") return operand;
      if (name == "int") {
        double v = ParseIntJs(s);
        return Value::Int(std::isnan(v) ? 0 : v);
      }
      if (name == "float") {
        double v = ParseFloatJs(s);
        return Value::Float(std::isnan(v) ? 0 : v);
      }
      return RenderError(absl::StrCat("unknown StringValue filter: ", name));
    }
    if (operand.is_number()) {
      if (name == "abs")
        return operand.kind() == Kind::kInt ? Value::Int(std::fabs(operand.number()))
                                            : Value::Float(std::fabs(operand.number()));
      if (name == "int") return Value::Int(std::floor(operand.number()));
      if (name == "float") return Value::Float(operand.number());
      if (name == "string") {
        ASSIGN_OR_RETURN(std::string s, OutputString(operand));
        return Value::String(std::move(s));
      }
      return RenderError(absl::StrCat("unknown NumericValue filter: ", name));
    }
    if (operand.is_object()) {
      if (name == "items") return ObjectMember(operand, "items").function().call(*this, Args{}, env);
      if (name == "length") return Value::Int(static_cast<double>(operand.object().entries.size()));
      Value builtin = ObjectMember(operand, name);
      if (builtin.kind() == Kind::kFunction) return builtin.function().call(*this, Args{}, env);
      return RenderError(absl::StrCat("unknown ObjectValue filter: ", name));
    }
    if (operand.kind() == Kind::kBool) {
      const bool b = operand.boolean();
      if (name == "bool") return operand;
      if (name == "int") return Value::Int(b ? 1 : 0);
      if (name == "float") return Value::Float(b ? 1 : 0);
      if (name == "string") return Value::String(b ? "true" : "false");
      return RenderError(absl::StrCat("unknown BooleanValue filter: ", name));
    }
    return cannot(name);
  }

  if (filter.kind != NodeKind::kCall || filter.a->kind != NodeKind::kIdent) return RenderError("unknown filter");
  const std::string& name = filter.a->text;
  if (name == "tojson") {
    ASSIGN_OR_RETURN(Args args, EvalArgs(filter.items, env));
    ASSIGN_OR_RETURN(Value v, ToJsonFilter(operand, args));
    RETURN_IF_ERROR(CheckString(v.str().size()));
    return v;
  }
  if (name == "join") {
    std::vector<std::string> pieces;
    if (operand.is_string()) {
      pieces = CodePoints(operand.str());
    } else if (operand.is_array()) {
      for (const Value& e : operand.array()) {
        ASSIGN_OR_RETURN(std::string p, JoinPiece(e));
        pieces.push_back(std::move(p));
      }
    } else {
      return cannot(name);
    }
    ASSIGN_OR_RETURN(Args args, EvalArgs(filter.items, env));
    Value sep = !args.pos.empty() ? args.pos[0] : (args.Kw("separator") ? *args.Kw("separator") : Value::String(""));
    if (!sep.is_string()) return RenderError("separator must be a string");
    std::string out;
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (i) out += sep.str();
      out += pieces[i];
      RETURN_IF_ERROR(CheckString(out.size()));
    }
    return Value::String(std::move(out));
  }
  if (name == "int" || name == "float") {
    ASSIGN_OR_RETURN(Args args, EvalArgs(filter.items, env));
    const bool is_int = name == "int";
    Value def = !args.pos.empty()    ? args.pos[0]
                : args.Kw("default") ? *args.Kw("default")
                                     : (is_int ? Value::Int(0) : Value::Float(0));
    if (operand.is_string()) {
      double v = is_int ? ParseIntJs(operand.str()) : ParseFloatJs(operand.str());
      if (std::isnan(v)) return def;
      return is_int ? Value::Int(v) : Value::Float(v);
    }
    if (operand.is_number()) return operand;
    if (operand.kind() == Kind::kBool) return is_int ? Value::Int(operand.boolean()) : Value::Float(operand.boolean());
    return cannot(name);
  }
  if (name == "default") {
    ASSIGN_OR_RETURN(Args args, EvalArgs(filter.items, env));
    Value def = !args.pos.empty() ? args.pos[0] : Value::String("");
    Value boolean = args.pos.size() > 1 ? args.pos[1] : (args.Kw("boolean") ? *args.Kw("boolean") : Value::Bool(false));
    if (boolean.kind() != Kind::kBool) return RenderError("`default` filter flag must be a boolean");
    if (operand.is_undefined() || (boolean.boolean() && !Truthy(operand))) return def;
    return operand;
  }
  if (operand.is_array()) {
    const auto& a = operand.array();
    if (name == "sort") {
      ASSIGN_OR_RETURN(Args args, EvalArgs(filter.items, env));
      auto pick = [&](size_t i, const char* key, Value def) {
        if (i < args.pos.size()) return args.pos[i];
        if (const Value* v = args.Kw(key)) return *v;
        return def;
      };
      Value reverse = pick(0, "reverse", Value::Bool(false));
      if (reverse.kind() != Kind::kBool) return RenderError("reverse must be a boolean");
      Value cs = pick(1, "case_sensitive", Value::Bool(false));
      if (cs.kind() != Kind::kBool) return RenderError("case_sensitive must be a boolean");
      Value attribute = pick(2, "attribute", Value::Null());
      if (!attribute.is_string() && attribute.kind() != Kind::kInt && !attribute.is_null())
        return RenderError("attribute must be a string, integer, or null");
      auto key = [&](const Value& item) {
        if (attribute.is_null()) return item;
        return AttributePath(item, attribute.is_string() ? attribute.str() : JsNumberToString(attribute.number()));
      };
      ASSIGN_OR_RETURN(auto sorted, SortValues(a, reverse.boolean(), [&](const Value& x, const Value& y) {
                         return Compare(key(x), key(y), cs.boolean());
                       }));
      return Value::Array(std::move(sorted));
    }
    if (name == "selectattr" || name == "rejectattr") {
      const bool select = name == "selectattr";
      for (const Value& e : a)
        if (!e.is_object() && e.kind() != Kind::kNamespace)
          return RenderError(absl::StrCat("`", name, "` can only be applied to array of objects"));
      for (const NodePtr& n : filter.items)
        if (n->kind != NodeKind::kString) return RenderError(absl::StrCat("arguments of `", name, "` must be strings"));
      if (filter.items.empty()) return RenderError(absl::StrCat("`", name, "` needs an attribute name"));
      const std::string& attr = filter.items[0]->text;
      const std::string* test = filter.items.size() > 1 ? &filter.items[1]->text : nullptr;
      Value test_arg = filter.items.size() > 2 ? Value::String(filter.items[2]->text) : Value();
      std::vector<Value> out;
      for (const Value& e : a) {
        const Value* field = e.object().Find(attr);
        bool result = false;
        if (field != nullptr) {
          if (test != nullptr) {
            ASSIGN_OR_RETURN(result, ApplyTest(*test, *field, filter.items.size() > 2 ? &test_arg : nullptr));
          } else {
            result = Truthy(*field);
          }
        }
        if (result == select) out.push_back(e);
      }
      return Value::Array(std::move(out));
    }
    if (name == "map") {
      ASSIGN_OR_RETURN(Args args, EvalArgs(filter.items, env));
      const Value* attr = args.Kw("attribute");
      if (attr == nullptr) return RenderError("`map` expressions without `attribute` set are not currently supported.");
      if (!attr->is_string()) return RenderError("attribute must be a string");
      const Value* def = args.Kw("default");
      std::vector<Value> out;
      for (const Value& e : a) {
        if (!e.is_object() && e.kind() != Kind::kNamespace) return RenderError("items in map must be an object");
        Value v = AttributePath(e, attr->str());
        out.push_back(v.is_undefined() && def ? *def : v);
      }
      return Value::Array(std::move(out));
    }
    return RenderError(absl::StrCat("unknown ArrayValue filter: ", name));
  }
  if (operand.is_string()) {
    if (name == "indent") {
      ASSIGN_OR_RETURN(Args args, EvalArgs(filter.items, env));
      auto pick = [&](size_t i, const char* key, Value def) {
        if (i < args.pos.size()) return args.pos[i];
        if (const Value* v = args.Kw(key)) return *v;
        return def;
      };
      Value width = pick(0, "width", Value::Int(4));
      if (width.kind() != Kind::kInt) return RenderError("width must be a number");
      if (width.number() < 0 || width.number() > 1024) return RenderError("indent width out of range");
      Value first = pick(1, "first", Value::Bool(false));
      Value blank = pick(2, "blank", Value::Bool(false));
      std::string r = IndentLines(operand.str(), std::string(static_cast<size_t>(width.number()), ' '), Truthy(first),
                                  Truthy(blank));
      RETURN_IF_ERROR(CheckString(r.size()));
      return Value::String(std::move(r));
    }
    if (name == "replace") {
      ASSIGN_OR_RETURN(Args args, EvalArgs(filter.items, env));
      Value fn = StringMember(*this, operand, "replace");
      // HF appends the keyword-arguments object here even when it is empty.
      Object o;
      for (const auto& [k, v] : args.kw) o.Set(k, v);
      Args with_kwargs;
      with_kwargs.pos = args.pos;
      with_kwargs.pos.push_back(Value::KeywordArgs(std::move(o)));
      return fn.function().call(*this, with_kwargs, env);
    }
    return RenderError(absl::StrCat("unknown StringValue filter: ", name));
  }
  if (operand.is_object()) {
    Value builtin = ObjectMember(operand, name);
    if (builtin.kind() == Kind::kFunction) {
      ASSIGN_OR_RETURN(Args args, EvalArgs(filter.items, env));
      return builtin.function().call(*this, args, env);
    }
    return RenderError(absl::StrCat("unknown ObjectValue filter: ", name));
  }
  return cannot(name);
}

void Interpreter::InstallGlobals(Env& env) {
  env.vars["false"] = Value::Bool(false);
  env.vars["true"] = Value::Bool(true);
  env.vars["none"] = Value::Null();
  env.vars["False"] = Value::Bool(false);
  env.vars["True"] = Value::Bool(true);
  env.vars["None"] = Value::Null();
  env.vars["raise_exception"] = Builtin("raise_exception", [](const std::vector<Value>& args) -> absl::StatusOr<Value> {
    // The template's own message, verbatim: it is meant for the client.
    std::string msg;
    if (!args.empty() && !args[0].is_undefined()) {
      if (args[0].is_object() || args[0].kind() == Kind::kNamespace) msg = "[object Map]";
      else {
        ASSIGN_OR_RETURN(msg, JsString(args[0]));
      }
    }
    return absl::InvalidArgumentError(msg);
  });
  const size_t max_items = options_.limits.max_items;
  env.vars["range"] = Builtin("range", [max_items](const std::vector<Value>& args) -> absl::StatusOr<Value> {
    std::vector<double> a;
    for (const Value& v : args) {
      if (!v.is_number()) return RenderError("range() arguments must be numbers");
      a.push_back(v.number());
    }
    if (a.empty() || a.size() > 3) return RenderError("range() takes 1 to 3 arguments");
    double start = 0, stop = a[0], step = 1;
    if (a.size() >= 2) start = a[0], stop = a[1];
    if (a.size() == 3) step = a[2];
    if (step == 0) return RenderError("range() step must not be zero");
    if (!std::isfinite(start) || !std::isfinite(stop) || !std::isfinite(step))
      return RenderError("range() arguments must be finite");
    const double count = std::max(0.0, std::ceil((stop - start) / step));
    if (count > static_cast<double>(max_items)) return RenderError("range() is too long");
    std::vector<Value> out;
    for (double i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(Value::Number(i));
    return Value::Array(std::move(out));
  });
  auto now = options_.now;
  env.vars["strftime_now"] = Builtin("strftime_now", [now](const std::vector<Value>& args) -> absl::StatusOr<Value> {
    if (args.empty() || !args[0].is_string()) return RenderError("strftime_now() needs a format string");
    const std::time_t t =
        now ? static_cast<std::time_t>(now()) : std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    localtime_r(&t, &tm);
    static const char* kLong[] = {"January", "February", "March",     "April",   "May",      "June",
                                  "July",    "August",   "September", "October", "November", "December"};
    static const char* kShort[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    auto pad2 = [](int v) { return absl::StrCat(v < 10 ? "0" : "", v); };
    const std::string& f = args[0].str();
    std::string out;
    for (size_t i = 0; i < f.size(); ++i) {
      if (f[i] == '%' && i + 1 < f.size()) {
        const char c = f[i + 1];
        std::string rep;
        switch (c) {
          case 'Y': rep = absl::StrCat(tm.tm_year + 1900); break;
          case 'm': rep = pad2(tm.tm_mon + 1); break;
          case 'd': rep = pad2(tm.tm_mday); break;
          case 'b': rep = kShort[tm.tm_mon]; break;
          case 'B': rep = kLong[tm.tm_mon]; break;
          case 'H': rep = pad2(tm.tm_hour); break;
          case 'M': rep = pad2(tm.tm_min); break;
          case '%': rep = "%"; break;
          default: break;
        }
        if (!rep.empty()) {
          out += rep;
          ++i;
          continue;
        }
      }
      out += f[i];
    }
    return Value::String(std::move(out));
  });
  env.vars["namespace"] = Builtin("namespace", [](const std::vector<Value>& all) -> absl::StatusOr<Value> {
    std::vector<Value> pos = all;
    const Object* kwargs = nullptr;
    Value kw_holder;
    if (!pos.empty() && pos.back().is_kwargs()) {
      kw_holder = pos.back();
      kwargs = &kw_holder.object();
      pos.pop_back();
    }
    if (pos.size() > 1) return RenderError(absl::StrCat("namespace expected at most 1 argument, got ", pos.size()));
    Object entries;
    if (pos.size() == 1) {
      const Value& src = pos[0];
      if (src.is_object()) {
        for (const auto& [k, v] : src.object().entries) entries.Set(k, v);
      } else if (src.is_array()) {
        for (const Value& pair : src.array()) {
          std::vector<Value> kv;
          if (pair.is_array()) kv = pair.array();
          else if (pair.is_string())
            for (auto& cp : CodePoints(pair.str())) kv.push_back(Value::String(cp));
          if (kv.size() != 2) return RenderError("namespace expected an object or an iterable of [key, value] pairs");
          if (!kv[0].is_string()) return RenderError("namespace keys must be strings");
          entries.Set(kv[0].str(), kv[1]);
        }
      } else {
        return RenderError(absl::StrCat("'", TypeName(src), "' object is not iterable"));
      }
    }
    if (kwargs)
      for (const auto& [k, v] : kwargs->entries) entries.Set(k, v);
    return Value::Namespace(std::move(entries));
  });
}

}  // namespace accullm::text::jinja
