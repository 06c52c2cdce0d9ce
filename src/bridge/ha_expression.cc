// HaExpression: the Jinja that Home Assistant value templates use beyond
// arithmetic on one number (bridge/ha_template.h), parsed into a tree and
// evaluated with Python's semantics for each value.

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "bridge/ha_template.h"
#include "core/regex.h"
#include "core/value.h"
#include "wire/input.h"

namespace komoku::bridge {

using Kind = TemplateValue::Kind;

struct HaExpression::Node {
  enum class Op {
    kConstant,  // value
    kInput,     // what `value` or the one field reads
    kBody,      // args rendered and joined, text kept (see Rendered)
    kIf,        // {% if args[0] %} args[1] {% else %} args[2] (a kBody or kIf)
    kChoose,    // `args[1] if args[0] else args[2]` (absent: undefined)
    kAnd,
    kOr,
    kNot,
    kNegate,
    kBinary,     // name: + - * / // % ** ~ == != < > <= >= in, not in
    kFilter,     // name: a filter (kFilters); args[0] the value, then its arguments
    kTest,       // name: defined undefined none number string
    kList,       // args: the elements
    kTuple,      // args: the elements
    kDict,       // args: key, value, key, value, ...
    kVar,        // name: a variable a {% set %} or {% for %} made
    kAttr,       // args[0].name (a dict's key, a namespace's attribute)
    kItem,       // args[0][args[1]]
    kCall,       // name: namespace zip dict dict.from_keys
    kSet,        // {% set name = args[0] %}, or name.names[0] = args[0]
    kFor,        // {% for names in args[0] %} args[1] {% endfor %}
    kContinue,   // {% continue %}
    kBreak,      // {% break %}
    kEventType,  // the event_type of args[0] (a JSON object's text, or a dict)
  };
  Op op = Op::kConstant;
  std::string name;
  TemplateValue value;
  std::vector<std::shared_ptr<const Node>> args;
  // kFilter and kCall: the names of the keyword arguments, which are the
  // last args; kFor: the loop's targets; kSet: the attribute set, if any.
  std::vector<std::string> names;
  int depth = 1;  // of the tree below and with this node
};

namespace {

using Node = HaExpression::Node;
using NodePtr = std::shared_ptr<const Node>;

// Every node with arguments is made here, so that each knows its depth.
NodePtr Make(Node::Op op, std::string name, std::vector<NodePtr> args,
             std::vector<std::string> names = {}) {
  auto n = std::make_shared<Node>();
  n->op = op;
  n->name = std::move(name);
  n->args = std::move(args);
  n->names = std::move(names);
  for (const NodePtr& a : n->args) {
    if (a) n->depth = std::max(n->depth, a->depth + 1);
  }
  return n;
}

// A template is configuration anybody who may publish on the broker can
// send (discovery), so what it may cost is bounded: its length, how deep
// its brackets, signs, `not`s and blocks nest (each level costs the parser
// a few stack frames), and how deep its tree is (each level costs the
// evaluator one): `1+1+1...` is a tree as deep as it is long. Real ones
// (zigbee2mqtt's longest, its event template, is 1.2 KB and 11 deep) stay
// far below.
constexpr size_t kMaxTemplateBytes = kMaxHaTemplateBytes;
constexpr int kMaxNesting = 32;
constexpr int kMaxTreeDepth = 200;

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
