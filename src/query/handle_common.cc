#include "query/handle_common.h"

#include <set>

#include "wire/input.h"
#include "wire/time_param.h"

namespace komoku::query {

using nlohmann::json;

void SendJson(Response& res, int status, const json& body) {
  res.status = status;
  res.SetContent(store::DumpJson(body), kJson);
}

JsonListBody::JsonListBody(const json& head, const char* name) : text_(store::DumpJson(head)) {
  text_.pop_back();  // the closing brace
  if (text_.size() > 1) text_ += ',';
  text_ += store::DumpJson(name);
  text_ += ":[";
}

void JsonListBody::Add(const json& item) {
  if (items_++ > 0) text_ += ',';
  text_ += store::DumpJson(item);
}

void JsonListBody::Send(Response& res) {
  text_ += "]}";
  res.status = 200;
  res.SetContent(text_, kJson);
}

void SendError(Response& res, int status, const std::string& code, const std::string& message) {
  res.SetHeader(kErrorHeader, code);
  SendJson(res, status, {{"error", {{"code", code}, {"message", message}}}});
}

void SendStatus(Response& res, const Status& st, bool counted) {
  if (counted) res.SetHeader(kCountedHeader, "1");
  int status = 500;
  switch (st.code()) {
    case Status::Code::kNotFound:
      status = 404;
      break;
    case Status::Code::kInvalidArgument:
      status = 400;
      break;
    case Status::Code::kBusy:
      status = 503;
      break;
    default:
      break;
  }
  if (st.reason() == "disk_full") status = 507;  // Insufficient Storage
  if (st.reason() == "write_failed") status = 503;
  SendError(res, status, st.reason(), st.message());
}

// The parameters of the URL's query string only: a form-encoded body (`curl
// -d 21.5` sends its body as a form) is a value, never parameters.
QueryMap QueryParams(const Request& req) {
  QueryMap params;
  auto q = req.target.find('?');
  if (q == std::string::npos) return params;
  for (auto& [name, value] : ParseQuery(std::string_view(req.target).substr(q + 1))) {
    params.emplace(std::move(name), std::move(value));
  }
  return params;
}

Params::Params(const Request& req, std::initializer_list<const char*> known)
    : params_(QueryParams(req)) {
  std::set<std::string> names(known.begin(), known.end());
  for (const auto& [name, value] : params_) {
    if (!names.count(name)) {
      error_ = Status::InvalidArgument("unknown parameter '" + name + "'");
      return;
    }
    if (params_.count(name) > 1) {
      error_ = Status::InvalidArgument("parameter '" + name + "' is given more than once");
      return;
    }
  }
}

std::optional<std::string> Params::Get(const char* name) const {
  auto it = params_.find(name);
  if (it == params_.end()) return std::nullopt;
  return it->second;
}

Result<std::string> Params::Required(const char* name) const {
  auto v = Get(name);
  if (!v) return Status::InvalidArgument(std::string("missing parameter '") + name + "'");
  return *v;
}

Result<int64_t> Params::Time(const char* name, int64_t fallback, int64_t now_ms) const {
  auto v = Get(name);
  if (!v) return fallback;
  Result<int64_t> t = store::ParseTimeParam(*v, now_ms);
  if (!t.ok()) return t.status().WithContext(std::string("parameter '") + name + "'");
  return t;
}

Result<bool> Params::Flag(const char* name) const {
  auto v = Get(name);
  if (!v) return false;
  if (*v == "" || *v == "1" || *v == "true" || *v == "yes") return true;
  if (*v == "0" || *v == "false" || *v == "no") return false;
  return Status::InvalidArgument(std::string("parameter '") + name + "' must be true or false");
}

Result<size_t> Params::Count(const char* name, size_t fallback, size_t max) const {
  auto v = Get(name);
  if (!v) return fallback;
  if (v->empty() || v->size() > 12 || v->find_first_not_of("0123456789") != std::string::npos) {
    return Status::InvalidArgument(std::string("parameter '") + name +
                                   "' must be a positive whole number");
  }
  unsigned long long n = std::stoull(*v);  // may exceed size_t on 32-bit
  if (n == 0 || n > max) {
    return Status::InvalidArgument(std::string("parameter '") + name + "' must be 1.." +
                                   std::to_string(max));
  }
  return static_cast<size_t>(n);
}

json SampleJson(const store::Sample& s) {
  return {{"value", store::ValueToJson(s.value)}, {"time", store::MsToSeconds(s.time_ms)}};
}

}  // namespace komoku::query
