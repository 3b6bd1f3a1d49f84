// Jinja parser: recursive descent over the tokens, mirroring @huggingface/jinja's parse()
// (same precedence ladder: ternary < or < and < not < comparison/in < + - ~ < * / // % <
// ** < is-tests < |filters < unary sign < call/member < primary), so that the same
// templates parse and the same ones are rejected.
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "text/jinja_internal.h"

namespace accullm::text::jinja {
namespace {

// Deeper nesting than any real template needs; keeps recursion off the stack's edge.
constexpr int kMaxNesting = 64;

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : t_(tokens) {}

  absl::StatusOr<Body> Program() {
    Body body;
    while (cur_ < t_.size()) {
      ASSIGN_OR_RETURN(NodePtr n, Any());
      body.push_back(std::move(n));
    }
    return body;
  }

 private:
  // Counts nesting while alive; parsing fails past kMaxNesting.
  struct DepthGuard {
    explicit DepthGuard(Parser* p) : p(p) { ++p->depth_; }
    ~DepthGuard() { --p->depth_; }
    Parser* p;
  };

  absl::Status Error(std::string_view msg) const {
    const Token* t = cur_ < t_.size() ? &t_[cur_] : (t_.empty() ? nullptr : &t_.back());
    if (t == nullptr) return absl::InvalidArgumentError(absl::StrCat("chat template: ", std::string(msg)));
    return absl::InvalidArgumentError(
        absl::StrCat("chat template: line ", t->line, ", column ", t->col, ": ", std::string(msg)));
  }
  bool Is(Tok type) const { return cur_ < t_.size() && t_[cur_].type == type; }
  bool IsIdent(std::string_view name, size_t offset = 0) const {
    return cur_ + offset < t_.size() && t_[cur_ + offset].type == Tok::kIdent && t_[cur_ + offset].value == name;
  }
  bool IsStatement(std::initializer_list<std::string_view> names) const {
    if (!Is(Tok::kOpenStatement) || cur_ + 1 >= t_.size() || t_[cur_ + 1].type != Tok::kIdent) return false;
    for (auto n : names)
      if (t_[cur_ + 1].value == n) return true;
    return false;
  }
  absl::Status Expect(Tok type, std::string_view what) {
    if (cur_ >= t_.size()) return Error(absl::StrCat("unexpected end of template, expected ", std::string(what)));
    if (t_[cur_].type != type)
      return Error(absl::StrCat("expected ", std::string(what), ", got ", TokName(t_[cur_].type),
                                t_[cur_].type == Tok::kIdent ? absl::StrCat(" '", t_[cur_].value, "'") : ""));
    ++cur_;
    return absl::OkStatus();
  }
  absl::Status ExpectIdent(std::string_view name) {
    if (!IsIdent(name)) return Error(absl::StrCat("expected '", std::string(name), "'"));
    ++cur_;
    return absl::OkStatus();
  }
  absl::Status ExpectEnd(std::string_view name) {
    RETURN_IF_ERROR(Expect(Tok::kOpenStatement, absl::StrCat("{% ", std::string(name), " %}")));
    RETURN_IF_ERROR(ExpectIdent(name));
    return Expect(Tok::kCloseStatement, "'%}'");
  }
  NodePtr Make(NodeKind kind) const {
    auto n = std::make_shared<Node>();
    n->kind = kind;
    const Token* t = cur_ < t_.size() ? &t_[cur_] : (t_.empty() ? nullptr : &t_.back());
    n->line = t ? t->line : 0;
    return n;
  }
  // Parses statements until one of `names` opens; fails at the end of the template.
  absl::Status BodyUntil(std::initializer_list<std::string_view> names, Body* out, std::string_view opener) {
    while (!IsStatement(names)) {
      if (cur_ >= t_.size())
        return Error(absl::StrCat("unexpected end of template: unclosed {% ", std::string(opener), " %}"));
      ASSIGN_OR_RETURN(NodePtr n, Any());
      out->push_back(std::move(n));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<NodePtr> Any() {
    DepthGuard guard(this);
    if (depth_ > kMaxNesting) return Error("template nested too deeply");
    const Token& t = t_[cur_];
    switch (t.type) {
      case Tok::kComment: {
        auto n = Make(NodeKind::kComment);
        ++cur_;
        return n;
      }
      case Tok::kText: {
        auto n = Make(NodeKind::kString);
        n->text = t.value;
        ++cur_;
        return n;
      }
      case Tok::kOpenStatement: return Statement();
      case Tok::kOpenExpression: {
        ++cur_;
        ASSIGN_OR_RETURN(NodePtr e, Expression());
        RETURN_IF_ERROR(Expect(Tok::kCloseExpression, "'}}'"));
        return e;
      }
      default: return Error(absl::StrCat("unexpected ", TokName(t.type)));
    }
  }

  absl::StatusOr<NodePtr> Statement() {
    ++cur_;  // {%
    if (!Is(Tok::kIdent)) return Error("expected a statement name after '{%'");
    const std::string name = t_[cur_].value;
    if (name == "set") {
      ++cur_;
      return Set();
    }
    if (name == "if") {
      ++cur_;
      ASSIGN_OR_RETURN(NodePtr n, If());
      RETURN_IF_ERROR(ExpectEnd("endif"));
      return n;
    }
    if (name == "for") {
      ++cur_;
      ASSIGN_OR_RETURN(NodePtr n, For());
      RETURN_IF_ERROR(ExpectEnd("endfor"));
      return n;
    }
    if (name == "macro") {
      ++cur_;
      auto n = Make(NodeKind::kMacro);
      if (!Is(Tok::kIdent)) return Error("expected a macro name");
      n->text = t_[cur_++].value;
      ASSIGN_OR_RETURN(n->items, Arguments(/*parameters=*/true));
      RETURN_IF_ERROR(Expect(Tok::kCloseStatement, "'%}'"));
      RETURN_IF_ERROR(BodyUntil({"endmacro"}, &n->body, "macro"));
      RETURN_IF_ERROR(ExpectEnd("endmacro"));
      return n;
    }
    if (name == "call") {
      ++cur_;
      auto n = Make(NodeKind::kCallBlock);
      if (Is(Tok::kOpenParen)) {
        ASSIGN_OR_RETURN(n->items, Arguments(/*parameters=*/true));
        n->flag = true;
      }
      if (!Is(Tok::kIdent)) return Error("expected a macro name after 'call'");
      auto callee = Make(NodeKind::kIdent);
      callee->text = t_[cur_++].value;
      auto call = Make(NodeKind::kCall);
      call->a = callee;
      ASSIGN_OR_RETURN(call->items, Arguments(/*parameters=*/false));
      n->a = call;
      RETURN_IF_ERROR(Expect(Tok::kCloseStatement, "'%}'"));
      RETURN_IF_ERROR(BodyUntil({"endcall"}, &n->body, "call"));
      RETURN_IF_ERROR(ExpectEnd("endcall"));
      return n;
    }
    if (name == "filter") {
      ++cur_;
      auto n = Make(NodeKind::kFilterBlock);
      if (!Is(Tok::kIdent)) return Error("expected a filter name");
      ASSIGN_OR_RETURN(n->a, FilterName());
      RETURN_IF_ERROR(Expect(Tok::kCloseStatement, "'%}'"));
      RETURN_IF_ERROR(BodyUntil({"endfilter"}, &n->body, "filter"));
      RETURN_IF_ERROR(ExpectEnd("endfilter"));
      return n;
    }
    if (name == "break" || name == "continue") {
      ++cur_;
      auto n = Make(name == "break" ? NodeKind::kBreak : NodeKind::kContinue);
      RETURN_IF_ERROR(Expect(Tok::kCloseStatement, "'%}'"));
      return n;
    }
    return Error(absl::StrCat("unknown statement '", name, "'"));
  }

  absl::StatusOr<NodePtr> Set() {
    auto n = Make(NodeKind::kSet);
    ASSIGN_OR_RETURN(n->a, Sequence(false));
    if (Is(Tok::kEquals)) {
      ++cur_;
      ASSIGN_OR_RETURN(n->b, Sequence(false));
    } else {
      RETURN_IF_ERROR(Expect(Tok::kCloseStatement, "'%}' or '='"));
      RETURN_IF_ERROR(BodyUntil({"endset"}, &n->body, "set"));
      RETURN_IF_ERROR(Expect(Tok::kOpenStatement, "{% endset %}"));
      RETURN_IF_ERROR(ExpectIdent("endset"));
    }
    RETURN_IF_ERROR(Expect(Tok::kCloseStatement, "'%}'"));
    return n;
  }

  absl::StatusOr<NodePtr> If() {
    DepthGuard guard(this);
    if (depth_ > kMaxNesting) return Error("template nested too deeply");
    auto n = Make(NodeKind::kIf);
    ASSIGN_OR_RETURN(n->a, Expression());
    RETURN_IF_ERROR(Expect(Tok::kCloseStatement, "'%}'"));
    RETURN_IF_ERROR(BodyUntil({"elif", "else", "endif"}, &n->body, "if"));
    if (IsStatement({"elif"})) {
      cur_ += 2;
      ASSIGN_OR_RETURN(NodePtr elif, If());
      n->alt.push_back(std::move(elif));
    } else if (IsStatement({"else"})) {
      cur_ += 2;
      RETURN_IF_ERROR(Expect(Tok::kCloseStatement, "'%}'"));
      RETURN_IF_ERROR(BodyUntil({"endif"}, &n->alt, "if"));
    }
    return n;
  }

  absl::StatusOr<NodePtr> For() {
    auto n = Make(NodeKind::kFor);
    ASSIGN_OR_RETURN(n->a, Sequence(true));
    if (n->a->kind != NodeKind::kIdent && n->a->kind != NodeKind::kTuple)
      return Error("expected a loop variable or a tuple of them");
    if (!IsIdent("in")) return Error("expected 'in' after the loop variable");
    ++cur_;
    ASSIGN_OR_RETURN(n->b, Expression());
    RETURN_IF_ERROR(Expect(Tok::kCloseStatement, "'%}'"));
    RETURN_IF_ERROR(BodyUntil({"endfor", "else"}, &n->body, "for"));
    if (IsStatement({"else"})) {
      cur_ += 2;
      RETURN_IF_ERROR(Expect(Tok::kCloseStatement, "'%}'"));
      RETURN_IF_ERROR(BodyUntil({"endfor"}, &n->alt, "for"));
    }
    return n;
  }

  // a, b, c → tuple; a → a. `primary` for loop targets.
  absl::StatusOr<NodePtr> Sequence(bool primary) {
    auto first = primary ? Primary() : Expression();
    if (!first.ok()) return first.status();
    if (!Is(Tok::kComma)) return *first;
    auto tuple = Make(NodeKind::kTuple);
    tuple->items.push_back(*std::move(first));
    while (Is(Tok::kComma)) {
      ++cur_;
      auto next = primary ? Primary() : Expression();
      if (!next.ok()) return next.status();
      tuple->items.push_back(*std::move(next));
    }
    return tuple;
  }

  absl::StatusOr<NodePtr> Expression() {
    DepthGuard guard(this);
    if (depth_ > kMaxNesting) return Error("expression nested too deeply");
    return IfExpression();
  }

  absl::StatusOr<NodePtr> IfExpression() {
    ASSIGN_OR_RETURN(NodePtr a, Or());
    if (!IsIdent("if")) return a;
    ++cur_;
    ASSIGN_OR_RETURN(NodePtr test, Or());
    if (IsIdent("else")) {
      ++cur_;
      auto n = Make(NodeKind::kTernary);
      n->a = test;
      n->b = a;
      ASSIGN_OR_RETURN(n->c, IfExpression());
      return n;
    }
    auto n = Make(NodeKind::kSelect);  // `x if cond` (for-loop filter, or undefined)
    n->a = a;
    n->b = test;
    return n;
  }

  NodePtr Binary(std::string op, NodePtr a, NodePtr b) const {
    auto n = Make(NodeKind::kBinary);
    n->text = std::move(op);
    n->a = std::move(a);
    n->b = std::move(b);
    return n;
  }

  absl::StatusOr<NodePtr> Or() {
    ASSIGN_OR_RETURN(NodePtr left, And());
    while (IsIdent("or")) {
      ++cur_;
      ASSIGN_OR_RETURN(NodePtr right, And());
      left = Binary("or", left, right);
    }
    return left;
  }

  absl::StatusOr<NodePtr> And() {
    ASSIGN_OR_RETURN(NodePtr left, Not());
    while (IsIdent("and")) {
      ++cur_;
      ASSIGN_OR_RETURN(NodePtr right, Not());
      left = Binary("and", left, right);
    }
    return left;
  }

  absl::StatusOr<NodePtr> Not() {
    if (IsIdent("not")) {
      DepthGuard guard(this);
      if (depth_ > kMaxNesting) return Error("expression nested too deeply");
      ++cur_;
      auto n = Make(NodeKind::kUnary);
      n->text = "not";
      ASSIGN_OR_RETURN(n->a, Not());
      return n;
    }
    return Comparison();
  }

  absl::StatusOr<NodePtr> Comparison() {
    ASSIGN_OR_RETURN(NodePtr left, Additive());
    while (true) {
      std::string op;
      if (IsIdent("not") && IsIdent("in", 1)) {
        op = "not in";
        cur_ += 2;
      } else if (IsIdent("in")) {
        op = "in";
        ++cur_;
      } else if (Is(Tok::kComparison)) {
        op = t_[cur_++].value;
      } else {
        break;
      }
      ASSIGN_OR_RETURN(NodePtr right, Additive());
      left = Binary(op, left, right);
    }
    return left;
  }

  absl::StatusOr<NodePtr> Additive() {
    ASSIGN_OR_RETURN(NodePtr left, Multiplicative());
    while (Is(Tok::kAdditive)) {
      std::string op = t_[cur_++].value;
      ASSIGN_OR_RETURN(NodePtr right, Multiplicative());
      left = Binary(op, left, right);
    }
    return left;
  }

  absl::StatusOr<NodePtr> Multiplicative() {
    ASSIGN_OR_RETURN(NodePtr left, Power());
    while (Is(Tok::kMultiplicative)) {
      std::string op = t_[cur_++].value;
      ASSIGN_OR_RETURN(NodePtr right, Power());
      left = Binary(op, left, right);
    }
    return left;
  }

  absl::StatusOr<NodePtr> Power() {  // left-associative, as in Jinja
    ASSIGN_OR_RETURN(NodePtr left, Test());
    while (Is(Tok::kPower)) {
      ++cur_;
      ASSIGN_OR_RETURN(NodePtr right, Test());
      left = Binary("**", left, right);
    }
    return left;
  }

  absl::StatusOr<NodePtr> Test() {
    ASSIGN_OR_RETURN(NodePtr operand, Filter());
    while (IsIdent("is")) {
      ++cur_;
      auto n = Make(NodeKind::kTest);
      if (IsIdent("not")) {
        n->flag = true;
        ++cur_;
      }
      if (!Is(Tok::kIdent)) return Error("expected a test name after 'is'");
      n->text = t_[cur_++].value;
      n->a = operand;
      operand = n;
    }
    return operand;
  }

  absl::StatusOr<NodePtr> FilterName() {
    auto id = Make(NodeKind::kIdent);
    id->text = t_[cur_++].value;
    if (!Is(Tok::kOpenParen)) return id;
    auto call = Make(NodeKind::kCall);
    call->a = id;
    ASSIGN_OR_RETURN(call->items, Arguments(false));
    return call;
  }

  absl::StatusOr<NodePtr> Filter() {
    ASSIGN_OR_RETURN(NodePtr operand, UnarySign());
    while (Is(Tok::kPipe)) {
      ++cur_;
      if (!Is(Tok::kIdent)) return Error("expected a filter name after '|'");
      auto n = Make(NodeKind::kFilter);
      n->a = operand;
      ASSIGN_OR_RETURN(n->b, FilterName());
      operand = n;
    }
    return operand;
  }

  absl::StatusOr<NodePtr> UnarySign() {
    if ((Is(Tok::kUnary) || Is(Tok::kAdditive)) && (t_[cur_].value == "-" || t_[cur_].value == "+")) {
      DepthGuard guard(this);
      if (depth_ > kMaxNesting) return Error("expression nested too deeply");
      auto n = Make(NodeKind::kUnary);
      n->text = t_[cur_++].value;
      ASSIGN_OR_RETURN(n->a, UnarySign());
      return n;
    }
    return CallMember();
  }

  absl::StatusOr<NodePtr> CallMember() {
    ASSIGN_OR_RETURN(NodePtr primary, Primary());
    ASSIGN_OR_RETURN(NodePtr member, Member(primary));
    while (Is(Tok::kOpenParen)) {
      auto call = Make(NodeKind::kCall);
      call->a = member;
      ASSIGN_OR_RETURN(call->items, Arguments(false));
      ASSIGN_OR_RETURN(member, Member(call));
    }
    return member;
  }

  absl::StatusOr<NodePtr> Member(NodePtr object) {
    while (Is(Tok::kDot) || Is(Tok::kOpenSquare)) {
      const bool computed = Is(Tok::kOpenSquare);
      ++cur_;
      auto n = Make(NodeKind::kMember);
      n->a = object;
      n->flag = computed;
      if (computed) {
        ASSIGN_OR_RETURN(n->b, Subscript());
        RETURN_IF_ERROR(Expect(Tok::kCloseSquare, "']'"));
      } else {
        if (!Is(Tok::kIdent) && !Is(Tok::kNumber)) return Error("expected a name after '.'");
        ASSIGN_OR_RETURN(n->b, Primary());
        if (n->b->kind != NodeKind::kIdent && n->b->kind != NodeKind::kInt)
          return Error("expected a name or an integer after '.'");
      }
      object = n;
    }
    return object;
  }

  // [expr] or a slice [a:b:c] with any part left out.
  absl::StatusOr<NodePtr> Subscript() {
    std::vector<NodePtr> parts;
    bool slice = false;
    while (!Is(Tok::kCloseSquare)) {
      if (cur_ >= t_.size()) return Error("unexpected end of template inside '[...]'");
      if (Is(Tok::kColon)) {
        parts.push_back(nullptr);
        ++cur_;
        slice = true;
      } else {
        ASSIGN_OR_RETURN(NodePtr e, Expression());
        parts.push_back(std::move(e));
        if (Is(Tok::kColon)) {
          ++cur_;
          slice = true;
        }
      }
    }
    if (parts.empty()) return Error("expected an index or a slice inside '[]'");
    if (!slice) return parts[0];
    if (parts.size() > 3) return Error("a slice takes at most 3 parts");
    auto n = Make(NodeKind::kSlice);
    n->a = parts[0];
    if (parts.size() > 1) n->b = parts[1];
    if (parts.size() > 2) n->c = parts[2];
    return n;
  }

  // (args): call arguments, or macro parameters (names with optional defaults).
  absl::StatusOr<std::vector<NodePtr>> Arguments(bool parameters) {
    RETURN_IF_ERROR(Expect(Tok::kOpenParen, "'('"));
    std::vector<NodePtr> args;
    absl::flat_hash_set<std::string> names;
    bool saw_keyword = false, saw_spread = false;
    while (!Is(Tok::kCloseParen)) {
      if (cur_ >= t_.size()) return Error("unexpected end of template inside an argument list");
      const bool kw_spread = Is(Tok::kPower);
      const bool spread = Is(Tok::kMultiplicative) && t_[cur_].value == "*";
      if (parameters && (kw_spread || spread)) return Error("argument unpacking is not allowed in parameters");
      if (kw_spread) {
        ++cur_;
        auto n = Make(NodeKind::kKwSpread);
        ASSIGN_OR_RETURN(n->a, Expression());
        args.push_back(n);
        if (Is(Tok::kComma)) ++cur_;
        if (!Is(Tok::kCloseParen)) return Error("'**' must be applied to the last argument");
        break;
      }
      NodePtr arg;
      if (spread) {
        if (saw_spread) return Error("only one '*' argument unpacking is allowed");
        saw_spread = true;
        ++cur_;
        arg = Make(NodeKind::kSpread);
        ASSIGN_OR_RETURN(arg->a, Expression());
      } else {
        ASSIGN_OR_RETURN(arg, Expression());
        if (Is(Tok::kEquals)) {
          ++cur_;
          if (arg->kind != NodeKind::kIdent)
            return Error(parameters ? "expected a parameter name" : "expected a keyword argument name");
          auto kw = Make(NodeKind::kKwarg);
          kw->text = arg->text;
          ASSIGN_OR_RETURN(kw->a, Expression());
          arg = kw;
        }
        if (parameters) {
          if (arg->kind != NodeKind::kIdent && arg->kind != NodeKind::kKwarg) return Error("expected a parameter name");
          if (!names.insert(arg->text).second) return Error(absl::StrCat("duplicate parameter '", arg->text, "'"));
        }
        if (arg->kind == NodeKind::kKwarg) {
          saw_keyword = true;
        } else if (saw_keyword) {
          return Error(parameters ? "non-default parameter follows a default one"
                                  : "positional argument follows a keyword argument");
        } else if (saw_spread) {
          return Error("positional argument follows '*' unpacking");
        }
      }
      args.push_back(std::move(arg));
      if (Is(Tok::kComma)) ++cur_;
    }
    RETURN_IF_ERROR(Expect(Tok::kCloseParen, "')'"));
    return args;
  }

  absl::StatusOr<NodePtr> Primary() {
    DepthGuard guard(this);
    if (depth_ > kMaxNesting) return Error("expression nested too deeply");
    if (cur_ >= t_.size()) return Error("unexpected end of template in an expression");
    const Token& t = t_[cur_++];
    switch (t.type) {
      case Tok::kNumber: {
        const bool is_float = t.value.find('.') != std::string::npos;
        auto n = Make(is_float ? NodeKind::kFloat : NodeKind::kInt);
        n->num = std::strtod(t.value.c_str(), nullptr);
        return n;
      }
      case Tok::kString: {
        auto n = Make(NodeKind::kString);
        n->text = t.value;
        while (Is(Tok::kString)) n->text += t_[cur_++].value;  // 'a' 'b' is 'ab'
        return n;
      }
      case Tok::kIdent: {
        auto n = Make(NodeKind::kIdent);
        n->text = t.value;
        return n;
      }
      case Tok::kOpenParen: {
        ASSIGN_OR_RETURN(NodePtr e, Sequence(false));
        RETURN_IF_ERROR(Expect(Tok::kCloseParen, "')'"));
        return e;
      }
      case Tok::kOpenSquare: {
        auto n = Make(NodeKind::kArray);
        while (!Is(Tok::kCloseSquare)) {
          if (cur_ >= t_.size()) return Error("unexpected end of template inside a list");
          ASSIGN_OR_RETURN(NodePtr e, Expression());
          n->items.push_back(std::move(e));
          if (Is(Tok::kComma)) ++cur_;
        }
        ++cur_;
        return n;
      }
      case Tok::kOpenCurly: {
        auto n = Make(NodeKind::kObject);
        while (!Is(Tok::kCloseCurly)) {
          if (cur_ >= t_.size()) return Error("unexpected end of template inside a dict");
          ASSIGN_OR_RETURN(NodePtr k, Expression());
          RETURN_IF_ERROR(Expect(Tok::kColon, "':' between key and value"));
          ASSIGN_OR_RETURN(NodePtr v, Expression());
          n->items.push_back(std::move(k));
          n->values.push_back(std::move(v));
          if (Is(Tok::kComma)) ++cur_;
        }
        ++cur_;
        return n;
      }
      default: --cur_; return Error(absl::StrCat("unexpected ", TokName(t.type), " in an expression"));
    }
  }

  const std::vector<Token>& t_;
  size_t cur_ = 0;
  int depth_ = 0;
};

}  // namespace

absl::StatusOr<Body> ParseTokens(const std::vector<Token>& tokens) {
  Parser parser(tokens);
  return parser.Program();
}

}  // namespace accullm::text::jinja
