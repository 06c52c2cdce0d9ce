#include "web/assets.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "web/embedded.h"

namespace komoku::web {
namespace {

const std::vector<Asset>& Table() {
  static const std::vector<Asset> table = [] {
    std::vector<Asset> t;
    for (size_t i = 0; i < kEmbeddedCount; ++i) {
      const EmbeddedFile& f = kEmbedded[i];
      t.push_back({f.name, f.content_type, f.etag,
                   std::string_view(reinterpret_cast<const char*>(f.bytes), f.size)});
    }
    return t;
  }();
  return table;
}

// The development copy of `name` from $KOMOKU_WEB_DIR, if that is set and
// holds it. Only names of compiled-in files get here, so a request cannot
// reach any other file.
std::optional<std::string> DevelopmentCopy(std::string_view name) {
  const char* dir = std::getenv("KOMOKU_WEB_DIR");
  if (dir == nullptr || *dir == '\0') return std::nullopt;
  std::ifstream in(std::string(dir) + "/" + std::string(name), std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

const char kContentSecurityPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const Asset* FindAsset(std::string_view name) {
  for (const Asset& a : Table()) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

std::vector<const Asset*> Assets() {
  std::vector<const Asset*> out;
  for (const Asset& a : Table()) out.push_back(&a);
  return out;
}

std::optional<Answer> Serve(std::string_view path, std::string_view if_none_match) {
  std::string_view name;
  if (path == "/") {
    name = "index.html";
  } else if (path.substr(0, 4) == "/ui/") {
    name = path.substr(4);
  } else {
    return std::nullopt;
  }
  const Asset* asset = FindAsset(name);
  if (asset == nullptr) return std::nullopt;

  Answer a;
  a.headers = {{"Content-Type", std::string(asset->content_type)},
               {"Content-Security-Policy", kContentSecurityPolicy},
               {"X-Content-Type-Options", "nosniff"},
               {"Referrer-Policy", "no-referrer"}};
  if (std::optional<std::string> dev = DevelopmentCopy(name)) {
    a.headers.emplace_back("Cache-Control", "no-store");
    a.body = std::move(*dev);
    return a;
  }
  // Revalidated at every load (the file changes with the binary), answered
  // by a 304 without the bytes while it is the same.
  a.headers.emplace_back("Cache-Control", "no-cache");
  a.headers.emplace_back("ETag", std::string(asset->etag));
  if (!if_none_match.empty() && if_none_match.find(asset->etag) != std::string_view::npos) {
    a.status = 304;
    return a;
  }
  a.body = std::string(asset->bytes);
  return a;
}

}  // namespace komoku::web
