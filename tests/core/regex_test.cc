// core/regex.h: RE2 behind Komoku's own interface, what it refuses and
// why, and matches as its two users read them.
#include "core/regex.h"

#include <gtest/gtest.h>

#include <string>

namespace komoku {
namespace {

TEST(RegexTest, FullMatchAndCase) {
  Regex r = *Regex::Compile("kitchen/.*");
  EXPECT_TRUE(r.FullMatch("kitchen/temperature"));
  EXPECT_FALSE(r.FullMatch("the kitchen/temperature"));
  EXPECT_FALSE(Regex::Compile("KITCHEN")->FullMatch("kitchen"));
  EXPECT_TRUE(Regex::Compile("KITCHEN", /*case_sensitive=*/false)->FullMatch("kitchen"));
  EXPECT_TRUE(Regex::Compile("(?i)KITCHEN")->FullMatch("kitchen"));
}

TEST(RegexTest, SearchGivesEachGroupOrNoneForOneThatTookNoPart) {
  Regex r = *Regex::Compile("(?P<n>[0-9]+)(x)?");
  EXPECT_EQ(r.groups(), 2);
  std::optional<Regex::Match> m = r.Search("ab 12 34x", 0);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->begin, 3u);
  EXPECT_EQ(m->end, 5u);
  ASSERT_EQ(m->groups.size(), 2u);
  EXPECT_EQ(m->groups[0], "12");
  EXPECT_FALSE(m->groups[1].has_value());
  m = r.Search("ab 12 34x", 5);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->groups[0], "34");
  EXPECT_EQ(m->groups[1], "x");
  EXPECT_FALSE(r.Search("ab 12 34x", 9));
  EXPECT_FALSE(r.Search("ab", 3));  // past the end
  // Anchors see the whole text, not the place the search starts.
  EXPECT_FALSE(Regex::Compile("^b")->Search("ab", 1));
  EXPECT_TRUE(Regex::Compile("\\bb")->Search("a b", 1));
  EXPECT_FALSE(Regex::Compile("\\bb")->Search("ab", 1));
}

// What RE2 cannot do is refused with its reason, and a count RE2 would
// read as literal text ("a{88888888888888888888}") is refused as Python
// and Go refuse it.
TEST(RegexTest, RefusalsSayWhy) {
  for (const auto& [pattern, why] : std::vector<std::pair<std::string, std::string>>{
           {"a(?=b)", "no back-references or lookarounds"},
           {"(?<!a)b", "no back-references or lookarounds"},
           {"(a)\\1", "no back-references or lookarounds"},
           {"a{1001}", "counts are at most 1000"},
           {"a{2,1001}", "counts are at most 1000"},
           {"a{88888888888888888888}", "counts are at most 1000"},
           {"a{1,88888888888888888888}", "counts are at most 1000"},
           {"a(", "missing )"},
           {"\\q", "invalid escape sequence: \\q"},
           {"\xff", "invalid UTF-8"}}) {
    Result<Regex> r = Regex::Compile(pattern);
    ASSERT_FALSE(r.ok()) << pattern;
    EXPECT_NE(r.status().message().find(why), std::string::npos)
        << pattern << ": " << r.status().message();
  }
  // An unknown escape is no back-reference: nothing said of them.
  EXPECT_EQ(Regex::Compile("\\q").status().message().find("back-references"), std::string::npos);
  // Braces that are no count, in a class or escaped, are text.
  EXPECT_TRUE(Regex::Compile("[{99999}]")->FullMatch("9"));
  EXPECT_TRUE(Regex::Compile("[]{99999}]")->FullMatch("}"));
  EXPECT_TRUE(Regex::Compile("\\{99999}")->FullMatch("{99999}"));
  EXPECT_TRUE(Regex::Compile("a{1000}")->FullMatch(std::string(1000, 'a')));
}

// Linear time whatever the pattern. A backtracking engine's time over
// (a|aa)*b grows 1.6 times with each a (libstdc++'s std::regex, -O2: 28 a's
// 0.09 s, so 60 a's some days); this finishes at once.
TEST(RegexTest, PatternsThatBacktrackExponentiallyTakeLinearTime) {
  const std::string text = std::string(100000, 'a') + "!";
  for (const char* pattern : {"(a|aa)*b", "(a*)*b", "(a|a?)+b", "^(\\w+\\s?)*$"}) {
    Regex r = *Regex::Compile(pattern);
    EXPECT_FALSE(r.FullMatch(text)) << pattern;
    EXPECT_FALSE(r.Search(text, 0)) << pattern;
  }
}

}  // namespace
}  // namespace komoku
