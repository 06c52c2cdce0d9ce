#include "web/assets.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace komoku::web {
namespace {

std::string SourceFile(const std::string& name) {
  std::ifstream in(std::string(KOMOKU_SOURCE_DIR) + "/web/" + name, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string Header(const Answer& a, const std::string& name) {
  for (const auto& [n, v] : a.headers) {
    if (n == name) return v;
  }
  return "";
}

TEST(AssetsTest, EveryFileIsCompiledInByteForByte) {
  ASSERT_GE(Assets().size(), 5u);
  for (const Asset* a : Assets()) {
    EXPECT_EQ(a->bytes, SourceFile(std::string(a->name))) << a->name;
    EXPECT_FALSE(a->content_type.empty()) << a->name;
    ASSERT_GE(a->etag.size(), 3u) << a->name;
    EXPECT_EQ(a->etag.front(), '"');
    EXPECT_EQ(a->etag.back(), '"');
  }
  EXPECT_EQ(FindAsset("app.js")->content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(FindAsset("style.css")->content_type, "text/css; charset=utf-8");
  EXPECT_EQ(FindAsset("missing.js"), nullptr);
}

TEST(AssetsTest, ServeAnswersThePagesPathsOnly) {
  auto root = Serve("/", "");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->status, 200);
  EXPECT_EQ(root->body, SourceFile("index.html"));
  EXPECT_EQ(Header(*root, "Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(Header(*root, "Content-Security-Policy"), kContentSecurityPolicy);
  EXPECT_EQ(Header(*root, "Cache-Control"), "no-cache");
  for (const char* path : {"/index", "/ui/", "/ui/missing.js", "/ui/../web/app.js", "/ui/ui/app.js",
                           "/api/v1/keys", "/app.js", ""}) {
    EXPECT_FALSE(Serve(path, "")) << path;
  }
}

TEST(AssetsTest, AMatchingETagIsA304WithoutBody) {
  auto first = Serve("/ui/chart.js", "");
  ASSERT_TRUE(first);
  const std::string etag = Header(*first, "ETag");
  auto again = Serve("/ui/chart.js", etag);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 304);
  EXPECT_TRUE(again->body.empty());
  EXPECT_EQ(Header(*again, "ETag"), etag);
  // Another file's tag, or a list holding it, as browsers send.
  EXPECT_EQ(Serve("/ui/app.js", etag)->status, 200);
  EXPECT_EQ(Serve("/ui/chart.js", "\"x\", " + etag)->status, 304);
}

TEST(AssetsTest, KomokuWebDirReplacesCompiledInFilesOnly) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("komoku-web-test-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "app.js") << "export const edited = 1;\n";
  std::ofstream(dir / "secret.txt") << "not served\n";
  setenv("KOMOKU_WEB_DIR", dir.c_str(), 1);
  auto edited = Serve("/ui/app.js", "");
  auto kept = Serve("/ui/chart.js", "");
  auto secret = Serve("/ui/secret.txt", "");
  unsetenv("KOMOKU_WEB_DIR");
  std::filesystem::remove_all(dir);

  ASSERT_TRUE(edited);
  EXPECT_EQ(edited->body, "export const edited = 1;\n");
  EXPECT_EQ(Header(*edited, "Cache-Control"), "no-store");
  EXPECT_EQ(Header(*edited, "ETag"), "");
  ASSERT_TRUE(kept);  // not in the folder: the compiled-in one
  EXPECT_EQ(kept->body, SourceFile("chart.js"));
  EXPECT_FALSE(secret);
}

}  // namespace
}  // namespace komoku::web
