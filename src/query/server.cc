#include "query/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "query/http.h"
#include "query/metrics.h"
#include "query/stream.h"
#include "store/api.h"
#include "store/history.h"
#include "store/history_json.h"
#include "store/input.h"
#include "store/time_param.h"
#include "web/assets.h"

namespace komoku::query {
namespace {

using nlohmann::json;
using store::MsToSeconds;
using store::ValueToJson;

constexpr const char* kJson = "application/json";

void SendJson(Response& res, int status, const json& body) {
  res.status = status;
  res.SetContent(store::DumpJson(body), kJson);
}

// A JSON object answered with one long list (10,000 keys) written item by
// item: as one json document the list took about 5 MB of small allocations
// a call, given back only at the next trim. `head` holds the object's other
// members; the list comes last, under `name`.
class JsonListBody {
 public:
  JsonListBody(const json& head, const char* name) : text_(store::DumpJson(head)) {
    text_.pop_back();  // the closing brace
    if (text_.size() > 1) text_ += ',';
    text_ += store::DumpJson(name);
    text_ += ":[";
  }
  void Add(const json& item) {
    if (items_++ > 0) text_ += ',';
    text_ += store::DumpJson(item);
  }
  void Send(Response& res) {
    text_ += "]}";
    res.status = 200;
    res.SetContent(text_, kJson);
  }

 private:
  std::string text_;
  size_t items_ = 0;
};

// Every refusal carries its code in a header, so that one place (the
// server's logger hook) counts it; a refusal the store already counted says
// so in another.
constexpr const char* kErrorHeader = "X-Komoku-Error";
constexpr const char* kCountedHeader = "X-Komoku-Counted";

void SendError(Response& res, int status, const std::string& code, const std::string& message) {
  res.SetHeader(kErrorHeader, code);
  SendJson(res, status, {{"error", {{"code", code}, {"message", message}}}});
}

void SendStatus(Response& res, const Status& st, bool counted = false) {
  if (counted) res.SetHeader(kCountedHeader, "1");
  int status = 500;
  switch (st.code()) {
    case Status::Code::kNotFound:
      status = 404;
      break;
    case Status::Code::kInvalidArgument:
      status = 400;
      break;
    case Status::Code::kBusy:
      status = 503;
      break;
    default:
      break;
  }
  if (st.reason() == "disk_full") status = 507;  // Insufficient Storage
  if (st.reason() == "write_failed") status = 503;
  SendError(res, status, st.reason(), st.message());
}

using QueryMap = std::multimap<std::string, std::string>;

// The parameters of the URL's query string only: a form-encoded body (`curl
// -d 21.5` sends its body as a form) is a value, never parameters.
QueryMap QueryParams(const Request& req) {
  QueryMap params;
  auto q = req.target.find('?');
  if (q == std::string::npos) return params;
  for (auto& [name, value] : ParseQuery(std::string_view(req.target).substr(q + 1))) {
    params.emplace(std::move(name), std::move(value));
  }
  return params;
}

// Query parameters, checked against the names a route knows so that a typo
// ("form=" for "from=") is an error instead of a silent default.
class Params {
 public:
  Params(const Request& req, std::initializer_list<const char*> known) : params_(QueryParams(req)) {
    std::set<std::string> names(known.begin(), known.end());
    for (const auto& [name, value] : params_) {
      if (!names.count(name)) {
        error_ = Status::InvalidArgument("unknown parameter '" + name + "'");
        return;
      }
      if (params_.count(name) > 1) {
        error_ = Status::InvalidArgument("parameter '" + name + "' is given more than once");
        return;
      }
    }
  }
  const Status& error() const { return error_; }

  std::optional<std::string> Get(const char* name) const {
    auto it = params_.find(name);
    if (it == params_.end()) return std::nullopt;
    return it->second;
  }
  Result<std::string> Required(const char* name) const {
    auto v = Get(name);
    if (!v) return Status::InvalidArgument(std::string("missing parameter '") + name + "'");
    return *v;
  }
  Result<int64_t> Time(const char* name, int64_t fallback, int64_t now_ms) const {
    auto v = Get(name);
    if (!v) return fallback;
    Result<int64_t> t = store::ParseTimeParam(*v, now_ms);
    if (!t.ok()) return t.status().WithContext(std::string("parameter '") + name + "'");
    return t;
  }
  Result<bool> Flag(const char* name) const {
    auto v = Get(name);
    if (!v) return false;
    if (*v == "" || *v == "1" || *v == "true" || *v == "yes") return true;
    if (*v == "0" || *v == "false" || *v == "no") return false;
    return Status::InvalidArgument(std::string("parameter '") + name + "' must be true or false");
  }
  Result<size_t> Count(const char* name, size_t fallback, size_t max) const {
    auto v = Get(name);
    if (!v) return fallback;
    if (v->empty() || v->size() > 12 || v->find_first_not_of("0123456789") != std::string::npos) {
      return Status::InvalidArgument(std::string("parameter '") + name +
                                     "' must be a positive whole number");
    }
    unsigned long long n = std::stoull(*v);  // may exceed size_t on 32-bit
    if (n == 0 || n > max) {
      return Status::InvalidArgument(std::string("parameter '") + name + "' must be 1.." +
                                     std::to_string(max));
    }
    return static_cast<size_t>(n);
  }

 private:
  QueryMap params_;
  Status error_;
};

json SampleJson(const store::Sample& s) {
  return {{"value", ValueToJson(s.value)}, {"time", MsToSeconds(s.time_ms)}};
}

}  // namespace

class Server::Impl {
 public:
  Impl(const ServerOptions& options, store::Store* store, std::function<Health()> health,
       std::shared_ptr<spdlog::logger> log)
      : options_(options),
        store_(store),
        health_(std::move(health)),
        log_(std::move(log)),
        api_(store,
             [](bool, const std::string& key) -> Result<json> {
               return json{{"stream", "/api/v1/stream?key=" + key}};
             }),
        streams_(store, options.max_stream_clients, options.stream_queue_bytes, log_) {
    Routes();
    HttpOptions http;
    http.host = options_.host;
    http.port = options_.port;
    http.max_connections = options_.max_connections;
    http.max_header_bytes = options_.max_header_bytes;
    http.max_header_fields = options_.max_header_fields;
    http.max_body_bytes = options_.max_body_bytes;
    http.idle_timeout = options_.idle_timeout;
    http.header_timeout = options_.header_timeout;
    http.body_timeout = options_.body_timeout;
    http.write_timeout = options_.write_timeout;
    http.workers = options_.workers;
    http.max_queued = options_.max_queued_requests;
    http.token = options_.token;
    // The page's files hold no data (docs/web.md): the page asks for the
    // token and sends it with its API requests.
    http.open_paths = {"/"};
    http.open_prefixes = {"/ui/"};
    http_ = std::make_unique<HttpServer>(
        std::move(http), [this](const Request& req, Response& res) { Handle(req, res); },
        [this](const std::string& series, int64_t delta) { store_->metrics().Add(series, delta); },
        log_);
  }
  ~Impl() { Stop(); }

  Status Start() {
    KOMOKU_RETURN_IF_ERROR(http_->Start());
    log_->info("HTTP API on http://{}:{}/api/v1/", options_.host, http_->port());
    return Status::Ok();
  }

  void Stop() {
    streams_.StopAll();
    http_->Stop();
  }

  int port() const { return http_->port(); }

 private:
  using Handler = std::function<void(const Request&, Response&)>;

  // Runs the route of `req` (on a worker thread) and counts a refusal once.
  void Handle(const Request& req, Response& res) {
    auto route = routes_.find({req.method, req.path});
    try {
      if (route != routes_.end()) {
        route->second(req, res);
      } else if (req.method == "GET" && req.path.rfind("/ui/", 0) == 0) {
        GetPage(req, res);
      } else {
        SendError(res, 404, "no_route", "no such endpoint: " + req.method + " " + req.path);
      }
    } catch (const std::exception& e) {
      log_->error("{} {}: {}", req.method, req.path, e.what());
      res = Response();
      SendError(res, 500, "internal", e.what());
    } catch (...) {
      log_->error("{} {}: unknown exception", req.method, req.path);
      res = Response();
      SendError(res, 500, "internal", "unknown exception");
    }
    if (res.HasHeader(kErrorHeader) && !res.HasHeader(kCountedHeader)) {
      store_->metrics().Add("komoku_refused_total{reason=\"" + res.Header(kErrorHeader) + "\"}");
    }
  }

  // The web page's files (src/web, docs/web.md).
  static void GetPage(const Request& req, Response& res) {
    std::optional<web::Answer> page = web::Serve(req.path, req.Header("If-None-Match"));
    if (!page) return SendError(res, 404, "no_route", "no such endpoint: GET " + req.path);
    res.status = page->status;
    for (auto& [name, value] : page->headers) {
      if (name == "Content-Type") {
        res.content_type = value;
      } else {
        res.SetHeader(name, value);
      }
    }
    if (page->status == 200) res.body = std::move(page->body);
  }

  void Route(const char* method, const char* path, Handler handler) {
    routes_[{method, path}] = std::move(handler);
  }

  void Routes() {
    Route("GET", "/api/v1/keys", [this](const auto& req, auto& res) { GetKeys(req, res); });
    Route("GET", "/api/v1/value", [this](const auto& req, auto& res) { GetValue(req, res); });
    Route("PUT", "/api/v1/value", [this](const auto& req, auto& res) { PutValue(req, res); });
    Route("POST", "/api/v1/value", [this](const auto& req, auto& res) { PutValue(req, res); });
    // Several `key=` in one request: one answer per key, in "results".
    Route("GET", "/api/v1/history", [this](const auto& req, auto& res) {
      PerKey(req, res, [this](const auto& r, auto& o) { GetHistory(r, o); });
    });
    Route("GET", "/api/v1/at", [this](const auto& req, auto& res) {
      PerKey(req, res, [this](const auto& r, auto& o) { GetAt(r, o); });
    });
    Route("GET", "/api/v1/timespans", [this](const auto& req, auto& res) {
      PerKey(req, res, [this](const auto& r, auto& o) { GetTimespans(r, o); });
    });
    Route("GET", "/api/v1/stats", [this](const auto& req, auto& res) {
      PerKey(req, res, [this](const auto& r, auto& o) { GetStats(r, o); });
    });
    Route("POST", "/api/v1/komoku", [this](const auto& req, auto& res) { PostKomoku(req, res); });
    Route("POST", "/api/v1/define", [this](const auto& req, auto& res) { PostDefine(req, res); });
    Route("DELETE", "/api/v1/key", [this](const auto& req, auto& res) { DeleteKey(req, res); });
    Route("GET", "/api/v1/stream", [this](const auto& req, auto& res) { GetStream(req, res); });
    Route("GET", "/api/v1/segments", [this](const auto& req, auto& res) { GetSegments(req, res); });
    Route("GET", "/api/v1/top", [this](const auto& req, auto& res) { GetTop(req, res); });
    Route("POST", "/api/v1/compact", [this](const auto& req, auto& res) { PostCompact(req, res); });
    Route("GET", "/api/v1/compact", [this](const auto&, auto& res) {
      SendJson(res, 200, store::CompactionProgressJson(store_->CompactionProgressNow()));
    });
    Route("GET", "/api/v1/discovery",
          [this](const auto& req, auto& res) { GetDiscovery(req, res); });
    Route("GET", "/healthz", [this](const auto& req, auto& res) { GetHealth(req, res); });
    Route("GET", "/readyz", [this](const auto& req, auto& res) { GetReady(req, res); });
    Route("GET", "/metrics", [this](const auto& req, auto& res) { GetMetrics(req, res); });
    Route("GET", "/", GetPage);  // and every /ui/<file>: Handle
  }

  void GetKeys(const Request& req, Response& res) {
    Params p(req, {"values"});
    if (!p.error().ok()) return SendStatus(res, p.error());
    Result<bool> values = p.Flag("values");
    if (!values.ok()) return SendStatus(res, values.status());
    JsonListBody body(json::object(), "keys");
    for (const store::KeyInfo& k : store_->Keys()) {
      json j = {{"key", k.name}, {"type", store::KeyTypeName(k.type)}};
      if (*values && k.last) {
        j["value"] = ValueToJson(k.last->value);
        j["time"] = MsToSeconds(k.last->time_ms);
      }
      body.Add(j);
    }
    body.Send(res);
  }

  void GetValue(const Request& req, Response& res) {
    Params p(req, {"key"});
    if (!p.error().ok()) return SendStatus(res, p.error());
    Result<std::string> key = p.Required("key");
    if (!key.ok()) return SendStatus(res, key.status());
    Result<store::KeyInfo> info = store_->Get(*key);
    if (!info.ok()) return SendStatus(res, info.status());
    json j = {{"key", info->name}, {"type", store::KeyTypeName(info->type)}};
    j["value"] = info->last ? ValueToJson(info->last->value) : json(nullptr);
    j["time"] = info->last ? json(MsToSeconds(info->last->time_ms)) : json(nullptr);
    j["previous"] = info->previous ? SampleJson(*info->previous) : json(nullptr);
    SendJson(res, 200, j);
  }

  void PutValue(const Request& req, Response& res) {
    Params p(req, {"key", "value", "time"});
    if (!p.error().ok()) return SendStatus(res, p.error());
    Result<std::string> key = p.Required("key");
    if (!key.ok()) return SendStatus(res, key.status());
    const int64_t now = store_->clock().NowMs();
    store::ValueMessage msg;
    if (auto v = p.Get("value")) {
      if (!req.body.empty()) {
        return SendError(res, 400, "bad_request", "give the value as parameter or body, not both");
      }
      msg.value = *v;
    } else {
      Result<store::ValueMessage> parsed =
          store::ParseValuePayload(req.body, options_.max_body_bytes);
      if (!parsed.ok()) return SendStatus(res, parsed.status().WithContext("body"));
      msg = std::move(parsed.value());
    }
    if (p.Get("time")) {
      if (msg.time_ms) return SendError(res, 400, "bad_request", "time given twice");
      Result<int64_t> t = p.Time("time", now, now);
      if (!t.ok()) return SendStatus(res, t.status());
      msg.time_ms = *t;
    }
    store::PutOptions put;
    put.time_ms = msg.time_ms;
    if (msg.text) put.new_key_type = store::KeyType::kString;
    Result<store::Change> change = store_->Put(*key, msg.value, put);
    if (!change.ok()) return SendStatus(res, change.status(), /*counted=*/true);
    json j = {{"key", change->key},
              {"type", store::KeyTypeName(change->type)},
              {"value", ValueToJson(change->sample.value)},
              {"time", MsToSeconds(change->sample.time_ms)},
              {"current", change->is_current},
              {"created", change->created_key}};
    SendJson(res, change->created_key ? 201 : 200, j);
  }

  // With one `key=`, the handler answers as it is. With several (at most
  // kMaxKeysPerRequest), it runs once per key on the same other parameters
  // and the answer is {"results": [<its answer for each key>, ...]} in the
  // order given; the first key refused answers for the request (it names the
  // key). CSV takes one key.
  template <typename Handler>
  void PerKey(const Request& req, Response& res, Handler handler) {
    QueryMap params = QueryParams(req);
    const size_t keys = params.count("key");
    if (keys <= 1) return handler(req, res);
    if (keys > kMaxKeysPerRequest) {
      return SendError(res, 400, "bad_request",
                       "parameter 'key' is given " + std::to_string(keys) + " times, at most " +
                           std::to_string(kMaxKeysPerRequest));
    }
    auto format = params.find("format");
    if (format != params.end() && format->second == "csv") {
      return SendError(res, 400, "bad_request", "format=csv takes one key");
    }
    std::string rest;  // every parameter but `key`
    for (const auto& [name, value] : params) {
      if (name == "key") continue;
      rest += "&" + EncodeQueryParam(name) + "=" + EncodeQueryParam(value);
    }
    const std::string path = req.target.substr(0, req.target.find('?'));
    // Each answer is spliced in as the text its one-key request gives, not
    // parsed and written again.
    std::string body = "{\"results\":[";
    bool first = true;
    auto range = params.equal_range("key");
    for (auto it = range.first; it != range.second; ++it) {
      Request one = req;
      one.target = path + "?key=" + EncodeQueryParam(it->second) + rest;
      Response out;
      handler(one, out);
      if (out.status != 200) {  // with its headers: the refusal is counted once, as its own
        res = std::move(out);
        return;
      }
      if (!first) body += ',';
      first = false;
      body += out.body;
    }
    body += "]}";
    res.status = 200;
    res.SetContent(body, kJson);
  }
  static constexpr size_t kMaxKeysPerRequest = 100;

  // The key, range and buckets shared by history, stats and timespans.
  struct Range {
    store::KeyInfo info;
    store::HistoryQuery q;
  };
  Result<Range> ParseRange(const Params& p, bool step_allowed) {
    Result<std::string> key = p.Required("key");
    if (!key.ok()) return key.status();
    Result<store::KeyInfo> info = store_->Get(*key);
    if (!info.ok()) return info.status();
    const int64_t now = store_->clock().NowMs();
    Result<int64_t> from = p.Time("from", now - 24 * 3600 * 1000LL, now);
    if (!from.ok()) return from.status();
    // `to` is exclusive; the default takes in a change made this millisecond.
    Result<int64_t> to = p.Time("to", now + 1, now);
    if (!to.ok()) return to.status();
    if (*to <= *from) {
      return Status::InvalidArgument("parameter 'to' must be after 'from'")
          .WithReason("bad_request");
    }
    // A range that reaches the key's newest change answers once every
    // change accepted so far is committed (at most a commit interval): a
    // change a client saw on the stream, or published over MQTT, is then
    // in the answer. A stalled writer does not hold the answer for long.
    if (info->last && info->last->time_ms < *to) {
      store_->WaitCommittedFor(store_->CommitMark(), std::chrono::seconds(2));
    }
    Range r{std::move(info.value()), {}};
    auto step = step_allowed ? p.Get("step") : std::nullopt;
    if (step) {
      Result<store::HistoryQuery> q = store::PlanBuckets(
          *key, *from, *to, *step, p.Get("tz").value_or(""), options_.max_points);
      if (!q.ok()) return q.status();
      r.q = std::move(q.value());
    } else {
      KOMOKU_RETURN_IF_ERROR(store::CheckTimeZone(p.Get("tz").value_or("")));
      r.q = store::HistoryQuery{*key, *from, *to, {*from}, 0};
    }
    return r;
  }

  // JSON, or CSV with format=csv: a header of `columns`, then the rows.
  void SendRows(Response& res, const Params& p, json meta, const json& columns, json rows) {
    auto format = p.Get("format").value_or("json");
    if (format == "csv") {
      std::string out;
      for (size_t i = 0; i < columns.size(); ++i)
        out += (i ? "," : "") + columns[i].get<std::string>();
      out += "\n";
      for (const json& row : rows) {
        for (size_t i = 0; i < row.size(); ++i) {
          if (i) out += ",";
          if (row[i].is_string()) {
            std::string cell = row[i].get<std::string>();
            std::string quoted = "\"";
            for (char c : cell) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
            out += quoted + "\"";
          } else if (!row[i].is_null()) {
            out += row[i].dump();
          }
        }
        out += "\n";
      }
      res.SetContent(out, "text/csv");
      return;
    }
    if (format != "json")
      return SendError(res, 400, "bad_request", "parameter 'format' must be json or csv");
    meta["columns"] = columns;
    meta["rows"] = std::move(rows);
    SendJson(res, 200, meta);
  }

  void GetHistory(const Request& req, Response& res) {
    Params p(req, {"key", "from", "to", "limit", "step", "agg", "tz", "format"});
    if (!p.error().ok()) return SendStatus(res, p.error());
    Result<Range> r = ParseRange(p, /*step_allowed=*/true);
    if (!r.ok()) return SendStatus(res, r.status());
    const store::KeyInfo& info = r->info;
    json meta = {{"key", info.name},
                 {"type", store::KeyTypeName(info.type)},
                 {"from", MsToSeconds(r->q.from_ms)},
                 {"to", MsToSeconds(r->q.to_ms)}};
    if (r->q.step_ms) {
      if (p.Get("limit"))
        return SendError(res, 400, "bad_request", "parameter 'limit' is for raw history (no step)");
      Result<std::vector<store::Agg>> aggs =
          store::ParseAggs(p.Get("agg").value_or(store::DefaultAgg(info.type)), info.type);
      if (!aggs.ok()) return SendStatus(res, aggs.status());
      Result<json> rows = store::DownsampleJson(*store_, r->q, *aggs);
      if (!rows.ok()) return SendStatus(res, rows.status());
      json columns = json::array({"time"});
      for (store::Agg a : *aggs) columns.push_back(store::AggName(a));
      meta["step"] = static_cast<double>(r->q.step_ms) / 1000.0;
      // Rollups that answer as under the options of their time: say where.
      if (json old = store::RollupsUnderOldOptionsJson(*store_, r->q.key, r->q.from_ms, r->q.to_ms);
          !old.empty()) {
        meta["rollups_under_old_options"] = std::move(old);
      }
      return SendRows(res, p, std::move(meta), columns, std::move(rows.value()));
    }
    if (p.Get("agg")) return SendError(res, 400, "bad_request", "parameter 'agg' needs a 'step'");
    Result<size_t> limit = p.Count("limit", options_.max_points, options_.max_points);
    if (!limit.ok()) return SendStatus(res, limit.status());
    Result<std::vector<store::Sample>> rows =
        store_->History(r->q.key, r->q.from_ms, r->q.to_ms, *limit + 1);
    if (!rows.ok()) return SendStatus(res, rows.status());
    if (rows->size() > *limit) {
      return SendError(res, 400, "too_many_points",
                       "more than " + std::to_string(*limit) +
                           " changes in the range; narrow from/to, raise limit (at most " +
                           std::to_string(options_.max_points) + ") or give a step");
    }
    // Raw changes past retention are gone, not absent: say so, and where
    // the rollups (a step) still answer.
    if (std::optional<int64_t> expired = store_->RawExpiredBefore(r->q.key);
        expired && *expired > r->q.from_ms) {
      meta["raw_expired_before"] = MsToSeconds(*expired);
    }
    json out = json::array();
    for (const store::Sample& s : *rows) {
      out.push_back(json::array({MsToSeconds(s.time_ms), ValueToJson(s.value)}));
    }
    SendRows(res, p, std::move(meta), json::array({"time", "value"}), std::move(out));
  }

  void GetAt(const Request& req, Response& res) {
    Params p(req, {"key", "time"});
    if (!p.error().ok()) return SendStatus(res, p.error());
    Result<std::string> key = p.Required("key");
    if (!key.ok()) return SendStatus(res, key.status());
    if (!p.Get("time")) return SendError(res, 400, "bad_request", "missing parameter 'time'");
    const int64_t now = store_->clock().NowMs();
    Result<int64_t> time = p.Time("time", now, now);
    if (!time.ok()) return SendStatus(res, time.status());
    Result<store::KeyInfo> info = store_->Get(*key);
    if (!info.ok()) return SendStatus(res, info.status());
    Result<std::optional<store::Sample>> at = store_->At(*key, *time);
    if (!at.ok()) return SendStatus(res, at.status());
    json j = {{"key", info->name}, {"time", MsToSeconds(*time)}};
    const int64_t stale = info->options.stale_after_ms;
    bool known = at->has_value() && (stale == 0 || *time - (*at)->time_ms < stale);
    j["value"] = known ? ValueToJson((*at)->value) : json(nullptr);
    j["since"] = at->has_value() ? json(MsToSeconds((*at)->time_ms)) : json(nullptr);
    j["known"] = known;
    SendJson(res, 200, j);
  }

  void GetTimespans(const Request& req, Response& res) {
    Params p(req, {"key", "value", "from", "to"});
    if (!p.error().ok()) return SendStatus(res, p.error());
    Result<Range> r = ParseRange(p, /*step_allowed=*/false);
    if (!r.ok()) return SendStatus(res, r.status());
    auto value = p.Get("value");
    if (!value) return SendError(res, 400, "bad_request", "missing parameter 'value'");
    Result<json> spans = store::TimespansJson(*store_, r->q, store::InputValue(*value));
    if (!spans.ok()) return SendStatus(res, spans.status());
    json out = *spans;
    out["key"] = r->info.name;
    out["from"] = MsToSeconds(r->q.from_ms);
    out["to"] = MsToSeconds(r->q.to_ms);
    SendJson(res, 200, out);
  }

  void GetStats(const Request& req, Response& res) {
    Params p(req, {"key", "from", "to", "step", "tz", "distribution"});
    if (!p.error().ok()) return SendStatus(res, p.error());
    Result<Range> r = ParseRange(p, /*step_allowed=*/true);
    if (!r.ok()) return SendStatus(res, r.status());
    auto dist = p.Get("distribution");
    if (dist && *dist != "hour_of_day") {
      return SendError(res, 400, "bad_request", "parameter 'distribution' must be hour_of_day");
    }
    Result<json> stats =
        store::StatsJson(*store_, r->q, dist.has_value(), p.Get("tz").value_or(""));
    if (!stats.ok()) return SendStatus(res, stats.status());
    json out = *stats;
    out["key"] = r->info.name;
    out["type"] = store::KeyTypeName(r->info.type);
    out["from"] = MsToSeconds(r->q.from_ms);
    out["to"] = MsToSeconds(r->q.to_ms);
    if (json old = store::RollupsUnderOldOptionsJson(*store_, r->q.key, r->q.from_ms, r->q.to_ms);
        !old.empty()) {
      out["rollups_under_old_options"] = std::move(old);
    }
    SendJson(res, 200, out);
  }

  // Sends a Komoku API answer with the HTTP status its error calls for.
  void SendApiAnswer(Response& res, const json& answer) {
    res.SetHeader(kCountedHeader, "1");  // the Api counted its refusals
    int status = 200;
    if (auto err = answer.find("error"); err != answer.end()) {
      const std::string code = (*err)["code"].get<std::string>();
      status = code == "unknown_key"    ? 404
               : code == "busy"         ? 503
               : code == "disk_full"    ? 507
               : code == "write_failed" ? 503
               : code == "io_error"     ? 500
                                        : 400;
    }
    SendJson(res, status, answer);
  }

  void PostKomoku(const Request& req, Response& res) {
    Params p(req, {});
    if (!p.error().ok()) return SendStatus(res, p.error());
    SendApiAnswer(res, api_.HandleText(req.body));
  }

  // Body: {"<key>": {"type": ..., "opts": {...}}, ...} as Komoku's define,
  // or with ?key=K just {"type": ..., "opts": {...}}.
  void PostDefine(const Request& req, Response& res) {
    Params p(req, {"key"});
    if (!p.error().ok()) return SendStatus(res, p.error());
    json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded() || !body.is_object()) {
      return SendError(res, 400, "bad_json", "body must be a JSON object");
    }
    if (auto key = p.Get("key")) body = json{{*key, body}};
    SendApiAnswer(res, api_.Handle(json{{"define", body}}));
  }

  void DeleteKey(const Request& req, Response& res) {
    Params p(req, {"key", "confirm"});
    if (!p.error().ok()) return SendStatus(res, p.error());
    Result<std::string> key = p.Required("key");
    if (!key.ok()) return SendStatus(res, key.status());
    if (p.Get("confirm").value_or("") != "yes") {
      return SendError(res, 400, "not_confirmed",
                       "deleting removes the key and all its history: add confirm=yes");
    }
    Status st = store_->Delete(*key);
    if (!st.ok()) return SendStatus(res, st);
    SendJson(res, 200, {{"deleted", *key}});
  }

  void GetStream(const Request& req, Response& res) {
    QueryMap params = QueryParams(req);
    for (const auto& [name, value] : params) {
      if (name != "key" && name != "since") {
        return SendError(res, 400, "bad_request", "unknown parameter '" + name + "'");
      }
    }
    std::vector<std::string> keys;
    auto [first, last] = params.equal_range("key");
    for (auto it = first; it != last; ++it) {
      // A filter: `#`, or a key name then `/#`.
      std::string_view name = it->second;
      if (name == "#") {
        keys.push_back(it->second);
        continue;
      }
      if (name.size() > 2 && name.substr(name.size() - 2) == "/#") name.remove_suffix(2);
      Status ok = store::ValidateKeyName(name);
      if (!ok.ok()) return SendStatus(res, ok.WithContext("parameter 'key'"));
      keys.push_back(it->second);
    }
    if (keys.empty()) return SendError(res, 400, "bad_request", "missing parameter 'key'");
    std::optional<int64_t> since;
    if (params.count("since") > 1) {
      return SendError(res, 400, "bad_request", "parameter 'since' is given more than once");
    }
    if (auto it = params.find("since"); it != params.end()) {
      Result<int64_t> t = store::ParseTimeParam(it->second, store_->clock().NowMs());
      if (!t.ok()) return SendStatus(res, t.status().WithContext("parameter 'since'"));
      since = *t;
    }
    Result<std::shared_ptr<EventStream>> stream = streams_.Open(std::move(keys), since);
    if (!stream.ok()) return SendStatus(res, stream.status());
    res.SetHeader("Cache-Control", "no-cache");
    res.SetHeader("X-Accel-Buffering", "no");
    res.content_type = "text/event-stream";
    res.stream = std::move(stream.value());
  }

  // The live cold segments, oldest first; `keys=true` lists each one's keys.
  void GetSegments(const Request& req, Response& res) {
    Params p(req, {"keys"});
    if (!p.error().ok()) return SendStatus(res, p.error());
    Result<bool> keys = p.Flag("keys");
    if (!keys.ok()) return SendStatus(res, keys.status());
    SendJson(res, 200, SegmentsJson(store_->Segments(), *keys));
  }

  // The keys that cost the disk most: by=writes (bytes written to the hot
  // store since the start, the SD card's wear) or by=size (bytes in cold
  // segments), with each key's change rate.
  void GetTop(const Request& req, Response& res) {
    Params p(req, {"by", "limit"});
    if (!p.error().ok()) return SendStatus(res, p.error());
    const std::string by = p.Get("by").value_or("writes");
    if (by != "writes" && by != "size") {
      return SendError(res, 400, "bad_request", "parameter 'by' must be writes or size");
    }
    Result<size_t> limit = p.Count("limit", 20, 100000);
    if (!limit.ok()) return SendStatus(res, limit.status());
    int64_t since = 0;
    std::vector<store::KeyWrites> keys = store_->Writes(&since);
    auto cost = [&by](const store::KeyWrites& k) {
      return by == "writes" ? std::make_pair(k.hot_bytes, k.cold_bytes)
                            : std::make_pair(k.cold_bytes, k.hot_bytes);
    };
    std::stable_sort(keys.begin(), keys.end(),
                     [&](const auto& a, const auto& b) { return cost(a) > cost(b); });
    const double hours =
        std::max(1.0, static_cast<double>(store_->clock().NowMs() - since)) / 3'600'000.0;
    JsonListBody body({{"by", by}, {"since", MsToSeconds(since)}}, "keys");
    for (size_t i = 0; i < keys.size() && i < *limit; ++i) {
      const store::KeyWrites& k = keys[i];
      body.Add({{"key", k.key},
                {"type", store::KeyTypeName(k.type)},
                {"changes", k.changes_stored},
                {"changes_per_hour", static_cast<double>(k.changes_stored) / hours},
                {"hot_bytes_written", k.hot_bytes},
                {"hot_bytes_per_hour", static_cast<double>(k.hot_bytes) / hours},
                {"segment_bytes", k.cold_bytes}});
    }
    body.Send(res);
  }

  // Runs a compaction now and answers what it did (`komoku compact` calls
  // this when the service holds the data directory).
  void PostCompact(const Request& req, Response& res) {
    Params p(req, {});
    if (!p.error().ok()) return SendStatus(res, p.error());
    Result<store::CompactionReport> r = store_->Compact();
    if (!r.ok()) return SendStatus(res, r.status());
    SendJson(res, 200, CompactionJson(*r));
  }

  // The entities discovery read (docs/mapping.md#discovery), mapped and
  // refused, with the reason of each refusal.
  void GetDiscovery(const Request&, Response& res) {
    json j = options_.discovery ? options_.discovery() : json(nullptr);
    if (j.is_null()) {
      return SendError(res, 404, "not_found",
                       "discovery is off (set discovery.enabled: true in the config)");
    }
    SendJson(res, 200, j);
  }

  // Liveness; "warnings" lists what is wrong without stopping the service
  // (a quarantined segment, a damaged block), "damaged" the history missing
  // because of damage, key by key (docs/storage.md, "Damage").
  void GetHealth(const Request&, Response& res) {
    Health h = health_ ? health_() : Health{};
    json j = {{"status", "ok"},
              {"mqtt", {{"connected", h.mqtt_connected}, {"subscribed", h.mqtt_subscribed}}},
              {"store", {{"queue", store_->QueueDepth()}}},
              {"warnings", store_->ColdWarnings()},
              {"damaged", store::DamageJson(store_->DamagedHistory())}};
    SendJson(res, 200, j);
  }

  // Readiness: 200 when the store takes changes, the broker is connected and
  // the subscription is in place; otherwise 503 and, in "problems", each
  // reason. Liveness is /healthz.
  void GetReady(const Request&, Response& res) {
    Health h = health_ ? health_() : Health{};
    auto stalled = store_->WriterStalledFor();
    json problems = json::array();
    if (stalled >= options_.writer_stall_limit) {
      problems.push_back("store writer has not committed for " +
                         std::to_string(stalled.count() / 1000) + " s");
    }
    if (Status w = store_->WriteHealth(); !w.ok()) problems.push_back(w.message());
    if (h.ingest_stalled >= options_.writer_stall_limit) {
      problems.push_back("MQTT ingest has been storing one batch of messages for " +
                         std::to_string(h.ingest_stalled.count() / 1000) + " s");
    }
    if (!h.mqtt_connected) {
      problems.push_back("not connected to the MQTT broker");
    } else if (!h.mqtt_subscribed) {
      problems.push_back("not subscribed on the MQTT broker yet");
    }
    json j = {{"status", problems.empty() ? "ready" : "not_ready"},
              {"problems", problems},
              {"mqtt",
               {{"connected", h.mqtt_connected},
                {"subscribed", h.mqtt_subscribed},
                {"ingest_backlog", h.ingest_backlog},
                {"ingest_stalled_ms", static_cast<int64_t>(h.ingest_stalled.count())}}},
              {"store",
               {{"queue", store_->QueueDepth()},
                {"writer_stalled_ms", static_cast<int64_t>(stalled.count())}}}};
    SendJson(res, problems.empty() ? 200 : 503, j);
  }

  void GetMetrics(const Request&, Response& res) {
    res.SetContent(RenderMetrics(*store_, health_ ? health_() : Health{}, started_, *log_),
                   kMetricsContentType);
  }

  // Constant after construction.
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  const ServerOptions options_;
  store::Store* const store_;
  const std::function<Health()> health_;
  const std::shared_ptr<spdlog::logger> log_;

  std::map<std::pair<std::string, std::string>, Handler> routes_;  // constant after construction
  store::Api api_;
  StreamHub streams_;
  std::unique_ptr<HttpServer> http_;  // thread-safe
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::Create(const ServerOptions& options, store::Store* store,
                                               std::function<Health()> health,
                                               std::shared_ptr<spdlog::logger> log) {
  auto impl = std::make_unique<Impl>(options, store, std::move(health),
                                     log ? std::move(log) : spdlog::default_logger());
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Status Server::Start() { return impl_->Start(); }
void Server::Stop() { impl_->Stop(); }
int Server::port() const { return impl_->port(); }

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  return false;
}

}  // namespace komoku::query
