#include "remote_write/encode.h"

#include <fnmatch.h>
#include <snappy.h>

#include <unordered_map>

#include "promql/store_source.h"
#include "remote_write/remote.pb.h"

namespace komoku::remote_write {

bool KeyFilter::Matches(std::string_view key) const {
  const std::string k(key);
  bool in = include.empty();
  for (const std::string& g : include) {
    if (fnmatch(g.c_str(), k.c_str(), 0) == 0) {
      in = true;
      break;
    }
  }
  if (!in) return false;
  for (const std::string& g : exclude) {
    if (fnmatch(g.c_str(), k.c_str(), 0) == 0) return false;
  }
  return true;
}

std::vector<std::string> SplitGlobs(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    start = comma + 1;
  }
  return out;
}

Batch BuildBatch(const std::vector<store::Store::SeqChange>& changes, const KeyFilter& filter,
                 const std::map<std::string, int64_t, std::less<>>& last_sent) {
  Batch batch;
  std::unordered_map<std::string, size_t> index;  // key -> position in batch.series
  for (const store::Store::SeqChange& c : changes) {
    double value = 0;
    if (const auto* d = std::get_if<double>(&c.sample.value)) {
      value = *d;
    } else if (const auto* b = std::get_if<bool>(&c.sample.value)) {
      value = *b ? 1 : 0;
    } else {
      ++batch.filtered;  // a string
      continue;
    }
    if (c.type == store::KeyType::kString || !filter.Matches(c.key)) {
      ++batch.filtered;
      continue;
    }
    auto sent = last_sent.find(c.key);
    if (sent != last_sent.end() && c.sample.time_ms <= sent->second) {
      ++batch.out_of_order;
      continue;
    }
    auto [it, added] = index.emplace(c.key, batch.series.size());
    if (added) {
      Series s;
      s.labels = {{"__name__", promql::MetricName(c.key)},
                  {"key", c.key},
                  {"type", store::KeyTypeName(c.type)}};
      batch.series.push_back(std::move(s));
      batch.keys.push_back(c.key);
    }
    auto& samples = batch.series[it->second].samples;
    if (!samples.empty() && c.sample.time_ms == samples.back().first) {
      samples.back().second = value;  // the later put wins, as in the Store
      ++batch.out_of_order;
      continue;
    }
    if (!samples.empty() && c.sample.time_ms < samples.back().first) {
      ++batch.out_of_order;
      continue;
    }
    samples.emplace_back(c.sample.time_ms, value);
    ++batch.samples;
  }
  return batch;
}

std::string EncodeWriteRequest(const std::vector<Series>& series) {
  prompb::WriteRequest request;
  for (const Series& s : series) {
    prompb::TimeSeries* ts = request.add_timeseries();
    for (const auto& [name, value] : s.labels) {
      prompb::Label* label = ts->add_labels();
      label->set_name(name);
      label->set_value(value);
    }
    for (const auto& [time_ms, value] : s.samples) {
      prompb::Sample* sample = ts->add_samples();
      sample->set_timestamp(time_ms);
      sample->set_value(value);
    }
  }
  std::string raw = request.SerializeAsString();
  std::string body;
  snappy::Compress(raw.data(), raw.size(), &body);
  return body;
}

Result<std::vector<Series>> DecodeWriteRequest(std::string_view body) {
  std::string raw;
  if (!snappy::Uncompress(body.data(), body.size(), &raw)) {
    return Status::InvalidArgument("remote write body: not snappy block-compressed");
  }
  prompb::WriteRequest request;
  if (!request.ParseFromString(raw)) {
    return Status::InvalidArgument("remote write body: not a protobuf WriteRequest");
  }
  std::vector<Series> out;
  for (const prompb::TimeSeries& ts : request.timeseries()) {
    Series s;
    for (const prompb::Label& l : ts.labels()) s.labels.emplace_back(l.name(), l.value());
    for (const prompb::Sample& x : ts.samples()) s.samples.emplace_back(x.timestamp(), x.value());
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace komoku::remote_write
