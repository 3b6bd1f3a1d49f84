// Jinja interpreter: statements and expressions, with @huggingface/jinja's semantics
// (scoping: `for` bodies get one scope for all iterations, `if` none, macros see their
// caller's scope; break/continue drop the current iteration's output). Every evaluation
// counts against a step budget and every string built against a size cap.
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "text/jinja_internal.h"
#include "text/unicode_tables.h"

namespace accullm::text::jinja {

namespace {
constexpr char kBreakMarker[] = "jinja: break";
constexpr char kContinueMarker[] = "jinja: continue";

bool MentionsIdent(const Node* n, std::string_view name) {
  if (n == nullptr) return false;
  if (n->kind == NodeKind::kIdent && n->text == name) return true;
  for (const NodePtr* p : {&n->a, &n->b, &n->c})
    if (MentionsIdent(p->get(), name)) return true;
  for (const auto* list : {&n->items, &n->values, &n->body, &n->alt})
    for (const auto& c : *list)
      if (MentionsIdent(c.get(), name)) return true;
  return false;
}
}  // namespace

absl::Status RenderError(std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("chat template: ", std::string(message)));
}
absl::Status BreakSignal() { return absl::CancelledError(kBreakMarker); }
absl::Status ContinueSignal() { return absl::CancelledError(kContinueMarker); }
bool IsBreak(const absl::Status& s) { return s.code() == absl::StatusCode::kCancelled && s.message() == kBreakMarker; }
bool IsContinue(const absl::Status& s) {
  return s.code() == absl::StatusCode::kCancelled && s.message() == kContinueMarker;
}

Value Env::Lookup(const std::string& name) const {
  for (const Env* e = this; e != nullptr; e = e->parent.get()) {
    auto it = e->vars.find(name);
    if (it != e->vars.end()) return it->second;
  }
  return Value();
}

absl::Status Interpreter::CheckString(size_t bytes) const {
  if (bytes > options_.limits.max_output_bytes)
    return RenderError(absl::StrCat("string longer than the limit of ", options_.limits.max_output_bytes, " bytes"));
  return absl::OkStatus();
}

absl::Status Interpreter::CheckItems(size_t n) const {
  if (n > options_.limits.max_items)
    return RenderError(absl::StrCat("list longer than the limit of ", options_.limits.max_items, " items"));
  return absl::OkStatus();
}

absl::Status Interpreter::EvalBlock(const Body& body, const EnvPtr& env, std::string* out) {
  for (const NodePtr& n : body) RETURN_IF_ERROR(EvalStatement(*n, env, out));
  return absl::OkStatus();
}

absl::Status Interpreter::EvalStatement(const Node& node, const EnvPtr& env, std::string* out) {
  if (++steps_ > options_.limits.max_steps) return RenderError("template exceeded its evaluation budget");
  switch (node.kind) {
    case NodeKind::kString: out->append(node.text); break;
    case NodeKind::kComment: return absl::OkStatus();
    case NodeKind::kIf: {
      ASSIGN_OR_RETURN(Value test, Eval(*node.a, env));
      RETURN_IF_ERROR(EvalBlock(Truthy(test) ? node.body : node.alt, env, out));
      break;
    }
    case NodeKind::kFor: RETURN_IF_ERROR(EvalFor(node, env, out)); break;
    case NodeKind::kSet: return EvalSet(node, env);
    case NodeKind::kMacro:
      env->vars[node.text] = MakeMacro(node, absl::StrCat("'", node.text, "'"));
      return absl::OkStatus();
    case NodeKind::kBreak: return BreakSignal();
    case NodeKind::kContinue: return ContinueSignal();
    case NodeKind::kCallBlock: {
      ASSIGN_OR_RETURN(Value v, EvalCallBlock(node, env));
      ASSIGN_OR_RETURN(std::string s, OutputString(v));
      out->append(s);
      break;
    }
    case NodeKind::kFilterBlock: {
      std::string captured;
      RETURN_IF_ERROR(EvalBlock(node.body, env, &captured));
      ASSIGN_OR_RETURN(Value v, ApplyFilter(Value::String(std::move(captured)), *node.a, env));
      if (!v.is_null() && !v.is_undefined()) {
        ASSIGN_OR_RETURN(std::string s, OutputString(v));
        out->append(s);
      }
      break;
    }
    default: {
      ASSIGN_OR_RETURN(Value v, Eval(node, env));
      if (!v.is_null() && !v.is_undefined()) {
        ASSIGN_OR_RETURN(std::string s, OutputString(v));
        out->append(s);
      }
    }
  }
  return CheckString(out->size());
}

absl::Status Interpreter::EvalFor(const Node& node, const EnvPtr& env, std::string* out) {
  auto scope = std::make_shared<Env>();
  scope->parent = env;
  const Node* test = nullptr;
  Value iterable;
  if (node.b->kind == NodeKind::kSelect) {
    ASSIGN_OR_RETURN(iterable, Eval(*node.b->a, scope));
    test = node.b->b.get();
  } else {
    ASSIGN_OR_RETURN(iterable, Eval(*node.b, scope));
  }
  std::vector<Value> source;
  if (iterable.is_object()) {
    for (const auto& [k, v] : iterable.object().entries) source.push_back(Value::String(k));
  } else if (iterable.is_array()) {
    source = iterable.array();
  } else {
    return RenderError(absl::StrCat("expected a list or dict to loop over, got ", TypeName(iterable)));
  }

  // Binds the loop target(s) to `item` in `target_env`.
  auto bind = [&](const Value& item, Env& target_env) -> absl::Status {
    if (node.a->kind == NodeKind::kIdent) {
      target_env.vars[node.a->text] = item;
      return absl::OkStatus();
    }
    if (!item.is_array() || item.is_tuple())
      return RenderError(absl::StrCat("cannot unpack non-iterable type: ", TypeName(item)));
    const auto& targets = node.a->items;
    if (targets.size() != item.array().size())
      return RenderError(targets.size() > item.array().size() ? "too few items to unpack" : "too many items to unpack");
    for (size_t j = 0; j < targets.size(); ++j) {
      if (targets[j]->kind != NodeKind::kIdent) return RenderError("cannot unpack into a non-name");
      target_env.vars[targets[j]->text] = item.array()[j];
    }
    return absl::OkStatus();
  };

  std::vector<Value> items;
  for (const Value& item : source) {
    if (++steps_ > options_.limits.max_steps) return RenderError("template exceeded its evaluation budget");
    if (test != nullptr) {
      Env loop_scope;
      loop_scope.parent = scope;
      auto loop_env = std::make_shared<Env>(std::move(loop_scope));
      RETURN_IF_ERROR(bind(item, *loop_env));
      ASSIGN_OR_RETURN(Value keep, Eval(*test, loop_env));
      if (!Truthy(keep)) continue;
    } else if (node.a->kind != NodeKind::kIdent) {
      Env probe;  // unpacking errors surface before any output, as in HF
      RETURN_IF_ERROR(bind(item, probe));
    }
    items.push_back(item);
  }

  bool no_iteration = true;
  const size_t n = items.size();
  for (size_t i = 0; i < n; ++i) {
    if (++steps_ > options_.limits.max_steps) return RenderError("template exceeded its evaluation budget");
    Object loop;
    loop.entries.reserve(9);
    loop.entries.emplace_back("index", Value::Int(static_cast<double>(i + 1)));
    loop.entries.emplace_back("index0", Value::Int(static_cast<double>(i)));
    loop.entries.emplace_back("revindex", Value::Int(static_cast<double>(n - i)));
    loop.entries.emplace_back("revindex0", Value::Int(static_cast<double>(n - i - 1)));
    loop.entries.emplace_back("first", Value::Bool(i == 0));
    loop.entries.emplace_back("last", Value::Bool(i == n - 1));
    loop.entries.emplace_back("length", Value::Int(static_cast<double>(n)));
    loop.entries.emplace_back("previtem", i > 0 ? items[i - 1] : Value());
    loop.entries.emplace_back("nextitem", i + 1 < n ? items[i + 1] : Value());
    scope->vars["loop"] = Value::MakeObject(std::move(loop));
    RETURN_IF_ERROR(bind(items[i], *scope));
    const size_t mark = out->size();
    absl::Status s = EvalBlock(node.body, scope, out);
    if (IsContinue(s)) {
      out->resize(mark);
      continue;
    }
    if (IsBreak(s)) {
      out->resize(mark);
      break;
    }
    RETURN_IF_ERROR(s);
    no_iteration = false;
  }
  if (no_iteration) RETURN_IF_ERROR(EvalBlock(node.alt, scope, out));
  return absl::OkStatus();
}

absl::Status Interpreter::EvalSet(const Node& node, const EnvPtr& env) {
  Value rhs;
  if (node.b) {
    ASSIGN_OR_RETURN(rhs, Eval(*node.b, env));
  } else {
    std::string captured;
    RETURN_IF_ERROR(EvalBlock(node.body, env, &captured));
    rhs = Value::String(std::move(captured));
  }
  const Node& target = *node.a;
  switch (target.kind) {
    case NodeKind::kIdent: env->vars[target.text] = std::move(rhs); return absl::OkStatus();
    case NodeKind::kTuple: {
      if (!rhs.is_array()) return RenderError(absl::StrCat("cannot unpack non-iterable type in set: ", TypeName(rhs)));
      if (rhs.array().size() != target.items.size())
        return RenderError(target.items.size() > rhs.array().size() ? "too few items to unpack in set"
                                                                    : "too many items to unpack in set");
      for (size_t i = 0; i < target.items.size(); ++i) {
        if (target.items[i]->kind != NodeKind::kIdent) return RenderError("cannot unpack into a non-name in set");
        env->vars[target.items[i]->text] = rhs.array()[i];
      }
      return absl::OkStatus();
    }
    case NodeKind::kMember: {
      ASSIGN_OR_RETURN(Value object, Eval(*target.a, env));
      if (object.kind() != Kind::kNamespace) return RenderError("cannot assign attribute on non-namespace object");
      if (target.b->kind != NodeKind::kIdent)
        return RenderError("cannot assign to member with non-identifier property");
      if (assigned_namespace_ids_.insert(object.identity()).second) assigned_namespaces_.push_back(object);
      object.mutable_object().Set(target.b->text, std::move(rhs));
      return absl::OkStatus();
    }
    default: return RenderError("invalid left-hand side of set");
  }
}

Interpreter::~Interpreter() {
  for (const Value& ns : assigned_namespaces_) ns.mutable_object().entries.clear();
}

Value Interpreter::MakeMacro(const Node& node, const std::string& display_name) {
  auto fn = std::make_shared<Function>();
  fn->name = display_name;
  const Node* macro = &node;  // the template outlives every render that calls it
  const bool wants_kwargs = MentionsIdent(macro, "kwargs");
  const bool wants_varargs = MentionsIdent(macro, "varargs");
  fn->call = [macro, display_name, wants_kwargs, wants_varargs](Interpreter& in, const Args& args,
                                                                const EnvPtr& caller) -> absl::StatusOr<Value> {
    auto scope = std::make_shared<Env>();
    scope->parent = caller;
    auto kwargs = args.kw;
    std::vector<std::pair<std::string, const Node*>> pending;
    const auto& params = macro->items;
    for (size_t i = 0; i < params.size(); ++i) {
      const std::string& name = params[i]->text;
      const Node* default_value = params[i]->kind == NodeKind::kKwarg ? params[i]->a.get() : nullptr;
      Value value;
      bool given = i < args.pos.size();
      if (given) {
        value = args.pos[i];
      } else {
        for (auto it = kwargs.begin(); it != kwargs.end(); ++it) {
          if (it->first == name) {
            value = it->second;
            kwargs.erase(it);
            given = true;
            break;
          }
        }
      }
      if (!given && default_value != nullptr) pending.emplace_back(name, default_value);
      scope->vars[name] = value;
    }
    if (wants_kwargs) {
      Object o;
      for (auto& [k, v] : kwargs) o.Set(k, v);
      scope->vars["kwargs"] = Value::MakeObject(std::move(o));
    } else if (!kwargs.empty()) {
      return RenderError(absl::StrCat("macro ", display_name, " takes no keyword argument '", kwargs[0].first, "'"));
    }
    if (wants_varargs) {
      std::vector<Value> rest;
      for (size_t i = params.size(); i < args.pos.size(); ++i) rest.push_back(args.pos[i]);
      scope->vars["varargs"] = Value::Array(std::move(rest));
    } else if (args.pos.size() > params.size()) {
      return RenderError(absl::StrCat("macro ", display_name, " takes not more than ", params.size(), " argument(s)"));
    }
    for (const auto& [name, expr] : pending) {
      ASSIGN_OR_RETURN(Value v, in.Eval(*expr, scope));
      scope->vars[name] = std::move(v);
    }
    std::string out;
    RETURN_IF_ERROR(in.EvalBlock(macro->body, scope, &out));
    return Value::String(std::move(out));
  };
  return Value::Func(std::move(fn));
}

absl::StatusOr<Value> Interpreter::EvalCallBlock(const Node& node, const EnvPtr& env) {
  // `caller()` is an anonymous macro over the call block's body, defined where the block is.
  auto caller_node = std::make_shared<Node>();
  caller_node->kind = NodeKind::kMacro;
  caller_node->items = node.items;
  caller_node->body = node.body;
  Value caller_macro = MakeMacro(*caller_node, "None");
  auto caller_fn = std::make_shared<Function>();
  caller_fn->name = "caller";
  caller_fn->call = [caller_node, caller_macro, env](Interpreter& in, const Args& args,
                                                     const EnvPtr&) -> absl::StatusOr<Value> {
    return caller_macro.function().call(in, args, env);
  };
  const Node& call = *node.a;
  ASSIGN_OR_RETURN(Args args, EvalArgs(call.items, env));
  ASSIGN_OR_RETURN(Value fn, Eval(*call.a, env));
  auto call_env = std::make_shared<Env>();
  call_env->parent = env;
  call_env->vars["caller"] = Value::Func(std::move(caller_fn));
  return CallFunction(fn, args, call_env);
}

absl::StatusOr<Args> Interpreter::EvalArgs(const std::vector<NodePtr>& nodes, const EnvPtr& env) {
  Args args;
  for (const NodePtr& n : nodes) {
    if (n->kind == NodeKind::kSpread) {
      ASSIGN_OR_RETURN(Value v, Eval(*n->a, env));
      if (!v.is_array()) return RenderError(absl::StrCat("cannot unpack non-iterable type: ", TypeName(v)));
      for (const Value& e : v.array()) args.pos.push_back(e);
    } else if (n->kind != NodeKind::kKwarg && n->kind != NodeKind::kKwSpread) {
      ASSIGN_OR_RETURN(Value v, Eval(*n, env));
      args.pos.push_back(std::move(v));
    }
  }
  auto add = [&args](const std::string& key, Value v) -> absl::Status {
    if (args.Kw(key) != nullptr)
      return RenderError(absl::StrCat("got multiple values for keyword argument '", key, "'"));
    args.kw.emplace_back(key, std::move(v));
    return absl::OkStatus();
  };
  for (const NodePtr& n : nodes) {
    if (n->kind == NodeKind::kKwarg) {
      ASSIGN_OR_RETURN(Value v, Eval(*n->a, env));
      RETURN_IF_ERROR(add(n->text, std::move(v)));
    } else if (n->kind == NodeKind::kKwSpread) {
      ASSIGN_OR_RETURN(Value v, Eval(*n->a, env));
      if (!v.is_object()) return RenderError(absl::StrCat("argument after ** must be a mapping, not ", TypeName(v)));
      for (const auto& [k, e] : v.object().entries) RETURN_IF_ERROR(add(k, e));
    }
  }
  return args;
}

absl::StatusOr<Value> Interpreter::CallFunction(const Value& fn, const Args& args, const EnvPtr& env) {
  if (fn.kind() != Kind::kFunction)
    return RenderError(absl::StrCat("cannot call something that is not a function: got ", TypeName(fn)));
  if (call_depth >= options_.limits.max_call_depth) return RenderError("macro calls nested too deeply (recursion?)");
  ++call_depth;
  auto result = fn.function().call(*this, args, env);
  --call_depth;
  return result;
}

absl::StatusOr<Value> Interpreter::EvalSlice(const Value& object, const Node& slice, const EnvPtr& env) {
  if (!object.is_array() && !object.is_string()) return RenderError("slice object must be an array or string");
  double part[3] = {0, 0, 1};
  bool given[3] = {false, false, false};
  const Node* nodes[3] = {slice.a.get(), slice.b.get(), slice.c.get()};
  for (int i = 0; i < 3; ++i) {
    if (nodes[i] == nullptr) continue;
    ASSIGN_OR_RETURN(Value v, Eval(*nodes[i], env));
    if (v.is_undefined()) continue;
    if (v.kind() != Kind::kInt) return RenderError("slice indices must be integers or undefined");
    part[i] = v.number();
    given[i] = true;
  }
  std::vector<std::string> chars;
  if (object.is_string()) {
    chars = CodePoints(object.str());
    RETURN_IF_ERROR(CheckItems(chars.size()));
  }
  const double len = static_cast<double>(object.is_string() ? chars.size() : object.array().size());
  const double step = given[2] ? part[2] : 1;
  const int dir = step > 0 ? 1 : (step < 0 ? -1 : 0);
  double start, stop;
  if (dir >= 0) {
    start = given[0] ? part[0] : 0;
    stop = given[1] ? part[1] : len;
    start = start < 0 ? std::max(len + start, 0.0) : std::min(start, len);
    stop = stop < 0 ? std::max(len + stop, 0.0) : std::min(stop, len);
  } else {
    start = given[0] ? part[0] : len - 1;
    stop = given[1] ? part[1] : -1;
    start = start < 0 ? std::max(len + start, -1.0) : std::min(start, len - 1);
    stop = stop < -1 ? std::max(len + stop, -1.0) : std::min(stop, len - 1);
  }
  std::vector<Value> items;
  std::string text;
  for (double i = start; dir * i < dir * stop; i += step) {
    const size_t idx = static_cast<size_t>(i);
    if (object.is_string()) text += chars[idx];
    else items.push_back(object.array()[idx]);
  }
  if (object.is_string()) return Value::String(std::move(text));
  return Value::Array(std::move(items));
}

absl::StatusOr<Value> Interpreter::EvalMember(const Node& node, const EnvPtr& env) {
  ASSIGN_OR_RETURN(Value object, Eval(*node.a, env));
  Value property;
  if (node.flag) {
    if (node.b->kind == NodeKind::kSlice) return EvalSlice(object, *node.b, env);
    ASSIGN_OR_RETURN(property, Eval(*node.b, env));
  } else if (node.b->kind == NodeKind::kInt) {
    property = Value::Int(node.b->num);
  } else {
    property = Value::String(node.b->text);
  }
  return GetMember(object, property);
}

absl::StatusOr<Value> Interpreter::EvalBinary(const Node& node, const EnvPtr& env) {
  const std::string& op = node.text;
  ASSIGN_OR_RETURN(Value left, Eval(*node.a, env));
  if (op == "and") {
    if (!Truthy(left)) return left;
    return Eval(*node.b, env);
  }
  if (op == "or") {
    if (Truthy(left)) return left;
    return Eval(*node.b, env);
  }
  ASSIGN_OR_RETURN(Value right, Eval(*node.b, env));
  if (op == "==") return Value::Bool(LooseEquals(left, right));
  if (op == "!=") return Value::Bool(!LooseEquals(left, right));
  const bool is_in = op == "in" || op == "not in";
  auto unknown = [&]() {
    return RenderError(
        absl::StrCat("unknown operator \"", op, "\" between ", TypeName(left), " and ", TypeName(right)));
  };
  if (left.is_undefined() || right.is_undefined()) {
    if (right.is_undefined() && is_in) return Value::Bool(op == "not in");
    return RenderError(absl::StrCat("cannot perform operation ", op, " on undefined values"));
  }
  if (left.is_null() || right.is_null()) return RenderError("cannot perform operation on null values");
  if (op == "~") {
    ASSIGN_OR_RETURN(std::string a, JsString(left));
    ASSIGN_OR_RETURN(std::string b, JsString(right));
    RETURN_IF_ERROR(CheckString(a.size() + b.size()));
    return Value::String(a + b);
  }
  auto numeric_like = [](const Value& v) { return v.is_number() || v.kind() == Kind::kBool; };
  auto numeric_value = [](const Value& v) { return v.kind() == Kind::kBool ? (v.boolean() ? 1.0 : 0.0) : v.number(); };
  if (op == "**" && numeric_like(left) && numeric_like(right)) {
    const double a = numeric_value(left), b = numeric_value(right);
    if (a == 0 && b < 0) return RenderError("0.0 cannot be raised to a negative power");
    const double r = std::pow(a, b);
    if (!std::isfinite(r)) return RenderError("exponentiation result is not a finite real number");
    const bool is_float = left.kind() == Kind::kFloat || right.kind() == Kind::kFloat || b < 0;
    return is_float ? Value::Float(r) : Value::Int(r);
  }
  if (left.is_number() && right.is_number()) {
    const double a = left.number(), b = right.number();
    const bool is_float = left.kind() == Kind::kFloat || right.kind() == Kind::kFloat;
    auto num = [is_float](double r) { return is_float ? Value::Float(r) : Value::Int(r); };
    if (op == "+") return num(a + b);
    if (op == "-") return num(a - b);
    if (op == "*") return num(a * b);
    if (op == "/") return Value::Float(a / b);
    if (op == "//") return num(std::floor(a / b));
    if (op == "%") return num(std::fmod(a, b));
    if (op == "<") return Value::Bool(a < b);
    if (op == ">") return Value::Bool(a > b);
    if (op == ">=") return Value::Bool(a >= b);
    if (op == "<=") return Value::Bool(a <= b);
  } else if (left.is_array() && right.is_array()) {
    if (op == "+") {
      RETURN_IF_ERROR(CheckItems(left.array().size() + right.array().size()));
      std::vector<Value> items = left.array();
      items.insert(items.end(), right.array().begin(), right.array().end());
      return Value::Array(std::move(items));
    }
  } else if (right.is_array()) {
    if (is_in) {
      bool member = false;
      for (const Value& e : right.array()) {
        if (StrictEquals(e, left)) {
          member = true;
          break;
        }
      }
      return Value::Bool(op == "in" ? member : !member);
    }
  }
  if ((left.is_string() || right.is_string()) && op == "+") {
    ASSIGN_OR_RETURN(std::string a, JsString(left));
    ASSIGN_OR_RETURN(std::string b, JsString(right));
    RETURN_IF_ERROR(CheckString(a.size() + b.size()));
    return Value::String(a + b);
  }
  if (left.is_string() && right.is_string() && is_in) {
    const bool found = right.str().find(left.str()) != std::string::npos;
    return Value::Bool(op == "in" ? found : !found);
  }
  if (left.is_string() && right.is_object() && is_in) {
    const bool found = right.object().Find(left.str()) != nullptr;
    return Value::Bool(op == "in" ? found : !found);
  }
  return unknown();
}

absl::StatusOr<Value> Interpreter::Eval(const Node& node, const EnvPtr& env) {
  if (++steps_ > options_.limits.max_steps) return RenderError("template exceeded its evaluation budget");
  switch (node.kind) {
    case NodeKind::kInt: return Value::Int(node.num);
    case NodeKind::kFloat: return Value::Float(node.num);
    case NodeKind::kString: return Value::String(node.text);
    case NodeKind::kArray:
    case NodeKind::kTuple: {
      std::vector<Value> items;
      for (const NodePtr& n : node.items) {
        ASSIGN_OR_RETURN(Value v, Eval(*n, env));
        items.push_back(std::move(v));
      }
      return Value::Array(std::move(items), node.kind == NodeKind::kTuple);
    }
    case NodeKind::kObject: {
      Object o;
      for (size_t i = 0; i < node.items.size(); ++i) {
        ASSIGN_OR_RETURN(Value k, Eval(*node.items[i], env));
        if (!k.is_string()) return RenderError(absl::StrCat("object keys must be strings: got ", TypeName(k)));
        ASSIGN_OR_RETURN(Value v, Eval(*node.values[i], env));
        o.Set(k.str(), std::move(v));
      }
      return Value::MakeObject(std::move(o));
    }
    case NodeKind::kIdent: return env->Lookup(node.text);
    case NodeKind::kMember: return EvalMember(node, env);
    case NodeKind::kCall: {
      ASSIGN_OR_RETURN(Args args, EvalArgs(node.items, env));
      ASSIGN_OR_RETURN(Value fn, Eval(*node.a, env));
      return CallFunction(fn, args, env);
    }
    case NodeKind::kUnary: {
      ASSIGN_OR_RETURN(Value v, Eval(*node.a, env));
      if (node.text == "not") return Value::Bool(!Truthy(v));
      const double sign = node.text == "-" ? -1 : 1;
      if (v.is_number())
        return v.kind() == Kind::kFloat ? Value::Float(sign * v.number()) : Value::Int(sign * v.number());
      if (v.kind() == Kind::kBool) return Value::Int(sign * (v.boolean() ? 1 : 0));
      return RenderError(absl::StrCat("unknown operator \"", node.text, "\" for ", TypeName(v)));
    }
    case NodeKind::kBinary: return EvalBinary(node, env);
    case NodeKind::kFilter: {
      ASSIGN_OR_RETURN(Value operand, Eval(*node.a, env));
      return ApplyFilter(operand, *node.b, env);
    }
    case NodeKind::kTest: {
      ASSIGN_OR_RETURN(Value operand, Eval(*node.a, env));
      ASSIGN_OR_RETURN(bool r, ApplyTest(node.text, operand, nullptr));
      return Value::Bool(node.flag ? !r : r);
    }
    case NodeKind::kSelect: {
      ASSIGN_OR_RETURN(Value keep, Eval(*node.b, env));
      if (!Truthy(keep)) return Value();
      return Eval(*node.a, env);
    }
    case NodeKind::kTernary: {
      ASSIGN_OR_RETURN(Value cond, Eval(*node.a, env));
      return Eval(Truthy(cond) ? *node.b : *node.c, env);
    }
    default: return RenderError("unexpected statement inside an expression");
  }
}

// ---- Template -----------------------------------------------------------------------------
absl::StatusOr<Template> Template::Parse(std::string_view source) {
  // node reads template files as UTF-8 with replacement; do the same with bad bytes.
  const std::string clean = IsValidUtf8(source) ? std::string(source) : SanitizeUtf8(source);
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(clean));
  ASSIGN_OR_RETURN(Body body, ParseTokens(tokens));
  Template t;
  t.body_ = std::make_shared<const Body>(std::move(body));
  return t;
}

absl::StatusOr<std::string> Template::Render(const std::vector<std::pair<std::string, Value>>& context,
                                             const RenderOptions& options) const {
  if (!body_) return absl::FailedPreconditionError("chat template: not parsed");
  Interpreter interpreter(options);
  auto root = std::make_shared<Env>();
  interpreter.InstallGlobals(*root);
  for (const auto& [name, value] : context) root->vars[name] = value;
  std::string out;
  absl::Status s = interpreter.EvalBlock(*body_, root, &out);
  if (IsBreak(s) || IsContinue(s)) return RenderError("break or continue outside of a loop");
  RETURN_IF_ERROR(s);
  return out;
}

}  // namespace accullm::text::jinja
