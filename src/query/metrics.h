// GET /metrics: the Prometheus text format (0.0.4) of the store's counters
// and gauges, the service's own figures and the process's (process_*).
//
// Every family /metrics can carry is declared once, in metrics.cc's table:
// name, type, help, and where its samples come from. The writer below writes
// only declared families, each with its HELP and TYPE lines, so a metric
// cannot reach /metrics without them; a series a component counts in
// store::Metrics under a family the table does not know is left out and
// logged as an error. docs/http-api.md lists every declared family (a unit
// test checks it), and `promtool check metrics` passes on the answer
// (integration test 21).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "query/server.h"
#include "store/store.h"

namespace spdlog {
class logger;
}

namespace komoku::query {

enum class MetricType { kCounter, kGauge, kHistogram };

struct MetricFamily {
  std::string_view name;
  MetricType type;
  std::string_view help;
};

// Whether `family` follows the conventions promtool and Prometheus's naming
// guide check: a valid name, non-empty one-line help, counters and only
// counters ending in `_total`, base units (seconds and bytes, not `_micros`,
// `_millis`, `_ms`, `_kb` ...). InvalidArgument naming the family otherwise.
Status CheckFamily(const MetricFamily& family);

// Every family /metrics can carry.
std::vector<MetricFamily> DeclaredFamilies();

// Writes the text format one declared family at a time. Owned by one thread;
// one per answer.
class ExpositionWriter {
 public:
  // `declared` is the only families Begin accepts (DeclaredFamilies() in the
  // service; tests pass their own).
  explicit ExpositionWriter(std::vector<MetricFamily> declared);

  // Starts the family named `name`: writes its HELP and TYPE. False, with an
  // error kept and the family's samples dropped, when the name is not
  // declared, was begun before, or breaks CheckFamily.
  bool Begin(std::string_view name);
  // Limits the answer to these families (GET /metrics?name=…): Begin of any
  // other returns false without an error. Empty: every family.
  void Only(std::vector<std::string> names) { only_ = std::move(names); }
  // Whether Begin(name) would write the family (declared and selected).
  bool Wants(std::string_view name) const;
  // A sample of the family begun last. `suffix` is "" or, for a histogram,
  // "_bucket", "_sum" or "_count"; `labels` is "" or a label set as
  // Labels() makes it. A sample without a begun family, or with a suffix its
  // type does not have, is dropped with an error kept.
  void Sample(std::string_view suffix, std::string_view labels, double value);
  void Sample(std::string_view suffix, std::string_view labels, int64_t value);

  const std::vector<std::string>& errors() const { return errors_; }
  const std::string& text() const { return text_; }

 private:
  bool SampleAllowed(std::string_view suffix);
  void SampleLine(std::string_view suffix, std::string_view labels, std::string_view value);

  const std::vector<MetricFamily> declared_;
  const MetricFamily* current_ = nullptr;  // null: no family, or a refused one
  std::vector<std::string_view> begun_;
  std::vector<std::string> only_;  // empty: all
  std::vector<std::string> errors_;
  std::string text_;
};

// `{name="value"}`, the value escaped as the text format wants (\\, \", \n).
std::string Labels(std::string_view name, std::string_view value);

// The store's series (a store::Metrics snapshot) under their declared
// families; series of undeclared families are left out and named in
// `undeclared`. Exposed for tests; RenderMetrics calls it.
void WriteStoreSeries(const std::map<std::string, int64_t>& snapshot, ExpositionWriter* out,
                      std::vector<std::string>* undeclared);

// The body of GET /metrics. `started` is when the HTTP server started
// (komoku_uptime_seconds). Errors (an undeclared series, a refused family)
// are logged on `log`; the answer carries everything else.
// `only` limits the answer to the named families (empty: all of them); a
// name that is not a declared family is an InvalidArgument naming it.
Result<std::string> RenderMetrics(store::Store& store, const Health& health,
                                  std::chrono::steady_clock::time_point started,
                                  spdlog::logger& log, const std::vector<std::string>& only = {});

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace komoku::query
