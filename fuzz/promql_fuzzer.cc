// libFuzzer target: promql::Parse, the parser of the Prometheus API's
// queries (outside text), and the evaluation of what it accepts, as an
// instant and a range query over a small in-memory source.
//
// Any crash or sanitizer report (a stack overflow on nesting included) is a
// bug; so is a refusal without a message.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "promql/promql.h"

namespace {

using komoku::Result;
using komoku::fuzz::Require;
using komoku::promql::Labels;
using komoku::promql::Matcher;
using komoku::promql::Series;

class FixedSource final : public komoku::promql::Source {
 public:
  // Points only: a source may leave buckets out (promql.h).
  Result<std::vector<Series>> Select(const std::vector<Matcher>& matchers, int64_t from_ms,
                                     int64_t to_ms, int64_t /*align_ms*/) const override {
    std::vector<Series> out;
    for (const Series& s : kSeries) {
      if (!komoku::promql::MatchesAll(matchers, s.labels)) continue;
      Series copy{s.labels, {}};
      for (const auto& p : s.points) {
        if (p.t >= from_ms && p.t <= to_ms) copy.points.push_back(p);
      }
      out.push_back(std::move(copy));
    }
    return out;
  }
  Result<std::vector<Labels>> Labelsets(const std::vector<Matcher>& matchers) const override {
    std::vector<Labels> out;
    for (const Series& s : kSeries) {
      if (komoku::promql::MatchesAll(matchers, s.labels)) out.push_back(s.labels);
    }
    return out;
  }

 private:
  const std::vector<Series> kSeries = {
      {{{"__name__", "x"}, {"key", "x"}, {"type", "numeric"}},
       {{0, 1}, {15000, -2.5}, {30000, 1e300}, {60000, 0}}},
      {{{"__name__", "c"}, {"key", "c"}, {"type", "counter"}}, {{0, 5}, {20000, 1}, {40000, 9}}},
  };
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;  // the HTTP limits keep queries small; so do regexes here
  const std::string text(reinterpret_cast<const char*>(data), size);
  static const FixedSource source;
  komoku::promql::Options options;
  options.max_samples = 100000;
  const komoku::promql::Engine engine(&source, options);
  auto instant = engine.Instant(text, 45000);
  if (!instant.ok()) {
    Require(!instant.status().message().empty());
    return 0;
  }
  auto range = engine.Range(text, 0, 120000, 7000);
  if (!range.ok()) Require(!range.status().message().empty());
  return 0;
}
