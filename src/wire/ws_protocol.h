// The original Komoku WebSocket protocols, translated to and from the
// Store: v1 (the Ruby Komoku::Agent) and v2 (the Elixir server), so their
// clients talk to Komoku unchanged. One text message in, one answer out,
// plus pushes of the changes of subscribed keys; which keys a connection
// subscribes to is the transport's business (query/websocket.h), told by
// WsReply. docs/websocket.md has every exchange.
//
//   v1: {"get":{"key":"foo"}}              -> 123
//       {"put":{"key":"foo","value":1}}    -> "ack"
//       push {"pub":{"key","prev","curr","value","time","previous_value"}}
//   v2: {"get":{"key":"foo"},"query_id":7} -> {"query_id":7,"result":123}
//       {"put":{"key":"foo","value":1}}    -> {"result":"ok"}
//       push {"pub":{"key","value","previous","time"}}
//   errors: {"error":"<code>","message":"<what was wrong>"}, code one of
//   invalid_json, invalid_query, invalid_value (and, for v2 only, the
//   Komoku API's codes such as unknown_key, type_change, not_confirmed).
//
// Thread-safe (the Store is); stateless between messages.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "common/status.h"
#include "store/store.h"
#include "wire/api.h"
#include "wire/key_alias.h"

namespace komoku::store {

enum class WsVersion { kV1, kV2 };

// What one message asks of the connection besides its answer.
struct WsReply {
  WsReply() = default;
  // Implicit, so that a handler returns its answer as it is.
  WsReply(nlohmann::json a) : answer(std::move(a)) {}  // NOLINT(google-explicit-constructor)

  nlohmann::json answer;  // sent as one text message
  enum class Sub { kNone, kSubscribe, kUnsubscribe } sub = Sub::kNone;
  std::string key;  // the key of sub/unsub
};

class WsProtocol {
 public:
  // `store` must outlive the WsProtocol. With `aliases`, a key may be
  // named by its alias in every message (ResolveKey: a real key of that
  // name wins); sub names the key itself.
  WsProtocol(Store* store, WsVersion version, AliasSource aliases = {});

  // Answers one text message; never throws.
  WsReply Handle(std::string_view text);

  // The push a subscriber of `change.key` gets; null when none is sent (a
  // late change that went into history only, a deletion).
  nlohmann::json Push(const Change& change) const;

  WsVersion version() const { return version_; }

 private:
  WsReply HandleV1(const std::string& op, const nlohmann::json& args);
  WsReply HandleV2(const std::string& op, const nlohmann::json& args);
  nlohmann::json FetchV1(const nlohmann::json& args);
  // The "key" of `args`, checked and resolved.
  Result<std::string> KeyOf(const nlohmann::json& args) const;

  Store* const store_;
  const WsVersion version_;
  const AliasSource aliases_;
  Api api_;
};

// A time as the old clients send it: epoch seconds (a number or its text),
// Ruby's Time#to_s ("2026-12-05 18:40:00 +0000", also with fractional
// seconds or "UTC"), or any form the HTTP API takes (ISO 8601, "-24h").
// Milliseconds since the epoch, or InvalidArgument saying what was wrong.
Result<int64_t> ParseWsTime(const nlohmann::json& time, int64_t now_ms);

}  // namespace komoku::store
