// The one grammar of durations (core/duration.h): whole numbers with a
// unit, or bare seconds.
#include "core/duration.h"

#include <gtest/gtest.h>

namespace komoku::store {
namespace {

TEST(DurationTest, UnitsFromMillisecondsToWeeks) {
  const std::pair<const char*, int64_t> cases[] = {
      {"500ms", 500},   {"0ms", 0},          {"30s", 30'000},     {"300", 300'000},
      {"10m", 600'000}, {"24h", 86'400'000}, {"7d", 604'800'000}, {"1w", 604'800'000},
  };
  for (const auto& [text, ms] : cases) {
    Result<int64_t> d = ParseDuration(text);
    ASSERT_TRUE(d.ok()) << text << ": " << d.status().ToString();
    EXPECT_EQ(*d, ms) << text;
  }
}

TEST(DurationTest, RefusesWhatIsNoDurationSayingTheGrammar) {
  for (const char* text :
       {"", "ms", "s", "1.5s", "-1s", "10M", "5 m", "1y", "10mss", "1000000000s"}) {
    Result<int64_t> d = ParseDuration(text);
    ASSERT_FALSE(d.ok()) << text;
    EXPECT_NE(d.status().message().find("500ms, 30s"), std::string::npos) << d.status().ToString();
  }
}

}  // namespace
}  // namespace komoku::store
