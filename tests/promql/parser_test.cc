#include <gtest/gtest.h>

#include <string>

#include "promql/promql.h"

namespace komoku::promql {
namespace {

TEST(PromqlParser, AcceptsTheSubset) {
  for (const char* q : {
           "x",
           "x{a=\"b\"}",
           "{__name__=~\"x.*\", a!=\"\", b!~'c|d'}",
           "x{a=\"b\",}",
           "x offset 5m",
           "x offset -1h30m",
           "x[5m]",
           "x[1h] offset 1d",
           "rate(x[5m])",
           "increase(x{a=\"1\"}[1h])",
           "delta(x[90s])",
           "changes(x[10m])",
           "avg_over_time(x[1m]) * 2",
           "sum(x)",
           "sum by (a, b) (x)",
           "sum(x) without (a)",
           "avg without () (rate(x[5m]))",
           "count(x) + 1",
           "-x",
           "2 ^ -x",
           "time() - 3600",
           "1 + 2 * 3 % 4 ^ 5",
           "(x)",
           "rate((x[5m]))",
           "Inf",
           "-NaN",
           "0x1f + 1e3 + .5",
           "x # a comment\n + 1",
           "x{a=\"\\u00e9\\x41\\n\"}",
           "x{a=`raw\\`}",
       }) {
    Result<std::shared_ptr<const Expr>> e = Parse(q);
    EXPECT_TRUE(e.ok()) << q << ": " << e.status().ToString();
  }
}

// Each refusal names what Komoku leaves out.
TEST(PromqlParser, RefusesWhatItDoesNotEvaluateByName) {
  const std::pair<const char*, const char*> cases[] = {
      {"irate(x[5m])", "function \"irate\""},
      {"histogram_quantile(0.9, x)", "function \"histogram_quantile\""},
      {"abs(x)", "function \"abs\""},
      {"topk(3, x)", "aggregation \"topk\""},
      {"quantile by (a) (0.5, x)", "aggregation \"quantile\""},
      {"x > 1", "comparison operator \">\""},
      {"x == bool 1", "comparison operator \"==\""},
      {"x and y", "binary operator \"and\""},
      {"x or y", "binary operator \"or\""},
      {"x + y", "two instant vectors"},
      {"x + on(a) y", "\"on\""},
      {"x[5m:1m]", "subqueries"},
      {"rate(x[5m])[10m:]", "subqueries"},
      {"x @ 100", "@ modifier"},
      {"\"text\"", "string literals"},
  };
  for (const auto& [q, what] : cases) {
    Result<std::shared_ptr<const Expr>> e = Parse(q);
    ASSERT_FALSE(e.ok()) << q;
    EXPECT_EQ(e.status().code(), Status::Code::kInvalidArgument) << q;
    EXPECT_NE(e.status().message().find("unsupported: "), std::string::npos)
        << q << ": " << e.status().message();
    EXPECT_NE(e.status().message().find(what), std::string::npos)
        << q << ": " << e.status().message();
  }
}

TEST(PromqlParser, RefusesBadQueriesWithThePlace) {
  for (const char* q : {
           "",
           "x{",
           "x{a=b}",
           "x{a~\"b\"}",
           "{}",
           "{a=\"\"}",
           "{a=~\".*\"}",
           "x{__name__=\"y\"}",
           "x[5]",
           "x[0s]",
           "x[1m5h]",
           "x offset 5m offset 1m",
           "x[5m][5m]",
           "rate(x)",
           "rate(x[5m], 1)",
           "sum(x[5m])",
           "x[5m] + 1",
           "-x[5m]",
           "(x) offset 5m",
           "time(1)",
           "1 +",
           "x{a=~\"(\"}",
           "5m",
           "x )",
       }) {
    Result<std::shared_ptr<const Expr>> e = Parse(q);
    ASSERT_FALSE(e.ok()) << q;
    EXPECT_EQ(e.status().code(), Status::Code::kInvalidArgument) << q;
    EXPECT_EQ(e.status().message().find("unsupported"), std::string::npos)
        << q << ": " << e.status().message();
  }
  Result<std::shared_ptr<const Expr>> e = Parse("sum(x) by (a) + )");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("parse error at char 17"), std::string::npos)
      << e.status().message();
}

// Outside text cannot exhaust the stack: nesting is bounded.
TEST(PromqlParser, RefusesDeepNesting) {
  EXPECT_TRUE(Parse(std::string(50, '(') + "x" + std::string(50, ')')).ok());
  for (const std::string& q : {std::string(100000, '(') + "x" + std::string(100000, ')'),
                               std::string(100000, '-') + "x", "sum(" + std::string(100000, '(')}) {
    Result<std::shared_ptr<const Expr>> e = Parse(q);
    ASSERT_FALSE(e.ok());
    EXPECT_NE(e.status().message().find("nested too deeply"), std::string::npos)
        << e.status().message();
  }
}

// promql_fuzzer-crash-6091930197e376c48275438c86ce9dc8dce0522f: a counted
// repetition that overflowed libstdc++'s std::regex when it read it. RE2,
// as Prometheus's Go regexp, refuses counts over 1000.
TEST(PromqlParser, FuzzRegressionHugeRegexRepetition) {
  const std::string crash =
      "y{a!~\"\xd8\xd8\xd8\xd8\xd8\xd8{2222222222222222222222222222222222222\"}";
  Result<std::shared_ptr<const Expr>> e = Parse(crash);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("invalid regular expression"), std::string::npos)
      << e.status().message();
  Result<std::shared_ptr<const Expr>> big = Parse("x{a=~\"b{1001}\"}");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("invalid repetition size"), std::string::npos)
      << big.status().message();
  EXPECT_FALSE(Parse("x{a=~\"b{1,20000}\"}").ok());
  EXPECT_TRUE(Parse("x{a=~\"b{1000}\"}").ok());
  EXPECT_TRUE(Parse("x{a=~\"b{2,5}c\\\\{99999\"}").ok());  // an escaped brace is no count
}

// promql_fuzzer-crash-6c1db1acbad1bbca1739d42be99e6d4acff01be1: a
// back-reference with a number that overflowed std::regex's reading of it.
// In RE2's syntax, as in Go's, "\777" is an octal escape (U+01FF) and a
// lone "\1" a back-reference, which neither has: the first read, the
// second refused.
TEST(PromqlParser, FuzzRegressionHugeBackReference) {
  // The query text is x{a!~"<01>oI\\7777...Bot."}: the PromQL string holds
  // one backslash before the digits.
  Result<std::shared_ptr<const Expr>> e =
      Parse("x{a!~\"\x01oI\\\\7777777777777777777777777777777777Bot.\"}");
  ASSERT_TRUE(e.ok()) << e.status().message();
  EXPECT_TRUE(Matcher::Make(Matcher::Op::kRegex, "key", "\\777")->Matches("\xc7\xbf"));
  Result<std::shared_ptr<const Expr>> back = Parse("x{a=~\"(b)\\\\1\"}");
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.status().message().find("invalid escape sequence: \\1"), std::string::npos)
      << back.status().message();
  EXPECT_TRUE(Parse("x{a=~\"\\\\.\\\\d\"}").ok());
}

TEST(PromqlParser, DurationsAsPrometheusWritesThem) {
  EXPECT_EQ(*ParseDurationMs("250ms"), 250);
  EXPECT_EQ(*ParseDurationMs("90s"), 90'000);
  EXPECT_EQ(*ParseDurationMs("1h30m"), 5'400'000);
  EXPECT_EQ(*ParseDurationMs("1d"), 86'400'000);
  EXPECT_EQ(*ParseDurationMs("2w"), 14 * 86'400'000LL);
  EXPECT_EQ(*ParseDurationMs("1y"), 365 * 86'400'000LL);
  EXPECT_EQ(*ParseDurationMs("1h1m1s1ms"), 3'661'001);
  for (const char* bad :
       {"", "5", "m", "1m1h", "1h1h", "1.5h", "-1m", "1x", "99999999999999999d"}) {
    EXPECT_FALSE(ParseDurationMs(bad).ok()) << bad;
  }
}

TEST(PromqlParser, RegexMatchersMatchTheWholeValue) {
  Matcher m = *Matcher::Make(Matcher::Op::kRegex, "key", "kitchen/.*");
  EXPECT_TRUE(m.Matches("kitchen/temperature"));
  EXPECT_FALSE(m.Matches("the kitchen/temperature"));
  Matcher a = *Matcher::Make(Matcher::Op::kRegex, "key", "a|b");
  EXPECT_TRUE(a.Matches("a"));
  EXPECT_FALSE(a.Matches("ab"));
  Matcher n = *Matcher::Make(Matcher::Op::kNotRegex, "key", "a");
  EXPECT_TRUE(n.Matches("ab"));
  EXPECT_FALSE(n.Matches("a"));
  Matcher i = *Matcher::Make(Matcher::Op::kRegex, "key", "(?i)KITCHEN.*");
  EXPECT_TRUE(i.Matches("kitchen/x"));
  Matcher empty = *Matcher::Make(Matcher::Op::kRegex, "state", ".*");
  EXPECT_TRUE(empty.Matches(""));
  EXPECT_FALSE(Matcher::Make(Matcher::Op::kRegex, "key", "a(").ok());
}

// Prometheus's regular expressions are Go's (RE2's syntax): Unicode
// classes and flags other than (?i) are read as Prometheus reads them.
TEST(PromqlParser, RegexMatchersReadRe2Syntax) {
  Matcher letters = *Matcher::Make(Matcher::Op::kRegex, "key", "\\pL+/\\d+");
  EXPECT_TRUE(letters.Matches("küche/12"));
  EXPECT_FALSE(letters.Matches("k1/12"));
  Matcher dot = *Matcher::Make(Matcher::Op::kRegex, "key", "(?s)a.b");
  EXPECT_TRUE(dot.Matches("a\nb"));
  EXPECT_FALSE(Matcher::Make(Matcher::Op::kRegex, "key", "a.b")->Matches("a\nb"));
  Result<Matcher> look = Matcher::Make(Matcher::Op::kRegex, "key", "a(?=b)");
  ASSERT_FALSE(look.ok());
  EXPECT_NE(look.status().message().find("invalid regular expression \"a(?=b)\""),
            std::string::npos)
      << look.status().message();
}

// A pattern that a backtracking engine takes exponential time over
// ((a|aa)*b on 200 a's: years for std::regex) is answered in linear time,
// as by Prometheus: the test finishes.
TEST(PromqlParser, RegexMatchersTakeLinearTime) {
  Matcher m = *Matcher::Make(Matcher::Op::kRegex, "key", "(a|aa)*b");
  EXPECT_FALSE(m.Matches(std::string(200, 'a')));
  EXPECT_TRUE(m.Matches(std::string(200, 'a') + "b"));
  Matcher nested = *Matcher::Make(Matcher::Op::kNotRegex, "key", "(a*)*c");
  EXPECT_TRUE(nested.Matches(std::string(250, 'a') + "b"));
}

}  // namespace
}  // namespace komoku::promql
