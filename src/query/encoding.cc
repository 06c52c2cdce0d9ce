#include "query/encoding.h"

#include <zlib.h>

#include <cctype>
#include <limits>
#include <optional>

namespace komoku::query {
namespace {

// Bodies up to this size (the page's files) are gzipped at zlib's default
// level; larger ones (history as JSON or CSV) at level 1: on the 2-core VM a
// 200 KB history answer took about 20 ms at level 6 and 2-4 ms at level 1,
// for a quarter more bytes, against 4 ms to answer it from cold rollups.
constexpr size_t kSmallBody = 64 * 1024;
constexpr int kSmallLevel = 6;
constexpr int kLargeLevel = 1;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsNoCase(s.substr(0, prefix.size()), prefix);
}

// A qvalue (RFC 9110 section 12.4.2): "0", "1", "0.", "0.5", "0.125",
// "1.000"; nullopt for anything else.
std::optional<double> ParseQ(std::string_view s) {
  if (s.empty() || (s[0] != '0' && s[0] != '1')) return std::nullopt;
  const bool one = s[0] == '1';
  s.remove_prefix(1);
  if (s.empty()) return one ? 1.0 : 0.0;
  if (s[0] != '.' || s.size() > 4) return std::nullopt;
  double q = 0, scale = 0.1;
  for (char c : s.substr(1)) {
    if (c < '0' || c > '9' || (one && c != '0')) return std::nullopt;
    q += (c - '0') * scale;
    scale /= 10;
  }
  return one ? 1.0 : q;
}

}  // namespace

bool AcceptsGzip(std::string_view accept_encoding, bool present) {
  if (!present) return false;
  std::optional<double> gzip, identity, any;
  while (!accept_encoding.empty()) {
    const size_t comma = accept_encoding.find(',');
    std::string_view member = accept_encoding.substr(0, comma);
    accept_encoding =
        comma == std::string_view::npos ? std::string_view() : accept_encoding.substr(comma + 1);
    const size_t semi = member.find(';');
    const std::string_view coding = Trim(member.substr(0, semi));
    if (coding.empty()) continue;
    double q = 1;
    bool bad = false;
    // Parameters: only q counts; another one is allowed and ignored.
    std::string_view params =
        semi == std::string_view::npos ? std::string_view() : member.substr(semi + 1);
    while (!params.empty()) {
      const size_t next = params.find(';');
      const std::string_view param = Trim(params.substr(0, next));
      params = next == std::string_view::npos ? std::string_view() : params.substr(next + 1);
      const size_t eq = param.find('=');
      if (eq == std::string_view::npos || !EqualsNoCase(Trim(param.substr(0, eq)), "q")) continue;
      std::optional<double> parsed = ParseQ(Trim(param.substr(eq + 1)));
      if (!parsed) {
        bad = true;
        break;
      }
      q = *parsed;
    }
    if (bad) continue;
    if (EqualsNoCase(coding, "gzip") || EqualsNoCase(coding, "x-gzip")) {
      gzip = q;
    } else if (EqualsNoCase(coding, "identity")) {
      identity = q;
    } else if (coding == "*") {
      any = q;
    }
  }
  const double gzip_q = gzip ? *gzip : any ? *any : 0.0;
  // identity, when the header does not weigh it, does not compete: a client
  // that lists gzip wants it (as nginx and Apache read it).
  const double identity_q = identity ? *identity : any ? *any : 0.0;
  return gzip_q > 0 && gzip_q >= identity_q;
}

bool IsCompressible(std::string_view content_type) {
  const std::string_view type = Trim(content_type.substr(0, content_type.find(';')));
  if (StartsWithNoCase(type, "text/")) return !EqualsNoCase(type, "text/event-stream");
  for (std::string_view t : {"application/json", "application/javascript", "application/xml",
                             "image/svg+xml", "application/openmetrics-text"}) {
    if (EqualsNoCase(type, t)) return true;
  }
  return false;
}

Result<std::string> Gzip(std::string_view bytes, int level) {
  z_stream z{};
  // 15 + 16: the largest window, with a gzip header and trailer.
  if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return Status::IOError("gzip: cannot start zlib's deflate (out of memory?)");
  }
  std::string out;
  out.resize(deflateBound(&z, static_cast<uLong>(bytes.size())));
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  // deflateBound is enough for one Z_FINISH call.
  const int rc = deflate(&z, Z_FINISH);
  const size_t written = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) {
    return Status::IOError("gzip: zlib's deflate failed (" + std::to_string(rc) + ")");
  }
  out.resize(written);
  return out;
}

void EncodeAnswer(const Request& req, Response& res) {
  if (res.stream || res.HasHeader("Content-Encoding")) return;
  std::string type = res.content_type.empty() ? res.Header("Content-Type") : res.content_type;
  if (!IsCompressible(type)) return;
  std::string vary = res.Header("Vary");
  if (vary.empty()) {
    res.SetHeader("Vary", "Accept-Encoding");
  } else if (vary.find("Accept-Encoding") == std::string::npos) {
    res.SetHeader("Vary", vary + ", Accept-Encoding");
  }
  const std::string etag = res.Header("ETag");
  const bool strong = !etag.empty() && etag.rfind("W/", 0) != 0;
  if (res.status == 304) {
    if (strong && req.Header("If-None-Match").find("W/" + etag) != std::string::npos) {
      res.SetHeader("ETag", "W/" + etag);
    }
    return;
  }
  if (res.body.size() < kMinCompressBytes ||
      !AcceptsGzip(req.Header("Accept-Encoding"), req.HasHeader("Accept-Encoding"))) {
    return;
  }
  // A body zlib's 32-bit counters cannot take in one call goes out as it is.
  if (res.body.size() >= std::numeric_limits<uInt>::max() / 2) return;
  Result<std::string> gz =
      Gzip(res.body, res.body.size() <= kSmallBody ? kSmallLevel : kLargeLevel);
  if (!gz.ok()) return;  // out of memory: the plain body still answers
  res.body = std::move(gz).value();
  res.SetHeader("Content-Encoding", "gzip");
  if (strong) res.SetHeader("ETag", "W/" + etag);
}

}  // namespace komoku::query
