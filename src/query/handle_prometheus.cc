// The Prometheus-compatible read API (docs/prometheus.md): /api/v1/query,
// query_range, labels, label/<name>/values, series, metadata and
// status/buildinfo, with Prometheus's JSON shapes and its error answer
// {"status":"error","errorType":"bad_data","error":"..."}. The queries are
// evaluated by promql/ over the Store's keys as series. Parameters come from
// the URL and, for POST, from a form-encoded body, as Prometheus reads them;
// parameters Prometheus would ignore are ignored.
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "promql/promql.h"
#include "promql/store_source.h"
#include "query/server_impl.h"
#include "wire/input.h"
#include "wire/time_param.h"

#ifndef KOMOKU_VERSION
#define KOMOKU_VERSION "unknown"
#endif

namespace komoku::query {

namespace {

using promql::Labels;

// The version of Prometheus's API this answers as (buildinfo's "version").
constexpr const char* kPrometheusApiVersion = "2.42.0";

class PromParams {
 public:
  explicit PromParams(const Request& req) : params_(QueryParams(req)) {
    if (req.method == "POST" &&
        req.Header("Content-Type").rfind("application/x-www-form-urlencoded", 0) == 0) {
      for (auto& [name, value] : ParseQuery(req.body)) {
        params_.emplace(std::move(name), std::move(value));
      }
    }
  }
  // The first value of `name`; "" counts as absent, as Go's FormValue.
  std::optional<std::string> Get(const std::string& name) const {
    auto it = params_.find(name);
    if (it == params_.end() || it->second.empty()) return std::nullopt;
    return it->second;
  }
  std::vector<std::string> All(const std::string& name) const {
    std::vector<std::string> out;
    auto range = params_.equal_range(name);
    for (auto it = range.first; it != range.second; ++it) out.push_back(it->second);
    return out;
  }

 private:
  QueryMap params_;
};

void SendPromError(Response& res, int status, const std::string& type, const std::string& message) {
  res.SetHeader(kErrorHeader, type);
  res.status = status;
  res.SetContent("{\"status\":\"error\",\"errorType\":" + store::DumpJson(type) +
                     ",\"error\":" + store::DumpJson(message) + "}",
                 kJson);
}

void SendPromStatus(Response& res, const Status& st) {
  if (st.code() == Status::Code::kInvalidArgument) {
    return SendPromError(res, 400, "bad_data", st.message());
  }
  SendPromError(res, 500, "internal", st.message());
}

// A success answer is built in one string, started by SuccessStart and
// handed to SendSuccess: a year of hourly points is 300 KB, which a copy per
// step would move again (docs/benchmarks.md, "PromQL from rollups").
constexpr std::string_view kSuccessStart = "{\"status\":\"success\",\"data\":";

std::string SuccessStart(size_t reserve = 0) {
  std::string out;
  out.reserve(kSuccessStart.size() + reserve + 1);
  out += kSuccessStart;
  return out;
}

void SendSuccess(Response& res, std::string out) {
  out += '}';
  res.status = 200;
  res.SetContent(std::move(out), kJson);
}

// A small answer's data.
void SendData(Response& res, std::string_view data) {
  std::string out = SuccessStart(data.size());
  out += data;
  SendSuccess(res, std::move(out));
}

// Prometheus's time parameter: epoch seconds (rounded to the millisecond)
// or RFC 3339; Komoku's other forms ("now", "-1h") are read too.
Result<int64_t> ParseTime(const std::string& name, const std::string& text, int64_t now_ms) {
  const char* begin = text.c_str();
  char* end = nullptr;
  double v = std::strtod(begin, &end);
  if (end != begin && *end == '\0' && std::isfinite(v)) {
    if (std::fabs(v) > 9.2e15) {
      return Status::InvalidArgument("invalid parameter \"" + name + "\": cannot parse \"" + text +
                                     "\" to a valid timestamp");
    }
    double whole = std::trunc(v);
    double frac = std::round((v - whole) * 1000) / 1000;
    return static_cast<int64_t>(whole) * 1000 + static_cast<int64_t>(std::llround(frac * 1000));
  }
  Result<int64_t> t = store::ParseTimeParam(text, now_ms);
  if (!t.ok()) {
    return Status::InvalidArgument("invalid parameter \"" + name + "\": cannot parse \"" + text +
                                   "\" to a valid timestamp");
  }
  return t;
}

// Prometheus's duration parameter: seconds as a float, or "5m"-style.
Result<int64_t> ParseStep(const std::string& text) {
  const char* begin = text.c_str();
  char* end = nullptr;
  double v = std::strtod(begin, &end);
  if (end != begin && *end == '\0') {
    if (!std::isfinite(v) || std::fabs(v) > 9.2e15) {
      return Status::InvalidArgument("invalid parameter \"step\": cannot parse \"" + text +
                                     "\" to a valid duration. It overflows int64");
    }
    // Prometheus keeps nanoseconds; steps are whole milliseconds here.
    return static_cast<int64_t>(std::llround(v * 1000));
  }
  Result<int64_t> d = promql::ParseDurationMs(text);
  if (!d.ok()) {
    return Status::InvalidArgument("invalid parameter \"step\": cannot parse \"" + text +
                                   "\" to a valid duration");
  }
  return d;
}

void AppendTime(std::string& out, int64_t t) {
  char buf[32];
  char* p = buf;
  if (t < 0) {
    *p++ = '-';
    t = -t;
  }
  p = std::to_chars(p, buf + sizeof(buf), t / 1000).ptr;
  const int64_t frac = t % 1000;
  if (frac != 0) {
    *p++ = '.';
    *p++ = static_cast<char>('0' + frac / 100);
    if (frac % 100 != 0) *p++ = static_cast<char>('0' + frac / 10 % 10);
    if (frac % 10 != 0) *p++ = static_cast<char>('0' + frac % 10);
  }
  out.append(buf, p);
}

// As Go's strconv.FormatFloat(v, 'f' or 'e', -1, 64), the way Prometheus
// writes sample values.
void AppendValue(std::string& out, double v) {
  out += '"';
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[400];
    double a = std::fabs(v);
    auto format = (a != 0 && (a < 1e-6 || a >= 1e21)) ? std::chars_format::scientific
                                                      : std::chars_format::fixed;
    auto r = std::to_chars(buf, buf + sizeof(buf), v, format);
    out.append(buf, r.ptr);
  }
  out += '"';
}

void AppendLabels(std::string& out, const Labels& labels) {
  out += '{';
  bool first = true;
  for (const auto& [name, value] : labels) {
    if (!first) out += ',';
    first = false;
    out += store::DumpJson(name);
    out += ':';
    out += store::DumpJson(value);
  }
  out += '}';
}

void AppendPoint(std::string& out, const promql::Point& p) {
  out += '[';
  AppendTime(out, p.t);
  out += ',';
  AppendValue(out, p.v);
  out += ']';
}

// Appends {"resultType": "matrix", "result": [{"metric", "values"}...]}.
void AppendMatrix(std::string& out, const std::vector<promql::Series>& series) {
  size_t points = 0;
  for (const promql::Series& s : series) points += s.points.size();
  // A point is about 32 characters: [1704070800,"10.92440443213297"],
  out.reserve(out.size() + 64 + series.size() * 128 + points * 34);
  out += "{\"resultType\":\"matrix\",\"result\":[";
  for (size_t i = 0; i < series.size(); ++i) {
    if (i) out += ',';
    out += "{\"metric\":";
    AppendLabels(out, series[i].labels);
    out += ",\"values\":[";
    for (size_t j = 0; j < series[i].points.size(); ++j) {
      if (j) out += ',';
      AppendPoint(out, series[i].points[j]);
    }
    out += "]}";
  }
  out += "]}";
}

std::string StringListJson(const std::set<std::string>& items) {
  std::string out = "[";
  for (const std::string& s : items) {
    if (out.size() > 1) out += ',';
    out += store::DumpJson(s);
  }
  out += ']';
  return out;
}

bool ValidLabelName(const std::string& name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// The label sets selected by every match[] given (all series when none is).
Result<std::vector<Labels>> MatchedLabelsets(const promql::Source& source, const PromParams& p,
                                             bool required) {
  std::vector<std::string> matches = p.All("match[]");
  if (matches.empty()) {
    if (required) return Status::InvalidArgument("no match[] parameter provided");
    return source.Labelsets({});
  }
  std::set<Labels> all;
  for (const std::string& m : matches) {
    Result<std::vector<promql::Matcher>> matchers = promql::ParseSeriesSelector(m);
    if (!matchers.ok()) return matchers.status();
    Result<std::vector<Labels>> sets = source.Labelsets(*matchers);
    if (!sets.ok()) return sets.status();
    all.insert(sets->begin(), sets->end());
  }
  return std::vector<Labels>(all.begin(), all.end());
}

}  // namespace

void Server::Impl::CountReads(const promql::StoreSource& source) {
  store_->metrics().Add("komoku_promql_read_total{from=\"changes\"}", source.changes_read());
  store_->metrics().Add("komoku_promql_read_total{from=\"rollups\"}", source.rollups_read());
}

void Server::Impl::PromQuery(const Request& req, Response& res) {
  PromParams p(req);
  const int64_t now = store_->clock().NowMs();
  std::optional<std::string> query = p.Get("query");
  if (!query) return SendPromError(res, 400, "bad_data", "invalid parameter \"query\": missing");
  int64_t time_ms = now;
  if (auto t = p.Get("time")) {
    Result<int64_t> parsed = ParseTime("time", *t, now);
    if (!parsed.ok()) return SendPromStatus(res, parsed.status());
    time_ms = *parsed;
  }
  promql::StoreSource source(store_);
  promql::Engine engine(&source);
  Result<promql::InstantResult> r = engine.Instant(*query, time_ms);
  CountReads(source);
  if (!r.ok()) return SendPromStatus(res, r.status());
  std::string data = SuccessStart();
  switch (r->type) {
    case promql::InstantResult::Type::kScalar:
      data += "{\"resultType\":\"scalar\",\"result\":";
      AppendPoint(data, promql::Point{time_ms, r->scalar});
      data += '}';
      break;
    case promql::InstantResult::Type::kMatrix:
      AppendMatrix(data, r->series);
      break;
    case promql::InstantResult::Type::kVector:
      data += "{\"resultType\":\"vector\",\"result\":[";
      for (size_t i = 0; i < r->series.size(); ++i) {
        if (i) data += ',';
        data += "{\"metric\":";
        AppendLabels(data, r->series[i].labels);
        data += ",\"value\":";
        AppendPoint(data, r->series[i].points.front());
        data += '}';
      }
      data += "]}";
      break;
  }
  SendSuccess(res, std::move(data));
}

void Server::Impl::PromQueryRange(const Request& req, Response& res) {
  PromParams p(req);
  const int64_t now = store_->clock().NowMs();
  std::optional<std::string> query = p.Get("query");
  if (!query) return SendPromError(res, 400, "bad_data", "invalid parameter \"query\": missing");
  int64_t bounds[2] = {0, 0};
  const char* names[2] = {"start", "end"};
  for (int i = 0; i < 2; ++i) {
    std::optional<std::string> text = p.Get(names[i]);
    if (!text) {
      return SendPromError(res, 400, "bad_data",
                           std::string("invalid parameter \"") + names[i] + "\": missing");
    }
    Result<int64_t> t = ParseTime(names[i], *text, now);
    if (!t.ok()) return SendPromStatus(res, t.status());
    bounds[i] = *t;
  }
  std::optional<std::string> step_text = p.Get("step");
  if (!step_text) return SendPromError(res, 400, "bad_data", "invalid parameter \"step\": missing");
  Result<int64_t> step = ParseStep(*step_text);
  if (!step.ok()) return SendPromStatus(res, step.status());
  promql::StoreSource source(store_);
  promql::Engine engine(&source);
  Result<std::vector<promql::Series>> r = engine.Range(*query, bounds[0], bounds[1], *step);
  CountReads(source);
  if (!r.ok()) return SendPromStatus(res, r.status());
  std::string out = SuccessStart();
  AppendMatrix(out, *r);
  SendSuccess(res, std::move(out));
}

void Server::Impl::PromSeries(const Request& req, Response& res) {
  PromParams p(req);
  promql::StoreSource source(store_);
  Result<std::vector<Labels>> sets = MatchedLabelsets(source, p, true);
  if (!sets.ok()) return SendPromStatus(res, sets.status());
  std::string data = "[";
  for (size_t i = 0; i < sets->size(); ++i) {
    if (i) data += ',';
    AppendLabels(data, (*sets)[i]);
  }
  data += ']';
  SendData(res, data);
}

void Server::Impl::PromLabels(const Request& req, Response& res) {
  PromParams p(req);
  promql::StoreSource source(store_);
  Result<std::vector<Labels>> sets = MatchedLabelsets(source, p, false);
  if (!sets.ok()) return SendPromStatus(res, sets.status());
  std::set<std::string> names;
  for (const Labels& labels : *sets) {
    for (const auto& l : labels) names.insert(l.first);
  }
  SendData(res, StringListJson(names));
}

void Server::Impl::PromLabelValues(const Request& req, Response& res) {
  // /api/v1/label/<name>/values
  static const std::string kPrefix = "/api/v1/label/";
  static const std::string kSuffix = "/values";
  std::string name =
      req.path.substr(kPrefix.size(), req.path.size() - kPrefix.size() - kSuffix.size());
  if (!ValidLabelName(name)) {
    return SendPromError(res, 400, "bad_data", "invalid label name: \"" + name + "\"");
  }
  PromParams p(req);
  promql::StoreSource source(store_);
  Result<std::vector<Labels>> sets = MatchedLabelsets(source, p, false);
  if (!sets.ok()) return SendPromStatus(res, sets.status());
  std::set<std::string> values;
  for (const Labels& labels : *sets) {
    const std::string& v = promql::LabelValue(labels, name);
    if (!v.empty()) values.insert(v);
  }
  SendData(res, StringListJson(values));
}

void Server::Impl::PromMetadata(const Request& req, Response& res) {
  PromParams p(req);
  std::optional<std::string> only = p.Get("metric");
  std::map<std::string, std::set<std::pair<std::string, std::string>>> metrics;  // (type, help)
  for (const store::KeyInfo& info : store_->Keys()) {
    std::string name = promql::MetricName(info.name);
    if (only && *only != name) continue;
    const char* type = info.type == store::KeyType::kCounter ? "counter" : "gauge";
    std::string help = std::string("Komoku ") + store::KeyTypeName(info.type) + " key";
    metrics[name].emplace(type, help);
  }
  std::string data = "{";
  for (const auto& [name, entries] : metrics) {
    if (data.size() > 1) data += ',';
    data += store::DumpJson(name) + ":[";
    bool first = true;
    for (const auto& [type, help] : entries) {
      if (!first) data += ',';
      first = false;
      data += "{\"type\":" + store::DumpJson(type) + ",\"help\":" + store::DumpJson(help) +
              ",\"unit\":\"\"}";
    }
    data += ']';
  }
  data += '}';
  SendData(res, data);
}

void Server::Impl::PromBuildInfo(const Request&, Response& res) {
  SendData(res, std::string("{\"version\":\"") + kPrometheusApiVersion +
                    "\",\"revision\":\"komoku-" + KOMOKU_VERSION +
                    "\",\"branch\":\"komoku\",\"buildUser\":\"komoku\",\"buildDate\":\"\","
                    "\"goVersion\":\"none (Komoku " KOMOKU_VERSION ")\"}");
}

}  // namespace komoku::query
