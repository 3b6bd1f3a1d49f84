// A Jinja subset for Hugging Face chat templates. The reference is @huggingface/jinja
// (the JavaScript engine the Hub and transformers.js render chat templates with), not
// Python Jinja: where the two differ (booleans print "true", `none` prints nothing,
// `"a" + 1` concatenates, `strip('x')` ignores its argument, `%` keeps the dividend's
// sign, numbers are doubles, string length counts UTF-16 units...) we do what
// @huggingface/jinja does, because its output is what the parity test pins down.
// Supported beyond it: `{% raw %}...{% endraw %}` (Python Jinja has it, the JS one errors).
//
// Everything fails with absl::Status, never an exception or a crash; templates are
// untrusted input, so rendering is bounded (RenderLimits) and cannot hang or exhaust memory.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/json.hpp"

namespace accullm::text::jinja {

class Value;
struct Function;
struct Node;

// Insertion-ordered string-keyed map (JS Map semantics: objects print in insertion order).
struct Object {
  std::vector<std::pair<std::string, Value>> entries;
  const Value* Find(std::string_view key) const;
  void Set(std::string key, Value value);
};

enum class Kind : uint8_t { kUndefined, kNull, kBool, kInt, kFloat, kString, kArray, kObject, kNamespace, kFunction };

// A runtime value. Containers are shared by reference (as in JS): `==` on two arrays
// compares identity, and a namespace assigned through one name changes for every name.
class Value {
 public:
  Value() = default;  // undefined
  static Value Null();
  static Value Bool(bool b);
  static Value Int(double v);  // integral double (JS has one number type)
  static Value Float(double v);
  static Value Number(double v);  // Int when integral, like JSON numbers in JS
  static Value String(std::string s);
  static Value Array(std::vector<Value> items, bool tuple = false);
  static Value MakeObject(Object o = {});
  static Value Namespace(Object o = {});
  static Value KeywordArgs(Object o);  // how HF hands keyword arguments to builtins
  static Value Func(std::shared_ptr<const Function> f);
  // JSON → value. Objects keep their key order, except that keys which are array
  // indices ("0", "7") come first in ascending order, as JS object property order does.
  static Value FromJson(const boost::json::value& json);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_object() const { return kind_ == Kind::kObject; }
  bool is_tuple() const { return kind_ == Kind::kArray && flag_; }
  bool is_kwargs() const { return kind_ == Kind::kObject && flag_; }
  bool boolean() const { return b_; }
  double number() const { return num_; }
  const std::string& str() const { return *str_; }
  const std::vector<Value>& array() const { return *arr_; }
  const Object& object() const { return *obj_; }    // kObject and kNamespace
  Object& mutable_object() const { return *obj_; }  // namespaces are mutable by design
  const Function& function() const { return *fn_; }
  // Identity of the shared container (0 for scalars): JS `===` on objects.
  const void* identity() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool b_ = false;
  bool flag_ = false;  // tuple (arrays) / keyword-arguments (objects)
  double num_ = 0;
  std::shared_ptr<const std::string> str_;
  std::shared_ptr<std::vector<Value>> arr_;
  std::shared_ptr<Object> obj_;
  std::shared_ptr<const Function> fn_;
};

// Bounds that keep a hostile template from hanging or exhausting the server.
struct RenderLimits {
  size_t max_output_bytes = 32u << 20;  // also the cap on any single string built
  size_t max_items = 1u << 20;          // list length (range(), list +)
  uint64_t max_steps = 5'000'000;       // node evaluations
  int max_call_depth = 32;              // nested macro calls
};

struct RenderOptions {
  RenderLimits limits;
  // Clock for strftime_now(); empty = the system clock (local time). Seconds since epoch.
  std::function<int64_t()> now;
};

// A parsed template; immutable and safe to render from many threads at once.
class Template {
 public:
  // Parses `source` with HF's settings (trim_blocks, lstrip_blocks, one trailing newline
  // dropped). Syntax errors → InvalidArgument "chat template: line L, column C: ...".
  static absl::StatusOr<Template> Parse(std::string_view source);

  // `context` holds the template's variables. A failing render → InvalidArgument; the
  // message of raise_exception('msg') is exactly "msg" (callers show it to clients).
  absl::StatusOr<std::string> Render(const std::vector<std::pair<std::string, Value>>& context,
                                     const RenderOptions& options = {}) const;

 private:
  std::shared_ptr<const std::vector<std::shared_ptr<Node>>> body_;
};

}  // namespace accullm::text::jinja
