// The handlers that look after the service: segments, top (what costs the
// disk), compaction, discovery, /healthz, /readyz and /metrics.

#include <algorithm>

#include "query/metrics.h"
#include "query/server_impl.h"
#include "wire/input.h"

namespace komoku::query {

using nlohmann::json;
using store::MsToSeconds;
using store::ValueToJson;

void Server::Impl::GetSegments(const Request& req, Response& res) {
  Params p(req, {"keys"});
  if (!p.error().ok()) return SendStatus(res, p.error());
  Result<bool> keys = p.Flag("keys");
  if (!keys.ok()) return SendStatus(res, keys.status());
  SendJson(res, 200, SegmentsJson(store_->Segments(), *keys));
}

void Server::Impl::GetTop(const Request& req, Response& res) {
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

void Server::Impl::PostCompact(const Request& req, Response& res) {
  Params p(req, {});
  if (!p.error().ok()) return SendStatus(res, p.error());
  Result<store::CompactionReport> r = store_->Compact();
  if (!r.ok()) return SendStatus(res, r.status());
  SendJson(res, 200, CompactionJson(*r));
}

// Writes a backup of the running store into `dir` (Store::Backup). The
// path is the service's own: it must be absolute, and the directory missing
// or empty (nothing is overwritten). Guarded like every API route (the
// token when one is set).
void Server::Impl::PostBackup(const Request& req, Response& res) {
  Params p(req, {"dir"});
  if (!p.error().ok()) return SendStatus(res, p.error());
  Result<std::string> dir = p.Required("dir");
  if (!dir.ok()) return SendStatus(res, dir.status());
  if (dir->empty() || (*dir)[0] != '/') {
    return SendError(
        res, 400, "bad_request",
        "parameter 'dir' must be an absolute path on the service's host, not '" + *dir + "'");
  }
  store::BackupOptions options;
  options.dir = *dir;
  Result<store::BackupReport> r = store_->Backup(options);
  if (!r.ok()) return SendStatus(res, r.status());
  SendJson(res, 200, store::BackupJson(*r));
}

void Server::Impl::GetDiscovery(const Request&, Response& res) {
  json j = options_.discovery ? options_.discovery() : json(nullptr);
  if (j.is_null()) {
    return SendError(res, 404, "not_found",
                     "discovery is off (set discovery.enabled: true in the config)");
  }
  SendJson(res, 200, j);
}

void Server::Impl::GetHealth(const Request&, Response& res) {
  Health h = health_ ? health_() : Health{};
  json j = {{"status", "ok"},
            {"mqtt", {{"connected", h.mqtt_connected}, {"subscribed", h.mqtt_subscribed}}},
            {"store", {{"queue", store_->QueueDepth()}}},
            {"warnings", store_->ColdWarnings()},
            {"damaged", store::DamageJson(store_->DamagedHistory())}};
  SendJson(res, 200, j);
}

void Server::Impl::GetReady(const Request&, Response& res) {
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
  if (h.remote_write_stalled >= options_.writer_stall_limit) {
    problems.push_back("remote write has made no step for " +
                       std::to_string(h.remote_write_stalled.count() / 1000) + " s");
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
  if (h.remote_write_on) {
    // Informative only: a receiver that is away or refuses Komoku is not a
    // reason to take Komoku out of service; a stuck thread is (above).
    j["remote_write"] = {{"stalled_ms", static_cast<int64_t>(h.remote_write_stalled.count())},
                         {"failing_ms", static_cast<int64_t>(h.remote_write_failing.count())},
                         {"error", h.remote_write_error},
                         {"pending", store_->metrics().Get("komoku_remote_write_pending")},
                         {"lag_seconds", store_->metrics().Get("komoku_remote_write_lag_seconds")}};
  }
  SendJson(res, problems.empty() ? 200 : 503, j);
}

// `?name=<family>` (repeatable) answers only those families: a poller
// that watches one counter need not have every key's series rendered.
void Server::Impl::GetMetrics(const Request& req, Response& res) {
  std::vector<std::string> only;
  for (const auto& [name, value] : QueryParams(req)) {
    if (name != "name") {
      SendError(res, 400, "bad_request", "unknown parameter '" + name + "'");
      return;
    }
    only.push_back(value);
  }
  Result<std::string> text =
      RenderMetrics(*store_, health_ ? health_() : Health{}, started_, *log_, only);
  if (!text.ok()) {
    SendStatus(res, text.status());
    return;
  }
  res.SetContent(std::move(text.value()), kMetricsContentType);
}

}  // namespace komoku::query
