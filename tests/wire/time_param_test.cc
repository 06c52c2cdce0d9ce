// ParseTimeParam against epoch values computed independently (Python's
// calendar.timegm), for every form the HTTP API takes, and the refusals.
#include "wire/time_param.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace komoku::store {
namespace {

constexpr int64_t kNow = 1700000000000;  // 2023-11-14T22:13:20Z
constexpr int64_t kS = 1000;
constexpr int64_t kMin = 60 * kS;
constexpr int64_t kHour = 60 * kMin;
constexpr int64_t kDay = 24 * kHour;

struct Case {
  const char* text;
  int64_t want_ms;
};

void ExpectAll(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    Result<int64_t> r = ParseTimeParam(c.text, kNow);
    ASSERT_TRUE(r.ok()) << "'" << c.text << "': " << r.status().ToString();
    EXPECT_EQ(*r, c.want_ms) << "'" << c.text << "' is off by " << (*r - c.want_ms) << " ms";
  }
}

TEST(ParseTimeParamTest, NowAndRelative) {
  ExpectAll({
      {"now", kNow},
      {"-24h", kNow - 24 * kHour},
      {"-30m", kNow - 30 * kMin},
      {"-7d", kNow - 7 * kDay},
      {"-2w", kNow - 14 * kDay},
      {"-10s", kNow - 10 * kS},
      {"+5m", kNow + 5 * kMin},
      {"+1d", kNow + kDay},
      {"-0s", kNow},
      {"-999999999s", kNow - 999999999 * kS},
  });
}

TEST(ParseTimeParamTest, EpochSeconds) {
  ExpectAll({
      {"0", 0},
      {"1700000000", 1700000000000},
      {"1700000000.25", 1700000000250},
      {"1700000000.5", 1700000000500},
      {"1700000000.001", 1700000000001},
      {"1.5", 1500},
      {".5", 500},
      {"100000000000", 100000000000000},  // the year 5138, the last one allowed
  });
}

TEST(ParseTimeParamTest, IsoDatesAndTimes) {
  ExpectAll({
      {"1970-01-01", 0},
      {"2000-01-01", 946684800000},
      {"2026-11-21", 1795219200000},
      {"2026-11-21T10:00:00Z", 1795255200000},
      {"2026-11-21T10:00:00z", 1795255200000},
      {"2026-11-21T10:00:00", 1795255200000},  // no offset means UTC
      {"2026-11-21 10:00:00Z", 1795255200000},
      {"2026-11-21T10:00Z", 1795255200000},  // seconds may be left out
      {"2026-11-21T10:00", 1795255200000},
      {"2023-11-14T22:13:20Z", 1700000000000},
      // Fractions.
      {"2026-11-21T10:00:00.5Z", 1795255200500},
      {"2026-11-21T10:00:00.25Z", 1795255200250},
      {"2026-11-21T10:00:00.123Z", 1795255200123},
      {"2026-11-21T10:00:00.123999Z", 1795255200123},  // below a millisecond is cut
      // Offsets: the local time minus the offset.
      {"2026-11-21T10:00:00+01:00", 1795255200000 - kHour},
      {"2026-11-21T10:00:00.5+01:00", 1795255200500 - kHour},
      {"2026-11-21T10:00:00-05:30", 1795255200000 + 5 * kHour + 30 * kMin},
      {"2026-11-21T10:00:00+0100", 1795255200000 - kHour},
      {"2026-11-21T10:00:00+01", 1795255200000 - kHour},
      {"2026-11-21T00:30:00+01:00", 1795219200000 - 30 * kMin},  // the day before in UTC
      {"2026-11-21T23:59:59Z", 1795219200000 + kDay - kS},
      // Leap days.
      {"2024-02-29", 1709164800000},
      {"2024-02-29T12:00:00Z", 1709164800000 + 12 * kHour},
      {"2000-02-29", 951782400000},  // divisible by 400: a leap year
      {"2024-03-01", 1709164800000 + kDay},
      {"2023-12-31", 1703980800000},
  });
}

TEST(ParseTimeParamTest, Refuses) {
  for (const char* text : {
           "",
           "yesterday",
           "Now",
           "now ",
           " now",
           // Relative forms.
           "-",
           "-h",
           "-24",
           "-24H",
           "-24y",
           "-1.5h",
           "--5m",
           "- 5m",
           "-1234567890s",  // more than nine digits
           "+m",
           // Epoch seconds.
           "-5",
           "1e400",
           "100000000001",  // after the year 5138
           "17000000000x",
           "1700000000 ",
           " 1700000000",
           "nan",
           "inf",
           "1,5",
           // Dates.
           "2023-02-29",
           "1900-02-29",  // divisible by 100, not by 400
           "2026-13-01",
           "2026-00-10",
           "2026-04-31",
           "2026-11-00",
           "2026-11-32",
           "2026-1-01",
           "26-11-21T10:00",
           "2026/11/21",
           "2026-11-21T",
           "2026-11-21T1:00",
           "2026-11-21T24:00",
           "2026-11-21T10:60",
           "2026-11-21T10:00:61",
           "2026-11-21T10:00:00.",
           "2026-11-21T10:00:00.Z",
           "2026-11-21T10:00:00ZZ",
           "2026-11-21T10:00:00+",
           "2026-11-21T10:00:00+1",
           "2026-11-21T10:00:00+24:00",
           "2026-11-21T10:00:00+01:60",
           "2026-11-21T10:00:00+01:00x",
           "2026-11-21T10:00:00 UTC",
           "2026-11-21x",
           "2026-11-21+01:00",
       }) {
    Result<int64_t> r = ParseTimeParam(text, kNow);
    EXPECT_FALSE(r.ok()) << "'" << text << "' gave " << (r.ok() ? *r : 0);
    if (!r.ok()) {
      EXPECT_TRUE(r.status().IsInvalidArgument()) << text;
      EXPECT_NE(r.status().message().find("expected"), std::string::npos)
          << "the message says what is expected: " << r.status().message();
    }
  }
}

// strtod reads hex floats; epoch seconds are decimal, as in ParseNumber.
TEST(ParseTimeParamTest, RefusesHexEpochSeconds) {
  for (const char* text : {"0x10", "0X1p3", "0x6553f100"}) {
    Result<int64_t> r = ParseTimeParam(text, kNow);
    EXPECT_FALSE(r.ok()) << "'" << text << "' gave " << (r.ok() ? *r : 0);
  }
}

TEST(ParseTimeParamTest, MessageQuotesTheTextShortened) {
  std::string text = "2026-11-21T10:00:00" + std::string(10000, 'Z');
  Result<int64_t> r = ParseTimeParam(text, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'2026-11-21T10:00:00ZZ"), std::string::npos)
      << r.status().message();
  EXPECT_LT(r.status().message().size(), 300u);
}

TEST(ParseTimeParamTest, RelativeTimesFollowNow) {
  for (int64_t now : {int64_t{0}, int64_t{86400000}, kNow}) {
    Result<int64_t> r = ParseTimeParam("-1d", now);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, now - kDay);
    EXPECT_EQ(*ParseTimeParam("now", now), now);
  }
}

// FormatUtc against Python's calendar.timegm, on both sides of the 32-bit
// time_t range (2038-01-19T03:14:07Z and 1901-12-13T20:45:52Z): time_t is 32
// bits on armhf (Debian 12), so a formatter through gmtime_r wraps there.
TEST(FormatUtcTest, WholeRangeOn32BitTimeT) {
  struct Want {
    int64_t secs;
    const char* text;  // "%Y-%m-%dT%H:%M:%S %a %j"
  };
  const Want wants[] = {
      {1700000000, "2023-11-14T22:13:20 Tue 318"},   {2147483647, "2038-01-19T03:14:07 Tue 019"},
      {2147483648, "2038-01-19T03:14:08 Tue 019"},   {2214131696, "2040-02-29T12:34:56 Wed 060"},
      {4294967296, "2106-02-07T06:28:16 Sun 038"},   {7289654399, "2200-12-31T23:59:59 Wed 365"},
      {253402300799, "9999-12-31T23:59:59 Fri 365"}, {-1, "1969-12-31T23:59:59 Wed 365"},
      {-2147483649, "1901-12-13T20:45:51 Fri 347"},  {-2203891200, "1900-03-01T00:00:00 Thu 060"},
      {-11670912001, "1600-02-29T23:59:59 Tue 060"},
  };
  for (const Want& w : wants) {
    EXPECT_EQ(FormatUtc(w.secs * 1000, "%Y-%m-%dT%H:%M:%S %a %j"), w.text) << w.secs << " s";
    // The second that holds the time, also before 1970.
    EXPECT_EQ(FormatUtc(w.secs * 1000 + 999, "%Y-%m-%dT%H:%M:%S %a %j"), w.text) << w.secs << " s";
  }
}

}  // namespace
}  // namespace komoku::store
