// The tree of a parsed HaExpression (bridge/ha_template.h): its nodes and
// the bounds on what a template may cost, shared by the parser
// (ha_expression_parse.cc) and the evaluator (ha_expression.cc). Internal
// to the bridge library.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bridge/ha_template.h"
#include "common/status.h"

namespace komoku::bridge {

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

namespace ha_tree {

using Node = HaExpression::Node;
using NodePtr = std::shared_ptr<const Node>;

// Every node with arguments is made here, so that each knows its depth.
inline NodePtr Make(Node::Op op, std::string name, std::vector<NodePtr> args,
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

inline NodePtr Constant(TemplateValue v) {
  auto n = std::make_shared<Node>();
  n->value = std::move(v);
  return n;
}

// Every refusal of a template, at parsing or evaluation: its message
// completes "the template ...".
inline Status Fails(const std::string& why) { return Status::InvalidArgument(why); }

}  // namespace ha_tree
}  // namespace komoku::bridge
