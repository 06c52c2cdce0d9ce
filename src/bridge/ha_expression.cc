// HaExpression: the Jinja that Home Assistant value templates use beyond
// arithmetic on one number (bridge/ha_template.h), parsed into a tree and
// evaluated with Python's semantics for each value.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "bridge/ha_template.h"
#include "wire/input.h"

namespace komoku::bridge {

using Kind = TemplateValue::Kind;

struct HaExpression::Node {
  enum class Op {
    kConstant,  // value
    kInput,     // what `value` or the one field reads
    kBody,      // args rendered and joined (a lone one stays native)
    kChoose,    // args[0] ? args[1] : args[2] (absent: undefined)
    kAnd,
    kOr,
    kNot,
    kNegate,
    kBinary,  // name: + - * / // % ** ~ == != < > <= >=
    kFilter,  // name: float int round abs default lower upper trim string
    kTest,    // name: defined undefined none number string
  };
  Op op = Op::kConstant;
  std::string name;
  TemplateValue value;
  std::vector<std::shared_ptr<const Node>> args;
};

namespace {

using Node = HaExpression::Node;
using NodePtr = std::shared_ptr<const Node>;

NodePtr Make(Node::Op op, std::string name, std::vector<NodePtr> args) {
  auto n = std::make_shared<Node>();
  n->op = op;
  n->name = std::move(name);
  n->args = std::move(args);
  return n;
}

NodePtr Constant(TemplateValue v) {
  auto n = std::make_shared<Node>();
  n->value = std::move(v);
  return n;
}

const char* TypeName(const TemplateValue& v) {
  switch (v.kind) {
    case Kind::kUndefined:
      return "undefined";
    case Kind::kNone:
      return "none";
    case Kind::kBool:
      return "a boolean";
    case Kind::kInt:
    case Kind::kFloat:
      return "a number";
    case Kind::kString:
      return "text";
  }
  return "?";
}

bool Truthy(const TemplateValue& v) {
  switch (v.kind) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
    case Kind::kInt:
    case Kind::kFloat:
      return v.number != 0;
    case Kind::kString:
      return !v.text.empty();
  }
  return false;
}

Status Fails(const std::string& why) { return Status::InvalidArgument(why); }

// Python's float(text): surrounding blanks allowed, the whole rest a number
// (inf and nan included; they are refused when stored).
std::optional<double> PythonFloat(std::string_view s) {
  const std::string text(store::TrimAscii(s));
  if (text.empty() || text.find_first_of("xXpP") != std::string::npos) return std::nullopt;
  char* end = nullptr;
  const double d = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return std::nullopt;
  return d;
}

std::optional<double> ToFloat(const TemplateValue& v) {
  if (v.is_number()) return v.number;
  if (v.kind == Kind::kString) return PythonFloat(v.text);
  return std::nullopt;
}

bool Equal(const TemplateValue& a, const TemplateValue& b) {
  if (a.is_number() && b.is_number()) return a.number == b.number;
  if (a.kind != b.kind) return false;
  return a.kind != Kind::kString || a.text == b.text;
}

TemplateValue NumberResult(const TemplateValue& a, const TemplateValue& b, double x) {
  const bool ints = a.kind != Kind::kFloat && b.kind != Kind::kFloat;
  return ints ? TemplateValue::Int(x) : TemplateValue::Float(x);
}

Result<TemplateValue> Binary(const std::string& op, const TemplateValue& a,
                             const TemplateValue& b) {
  if (op == "==") return TemplateValue::Bool(Equal(a, b));
  if (op == "!=") return TemplateValue::Bool(!Equal(a, b));
  if (op == "~") return TemplateValue::String(RenderTemplateValue(a) + RenderTemplateValue(b));
  if (op == "<" || op == ">" || op == "<=" || op == ">=") {
    int order;
    if (a.is_number() && b.is_number()) {
      if (std::isnan(a.number) || std::isnan(b.number)) return TemplateValue::Bool(false);
      order = a.number < b.number ? -1 : a.number > b.number ? 1 : 0;
    } else if (a.kind == Kind::kString && b.kind == Kind::kString) {
      order = a.text.compare(b.text);  // UTF-8 bytes sort as code points
    } else {
      return Fails(std::string("compares ") + TypeName(a) + " with " + TypeName(b) + " (" + op +
                   ")");
    }
    const bool r = op == "<"    ? order < 0
                   : op == ">"  ? order > 0
                   : op == "<=" ? order <= 0
                                : order >= 0;
    return TemplateValue::Bool(r);
  }
  if (op == "+" && a.kind == Kind::kString && b.kind == Kind::kString) {
    return TemplateValue::String(a.text + b.text);
  }
  if (!a.is_number() || !b.is_number()) {
    return Fails(std::string("computes ") + TypeName(a) + " " + op + " " + TypeName(b) +
                 " (a value that is no number needs | float first)");
  }
  const double x = a.number, y = b.number;
  if (op == "+") return NumberResult(a, b, x + y);
  if (op == "-") return NumberResult(a, b, x - y);
  if (op == "*") return NumberResult(a, b, x * y);
  if ((op == "/" || op == "//" || op == "%") && y == 0) return Fails("divides by zero");
  if (op == "/") return TemplateValue::Float(x / y);
  if (op == "//") return NumberResult(a, b, std::floor(x / y));
  if (op == "%") {
    double m = std::fmod(x, y);
    if (m != 0 && ((m < 0) != (y < 0))) m += y;  // Python: the sign of the divisor
    return NumberResult(a, b, m);
  }
  // "**": an int to a negative power is a float in Python.
  const TemplateValue r = NumberResult(a, b, std::pow(x, y));
  return y < 0 ? TemplateValue::Float(r.number) : r;
}

// The argument `i` of a filter node, or `fallback` when not given.
Result<TemplateValue> Evaluate(const Node& n, const TemplateValue& input);

Result<TemplateValue> Filter(const Node& n, const TemplateValue& x, const TemplateValue& input) {
  std::vector<TemplateValue> args;
  for (size_t i = 1; i < n.args.size(); ++i) {
    Result<TemplateValue> a = Evaluate(*n.args[i], input);
    if (!a.ok()) return a;
    args.push_back(std::move(*a));
  }
  const std::string& f = n.name;
  if (f == "float" || f == "int") {
    std::optional<double> d = ToFloat(x);
    if (d && f == "int") {
      if (!std::isfinite(*d))
        d.reset();  // Python: int(inf) fails
      else
        d = std::trunc(*d);
    }
    if (!d) {
      if (!args.empty()) return args[0];
      return Fails(f + " of " + TypeName(x) + " '" + RenderTemplateValue(x) +
                   "' without a default (Home Assistant fails there too)");
    }
    return f == "int" ? TemplateValue::Int(*d) : TemplateValue::Float(*d);
  }
  if (f == "round") {
    // Home Assistant's round: float() first; an int for precision 0.
    std::optional<double> d = ToFloat(x);
    if (!d)
      return Fails("round of " + std::string(TypeName(x)) + " '" + RenderTemplateValue(x) + "'");
    int digits = 0;
    if (!args.empty()) {
      if (args[0].kind != Kind::kInt || args[0].number < 0 || args[0].number > 15) {
        return Fails("round's precision is not 0 to 15");
      }
      digits = static_cast<int>(args[0].number);
    }
    NumberOp op{NumberOp::Kind::kRound};
    op.digits = digits;
    if (args.size() > 1) {
      const std::string& m = args[1].text;
      if (m == "floor") {
        op.kind = NumberOp::Kind::kFloor;
      } else if (m == "ceil") {
        op.kind = NumberOp::Kind::kCeil;
      } else if (m != "common" || args[1].kind != Kind::kString) {
        return Fails("round's method '" + m + "' is not common, floor or ceil");
      }
    }
    Result<double> r = ApplyNumberOps({op}, *d);
    if (!r.ok()) return r.status();
    return digits == 0 ? TemplateValue::Int(*r) : TemplateValue::Float(*r);
  }
  if (f == "abs") {
    if (!x.is_number()) return Fails(std::string("abs of ") + TypeName(x));
    return NumberResult(x, x, std::fabs(x.number));
  }
  if (f == "default" || f == "d") {
    const bool falsy_too = args.size() > 1 && Truthy(args[1]);
    if (x.kind == Kind::kUndefined || (falsy_too && !Truthy(x))) {
      return args.empty() ? TemplateValue::String("") : args[0];
    }
    return x;
  }
  if (f == "string") return TemplateValue::String(RenderTemplateValue(x));
  // lower, upper, trim: text.
  std::string s = RenderTemplateValue(x);
  if (f == "trim") return TemplateValue::String(std::string(store::TrimAscii(s)));
  for (char& c : s) {
    c = static_cast<char>(f == "lower" ? std::tolower(static_cast<unsigned char>(c))
                                       : std::toupper(static_cast<unsigned char>(c)));
  }
  return TemplateValue::String(std::move(s));
}

Result<TemplateValue> Evaluate(const Node& n, const TemplateValue& input) {
  using Op = Node::Op;
  switch (n.op) {
    case Op::kConstant:
      return n.value;
    case Op::kInput:
      return input;
    case Op::kBody: {
      std::vector<TemplateValue> parts;
      for (const NodePtr& a : n.args) {
        Result<TemplateValue> v = Evaluate(*a, input);
        if (!v.ok()) return v;
        // Blank text between blocks, and a branch that rendered nothing,
        // leave a lone value native.
        if (v->kind == Kind::kUndefined) continue;
        if (v->kind == Kind::kString && store::TrimAscii(v->text).empty()) continue;
        parts.push_back(std::move(*v));
      }
      if (parts.empty()) return TemplateValue::String("");
      if (parts.size() == 1 && parts[0].kind != Kind::kString) return parts[0];
      std::string text;
      for (const TemplateValue& p : parts) text += RenderTemplateValue(p);
      return TemplateValue::String(std::string(store::TrimAscii(text)));
    }
    case Op::kChoose: {
      Result<TemplateValue> c = Evaluate(*n.args[0], input);
      if (!c.ok()) return c;
      if (Truthy(*c)) return Evaluate(*n.args[1], input);
      if (n.args.size() > 2) return Evaluate(*n.args[2], input);
      return TemplateValue::Undefined();
    }
    case Op::kAnd:
    case Op::kOr: {
      Result<TemplateValue> a = Evaluate(*n.args[0], input);
      if (!a.ok()) return a;
      if (Truthy(*a) == (n.op == Op::kOr)) return a;
      return Evaluate(*n.args[1], input);
    }
    case Op::kNot: {
      Result<TemplateValue> a = Evaluate(*n.args[0], input);
      if (!a.ok()) return a;
      return TemplateValue::Bool(!Truthy(*a));
    }
    case Op::kNegate: {
      Result<TemplateValue> a = Evaluate(*n.args[0], input);
      if (!a.ok()) return a;
      if (!a->is_number()) return Fails(std::string("negates ") + TypeName(*a));
      return NumberResult(*a, *a, -a->number);
    }
    case Op::kBinary: {
      // Comparisons chain (a < b < c): args[0] op args[1], then args[1] ...
      Result<TemplateValue> a = Evaluate(*n.args[0], input);
      if (!a.ok()) return a;
      Result<TemplateValue> b = Evaluate(*n.args[1], input);
      if (!b.ok()) return b;
      return Binary(n.name, *a, *b);
    }
    case Op::kFilter: {
      Result<TemplateValue> x = Evaluate(*n.args[0], input);
      if (!x.ok()) return x;
      return Filter(n, *x, input);
    }
    case Op::kTest: {
      Result<TemplateValue> x = Evaluate(*n.args[0], input);
      if (!x.ok()) return x;
      bool r = false;
      if (n.name == "defined") r = x->kind != Kind::kUndefined;
      if (n.name == "undefined") r = x->kind == Kind::kUndefined;
      if (n.name == "none") r = x->kind == Kind::kNone;
      if (n.name == "number") r = x->is_number();
      if (n.name == "string") r = x->kind == Kind::kString;
      return TemplateValue::Bool(r);
    }
  }
  return Fails("has a node Komoku cannot evaluate");
}

// ---- Parsing ----

struct Token {
  enum class Type { kName, kNumber, kString, kOp, kEnd };
  Type type = Type::kEnd;
  std::string text;
  double number = 0;
  bool integer = false;
};

Result<std::vector<Token>> Lex(std::string_view e) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < e.size()) {
    const unsigned char c = static_cast<unsigned char>(e[i]);
    if (std::isspace(c)) {
      ++i;
      continue;
    }
    Token t;
    if (std::isalpha(c) || c == '_') {
      size_t start = i;
      while (i < e.size() && (std::isalnum(static_cast<unsigned char>(e[i])) || e[i] == '_')) ++i;
      t.type = Token::Type::kName;
      t.text = std::string(e.substr(start, i - start));
    } else if (std::isdigit(c) || (c == '.' && i + 1 < e.size() &&
                                   std::isdigit(static_cast<unsigned char>(e[i + 1])))) {
      size_t start = i;
      while (i < e.size() &&
             (std::isalnum(static_cast<unsigned char>(e[i])) || e[i] == '.' || e[i] == '_' ||
              ((e[i] == '+' || e[i] == '-') && (e[i - 1] == 'e' || e[i - 1] == 'E')))) {
        ++i;
      }
      std::string text;
      for (char ch : e.substr(start, i - start)) {
        if (ch != '_') text += ch;
      }
      char* end = nullptr;
      t.type = Token::Type::kNumber;
      t.number = std::strtod(text.c_str(), &end);
      t.integer = text.find_first_of(".eE") == std::string::npos;
      if (end != text.c_str() + text.size() || !std::isfinite(t.number)) {
        return Fails("has the number '" + std::string(e.substr(start, i - start)) +
                     "' it cannot read");
      }
      t.text = std::move(text);
    } else if (c == '\'' || c == '"') {
      ++i;
      std::string s;
      for (;;) {
        if (i >= e.size()) return Fails("has an unclosed quote");
        if (e[i] == static_cast<char>(c)) break;
        if (e[i] == '\\' && i + 1 < e.size()) {
          const char x = e[++i];
          s += x == 'n' ? '\n' : x == 't' ? '\t' : x;
        } else {
          s += e[i];
        }
        ++i;
      }
      ++i;
      t.type = Token::Type::kString;
      t.text = std::move(s);
    } else {
      static const char* const kOps[] = {"==", "!=", "<=", ">=", "//", "**", "<", ">", "+",
                                         "-",  "*",  "/",  "%",  "~",  "|",  "(", ")", "[",
                                         "]",  ".",  ",",  ":",  "{",  "}",  "="};
      t.type = Token::Type::kOp;
      for (const char* op : kOps) {
        if (e.substr(i, std::char_traits<char>::length(op)) == op) {
          t.text = op;
          break;
        }
      }
      if (t.text.empty()) return Fails("has '" + std::string(1, e[i]) + "' it cannot read");
      i += t.text.size();
    }
    out.push_back(std::move(t));
  }
  out.push_back(Token{});
  return out;
}

// What the template reads: `value`, or one field of value_json.
struct Reads {
  bool any = false;
  bool value = false;
  std::vector<std::string> path;
  bool missing = false;  // tests for the field missing (is defined, default)
};

class ExpressionParser {
 public:
  ExpressionParser(std::vector<Token> tokens, Reads* reads)
      : t_(std::move(tokens)), reads_(reads) {}

  Result<NodePtr> Whole() {
    Result<NodePtr> n = CondExpr();
    if (!n.ok()) return n;
    if (Peek().type != Token::Type::kEnd) return Fails("has '" + Peek().text + "' it cannot read");
    return n;
  }

 private:
  const Token& Peek(size_t ahead = 0) const { return t_[std::min(i_ + ahead, t_.size() - 1)]; }
  bool IsOp(const char* op, size_t ahead = 0) const {
    return Peek(ahead).type == Token::Type::kOp && Peek(ahead).text == op;
  }
  bool IsName(const char* name) const {
    return Peek().type == Token::Type::kName && Peek().text == name;
  }
  bool EatOp(const char* op) {
    if (!IsOp(op)) return false;
    ++i_;
    return true;
  }
  bool EatName(const char* name) {
    if (!IsName(name)) return false;
    ++i_;
    return true;
  }

  // condexpr := or ('if' or ('else' condexpr)?)?
  Result<NodePtr> CondExpr() {
    Result<NodePtr> then = Or();
    if (!then.ok() || !EatName("if")) return then;
    Result<NodePtr> cond = Or();
    if (!cond.ok()) return cond;
    std::vector<NodePtr> args = {*cond, *then};
    if (EatName("else")) {
      Result<NodePtr> other = CondExpr();
      if (!other.ok()) return other;
      args.push_back(*other);
    }
    return Make(Node::Op::kChoose, "", std::move(args));
  }

  Result<NodePtr> Or() {
    Result<NodePtr> left = And();
    while (left.ok() && EatName("or")) {
      Result<NodePtr> right = And();
      if (!right.ok()) return right;
      left = Make(Node::Op::kOr, "", {*left, *right});
    }
    return left;
  }

  Result<NodePtr> And() {
    Result<NodePtr> left = Not();
    while (left.ok() && EatName("and")) {
      Result<NodePtr> right = Not();
      if (!right.ok()) return right;
      left = Make(Node::Op::kAnd, "", {*left, *right});
    }
    return left;
  }

  Result<NodePtr> Not() {
    if (IsName("not") && !(Peek(1).type == Token::Type::kName && Peek(1).text == "in")) {
      ++i_;
      Result<NodePtr> x = Not();
      if (!x.ok()) return x;
      return Make(Node::Op::kNot, "", {*x});
    }
    return Compare();
  }

  // compare := math1 (op math1)*; a < b < c is (a < b) and (b < c).
  Result<NodePtr> Compare() {
    Result<NodePtr> left = Math1();
    if (!left.ok()) return left;
    NodePtr result;
    NodePtr previous = *left;
    for (;;) {
      static const char* const kCompare[] = {"==", "!=", "<=", ">=", "<", ">"};
      const char* op = nullptr;
      for (const char* c : kCompare) {
        if (IsOp(c)) op = c;
      }
      if (!op) {
        if (IsName("in") || IsName("not")) return Fails("has 'in', which Komoku does not evaluate");
        break;
      }
      ++i_;
      Result<NodePtr> right = Math1();
      if (!right.ok()) return right;
      NodePtr cmp = Make(Node::Op::kBinary, op, {previous, *right});
      result = result ? Make(Node::Op::kAnd, "", {result, cmp}) : cmp;
      previous = *right;
    }
    return result ? result : previous;
  }

  Result<NodePtr> Math1() {
    Result<NodePtr> left = Concat();
    while (left.ok() && (IsOp("+") || IsOp("-"))) {
      const std::string op = Peek().text;
      ++i_;
      Result<NodePtr> right = Concat();
      if (!right.ok()) return right;
      left = Make(Node::Op::kBinary, op, {*left, *right});
    }
    return left;
  }

  Result<NodePtr> Concat() {
    Result<NodePtr> left = Math2();
    while (left.ok() && EatOp("~")) {
      Result<NodePtr> right = Math2();
      if (!right.ok()) return right;
      left = Make(Node::Op::kBinary, "~", {*left, *right});
    }
    return left;
  }

  Result<NodePtr> Math2() {
    Result<NodePtr> left = Pow();
    while (left.ok() && (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%"))) {
      const std::string op = Peek().text;
      ++i_;
      Result<NodePtr> right = Pow();
      if (!right.ok()) return right;
      left = Make(Node::Op::kBinary, op, {*left, *right});
    }
    return left;
  }

  Result<NodePtr> Pow() {
    Result<NodePtr> left = Unary(true);
    while (left.ok() && EatOp("**")) {
      Result<NodePtr> right = Unary(true);
      if (!right.ok()) return right;
      left = Make(Node::Op::kBinary, "**", {*left, *right});
    }
    return left;
  }

  // As Jinja: `-x|abs` is (-x)|abs.
  Result<NodePtr> Unary(bool with_filter) {
    Result<NodePtr> x = Status::Ok();
    if (EatOp("-")) {
      x = Unary(false);
      if (x.ok()) x = Make(Node::Op::kNegate, "", {*x});
    } else if (EatOp("+")) {
      x = Unary(false);
    } else {
      x = Primary();
    }
    if (!x.ok() || !with_filter) return x;
    return Postfix(std::move(*x));
  }

  // Filters and tests: x | f(args) ...; x is [not] test.
  Result<NodePtr> Postfix(NodePtr x) {
    for (;;) {
      if (EatOp("|")) {
        if (Peek().type != Token::Type::kName) return Fails("has a '|' without a filter name");
        const std::string f = Peek().text;
        ++i_;
        static const char* const kFilters[] = {"float", "int",   "round", "abs",  "default",
                                               "d",     "lower", "upper", "trim", "string"};
        bool known = false;
        for (const char* k : kFilters) known = known || f == k;
        if (!known) {
          return Fails("has the filter '" + f +
                       "', which Komoku does not evaluate (it evaluates float, int, round, abs, "
                       "default, lower, upper, trim and string)");
        }
        std::vector<NodePtr> args = {x};
        if (EatOp("(")) {
          Result<std::vector<NodePtr>> more = Arguments();
          if (!more.ok()) return more.status();
          for (NodePtr& a : *more) args.push_back(std::move(a));
        }
        if ((f == "default" || f == "d") && IsInput(*x)) reads_->missing = true;
        x = Make(Node::Op::kFilter, f, std::move(args));
      } else if (EatName("is")) {
        const bool negate = EatName("not");
        if (Peek().type != Token::Type::kName) return Fails("has 'is' without a test name");
        const std::string test = Peek().text;
        ++i_;
        if (test != "defined" && test != "undefined" && test != "none" && test != "number" &&
            test != "string") {
          return Fails("has the test 'is " + test +
                       "', which Komoku does not evaluate (it evaluates defined, undefined, none, "
                       "number and string)");
        }
        if ((test == "defined" || test == "undefined") && IsInput(*x)) reads_->missing = true;
        x = Make(Node::Op::kTest, test, {x});
        if (negate) x = Make(Node::Op::kNot, "", {x});
      } else {
        return x;
      }
    }
  }

  static bool IsInput(const Node& n) { return n.op == Node::Op::kInput; }

  // After '(': expressions up to ')'.
  Result<std::vector<NodePtr>> Arguments() {
    std::vector<NodePtr> args;
    if (EatOp(")")) return args;
    for (;;) {
      if (Peek().type == Token::Type::kName && IsOp("=", 1)) {
        return Fails("has a keyword argument '" + Peek().text + "=', which Komoku does not read");
      }
      Result<NodePtr> a = CondExpr();
      if (!a.ok()) return a.status();
      args.push_back(std::move(*a));
      if (EatOp(")")) return args;
      if (!EatOp(",")) return Fails("has an unclosed (");
    }
  }

  Result<NodePtr> Primary() {
    const Token t = Peek();
    if (t.type == Token::Type::kEnd) return Fails("ends where a value should be");
    ++i_;
    switch (t.type) {
      case Token::Type::kNumber:
        return Constant(t.integer ? TemplateValue::Int(t.number) : TemplateValue::Float(t.number));
      case Token::Type::kString: {
        std::string s = t.text;
        while (Peek().type == Token::Type::kString) s += t_[i_++].text;  // 'a' 'b' is 'ab'
        return Constant(TemplateValue::String(std::move(s)));
      }
      case Token::Type::kOp:
        if (t.text == "(") {
          Result<NodePtr> x = CondExpr();
          if (!x.ok()) return x;
          if (!EatOp(")")) return Fails("has an unclosed ( or a tuple, which Komoku does not read");
          return x;
        }
        if (t.text == "[" || t.text == "{") {
          return Fails("has a list or dict, which Komoku does not evaluate");
        }
        return Fails("has '" + t.text + "' where a value should be");
      default:
        break;
    }
    const std::string& name = t.text;
    if (name == "true" || name == "True") return Constant(TemplateValue::Bool(true));
    if (name == "false" || name == "False") return Constant(TemplateValue::Bool(false));
    if (name == "none" || name == "None") return Constant(TemplateValue::None());
    if (name == "value") return Input(true, {});
    if (name == "value_json") {
      std::vector<std::string> path;
      for (;;) {
        if (IsOp(".") && Peek(1).type == Token::Type::kName) {
          path.push_back(Peek(1).text);
          i_ += 2;
        } else if (IsOp("[") && Peek(1).type == Token::Type::kString && IsOp("]", 2)) {
          if (Peek(1).text.empty()) return Fails("has an empty field name");
          path.push_back(Peek(1).text);
          i_ += 3;
        } else if (IsOp("[")) {
          return Fails("indexes value_json with something other than a quoted field name");
        } else {
          break;
        }
      }
      if (path.empty()) return Fails("reads the whole JSON document, not a field");
      if (IsOp("(")) return Fails("calls a method of the field, which Komoku does not evaluate");
      return Input(false, std::move(path));
    }
    if ((name == "float" || name == "int") && EatOp("(")) {
      Result<std::vector<NodePtr>> args = Arguments();
      if (!args.ok()) return args.status();
      if (args->empty() || args->size() > 2) return Fails(name + "() takes a value and a default");
      return Make(Node::Op::kFilter, name, std::move(*args));
    }
    if (IsOp("(")) {
      return Fails("calls '" + name +
                   "()', which Komoku does not evaluate (only float() and int())");
    }
    if (name == "if" || name == "else" || name == "and" || name == "or" || name == "is") {
      return Fails("has '" + name + "' where a value should be");
    }
    return Fails("reads '" + name + "', not value or value_json");
  }

  Result<NodePtr> Input(bool value, std::vector<std::string> path) {
    if (reads_->any && (reads_->value != value || reads_->path != path)) {
      return Fails("reads two different values (" + Shown(reads_->value, reads_->path) + " and " +
                   Shown(value, path) + "); Komoku maps one field per key");
    }
    reads_->any = true;
    reads_->value = value;
    reads_->path = std::move(path);
    return Make(Node::Op::kInput, "", {});
  }

  static std::string Shown(bool value, const std::vector<std::string>& path) {
    if (value) return "value";
    std::string s = "value_json";
    for (const std::string& p : path) s += "." + p;
    return s;
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  Reads* reads_;
};

// A whole template: text, {{ expr }} and {% if %} blocks.
class TemplateParser {
 public:
  explicit TemplateParser(std::string_view s) : s_(s) {}

  Result<NodePtr> Parse(Reads* reads) {
    reads_ = reads;
    std::string end_tag;
    Result<NodePtr> body = Body(&end_tag);
    if (!body.ok()) return body;
    if (!end_tag.empty()) return Fails("has {% " + end_tag + " %} without its {% if %}");
    return body;
  }

 private:
  // Text and expressions up to a tag that ends the block (elif, else,
  // endif: returned in *end_tag with the tag's expression in tag_rest_), or
  // the end of the template.
  Result<NodePtr> Body(std::string* end_tag) {
    std::vector<NodePtr> parts;
    for (;;) {
      const size_t open = NextOpen();
      std::string text(s_.substr(i_, open - i_));
      i_ = open;
      if (i_ < s_.size() && i_ + 2 < s_.size() && s_[i_ + 2] == '-') text = RightTrimmed(text);
      if (trim_next_) {
        text = std::string(LeftTrimmed(text));
        trim_next_ = false;
      }
      if (!text.empty()) parts.push_back(Constant(TemplateValue::String(text)));
      if (i_ >= s_.size()) break;
      const bool expr = s_[i_ + 1] == '{';
      if (s_[i_ + 1] == '#') return Fails("has a {# comment #}, which Komoku does not read");
      Result<std::string> inner = Tag(expr ? "}}" : "%}");
      if (!inner.ok()) return inner.status();
      if (expr) {
        Result<NodePtr> x = Expression(*inner);
        if (!x.ok()) return x;
        parts.push_back(*x);
        continue;
      }
      std::string_view tag = store::TrimAscii(*inner);
      const size_t space = tag.find_first_of(" \t\n");
      const std::string word(tag.substr(0, space));
      const std::string_view rest =
          space == std::string_view::npos ? std::string_view() : tag.substr(space);
      if (word == "if") {
        Result<NodePtr> block = IfBlock(rest);
        if (!block.ok()) return block;
        parts.push_back(*block);
        continue;
      }
      if (word == "elif" || word == "else" || word == "endif") {
        *end_tag = word;
        tag_rest_ = std::string(rest);
        break;
      }
      return Fails("has {% " + word + " %}, which Komoku does not evaluate (only if, elif, else)");
    }
    return Make(Node::Op::kBody, "", std::move(parts));
  }

  // After {% if <cond> %}: the branches up to {% endif %}.
  Result<NodePtr> IfBlock(std::string_view cond_text) {
    Result<NodePtr> cond = Expression(cond_text);
    if (!cond.ok()) return cond;
    std::string end;
    Result<NodePtr> then = Body(&end);
    if (!then.ok()) return then;
    std::vector<NodePtr> args = {*cond, *then};
    if (end == "elif") {
      Result<NodePtr> rest = IfBlock(tag_rest_);  // consumes up to the shared endif
      if (!rest.ok()) return rest;
      args.push_back(*rest);
      return Make(Node::Op::kChoose, "", std::move(args));
    }
    if (end == "else") {
      if (!store::TrimAscii(tag_rest_).empty()) return Fails("has {% else %} with an expression");
      Result<NodePtr> other = Body(&end);
      if (!other.ok()) return other;
      args.push_back(*other);
    }
    if (end != "endif") return Fails("has an {% if %} without {% endif %}");
    if (!store::TrimAscii(tag_rest_).empty()) return Fails("has {% endif %} with an expression");
    return Make(Node::Op::kChoose, "", std::move(args));
  }

  Result<NodePtr> Expression(std::string_view text) {
    Result<std::vector<Token>> tokens = Lex(text);
    if (!tokens.ok()) return tokens.status();
    if (tokens->size() == 1) return Fails("has an empty {{ }} or {% %}");
    return ExpressionParser(std::move(*tokens), reads_).Whole();
  }

  // The next {{, {% or {#, or the end.
  size_t NextOpen() const {
    for (size_t j = i_; j + 1 < s_.size(); ++j) {
      if (s_[j] == '{' && (s_[j + 1] == '{' || s_[j + 1] == '%' || s_[j + 1] == '#')) return j;
    }
    return s_.size();
  }

  // At an opening {{ or {%: its inside up to `close` (quotes skipped), with
  // whitespace control (- at either end) noted.
  Result<std::string> Tag(const char* close) {
    size_t j = i_ + 2;
    if (j < s_.size() && (s_[j] == '-' || s_[j] == '+')) ++j;
    const size_t start = j;
    char quote = 0;
    for (; j + 1 < s_.size(); ++j) {
      if (quote) {
        if (s_[j] == '\\')
          ++j;
        else if (s_[j] == quote)
          quote = 0;
        continue;
      }
      if (s_[j] == '\'' || s_[j] == '"') {
        quote = s_[j];
      } else if (s_[j] == close[0] && s_[j + 1] == close[1]) {
        size_t end = j;
        if (end > start && (s_[end - 1] == '-' || s_[end - 1] == '+')) {
          trim_next_ = s_[end - 1] == '-';
          --end;
        }
        i_ = j + 2;
        return std::string(s_.substr(start, end - start));
      }
    }
    return Fails(std::string("has an unclosed ") + (close[0] == '}' ? "{{" : "{%"));
  }

  static std::string RightTrimmed(const std::string& s) {
    size_t n = s.size();
    while (n > 0 && std::isspace(static_cast<unsigned char>(s[n - 1]))) --n;
    return s.substr(0, n);
  }
  static std::string_view LeftTrimmed(std::string_view s) {
    size_t n = 0;
    while (n < s.size() && std::isspace(static_cast<unsigned char>(s[n]))) ++n;
    return s.substr(n);
  }

  std::string_view s_;
  size_t i_ = 0;
  bool trim_next_ = false;
  std::string tag_rest_;
  Reads* reads_ = nullptr;
};

}  // namespace

HaExpression::HaExpression(std::shared_ptr<const Node> root, bool reads_missing)
    : root_(std::move(root)), reads_missing_(reads_missing) {}
HaExpression::~HaExpression() = default;

Result<TemplateValue> HaExpression::Evaluate(const TemplateValue& input) const {
  return komoku::bridge::Evaluate(*root_, input);
}

std::string RenderTemplateValue(const TemplateValue& v) {
  switch (v.kind) {
    case Kind::kUndefined:
      return "";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return v.number != 0 ? "True" : "False";
    case Kind::kString:
      return v.text;
    case Kind::kInt:
    case Kind::kFloat:
      break;
  }
  if (std::isnan(v.number)) return "nan";
  if (std::isinf(v.number)) return v.number > 0 ? "inf" : "-inf";
  char text[64];
  if (v.kind == Kind::kInt && std::fabs(v.number) < 1e18) {
    std::snprintf(text, sizeof text, "%.0f", v.number);
    return text;
  }
  // Python's repr: the shortest digits that read back the same double, in
  // fixed notation for exponents -4 to 15 ("100.0", "0.0001"), else
  // scientific ("1e+16", "1e-05").
  int precision = 1;
  for (; precision < 17; ++precision) {
    std::snprintf(text, sizeof text, "%.*e", precision - 1, v.number);
    if (std::strtod(text, nullptr) == v.number) break;
  }
  std::snprintf(text, sizeof text, "%.*e", precision - 1, v.number);
  const int exponent = std::atoi(std::strchr(text, 'e') + 1);
  if (exponent < -4 || exponent >= 16) {
    return text;  // "1e+16", "1.5e-07": as Python writes them
  }
  std::snprintf(text, sizeof text, "%.*f", std::max(precision - 1 - exponent, 0), v.number);
  std::string s = text;
  if (s.find('.') == std::string::npos) s += ".0";
  return s;
}

// Parses a template that is not arithmetic on one number; the message says
// which construct Komoku does not evaluate.
Result<HaTemplate> ParseHaExpressionTemplate(std::string_view text) {
  Reads reads;
  Result<NodePtr> root = TemplateParser(text).Parse(&reads);
  if (!root.ok()) return root.status();
  if (!reads.any) return Fails("reads neither value nor value_json");
  HaTemplate t;
  if (!reads.value) t.path = reads.path;
  t.expression = std::make_shared<HaExpression>(*root, reads.missing);
  return t;
}

}  // namespace komoku::bridge
