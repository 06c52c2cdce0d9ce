#include "wire/ws_protocol.h"

#include <cctype>
#include <utility>

#include "series/history.h"
#include "wire/history_json.h"
#include "wire/input.h"
#include "wire/key_options_json.h"
#include "wire/time_param.h"

namespace komoku::store {
namespace {

using nlohmann::json;

// v1 history answers hold at most this many rows, as the `fetch` query's.
constexpr size_t kMaxRows = 10000;

json Error(const std::string& code, const std::string& message) {
  return {{"error", code}, {"message", message}};
}

// The old protocols' error code for a Komoku API error code: the three the
// old clients know where one fits, the API's own otherwise (v2 only; v1
// says invalid_query for all the rest).
std::string OldCode(const std::string& code, WsVersion v) {
  if (code == "bad_json") return "invalid_json";
  if (code == "wrong_type" || code == "value_not_allowed") return "invalid_value";
  if (code == "bad_request" || code == "bad_key" || code == "bad_time" ||
      code == "unknown_operation" || v == WsVersion::kV1) {
    return "invalid_query";
  }
  return code;
}

// The arguments of an operation: an object, or null for none.
Result<json> Args(const std::string& op, const json& args) {
  if (args.is_null()) return json::object();
  if (!args.is_object()) {
    return Status::InvalidArgument("the arguments of \"" + op + "\" must be an object")
        .WithReason("bad_request");
  }
  return args;
}

Result<std::string> KeyNameOf(const json& args) {
  auto it = args.find("key");
  if (it == args.end() || !it->is_string()) {
    return Status::InvalidArgument("\"key\" (a string) is required").WithReason("bad_request");
  }
  std::string key = it->get<std::string>();
  KOMOKU_RETURN_IF_ERROR(ValidateKeyName(key).WithReason("bad_key"));
  return key;
}

// {"include": ["value"]} (the v1 form) or {"values": true}.
Result<bool> IncludeValues(const json& args) {
  bool values = false;
  for (auto it = args.begin(); it != args.end(); ++it) {
    if (it.key() == "include") {
      if (!it->is_array()) {
        return Status::InvalidArgument("\"include\" must be a list such as [\"value\"]")
            .WithReason("bad_request");
      }
      for (const json& item : *it) {
        if (item != "value") {
          return Status::InvalidArgument("\"include\" knows only \"value\"")
              .WithReason("bad_request");
        }
        values = true;
      }
    } else if (it.key() == "values" && it->is_boolean()) {
      values = it->get<bool>();
    } else {
      return Status::InvalidArgument("unknown argument \"" + it.key() + "\" of \"keys\"")
          .WithReason("bad_request");
    }
  }
  return values;
}

// A Ruby Time#to_s ("2026-12-05 18:40:00 +0000", "... UTC") in the ISO
// form ParseTimeParam reads; anything else unchanged.
std::string RubyTimeToIso(std::string text) {
  const size_t sp = text.rfind(' ');
  if (sp == std::string::npos || sp < 10) return text;
  const std::string zone = text.substr(sp + 1);
  if (zone == "UTC") return text.substr(0, sp) + "Z";
  if (zone.size() == 5 && (zone[0] == '+' || zone[0] == '-')) {
    for (size_t i = 1; i < 5; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(zone[i]))) return text;
    }
    return text.substr(0, sp) + zone;
  }
  return text;
}

// A request with one operation: its name and arguments, or why not.
Result<std::pair<std::string, json>> Operation(const json& request) {
  if (!request.is_object()) {
    return Status::InvalidArgument("a request is a JSON object: {\"<operation>\": {...}}")
        .WithReason("bad_request");
  }
  std::string op;
  json args;
  for (auto it = request.begin(); it != request.end(); ++it) {
    if (it.key() == "query_id") continue;
    if (!op.empty()) {
      return Status::InvalidArgument("one operation per request (got \"" + op + "\" and \"" +
                                     it.key() + "\")")
          .WithReason("bad_request");
    }
    op = it.key();
    args = it.value();
  }
  if (op.empty()) return Status::InvalidArgument("no operation").WithReason("bad_request");
  return std::make_pair(op, std::move(args));
}

}  // namespace

Result<int64_t> ParseWsTime(const json& time, int64_t now_ms) {
  if (time.is_number()) {
    Result<int64_t> ms = JsonSecondsToMs(time);
    if (!ms.ok()) {
      return Status::InvalidArgument("\"time\" must be epoch seconds in 1970..5138")
          .WithReason("bad_time");
    }
    return ms;
  }
  if (!time.is_string()) {
    return Status::InvalidArgument(
               "\"time\" must be epoch seconds or a time such as "
               "\"2026-12-05 18:40:00 +0000\"")
        .WithReason("bad_time");
  }
  Result<int64_t> ms = ParseTimeParam(RubyTimeToIso(time.get<std::string>()), now_ms);
  if (!ms.ok()) return ms.status().WithContext("\"time\"").WithReason("bad_time");
  return ms;
}

WsProtocol::WsProtocol(Store* store, WsVersion version, AliasSource aliases)
    : store_(store),
      version_(version),
      aliases_(aliases),
      api_(store, nullptr, std::move(aliases)) {}

Result<std::string> WsProtocol::KeyOf(const json& args) const {
  Result<std::string> name = KeyNameOf(args);
  if (!name.ok()) return name.status();
  return ResolveKey(*store_, aliases_, *name).key;
}

WsReply WsProtocol::Handle(std::string_view text) {
  json request = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) {
    store_->metrics().Add("komoku_refused_total{reason=\"bad_json\"}");
    return {Error("invalid_json", "the message is not valid JSON")};
  }
  Result<std::pair<std::string, json>> op = Operation(request);
  WsReply reply;
  if (!op.ok()) {
    store_->metrics().Add("komoku_refused_total{reason=\"bad_request\"}");
    reply.answer = Error("invalid_query", op.status().message());
  } else {
    try {
      reply = version_ == WsVersion::kV1 ? HandleV1(op->first, op->second)
                                         : HandleV2(op->first, op->second);
    } catch (const std::exception& e) {  // nlohmann type errors on odd input
      store_->metrics().Add("komoku_refused_total{reason=\"bad_request\"}");
      reply = {Error("invalid_query", std::string("bad request: ") + e.what())};
    }
  }
  if (version_ == WsVersion::kV2 && reply.answer.is_object()) {
    if (auto qid = request.find("query_id"); qid != request.end()) {
      reply.answer["query_id"] = *qid;
    }
  }
  return reply;
}

json WsProtocol::Push(const Change& c) const {
  if (c.deleted || !c.is_current) return nullptr;
  const json value = ValueToJson(c.sample.value);
  const json previous = c.previous ? ValueToJson(c.previous->value) : json(nullptr);
  const double time = MsToSeconds(c.sample.time_ms);
  if (version_ == WsVersion::kV1) {
    return {{"pub",
             {{"key", c.key},
              {"prev", previous},
              {"curr", value},
              {"value", value},
              {"time", time},
              {"previous_value", previous}}}};
  }
  return {{"pub", {{"key", c.key}, {"value", value}, {"previous", previous}, {"time", time}}}};
}

// --- v2 --------------------------------------------------------------------

WsReply WsProtocol::HandleV2(const std::string& op, const json& raw_args) {
  // An API answer as v2 gives it: `ok` in place of a successful result when
  // set.
  auto via_api = [this](const std::string& api_op, json args, const char* ok) -> WsReply {
    json answer = api_.Handle(json{{api_op, std::move(args)}});
    if (auto err = answer.find("error"); err != answer.end()) {
      const std::string code = (*err)["code"].get<std::string>();
      return {Error(OldCode(code, WsVersion::kV2), (*err)["message"].get<std::string>())};
    }
    return {{{"result", ok ? json(ok) : std::move(answer["result"])}}};
  };
  auto refused = [this](const Status& st) -> WsReply {
    store_->metrics().Add("komoku_refused_total{reason=\"" + st.reason() + "\"}");
    return {Error(OldCode(st.reason(), WsVersion::kV2), st.message())};
  };

  if (op == "ping") return {{{"result", {{"pong", raw_args}}}}};
  Result<json> args = Args(op, raw_args);
  if (!args.ok()) return refused(args.status());

  if (op == "get" || op == "last" || op == "previous") {
    Result<std::string> key = KeyOf(*args);
    if (!key.ok()) return refused(key.status());
    if (args->size() != 1)
      return refused(
          Status::InvalidArgument("\"" + op + "\" takes only \"key\"").WithReason("bad_request"));
    Result<KeyInfo> info = store_->Get(*key);
    if (!info.ok() && info.status().reason() != "unknown_key") return refused(info.status());
    if (!info.ok()) return {{{"result", nullptr}}};  // as for a key without a value
    if (op == "get") {
      return {{{"result", info->last ? ValueToJson(info->last->value) : json(nullptr)}}};
    }
    const std::optional<Sample>& s = op == "last" ? info->last : info->previous;
    if (!s) return {{{"result", nullptr}}};
    return {{{"result", {{"value", ValueToJson(s->value)}, {"time", MsToSeconds(s->time_ms)}}}}};
  }
  if (op == "put") {
    // A value no key can hold (an object, a list) is the value's fault.
    if (auto v = args->find("value"); v != args->end()) {
      Result<InputValue> input = JsonToInput(*v);
      if (!input.ok()) {
        store_->metrics().Add("komoku_refused_total{reason=\"bad_request\"}");
        return {Error("invalid_value", input.status().message())};
      }
    }
    if (auto t = args->find("time"); t != args->end() && !t->is_null()) {
      Result<int64_t> ms = ParseWsTime(*t, store_->clock().NowMs());
      if (!ms.ok()) return refused(ms.status());
      (*args)["time"] = MsToSeconds(*ms);
    }
    return via_api("put", std::move(*args), "ok");
  }
  if (op == "increment" || op == "decrement") return via_api(op, std::move(*args), "ok");
  if (op == "keys") {
    Result<bool> values = IncludeValues(*args);
    if (!values.ok()) return refused(values.status());
    json out = json::object();
    for (const KeyInfo& k : store_->Keys()) {
      json j = {{"type", KeyTypeName(k.type)}, {"opts", KeyOptionsToJson(k.options, k.type)}};
      if (*values) {
        j["value"] = k.last ? ValueToJson(k.last->value) : json(nullptr);
        j["time"] = k.last ? json(MsToSeconds(k.last->time_ms)) : json(nullptr);
      }
      out[k.name] = std::move(j);
    }
    return {{{"result", std::move(out)}}};
  }
  if (op == "define") {
    // The original took an option (max_time) beside "type" as well as in
    // "opts": every member but "type" and "opts" is an option.
    json defs = json::object();
    for (auto it = args->begin(); it != args->end(); ++it) {
      if (!it->is_object()) {
        return refused(
            Status::InvalidArgument("definition of \"" + it.key() + "\" must be an object")
                .WithReason("bad_request"));
      }
      json def = json::object();
      json opts = json::object();
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (m.key() == "type") {
          def["type"] = *m;
        } else if (m.key() == "opts") {
          if (!m->is_object()) {
            return refused(
                Status::InvalidArgument("\"opts\" must be an object").WithReason("bad_request"));
          }
          opts.update(*m);
        } else {
          opts[m.key()] = *m;
        }
      }
      if (!opts.empty()) def["opts"] = std::move(opts);
      defs[it.key()] = std::move(def);
    }
    return via_api("define", std::move(defs), "ok");
  }
  if (op == "delete") return via_api("delete", std::move(*args), "ok");
  if (op == "fetch") {
    // What a client just put is in the answer (at most a commit interval).
    store_->WaitCommittedFor(store_->CommitMark(), std::chrono::seconds(2));
    return via_api("fetch", std::move(*args), nullptr);
  }
  if (op == "stats") {
    for (auto it = args->begin(); it != args->end(); ++it) {
      if (it.key() != "key" && it.key() != "from" && it.key() != "to" && it.key() != "step" &&
          it.key() != "tz") {
        return refused(Status::InvalidArgument("unknown argument \"" + it.key() + "\" of stats")
                           .WithReason("bad_request"));
      }
    }
    Result<std::string> key = KeyOf(*args);
    if (!key.ok()) return refused(key.status());
    Result<KeyInfo> info = store_->Get(*key);
    if (!info.ok()) return refused(info.status());
    const int64_t now = store_->clock().NowMs();
    int64_t from = now - 24 * 3600 * 1000LL, to = now + 1;
    if (auto f = args->find("from"); f != args->end()) {
      Result<int64_t> ms = ParseWsTime(*f, now);
      if (!ms.ok()) return refused(ms.status());
      from = *ms;
    }
    if (auto t = args->find("to"); t != args->end()) {
      Result<int64_t> ms = ParseWsTime(*t, now);
      if (!ms.ok()) return refused(ms.status());
      to = *ms;
    }
    if (to <= from) {
      return refused(
          Status::InvalidArgument("\"to\" must be after \"from\"").WithReason("bad_request"));
    }
    const std::string tz = args->value("tz", std::string());
    HistoryQuery q{*key, from, to, {from}, 0};
    if (auto step = args->find("step"); step != args->end()) {
      if (!step->is_string()) {
        return refused(Status::InvalidArgument("\"step\" must be a string such as \"1h\"")
                           .WithReason("bad_request"));
      }
      Result<HistoryQuery> planned =
          PlanBuckets(*key, from, to, step->get<std::string>(), tz, kMaxRows);
      if (!planned.ok()) return refused(planned.status());
      q = std::move(planned.value());
    } else {
      Status tz_ok = CheckTimeZone(tz);
      if (!tz_ok.ok()) return refused(tz_ok);
    }
    store_->WaitCommittedFor(store_->CommitMark(), std::chrono::seconds(2));
    Result<json> stats = StatsJson(*store_, q, false, tz);
    if (!stats.ok()) return refused(stats.status());
    (*stats)["type"] = KeyTypeName(info->type);
    (*stats)["from"] = MsToSeconds(q.from_ms);
    (*stats)["to"] = MsToSeconds(q.to_ms);
    return {{{"result", std::move(*stats)}}};
  }
  if (op == "sub" || op == "unsub") {
    Result<std::string> key = KeyOf(*args);
    if (!key.ok()) return refused(key.status());
    WsReply reply{{{"result", "ok"}}};
    reply.sub = op == "sub" ? WsReply::Sub::kSubscribe : WsReply::Sub::kUnsubscribe;
    reply.key = *key;
    return reply;
  }
  store_->metrics().Add("komoku_refused_total{reason=\"unknown_operation\"}");
  return {Error("invalid_query", "unknown operation \"" + op +
                                     "\" (known: get, last, previous, put, increment, "
                                     "decrement, keys, define, delete, fetch, stats, sub, "
                                     "unsub, ping)")};
}

// --- v1 --------------------------------------------------------------------

WsReply WsProtocol::HandleV1(const std::string& op, const json& raw_args) {
  auto refused = [this](const Status& st) -> WsReply {
    store_->metrics().Add("komoku_refused_total{reason=\"" + st.reason() + "\"}");
    return {Error(OldCode(st.reason(), WsVersion::kV1), st.message())};
  };
  Result<json> args = Args(op, raw_args);
  if (!args.ok()) return refused(args.status());

  if (op == "get") {
    Result<std::string> key = KeyOf(*args);
    if (!key.ok()) return refused(key.status());
    Result<KeyInfo> info = store_->Get(*key);
    if (!info.ok() && info.status().reason() != "unknown_key") return refused(info.status());
    return {info.ok() && info->last ? ValueToJson(info->last->value) : json(nullptr)};
  }
  if (op == "put") {
    json put = json::object();
    for (auto it = args->begin(); it != args->end(); ++it) {
      if (it.key() == "time") {
        if (it->is_null()) continue;
        Result<int64_t> ms = ParseWsTime(*it, store_->clock().NowMs());
        if (!ms.ok()) return refused(ms.status());
        put["time"] = MsToSeconds(*ms);
      } else {
        put[it.key()] = *it;
      }
    }
    if (auto v = put.find("value"); v != put.end()) {
      Result<InputValue> input = JsonToInput(*v);
      if (!input.ok()) {
        store_->metrics().Add("komoku_refused_total{reason=\"bad_request\"}");
        return {Error("invalid_value", input.status().message())};
      }
    }
    json answer = api_.Handle(json{{"put", std::move(put)}});
    if (auto err = answer.find("error"); err != answer.end()) {
      const std::string code = (*err)["code"].get<std::string>();
      // A refusal by the key (its type, its allowed values, a bad time
      // for it) is the value's; a malformed request is the query's.
      return {Error(code == "bad_request" || code == "bad_key" ? "invalid_query" : "invalid_value",
                    (*err)["message"].get<std::string>())};
    }
    return {json("ack")};
  }
  if (op == "keys") {
    Result<bool> values = IncludeValues(*args);
    if (!values.ok()) return refused(values.status());
    json out = json::object();
    for (const KeyInfo& k : store_->Keys()) {
      json j = {{"type", KeyTypeName(k.type)}};
      if (*values) j["value"] = k.last ? ValueToJson(k.last->value) : json(nullptr);
      out[k.name] = std::move(j);
    }
    return {std::move(out)};
  }
  if (op == "sub" || op == "unsub") {
    Result<std::string> key = KeyOf(*args);
    if (!key.ok()) return refused(key.status());
    WsReply reply{json("ack")};
    reply.sub = op == "sub" ? WsReply::Sub::kSubscribe : WsReply::Sub::kUnsubscribe;
    reply.key = *key;
    return reply;
  }
  if (op == "fetch") return {FetchV1(*args)};
  store_->metrics().Add("komoku_refused_total{reason=\"unknown_operation\"}");
  return {Error("invalid_query",
                "unknown operation \"" + op + "\" (known: get, put, keys, sub, unsub, fetch)")};
}

// {"key", "since", "until", "step", "as"}, the options also inside "opts".
json WsProtocol::FetchV1(const json& raw) {
  auto refused = [this](const Status& st) -> json {
    store_->metrics().Add("komoku_refused_total{reason=\"" + st.reason() + "\"}");
    return Error(OldCode(st.reason(), WsVersion::kV1), st.message());
  };
  json args = json::object();
  for (auto it = raw.begin(); it != raw.end(); ++it) {
    if (it.key() == "opts") {
      if (!it->is_object()) {
        return refused(
            Status::InvalidArgument("\"opts\" must be an object").WithReason("bad_request"));
      }
      args.update(*it);
    } else {
      args[it.key()] = *it;
    }
  }
  for (auto it = args.begin(); it != args.end(); ++it) {
    if (it.key() != "key" && it.key() != "since" && it.key() != "until" && it.key() != "step" &&
        it.key() != "as") {
      return refused(Status::InvalidArgument("unknown argument \"" + it.key() + "\" of fetch")
                         .WithReason("bad_request"));
    }
  }
  Result<std::string> key = KeyOf(args);
  if (!key.ok()) return refused(key.status());
  const int64_t now = store_->clock().NowMs();
  int64_t from = now - 24 * 3600 * 1000LL, to = now + 1;
  if (auto s = args.find("since"); s != args.end() && !s->is_null()) {
    Result<int64_t> ms = ParseWsTime(*s, now);
    if (!ms.ok()) return refused(ms.status().WithContext("\"since\""));
    from = *ms;
  }
  if (auto u = args.find("until"); u != args.end() && !u->is_null()) {
    Result<int64_t> ms = ParseWsTime(*u, now);
    if (!ms.ok()) return refused(ms.status().WithContext("\"until\""));
    to = *ms;
  }
  if (to <= from) {
    return refused(
        Status::InvalidArgument("\"until\" must be after \"since\"").WithReason("bad_request"));
  }
  Result<KeyInfo> info = store_->Get(*key);
  if (!info.ok()) {
    if (info.status().reason() == "unknown_key") return json::array();  // no history
    return refused(info.status());
  }
  // What a client just put is in the answer (at most a commit interval).
  store_->WaitCommittedFor(store_->CommitMark(), std::chrono::seconds(2));
  const std::string as = args.value("as", std::string());
  if (!as.empty()) {
    if (as != "timespans") {
      return refused(
          Status::InvalidArgument("\"as\" knows only \"timespans\"").WithReason("bad_request"));
    }
    if (info->type != KeyType::kBoolean && info->type != KeyType::kUptime) {
      return refused(Status::InvalidArgument("\"as\": \"timespans\" needs a boolean key")
                         .WithReason("bad_request"));
    }
    Result<Spans> spans =
        Timespans(*store_, HistoryQuery{*key, from, to, {from}, 0}, InputValue(true));
    if (!spans.ok()) return refused(spans.status());
    json out = json::array();
    for (const Spans::Span& s : spans->spans) {
      out.push_back(json::array({MsToSeconds(s.start_ms), MsToSeconds(s.end_ms)}));
    }
    return out;
  }
  if (auto step = args.find("step"); step != args.end() && !step->is_null()) {
    if (!step->is_string()) {
      return refused(Status::InvalidArgument("\"step\" must be a string such as \"6H\"")
                         .WithReason("bad_request"));
    }
    // The original wrote units in capitals ("6H", "1D").
    std::string text = step->get<std::string>();
    for (char& ch : text) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    Result<HistoryQuery> q = PlanBuckets(*key, from, to, text, "", kMaxRows);
    if (!q.ok()) return refused(q.status());
    Result<std::vector<Agg>> aggs = ParseAggs(DefaultAgg(info->type), info->type);
    if (!aggs.ok()) return refused(aggs.status());
    Result<json> rows = DownsampleJson(*store_, *q, *aggs);
    if (!rows.ok()) return refused(rows.status());
    return *rows;
  }
  Result<std::vector<Sample>> rows = store_->History(*key, from, to, kMaxRows + 1);
  if (!rows.ok()) return refused(rows.status());
  if (rows->size() > kMaxRows) {
    return refused(Status::InvalidArgument("more than " + std::to_string(kMaxRows) +
                                           " changes since then; give a later \"since\" or a "
                                           "\"step\"")
                       .WithReason("bad_request"));
  }
  json out = json::array();
  for (const Sample& s : *rows) {
    out.push_back(json::array({MsToSeconds(s.time_ms), ValueToJson(s.value)}));
  }
  return out;
}

}  // namespace komoku::store
