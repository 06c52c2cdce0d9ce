// The PromQL subset's parser: a recursive descent over the text with
// Prometheus's operator precedence (+ - below * / % below unary minus below
// ^, which is right-associative) and its type checks. Everything outside the
// subset that Prometheus knows (comparisons, set operators, vector matching,
// other functions and aggregations, subqueries, @) is refused as
// "unsupported: ...", so a user can tell it from a typo.
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>

#include "core/regex.h"
#include "promql/expr.h"
#include "promql/promql.h"

namespace komoku::promql {

struct Matcher::Regex {
  komoku::Regex re;
};

Result<Matcher> Matcher::Make(Op op, std::string name, std::string value) {
  Matcher m;
  m.op_ = op;
  m.name_ = std::move(name);
  m.value_ = std::move(value);
  if (op == Op::kRegex || op == Op::kNotRegex) {
    // RE2's syntax and linear time, as Prometheus's Go regexp, matching the
    // whole value as Prometheus anchors it: "(?i)" and the other flags,
    // Unicode classes, counts up to 1000; no back-references.
    Result<komoku::Regex> re = komoku::Regex::Compile(m.value_);
    if (!re.ok()) {
      return Status::InvalidArgument("invalid regular expression \"" + m.value_ +
                                     "\": " + re.status().message());
    }
    m.regex_ = std::make_shared<const Regex>(Regex{std::move(*re)});
  }
  return m;
}

bool Matcher::Matches(const std::string& value) const {
  switch (op_) {
    case Op::kEqual:
      return value == value_;
    case Op::kNotEqual:
      return value != value_;
    case Op::kRegex:
      return regex_->re.FullMatch(value);
    case Op::kNotRegex:
      return !regex_->re.FullMatch(value);
  }
  return false;
}

const std::string& LabelValue(const Labels& labels, const std::string& name) {
  static const std::string kEmpty;
  for (const auto& [n, v] : labels) {
    if (n == name) return v;
  }
  return kEmpty;
}

bool MatchesAll(const std::vector<Matcher>& matchers, const Labels& labels) {
  for (const Matcher& m : matchers) {
    if (!m.Matches(LabelValue(labels, m.name()))) return false;
  }
  return true;
}

Result<int64_t> ParseDurationMs(const std::string& text) {
  static const std::vector<std::pair<std::string, int64_t>> kUnits = {
      {"y", 365LL * 24 * 3600 * 1000},
      {"w", 7LL * 24 * 3600 * 1000},
      {"d", 24LL * 3600 * 1000},
      {"h", 3600LL * 1000},
      {"m", 60LL * 1000},
      {"s", 1000},
      {"ms", 1}};
  auto bad = [&] {
    return Status::InvalidArgument("not a valid duration string: \"" + text + "\"");
  };
  if (text.empty()) return bad();
  size_t i = 0;
  size_t next_unit = 0;
  int64_t total = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    if (i == start || i - start > 15) return bad();
    int64_t n = std::stoll(text.substr(start, i - start));
    size_t ustart = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string unit = text.substr(ustart, i - ustart);
    size_t u = next_unit;
    while (u < kUnits.size() && kUnits[u].first != unit) ++u;
    if (u == kUnits.size()) return bad();
    next_unit = u + 1;
    if (n > (INT64_MAX - total) / kUnits[u].second) return bad();
    total += n * kUnits[u].second;
  }
  return total;
}

namespace {

using ExprPtr = std::shared_ptr<Expr>;

const std::map<std::string, RangeFunc>& RangeFuncs() {
  static const std::map<std::string, RangeFunc> kFuncs = {
      {"rate", RangeFunc::kRate},
      {"increase", RangeFunc::kIncrease},
      {"delta", RangeFunc::kDelta},
      {"changes", RangeFunc::kChanges},
      {"deriv", RangeFunc::kDeriv},
      {"avg_over_time", RangeFunc::kAvgOverTime},
      {"min_over_time", RangeFunc::kMinOverTime},
      {"max_over_time", RangeFunc::kMaxOverTime},
      {"sum_over_time", RangeFunc::kSumOverTime},
      {"count_over_time", RangeFunc::kCountOverTime},
      {"last_over_time", RangeFunc::kLastOverTime},
  };
  return kFuncs;
}

const std::map<std::string, AggOp>& Aggregations() {
  static const std::map<std::string, AggOp> kAggs = {{"sum", AggOp::kSum},
                                                     {"avg", AggOp::kAvg},
                                                     {"min", AggOp::kMin},
                                                     {"max", AggOp::kMax},
                                                     {"count", AggOp::kCount}};
  return kAggs;
}

// Prometheus's aggregations Komoku does not evaluate: named in the refusal.
bool IsOtherAggregation(const std::string& name) {
  static const std::set<std::string> kOthers = {"group",   "stddev",       "stdvar",  "topk",
                                                "bottomk", "count_values", "quantile"};
  return kOthers.count(name) > 0;
}

const char* TypeName(ValueType t) {
  switch (t) {
    case ValueType::kScalar:
      return "scalar";
    case ValueType::kVector:
      return "instant vector";
    case ValueType::kMatrix:
      return "range vector";
  }
  return "?";
}

bool IsIdentStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsIdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text) {}

  Result<ExprPtr> ParseAll() {
    Result<ExprPtr> e = ParseAdditive();
    if (!e.ok()) return e;
    SkipSpace();
    if (pos_ < s_.size()) return Unexpected();
    return e;
  }

 private:
  Status Error(const std::string& what) const {
    return Status::InvalidArgument("parse error at char " + std::to_string(pos_ + 1) + ": " + what);
  }
  static Status Unsupported(const std::string& what) {
    return Status::InvalidArgument("unsupported: " + what +
                                   " (Komoku evaluates a subset of PromQL: see "
                                   "docs/prometheus.md)");
  }
  Status Unexpected() {
    if (pos_ >= s_.size()) return Error("unexpected end of input");
    // Name what Komoku leaves out rather than calling it a syntax error.
    static const std::vector<std::string> kOps = {"==", "!=", ">=", "<=", ">", "<"};
    for (const std::string& op : kOps) {
      if (s_.compare(pos_, op.size(), op) == 0) {
        return Unsupported("comparison operator \"" + op + "\"");
      }
    }
    if (s_[pos_] == '@') return Unsupported("the @ modifier");
    std::string word = PeekWord();
    if (word == "and" || word == "or" || word == "unless" || word == "atan2") {
      return Unsupported("binary operator \"" + word + "\"");
    }
    if (word == "on" || word == "ignoring" || word == "group_left" || word == "group_right" ||
        word == "bool") {
      return Unsupported("\"" + word + "\"");
    }
    return Error("unexpected character '" + std::string(1, s_[pos_]) + "'");
  }

  void SkipSpace() {
    while (pos_ < s_.size()) {
      if (std::isspace(static_cast<unsigned char>(s_[pos_]))) {
        ++pos_;
      } else if (s_[pos_] == '#') {  // a comment runs to the end of the line
        while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }
  bool Peek(char c) {
    SkipSpace();
    return pos_ < s_.size() && s_[pos_] == c;
  }
  bool Accept(char c) {
    if (!Peek(c)) return false;
    ++pos_;
    return true;
  }
  Status Expect(char c) {
    if (Accept(c)) return Status::Ok();
    SkipSpace();
    if (pos_ >= s_.size()) return Error(std::string("expected '") + c + "', found end of input");
    return Error(std::string("expected '") + c + "', found '" + s_[pos_] + "'");
  }
  // The identifier (metric names may hold ':') at the position, not consumed.
  std::string PeekWord() {
    SkipSpace();
    size_t i = pos_;
    if (i >= s_.size() || !(IsIdentStart(s_[i]) || s_[i] == ':')) return "";
    while (i < s_.size() && (IsIdentChar(s_[i]) || s_[i] == ':')) ++i;
    return s_.substr(pos_, i - pos_);
  }
  std::string TakeWord() {
    std::string w = PeekWord();
    pos_ += w.size();
    return w;
  }

  // Bounds the recursion on nested parentheses, calls and unary signs: a
  // query is outside text, and each level costs stack.
  class Nest {
   public:
    explicit Nest(int& depth) : depth_(depth) { ++depth_; }
    ~Nest() { --depth_; }
    bool TooDeep() const { return depth_ > kMaxDepth; }

   private:
    int& depth_;
  };
  static constexpr int kMaxDepth = 256;  // about 120 parentheses deep

  Result<ExprPtr> ParseAdditive() {
    Nest nest(depth_);
    if (nest.TooDeep()) return Error("expression nested too deeply");
    Result<ExprPtr> lhs = ParseMultiplicative();
    if (!lhs.ok()) return lhs;
    while (true) {
      SkipSpace();
      if (pos_ >= s_.size() || (s_[pos_] != '+' && s_[pos_] != '-')) return lhs;
      char op = s_[pos_++];
      Result<ExprPtr> rhs = ParseMultiplicative();
      if (!rhs.ok()) return rhs;
      lhs = MakeBinary(op, *lhs, *rhs);
      if (!lhs.ok()) return lhs;
    }
  }

  Result<ExprPtr> ParseMultiplicative() {
    Result<ExprPtr> lhs = ParseUnary();
    if (!lhs.ok()) return lhs;
    while (true) {
      SkipSpace();
      if (pos_ >= s_.size() || (s_[pos_] != '*' && s_[pos_] != '/' && s_[pos_] != '%')) {
        return lhs;
      }
      char op = s_[pos_++];
      Result<ExprPtr> rhs = ParseUnary();
      if (!rhs.ok()) return rhs;
      lhs = MakeBinary(op, *lhs, *rhs);
      if (!lhs.ok()) return lhs;
    }
  }

  Result<ExprPtr> ParseUnary() {
    Nest nest(depth_);
    if (nest.TooDeep()) return Error("expression nested too deeply");
    SkipSpace();
    if (pos_ < s_.size() && (s_[pos_] == '-' || s_[pos_] == '+')) {
      char op = s_[pos_++];
      Result<ExprPtr> arg = ParseUnary();
      if (!arg.ok()) return arg;
      if (op == '+') return arg;
      ExprPtr e = *arg;
      if (e->type == ValueType::kMatrix) {
        return Error(
            "unary expression only allowed on expressions of type scalar or instant vector");
      }
      if (e->kind == Expr::Kind::kNumber) {
        e->number = -e->number;
        return e;
      }
      auto neg = std::make_shared<Expr>();
      neg->kind = Expr::Kind::kNegate;
      neg->type = e->type;
      neg->args = {e};
      return neg;
    }
    return ParsePower();
  }

  Result<ExprPtr> ParsePower() {
    Result<ExprPtr> lhs = ParsePostfix();
    if (!lhs.ok()) return lhs;
    if (!Accept('^')) return lhs;
    Result<ExprPtr> rhs = ParseUnary();  // right-associative
    if (!rhs.ok()) return rhs;
    return MakeBinary('^', *lhs, *rhs);
  }

  Result<ExprPtr> MakeBinary(char op, const ExprPtr& lhs, const ExprPtr& rhs) {
    if (lhs->type == ValueType::kMatrix || rhs->type == ValueType::kMatrix) {
      return Error("binary expression must contain only scalar and instant vector types");
    }
    if (lhs->type == ValueType::kVector && rhs->type == ValueType::kVector) {
      return Unsupported(
          "binary operations between two instant vectors (one side must be a scalar)");
    }
    auto e = std::make_shared<Expr>();
    e->kind = Expr::Kind::kBinary;
    e->op = op;
    e->type = (lhs->type == ValueType::kVector || rhs->type == ValueType::kVector)
                  ? ValueType::kVector
                  : ValueType::kScalar;
    e->args = {lhs, rhs};
    return e;
  }

  // A primary expression, then a range [d] and an offset, which apply only
  // to a vector selector.
  Result<ExprPtr> ParsePostfix() {
    paren_ = false;
    Result<ExprPtr> r = ParsePrimary();
    if (!r.ok()) return r;
    ExprPtr e = *r;
    const bool selector = e->kind == Expr::Kind::kSelector && !paren_;
    if (Peek('[')) {
      ++pos_;
      if (!selector || e->range_ms != 0 || e->offset_ms != 0) {
        if (e->type == ValueType::kMatrix) return Error("range specification on a range vector");
        return Unsupported("subqueries");
      }
      Result<int64_t> d = ParseDurationToken();
      if (!d.ok()) return d.status();
      if (Peek(':')) return Unsupported("subqueries");
      KOMOKU_RETURN_IF_ERROR(Expect(']'));
      if (*d <= 0) return Error("range must be greater than 0");
      e->range_ms = *d;
      e->type = ValueType::kMatrix;
    }
    if (PeekWord() == "offset") {
      TakeWord();
      if (!selector) {
        return Error(
            "offset modifier must be preceded by an instant vector selector or range vector "
            "selector");
      }
      if (e->offset_ms != 0) return Error("offset may not be set multiple times");
      bool negative = Accept('-');
      Result<int64_t> d = ParseDurationToken();
      if (!d.ok()) return d.status();
      e->offset_ms = negative ? -*d : *d;
    }
    if (Peek('@')) return Unsupported("the @ modifier");
    return e;
  }

  Result<int64_t> ParseDurationToken() {
    SkipSpace();
    size_t start = pos_;
    while (pos_ < s_.size() && std::isalnum(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    std::string text = s_.substr(start, pos_ - start);
    Result<int64_t> d = ParseDurationMs(text);
    if (!d.ok()) {
      pos_ = start;
      return Error("bad duration \"" + text + "\"");
    }
    return d;
  }

  Result<ExprPtr> ParsePrimary() {
    SkipSpace();
    if (pos_ >= s_.size()) return Error("unexpected end of input");
    char c = s_[pos_];
    if (c == '(') {
      ++pos_;
      Result<ExprPtr> inner = ParseAdditive();
      if (!inner.ok()) return inner;
      SkipSpace();
      if (!Accept(')')) return Unexpected();
      // A parenthesised selector takes no range or offset: "(x)[5m]" is a
      // subquery.
      paren_ = true;
      return inner;
    }
    if (c == '"' || c == '\'' || c == '`') {
      return Unsupported("string literals as expressions");
    }
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') return ParseNumber();
    if (c == '{') return ParseSelector("");
    std::string word = PeekWord();
    if (word.empty()) return Unexpected();
    std::string lower;
    for (char ch : word) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (lower == "inf" || lower == "nan") {
      pos_ += word.size();
      auto e = std::make_shared<Expr>();
      e->number = lower == "inf" ? HUGE_VAL : std::nan("");
      return e;
    }
    if (word == "on" || word == "ignoring" || word == "group_left" || word == "group_right" ||
        word == "bool") {
      return Unsupported("vector matching and \"bool\" (\"" + word + "\")");
    }
    size_t word_start = pos_;
    pos_ += word.size();
    SkipSpace();
    bool call = pos_ < s_.size() && s_[pos_] == '(';
    if (Aggregations().count(word)) {
      bool grouping_follows = PeekWord() == "by" || PeekWord() == "without";
      if (call || grouping_follows) return ParseAggregation(Aggregations().at(word));
    }
    if (IsOtherAggregation(word) && (call || PeekWord() == "by" || PeekWord() == "without")) {
      return Unsupported("aggregation \"" + word + "\"");
    }
    if (call) return ParseCall(word, word_start);
    pos_ = word_start;
    if (word == "by" || word == "without" || word == "offset" || word == "and" || word == "or" ||
        word == "unless" || word == "bool" || word == "on" || word == "ignoring") {
      return Unexpected();
    }
    pos_ += word.size();
    return ParseSelector(word);
  }

  Result<ExprPtr> ParseNumber() {
    size_t start = pos_;
    const char* begin = s_.c_str() + pos_;
    char* end = nullptr;
    double v = std::strtod(begin, &end);
    if (end == begin) return Error("bad number");
    pos_ += static_cast<size_t>(end - begin);
    // "5m" where a number was expected: durations are not numbers in 2.42.
    if (pos_ < s_.size() && IsIdentChar(s_[pos_])) {
      pos_ = start;
      return Error("bad number or duration syntax: \"" + s_.substr(start, 8) + "\"");
    }
    auto e = std::make_shared<Expr>();
    e->number = v;
    return e;
  }

  Result<std::string> ParseString() {
    SkipSpace();
    if (pos_ >= s_.size()) return Error("expected a string, found end of input");
    char q = s_[pos_];
    if (q != '"' && q != '\'' && q != '`') return Error("expected a string");
    ++pos_;
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) return Error("unterminated quoted string");
      char c = s_[pos_++];
      if (c == q) return out;
      if (c == '\\' && q != '`') {
        if (pos_ >= s_.size()) return Error("unterminated quoted string");
        char e = s_[pos_++];
        switch (e) {
          case 'n':
            out += '\n';
            break;
          case 't':
            out += '\t';
            break;
          case 'r':
            out += '\r';
            break;
          case 'a':
            out += '\a';
            break;
          case 'b':
            out += '\b';
            break;
          case 'f':
            out += '\f';
            break;
          case 'v':
            out += '\v';
            break;
          case '\\':
          case '"':
          case '\'':
            out += e;
            break;
          case 'x': {
            if (pos_ + 2 > s_.size()) return Error("bad escape in string");
            std::string hex = s_.substr(pos_, 2);
            if (hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
              return Error("bad escape in string");
            }
            out += static_cast<char>(std::stoi(hex, nullptr, 16));
            pos_ += 2;
            break;
          }
          case 'u': {
            if (pos_ + 4 > s_.size()) return Error("bad escape in string");
            std::string hex = s_.substr(pos_, 4);
            if (hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
              return Error("bad escape in string");
            }
            unsigned cp = static_cast<unsigned>(std::stoul(hex, nullptr, 16));
            pos_ += 4;
            if (cp >= 0xD800 && cp <= 0xDFFF) return Error("bad escape in string");
            if (cp < 0x80) {
              out += static_cast<char>(cp);
            } else if (cp < 0x800) {
              out += static_cast<char>(0xC0 | (cp >> 6));
              out += static_cast<char>(0x80 | (cp & 0x3F));
            } else {
              out += static_cast<char>(0xE0 | (cp >> 12));
              out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
              out += static_cast<char>(0x80 | (cp & 0x3F));
            }
            break;
          }
          default:
            return Error(std::string("unknown escape sequence '\\") + e + "'");
        }
      } else {
        out += c;
      }
    }
  }

  // `name` (may be empty) and an optional {matchers}.
  Result<ExprPtr> ParseSelector(const std::string& name) {
    auto e = std::make_shared<Expr>();
    e->kind = Expr::Kind::kSelector;
    e->type = ValueType::kVector;
    if (!name.empty()) {
      Result<Matcher> m = Matcher::Make(Matcher::Op::kEqual, kMetricName, name);
      if (!m.ok()) return m.status();
      e->matchers.push_back(std::move(*m));
    }
    if (Accept('{')) {
      while (!Accept('}')) {
        std::string label = TakeWord();
        if (label.empty() || label.find(':') != std::string::npos) {
          return Error("expected a label name in the label matchers");
        }
        SkipSpace();
        Matcher::Op op;
        if (s_.compare(pos_, 2, "=~") == 0) {
          op = Matcher::Op::kRegex;
          pos_ += 2;
        } else if (s_.compare(pos_, 2, "!~") == 0) {
          op = Matcher::Op::kNotRegex;
          pos_ += 2;
        } else if (s_.compare(pos_, 2, "!=") == 0) {
          op = Matcher::Op::kNotEqual;
          pos_ += 2;
        } else if (s_.compare(pos_, 1, "=") == 0) {
          op = Matcher::Op::kEqual;
          pos_ += 1;
        } else {
          return Error("expected a label matching operator (=, !=, =~, !~) after \"" + label +
                       "\"");
        }
        Result<std::string> value = ParseString();
        if (!value.ok()) return value.status();
        if (label == kMetricName && !name.empty()) {
          return Error("metric name must not be set twice: \"" + name + "\" or \"" + *value + "\"");
        }
        Result<Matcher> m = Matcher::Make(op, label, std::move(*value));
        if (!m.ok()) return m.status();
        e->matchers.push_back(std::move(*m));
        if (Accept('}')) break;
        KOMOKU_RETURN_IF_ERROR(Expect(','));
      }
    }
    bool non_empty = false;
    for (const Matcher& m : e->matchers) {
      if (!m.Matches("")) non_empty = true;
    }
    if (!non_empty) return Error("vector selector must contain at least one non-empty matcher");
    return e;
  }

  Result<std::vector<std::string>> ParseGrouping() {
    KOMOKU_RETURN_IF_ERROR(Expect('('));
    std::vector<std::string> labels;
    while (!Accept(')')) {
      std::string label = TakeWord();
      if (label.empty() || label.find(':') != std::string::npos) {
        return Error("expected a label name in the grouping");
      }
      labels.push_back(label);
      if (Accept(')')) break;
      KOMOKU_RETURN_IF_ERROR(Expect(','));
    }
    return labels;
  }

  Result<ExprPtr> ParseAggregation(AggOp op) {
    auto e = std::make_shared<Expr>();
    e->kind = Expr::Kind::kAggregate;
    e->type = ValueType::kVector;
    e->agg = op;
    bool grouped = false;
    auto grouping = [&]() -> Status {
      std::string w = PeekWord();
      if (w != "by" && w != "without") return Status::Ok();
      if (grouped) return Error("grouping given twice");
      TakeWord();
      grouped = true;
      e->without = w == "without";
      Result<std::vector<std::string>> labels = ParseGrouping();
      if (!labels.ok()) return labels.status();
      e->grouping = std::move(*labels);
      return Status::Ok();
    };
    KOMOKU_RETURN_IF_ERROR(grouping());
    KOMOKU_RETURN_IF_ERROR(Expect('('));
    Result<ExprPtr> arg = ParseAdditive();
    if (!arg.ok()) return arg;
    if (Peek(',')) return Unsupported("aggregation parameters");
    if (!Accept(')')) return Unexpected();
    KOMOKU_RETURN_IF_ERROR(grouping());
    if ((*arg)->type != ValueType::kVector) {
      return Error(std::string("expected type instant vector in aggregation expression, got ") +
                   TypeName((*arg)->type));
    }
    e->args = {*arg};
    return e;
  }

  Result<ExprPtr> ParseCall(const std::string& name, size_t name_pos) {
    KOMOKU_RETURN_IF_ERROR(Expect('('));
    if (name == "time") {
      if (!Accept(')')) return Error("expected 0 arguments in call to \"time\"");
      auto e = std::make_shared<Expr>();
      e->kind = Expr::Kind::kTime;
      e->type = ValueType::kScalar;
      return e;
    }
    auto f = RangeFuncs().find(name);
    if (f == RangeFuncs().end()) {
      pos_ = name_pos;
      return Unsupported("function \"" + name + "\"");
    }
    Result<ExprPtr> arg = ParseAdditive();
    if (!arg.ok()) return arg;
    if (Peek(',')) return Error("expected 1 argument in call to \"" + name + "\"");
    if (!Accept(')')) return Unexpected();
    ExprPtr a = *arg;
    if (a->type != ValueType::kMatrix) {
      return Error("expected type range vector in call to function \"" + name + "\", got " +
                   TypeName(a->type));
    }
    auto e = std::make_shared<Expr>();
    e->kind = Expr::Kind::kRangeCall;
    e->type = ValueType::kVector;
    e->func = f->second;
    e->args = {a};
    return e;
  }

  const std::string& s_;
  size_t pos_ = 0;
  bool paren_ = false;  // the primary just parsed was in parentheses
  int depth_ = 0;
};

}  // namespace

Result<std::shared_ptr<const Expr>> Parse(const std::string& query) {
  Parser p(query);
  Result<ExprPtr> e = p.ParseAll();
  if (!e.ok()) return e.status();
  return std::shared_ptr<const Expr>(std::move(*e));
}

Result<std::vector<Matcher>> ParseSeriesSelector(const std::string& text) {
  Result<std::shared_ptr<const Expr>> e = Parse(text);
  if (!e.ok()) return e.status();
  if ((*e)->kind != Expr::Kind::kSelector || (*e)->range_ms != 0 || (*e)->offset_ms != 0) {
    return Status::InvalidArgument(
        "match[] must be a series selector, such as name{label=\"value\"}");
  }
  return (*e)->matchers;
}

}  // namespace komoku::promql
