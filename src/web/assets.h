// The web page's files (web/ in the source tree), compiled into the binary,
// and the HTTP answer for each: what the query server sends for `GET /` and
// `GET /ui/<file>` (docs/web.md). Knows no HTTP library: the server copies
// the answer's status, headers and body into its own response.
//
// Immutable; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace komoku::web {

struct Asset {
  std::string_view name;          // "app.js": its path under /ui/
  std::string_view content_type;  // "text/javascript; charset=utf-8"
  std::string_view etag;          // quoted, as the ETag header carries it
  std::string_view bytes;
};

// The compiled-in file `name` ("index.html", "app.js"); null when there is
// none. Its bytes live as long as the program.
const Asset* FindAsset(std::string_view name);

// Every compiled-in file, in build order.
std::vector<const Asset*> Assets();

struct Answer {
  int status = 200;  // 200, or 304 when the client holds this version
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// The answer to `GET <path>` when `path` is the page's ("/" is index.html,
// "/ui/<name>" a file); nullopt for any other path, which the server treats
// as it would without a page. `if_none_match` is the request's header of
// that name ("" when absent). The page's files hold no data, so the server
// answers them without a token; the data comes from /api/v1 with one.
//
// For development, the environment variable KOMOKU_WEB_DIR names a folder
// (the source tree's web/) whose files replace the compiled-in ones of the
// same names, read at every request: edit, reload the browser, no rebuild.
std::optional<Answer> Serve(std::string_view path, std::string_view if_none_match);

// The Content-Security-Policy sent with the page: nothing but its own
// origin, no inline script or style, no frames.
extern const char kContentSecurityPolicy[];

}  // namespace komoku::web
