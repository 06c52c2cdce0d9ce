#include "wire/api.h"

#include <cmath>
#include <string_view>
#include <utility>

#include "series/history.h"
#include "wire/history_json.h"
#include "wire/input.h"
#include "wire/key_options_json.h"
#include "wire/time_param.h"

namespace komoku::store {
namespace {

using nlohmann::json;

// Raw history answers hold at most this many rows (HTTP has its own limit).
constexpr size_t kMaxFetchRows = 10000;

Status Bad(const std::string& message) {
  return Status::InvalidArgument(message).WithReason("bad_request");
}

Result<std::string> KeyArg(const json& args) {
  auto it = args.find("key");
  if (it == args.end() || !it->is_string()) return Bad("\"key\" (a string) is required");
  return it->get<std::string>();
}

Result<std::optional<int64_t>> TimeArg(const json& args, const char* name, int64_t now_ms) {
  auto it = args.find(name);
  if (it == args.end() || it->is_null()) return std::optional<int64_t>();
  if (it->is_string()) {
    Result<int64_t> t = ParseTimeParam(it->get<std::string>(), now_ms);
    if (!t.ok())
      return t.status().WithContext(std::string("\"") + name + "\"").WithReason("bad_time");
    return std::optional<int64_t>(*t);
  }
  Result<int64_t> ms = JsonSecondsToMs(*it);
  if (!ms.ok()) {
    return Status::InvalidArgument(std::string("\"") + name +
                                   "\" must be epoch seconds or a time "
                                   "such as \"-24h\" or ISO 8601")
        .WithReason("bad_time");
  }
  return std::optional<int64_t>(*ms);
}

// Refuses arguments the operation does not know, so a typo is an error.
Status OnlyArgs(const json& args, std::initializer_list<const char*> known) {
  for (auto it = args.begin(); it != args.end(); ++it) {
    bool ok = false;
    for (const char* k : known) ok = ok || it.key() == k;
    if (!ok) return Bad("unknown argument \"" + it.key() + "\"");
  }
  return Status::Ok();
}

json SampleJson(const std::optional<Sample>& s) {
  if (!s) return nullptr;
  return {{"value", ValueToJson(s->value)}, {"time", MsToSeconds(s->time_ms)}};
}

json ChangeJson(const Change& c) {
  return {{"key", c.key},
          {"type", KeyTypeName(c.type)},
          {"value", ValueToJson(c.sample.value)},
          {"time", MsToSeconds(c.sample.time_ms)},
          {"stored", c.stored},
          {"current", c.is_current},
          {"created", c.created_key}};
}

json KeyJson(const KeyInfo& k, bool with_value) {
  json j = {{"key", k.name},
            {"type", KeyTypeName(k.type)},
            {"opts", KeyOptionsToJson(k.options, k.type)}};
  if (with_value) {
    j["value"] = k.last ? ValueToJson(k.last->value) : json(nullptr);
    j["time"] = k.last ? json(MsToSeconds(k.last->time_ms)) : json(nullptr);
  }
  return j;
}

// One request on its way through an operation's handler.
struct Call {
  Store& store;
  const Api::SubHandler& sub_handler;
  const AliasSource& aliases;
  const std::string& op;
  const json& args;
  int64_t now;
  bool* counted;

  // Errors of the store's writes (put, increment, define) were counted by
  // it.
  Status Written(const Status& st) const {
    *counted = true;
    return st;
  }

  // The key an argument names: the key of that name, else the key whose
  // alias it is (ResolveKey).
  std::string Resolved(const std::string& name) const {
    return ResolveKey(store, aliases, name).key;
  }
  // The "key" argument, resolved.
  Result<std::string> Key() const {
    Result<std::string> name = KeyArg(args);
    if (!name.ok()) return name.status();
    return Resolved(*name);
  }
};

using Handler = Result<json> (*)(const Call&);

Result<json> OpPing(const Call& c) {
  KOMOKU_RETURN_IF_ERROR(OnlyArgs(c.args, {}));
  return json("pong");
}

// get, last and previous.
Result<json> OpRead(const Call& c) {
  KOMOKU_RETURN_IF_ERROR(OnlyArgs(c.args, {"key"}));
  Result<std::string> key = c.Key();
  if (!key.ok()) return key.status();
  Result<KeyInfo> info = c.store.Get(*key);
  if (!info.ok()) return info.status();
  if (c.op == "get") return info->last ? ValueToJson(info->last->value) : json(nullptr);
  return SampleJson(c.op == "last" ? info->last : info->previous);
}

Result<json> OpPut(const Call& c) {
  KOMOKU_RETURN_IF_ERROR(OnlyArgs(c.args, {"key", "value", "time"}));
  Result<std::string> key = c.Key();
  if (!key.ok()) return key.status();
  auto value = c.args.find("value");
  if (value == c.args.end()) return Bad("\"value\" is required");
  Result<InputValue> input = JsonToInput(*value);
  if (!input.ok()) return input.status().WithReason("bad_request");
  Result<std::optional<int64_t>> time = TimeArg(c.args, "time", c.now);
  if (!time.ok()) return time.status();
  PutOptions put;
  put.time_ms = *time;
  Result<Change> change = c.store.Put(*key, *input, put);
  if (!change.ok()) return c.Written(change.status());
  return ChangeJson(*change);
}

// increment and decrement.
Result<json> OpIncrement(const Call& c) {
  KOMOKU_RETURN_IF_ERROR(OnlyArgs(c.args, {"key", "step", "time"}));
  Result<std::string> key = c.Key();
  if (!key.ok()) return key.status();
  double step = 1;
  if (auto s = c.args.find("step"); s != c.args.end()) {
    if (!s->is_number() || !std::isfinite(s->get<double>()))
      return Bad("\"step\" must be a number");
    step = s->get<double>();
  }
  Result<std::optional<int64_t>> time = TimeArg(c.args, "time", c.now);
  if (!time.ok()) return time.status();
  PutOptions put;
  put.time_ms = *time;
  Result<Change> change = c.store.Increment(*key, c.op == "increment" ? step : -step, put);
  if (!change.ok()) return c.Written(change.status());
  return ChangeJson(*change);
}

Result<json> OpKeys(const Call& c) {
  KOMOKU_RETURN_IF_ERROR(OnlyArgs(c.args, {"values"}));
  bool values = false;
  if (auto v = c.args.find("values"); v != c.args.end()) {
    if (!v->is_boolean()) return Bad("\"values\" must be true or false");
    values = v->get<bool>();
  }
  json out = json::array();
  for (const KeyInfo& k : c.store.Keys()) out.push_back(KeyJson(k, values));
  return out;
}

// {"define": {"name": {"type": "uptime", "opts": {"max_time": 30}}, ...}}
Result<json> OpDefine(const Call& c) {
  if (c.args.empty()) return Bad("\"define\" names at least one key");
  std::vector<Store::KeyDefinition> defs;
  for (auto it = c.args.begin(); it != c.args.end(); ++it) {
    const json& spec = it.value();
    if (!spec.is_object()) return Bad("definition of \"" + it.key() + "\" must be an object");
    KOMOKU_RETURN_IF_ERROR(OnlyArgs(spec, {"type", "opts"}));
    Store::KeyDefinition def{c.Resolved(it.key()), std::nullopt, {}};
    if (auto t = spec.find("type"); t != spec.end()) {
      if (!t->is_string()) return Bad("\"type\" must be a string");
      Result<KeyType> parsed = ParseKeyType(t->get<std::string>());
      if (!parsed.ok()) return parsed.status().WithReason("bad_request");
      def.type = *parsed;
    }
    if (auto opts = spec.find("opts"); opts != spec.end()) {
      Result<KeyOptionsPatch> patch = ParseKeyOptions(*opts);
      if (!patch.ok()) return patch.status().WithContext("key '" + it.key() + "'");
      def.options = std::move(patch.value());
    }
    defs.push_back(std::move(def));
  }
  Result<std::vector<KeyInfo>> infos = c.store.DefineAll(defs);
  if (!infos.ok()) return c.Written(infos.status());
  json out = json::object();
  for (const KeyInfo& info : *infos) out[info.name] = KeyJson(info, false);
  return out;
}

Result<json> OpDelete(const Call& c) {
  KOMOKU_RETURN_IF_ERROR(OnlyArgs(c.args, {"key", "confirm"}));
  Result<std::string> key = c.Key();
  if (!key.ok()) return key.status();
  auto confirm = c.args.find("confirm");
  if (confirm == c.args.end() || *confirm != true) {
    return Status::InvalidArgument(
               "delete removes the key and all its history: add "
               "\"confirm\": true")
        .WithReason("not_confirmed");
  }
  KOMOKU_RETURN_IF_ERROR(c.store.Delete(*key));
  return json({{"deleted", *key}});
}

// Downsampled: one row per bucket, [start, agg1, agg2, ...].
Result<json> OpFetchDownsampled(const Call& c, const std::string& key, const json& step,
                                int64_t from_ms, int64_t to_ms) {
  if (!step.is_string()) return Bad("\"step\" must be a string such as \"1h\" or \"auto\"");
  Result<KeyInfo> info = c.store.Get(key);
  if (!info.ok()) return info.status();
  Result<HistoryQuery> q = PlanBuckets(key, from_ms, to_ms, step.get<std::string>(),
                                       c.args.value("tz", std::string()), kMaxFetchRows);
  if (!q.ok()) return q.status();
  Result<std::vector<Agg>> aggs =
      ParseAggs(c.args.value("agg", std::string(DefaultAgg(info->type))), info->type);
  if (!aggs.ok()) return aggs.status();
  return DownsampleJson(c.store, *q, *aggs);
}

Result<json> OpFetch(const Call& c) {
  KOMOKU_RETURN_IF_ERROR(OnlyArgs(c.args, {"key", "from", "to", "limit", "step", "agg", "tz"}));
  Result<std::string> key = c.Key();
  if (!key.ok()) return key.status();
  Result<std::optional<int64_t>> from = TimeArg(c.args, "from", c.now);
  if (!from.ok()) return from.status();
  Result<std::optional<int64_t>> to = TimeArg(c.args, "to", c.now);
  if (!to.ok()) return to.status();
  int64_t from_ms = from->value_or(c.now - 24 * 3600 * 1000LL);
  int64_t to_ms = to->value_or(c.now + 1);
  if (to_ms < from_ms) return Bad("\"to\" is before \"from\"");
  if (auto step = c.args.find("step"); step != c.args.end()) {
    return OpFetchDownsampled(c, *key, *step, from_ms, to_ms);
  }
  if (c.args.contains("agg") || c.args.contains("tz"))
    return Bad("\"agg\" and \"tz\" need a \"step\"");
  size_t limit = kMaxFetchRows;
  if (auto l = c.args.find("limit"); l != c.args.end()) {
    if (!l->is_number_unsigned() || l->get<uint64_t>() == 0 || l->get<uint64_t>() > kMaxFetchRows) {
      return Bad("\"limit\" must be 1.." + std::to_string(kMaxFetchRows));
    }
    limit = static_cast<size_t>(l->get<uint64_t>());
  }
  Result<std::vector<Sample>> rows = c.store.History(*key, from_ms, to_ms, limit + 1);
  if (!rows.ok()) return rows.status();
  if (rows->size() > limit) {
    return Status::InvalidArgument("more than " + std::to_string(limit) +
                                   " changes in the range; narrow from/to")
        .WithReason("too_many_points");
  }
  json out = json::array();
  for (const Sample& s : *rows)
    out.push_back(json::array({MsToSeconds(s.time_ms), ValueToJson(s.value)}));
  return out;
}

// sub and unsub: what they answer is the transport's (Api::SubHandler).
Result<json> OpSub(const Call& c) {
  KOMOKU_RETURN_IF_ERROR(OnlyArgs(c.args, {"key"}));
  Result<std::string> key = c.Key();
  if (!key.ok()) return key.status();
  Status name_ok = ValidateKeyName(*key);
  if (!name_ok.ok()) return name_ok.WithReason("bad_key");
  if (!c.sub_handler) return Bad("\"" + c.op + "\" is not available on this transport");
  return c.sub_handler(c.op == "sub", *key);
}

// Every operation, in the order the error for an unknown one lists them.
constexpr std::pair<std::string_view, Handler> kHandlers[] = {
    {"get", OpRead},
    {"last", OpRead},
    {"previous", OpRead},
    {"put", OpPut},
    {"increment", OpIncrement},
    {"decrement", OpIncrement},
    {"keys", OpKeys},
    {"define", OpDefine},
    {"delete", OpDelete},
    {"fetch", OpFetch},
    {"sub", OpSub},
    {"unsub", OpSub},
    {"ping", OpPing},
};

const Handler* FindHandler(std::string_view op) {
  for (const auto& [name, fn] : kHandlers) {
    if (name == op) return &fn;
  }
  return nullptr;
}

}  // namespace

Api::Api(Store* store, SubHandler sub_handler, AliasSource aliases)
    : store_(store), sub_handler_(std::move(sub_handler)), aliases_(std::move(aliases)) {}

json Api::HandleText(std::string_view request) {
  if (request.size() > kMaxRequestBytes) {
    store_->metrics().Add("komoku_refused_total{reason=\"bad_json\"}");
    return {{"error",
             {{"code", "bad_json"},
              {"message", "request of " + std::to_string(request.size()) +
                              " bytes is over the limit of " + std::to_string(kMaxRequestBytes)}}}};
  }
  json j = json::parse(request.begin(), request.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    store_->metrics().Add("komoku_refused_total{reason=\"bad_json\"}");
    return {{"error", {{"code", "bad_json"}, {"message", "request is not valid JSON"}}}};
  }
  return Handle(j);
}

json Api::Handle(const json& request) {
  json answer = json::object();
  if (request.is_object()) {
    if (auto qid = request.find("query_id"); qid != request.end()) answer["query_id"] = *qid;
  }
  bool counted = false;
  Result<json> result = Route(request, &counted);
  if (result.ok()) {
    answer["result"] = std::move(result.value());
    return answer;
  }
  const Status& st = result.status();
  const std::string reason = st.reason();
  // The store counts the refusals of its writes; every other refusal is
  // counted here, once.
  if (!counted) store_->metrics().Add("komoku_refused_total{reason=\"" + reason + "\"}");
  answer["error"] = {{"code", reason}, {"message", st.message()}};
  return answer;
}

Result<json> Api::Route(const json& request, bool* counted) {
  if (!request.is_object()) {
    return Status::InvalidArgument("a request is a JSON object: {\"<operation>\": {...}}")
        .WithReason("bad_json");
  }
  std::string op;
  const json* args = nullptr;
  for (auto it = request.begin(); it != request.end(); ++it) {
    if (it.key() == "query_id") continue;
    if (!op.empty()) {
      return Bad("one operation per request (got \"" + op + "\" and \"" + it.key() + "\")");
    }
    op = it.key();
    args = &it.value();
  }
  if (op.empty()) return Bad("no operation in the request");
  if (!args->is_object() && !args->is_null()) {
    return Bad("the arguments of \"" + op + "\" must be an object");
  }
  static const json kEmpty = json::object();
  try {
    return Dispatch(op, args->is_null() ? kEmpty : *args, counted);
  } catch (const std::exception& e) {  // nlohmann type errors on odd input
    return Bad(std::string("bad request: ") + e.what());
  }
}

Result<json> Api::Dispatch(const std::string& op, const json& args, bool* counted) {
  const Handler* handler = FindHandler(op);
  if (!handler) {
    std::string known;
    for (const auto& [name, fn] : kHandlers)
      known += (known.empty() ? "" : ", ") + std::string(name);
    return Status::InvalidArgument("unknown operation \"" + op + "\" (known: " + known + ")")
        .WithReason("unknown_operation");
  }
  Call call{*store_, sub_handler_, aliases_, op, args, store_->clock().NowMs(), counted};
  return (*handler)(call);
}

nlohmann::json SegmentsJson(const std::vector<SegmentListing>& segments, bool keys) {
  nlohmann::json list = nlohmann::json::array();
  uint64_t total = 0;
  for (const SegmentListing& seg : segments) {
    total += seg.bytes;
    nlohmann::json j = {{"name", seg.name},
                        {"from", MsToSeconds(seg.from_ms)},
                        {"to", MsToSeconds(seg.to_ms)},
                        {"bytes", seg.bytes}};
    uint64_t changes = 0;
    nlohmann::json key_list = nlohmann::json::array();
    for (const SegmentKeyInfo& k : seg.keys) {
      changes += k.changes;
      if (!keys) continue;
      nlohmann::json kj = {{"key", k.key},
                           {"type", KeyTypeName(k.type)},
                           {"changes", k.changes},
                           {"raw_bytes", k.raw_bytes},
                           {"rollup_bytes", k.rollup_bytes}};
      if (k.first_ms) kj["first"] = MsToSeconds(*k.first_ms);
      if (k.last_ms) kj["last"] = MsToSeconds(*k.last_ms);
      key_list.push_back(std::move(kj));
    }
    j["changes"] = changes;
    if (keys) {
      j["keys"] = std::move(key_list);
    } else {
      j["keys"] = seg.keys.size();
    }
    list.push_back(std::move(j));
  }
  return {{"segments", std::move(list)}, {"count", segments.size()}, {"bytes", total}};
}

nlohmann::json DamageJson(const std::vector<ColdDamage>& damage) {
  nlohmann::json list = nlohmann::json::array();
  for (const ColdDamage& d : damage) {
    const BlockDamage& b = d.block;
    const char* part = b.part == BlockDamage::Part::kRaw       ? "raw"
                       : b.part == BlockDamage::Part::kRollups ? "rollups"
                                                               : "all";
    nlohmann::json j = {{"key", b.key},
                        {"from", MsToSeconds(b.from_ms)},
                        {"to", MsToSeconds(b.to_ms)},
                        {"part", part},
                        {"what", DamagedPartName(b)},
                        {"segment", d.segment},
                        {"salvaged", d.salvaged},
                        {"reason", b.reason}};
    if (b.part == BlockDamage::Part::kRollups) j["resolution"] = MsToSeconds(b.resolution_ms);
    if (!d.salvaged) j["offset"] = b.offset;
    list.push_back(std::move(j));
  }
  return list;
}

nlohmann::json BackupJson(const BackupReport& r) {
  return {{"dir", r.dir},
          {"created", MsToSeconds(r.created_ms)},
          {"seq", r.seq},
          {"cold_seq", r.cold_seq},
          {"segments", r.segments},
          {"linked_files", r.linked},
          {"files", r.files.size()},
          {"bytes", r.bytes}};
}

nlohmann::json CompactionJson(const CompactionReport& r) {
  nlohmann::json j = {{"segments_written", r.segments_written},
                      {"segments_removed", r.segments_removed},
                      {"changes", r.changes},
                      {"bytes_written", r.bytes_written},
                      {"seconds", r.seconds}};
  j["cold_to"] = r.cold_to_ms == INT64_MIN ? nlohmann::json(nullptr)
                                           : nlohmann::json(MsToSeconds(r.cold_to_ms));
  return j;
}

nlohmann::json CompactionProgressJson(const std::optional<CompactionProgress>& p) {
  if (!p) return {{"running", false}};
  return {{"running", true},
          {"phase", p->phase},
          {"done", p->done},
          {"total", p->total},
          {"at", p->at_ms == 0 ? nlohmann::json(nullptr) : nlohmann::json(MsToSeconds(p->at_ms))}};
}

std::optional<CompactionProgress> CompactionProgressFromJson(const nlohmann::json& j) {
  if (!j.is_object() || !j.value("running", false)) return std::nullopt;
  const nlohmann::json& phase = j["phase"];
  const nlohmann::json& done = j["done"];
  const nlohmann::json& total = j["total"];
  const nlohmann::json& at = j["at"];
  if (!phase.is_string() || !done.is_number_integer() || !total.is_number_integer()) {
    return std::nullopt;
  }
  CompactionProgress p;
  p.phase = phase.get<std::string>();
  p.done = done.get<int64_t>();
  p.total = total.get<int64_t>();
  p.at_ms = at.is_number() ? static_cast<int64_t>(std::llround(at.get<double>() * 1000)) : 0;
  return p;
}

}  // namespace komoku::store
