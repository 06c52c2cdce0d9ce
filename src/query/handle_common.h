// What every handler of the HTTP API uses: JSON and error answers, and the
// query parameters of a request, checked against the names a route knows.
// Internal to src/query.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/status.h"
#include "query/http.h"
#include "store/store.h"

namespace komoku::query {

inline constexpr const char* kJson = "application/json";

// Every refusal carries its code in a header, so that one place (the
// server's logger hook) counts it; a refusal the store already counted says
// so in another.
inline constexpr const char* kErrorHeader = "X-Komoku-Error";
inline constexpr const char* kCountedHeader = "X-Komoku-Counted";

void SendJson(Response& res, int status, const nlohmann::json& body);

// A JSON object answered with one long list (10,000 keys) written item by
// item: as one json document the list took about 5 MB of small allocations
// a call, given back only at the next trim. `head` holds the object's other
// members; the list comes last, under `name`.
class JsonListBody {
 public:
  JsonListBody(const nlohmann::json& head, const char* name);
  void Add(const nlohmann::json& item);
  void Send(Response& res);

 private:
  std::string text_;
  size_t items_ = 0;
};

// {"error": {"code", "message"}} with `status`, the code also in kErrorHeader.
void SendError(Response& res, int status, const std::string& code, const std::string& message);

// The error answer of `st`: 404 NotFound, 400 InvalidArgument, 503 Busy (and
// write_failed), 507 disk_full, 500 otherwise. `counted`: the store counted
// the refusal already.
void SendStatus(Response& res, const Status& st, bool counted = false);

using QueryMap = std::multimap<std::string, std::string>;

// The parameters of the URL's query string only: a form-encoded body (`curl
// -d 21.5` sends its body as a form) is a value, never parameters.
QueryMap QueryParams(const Request& req);

// Query parameters, checked against the names a route knows so that a typo
// ("form=" for "from=") is an error instead of a silent default.
class Params {
 public:
  Params(const Request& req, std::initializer_list<const char*> known);
  const Status& error() const { return error_; }

  std::optional<std::string> Get(const char* name) const;
  Result<std::string> Required(const char* name) const;
  Result<int64_t> Time(const char* name, int64_t fallback, int64_t now_ms) const;
  Result<bool> Flag(const char* name) const;
  Result<size_t> Count(const char* name, size_t fallback, size_t max) const;

 private:
  QueryMap params_;
  Status error_;
};

// {"value", "time"} of a change.
nlohmann::json SampleJson(const store::Sample& s);

}  // namespace komoku::query
