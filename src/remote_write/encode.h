// What remote write sends, as pure functions: which keys go (include and
// exclude globs), a batch of the Store's changes as Prometheus series (the
// names and labels the read API gives each key, promql/store_source.h), and
// a batch as a remote-write 1.0 request body (protobuf WriteRequest,
// snappy block-compressed).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "store/store.h"

namespace komoku::remote_write {

// Keys that go: those matching an include glob (every key when there is
// none) and no exclude glob. Globs are fnmatch(3) patterns without
// FNM_PATHNAME: '*' also matches '/' ("kitchen/*" takes
// "kitchen/light/state").
struct KeyFilter {
  std::vector<std::string> include;
  std::vector<std::string> exclude;
  bool Matches(std::string_view key) const;
};

// Splits a comma-separated list of globs ("a/*, b/*"), trimming spaces and
// leaving out empty items.
std::vector<std::string> SplitGlobs(std::string_view text);

struct Series {
  // Sorted by name.
  std::vector<std::pair<std::string, std::string>> labels;
  // (time ms, value), oldest first, no two at the same time.
  std::vector<std::pair<int64_t, double>> samples;
};

struct Batch {
  std::vector<Series> series;
  // Keys of `series`, in the same order (for updating `last_sent`).
  std::vector<std::string> keys;
  size_t samples = 0;
  // Changes left out because Prometheus would refuse them: not after the
  // newest time already sent for their key (a late change), or before an
  // earlier change of the batch. A refusal would fail the whole request.
  size_t out_of_order = 0;
  // Changes left out by the filter or because they are strings.
  size_t filtered = 0;
};

// The changes as series: numeric and counter keys their value, boolean and
// uptime 1 or 0; string keys are not sent (docs/prometheus.md, "Remote
// write"). Two changes of a key at the same time: the later one's value.
// `last_sent` is the newest time sent for each key.
Batch BuildBatch(const std::vector<store::Store::SeqChange>& changes, const KeyFilter& filter,
                 const std::map<std::string, int64_t, std::less<>>& last_sent);

// The request body: the WriteRequest's protobuf encoding, snappy
// block-compressed.
std::string EncodeWriteRequest(const std::vector<Series>& series);

// The reverse, for tests: the series of a body EncodeWriteRequest made (or
// any remote-write 1.0 body); InvalidArgument when it is not one.
Result<std::vector<Series>> DecodeWriteRequest(std::string_view body);

}  // namespace komoku::remote_write
