// HaExpression: the Jinja that Home Assistant value templates use beyond
// arithmetic on one number (bridge/ha_template.h), evaluated with Python's
// semantics for each value: the values, operators, filters, tests and
// blocks of the tree ha_expression_parse.cc builds (ha_expression_tree.h).

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bridge/ha_expression_tree.h"
#include "bridge/ha_template.h"
#include "core/regex.h"
#include "core/value.h"
#include "wire/input.h"

namespace komoku::bridge {

using Kind = TemplateValue::Kind;

using ha_tree::Fails;
using ha_tree::Node;
using ha_tree::NodePtr;

namespace {

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
    case Kind::kList:
      return "a list";
    case Kind::kTuple:
      return "a tuple";
    case Kind::kDict:
      return "a dict";
    case Kind::kNamespace:
      return "a namespace";
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
    case Kind::kList:
    case Kind::kTuple:
    case Kind::kDict:
      return !v.items.empty();
    case Kind::kNamespace:
      return true;
  }
  return false;
}

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

bool Equal(const TemplateValue& a, const TemplateValue& b);

// The value of `key` in a dict (Python's ==), or null.
const TemplateValue* DictFind(const TemplateValue& dict, const TemplateValue& key) {
  for (const TemplateValue& pair : dict.items) {
    if (Equal(pair.items[0], key)) return &pair.items[1];
  }
  return nullptr;
}

bool Equal(const TemplateValue& a, const TemplateValue& b) {
  if (a.is_number() && b.is_number()) return a.number == b.number;
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::kString:
      return a.text == b.text;
    case Kind::kList:
    case Kind::kTuple:
      if (a.items.size() != b.items.size()) return false;
      for (size_t i = 0; i < a.items.size(); ++i) {
        if (!Equal(a.items[i], b.items[i])) return false;
      }
      return true;
    case Kind::kDict:
      if (a.items.size() != b.items.size()) return false;
      for (const TemplateValue& pair : a.items) {
        const TemplateValue* other = DictFind(b, pair.items[0]);
        if (!other || !Equal(pair.items[1], *other)) return false;
      }
      return true;
    case Kind::kNamespace:
      return a.attributes == b.attributes;
    default:
      return true;
  }
}

TemplateValue Sequence(Kind kind, std::vector<TemplateValue> items) {
  TemplateValue v;
  v.kind = kind;
  v.items = std::move(items);
  return v;
}

TemplateValue Pair(TemplateValue a, TemplateValue b) {
  return Sequence(Kind::kTuple, {std::move(a), std::move(b)});
}

// The elements a {% for %} or a filter walks: a list's or tuple's, a
// dict's keys, a string's characters (bytes: the templates Komoku reads
// iterate lists).
Result<std::vector<TemplateValue>> Elements(const TemplateValue& v) {
  switch (v.kind) {
    case Kind::kList:
    case Kind::kTuple:
      return v.items;
    case Kind::kDict: {
      std::vector<TemplateValue> keys;
      for (const TemplateValue& pair : v.items) keys.push_back(pair.items[0]);
      return keys;
    }
    case Kind::kString: {
      std::vector<TemplateValue> chars;
      for (char c : v.text) chars.push_back(TemplateValue::String(std::string(1, c)));
      return chars;
    }
    case Kind::kUndefined:
      return std::vector<TemplateValue>();  // Jinja iterates undefined as empty
    default:
      return Status::InvalidArgument(std::string("iterates over ") + TypeName(v));
  }
}

// x[key] as Jinja's getitem: a list's or tuple's element (negative from
// the end), a dict's value, a namespace's attribute; undefined when absent.
TemplateValue GetItem(const TemplateValue& x, const TemplateValue& key) {
  if ((x.kind == Kind::kList || x.kind == Kind::kTuple || x.kind == Kind::kString) &&
      key.kind == Kind::kInt) {
    const double size =
        static_cast<double>(x.kind == Kind::kString ? x.text.size() : x.items.size());
    const double i = key.number < 0 ? key.number + size : key.number;
    if (i < 0 || i >= size) return TemplateValue::Undefined();
    const size_t at = static_cast<size_t>(i);
    if (x.kind == Kind::kString) return TemplateValue::String(std::string(1, x.text[at]));
    return x.items[at];
  }
  if (x.kind == Kind::kDict) {
    const TemplateValue* v = DictFind(x, key);
    return v ? *v : TemplateValue::Undefined();
  }
  if (x.kind == Kind::kNamespace && x.attributes) return GetItem(*x.attributes, key);
  return TemplateValue::Undefined();
}

// Jinja's attribute getter of selectattr, rejectattr and map: "a.b" walks
// keys, a number (or digits) indexes.
TemplateValue GetAttribute(const TemplateValue& x, const TemplateValue& attribute) {
  if (attribute.kind != Kind::kString) return GetItem(x, attribute);
  TemplateValue v = x;
  size_t start = 0;
  for (;;) {
    const size_t dot = attribute.text.find('.', start);
    const std::string part = attribute.text.substr(start, dot - start);
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](unsigned char c) {
      return std::isdigit(c);
    });
    v = GetItem(v, digits ? TemplateValue::Int(std::strtod(part.c_str(), nullptr))
                          : TemplateValue::String(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

// Python's `x in y`.
Result<bool> In(const TemplateValue& x, const TemplateValue& y) {
  if (y.kind == Kind::kString) {
    if (x.kind != Kind::kString) {
      return Status::InvalidArgument(std::string("asks whether ") + TypeName(x) + " is in text");
    }
    return y.text.find(x.text) != std::string::npos;
  }
  if (y.kind == Kind::kDict) return DictFind(y, x) != nullptr;
  if (y.kind == Kind::kList || y.kind == Kind::kTuple) {
    for (const TemplateValue& e : y.items) {
      if (Equal(x, e)) return true;
    }
    return false;
  }
  return Status::InvalidArgument(std::string("asks whether a value is in ") + TypeName(y));
}

// Python's repr, for a value inside a rendered list or dict.
std::string Repr(const TemplateValue& v) {
  if (v.kind != Kind::kString) return RenderTemplateValue(v);
  std::string out = "'";
  for (char c : v.text) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  return out + "'";
}

TemplateValue NumberResult(const TemplateValue& a, const TemplateValue& b, double x) {
  const bool ints = a.kind != Kind::kFloat && b.kind != Kind::kFloat;
  return ints ? TemplateValue::Int(x) : TemplateValue::Float(x);
}

// Bounds on what one evaluation builds, so that a template that doubles a
// list or a text in a loop fails instead of taking the memory.
constexpr size_t kMaxItems = 10000;
constexpr size_t kMaxText = 1 << 20;
// What regex_findall searches: an action, a state; longer text is refused,
// which bounds the time of one search.
constexpr size_t kMaxRegexText = 4096;

Result<TemplateValue> Binary(const std::string& op, const TemplateValue& a,
                             const TemplateValue& b) {
  if (op == "==") return TemplateValue::Bool(Equal(a, b));
  if (op == "!=") return TemplateValue::Bool(!Equal(a, b));
  if (op == "~" || (op == "+" && a.kind == Kind::kString && b.kind == Kind::kString)) {
    std::string text = RenderTemplateValue(a) + RenderTemplateValue(b);
    if (text.size() > kMaxText) return Fails("builds text longer than " + std::to_string(kMaxText));
    return TemplateValue::String(std::move(text));
  }
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
  if (op == "+" && a.kind == b.kind && (a.kind == Kind::kList || a.kind == Kind::kTuple)) {
    if (a.items.size() + b.items.size() > kMaxItems) {
      return Fails("builds a list longer than " + std::to_string(kMaxItems));
    }
    std::vector<TemplateValue> items = a.items;
    items.insert(items.end(), b.items.begin(), b.items.end());
    return Sequence(a.kind, std::move(items));
  }
  if (op == "in" || op == "not in") {
    Result<bool> in = In(a, b);
    if (!in.ok()) return in.status();
    return TemplateValue::Bool(*in == (op == "in"));
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

// One evaluation: the value read, the variables {% set %} and {% for %}
// made, and a {% continue %} or {% break %} on its way to its loop.
struct Ctx {
  const TemplateValue& input;
  std::map<std::string, TemplateValue> vars;
  enum class Jump { kNone, kContinue, kBreak } jump = Jump::kNone;
  // Nodes evaluated: a template's loops run over what it holds, but a
  // bound keeps any one value's evaluation short.
  size_t steps = 0;
};
constexpr size_t kMaxSteps = 200000;

Result<TemplateValue> Evaluate(const Node& n, Ctx& ctx);

// The values of n.args[first], n.args[first + 1], ..., in order, or the
// first error.
Result<std::vector<TemplateValue>> EvaluateArgs(const Node& n, size_t first, Ctx& ctx) {
  std::vector<TemplateValue> out;
  out.reserve(n.args.size() > first ? n.args.size() - first : 0);
  for (size_t i = first; i < n.args.size(); ++i) {
    Result<TemplateValue> v = Evaluate(*n.args[i], ctx);
    if (!v.ok()) return v.status();
    out.push_back(std::move(*v));
  }
  return out;
}

// A compiled regular expression: Python's syntax as RE2 reads it
// (core/regex.h), in time linear in the text whatever the pattern: a
// template is whoever may publish a discovery config's, and Python's
// backtracking `re` takes exponential time on `(a|aa)*b`. RE2 reads
// (?P<name>...) groups, classes, counts, alternation and anchors as Python
// does and refuses what needs backtracking (back-references, lookarounds);
// Python's `\Z` is RE2's `\z`. Compiled once per thread and pattern (a
// template's patterns are its constants).
Result<std::shared_ptr<const komoku::Regex>> CompiledRegex(const std::string& pattern,
                                                           bool ignorecase) {
  thread_local std::map<std::pair<std::string, bool>, std::shared_ptr<const komoku::Regex>> cache;
  auto it = cache.find({pattern, ignorecase});
  if (it != cache.end()) return it->second;
  std::string re2_pattern;
  re2_pattern.reserve(pattern.size());
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      re2_pattern += pattern[i + 1] == 'Z' ? std::string("\\z") : pattern.substr(i, 2);
      ++i;
    } else {
      re2_pattern += pattern[i];
    }
  }
  Result<komoku::Regex> re = komoku::Regex::Compile(re2_pattern, !ignorecase);
  if (!re.ok()) {
    return Fails("has the pattern '" + pattern + "' it cannot read (" + re.status().message() +
                 ")");
  }
  auto shared = std::make_shared<const komoku::Regex>(std::move(*re));
  if (cache.size() >= 64) cache.clear();
  cache[{pattern, ignorecase}] = shared;
  return shared;
}

// Python's re.findall: each match, left to right, not overlapping; its
// group when the pattern has one, a tuple of its groups ('' for a group
// that took no part) when more. After an empty match the search goes on
// at the next character.
Result<TemplateValue> FindAll(const TemplateValue& x, const TemplateValue& pattern,
                              bool ignorecase) {
  if (pattern.kind != Kind::kString) return Fails("regex_findall's pattern is not text");
  Result<std::shared_ptr<const komoku::Regex>> re = CompiledRegex(pattern.text, ignorecase);
  if (!re.ok()) return re.status();
  const std::string text = RenderTemplateValue(x);
  if (text.size() > kMaxRegexText) {
    return Fails("searches text longer than " + std::to_string(kMaxRegexText) + " bytes");
  }
  auto group_text = [](const std::optional<std::string_view>& g) {
    return TemplateValue::String(g ? std::string(*g) : std::string());
  };
  std::vector<TemplateValue> out;
  size_t at = 0;
  while (std::optional<komoku::Regex::Match> m = (*re)->Search(text, at)) {
    if (m->groups.empty()) {
      out.push_back(TemplateValue::String(text.substr(m->begin, m->end - m->begin)));
    } else if (m->groups.size() == 1) {
      out.push_back(group_text(m->groups[0]));
    } else {
      std::vector<TemplateValue> tuple;
      tuple.reserve(m->groups.size());
      for (const auto& g : m->groups) tuple.push_back(group_text(g));
      out.push_back(Sequence(Kind::kTuple, std::move(tuple)));
    }
    if (m->end > m->begin) {
      at = m->end;
      continue;
    }
    at = m->end + 1;  // past the empty match's character: all of its UTF-8 bytes
    while (at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80) ++at;
  }
  return Sequence(Kind::kList, std::move(out));
}

// The test of select, reject, selectattr and rejectattr: `name` applied to
// x with its argument.
Result<bool> ApplyTest(const std::string& name, const TemplateValue& x,
                       const std::vector<TemplateValue>& args) {
  if (name == "defined") return x.kind != Kind::kUndefined;
  if (name == "undefined") return x.kind == Kind::kUndefined;
  if (name == "none") return x.kind == Kind::kNone;
  if (args.empty()) return Fails("the test '" + name + "' needs a value to compare");
  if (name == "eq" || name == "equalto" || name == "==") return Equal(x, args[0]);
  if (name == "ne" || name == "!=") return !Equal(x, args[0]);
  if (name == "in") return In(x, args[0]);
  return Fails("has the test '" + name +
               "', which Komoku does not evaluate in select and reject (it evaluates eq, ne, "
               "in, defined, undefined and none)");
}

// A value as JSON, for to_json (Home Assistant's: compact, keys in their order).
Result<nlohmann::ordered_json> ToJson(const TemplateValue& v) {
  switch (v.kind) {
    case Kind::kUndefined:
    case Kind::kNamespace:
      return Fails(std::string("to_json of ") + TypeName(v));
    case Kind::kNone:
      return nlohmann::ordered_json(nullptr);
    case Kind::kBool:
      return nlohmann::ordered_json(v.number != 0);
    case Kind::kInt:
      // Home Assistant's to_json (orjson) writes 64-bit integers and fails
      // beyond them.
      if (v.number >= -9223372036854775808.0 && v.number < 9223372036854775808.0) {
        return nlohmann::ordered_json(static_cast<int64_t>(v.number));
      }
      if (v.number >= 0 && v.number < 18446744073709551616.0) {
        return nlohmann::ordered_json(static_cast<uint64_t>(v.number));
      }
      return Fails("to_json of an integer beyond 64 bits");
    case Kind::kFloat:
      return nlohmann::ordered_json(v.number);
    case Kind::kString:
      // A payload's bytes need not be UTF-8 (Home Assistant drops such a
      // message before any template sees it); JSON text must be.
      if (!store::IsValidUtf8(v.text)) return Fails("to_json of text that is not valid UTF-8");
      return nlohmann::ordered_json(v.text);
    case Kind::kList:
    case Kind::kTuple: {
      nlohmann::ordered_json out = nlohmann::ordered_json::array();
      for (const TemplateValue& e : v.items) {
        Result<nlohmann::ordered_json> j = ToJson(e);
        if (!j.ok()) return j;
        out.push_back(std::move(*j));
      }
      return out;
    }
    case Kind::kDict: {
      nlohmann::ordered_json out = nlohmann::ordered_json::object();
      for (const TemplateValue& pair : v.items) {
        if (pair.items[0].kind != Kind::kString)
          return Fails("to_json of a dict with a key not text");
        if (!store::IsValidUtf8(pair.items[0].text)) {
          return Fails("to_json of a dict with a key that is not valid UTF-8");
        }
        Result<nlohmann::ordered_json> j = ToJson(pair.items[1]);
        if (!j.ok()) return j;
        out[pair.items[0].text] = std::move(*j);
      }
      return out;
    }
  }
  return Fails("to_json of a value it cannot write");
}

// The filters over lists: selectattr, rejectattr, select, reject, map,
// first, last, list, length, count, to_json, regex_findall(_index).
Result<TemplateValue> ListFilter(const Node& n, const TemplateValue& x,
                                 const std::vector<TemplateValue>& args) {
  const std::string& f = n.name;
  if (f == "regex_findall" || f == "regex_findall_index") {
    const size_t index_at = f == "regex_findall_index" ? 1 : 0;
    if (args.empty()) return Fails(f + " needs a pattern");
    const bool ignorecase = args.size() > index_at + 1 && Truthy(args[index_at + 1]);
    Result<TemplateValue> all = FindAll(x, args[0], ignorecase);
    if (!all.ok() || index_at == 0) return all;
    const TemplateValue index = args.size() > 1 ? args[1] : TemplateValue::Int(0);
    TemplateValue one = GetItem(*all, index);
    if (one.kind == Kind::kUndefined) return Fails("regex_findall_index: no match at that index");
    return one;
  }
  if (f == "to_json") {
    Result<nlohmann::ordered_json> j = ToJson(x);
    if (!j.ok()) return j.status();
    return TemplateValue::String(j->dump());
  }
  Result<std::vector<TemplateValue>> elements = Elements(x);
  if (!elements.ok()) return Fails(f + " " + elements.status().message());
  if (f == "list") return Sequence(Kind::kList, std::move(*elements));
  if (f == "length" || f == "count") {
    return TemplateValue::Int(
        static_cast<double>(x.kind == Kind::kString ? x.text.size() : elements->size()));
  }
  if (f == "first" || f == "last") {
    if (elements->empty()) return TemplateValue::Undefined();
    return f == "first" ? elements->front() : elements->back();
  }
  if (f == "map") {
    // map(attribute=a), the one form Komoku reads.
    if (n.names.size() != 1 || n.names[0] != "attribute" || args.size() != 1) {
      return Fails("has map() without attribute=, which Komoku does not evaluate");
    }
    std::vector<TemplateValue> out;
    for (const TemplateValue& e : *elements) out.push_back(GetAttribute(e, args[0]));
    return Sequence(Kind::kList, std::move(out));
  }
  // select, reject, selectattr, rejectattr.
  const bool by_attribute = f == "selectattr" || f == "rejectattr";
  const bool keep = f == "select" || f == "selectattr";
  if (by_attribute && args.empty()) return Fails(f + " needs an attribute");
  const size_t test_at = by_attribute ? 1 : 0;
  std::string test = "truthy";
  if (args.size() > test_at) {
    if (args[test_at].kind != Kind::kString) return Fails(f + "'s test is not a name");
    test = args[test_at].text;
  }
  const std::vector<TemplateValue> test_args(args.begin() + std::min(args.size(), test_at + 1),
                                             args.end());
  std::vector<TemplateValue> out;
  for (const TemplateValue& e : *elements) {
    const TemplateValue tested = by_attribute ? GetAttribute(e, args[0]) : e;
    Result<bool> r =
        test == "truthy" ? Result<bool>(Truthy(tested)) : ApplyTest(test, tested, test_args);
    if (!r.ok()) return r.status();
    if (*r == keep) out.push_back(e);
  }
  return Sequence(Kind::kList, std::move(out));
}

Result<TemplateValue> Filter(const Node& n, const TemplateValue& x, Ctx& ctx) {
  Result<std::vector<TemplateValue>> evaluated = EvaluateArgs(n, 1, ctx);
  if (!evaluated.ok()) return evaluated.status();
  std::vector<TemplateValue>& args = *evaluated;
  const std::string& f = n.name;
  static const char* const kListFilters[] = {"regex_findall", "regex_findall_index",
                                             "to_json",       "list",
                                             "length",        "count",
                                             "first",         "last",
                                             "map",           "select",
                                             "reject",        "selectattr",
                                             "rejectattr"};
  for (const char* lf : kListFilters) {
    if (f == lf) return ListFilter(n, x, args);
  }
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

// The length of the whitespace character Python's str.isspace() knows at
// the start (`back` false) or the end (`back` true) of UTF-8 `s`; 0 when
// there is none: the ASCII blanks and \x1c-\x1f, U+0085, U+00A0, U+1680,
// U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
size_t PythonSpaceAt(std::string_view s, bool back) {
  if (s.empty()) return 0;
  const unsigned char c = static_cast<unsigned char>(back ? s.back() : s.front());
  if (c < 0x80) return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) ? 1 : 0;
  for (size_t n : {size_t{2}, size_t{3}}) {
    if (s.size() < n) break;
    const std::string_view u = back ? s.substr(s.size() - n) : s.substr(0, n);
    const auto b = [&](size_t i) { return static_cast<unsigned char>(u[i]); };
    if (n == 2 && b(0) == 0xc2 && (b(1) == 0x85 || b(1) == 0xa0)) return 2;
    if (n == 3) {
      const unsigned cp = ((b(0) & 0x0fu) << 12) | ((b(1) & 0x3fu) << 6) | (b(2) & 0x3fu);
      if ((b(0) & 0xf0) != 0xe0 || (b(1) & 0xc0) != 0x80 || (b(2) & 0xc0) != 0x80) return 0;
      if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
          cp == 0x202f || cp == 0x205f || cp == 0x3000) {
        return 3;
      }
    }
  }
  return 0;
}

// Python's str.strip() without arguments, on UTF-8 text.
std::string_view PythonStrip(std::string_view s) {
  while (size_t n = PythonSpaceAt(s, false)) s.remove_prefix(n);
  while (size_t n = PythonSpaceAt(s, true)) s.remove_suffix(n);
  return s;
}

// What a template (a body, an {% if %}, a {% for %}) outputs, as Jinja
// renders it: every value's text and every piece of literal text between
// tags as written (blanks included; `{%-` and `-%}` have trimmed it at
// parse time). Home Assistant strips the whole rendered result of a value
// template (Template.async_render_with_possible_json_value's .strip(),
// Python's whitespace: PythonStrip), so a template whose only non-blank
// output is one value gives that value itself: its text is what the
// stripped result would be, and a number stays a number ("  21.5 " is
// 21.5).
struct Rendered {
  std::string text;
  size_t values = 0;   // outputs that are not blank text
  TemplateValue lone;  // the first of them

  Status Add(const TemplateValue& v) {
    if (v.kind == Kind::kUndefined) return Status::Ok();  // renders as nothing
    std::string s = RenderTemplateValue(v);
    if (v.kind != Kind::kString || !PythonStrip(s).empty()) {
      if (values++ == 0) lone = v;
    }
    if (text.size() + s.size() > kMaxText) {
      return Fails("renders text longer than " + std::to_string(kMaxText));
    }
    text += s;
    return Status::Ok();
  }

  TemplateValue Finish() const {
    if (values == 1 && lone.kind != Kind::kString) return lone;
    return TemplateValue::String(std::string(PythonStrip(text)));
  }
};

// Renders block `n` (kBody, kIf, kFor) into `out`.
Status RenderInto(const Node& n, Ctx& ctx, Rendered* out) {
  using Op = Node::Op;
  if (++ctx.steps > kMaxSteps) {
    return Fails("takes more than " + std::to_string(kMaxSteps) + " steps for one value");
  }
  switch (n.op) {
    case Op::kBody:
      for (const NodePtr& a : n.args) {
        if (ctx.jump != Ctx::Jump::kNone) break;  // the rest of a loop's body is skipped
        if (a->op == Op::kBody || a->op == Op::kIf || a->op == Op::kFor) {
          Status st = RenderInto(*a, ctx, out);
          if (!st.ok()) return st;
          continue;
        }
        Result<TemplateValue> v = Evaluate(*a, ctx);
        if (!v.ok()) return v.status();
        Status st = out->Add(*v);
        if (!st.ok()) return st;
      }
      return Status::Ok();
    case Op::kIf: {
      Result<TemplateValue> c = Evaluate(*n.args[0], ctx);
      if (!c.ok()) return c.status();
      if (Truthy(*c)) return RenderInto(*n.args[1], ctx, out);
      if (n.args.size() > 2) return RenderInto(*n.args[2], ctx, out);
      return Status::Ok();
    }
    case Op::kFor: {
      Result<TemplateValue> seq = Evaluate(*n.args[0], ctx);
      if (!seq.ok()) return seq.status();
      Result<std::vector<TemplateValue>> elements = Elements(*seq);
      if (!elements.ok()) return Fails("{% for %} " + elements.status().message());
      // Names set in the loop end with it (Jinja's scoping); a namespace's
      // attributes live on, shared.
      const std::map<std::string, TemplateValue> outer = ctx.vars;
      for (const TemplateValue& e : *elements) {
        if (n.names.size() == 1) {
          ctx.vars[n.names[0]] = e;
        } else {
          if ((e.kind != Kind::kList && e.kind != Kind::kTuple) ||
              e.items.size() != n.names.size()) {
            return Fails("{% for %} unpacks " + std::string(TypeName(e)) + " into " +
                         std::to_string(n.names.size()) + " names");
          }
          for (size_t i = 0; i < n.names.size(); ++i) ctx.vars[n.names[i]] = e.items[i];
        }
        Status st = RenderInto(*n.args[1], ctx, out);
        if (!st.ok()) return st;
        const bool stop = ctx.jump == Ctx::Jump::kBreak;
        ctx.jump = Ctx::Jump::kNone;
        if (stop) break;
      }
      ctx.vars = outer;
      return Status::Ok();
    }
    default:
      return Fails("renders a node that is no block");
  }
}

Result<TemplateValue> Evaluate(const Node& n, Ctx& ctx) {
  using Op = Node::Op;
  if (++ctx.steps > kMaxSteps) {
    return Fails("takes more than " + std::to_string(kMaxSteps) + " steps for one value");
  }
  switch (n.op) {
    case Op::kConstant:
      return n.value;
    case Op::kInput:
      return ctx.input;
    case Op::kBody:
    case Op::kIf:
    case Op::kFor: {
      Rendered out;
      Status st = RenderInto(n, ctx, &out);
      if (!st.ok()) return st;
      return out.Finish();
    }
    case Op::kChoose: {
      Result<TemplateValue> c = Evaluate(*n.args[0], ctx);
      if (!c.ok()) return c;
      if (Truthy(*c)) return Evaluate(*n.args[1], ctx);
      if (n.args.size() > 2) return Evaluate(*n.args[2], ctx);
      return TemplateValue::Undefined();
    }
    case Op::kAnd:
    case Op::kOr: {
      Result<TemplateValue> a = Evaluate(*n.args[0], ctx);
      if (!a.ok()) return a;
      if (Truthy(*a) == (n.op == Op::kOr)) return a;
      return Evaluate(*n.args[1], ctx);
    }
    case Op::kNot: {
      Result<TemplateValue> a = Evaluate(*n.args[0], ctx);
      if (!a.ok()) return a;
      return TemplateValue::Bool(!Truthy(*a));
    }
    case Op::kNegate: {
      Result<TemplateValue> a = Evaluate(*n.args[0], ctx);
      if (!a.ok()) return a;
      if (!a->is_number()) return Fails(std::string("negates ") + TypeName(*a));
      return NumberResult(*a, *a, -a->number);
    }
    case Op::kBinary: {
      // Comparisons chain (a < b < c): args[0] op args[1], then args[1] ...
      Result<TemplateValue> a = Evaluate(*n.args[0], ctx);
      if (!a.ok()) return a;
      Result<TemplateValue> b = Evaluate(*n.args[1], ctx);
      if (!b.ok()) return b;
      return Binary(n.name, *a, *b);
    }
    case Op::kFilter: {
      Result<TemplateValue> x = Evaluate(*n.args[0], ctx);
      if (!x.ok()) return x;
      return Filter(n, *x, ctx);
    }
    case Op::kTest: {
      Result<TemplateValue> x = Evaluate(*n.args[0], ctx);
      if (!x.ok()) return x;
      bool r = false;
      if (n.name == "defined") r = x->kind != Kind::kUndefined;
      if (n.name == "undefined") r = x->kind == Kind::kUndefined;
      if (n.name == "none") r = x->kind == Kind::kNone;
      if (n.name == "number") r = x->is_number();
      if (n.name == "string") r = x->kind == Kind::kString;
      return TemplateValue::Bool(r);
    }
    case Op::kList:
    case Op::kTuple:
    case Op::kDict: {
      Result<std::vector<TemplateValue>> evaluated = EvaluateArgs(n, 0, ctx);
      if (!evaluated.ok()) return evaluated.status();
      std::vector<TemplateValue>& items = *evaluated;
      if (n.op != Op::kDict) {
        return Sequence(n.op == Op::kList ? Kind::kList : Kind::kTuple, std::move(items));
      }
      TemplateValue dict = Sequence(Kind::kDict, {});
      for (size_t i = 0; i + 1 < items.size(); i += 2) {
        if (items[i].kind == Kind::kList || items[i].kind == Kind::kDict) {
          return Fails(std::string("has ") + TypeName(items[i]) + " as a dict key");
        }
        bool replaced = false;  // a key given twice keeps its place, takes the last value
        for (TemplateValue& pair : dict.items) {
          if (Equal(pair.items[0], items[i])) {
            pair.items[1] = items[i + 1];
            replaced = true;
          }
        }
        if (!replaced) dict.items.push_back(Pair(items[i], items[i + 1]));
      }
      return dict;
    }
    case Op::kVar: {
      auto it = ctx.vars.find(n.name);
      return it == ctx.vars.end() ? TemplateValue::Undefined() : it->second;
    }
    case Op::kAttr:
    case Op::kItem: {
      Result<TemplateValue> x = Evaluate(*n.args[0], ctx);
      if (!x.ok()) return x;
      if (n.op == Op::kAttr) return GetItem(*x, TemplateValue::String(n.name));
      Result<TemplateValue> key = Evaluate(*n.args[1], ctx);
      if (!key.ok()) return key;
      return GetItem(*x, *key);
    }
    case Op::kCall: {
      Result<std::vector<TemplateValue>> evaluated = EvaluateArgs(n, 0, ctx);
      if (!evaluated.ok()) return evaluated.status();
      std::vector<TemplateValue>& args = *evaluated;
      const size_t positional = args.size() - n.names.size();
      if (n.name == "namespace" || n.name == "dict") {
        TemplateValue dict = Sequence(Kind::kDict, {});
        if (positional > 1) return Fails(n.name + "() takes at most one list of pairs");
        if (positional == 1) {
          Result<std::vector<TemplateValue>> pairs = Elements(args[0]);
          if (!pairs.ok()) return Fails(n.name + "() " + pairs.status().message());
          for (const TemplateValue& pair : *pairs) {
            if ((pair.kind != Kind::kList && pair.kind != Kind::kTuple) || pair.items.size() != 2) {
              return Fails(n.name + "() of an element that is no pair");
            }
            dict.items.push_back(Pair(pair.items[0], pair.items[1]));
          }
        }
        for (size_t i = 0; i < n.names.size(); ++i) {
          dict.items.push_back(Pair(TemplateValue::String(n.names[i]), args[positional + i]));
        }
        if (n.name == "dict") return dict;
        TemplateValue ns;
        ns.kind = Kind::kNamespace;
        ns.attributes = std::make_shared<TemplateValue>(std::move(dict));
        return ns;
      }
      if (n.name == "dict.from_keys") {
        // Not Python's dict.fromkeys: zigbee2mqtt's event template passes
        // (key, value) pairs and means the dict they make.
        if (args.size() != 1) return Fails("dict.from_keys() takes one list of pairs");
        Result<std::vector<TemplateValue>> pairs = Elements(args[0]);
        if (!pairs.ok()) return Fails("dict.from_keys() " + pairs.status().message());
        TemplateValue dict = Sequence(Kind::kDict, {});
        for (const TemplateValue& pair : *pairs) {
          if ((pair.kind != Kind::kList && pair.kind != Kind::kTuple) || pair.items.size() != 2) {
            return Fails("dict.from_keys() of an element that is no pair");
          }
          bool replaced = false;
          for (TemplateValue& known : dict.items) {
            if (Equal(known.items[0], pair.items[0])) {
              known.items[1] = pair.items[1];
              replaced = true;
            }
          }
          if (!replaced) dict.items.push_back(Pair(pair.items[0], pair.items[1]));
        }
        return dict;
      }
      // zip: tuples of the i-th elements, as long as the shortest.
      std::vector<std::vector<TemplateValue>> lists;
      for (const TemplateValue& a : args) {
        Result<std::vector<TemplateValue>> e = Elements(a);
        if (!e.ok()) return Fails("zip() " + e.status().message());
        lists.push_back(std::move(*e));
      }
      std::vector<TemplateValue> out;
      for (size_t i = 0; !lists.empty(); ++i) {
        std::vector<TemplateValue> tuple;
        for (const auto& l : lists) {
          if (i >= l.size()) return Sequence(Kind::kList, std::move(out));
          tuple.push_back(l[i]);
        }
        out.push_back(Sequence(Kind::kTuple, std::move(tuple)));
      }
      return Sequence(Kind::kList, std::move(out));
    }
    case Op::kSet: {
      Result<TemplateValue> v = Evaluate(*n.args[0], ctx);
      if (!v.ok()) return v;
      if (n.names.empty()) {
        ctx.vars[n.name] = std::move(*v);
        return TemplateValue::Undefined();
      }
      auto it = ctx.vars.find(n.name);
      if (it == ctx.vars.end() || it->second.kind != Kind::kNamespace) {
        return Fails("sets an attribute of '" + n.name + "', which is no namespace()");
      }
      TemplateValue& attributes = *it->second.attributes;
      for (TemplateValue& pair : attributes.items) {
        if (pair.items[0].kind == Kind::kString && pair.items[0].text == n.names[0]) {
          pair.items[1] = std::move(*v);
          return TemplateValue::Undefined();
        }
      }
      attributes.items.push_back(Pair(TemplateValue::String(n.names[0]), std::move(*v)));
      return TemplateValue::Undefined();
    }
    case Op::kContinue:
      ctx.jump = Ctx::Jump::kContinue;
      return TemplateValue::Undefined();
    case Op::kBreak:
      ctx.jump = Ctx::Jump::kBreak;
      return TemplateValue::Undefined();
    case Op::kEventType: {
      Result<TemplateValue> v = Evaluate(*n.args[0], ctx);
      if (!v.ok()) return v;
      if (v->kind == Kind::kDict) {
        TemplateValue type = GetItem(*v, TemplateValue::String("event_type"));
        return type.kind == Kind::kString ? type : TemplateValue::Undefined();
      }
      if (v->kind != Kind::kString) return TemplateValue::Undefined();
      const nlohmann::json j = nlohmann::json::parse(v->text, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object()) {
        return Fails("renders '" + v->text + "', not a JSON object with event_type");
      }
      auto type = j.find("event_type");
      if (type == j.end() || !type->is_string()) return TemplateValue::Undefined();
      return TemplateValue::String(type->get<std::string>());
    }
  }
  return Fails("has a node Komoku cannot evaluate");
}

}  // namespace

HaExpression::HaExpression(std::shared_ptr<const Node> root, bool reads_missing)
    : root_(std::move(root)), reads_missing_(reads_missing) {}
HaExpression::~HaExpression() = default;

Result<TemplateValue> HaExpression::Evaluate(const TemplateValue& input) const {
  Ctx ctx{input, {}, Ctx::Jump::kNone, 0};
  return komoku::bridge::Evaluate(*root_, ctx);
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
    case Kind::kList:
    case Kind::kTuple: {
      std::string s = v.kind == Kind::kList ? "[" : "(";
      for (size_t i = 0; i < v.items.size(); ++i) s += (i ? ", " : "") + Repr(v.items[i]);
      if (v.kind == Kind::kTuple && v.items.size() == 1) s += ",";
      return s + (v.kind == Kind::kList ? "]" : ")");
    }
    case Kind::kDict: {
      std::string s = "{";
      for (size_t i = 0; i < v.items.size(); ++i) {
        s += (i ? ", " : "") + Repr(v.items[i].items[0]) + ": " + Repr(v.items[i].items[1]);
      }
      return s + "}";
    }
    case Kind::kNamespace:
      return "<Namespace " + (v.attributes ? RenderTemplateValue(*v.attributes) : "{}") + ">";
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

}  // namespace komoku::bridge
