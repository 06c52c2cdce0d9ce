// libFuzzer target: what the HTTP transport (src/query/http.cc) does with a
// request's bytes before any handler runs — Beast's request parser with the
// server's default limits (16 KiB of header, 64 KiB of body, for every
// transfer encoding), then the query string of the target through
// query::ParseQuery, and each parameter back through EncodeQueryParam.
//
// Any crash or sanitizer report is a bug; so is a body past the limit that
// the parser accepted, and a parameter that does not survive
// EncodeQueryParam then ParseQuery unchanged (PerKey relies on it).
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "query/http.h"

namespace http = boost::beast::http;
using komoku::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const komoku::query::HttpOptions defaults;
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(defaults.max_header_bytes));
  parser.body_limit(defaults.max_body_bytes);
  parser.eager(true);
  boost::beast::error_code ec;
  size_t used = 0;
  while (used < size && !ec && !parser.is_done()) {
    size_t n = parser.put(boost::asio::buffer(data + used, size - used), ec);
    if (n == 0 && !ec) break;  // needs more bytes than there are
    used += n;
  }
  if (!parser.is_header_done()) return 0;
  const auto& req = parser.get();
  if (parser.is_done()) Require(req.body().size() <= defaults.max_body_bytes);
  const std::string_view target(req.target().data(), req.target().size());
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return 0;
  for (const auto& [name, value] : komoku::query::ParseQuery(target.substr(q + 1))) {
    const std::string again =
        komoku::query::EncodeQueryParam(name) + "=" + komoku::query::EncodeQueryParam(value);
    const auto back = komoku::query::ParseQuery(again);
    Require(back.size() == 1 && back[0].first == name && back[0].second == value);
  }
  return 0;
}
