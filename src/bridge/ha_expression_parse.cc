// The parser of HaExpression (bridge/ha_template.h): the Jinja text of a
// Home Assistant value template into a tree (ha_expression_tree.h), with
// what it reads (value or one field of value_json) and the bounds on its
// size, nesting and depth. Every construct Komoku does not evaluate is
// refused with a message naming it.

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bridge/ha_expression_tree.h"
#include "bridge/ha_template.h"
#include "core/value.h"

namespace komoku::bridge {
namespace {

using ha_tree::Constant;
using ha_tree::Fails;
using ha_tree::kMaxNesting;
using ha_tree::kMaxTemplateBytes;
using ha_tree::kMaxTreeDepth;
using ha_tree::Make;
using ha_tree::Node;
using ha_tree::NodePtr;
using Kind = TemplateValue::Kind;

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
          // Python's escapes, as Jinja reads a string literal: an unknown
          // one keeps its backslash ('\d+' is the pattern \d+).
          const char x = e[++i];
          static constexpr std::string_view kFrom = "\\'\"abfnrtv", kTo = "\\'\"\a\b\f\n\r\t\v";
          const size_t known = kFrom.find(x);
          if (known != std::string_view::npos) {
            s += kTo[known];
          } else if (std::strchr("xuUN01234567\n", x) != nullptr) {
            return Fails(std::string("has the escape '\\") +
                         (x == '\n' ? "<newline>" : std::string(1, x)) +
                         "' in a text, which Komoku does not read");
          } else {
            s += '\\';
            s += x;
          }
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
      if (t.text.empty()) {
        // The whole character (a UTF-8 sequence), so that the message stays
        // text the log and the JSON answers can carry.
        size_t n = 1;
        while (i + n < e.size() && n < 4 && (static_cast<unsigned char>(e[i + n]) & 0xc0) == 0x80) {
          ++n;
        }
        return Fails("has '" + std::string(e.substr(i, n)) + "' it cannot read");
      }
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
  // `vars`: the names {% set %} and {% for %} made so far, which the
  // expression may read.
  ExpressionParser(std::vector<Token> tokens, Reads* reads, const std::set<std::string>* vars)
      : t_(std::move(tokens)), reads_(reads), vars_(vars) {}

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

  // One level deeper in the parser's recursion for its lifetime.
  class Deeper {
   public:
    explicit Deeper(int* depth) : depth_(depth) { ++*depth_; }
    ~Deeper() { --*depth_; }
    Deeper(const Deeper&) = delete;
    Deeper& operator=(const Deeper&) = delete;
    bool TooDeep() const { return *depth_ > kMaxNesting; }

   private:
    int* depth_;
  };
  Status TooDeep() const {
    return Fails("nests brackets, signs or 'not' deeper than " + std::to_string(kMaxNesting));
  }

  // condexpr := or ('if' or ('else' condexpr)?)?
  Result<NodePtr> CondExpr() {
    Deeper deeper(&depth_);
    if (deeper.TooDeep()) return TooDeep();
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
      Deeper deeper(&depth_);
      if (deeper.TooDeep()) return TooDeep();
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
      if (!op && IsName("in")) op = "in";
      if (!op && IsName("not") && Peek(1).type == Token::Type::kName && Peek(1).text == "in") {
        op = "not in";
        ++i_;
      }
      if (!op) break;
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
    Deeper deeper(&depth_);
    if (deeper.TooDeep()) return TooDeep();
    Result<NodePtr> x = Status::Ok();
    if (EatOp("-")) {
      x = Unary(false);
      if (x.ok()) x = Make(Node::Op::kNegate, "", {*x});
    } else if (EatOp("+")) {
      x = Unary(false);
    } else {
      x = Primary();
      if (x.ok()) x = Trailers(std::move(*x));
    }
    if (!x.ok() || !with_filter) return x;
    return Postfix(std::move(*x));
  }

  // x.name and x[key] after a value (value_json's own are read by Primary).
  Result<NodePtr> Trailers(NodePtr x) {
    for (;;) {
      if (IsOp(".") && Peek(1).type == Token::Type::kName) {
        NodePtr attr = Make(Node::Op::kAttr, Peek(1).text, {x});
        i_ += 2;
        if (IsOp("(")) return Fails("calls a method, which Komoku does not evaluate");
        x = attr;
      } else if (EatOp("[")) {
        Result<NodePtr> key = CondExpr();
        if (!key.ok()) return key;
        if (IsOp(":")) return Fails("has a slice, which Komoku does not evaluate");
        if (!EatOp("]")) return Fails("has an unclosed [");
        x = Make(Node::Op::kItem, "", {x, *key});
      } else {
        return x;
      }
    }
  }

  // Filters and tests: x | f(args) ...; x is [not] test.
  Result<NodePtr> Postfix(NodePtr x) {
    for (;;) {
      if (EatOp("|")) {
        if (Peek().type != Token::Type::kName) return Fails("has a '|' without a filter name");
        const std::string f = Peek().text;
        ++i_;
        static const char* const kFilters[] = {"float",
                                               "int",
                                               "round",
                                               "abs",
                                               "default",
                                               "d",
                                               "lower",
                                               "upper",
                                               "trim",
                                               "string",
                                               "first",
                                               "last",
                                               "list",
                                               "length",
                                               "count",
                                               "map",
                                               "select",
                                               "reject",
                                               "selectattr",
                                               "rejectattr",
                                               "to_json",
                                               "regex_findall",
                                               "regex_findall_index"};
        bool known = false;
        for (const char* k : kFilters) known = known || f == k;
        if (!known) {
          return Fails("has the filter '" + f +
                       "', which Komoku does not evaluate (it evaluates float, int, round, abs, "
                       "default, lower, upper, trim, string, first, last, list, length, count, "
                       "map, select, reject, selectattr, rejectattr, to_json, regex_findall and "
                       "regex_findall_index)");
        }
        std::vector<NodePtr> args = {x};
        std::vector<std::string> keywords;
        if (EatOp("(")) {
          Result<std::vector<NodePtr>> more = Arguments(f == "map" ? &keywords : nullptr);
          if (!more.ok()) return more.status();
          for (NodePtr& a : *more) args.push_back(std::move(a));
        }
        if ((f == "default" || f == "d") && IsInput(*x)) reads_->missing = true;
        x = Make(Node::Op::kFilter, f, std::move(args), std::move(keywords));
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

  // After '(': expressions up to ')'. Keyword arguments (`name=x`, after
  // the positional ones) only where `keywords` takes their names.
  Result<std::vector<NodePtr>> Arguments(std::vector<std::string>* keywords = nullptr) {
    std::vector<NodePtr> args;
    if (EatOp(")")) return args;
    for (;;) {
      if (Peek().type == Token::Type::kName && IsOp("=", 1)) {
        if (!keywords) {
          return Fails("has a keyword argument '" + Peek().text + "=', which Komoku does not read");
        }
        keywords->push_back(Peek().text);
        i_ += 2;
      } else if (keywords && !keywords->empty()) {
        return Fails("has a positional argument after a keyword argument");
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
          // (x) or a tuple: (), (x,), (x, y).
          if (EatOp(")")) return Make(Node::Op::kTuple, "", {});
          Result<NodePtr> x = CondExpr();
          if (!x.ok()) return x;
          if (EatOp(")")) return x;
          if (!IsOp(",")) return Fails("has an unclosed (");
          std::vector<NodePtr> items = {*x};
          while (EatOp(",")) {
            if (IsOp(")")) break;
            Result<NodePtr> more = CondExpr();
            if (!more.ok()) return more;
            items.push_back(*more);
          }
          if (!EatOp(")")) return Fails("has an unclosed (");
          return Make(Node::Op::kTuple, "", std::move(items));
        }
        if (t.text == "[" || t.text == "{") {
          // [a, b] or {k: v, ...}; a comma may end either.
          const bool dict = t.text == "{";
          const char* close = dict ? "}" : "]";
          std::vector<NodePtr> items;
          while (!EatOp(close)) {
            Result<NodePtr> item = CondExpr();
            if (!item.ok()) return item;
            items.push_back(*item);
            if (dict) {
              if (!EatOp(":")) return Fails("has a dict entry without ':'");
              Result<NodePtr> value = CondExpr();
              if (!value.ok()) return value;
              items.push_back(*value);
            }
            if (!EatOp(",") && !IsOp(close)) {
              return Fails(std::string("has an unclosed ") + (dict ? "{" : "["));
            }
          }
          return Make(dict ? Node::Op::kDict : Node::Op::kList, "", std::move(items));
        }
        return Fails("has '" + t.text + "' where a value should be");
      default:
        break;
    }
    const std::string& name = t.text;
    // A name the template set (also `value` as a loop's name) is its own.
    if (vars_ && vars_->count(name)) return Make(Node::Op::kVar, name, {});
    if ((name == "namespace" || name == "zip" || name == "dict") && IsOp("(")) {
      ++i_;
      std::vector<std::string> keywords;
      Result<std::vector<NodePtr>> args = Arguments(name == "zip" ? nullptr : &keywords);
      if (!args.ok()) return args.status();
      if (name == "zip" && args->empty()) return Fails("calls zip() without lists");
      return Make(Node::Op::kCall, name, std::move(*args), std::move(keywords));
    }
    if (name == "dict" && IsOp(".") && Peek(1).type == Token::Type::kName &&
        Peek(1).text == "from_keys" && IsOp("(", 2)) {
      i_ += 3;
      Result<std::vector<NodePtr>> args = Arguments();
      if (!args.ok()) return args.status();
      return Make(Node::Op::kCall, "dict.from_keys", std::move(*args));
    }
    if (name == "true" || name == "True") return Constant(TemplateValue::Bool(true));
    if (name == "false" || name == "False") return Constant(TemplateValue::Bool(false));
    if (name == "none" || name == "None") return Constant(TemplateValue::None());
    if (name == "value") return Input(true, {});
    if (name == "value_json") {
      std::vector<std::string> path;
      for (;;) {
        // `.get('field'[, default])`, Python's dict.get: the field, else
        // the default (None without one) when the payload lacks it.
        if (IsOp(".") && Peek(1).type == Token::Type::kName && Peek(1).text == "get" &&
            IsOp("(", 2)) {
          i_ += 3;
          Result<std::vector<NodePtr>> args = Arguments();
          if (!args.ok()) return args.status();
          if (args->empty() || args->size() > 2 || (*args)[0]->op != Node::Op::kConstant ||
              (*args)[0]->value.kind != Kind::kString || (*args)[0]->value.text.empty()) {
            return Fails("calls get() with other than a quoted field name and a default");
          }
          path.push_back((*args)[0]->value.text);
          Result<NodePtr> field = Input(false, std::move(path));
          if (!field.ok()) return field.status();
          reads_->missing = true;
          std::vector<NodePtr> fargs = {std::move(*field), args->size() > 1
                                                               ? std::move((*args)[1])
                                                               : Constant(TemplateValue::None())};
          return Make(Node::Op::kFilter, "default", std::move(fargs));
        }
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
  const std::set<std::string>* vars_;
  int depth_ = 0;  // Deeper
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
    if (!end_tag.empty()) {
      return Fails("has {% " + end_tag + " %} without its {% " +
                   (end_tag == "endfor" ? "for" : "if") + " %}");
    }
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
      if (word == "elif" || word == "else" || word == "endif" || word == "endfor") {
        *end_tag = word;
        tag_rest_ = std::string(rest);
        break;
      }
      if (word == "set") {
        Result<NodePtr> set = Set(rest);
        if (!set.ok()) return set;
        parts.push_back(*set);
        continue;
      }
      if (word == "for") {
        Result<NodePtr> loop = ForBlock(rest);
        if (!loop.ok()) return loop;
        parts.push_back(*loop);
        continue;
      }
      if (word == "continue" || word == "break") {
        if (loops_ == 0) return Fails("has {% " + word + " %} outside a {% for %}");
        if (!store::TrimAscii(rest).empty())
          return Fails("has {% " + word + " %} with an expression");
        parts.push_back(Make(word == "continue" ? Node::Op::kContinue : Node::Op::kBreak, "", {}));
        continue;
      }
      return Fails("has {% " + word +
                   " %}, which Komoku does not evaluate (only if, elif, else, set, for, "
                   "continue, break)");
    }
    return Make(Node::Op::kBody, "", std::move(parts));
  }

  // After {% if <cond> %}: the branches up to {% endif %}.
  Result<NodePtr> IfBlock(std::string_view cond_text) {
    BlockLevel level(&blocks_);
    if (level.TooDeep()) return TooManyBlocks();
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
      return Make(Node::Op::kIf, "", std::move(args));
    }
    if (end == "else") {
      if (!store::TrimAscii(tag_rest_).empty()) return Fails("has {% else %} with an expression");
      Result<NodePtr> other = Body(&end);
      if (!other.ok()) return other;
      args.push_back(*other);
    }
    if (end != "endif") return Fails("has an {% if %} without {% endif %}");  // or endfor in it
    if (!store::TrimAscii(tag_rest_).empty()) return Fails("has {% endif %} with an expression");
    return Make(Node::Op::kIf, "", std::move(args));
  }

  Result<NodePtr> Expression(std::string_view text) {
    Result<std::vector<Token>> tokens = Lex(text);
    if (!tokens.ok()) return tokens.status();
    if (tokens->size() == 1) return Fails("has an empty {{ }} or {% %}");
    return ExpressionParser(std::move(*tokens), reads_, &vars_).Whole();
  }

  // {% set name = expr %} or {% set name.attribute = expr %}.
  Result<NodePtr> Set(std::string_view rest) {
    Result<std::vector<Token>> tokens = Lex(rest);
    if (!tokens.ok()) return tokens.status();
    const std::vector<Token>& t = *tokens;
    auto is_op = [&](size_t i, const char* op) {
      return i < t.size() && t[i].type == Token::Type::kOp && t[i].text == op;
    };
    if (t.empty() || t[0].type != Token::Type::kName) return Fails("has {% set %} without a name");
    const std::string name = t[0].text;
    std::vector<std::string> attribute;
    size_t eq = 1;
    if (is_op(1, ".") && t.size() > 2 && t[2].type == Token::Type::kName) {
      if (!vars_.count(name)) return Fails("sets an attribute of '" + name + "', never set");
      attribute.push_back(t[2].text);
      eq = 3;
    }
    if (!is_op(eq, "=")) {
      return Fails("has a {% set %} Komoku does not evaluate (only name = value, ns.name = value)");
    }
    Result<NodePtr> value = ExpressionAfter(t, eq);
    if (!value.ok()) return value;
    vars_.insert(name);  // read after this tag
    return Make(Node::Op::kSet, name, {*value}, std::move(attribute));
  }

  // After {% for a[, b] in expr %}: the body up to {% endfor %}. The names
  // the loop makes (its targets, its sets) end with it.
  Result<NodePtr> ForBlock(std::string_view rest) {
    BlockLevel level(&blocks_);
    if (level.TooDeep()) return TooManyBlocks();
    Result<std::vector<Token>> tokens = Lex(rest);
    if (!tokens.ok()) return tokens.status();
    const std::vector<Token>& t = *tokens;
    std::vector<std::string> targets;
    size_t i = 0;
    for (;;) {
      if (i >= t.size() || t[i].type != Token::Type::kName || t[i].text == "in") {
        return Fails("has a {% for %} without a name before 'in'");
      }
      targets.push_back(t[i++].text);
      if (i < t.size() && t[i].type == Token::Type::kOp && t[i].text == ",") {
        ++i;
        continue;
      }
      break;
    }
    if (i >= t.size() || t[i].type != Token::Type::kName || t[i].text != "in") {
      return Fails("has a {% for %} Komoku does not read (only: for a[, b] in list)");
    }
    Result<NodePtr> seq = ExpressionAfter(t, i);
    if (!seq.ok()) return seq;
    const std::set<std::string> outer = vars_;
    for (const std::string& name : targets) vars_.insert(name);
    ++loops_;
    std::string end;
    Result<NodePtr> body = Body(&end);
    --loops_;
    vars_ = outer;
    if (!body.ok()) return body;
    if (end != "endfor") return Fails("has a {% for %} without {% endfor %}");
    if (!store::TrimAscii(tag_rest_).empty()) return Fails("has {% endfor %} with an expression");
    return Make(Node::Op::kFor, "", {*seq, *body}, std::move(targets));
  }

  // The expression of a tag after its token `at` (the `=` of a set, the
  // `in` of a for).
  Result<NodePtr> ExpressionAfter(const std::vector<Token>& t, size_t at) {
    return ExpressionParser(
               std::vector<Token>(t.begin() + static_cast<std::ptrdiff_t>(at) + 1, t.end()), reads_,
               &vars_)
        .Whole();
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
  std::set<std::string> vars_;  // names set so far, in scope here
  int loops_ = 0;               // {% for %} blocks open
  int blocks_ = 0;              // {% if %}, {% elif %} and {% for %} open (BlockLevel)

  // An {% if %}, {% elif %} (each parsed one level below the one before)
  // or {% for %} open for its lifetime.
  class BlockLevel {
   public:
    explicit BlockLevel(int* blocks) : blocks_(blocks) { ++*blocks_; }
    ~BlockLevel() { --*blocks_; }
    BlockLevel(const BlockLevel&) = delete;
    BlockLevel& operator=(const BlockLevel&) = delete;
    bool TooDeep() const { return *blocks_ > 2 * kMaxNesting; }

   private:
    int* blocks_;
  };
  static Status TooManyBlocks() {
    return Fails("nests {% if %}, {% elif %} and {% for %} blocks deeper than " +
                 std::to_string(2 * kMaxNesting));
  }
};

}  // namespace

// The template's result goes through kEventType.
Result<HaTemplate> ParseHaEventTemplate(std::string_view text) {
  Result<HaTemplate> t = ParseHaExpressionTemplate(text);
  if (!t.ok()) return t;
  auto root = std::make_shared<Node>();
  root->op = Node::Op::kEventType;
  root->args = {t->expression->root_};
  t->expression = std::make_shared<HaExpression>(root, t->expression->reads_missing());
  return t;
}

// Parses a template that is not arithmetic on one number; the message says
// which construct Komoku does not evaluate.
Result<HaTemplate> ParseHaExpressionTemplate(std::string_view text) {
  if (text.size() > kMaxTemplateBytes) {
    return Fails("is " + std::to_string(text.size()) + " bytes long, more than the " +
                 std::to_string(kMaxTemplateBytes) + " Komoku reads");
  }
  Reads reads;
  Result<NodePtr> root = TemplateParser(text).Parse(&reads);
  if (!root.ok()) return root.status();
  if ((*root)->depth > kMaxTreeDepth) {
    return Fails("builds a tree " + std::to_string((*root)->depth) + " deep, more than the " +
                 std::to_string(kMaxTreeDepth) + " Komoku evaluates (a chain such as 1+1+1+...)");
  }
  if (!reads.any) return Fails("reads neither value nor value_json");
  HaTemplate t;
  if (!reads.value) t.path = reads.path;
  t.expression = std::make_shared<HaExpression>(*root, reads.missing);
  return t;
}

}  // namespace komoku::bridge
