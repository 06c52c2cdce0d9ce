// 30: the web page in a real browser: headless Chromium, driven over the W3C
// WebDriver protocol by chromedriver (Debian's `chromium` and
// `chromium-driver`, scripts/install-deps.sh test), against the real komoku
// with data published through a real Mosquitto. It checks what a user sees:
// the keys with their values, a change appearing without a reload, a chart
// drawn with the statistics of /api/v1/stats beside it, a link that
// reproduces a view of several keys, drag to zoom, a page behind a token
// that asks for it and says when it is wrong, light and dark colours that
// follow the system, and a phone-sized screen that needs no sideways scroll.
//
// One browser serves every test of the binary (started in SetUpTestSuite);
// each test has its own broker and komoku, so its own origin and storage.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "harness/harness.h"
#include "testing/webdriver.h"

namespace komoku::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using webdriver::Browser;

constexpr milliseconds kPageTimeout(60000);

// The relative luminance (0 black … 1 white) of a CSS colour as
// getComputedStyle gives it ("rgb(20, 24, 28)"); -1 when it is not one.
double Luminance(const json& css) {
  if (!css.is_string()) return -1;
  int r = 0, g = 0, b = 0;
  if (std::sscanf(css.get<std::string>().c_str(), "rgb(%d, %d, %d", &r, &g, &b) != 3) return -1;
  auto lin = [](int c) {
    const double v = c / 255.0;
    return v <= 0.04045 ? v / 12.92 : std::pow((v + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class WebBrowserTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    browser_dir_ = new TempDir();
    webdriver::BrowserOptions options;
    options.chromedriver = CHROMEDRIVER_BINARY;
    options.chromium = CHROMIUM_BINARY;
    options.dir = browser_dir_->path();
    options.timeout = kPageTimeout;
    browser_ = new Browser(options, [](const std::string& what) { ADD_FAILURE() << what; });
  }
  static void TearDownTestSuite() {
    delete browser_;
    delete browser_dir_;
    browser_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(browser_->ok()) << "Chromium did not start: " << browser_->Why();
  }
  void Start(const std::string& http_yaml = "") {
    broker_ = std::make_unique<Broker>(dir_);
    komoku_ = std::make_unique<Komoku>(dir_, *broker_, "", "", http_yaml);
    ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
    mqtt_ = std::make_unique<MqttClient>(broker_->url(), "it-web-publisher");
  }
  void TearDown() override {
    if (!komoku_) return;
    // The page as the test left it, kept beside the build for a look.
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    browser_->Screenshot(std::string(KOMOKU_ARTIFACT_DIR) + "/web-" + info->name() + ".png");
    // The browser serves the next test too: back to the system's colours and
    // the desktop window.
    browser_->Cdp("Emulation.setEmulatedMedia", {{"features", json::array()}});
    browser_->Cdp("Emulation.clearDeviceMetricsOverride", json::object());
    DumpOnFailure(*broker_, *komoku_);
  }
  std::string Url(const std::string& rest = "/") const {
    return "http://127.0.0.1:" + std::to_string(komoku_->http_port()) + rest;
  }
  // Publishes `value` for `key` at `time` (epoch seconds) through the broker.
  void PublishAt(const std::string& key, const json& value, double time) {
    mqtt_->Publish("komoku/set/" + key, json{{"value", value}, {"time", time}}.dump());
  }
  bool WaitForHistory(const std::string& key, size_t count) {
    return WaitFor(
        [&] {
          auto r = komoku_->Get("/api/v1/history?key=" + key + "&from=0&limit=10000");
          return r.status == 200 && r.Json()["rows"].size() >= count;
        },
        kPageTimeout);
  }
  // The text of the value cell of `key`'s row in the key list ("" if none).
  std::string ValueOf(const std::string& key) {
    json v = browser_->Eval("const r = document.querySelector('tr.key[data-key=\"" + key +
                            "\"] .value'); return r ? r.textContent : '';");
    return v.is_string() ? v.get<std::string>() : "";
  }

  static TempDir* browser_dir_;
  static Browser* browser_;
  TempDir dir_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Komoku> komoku_;
  std::unique_ptr<MqttClient> mqtt_;
};

TempDir* WebBrowserTest::browser_dir_ = nullptr;
Browser* WebBrowserTest::browser_ = nullptr;

TEST_F(WebBrowserTest, TheKeyListShowsTheKeysAndFollowsNewChanges) {
  Start();
  mqtt_->Publish("komoku/set/kitchen/temperature", "21.5");
  mqtt_->Publish("komoku/set/hall/door", "true");
  mqtt_->Publish("komoku/set/radio", "jazz");
  ASSERT_TRUE(WaitForHistory("radio", 1));
  ASSERT_TRUE(WaitForHistory("kitchen/temperature", 1));
  ASSERT_TRUE(WaitForHistory("hall/door", 1));

  browser_->Go(Url());
  ASSERT_FALSE(browser_
                   ->WaitFor("return document.querySelectorAll('tr.key').length === 3 && "
                             "document.querySelector('#live').textContent === 'live';")
                   .is_null())
      << browser_->Eval("return document.body.innerText;");
  EXPECT_EQ(ValueOf("kitchen/temperature"), "21.5");
  EXPECT_EQ(ValueOf("hall/door"), "true");
  EXPECT_EQ(ValueOf("radio"), "jazz");
  // Folders by '/': a heading for each.
  json folders =
      browser_->Eval("return [...document.querySelectorAll('tr.folder')].map(r => r.textContent);");
  EXPECT_EQ(folders, json::array({"hall/", "kitchen/"}));

  // A mark that a reload would wipe out.
  browser_->Eval("window.komokuTestMark = 42; return 0;");
  mqtt_->Publish("komoku/set/kitchen/temperature", "23.25");
  mqtt_->Publish("komoku/set/garden/rain", "0.4");
  EXPECT_FALSE(browser_
                   ->WaitFor("const r = document.querySelector("
                             "'tr.key[data-key=\"kitchen/temperature\"] .value');"
                             "return r && r.textContent === '23.25';")
                   .is_null())
      << ValueOf("kitchen/temperature");
  EXPECT_FALSE(
      browser_->WaitFor("return !!document.querySelector('tr.key[data-key=\"garden/rain\"]');")
          .is_null());
  EXPECT_EQ(ValueOf("garden/rain"), "0.4");
  EXPECT_EQ(browser_->Eval("return window.komokuTestMark;"), 42) << "the page was reloaded";

  // A key whose value is older than its stale_after is marked stale, also
  // when the key is created after the list was read (its options come with
  // it, without a reload); a key defined without a value yet, unknown.
  ASSERT_EQ(komoku_
                ->Post("/api/v1/define?key=attic/humidity",
                       R"({"type": "numeric", "opts": {"stale_after": "10m"}})")
                .status,
            200);
  PublishAt("attic/humidity", 55, Now() - 3600);
  EXPECT_EQ(browser_->WaitFor("const b = document.querySelector("
                              "'tr.key[data-key=\"attic/humidity\"] .badge');"
                              "return b && b.textContent;"),
            "stale");
  EXPECT_EQ(browser_->Eval("return window.komokuTestMark;"), 42) << "the page was reloaded";
  ASSERT_EQ(komoku_->Post("/api/v1/define?key=attic/window", R"({"type": "boolean"})").status, 200);
  ASSERT_TRUE(WaitForHistory("attic/humidity", 1));
  browser_->Go(Url());
  auto badge = [&](const std::string& key) {
    return browser_->WaitFor("const b = document.querySelector('tr.key[data-key=\"" + key +
                             "\"] .badge'); return b && b.textContent;");
  };
  EXPECT_EQ(badge("attic/humidity"), "stale");
  EXPECT_EQ(badge("attic/window"), "unknown");
  EXPECT_EQ(browser_->Eval(
                "return document.querySelector('tr.key[data-key=\"radio\"] .badge').textContent;"),
            "");

  // The filter box keeps the rows holding its words.
  browser_->Type("#filter", "kitchen");
  EXPECT_FALSE(
      browser_->WaitFor("return document.querySelectorAll('tr.key').length === 1;").is_null());
}

TEST_F(WebBrowserTest, ANumericKeysChartAndItsStatistics) {
  Start();
  const double now = Now();
  // 40 readings over the last 2 hours, 10 to 49.
  for (int i = 0; i < 40; ++i) PublishAt("garden/temp", 10 + i, now - 7200 + i * 180);
  ASSERT_TRUE(WaitForHistory("garden/temp", 40));

  browser_->Go(Url("/#/chart?key=garden/temp&from=-3h&to=now"));
  json points = browser_->WaitFor(
      "const p = document.querySelector('#chart svg.chart g.series path.line');"
      "return p ? Number(p.getAttribute('data-points')) : 0;");
  ASSERT_FALSE(points.is_null()) << browser_->Eval("return document.body.innerText;");
  EXPECT_GE(points.get<int>(), 40);
  // The path really goes through them: a command per point.
  json commands = browser_->Eval(
      "const d = document.querySelector('#chart path.line').getAttribute('d');"
      "return (d.match(/[MLHV]/g) || []).length;");
  EXPECT_GE(commands.get<int>(), 40);

  auto stats = komoku_->Get("/api/v1/stats?key=garden/temp&from=-3h");
  ASSERT_EQ(stats.status, 200) << stats.body;
  json shown = browser_->Eval(
      "const o = {}; for (const r of document.querySelectorAll('#stats tr'))"
      "  o[r.querySelector('th').textContent] = r.querySelector('td').textContent;"
      "return o;");
  EXPECT_EQ(shown["min"], "10") << shown.dump();
  EXPECT_EQ(shown["max"], "49") << shown.dump();
  EXPECT_EQ(stats.Json()["min"], 10);
  EXPECT_EQ(shown["changes"], std::to_string(stats.Json()["count"].get<int>())) << shown.dump();

  // Under the pointer, the time and the value there. The page may draw the
  // chart anew (a refresh) after the pointer came: the new chart has seen
  // no pointer move, so the pointer moves again (a few pixels, so that it
  // is a move) until the readout shows, for up to a minute.
  json readout;
  for (int attempt = 0; attempt < 20 && !readout.is_string(); ++attempt) {
    browser_->Hover("#chart rect.hit", attempt % 2 == 0 ? 0 : 4);
    readout = browser_->WaitFor(
        "const g = document.querySelector('#chart g.readout');"
        "return g && g.getAttribute('visibility') === 'visible' && g.textContent;",
        std::chrono::seconds(3));
  }
  ASSERT_TRUE(readout.is_string()) << browser_->Eval("return document.body.innerText;");
  auto at = readout.get<std::string>().find("garden/temp: ");
  ASSERT_NE(at, std::string::npos) << readout;
  const double hovered = std::stod(readout.get<std::string>().substr(at + 13));
  EXPECT_GE(hovered, 10) << readout;
  EXPECT_LE(hovered, 49) << readout;

  // Live: a new reading is drawn without a reload.
  browser_->Eval("window.komokuTestMark = 7; return 0;");
  mqtt_->Publish("komoku/set/garden/temp", "55");
  EXPECT_FALSE(browser_
                   ->WaitFor("const p = document.querySelector('#chart path.line');"
                             "return p && Number(p.getAttribute('data-points')) > " +
                             std::to_string(points.get<int>()) + ";")
                   .is_null());
  EXPECT_FALSE(browser_
                   ->WaitFor("return [...document.querySelectorAll('#stats tr')].some("
                             "r => r.textContent === 'max55');")
                   .is_null());
  EXPECT_EQ(browser_->Eval("return window.komokuTestMark;"), 7) << "the page was reloaded";
}

TEST_F(WebBrowserTest, ABooleansShareOfTimeIsThatOfTheApi) {
  Start();
  const double now = Now();
  // Open 10 min, closed 30 min, open 20 min, then closed: in the last 2 h.
  PublishAt("hall/door", true, now - 7200);
  PublishAt("hall/door", false, now - 6600);
  PublishAt("hall/door", true, now - 4800);
  PublishAt("hall/door", false, now - 3600);
  ASSERT_TRUE(WaitForHistory("hall/door", 4));
  // One window of time for the page and the API alike.
  const std::string range =
      "from=" + std::to_string(now - 7500) + "&to=" + std::to_string(now - 600);
  browser_->Go(Url("/#/chart?key=hall/door&" + range));
  json share = browser_->WaitFor(
      "for (const r of document.querySelectorAll('#stats tr'))"
      "  if (r.querySelector('th').textContent === 'true') return "
      "r.querySelector('td').textContent;"
      "return '';");
  ASSERT_TRUE(share.is_string()) << browser_->Eval("return document.body.innerText;");
  auto stats = komoku_->Get("/api/v1/stats?key=hall/door&" + range);
  ASSERT_EQ(stats.status, 200) << stats.body;
  const double api = stats.Json()["share"]["true"].get<double>() * 100;
  // "30 min (33.333 %)"
  const std::string text = share.get<std::string>();
  auto open = text.find('(');
  ASSERT_NE(open, std::string::npos) << text;
  EXPECT_NEAR(std::stod(text.substr(open + 1)), api, 0.01) << text;
  // The state band: a rectangle per span, both states drawn.
  EXPECT_GE(browser_->Eval("return document.querySelectorAll('#chart .lane rect.st-true').length;"),
            2);
  EXPECT_GE(
      browser_->Eval("return document.querySelectorAll('#chart .lane rect.st-false').length;"), 2);
  // And the share per hour of the day.
  EXPECT_EQ(browser_->Eval("return document.querySelectorAll('svg.hours').length;"), 1);
}

// More spans than the chart has pixels: the band is drawn from the
// server's buckets (history agg=states) of about a pixel each, each in the
// state that held longest in it, neighbouring buckets of one state as one
// rectangle; what the buckets add up to is what stats says, and the shares
// beside the chart are the API's.
TEST_F(WebBrowserTest, ABooleanWithMoreSpansThanPixelsIsBucketed) {
  Start();
  // 1,200 minutes, each true for 40 s then false for 20 s in the first
  // half, true for 20 s then false for 40 s in the second: 2,400 spans.
  const double base = std::floor(Now()) - 1200 * 60 - 600;
  for (int i = 0; i < 1200; ++i) {
    const double on = i < 600 ? 40 : 20;
    PublishAt("lab/pump", true, base + i * 60);
    PublishAt("lab/pump", false, base + i * 60 + on);
  }
  ASSERT_TRUE(WaitForHistory("lab/pump", 2400));
  const long from = static_cast<long>(base), to = static_cast<long>(base + 1200 * 60);
  browser_->Go(
      Url("/#/chart?key=lab/pump&from=" + std::to_string(from) + "&to=" + std::to_string(to)));
  ASSERT_FALSE(
      browser_->WaitFor("return !!document.querySelector('#chart .lane[data-bucketed=true]');")
          .is_null())
      << browser_->Eval("return document.body.innerText;");
  json rects = browser_->Eval(
      "const r = (c) => [...document.querySelectorAll('#chart .lane rect.' + c)].map("
      "e => [Number(e.getAttribute('x')), Number(e.getAttribute('x')) + "
      "Number(e.getAttribute('width'))]);"
      "const hit = document.querySelector('#chart rect.hit');"
      "return {on: r('st-true'), off: r('st-false'), x0: Number(hit.getAttribute('x')), "
      "x1: Number(hit.getAttribute('x')) + Number(hit.getAttribute('width'))};");
  ASSERT_GE(rects["on"].size(), 1u) << rects.dump();
  ASSERT_GE(rects["off"].size(), 1u) << rects.dump();
  EXPECT_LE(rects["on"].size() + rects["off"].size(), 6u) << rects.dump();
  const double mid = (rects["x0"].get<double>() + rects["x1"].get<double>()) / 2;
  for (const json& r : rects["on"]) EXPECT_LE(r[1].get<double>(), mid + 3) << rects.dump();
  for (const json& r : rects["off"]) EXPECT_GE(r[0].get<double>(), mid - 3) << rects.dump();

  // Drawn from buckets, not from 2,400 spans: the lane carries their step
  // and the seconds per state they add up to from the first bucket's start,
  // which are those of stats over the same range.
  json lane = browser_->Eval(
      "const g = document.querySelector('#chart .lane');"
      "return {step: g.getAttribute('data-step'), from: g.getAttribute('data-from'),"
      " seconds: JSON.parse(g.getAttribute('data-seconds') || 'null')};");
  ASSERT_TRUE(lane["step"].is_string()) << "not drawn from buckets: " << lane.dump();
  const double step = std::stod(lane["step"].get<std::string>());
  EXPECT_GE(step, 60);
  EXPECT_LE(step, 300);
  const std::string bucketed_from = lane["from"].get<std::string>();
  EXPECT_LE(std::stod(bucketed_from), static_cast<double>(from));
  auto whole = komoku_->Get("/api/v1/stats?key=lab/pump&from=" + bucketed_from +
                            "&to=" + std::to_string(to));
  ASSERT_EQ(whole.status, 200) << whole.body;
  for (const char* state : {"true", "false", "unknown"}) {
    EXPECT_NEAR(lane["seconds"].value(state, -1.0), whole.Json()["time"][state].get<double>(),
                0.002)
        << state << " " << lane.dump() << " " << whole.body;
  }
  EXPECT_GT(lane["seconds"].value("true", 0.0), 1000) << lane.dump();

  json share = browser_->WaitFor(
      "for (const r of document.querySelectorAll('#stats tr'))"
      "  if (r.querySelector('th').textContent === 'true') return "
      "r.querySelector('td').textContent;"
      "return '';");
  ASSERT_TRUE(share.is_string());
  auto stats = komoku_->Get("/api/v1/stats?key=lab/pump&from=" + std::to_string(from) +
                            "&to=" + std::to_string(to));
  ASSERT_EQ(stats.status, 200) << stats.body;
  const std::string text = share.get<std::string>();
  ASSERT_NE(text.find('('), std::string::npos) << text;
  EXPECT_NEAR(std::stod(text.substr(text.find('(') + 1)),
              stats.Json()["share"]["true"].get<double>() * 100, 0.01)
      << text;
}

TEST_F(WebBrowserTest, ACounterIsDrawnAsBarsWithItsResetAndALogAsLines) {
  Start();
  ASSERT_EQ(komoku_->Post("/api/v1/define?key=meter", R"({"type": "counter"})").status, 200);
  const double now = Now();
  // Rises by 2 every 5 min for 2 h, a reset to 0 an hour ago, then rises on.
  double v = 100;
  for (int i = 0; i < 24; ++i) {
    v = i == 12 ? 0 : v + 2;
    PublishAt("meter", v, now - 7200 + i * 300);
  }
  // More than 12 different lines and no `values`: a log.
  for (int i = 0; i < 20; ++i)
    PublishAt("syslog", "line " + std::to_string(i), now - 3000 + i * 60);
  ASSERT_TRUE(WaitForHistory("meter", 24));
  ASSERT_TRUE(WaitForHistory("syslog", 20));

  browser_->Go(Url("/#/chart?key=meter&from=-3h&to=now"));
  json bars = browser_->WaitFor("return document.querySelectorAll('#chart g.bars rect').length;");
  ASSERT_FALSE(bars.is_null()) << browser_->Eval("return document.body.innerText;");
  EXPECT_GE(bars.get<int>(), 10);
  EXPECT_EQ(browser_->Eval("return document.querySelectorAll('#chart g.bars path.reset').length;"),
            1);
  // The increase shown is the sum of the API's buckets.
  auto h = komoku_->Get("/api/v1/history?key=meter&from=-3h&step=auto&agg=increase");
  ASSERT_EQ(h.status, 200) << h.body;
  double total = 0;
  const json buckets = h.Json();
  for (const json& row : buckets["rows"]) {
    if (!row[1].is_null()) total += row[1].get<double>();
  }
  json shown = browser_->Eval(
      "for (const r of document.querySelectorAll('#stats tr'))"
      "  if (r.querySelector('th').textContent === 'increase') return "
      "r.querySelector('td').textContent;"
      "return '';");
  EXPECT_EQ(shown, std::to_string(static_cast<int>(total))) << h.body;

  browser_->Go(Url("/#/chart?key=syslog&from=-3h&to=now"));
  json lines = browser_->WaitFor("return document.querySelectorAll('table.log tr').length;");
  ASSERT_FALSE(lines.is_null()) << browser_->Eval("return document.body.innerText;");
  EXPECT_EQ(lines, 20);
  EXPECT_EQ(
      browser_->Eval("return document.querySelector('table.log tr td:last-child').textContent;"),
      "line 19")
      << "newest first";
}

TEST_F(WebBrowserTest, AUrlReproducesAViewOfSeveralKeysAndDragZooms) {
  Start();
  const double now = Now();
  for (int i = 0; i < 30; ++i) {
    PublishAt("room/a", 20 + i % 5, now - 6000 + i * 200);
    PublishAt("room/b", 15 + i % 3, now - 6000 + i * 200 + 50);
  }
  ASSERT_TRUE(WaitForHistory("room/a", 30));
  ASSERT_TRUE(WaitForHistory("room/b", 30));
  const double from = std::floor(now - 6500);
  const double to = std::floor(now - 100);
  const std::string view =
      "/#/chart?key=room%2Fa&key=room%2Fb&from=" + std::to_string(static_cast<long>(from)) +
      "&to=" + std::to_string(static_cast<long>(to));
  browser_->Go(Url(view));
  ASSERT_FALSE(
      browser_
          ->WaitFor("return document.querySelectorAll('#chart g.series path.line').length === 2;")
          .is_null())
      << browser_->Eval("return document.body.innerText;");
  EXPECT_EQ(
      browser_->Eval(
          "return [...document.querySelectorAll('#chart g.series')].map(g => g.dataset.key);"),
      json::array({"room/a", "room/b"}));
  EXPECT_EQ(browser_->Eval("return document.querySelector('h1.title').textContent;"),
            "room/a, room/b");

  // Drag across the middle: the URL takes the narrower range, the chart
  // follows it.
  browser_->Drag("#chart rect.hit", -150, 150);
  json hash =
      browser_->WaitFor("return location.hash !== '" + view.substr(1) + "' && location.hash;");
  ASSERT_TRUE(hash.is_string()) << "no zoom";
  const std::string h = hash.get<std::string>();
  auto param = [&](const std::string& name) {
    auto at = h.find("&" + name + "=");
    return at == std::string::npos ? 0.0 : std::stod(h.substr(at + name.size() + 2));
  };
  EXPECT_GT(param("from"), from) << h;
  EXPECT_LT(param("to"), to) << h;
  EXPECT_LT(param("to") - param("from"), (to - from) * 0.8) << h;
  EXPECT_NE(h.find("key=room%2Fa&key=room%2Fb"), std::string::npos) << h;

  // That link, opened afresh, shows the same two keys over the zoomed range.
  browser_->Go("about:blank");
  browser_->Go(Url("/" + h));
  EXPECT_FALSE(
      browser_
          ->WaitFor("return document.querySelectorAll('#chart g.series path.line').length === 2 && "
                    "document.querySelector('#main').dataset.loaded === 'true';")
          .is_null());
  EXPECT_EQ(browser_->Eval("return location.hash;"), h);
}

TEST_F(WebBrowserTest, BehindATokenThePageAsksAndSaysWhenItIsWrong) {
  const std::string token = "browser-token-0123456789";
  std::ofstream(dir_.File("token")) << token << "\n";
  Start("  token_file: " + dir_.File("token") + "\n");
  mqtt_->Publish("komoku/set/office/co2", "612");
  komoku_->set_token(token);
  ASSERT_TRUE(WaitForHistory("office/co2", 1));

  browser_->Go(Url());
  ASSERT_FALSE(browser_->WaitFor("return !document.querySelector('#auth').hidden;").is_null());
  EXPECT_NE(browser_->Eval("return document.querySelector('#auth-message').textContent;")
                .get<std::string>()
                .find("Bearer"),
            std::string::npos);
  browser_->Type("#auth-token", "not-the-token-0000");
  browser_->Click("#auth-form button[type=submit]");
  json refused = browser_->WaitFor(
      "const m = document.querySelector('#auth-message').textContent;"
      "return !document.querySelector('#auth').hidden && m.includes('refused') && m;");
  ASSERT_TRUE(refused.is_string());
  EXPECT_NE(refused.get<std::string>().find("wrong token"), std::string::npos) << refused;

  browser_->Type("#auth-token", token);
  browser_->Click("#auth-form button[type=submit]");
  EXPECT_FALSE(
      browser_
          ->WaitFor("const r = document.querySelector('tr.key[data-key=\"office/co2\"] .value');"
                    "return r && r.textContent === '612';")
          .is_null())
      << browser_->Eval("return document.body.innerText;");
  EXPECT_EQ(browser_->Eval("return document.querySelector('#auth').hidden;"), true);
  // Live behind the token too: the stream is read with the bearer header.
  mqtt_->Publish("komoku/set/office/co2", "640");
  EXPECT_FALSE(
      browser_
          ->WaitFor("const r = document.querySelector('tr.key[data-key=\"office/co2\"] .value');"
                    "return r && r.textContent === '640';")
          .is_null());
}

// Light and dark follow the system (prefers-color-scheme, emulated through
// the DevTools protocol), and on a phone (390 x 844 CSS pixels, a mobile
// viewport) the key list and a chart fit the width: nothing to scroll
// sideways.
TEST_F(WebBrowserTest, ColoursFollowTheSystemAndAPhoneNeedsNoSidewaysScroll) {
  Start();
  const double now = Now();
  for (int i = 0; i < 40; ++i) {
    PublishAt("living_room/climate/temperature_of_the_north_wall_sensor", 18 + i % 5,
              now - 7200 + i * 180);
  }
  PublishAt("garden/weather_station/rain_gauge_total_millimetres", 1234.5, now - 60);
  PublishAt("hall/door", true, now - 30);
  ASSERT_TRUE(WaitForHistory("living_room/climate/temperature_of_the_north_wall_sensor", 40));
  ASSERT_TRUE(WaitForHistory("hall/door", 1));
  const std::string colours =
      "const s = getComputedStyle(document.body); return [s.backgroundColor, s.color];";
  auto scheme = [&](const char* value) {
    browser_->Cdp(
        "Emulation.setEmulatedMedia",
        {{"features", json::array({{{"name", "prefers-color-scheme"}, {"value", value}}})}});
  };

  scheme("dark");
  browser_->Go(Url());
  ASSERT_FALSE(
      browser_->WaitFor("return document.querySelectorAll('tr.key').length === 3;").is_null());
  EXPECT_EQ(browser_->Eval("return matchMedia('(prefers-color-scheme: dark)').matches;"), true);
  json dark = browser_->Eval(colours);
  EXPECT_LT(Luminance(dark[0]), 0.05) << dark.dump();
  EXPECT_GT(Luminance(dark[1]), 0.6) << dark.dump();
  browser_->Screenshot(std::string(KOMOKU_ARTIFACT_DIR) + "/web-dark.png");

  scheme("light");
  json light = browser_->Eval(colours);
  EXPECT_GT(Luminance(light[0]), 0.9) << light.dump();
  EXPECT_LT(Luminance(light[1]), 0.1) << light.dump();

  // A phone: the device metrics of a 390 x 844 screen, mobile.
  browser_->Cdp("Emulation.setDeviceMetricsOverride",
                {{"width", 390}, {"height", 844}, {"deviceScaleFactor", 3}, {"mobile", true}});
  const std::string fits = "return [document.documentElement.scrollWidth, innerWidth];";
  browser_->Go(Url());
  ASSERT_FALSE(
      browser_->WaitFor("return document.querySelectorAll('tr.key').length === 3;").is_null());
  // Content wider than the screen widens a mobile viewport (the browser
  // zooms out), so innerWidth itself says whether the page fits.
  // What reaches furthest right, for the message: an element, or the text
  // that overflows one.
  const std::string wide =
      "return [innerWidth, ...[...document.querySelectorAll('body *')].map(e => ["
      "Math.max(e.getBoundingClientRect().right, e.getBoundingClientRect().left + e.scrollWidth), "
      "e.tagName + '.' + (e.getAttribute('class') || '')]).sort((a, b) => b[0] - a[0])"
      ".slice(0, 4)];";
  EXPECT_EQ(browser_->Eval("return innerWidth;"), 390) << browser_->Eval(wide).dump();
  json keys = browser_->Eval(fits);
  EXPECT_LE(keys[0].get<int>(), keys[1].get<int>()) << "the key list scrolls sideways";
  browser_->Screenshot(std::string(KOMOKU_ARTIFACT_DIR) + "/web-phone-keys.png");

  browser_->Go("about:blank");  // a new document, at the phone's own scale
  browser_->Go(
      Url("/#/chart?key=living_room/climate/temperature_of_the_north_wall_sensor"
          "&key=hall/door&from=-3h&to=now"));
  ASSERT_FALSE(browser_
                   ->WaitFor("return !!document.querySelector('#chart path.line') && "
                             "!!document.querySelector('#chart .lane rect.st-true');")
                   .is_null())
      << browser_->Eval("return document.body.innerText;");
  EXPECT_EQ(browser_->Eval("return innerWidth;"), 390) << browser_->Eval(wide).dump();
  json chart = browser_->Eval(fits);
  EXPECT_LE(chart[0].get<int>(), chart[1].get<int>()) << "the chart view scrolls sideways";
  json svg = browser_->Eval(
      "const r = document.querySelector('#chart svg.chart').getBoundingClientRect();"
      "return [r.left, r.right];");
  EXPECT_GE(svg[0].get<double>(), 0) << svg.dump();
  EXPECT_LE(svg[1].get<double>(), 390) << svg.dump();
}

}  // namespace
}  // namespace komoku::testing
