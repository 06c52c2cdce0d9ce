// Komoku JSON queries, as the original Komoku websocket protocol (v2) had
// them, over any transport: MQTT's <prefix>/api/request and HTTP's
// POST /api/v1/komoku both hand the request here. One operation per
// request, e.g.
//   {"get": {"key": "x"}, "query_id": 7}  ->  {"query_id": 7, "result": 21.5}
//   {"put": {"key": "x", "value": 1}}     ->  {"result": {"stored": true, ...}}
// and every failure as {"query_id": 7, "error": {"code": "...", "message": "..."}}.
// docs/komoku-api.md lists every operation with an example.
//
// Thread-safe (the Store is); stateless between requests.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "store/store.h"
#include "wire/key_alias.h"

namespace komoku::store {

class Api {
 public:
  // What `sub` and `unsub` mean depends on the transport: over MQTT the
  // answer names the state topic to subscribe to, over HTTP the stream URL.
  using SubHandler = std::function<Result<nlohmann::json>(bool subscribe, const std::string& key)>;

  // `store` must outlive the Api. With `aliases`, a key may be named by
  // its alias in every operation (ResolveKey: a real key of that name wins).
  Api(Store* store, SubHandler sub_handler, AliasSource aliases = {});

  // Handles one request given as text; never throws. The answer echoes the
  // request's query_id when it had one.
  nlohmann::json HandleText(std::string_view request);
  nlohmann::json Handle(const nlohmann::json& request);

  // The largest request accepted, in bytes.
  static constexpr size_t kMaxRequestBytes = 64 * 1024;

 private:
  // `*counted` is set when the store already counted the refusal.
  Result<nlohmann::json> Route(const nlohmann::json& request, bool* counted);
  Result<nlohmann::json> Dispatch(const std::string& op, const nlohmann::json& args, bool* counted);

  Store* const store_;
  const SubHandler sub_handler_;
  const AliasSource aliases_;
};

// {"segments": [{"name", "from", "to", "bytes", "keys": n or [...]}], "count",
// "bytes"}: times in seconds; with `keys`, each key's changes and bytes.
// GET /api/v1/segments and `komoku segments --json` answer this.
nlohmann::json SegmentsJson(const std::vector<SegmentListing>& segments, bool keys);

// History missing because of damage, for GET /healthz ("damaged") and
// `komoku segments --verify --json`: [{"key", "from", "to" (seconds),
// "part" ("raw", "rollups", "all"), "what", "resolution" (rollups),
// "segment", "salvaged", "offset" (until salvaged), "reason"}].
nlohmann::json DamageJson(const std::vector<ColdDamage>& damage);

// What a compaction did, for POST /api/v1/compact and `komoku compact`.
nlohmann::json CompactionJson(const CompactionReport& report);
// What a backup holds (POST /api/v1/backup, `komoku backup`).
nlohmann::json BackupJson(const BackupReport& report);

// The compaction running now, for GET /api/v1/compact: {"running": false},
// or {"running": true, "phase", "done", "total", "at"} (at: epoch seconds of
// the day or month last done, null before the first).
nlohmann::json CompactionProgressJson(const std::optional<CompactionProgress>& progress);
// The reverse, for `komoku compact` asking a running service; nullopt for
// {"running": false} or anything it does not understand.
std::optional<CompactionProgress> CompactionProgressFromJson(const nlohmann::json& j);

}  // namespace komoku::store
