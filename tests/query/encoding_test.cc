// Compressed answers (query/encoding.h): the Accept-Encoding negotiation with
// its q-values, the content types worth compressing, gzip that zlib's inflate
// reads back, and what EncodeAnswer does to an answer (Vary, Content-Encoding,
// the ETag made weak, small answers and event streams left alone).
#include "query/encoding.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "testing/gunzip.h"

namespace komoku::query {
namespace {

using testing::Gunzip;

TEST(AcceptsGzipTest, FollowsTheQValues) {
  struct Case {
    const char* header;
    bool gzip;
  };
  const Case cases[] = {
      {"gzip", true},
      {"GZIP", true},
      {"x-gzip", true},
      {"gzip, deflate, br", true},
      {"br;q=1.0, gzip;q=0.8, *;q=0.1", true},
      {" deflate , gzip ", true},
      {"gzip;q=0", false},
      {"gzip; q=0", false},
      {"gzip;Q=0.000", false},
      {"gzip;q=0.001", true},
      {"gzip;q=1.000", true},
      {"gzip;q=0.", false},
      {"gzip;q=1.", true},
      {"*", true},
      {"*;q=0", false},
      {"*, gzip;q=0", false},
      {"gzip;q=0, *", false},
      {"deflate, br", false},  // not listed and no "*": not acceptable
      {"identity", false},
      {"", false},
      {",,", false},
      // identity is preferred over gzip: it wins; gzip as good: gzip.
      {"gzip;q=0.5, identity", false},
      {"gzip;q=0.5, identity;q=0.5", true},
      {"gzip, identity;q=0", true},
      {"*;q=0.3, gzip;q=0.2", false},  // identity gets *'s 0.3
      // A weight that does not parse drops its member (not taken as 1).
      {"gzip;q=2", false},
      {"gzip;q=1.5", false},
      {"gzip;q=0.1234", false},
      {"gzip;q=abc", false},
      {"gzip;q=", false},
      {"gzip;q=abc, *;q=0.5", true},
      // Other parameters are ignored.
      {"gzip;level=9", true},
      {"gzip;level=9;q=0", false},
  };
  for (const Case& c : cases) EXPECT_EQ(AcceptsGzip(c.header), c.gzip) << "'" << c.header << "'";
  EXPECT_FALSE(AcceptsGzip("", /*present=*/false));
}

TEST(IsCompressibleTest, TextButNotTheEventStream) {
  for (const char* type :
       {"text/html; charset=utf-8", "text/javascript; charset=utf-8", "text/css", "text/csv",
        "text/plain; version=0.0.4; charset=utf-8", "application/json", "Application/JSON",
        "image/svg+xml", "application/openmetrics-text; version=1.0.0"}) {
    EXPECT_TRUE(IsCompressible(type)) << type;
  }
  for (const char* type :
       {"text/event-stream", "text/event-stream; charset=utf-8", "image/png", "application/gzip",
        "application/octet-stream", "", "application/jsonx"}) {
    EXPECT_FALSE(IsCompressible(type)) << type;
  }
}

TEST(GzipTest, InflatesBackToTheSameBytes) {
  std::mt19937 rng(7);
  std::string random(100000, '\0');
  for (char& c : random) c = static_cast<char>(rng());
  for (const std::string& text :
       {std::string(), std::string("a"), std::string(200000, 'x'), random}) {
    for (int level : {1, 6, 9}) {
      Result<std::string> gz = Gzip(text, level);
      ASSERT_TRUE(gz.ok()) << gz.status().ToString();
      EXPECT_EQ(static_cast<unsigned char>(gz.value()[0]), 0x1f);
      EXPECT_EQ(static_cast<unsigned char>(gz.value()[1]), 0x8b);
      EXPECT_EQ(Gunzip(gz.value()), text) << text.size() << " bytes, level " << level;
    }
  }
  EXPECT_LT(Gzip(std::string(200000, 'x'), 6).value().size(), 1000u);
}

Request WithHeaders(std::vector<std::pair<std::string, std::string>> headers) {
  Request req;
  req.method = "GET";
  req.path = req.target = "/api/v1/history";
  req.headers = std::move(headers);
  return req;
}

std::string LargeJson() {
  std::string body = "{\"rows\":[";
  for (int i = 0; i < 500; ++i) body += "[" + std::to_string(1700000000 + i * 10) + ",21.5],";
  body.back() = ']';
  return body + "}";
}

TEST(EncodeAnswerTest, GzipsALargeTextAnswerWhenAsked) {
  Response res;
  res.SetContent(LargeJson(), "application/json");
  res.SetHeader("ETag", "\"abc\"");
  EncodeAnswer(WithHeaders({{"accept-encoding", "gzip, deflate"}}), res);
  EXPECT_EQ(res.Header("Content-Encoding"), "gzip");
  EXPECT_EQ(res.Header("Vary"), "Accept-Encoding");
  EXPECT_EQ(res.Header("ETag"), "W/\"abc\"");
  EXPECT_EQ(Gunzip(res.body), LargeJson());
  EXPECT_LT(res.body.size(), LargeJson().size() / 3);
}

TEST(EncodeAnswerTest, LeavesItPlainWhenNotAskedButSaysItVaries) {
  for (const auto& headers : std::vector<std::vector<std::pair<std::string, std::string>>>{
           {},
           {{"Accept-Encoding", ""}},
           {{"Accept-Encoding", "gzip;q=0"}},
           {{"Accept-Encoding", "br"}}}) {
    Response res;
    res.SetContent(LargeJson(), "application/json");
    res.SetHeader("ETag", "\"abc\"");
    EncodeAnswer(WithHeaders(headers), res);
    EXPECT_FALSE(res.HasHeader("Content-Encoding"));
    EXPECT_EQ(res.Header("Vary"), "Accept-Encoding");
    EXPECT_EQ(res.Header("ETag"), "\"abc\"");
    EXPECT_EQ(res.body, LargeJson());
  }
}

TEST(EncodeAnswerTest, LeavesSmallAnswersStreamsAndOtherTypesAlone) {
  const Request gzip = WithHeaders({{"Accept-Encoding", "gzip"}});
  Response small;
  small.SetContent(std::string(kMinCompressBytes - 1, 'x'), "text/plain");
  EncodeAnswer(gzip, small);
  EXPECT_FALSE(small.HasHeader("Content-Encoding"));
  EXPECT_EQ(small.body.size(), kMinCompressBytes - 1);

  Response enough;
  enough.SetContent(std::string(kMinCompressBytes, 'x'), "text/csv");
  EncodeAnswer(gzip, enough);
  EXPECT_EQ(enough.Header("Content-Encoding"), "gzip");

  struct Silent : EventStream {
    void SetWake(std::function<void()>) override {}
    bool Ended() override { return false; }
    std::string Take() override { return ""; }
    void Close() override {}
  };
  Response stream;
  stream.content_type = "text/event-stream";
  stream.stream = std::make_shared<Silent>();
  EncodeAnswer(gzip, stream);
  EXPECT_FALSE(stream.HasHeader("Content-Encoding"));
  EXPECT_FALSE(stream.HasHeader("Vary"));

  Response png;
  png.SetContent(std::string(5000, 'x'), "image/png");
  EncodeAnswer(gzip, png);
  EXPECT_FALSE(png.HasHeader("Content-Encoding"));
  EXPECT_FALSE(png.HasHeader("Vary"));

  Response already;
  already.SetContent(std::string(5000, 'x'), "text/plain");
  already.SetHeader("Content-Encoding", "br");
  EncodeAnswer(gzip, already);
  EXPECT_EQ(already.Header("Content-Encoding"), "br");
  EXPECT_EQ(already.body, std::string(5000, 'x'));
}

TEST(EncodeAnswerTest, A304NamesTheETagTheWayTheClientHoldsIt) {
  Response held_gzip;
  held_gzip.status = 304;
  held_gzip.SetHeader("Content-Type", "text/javascript; charset=utf-8");
  held_gzip.SetHeader("ETag", "\"abc\"");
  EncodeAnswer(WithHeaders({{"Accept-Encoding", "gzip"}, {"If-None-Match", "W/\"abc\""}}),
               held_gzip);
  EXPECT_EQ(held_gzip.Header("ETag"), "W/\"abc\"");
  EXPECT_EQ(held_gzip.Header("Vary"), "Accept-Encoding");
  EXPECT_TRUE(held_gzip.body.empty());

  Response held_plain;
  held_plain.status = 304;
  held_plain.SetHeader("Content-Type", "text/javascript; charset=utf-8");
  held_plain.SetHeader("ETag", "\"abc\"");
  EncodeAnswer(WithHeaders({{"If-None-Match", "\"abc\""}}), held_plain);
  EXPECT_EQ(held_plain.Header("ETag"), "\"abc\"");
}

TEST(EncodeAnswerTest, AddsToAnExistingVary) {
  Response res;
  res.SetContent(LargeJson(), "application/json");
  res.SetHeader("Vary", "Authorization");
  EncodeAnswer(WithHeaders({{"Accept-Encoding", "gzip"}}), res);
  EXPECT_EQ(res.Header("Vary"), "Authorization, Accept-Encoding");
}

}  // namespace
}  // namespace komoku::query
