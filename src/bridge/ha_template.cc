#include "bridge/ha_template.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "wire/input.h"

namespace komoku::bridge {
namespace {

// Python's round(x, digits) for digits >= 0: the decimal nearest to x's
// exact binary value, ties to even. glibc's printf rounds the exact value
// in the current rounding mode (to nearest, ties to even), and strtod reads
// the decimal back to the nearest double: the same two steps as CPython.
double PythonRound(double x, int digits) {
  char text[400];
  std::snprintf(text, sizeof text, "%.*f", digits, x);
  return std::strtod(text, nullptr);
}

// What an expression is while it is compiled: a constant, or the one
// number the template reads with the steps applied to it so far.
struct Operand {
  bool variable = false;
  double constant = 0;
  std::vector<std::string> path;
  bool reads_value = false;  // `value`: text until float or int
  bool number = false;       // known to be a number (value_json, or after float/int)
  bool converted = false;    // a float or int filter, arithmetic or rounding made it a number
  std::vector<NumberOp> ops;
  std::optional<std::variant<double, bool, std::string>> missing_value;  // |default(c)
};

class Parser {
 public:
  explicit Parser(std::string_view e) : e_(e) {}

  Result<Operand> Parse() {
    Result<Operand> r = Sum();
    if (!r.ok()) return r;
    Skip();
    if (i_ != e_.size()) return Fail("has '" + std::string(e_.substr(i_)) + "' it cannot read");
    if (!r->variable) return Fail("reads neither value nor value_json");
    return r;
  }

 private:
  Status Fail(const std::string& why) { return Status::InvalidArgument(why); }

  void Skip() {
    while (i_ < e_.size() && std::isspace(static_cast<unsigned char>(e_[i_]))) ++i_;
  }
  bool Eat(char c) {
    Skip();
    if (i_ < e_.size() && e_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  std::string Ident() {
    Skip();
    size_t start = i_;
    if (i_ < e_.size() && (std::isalpha(static_cast<unsigned char>(e_[i_])) || e_[i_] == '_')) {
      while (i_ < e_.size() &&
             (std::isalnum(static_cast<unsigned char>(e_[i_])) || e_[i_] == '_')) {
        ++i_;
      }
    }
    return std::string(e_.substr(start, i_ - start));
  }

  // sum := product (('+' | '-') product)*
  Result<Operand> Sum() {
    Result<Operand> left = Product();
    while (left.ok()) {
      Skip();
      if (i_ >= e_.size() || (e_[i_] != '+' && e_[i_] != '-')) break;
      const char op = e_[i_++];
      Result<Operand> right = Product();
      if (!right.ok()) return right;
      left = Combine(std::move(*left), op, std::move(*right));
    }
    return left;
  }

  // product := unary (('*' | '/') unary)*
  Result<Operand> Product() {
    Result<Operand> left = Unary();
    while (left.ok()) {
      Skip();
      if (i_ >= e_.size() || (e_[i_] != '*' && e_[i_] != '/')) break;
      if (i_ + 1 < e_.size() && e_[i_ + 1] == e_[i_]) {
        return Fail("has '" + std::string(2, e_[i_]) + "' (power or floor division)");
      }
      const char op = e_[i_++];
      Result<Operand> right = Unary();
      if (!right.ok()) return right;
      left = Combine(std::move(*left), op, std::move(*right));
    }
    return left;
  }

  // unary := '-' unary | primary filter*
  Result<Operand> Unary() {
    // Each '-' or '(' is a level of recursion: bounded, since a template
    // comes from whoever may publish discovery configs (ha_expression.cc
    // bounds its own the same way).
    if (++depth_ > kMaxDepth) return Fail("nests brackets or signs too deeply");
    Result<Operand> x = UnaryBody();
    --depth_;
    return x;
  }
  Result<Operand> UnaryBody() {
    if (Eat('-')) {
      Result<Operand> x = Unary();
      if (!x.ok()) return x;
      Operand minus_one;
      minus_one.constant = -1;
      return Combine(std::move(*x), '*', std::move(minus_one));
    }
    Result<Operand> x = Primary();
    while (x.ok() && Eat('|')) x = Filter(std::move(*x));
    return x;
  }

  // primary := number | 'value' | 'value_json' access* | '(' sum ')'
  Result<Operand> Primary() {
    Skip();
    if (Eat('(')) {
      Result<Operand> x = Sum();
      if (!x.ok()) return x;
      if (!Eat(')')) return Fail("has an unclosed (");
      return x;
    }
    if (i_ < e_.size() && (std::isdigit(static_cast<unsigned char>(e_[i_])) || e_[i_] == '.')) {
      const char* begin = e_.data() + i_;
      char* end = nullptr;
      const std::string text(begin, e_.size() - i_);
      Operand c;
      c.constant = std::strtod(text.c_str(), &end);
      i_ += static_cast<size_t>(end - text.c_str());
      return c;
    }
    const std::string name = Ident();
    Operand v;
    v.variable = true;
    if (name == "value") {
      v.reads_value = true;
      return v;
    }
    if (name != "value_json") {
      return Fail(name.empty() ? "has something other than value, value_json or a number"
                               : "reads '" + name + "', not value or value_json");
    }
    v.number = true;
    for (;;) {
      Skip();
      if (i_ < e_.size() && e_[i_] == '.') {
        ++i_;
        std::string field = Ident();
        if (field.empty()) return Fail("has a bad field name");
        v.path.push_back(std::move(field));
      } else if (i_ < e_.size() && e_[i_] == '[') {
        ++i_;
        Skip();
        if (i_ >= e_.size() || (e_[i_] != '\'' && e_[i_] != '"')) {
          return Fail("indexes with something other than a quoted field name");
        }
        const char quote = e_[i_++];
        const size_t close = e_.find(quote, i_);
        if (close == std::string_view::npos) return Fail("has an unclosed quote");
        std::string_view field = e_.substr(i_, close - i_);
        if (field.empty() || field.find('\\') != std::string_view::npos) {
          return Fail("has an empty or escaped field name");
        }
        v.path.emplace_back(field);
        i_ = close + 1;
        if (!Eat(']')) return Fail("has an unclosed [ ]");
      } else {
        break;
      }
    }
    if (v.path.empty()) return Fail("reads the whole JSON document, not a field");
    return v;
  }

  // filter := name ('(' args ')')?
  Result<Operand> Filter(Operand x) {
    const std::string name = Ident();
    std::vector<std::string> args;
    if (Eat('(')) {
      Skip();
      while (i_ < e_.size() && e_[i_] != ')') {
        size_t start = i_;
        while (i_ < e_.size() && e_[i_] != ',' && e_[i_] != ')') ++i_;
        args.emplace_back(store::TrimAscii(e_.substr(start, i_ - start)));
        if (i_ < e_.size() && e_[i_] == ',') ++i_;
      }
      if (!Eat(')')) return Fail("has an unclosed (");
    }
    if (name == "default" || name == "d") {
      // Only right after the field: then it is the field's value when the
      // payload lacks it. `value` is always there: a no-op.
      if (!x.variable || !x.ops.empty() || x.converted || x.missing_value) {
        return Fail("has default after another step; Komoku takes it right after the field");
      }
      if (args.size() != 1) return Fail("has default without exactly one constant");
      const std::string& a = args[0];
      if (x.reads_value) return x;
      if (a.size() >= 2 && (a[0] == '\'' || a[0] == '"') && a.back() == a[0]) {
        x.missing_value = a.substr(1, a.size() - 2);
      } else if (a == "true" || a == "True" || a == "false" || a == "False") {
        x.missing_value = a[0] == 't' || a[0] == 'T';
      } else {
        char* end = nullptr;
        const double d = std::strtod(a.c_str(), &end);
        if (a.empty() || *end != '\0' || !std::isfinite(d)) {
          return Fail("has default(" + a + "); Komoku takes a number, a quoted text or a boolean");
        }
        x.missing_value = d;
      }
      return x;
    }
    if (name == "float" || name == "int") {
      if (!args.empty()) {
        return Fail("has " + name + " with a default; Komoku refuses a value that is no number");
      }
      if (name == "int") x = Apply(std::move(x), NumberOp{NumberOp::Kind::kTruncate});
      x.number = true;
      x.reads_value = false;
      x.converted = true;
      return x;
    }
    if (name == "round") {
      NumberOp op{NumberOp::Kind::kRound};
      if (!args.empty()) {
        char* end = nullptr;
        const long digits = std::strtol(args[0].c_str(), &end, 10);
        if (args[0].empty() || *end != '\0' || digits < 0 || digits > 15) {
          return Fail("has round(" + args[0] + "); Komoku takes 0 to 15 digits");
        }
        op.digits = static_cast<int>(digits);
      }
      if (args.size() > 1) {
        const std::string& m = args[1];
        if (m == "'floor'" || m == "\"floor\"") {
          op.kind = NumberOp::Kind::kFloor;
        } else if (m == "'ceil'" || m == "\"ceil\"") {
          op.kind = NumberOp::Kind::kCeil;
        } else if (m != "'common'" && m != "\"common\"") {
          return Fail("has round with method " + m + "; Komoku takes common, floor and ceil");
        }
      }
      if (args.size() > 2) return Fail("has round with more than two arguments");
      return Numeric(std::move(x), op, "round");
    }
    if (name == "abs" && args.empty()) {
      return Numeric(std::move(x), NumberOp{NumberOp::Kind::kAbs}, "abs");
    }
    return Fail("has the filter '" + name + "'; Komoku evaluates float, int, round and abs");
  }

  // A step that needs a number: the payload's text needs float or int first
  // (Jinja would fail, or repeat the text for '*').
  Result<Operand> Numeric(Operand x, NumberOp op, const char* what) {
    if (x.variable && x.reads_value) {
      return Fail(std::string("applies ") + what +
                  " to the payload's text; Home Assistant needs | float or | int before it");
    }
    return Apply(std::move(x), op);
  }

  Operand Apply(Operand x, NumberOp op) {
    if (x.variable) {
      x.ops.push_back(op);
      x.converted = true;
      return x;
    }
    Result<double> folded = ApplyNumberOps({op}, x.constant);
    x.constant = folded.ok() ? *folded : std::nan("");
    return x;
  }

  Result<Operand> Combine(Operand l, char op, Operand r) {
    if (l.variable && r.variable) return Fail("uses the value more than once");
    const NumberOp::Kind kind = op == '+'   ? NumberOp::Kind::kAdd
                                : op == '-' ? NumberOp::Kind::kSubtract
                                : op == '*' ? NumberOp::Kind::kMultiply
                                            : NumberOp::Kind::kDivide;
    if (!l.variable && !r.variable) {
      Result<double> v = ApplyNumberOps({NumberOp{kind, r.constant}}, l.constant);
      if (!v.ok()) return Fail("divides a constant by zero");
      l.constant = *v;
      return l;
    }
    const bool variable_left = l.variable;
    const double constant = variable_left ? r.constant : l.constant;
    Operand var = variable_left ? std::move(l) : std::move(r);
    if (!std::isfinite(constant)) return Fail("has a constant that is not a finite number");
    return Numeric(std::move(var), NumberOp{kind, constant, !variable_left}, "arithmetic");
  }

  static constexpr int kMaxDepth = 32;
  std::string_view e_;
  size_t i_ = 0;
  int depth_ = 0;  // Unary's recursion
};

}  // namespace

Result<double> ApplyNumberOps(const std::vector<NumberOp>& ops, double x) {
  for (const NumberOp& op : ops) {
    const double a = op.operand_first ? op.operand : x;
    const double b = op.operand_first ? x : op.operand;
    switch (op.kind) {
      case NumberOp::Kind::kAdd:
        x = a + b;
        break;
      case NumberOp::Kind::kSubtract:
        x = a - b;
        break;
      case NumberOp::Kind::kMultiply:
        x = a * b;
        break;
      case NumberOp::Kind::kDivide:
        if (b == 0) return Status::InvalidArgument("the template divides by zero");
        x = a / b;
        break;
      case NumberOp::Kind::kRound:
        x = PythonRound(x, op.digits);
        break;
      case NumberOp::Kind::kFloor:
      case NumberOp::Kind::kCeil: {
        // Jinja: math.floor(value * 10**precision) / 10**precision.
        const double scale = std::pow(10.0, op.digits);
        x = (op.kind == NumberOp::Kind::kFloor ? std::floor(x * scale) : std::ceil(x * scale)) /
            scale;
        break;
      }
      case NumberOp::Kind::kTruncate:
        x = std::trunc(x);
        break;
      case NumberOp::Kind::kAbs:
        x = std::fabs(x);
        break;
    }
    if (!std::isfinite(x)) {
      return Status::InvalidArgument("the template's result is not a finite number");
    }
  }
  return x;
}

namespace {

// The first form (arithmetic on one number, compiled to steps).
Result<HaTemplate> ParseArithmeticTemplate(std::string_view text) {
  const std::string shown = "value template '" + std::string(text) + "' ";
  std::string_view s = store::TrimAscii(text);
  auto refuse = [&](const std::string& why) {
    return Status::InvalidArgument(
        shown + why +
        "; Komoku evaluates one {{ }} reading value or value_json.<field>, with + - * /, "
        "parentheses and the filters float, int, round and abs");
  };
  std::string_view e;
  std::string guard;  // the field of `{% if <field> is defined %}`, as written
  if (s.substr(0, 2) == "{%") {
    // {% if <path> is defined %}{{ ... }}{% endif %}
    const size_t close = s.find("%}");
    const size_t open = s.find("{{");
    const size_t end = s.rfind("{%");
    if (close == std::string_view::npos || open == std::string_view::npos || end <= open) {
      return refuse("has a {% %} block Komoku does not read");
    }
    std::string_view head = store::TrimAscii(s.substr(2, close - 2));
    std::string_view tail = store::TrimAscii(s.substr(end + 2));
    std::string_view between = store::TrimAscii(s.substr(close + 2, open - close - 2));
    constexpr std::string_view kIf = "if ", kDefined = " is defined";
    if (head.substr(0, kIf.size()) != kIf || head.size() <= kIf.size() + kDefined.size() ||
        head.substr(head.size() - kDefined.size()) != kDefined || !between.empty() ||
        (tail != "endif %}" && tail != "endif%}" && tail != "- endif %}")) {
      return refuse("has a {% %} block other than {% if <field> is defined %}{{ ... }}{% endif %}");
    }
    guard = std::string(
        store::TrimAscii(head.substr(kIf.size(), head.size() - kIf.size() - kDefined.size())));
    s = store::TrimAscii(s.substr(open, end - open));
    if (s.size() < 4 || s.substr(s.size() - 2) != "}}")
      return refuse("is not one {{ ... }} expression");
  }
  if (s.size() < 4 || s.substr(0, 2) != "{{" || s.substr(s.size() - 2) != "}}") {
    return refuse("is not one {{ ... }} expression");
  }
  e = s.substr(2, s.size() - 4);
  if (e.find("{{") != std::string_view::npos || e.find("}}") != std::string_view::npos ||
      e.find("{%") != std::string_view::npos) {
    return refuse("has more than one expression");
  }
  Result<Operand> parsed = Parser(e).Parse();
  if (!parsed.ok()) return refuse(parsed.status().message());
  if (!guard.empty()) {
    // The guard must test the very field the expression reads.
    Result<Operand> tested = Parser(guard).Parse();
    if (!tested.ok() || tested->reads_value || tested->path != parsed->path ||
        !tested->ops.empty() || tested->converted) {
      return refuse("tests '" + guard + "' but reads another field");
    }
  }
  HaTemplate t;
  t.missing_value = parsed->missing_value;
  t.path = std::move(parsed->path);
  t.ops = std::move(parsed->ops);
  t.numeric = parsed->converted;
  return t;
}

}  // namespace

Result<HaTemplate> ParseHaTemplate(std::string_view text) {
  // Bounded before either parser reads it (ParseHaExpressionTemplate says
  // why and how far).
  if (text.size() > kMaxHaTemplateBytes) {
    return Status::InvalidArgument("value template of " + std::to_string(text.size()) +
                                   " bytes: more than the " + std::to_string(kMaxHaTemplateBytes) +
                                   " Komoku reads");
  }
  Result<HaTemplate> simple = ParseArithmeticTemplate(text);
  if (simple.ok()) return simple;
  // Not arithmetic on one number: evaluated whole for each value, if it
  // reads one value and uses only what HaExpression evaluates.
  Result<HaTemplate> general = ParseHaExpressionTemplate(text);
  if (general.ok()) return general;
  // A long template is cut where the refusal shows it (it goes to the log).
  constexpr size_t kShown = 300;
  const std::string shown =
      text.size() <= kShown ? std::string(text) : std::string(text.substr(0, kShown)) + "...";
  return Status::InvalidArgument("value template '" + shown + "' " + general.status().message() +
                                 "; Komoku evaluates templates that read value or one field of "
                                 "value_json (docs/mapping.md#value-templates)");
}

}  // namespace komoku::bridge
