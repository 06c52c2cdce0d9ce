// The part of Home Assistant's Jinja that Komoku evaluates exactly
// (docs/mapping.md#value-templates): one expression between {{ and }} that
// reads the payload (`value`, text) or one field of it (`value_json.a.b`,
// `value_json['a']`), and computes with that one number and constants:
//   + - * / and parentheses, with Jinja's precedence (a filter binds to the
//   operand before it: `value|float*100|round` rounds 100, not the product);
//   filters float, int, round(n[, 'common'|'floor'|'ceil']), abs.
// Also `|default(c)` right after the field (a constant when the field is
// missing), and the whole expression inside
// `{% if <that field> is defined %} ... {% endif %}` (Komoku stores
// nothing for a missing field anyway). A template that reads anything else
// (states(), now(), a second field, other tests and blocks, text around
// the {{ }}) is refused: a guess would store wrong values.
#pragma once

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

struct HaTemplate {
  // The value_json path read, one token per level; empty: `value`.
  std::vector<std::string> path;
  std::vector<NumberOp> ops;
  // The result is a number: a float or int filter, arithmetic or rounding.
  bool numeric = false;
  // `|default(c)`: the value when the field is missing or null (before the
  // steps in `ops`, as Jinja applies the filters in order).
  std::optional<std::variant<double, bool, std::string>> missing_value;
};

// InvalidArgument saying why a template is not one Komoku evaluates.
Result<HaTemplate> ParseHaTemplate(std::string_view text);

}  // namespace komoku::bridge
