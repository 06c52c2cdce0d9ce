// The parsed form of a query (promql.h's Expr): a tree the parser builds
// and the engine walks. Internal to src/promql.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "promql/promql.h"

namespace komoku::promql {

enum class ValueType { kScalar, kVector, kMatrix };

// The range functions Komoku evaluates, all over one range vector argument.
enum class RangeFunc {
  kRate,
  kIncrease,
  kDelta,
  kChanges,
  kDeriv,
  kAvgOverTime,
  kMinOverTime,
  kMaxOverTime,
  kSumOverTime,
  kCountOverTime,
  kLastOverTime,
};

enum class AggOp { kSum, kAvg, kMin, kMax, kCount };

class Expr {
 public:
  enum class Kind {
    kNumber,     // number
    kSelector,   // name{matchers}, with range_ms > 0 a range vector
    kRangeCall,  // func(selector[range])
    kTime,       // time()
    kAggregate,  // op by|without (labels) (arg)
    kBinary,     // lhs op rhs, op one of + - * / % ^
    kNegate,     // -arg
  };
  Kind kind = Kind::kNumber;
  ValueType type = ValueType::kScalar;

  double number = 0;  // kNumber

  // kSelector
  std::vector<Matcher> matchers;
  int64_t offset_ms = 0;
  int64_t range_ms = 0;  // 0: an instant vector selector

  RangeFunc func = RangeFunc::kRate;  // kRangeCall

  // kAggregate
  AggOp agg = AggOp::kSum;
  bool without = false;
  std::vector<std::string> grouping;

  char op = '+';  // kBinary

  std::vector<std::shared_ptr<Expr>> args;  // kRangeCall, kAggregate, kNegate: 1; kBinary: 2
};

}  // namespace komoku::promql
