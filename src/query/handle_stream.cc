// GET /api/v1/stream: the changes of keys as Server-Sent Events
// (query/stream.h).

#include "query/server_impl.h"
#include "wire/input.h"
#include "wire/time_param.h"

namespace komoku::query {

using nlohmann::json;
using store::MsToSeconds;
using store::ValueToJson;

void Server::Impl::GetStream(const Request& req, Response& res) {
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
    const bool filter = name.size() > 2 && name.substr(name.size() - 2) == "/#";
    if (filter) name.remove_suffix(2);
    Status ok = store::ValidateKeyName(name);
    if (!ok.ok()) return SendStatus(res, ok.WithContext("parameter 'key'"));
    // A key may be named by its alias; a filter is matched as written.
    keys.push_back(filter ? it->second : Resolve(it->second).key);
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

}  // namespace komoku::query
