// The /metrics exposition: every declared family follows the conventions
// promtool checks, the writer writes nothing without HELP and TYPE, the
// store's counters are there at 0 before their first event, and
// docs/http-api.md lists every family. (Integration test 21 runs promtool on
// the real binary's answer.)
#include "query/metrics.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

namespace komoku::query {
namespace {

using MT = MetricType;

TEST(MetricFamiliesTest, EveryDeclaredFamilyFollowsTheConventions) {
  std::set<std::string_view> names;
  for (const MetricFamily& f : DeclaredFamilies()) {
    EXPECT_TRUE(CheckFamily(f).ok()) << CheckFamily(f).message();
    EXPECT_TRUE(names.insert(f.name).second) << f.name << " declared twice";
  }
  EXPECT_GT(names.size(), 50u);
}

TEST(MetricFamiliesTest, CheckFamilyRefusesWhatPromtoolWouldFlag) {
  EXPECT_TRUE(CheckFamily({"a_total", MT::kCounter, "A."}).ok());
  EXPECT_TRUE(CheckFamily({"a_seconds", MT::kHistogram, "A."}).ok());
  EXPECT_FALSE(CheckFamily({"a_total", MT::kCounter, ""}).ok());  // no help
  EXPECT_FALSE(CheckFamily({"a_total", MT::kCounter, "two\nlines"}).ok());
  EXPECT_FALSE(CheckFamily({"a", MT::kCounter, "A."}).ok());               // counter without _total
  EXPECT_FALSE(CheckFamily({"a_total", MT::kGauge, "A."}).ok());           // _total on a gauge
  EXPECT_FALSE(CheckFamily({"a_micros_total", MT::kCounter, "A."}).ok());  // not a base unit
  EXPECT_FALSE(CheckFamily({"a_step_max_micros", MT::kGauge, "A."}).ok());
  EXPECT_FALSE(CheckFamily({"a_milliseconds", MT::kGauge, "A."}).ok());
  EXPECT_FALSE(CheckFamily({"9a", MT::kGauge, "A."}).ok());
  EXPECT_FALSE(CheckFamily({"a-b", MT::kGauge, "A."}).ok());
}

TEST(ExpositionWriterTest, WritesHelpAndTypeBeforeSamples) {
  ExpositionWriter w({{"a_total", MT::kCounter, "Things that happened."},
                      {"h_seconds", MT::kHistogram, "How long with a \\ backslash."}});
  ASSERT_TRUE(w.Begin("a_total"));
  w.Sample("", "", int64_t{3});
  w.Sample("", Labels("k", "x\"y\\z\nw"), 0.5);
  ASSERT_TRUE(w.Begin("h_seconds"));
  w.Sample("_bucket", Labels("le", "+Inf"), int64_t{2});
  w.Sample("_sum", "", 1.25);
  w.Sample("_count", "", int64_t{2});
  EXPECT_TRUE(w.errors().empty());
  EXPECT_EQ(w.text(),
            "# HELP a_total Things that happened.\n"
            "# TYPE a_total counter\n"
            "a_total 3\n"
            "a_total{k=\"x\\\"y\\\\z\\nw\"} 0.5\n"
            "# HELP h_seconds How long with a \\\\ backslash.\n"
            "# TYPE h_seconds histogram\n"
            "h_seconds_bucket{le=\"+Inf\"} 2\n"
            "h_seconds_sum 1.25\n"
            "h_seconds_count 2\n");
}

TEST(ExpositionWriterTest, WritesNothingUndeclaredOrBroken) {
  ExpositionWriter w({{"a_total", MT::kCounter, "A."},
                      {"no_help_total", MT::kCounter, ""},
                      {"g", MT::kGauge, "G."}});
  w.Sample("", "", int64_t{1});  // no family begun
  EXPECT_FALSE(w.Begin("undeclared_total"));
  w.Sample("", "", int64_t{1});
  EXPECT_FALSE(w.Begin("no_help_total"));
  w.Sample("", "", int64_t{1});
  ASSERT_TRUE(w.Begin("g"));
  w.Sample("_bucket", "", int64_t{1});  // a gauge has no buckets
  EXPECT_FALSE(w.Begin("g"));           // a family's lines stay together
  w.Sample("", "", int64_t{2});
  EXPECT_EQ(w.text(), "# HELP g G.\n# TYPE g gauge\n");
  EXPECT_EQ(w.errors().size(), 4u);
}

// The lines of `text` that are samples, as series → value text.
std::map<std::string, std::string> Samples(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    out[line.substr(0, space)] = line.substr(space + 1);
  }
  return out;
}

TEST(StoreSeriesTest, CountersAreThereAtZeroBeforeTheirFirstEvent) {
  ExpositionWriter w(DeclaredFamilies());
  std::vector<std::string> undeclared;
  WriteStoreSeries({}, &w, &undeclared);
  EXPECT_TRUE(w.errors().empty());
  EXPECT_TRUE(undeclared.empty());
  const auto samples = Samples(w.text());
  for (const char* series :
       {"komoku_mqtt_messages_total", "komoku_changes_accepted_total",
        "komoku_changes_stored_total", "komoku_commit_errors_total", "komoku_compactions_total",
        "komoku_hot_fold_seconds_total", "komoku_uptime_timeouts_total",
        "komoku_config_reloads_total{result=\"ok\"}",
        "komoku_config_reloads_total{result=\"refused\"}", "komoku_commit_seconds_count",
        "komoku_commit_seconds_bucket{le=\"0.001\"}",
        "komoku_commit_seconds_bucket{le=\"+Inf\"}"}) {
    auto it = samples.find(series);
    ASSERT_NE(it, samples.end()) << series << " missing from\n" << w.text();
    EXPECT_EQ(it->second, "0") << series;
  }
  // A labelled family whose labels come with its events has HELP and TYPE only.
  EXPECT_NE(w.text().find("# TYPE komoku_refused_total counter\n"), std::string::npos);
}

TEST(StoreSeriesTest, MicrosBecomeSecondsAndUndeclaredSeriesAreLeftOut) {
  ExpositionWriter w(DeclaredFamilies());
  std::vector<std::string> undeclared;
  WriteStoreSeries({{"komoku_hot_fold_micros_total", 1'500'000},
                    {"komoku_hot_vacuum_step_max_micros", 250},
                    {"komoku_commit_micros_total", 3000},
                    {"komoku_commit_batches_total", 2},
                    {"komoku_commit_seconds_bucket{le=\"0.005\"}", 2},
                    {"komoku_refused_total{reason=\"wrong_type\"}", 4},
                    {"komoku_config_reloads_total{result=\"ok\"}", 1},
                    {"komoku_made_up_total", 7}},
                   &w, &undeclared);
  EXPECT_TRUE(w.errors().empty());
  EXPECT_EQ(undeclared, std::vector<std::string>{"komoku_made_up_total"});
  const auto s = Samples(w.text());
  EXPECT_EQ(s.at("komoku_hot_fold_seconds_total"), "1.5");
  EXPECT_EQ(s.at("komoku_hot_vacuum_step_max_seconds"), "0.00025");
  EXPECT_EQ(s.at("komoku_commit_seconds_sum"), "0.003");
  EXPECT_EQ(s.at("komoku_commit_seconds_count"), "2");
  EXPECT_EQ(s.at("komoku_commit_seconds_bucket{le=\"0.005\"}"), "2");
  EXPECT_EQ(s.at("komoku_commit_seconds_bucket{le=\"+Inf\"}"), "2");
  EXPECT_EQ(s.at("komoku_refused_total{reason=\"wrong_type\"}"), "4");
  EXPECT_EQ(s.at("komoku_config_reloads_total{result=\"ok\"}"), "1");
  EXPECT_EQ(s.at("komoku_config_reloads_total{result=\"refused\"}"), "0");
  EXPECT_EQ(w.text().find("micros"), std::string::npos);
  EXPECT_EQ(w.text().find("komoku_made_up_total"), std::string::npos);
}

TEST(MetricFamiliesTest, DocsListEveryFamily) {
  std::ifstream in(std::string(KOMOKU_SOURCE_DIR) + "/docs/http-api.md");
  ASSERT_TRUE(in) << "docs/http-api.md";
  const std::string docs((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const MetricFamily& f : DeclaredFamilies()) {
    EXPECT_NE(docs.find("`" + std::string(f.name) + "`"), std::string::npos)
        << f.name << " is not listed in docs/http-api.md (GET /metrics)";
  }
}

}  // namespace
}  // namespace komoku::query
