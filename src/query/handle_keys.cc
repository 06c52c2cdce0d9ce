// The handlers of keys and values: GET keys and value, PUT|POST value,
// POST komoku (the Komoku JSON API), POST define, DELETE key.

#include "query/server_impl.h"
#include "wire/input.h"

namespace komoku::query {

using nlohmann::json;
using store::MsToSeconds;
using store::ValueToJson;

void Server::Impl::GetKeys(const Request& req, Response& res) {
  Params p(req, {"values"});
  if (!p.error().ok()) return SendStatus(res, p.error());
  Result<bool> values = p.Flag("values");
  if (!values.ok()) return SendStatus(res, values.status());
  const std::map<std::string, std::string> aliases =
      options_.key_aliases ? options_.key_aliases() : std::map<std::string, std::string>();
  JsonListBody body(json::object(), "keys");
  for (const store::KeyInfo& k : store_->Keys()) {
    json j = {{"key", k.name}, {"type", store::KeyTypeName(k.type)}};
    if (auto alias = aliases.find(k.name); alias != aliases.end()) j["alias"] = alias->second;
    if (*values && k.last) {
      j["value"] = ValueToJson(k.last->value);
      j["time"] = MsToSeconds(k.last->time_ms);
    }
    body.Add(j);
  }
  body.Send(res);
}

void Server::Impl::GetValue(const Request& req, Response& res) {
  Params p(req, {"key"});
  if (!p.error().ok()) return SendStatus(res, p.error());
  Result<std::string> asked = p.Required("key");
  if (!asked.ok()) return SendStatus(res, asked.status());
  const store::ResolvedKey key = Resolve(*asked);
  Result<store::KeyInfo> info = store_->Get(key.key);
  if (!info.ok()) return SendStatus(res, info.status());
  json j = {{"key", info->name}, {"type", store::KeyTypeName(info->type)}};
  NoteAlias(key, *asked, j);
  j["value"] = info->last ? ValueToJson(info->last->value) : json(nullptr);
  j["time"] = info->last ? json(MsToSeconds(info->last->time_ms)) : json(nullptr);
  j["previous"] = info->previous ? SampleJson(*info->previous) : json(nullptr);
  SendJson(res, 200, j);
}

void Server::Impl::PutValue(const Request& req, Response& res) {
  Params p(req, {"key", "value", "time"});
  if (!p.error().ok()) return SendStatus(res, p.error());
  Result<std::string> asked = p.Required("key");
  if (!asked.ok()) return SendStatus(res, asked.status());
  const store::ResolvedKey key = Resolve(*asked);
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
  Result<store::Change> change = store_->Put(key.key, msg.value, put);
  if (!change.ok()) return SendStatus(res, change.status(), /*counted=*/true);
  json j = {{"key", change->key},
            {"type", store::KeyTypeName(change->type)},
            {"value", ValueToJson(change->sample.value)},
            {"time", MsToSeconds(change->sample.time_ms)},
            {"current", change->is_current},
            {"created", change->created_key}};
  NoteAlias(key, *asked, j);
  SendJson(res, change->created_key ? 201 : 200, j);
}

void Server::Impl::SendApiAnswer(Response& res, const json& answer) {
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

void Server::Impl::PostKomoku(const Request& req, Response& res) {
  Params p(req, {});
  if (!p.error().ok()) return SendStatus(res, p.error());
  SendApiAnswer(res, api_.HandleText(req.body));
}

void Server::Impl::PostDefine(const Request& req, Response& res) {
  Params p(req, {"key"});
  if (!p.error().ok()) return SendStatus(res, p.error());
  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    return SendError(res, 400, "bad_json", "body must be a JSON object");
  }
  if (auto key = p.Get("key")) body = json{{*key, body}};
  SendApiAnswer(res, api_.Handle(json{{"define", body}}));
}

void Server::Impl::DeleteKey(const Request& req, Response& res) {
  Params p(req, {"key", "confirm"});
  if (!p.error().ok()) return SendStatus(res, p.error());
  Result<std::string> asked = p.Required("key");
  if (!asked.ok()) return SendStatus(res, asked.status());
  if (p.Get("confirm").value_or("") != "yes") {
    return SendError(res, 400, "not_confirmed",
                     "deleting removes the key and all its history: add confirm=yes");
  }
  const store::ResolvedKey key = Resolve(*asked);
  Status st = store_->Delete(key.key);
  if (!st.ok()) return SendStatus(res, st);
  json j = {{"deleted", key.key}};
  NoteAlias(key, *asked, j);
  SendJson(res, 200, j);
}

}  // namespace komoku::query
