// The part of Home Assistant's Jinja that Komoku evaluates exactly
// (docs/mapping.md#value-templates). Two forms:
//
// Arithmetic on one number, compiled to steps (HaTemplate::ops): one
// expression between {{ and }} that reads the payload (`value`, text) or one
// field of it (`value_json.a.b`, `value_json['a']`), and computes with that
// one number and constants:
//   + - * / and parentheses, with Jinja's precedence (a filter binds to the
//   operand before it: `value|float*100|round` rounds 100, not the product);
//   filters float, int, round(n[, 'common'|'floor'|'ceil']), abs.
// Also `|default(c)` right after the field (a constant when the field is
// missing), and the whole expression inside
// `{% if <that field> is defined %} ... {% endif %}`.
//
// Everything else that still reads one field (or `value`) and constants
// only is evaluated as Jinja does for each value (HaTemplate::expression):
// comparisons (== != < > <= >=, chained), and/or/not, `x if c else y`,
// `{% if %}{% elif %}{% else %}{% endif %}` around text and {{ }}, the
// operators // % ** ~, the filters float(d), int(d), round, abs,
// default(c[, true]), lower, upper, trim, string, the functions float(x, d)
// and int(x, d), and the tests defined, undefined, none, number, string.
//
// Both forms also take what zigbee2mqtt's own templates need
// (lib/extension/homeassistant.ts: the climate's action dictionary, the
// event entity's action parser): {% set x = ... %} and {% set ns.x = ... %},
// {% for a[, b] in ... %} with {% continue %} and {% break %}, list, tuple
// and dict literals, subscripts and attributes (`m[0]`, `p.pattern`), `in`
// and `not in`, list + list, the functions namespace(), zip() and
// dict.from_keys(pairs), and the filters regex_findall(pattern[,
// ignorecase]), regex_findall_index, selectattr, rejectattr, select, reject
// (tests eq, ne, in, defined, undefined, none), map(attribute=...), first,
// last, list, length, count and to_json.
//
// A template that reads anything else (states(), now(), a second field, a
// name it never set) is refused with the construct named: a guess would
// store wrong values.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/status.h"

namespace komoku::bridge {

// One step applied to the number a template reads, in order.
struct NumberOp {
  enum class Kind {
    kAdd,       // x + operand (or operand + x)
    kSubtract,  // x - operand, or operand - x when operand_first
    kMultiply,
    kDivide,    // x / operand, or operand / x when operand_first
    kRound,     // Python's round(x, digits): the nearest, ties to even
    kFloor,     // round(digits, 'floor')
    kCeil,      // round(digits, 'ceil')
    kTruncate,  // int: toward zero
    kAbs,
  };
  Kind kind;
  double operand = 0;
  bool operand_first = false;
  int digits = 0;
  bool operator==(const NumberOp& o) const {
    return kind == o.kind && operand == o.operand && operand_first == o.operand_first &&
           digits == o.digits;
  }
};

// `ops` applied to x in order, as Python computes them in doubles.
// InvalidArgument on a division by zero or a result that is not finite
// (Home Assistant's template fails there too).
Result<double> ApplyNumberOps(const std::vector<NumberOp>& ops, double x);

// A value while a template is evaluated, with Python's types (Home
// Assistant runs Jinja in Python).
struct TemplateValue {
  enum class Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kTuple,
    kDict,
    kNamespace,  // Jinja's namespace(): attributes a {% set %} changes
  };
  Kind kind = Kind::kUndefined;
  double number = 0;  // kBool (0 or 1), kInt, kFloat
  std::string text;   // kString
  // kList and kTuple: the elements; kDict: (key, value) kTuples in order.
  std::vector<TemplateValue> items;
  // kNamespace: its attributes (a kDict), shared by every copy of it, so
  // that `{% set ns.x = ... %}` in a loop is seen after the loop.
  std::shared_ptr<TemplateValue> attributes;

  static TemplateValue Undefined() { return {}; }
  static TemplateValue None() { return {Kind::kNone, 0, {}, {}, {}}; }
  static TemplateValue Bool(bool b) { return {Kind::kBool, b ? 1.0 : 0.0, {}, {}, {}}; }
  static TemplateValue Int(double i) { return {Kind::kInt, i, {}, {}, {}}; }
  static TemplateValue Float(double d) { return {Kind::kFloat, d, {}, {}, {}}; }
  static TemplateValue String(std::string s) { return {Kind::kString, 0, std::move(s), {}, {}}; }
  bool is_number() const {
    return kind == Kind::kBool || kind == Kind::kInt || kind == Kind::kFloat;
  }
};

// The text Jinja renders for `v` (Python's str(): True, None, 3, 3.0, 0.1;
// an undefined value renders empty).
std::string RenderTemplateValue(const TemplateValue& v);

struct HaTemplate;

// A template evaluated whole for each value (see the top of this file).
// Immutable once parsed: Evaluate may run on any number of threads at once.
class HaExpression {
 public:
  struct Node;
  HaExpression(std::shared_ptr<const Node> root, bool reads_missing);
  ~HaExpression();

  // The template's result for `input`: what `value` or the field it reads
  // holds (kUndefined when the payload lacks the field). The result is
  // the rendered text (literal text between tags kept as Jinja keeps it),
  // stripped as Home Assistant strips it; but native when the output is
  // one value among blanks (a number stays a number). InvalidArgument where
  // Jinja would fail (float of a word without a default, 1 / 0, "a" < 1).
  Result<TemplateValue> Evaluate(const TemplateValue& input) const;

  // The template tests for a missing field (`is defined`, `default`):
  // evaluate it for a payload without the field too. Otherwise such a
  // payload stores nothing, as for every other template.
  bool reads_missing() const { return reads_missing_; }

 private:
  friend Result<HaTemplate> ParseHaEventTemplate(std::string_view text);

  std::shared_ptr<const Node> root_;
  bool reads_missing_;
};

struct HaTemplate {
  // The value_json path read, one token per level; empty: `value`.
  std::vector<std::string> path;
  std::vector<NumberOp> ops;
  // The result is a number: a float or int filter, arithmetic or rounding.
  bool numeric = false;
  // `|default(c)`: the value when the field is missing or null (before the
  // steps in `ops`, as Jinja applies the filters in order).
  std::optional<std::variant<double, bool, std::string>> missing_value;
  // Set for a template that is not arithmetic on one number: evaluated for
  // each value instead of `ops`, `numeric` and `missing_value` (all unset).
  std::shared_ptr<const HaExpression> expression;
};

// The longest template Komoku reads (a discovery config comes from whoever
// may publish on the broker; ha_expression.cc bounds nesting and depth too).
inline constexpr size_t kMaxHaTemplateBytes = 16 * 1024;

// InvalidArgument saying why a template is not one Komoku evaluates,
// naming the construct.
Result<HaTemplate> ParseHaTemplate(std::string_view text);

// ParseHaTemplate's second form only (a template with `expression` set);
// InvalidArgument naming the construct it does not evaluate.
Result<HaTemplate> ParseHaExpressionTemplate(std::string_view text);

// A Home Assistant event entity's value template, which renders a JSON
// object (or a dict) with the event in `event_type`: its `expression`
// yields that event_type, undefined when the object has none (nothing to
// store, as Home Assistant fires no event then).
Result<HaTemplate> ParseHaEventTemplate(std::string_view text);

}  // namespace komoku::bridge
