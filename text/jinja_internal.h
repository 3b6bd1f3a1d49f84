// Internals of the Jinja engine shared by jinja_*.cc: tokens, the syntax tree, the
// interpreter, and the JS-flavoured value helpers. Not part of any public API.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/status.h"
#include "text/jinja.h"

namespace accullm::text::jinja {

// ---- Lexer ----------------------------------------------------------------------------
enum class Tok : uint8_t {
  kText,
  kNumber,
  kString,
  kIdent,
  kEquals,
  kOpenParen,
  kCloseParen,
  kOpenStatement,
  kCloseStatement,
  kOpenExpression,
  kCloseExpression,
  kOpenSquare,
  kCloseSquare,
  kOpenCurly,
  kCloseCurly,
  kComma,
  kDot,
  kColon,
  kPipe,
  kAdditive,
  kMultiplicative,
  kPower,
  kComparison,
  kUnary,
  kComment
};
const char* TokName(Tok t);

struct Token {
  Tok type;
  std::string value;
  int line = 0;  // 1-based position in the (preprocessed) source, for error messages
  int col = 0;
};

// HF's preprocessing (trailing newline, lstrip_blocks, trim_blocks, {% generation %}).
std::string Preprocess(std::string_view source);
absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source);

// ---- Syntax tree ----------------------------------------------------------------------
enum class NodeKind : uint8_t {
  // statements
  kIf,
  kFor,
  kSet,
  kMacro,
  kCallBlock,
  kFilterBlock,
  kBreak,
  kContinue,
  kComment,
  // expressions
  kInt,
  kFloat,
  kString,
  kArray,
  kTuple,
  kObject,
  kIdent,
  kMember,
  kSlice,
  kCall,
  kUnary,
  kBinary,
  kFilter,
  kTest,
  kSelect,
  kTernary,
  kKwarg,
  kSpread,
  kKwSpread
};

using NodePtr = std::shared_ptr<Node>;
using Body = std::vector<NodePtr>;

struct Node {
  NodeKind kind;
  int line = 0;
  std::string text;  // identifier, string literal, operator, test/macro name
  double num = 0;
  bool flag = false;            // member: computed; test: negated
  NodePtr a, b, c;              // operands (meaning depends on kind, see parser)
  std::vector<NodePtr> items;   // list/tuple elements, call args, object keys
  std::vector<NodePtr> values;  // object values
  Body body, alt;               // statement bodies (if/else, for/else, set, macro)
};

absl::StatusOr<Body> ParseTokens(const std::vector<Token>& tokens);

// ---- Values, JS semantics -------------------------------------------------------------
struct Args {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  const Value* Kw(std::string_view name) const;
};

class Interpreter;
struct Env;
using EnvPtr = std::shared_ptr<Env>;

struct Function {
  std::string name;
  std::function<absl::StatusOr<Value>(Interpreter&, const Args&, const EnvPtr&)> call;
};

bool Truthy(const Value& v);
const char* TypeName(const Value& v);  // HF's names, e.g. "StringValue", for messages
std::string JsNumberToString(double v);
// String(x.value) in JS: what `~`, `+` and join() make of a value.
absl::StatusOr<std::string> JsString(const Value& v);
// RuntimeValue.toString(): what `{{ x }}` prints (floats as "1.0", containers as JSON).
absl::StatusOr<std::string> OutputString(const Value& v);
struct JsonOptions {
  int indent = 0;  // 0/none: single line
  bool ensure_ascii = false;
  bool sort_keys = false;
  bool has_separators = false;
  std::string item_sep, key_sep;
  bool undefined_as_null = true;
};
absl::StatusOr<std::string> ToJson(const Value& v, const JsonOptions& options, int depth = 0);
bool LooseEquals(const Value& a, const Value& b);   // JS ==
bool StrictEquals(const Value& a, const Value& b);  // JS ===

// Unicode helpers with JS behaviour (UTF-8 in, UTF-8 out).
size_t JsSpaceLen(std::string_view s, size_t pos);  // bytes of a JS \s char at pos, or 0
std::string_view TrimStartJs(std::string_view s);
std::string_view TrimEndJs(std::string_view s);
std::string ToUpperJs(std::string_view s);
std::string ToLowerJs(std::string_view s);
size_t Utf16Length(std::string_view s);
std::vector<std::string> CodePoints(std::string_view s);
// s.at(i) with UTF-16 indexing (negative from the end); nullopt-like false when out of range.
bool Utf16At(std::string_view s, double index, std::string* out);

// ---- Interpreter ----------------------------------------------------------------------
struct Env {
  EnvPtr parent;
  absl::flat_hash_map<std::string, Value> vars;
  Value Lookup(const std::string& name) const;
};

class Interpreter {
 public:
  explicit Interpreter(const RenderOptions& options) : options_(options) {}
  // Empties every namespace the render assigned into (see assigned_namespaces_).
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  absl::Status EvalBlock(const Body& body, const EnvPtr& env, std::string* out);
  absl::StatusOr<Value> Eval(const Node& node, const EnvPtr& env);
  absl::StatusOr<Args> EvalArgs(const std::vector<NodePtr>& args, const EnvPtr& env);
  absl::StatusOr<Value> CallFunction(const Value& fn, const Args& args, const EnvPtr& env);

  // Filters, tests, member access and globals (jinja_builtins.cc).
  absl::StatusOr<Value> ApplyFilter(const Value& operand, const Node& filter, const EnvPtr& env);
  absl::StatusOr<bool> ApplyTest(const std::string& name, const Value& operand, const Value* arg);
  absl::StatusOr<Value> GetMember(const Value& object, const Value& property);
  void InstallGlobals(Env& env);

  // Size checks for anything the template builds.
  absl::Status CheckString(size_t bytes) const;
  absl::Status CheckItems(size_t n) const;
  const RenderOptions& options() const { return options_; }
  int call_depth = 0;

 private:
  absl::Status EvalStatement(const Node& node, const EnvPtr& env, std::string* out);
  absl::Status EvalFor(const Node& node, const EnvPtr& env, std::string* out);
  absl::Status EvalSet(const Node& node, const EnvPtr& env);
  absl::StatusOr<Value> EvalBinary(const Node& node, const EnvPtr& env);
  absl::StatusOr<Value> EvalMember(const Node& node, const EnvPtr& env);
  absl::StatusOr<Value> EvalSlice(const Value& object, const Node& slice, const EnvPtr& env);
  absl::StatusOr<Value> EvalCallBlock(const Node& node, const EnvPtr& env);
  Value MakeMacro(const Node& node, const std::string& display_name);

  const RenderOptions& options_;
  uint64_t steps_ = 0;
  // Namespaces assigned into during this render. `{% set ns.attr = ... %}` is the only
  // mutation a template can make, so it is the only way a render builds a reference cycle
  // (`{% set ns.me = ns %}`, or ns holding a list that holds ns) that shared_ptr never frees:
  // emptying these namespaces at the end breaks every cycle, so a hostile template cannot
  // leak memory render after render (LeakSanitizer found it, docs/fuzzing.md).
  std::vector<Value> assigned_namespaces_;
  std::unordered_set<const void*> assigned_namespace_ids_;
};

// Errors raised while rendering. raise_exception's message travels verbatim; break and
// continue travel as statuses with these markers until the enclosing loop catches them.
absl::Status RenderError(std::string_view message);
bool IsBreak(const absl::Status& s);
bool IsContinue(const absl::Status& s);
absl::Status BreakSignal();
absl::Status ContinueSignal();

}  // namespace accullm::text::jinja
