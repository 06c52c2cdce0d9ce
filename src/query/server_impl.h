// The private side of the HTTP query server (query/server.h): the Impl
// class its files share. The routes are in server.cc; each handler lives in
// the file named after what it handles, as Mosquitto's handle_*.c:
// - handle_keys.cc: keys and values (get, put, define, delete, the Komoku
//   JSON API);
// - handle_history.cc: history, at, timespans and stats;
// - handle_stream.cc: Server-Sent Events;
// - handle_admin.cc: segments, top, compaction, discovery, health,
//   readiness and metrics;
// - handle_prometheus.cc: the Prometheus-compatible read API.
// What they all use (answers, parameters) is in query/handle_common.h.
// Not for use outside src/query.
#pragma once

#include <spdlog/logger.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "promql/store_source.h"
#include "query/handle_common.h"
#include "query/http.h"
#include "query/server.h"
#include "query/stream.h"
#include "query/websocket.h"
#include "series/history.h"
#include "store/store.h"
#include "wire/api.h"
#include "wire/key_alias.h"

namespace komoku::query {

class Server::Impl {
 public:
  Impl(const ServerOptions& options, store::Store* store, std::function<Health()> health,
       std::shared_ptr<spdlog::logger> log);
  ~Impl() { Stop(); }

  Status Start();
  void Stop();
  int port() const { return http_->port(); }

 private:
  using json = nlohmann::json;
  using Handler = std::function<void(const Request&, Response&)>;

  // server.cc: routing.
  // Runs the route of `req` (on a worker thread) and counts a refusal once.
  void Handle(const Request& req, Response& res);

  // The web page's files (src/web, docs/web.md).
  static void GetPage(const Request& req, Response& res);

  void Route(const char* method, const char* path, Handler handler);

  void Routes();

  // With one `key=`, the handler answers as it is. With several (at most
  // kMaxKeysPerRequest), it runs once per key on the same other parameters
  // and the answer is {"results": [<its answer for each key>, ...]} in the
  // order given; the first key refused answers for the request (it names the
  // key). CSV takes one key.
  template <typename Fn>
  void PerKey(const Request& req, Response& res, Fn handler);
  static constexpr size_t kMaxKeysPerRequest = 100;

  // handle_keys.cc
  void GetKeys(const Request& req, Response& res);

  void GetValue(const Request& req, Response& res);

  void PutValue(const Request& req, Response& res);

  // Sends a Komoku API answer with the HTTP status its error calls for.
  void SendApiAnswer(Response& res, const json& answer);

  void PostKomoku(const Request& req, Response& res);

  // Body: {"<key>": {"type": ..., "opts": {...}}, ...} as Komoku's define,
  // or with ?key=K just {"type": ..., "opts": {...}}.
  void PostDefine(const Request& req, Response& res);

  void DeleteKey(const Request& req, Response& res);

  // The key a `key=` parameter names: the key of that name, else the key
  // whose alias it is (store::ResolveKey; options_.key_aliases).
  store::ResolvedKey Resolve(const std::string& name) const {
    return store::ResolveKey(*store_, options_.key_aliases, name);
  }
  // Adds "alias": <the name asked> to an answer about a key found by its
  // alias.
  static void NoteAlias(const store::ResolvedKey& key, const std::string& asked, json& answer) {
    if (key.via_alias) answer["alias"] = asked;
  }

  // handle_history.cc
  // The key, range and buckets shared by history, stats and timespans.
  struct Range {
    store::KeyInfo info;
    store::HistoryQuery q;
    std::optional<std::string> alias;  // the name asked, when it was an alias
    // Adds "alias" to an answer (NoteAlias).
    void Note(json& answer) const {
      if (alias) answer["alias"] = *alias;
    }
  };
  Result<Range> ParseRange(const Params& p, bool step_allowed);

  // JSON, or CSV with format=csv: a header of `columns`, then the rows.
  void SendRows(Response& res, const Params& p, json meta, const json& columns, json rows);

  void GetHistory(const Request& req, Response& res);

  void GetAt(const Request& req, Response& res);

  void GetTimespans(const Request& req, Response& res);

  void GetStats(const Request& req, Response& res);

  // handle_stream.cc
  void GetStream(const Request& req, Response& res);

  // handle_admin.cc
  // The live cold segments, oldest first; `keys=true` lists each one's keys.
  void GetSegments(const Request& req, Response& res);

  // The keys that cost the disk most: by=writes (bytes written to the hot
  // store since the start, the SD card's wear) or by=size (bytes in cold
  // segments), with each key's change rate.
  void GetTop(const Request& req, Response& res);

  // Runs a compaction now and answers what it did (`komoku compact` calls
  // this when the service holds the data directory).
  void PostCompact(const Request& req, Response& res);
  void PostBackup(const Request& req, Response& res);

  // The entities discovery read (docs/mapping.md#discovery), mapped and
  // refused, with the reason of each refusal.
  void GetDiscovery(const Request&, Response& res);

  // Liveness; "warnings" lists what is wrong without stopping the service
  // (a quarantined segment, a damaged block), "damaged" the history missing
  // because of damage, key by key (docs/storage.md, "Damage").
  void GetHealth(const Request&, Response& res);

  // Readiness: 200 when the store takes changes, the broker is connected and
  // the subscription is in place; otherwise 503 and, in "problems", each
  // reason. Liveness is /healthz.
  void GetReady(const Request&, Response& res);

  void GetMetrics(const Request&, Response& res);

  // handle_prometheus.cc: the Prometheus-compatible read API
  // (docs/prometheus.md), answered and refused in Prometheus's JSON shapes.
  void PromQuery(const Request& req, Response& res);
  void PromQueryRange(const Request& req, Response& res);
  // Adds what a query's source read to komoku_promql_read_total.
  void CountReads(const promql::StoreSource& source);
  void PromSeries(const Request& req, Response& res);
  void PromLabels(const Request& req, Response& res);
  // GET|POST /api/v1/label/<name>/values, routed by prefix in Handle.
  void PromLabelValues(const Request& req, Response& res);
  void PromMetadata(const Request& req, Response& res);
  void PromBuildInfo(const Request& req, Response& res);

  // Constant after construction.
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  const ServerOptions options_;
  store::Store* const store_;
  const std::function<Health()> health_;
  const std::shared_ptr<spdlog::logger> log_;

  std::map<std::pair<std::string, std::string>, Handler> routes_;  // constant after construction
  store::Api api_;
  StreamHub streams_;
  // Before http_, which hands it connections.
  WebSocketHub websockets_;
  std::unique_ptr<HttpServer> http_;  // thread-safe
};

}  // namespace komoku::query
