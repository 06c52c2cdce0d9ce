
#include "query/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>

#include <optional>

#include "query/http.h"
#include "query/metrics.h"
#include "query/server_impl.h"
#include "query/stream.h"
#include "series/history.h"
#include "web/assets.h"
#include "wire/api.h"
#include "wire/input.h"
#include "wire/time_param.h"

namespace komoku::query {

using nlohmann::json;

namespace {

// The WebSocket connections share the HTTP API's limits: a message is a
// request body, and what a client leaves unread is bounded as an event
// stream's.
WebSocketOptions WebSocketHubOptions(const ServerOptions& options) {
  WebSocketOptions ws;
  ws.max_message_bytes = options.max_body_bytes;
  ws.queue_bytes = options.stream_queue_bytes;
  ws.workers = options.workers;
  ws.write_timeout = options.write_timeout;
  ws.idle_timeout = options.idle_timeout;
  ws.aliases = options.key_aliases;
  return ws;
}

}  // namespace

Server::Impl::Impl(const ServerOptions& options, store::Store* store,
                   std::function<Health()> health, std::shared_ptr<spdlog::logger> log)
    : options_(options),
      store_(store),
      health_(std::move(health)),
      log_(std::move(log)),
      api_(
          store,
          [](bool, const std::string& key) -> Result<json> {
            return json{{"stream", "/api/v1/stream?key=" + key}};
          },
          options.key_aliases),
      streams_(store, options.max_stream_clients, options.stream_queue_bytes, log_),
      websockets_(store, WebSocketHubOptions(options), log_) {
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
  http.websocket_paths = {"/ws/v1", "/ws/v2"};
  http.upgrade = [this](int fd, Request req, std::function<void()> done) {
    websockets_.Accept(fd, std::move(req), std::move(done));
  };
  http_ = std::make_unique<HttpServer>(
      std::move(http), [this](const Request& req, Response& res) { Handle(req, res); },
      [this](const std::string& series, int64_t delta) { store_->metrics().Add(series, delta); },
      log_);
}

Status Server::Impl::Start() {
  websockets_.Start();
  KOMOKU_RETURN_IF_ERROR(http_->Start());
  log_->info("HTTP API on http://{}:{}/api/v1/, WebSocket on ws://{}:{}/ws/v1 and /ws/v2",
             options_.host, http_->port(), options_.host, http_->port());
  return Status::Ok();
}

void Server::Impl::Stop() {
  streams_.StopAll();
  http_->Stop();
  websockets_.Stop();
}

void Server::Impl::Handle(const Request& req, Response& res) {
  auto route = routes_.find({req.method, req.path});
  try {
    if (route != routes_.end()) {
      route->second(req, res);
    } else if ((req.method == "GET" || req.method == "POST") &&
               req.path.rfind("/api/v1/label/", 0) == 0 && req.path.size() > 21 &&
               req.path.compare(req.path.size() - 7, 7, "/values") == 0) {
      PromLabelValues(req, res);
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

void Server::Impl::GetPage(const Request& req, Response& res) {
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

void Server::Impl::Route(const char* method, const char* path, Handler handler) {
  routes_[{method, path}] = std::move(handler);
}

template <typename Fn>
void Server::Impl::PerKey(const Request& req, Response& res, Fn handler) {
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

void Server::Impl::Routes() {
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
  Route("POST", "/api/v1/backup", [this](const auto& req, auto& res) { PostBackup(req, res); });
  Route("GET", "/api/v1/compact", [this](const auto&, auto& res) {
    SendJson(res, 200, store::CompactionProgressJson(store_->CompactionProgressNow()));
  });
  Route("GET", "/api/v1/discovery", [this](const auto& req, auto& res) { GetDiscovery(req, res); });
  // The Prometheus-compatible read API (handle_prometheus.cc); Prometheus
  // takes GET and form-encoded POST alike.
  for (const char* method : {"GET", "POST"}) {
    Route(method, "/api/v1/query", [this](const auto& req, auto& res) { PromQuery(req, res); });
    Route(method, "/api/v1/query_range",
          [this](const auto& req, auto& res) { PromQueryRange(req, res); });
    Route(method, "/api/v1/series", [this](const auto& req, auto& res) { PromSeries(req, res); });
    Route(method, "/api/v1/labels", [this](const auto& req, auto& res) { PromLabels(req, res); });
  }
  Route("GET", "/api/v1/metadata", [this](const auto& req, auto& res) { PromMetadata(req, res); });
  Route("GET", "/api/v1/status/buildinfo",
        [this](const auto& req, auto& res) { PromBuildInfo(req, res); });
  Route("GET", "/healthz", [this](const auto& req, auto& res) { GetHealth(req, res); });
  Route("GET", "/readyz", [this](const auto& req, auto& res) { GetReady(req, res); });
  Route("GET", "/metrics", [this](const auto& req, auto& res) { GetMetrics(req, res); });
  Route("GET", "/", GetPage);  // and every /ui/<file>: Handle
}

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
