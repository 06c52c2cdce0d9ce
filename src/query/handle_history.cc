// The handlers of history questions: GET history (raw or in buckets, JSON
// or CSV), at, timespans and stats, over one key or several.

#include "query/server_impl.h"
#include "wire/history_json.h"
#include "wire/input.h"

namespace komoku::query {

using nlohmann::json;
using store::MsToSeconds;
using store::ValueToJson;

Result<Server::Impl::Range> Server::Impl::ParseRange(const Params& p, bool step_allowed) {
  Result<std::string> asked = p.Required("key");
  if (!asked.ok()) return asked.status();
  const store::ResolvedKey resolved = Resolve(*asked);
  const std::string& key = resolved.key;
  Result<store::KeyInfo> info = store_->Get(key);
  if (!info.ok()) return info.status();
  const int64_t now = store_->clock().NowMs();
  Result<int64_t> from = p.Time("from", now - 24 * 3600 * 1000LL, now);
  if (!from.ok()) return from.status();
  // `to` is exclusive; the default takes in a change made this millisecond.
  Result<int64_t> to = p.Time("to", now + 1, now);
  if (!to.ok()) return to.status();
  if (*to <= *from) {
    return Status::InvalidArgument("parameter 'to' must be after 'from'").WithReason("bad_request");
  }
  // A range that reaches the key's newest change answers once every
  // change accepted so far is committed (at most a commit interval): a
  // change a client saw on the stream, or published over MQTT, is then
  // in the answer. A stalled writer does not hold the answer for long.
  if (info->last && info->last->time_ms < *to) {
    store_->WaitCommittedFor(store_->CommitMark(), std::chrono::seconds(2));
  }
  Range r{std::move(info.value()), {}, {}};
  if (resolved.via_alias) r.alias = *asked;
  auto step = step_allowed ? p.Get("step") : std::nullopt;
  if (step) {
    Result<store::HistoryQuery> q =
        store::PlanBuckets(key, *from, *to, *step, p.Get("tz").value_or(""), options_.max_points);
    if (!q.ok()) return q.status();
    r.q = std::move(q.value());
  } else {
    KOMOKU_RETURN_IF_ERROR(store::CheckTimeZone(p.Get("tz").value_or("")));
    r.q = store::HistoryQuery{key, *from, *to, {*from}, 0};
  }
  return r;
}

void Server::Impl::SendRows(Response& res, const Params& p, json meta, const json& columns,
                            json rows) {
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

void Server::Impl::GetHistory(const Request& req, Response& res) {
  Params p(req, {"key", "from", "to", "limit", "step", "agg", "tz", "format"});
  if (!p.error().ok()) return SendStatus(res, p.error());
  Result<Range> r = ParseRange(p, /*step_allowed=*/true);
  if (!r.ok()) return SendStatus(res, r.status());
  const store::KeyInfo& info = r->info;
  json meta = {{"key", info.name},
               {"type", store::KeyTypeName(info.type)},
               {"from", MsToSeconds(r->q.from_ms)},
               {"to", MsToSeconds(r->q.to_ms)}};
  r->Note(meta);
  if (r->q.step_ms) {
    if (p.Get("limit"))
      return SendError(res, 400, "bad_request", "parameter 'limit' is for raw history (no step)");
    const std::string agg = p.Get("agg").value_or(store::DefaultAgg(info.type));
    json columns;
    json rows;
    if (agg == "states") {
      // Time in each state per bucket, a whole answer of its own: it
      // takes no other aggregate.
      Result<json> states = store::StateBucketsJson(*store_, r->q);
      if (!states.ok()) return SendStatus(res, states.status());
      columns = std::move((*states)["columns"]);
      rows = std::move((*states)["rows"]);
      meta["states"] = std::move((*states)["states"]);
    } else {
      Result<std::vector<store::Agg>> aggs = store::ParseAggs(agg, info.type);
      if (!aggs.ok()) return SendStatus(res, aggs.status());
      Result<json> downsampled = store::DownsampleJson(*store_, r->q, *aggs);
      if (!downsampled.ok()) return SendStatus(res, downsampled.status());
      rows = std::move(downsampled.value());
      columns = json::array({"time"});
      for (store::Agg a : *aggs) columns.push_back(store::AggName(a));
    }
    meta["step"] = static_cast<double>(r->q.step_ms) / 1000.0;
    // Rollups that answer as under the options of their time: say where.
    if (json old = store::RollupsUnderOldOptionsJson(*store_, r->q.key, r->q.from_ms, r->q.to_ms);
        !old.empty()) {
      meta["rollups_under_old_options"] = std::move(old);
    }
    return SendRows(res, p, std::move(meta), columns, std::move(rows));
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

void Server::Impl::GetAt(const Request& req, Response& res) {
  Params p(req, {"key", "time"});
  if (!p.error().ok()) return SendStatus(res, p.error());
  Result<std::string> asked = p.Required("key");
  if (!asked.ok()) return SendStatus(res, asked.status());
  const store::ResolvedKey resolved = Resolve(*asked);
  const std::string& key = resolved.key;
  if (!p.Get("time")) return SendError(res, 400, "bad_request", "missing parameter 'time'");
  const int64_t now = store_->clock().NowMs();
  Result<int64_t> time = p.Time("time", now, now);
  if (!time.ok()) return SendStatus(res, time.status());
  Result<store::KeyInfo> info = store_->Get(key);
  if (!info.ok()) return SendStatus(res, info.status());
  Result<std::optional<store::Sample>> at = store_->At(key, *time);
  if (!at.ok()) return SendStatus(res, at.status());
  json j = {{"key", info->name}, {"time", MsToSeconds(*time)}};
  NoteAlias(resolved, *asked, j);
  const int64_t stale = info->options.stale_after_ms;
  bool known = at->has_value() && (stale == 0 || *time - (*at)->time_ms < stale);
  j["value"] = known ? ValueToJson((*at)->value) : json(nullptr);
  j["since"] = at->has_value() ? json(MsToSeconds((*at)->time_ms)) : json(nullptr);
  j["known"] = known;
  SendJson(res, 200, j);
}

void Server::Impl::GetTimespans(const Request& req, Response& res) {
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
  r->Note(out);
  out["from"] = MsToSeconds(r->q.from_ms);
  out["to"] = MsToSeconds(r->q.to_ms);
  SendJson(res, 200, out);
}

void Server::Impl::GetStats(const Request& req, Response& res) {
  Params p(req, {"key", "from", "to", "step", "tz", "distribution"});
  if (!p.error().ok()) return SendStatus(res, p.error());
  Result<Range> r = ParseRange(p, /*step_allowed=*/true);
  if (!r.ok()) return SendStatus(res, r.status());
  auto dist = p.Get("distribution");
  if (dist && *dist != "hour_of_day") {
    return SendError(res, 400, "bad_request", "parameter 'distribution' must be hour_of_day");
  }
  Result<json> stats = store::StatsJson(*store_, r->q, dist.has_value(), p.Get("tz").value_or(""));
  if (!stats.ok()) return SendStatus(res, stats.status());
  json out = *stats;
  out["key"] = r->info.name;
  r->Note(out);
  out["type"] = store::KeyTypeName(r->info.type);
  out["from"] = MsToSeconds(r->q.from_ms);
  out["to"] = MsToSeconds(r->q.to_ms);
  if (json old = store::RollupsUnderOldOptionsJson(*store_, r->q.key, r->q.from_ms, r->q.to_ms);
      !old.empty()) {
    out["rollups_under_old_options"] = std::move(old);
  }
  SendJson(res, 200, out);
}

}  // namespace komoku::query
