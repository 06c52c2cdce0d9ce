#include "testing/webdriver.h"

#include <httplib.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

namespace komoku::webdriver {
namespace {

using nlohmann::json;

// The key WebDriver names an element reference by.
constexpr char kElement[] = "element-6066-11e4-a52e-4f735466cecf";

// WebDriver sends screenshots in base64.
std::string Base64Decode(const std::string& in) {
  std::string out;
  int bits = 0;
  unsigned acc = 0;
  for (char c : in) {
    int v = c >= 'A' && c <= 'Z'   ? c - 'A'
            : c >= 'a' && c <= 'z' ? c - 'a' + 26
            : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '+'             ? 62
            : c == '/'             ? 63
                                   : -1;
    if (v < 0) continue;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

bool Truthy(const json& v) { return !(v.is_null() || v == false || v == "" || v == 0); }

bool Poll(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

Browser::Browser(BrowserOptions options, ErrorFn on_error)
    : options_(std::move(options)), on_error_(std::move(on_error)) {
  port_ = process::FreeLoopbackPort();
  driver_ = std::make_unique<process::Process>(
      std::vector<std::string>{options_.chromedriver, "--port=" + std::to_string(port_)},
      options_.dir + "/chromedriver.log");
  ready_ = Poll(
      [&] {
        httplib::Client cli("127.0.0.1", port_);
        auto r = cli.Get("/status");
        return r && r->status == 200 &&
               json::parse(r->body, nullptr, false)["value"]["ready"] == true;
      },
      options_.timeout);
  if (!ready_) return;
  const std::string size =
      "--window-size=" + std::to_string(options_.width) + "," + std::to_string(options_.height);
  json caps = {
      {"capabilities",
       {{"alwaysMatch",
         {{"browserName", "chrome"},
          {"timeouts", {{"script", options_.script_timeout.count()}}},
          {"goog:chromeOptions",
           {{"binary", options_.chromium},
            {"args",
             {"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", size,
              "--lang=en-US", "--user-data-dir=" + options_.dir + "/chromium-profile"}}}}}}}}};
  json r = Call("POST", "/session", caps);
  if (r.contains("sessionId")) session_ = r["sessionId"];
  if (r.contains("value") && r["value"].is_object() && r["value"].contains("sessionId")) {
    session_ = r["value"]["sessionId"];
  }
}

Browser::~Browser() {
  if (!session_.empty()) Call("DELETE", "/session/" + session_, nullptr);
  if (driver_) driver_->Stop();
}

std::string Browser::Why() const {
  return driver_ ? driver_->Output() : "chromedriver did not start";
}

void Browser::Go(const std::string& url) { Session("POST", "/url", {{"url", url}}); }

json Browser::Eval(const std::string& script) {
  json r = Session("POST", "/execute/sync", {{"script", script}, {"args", json::array()}});
  return r.contains("value") ? r["value"] : json();
}

json Browser::WaitFor(const std::string& script, std::chrono::milliseconds timeout) {
  json last;
  Poll(
      [&] {
        last = Eval(script);
        return Truthy(last);
      },
      timeout.count() > 0 ? timeout : options_.timeout);
  return Truthy(last) ? last : json();
}

std::string Browser::Find(const std::string& css) {
  json r = Session("POST", "/element", {{"using", "css selector"}, {"value", css}});
  if (!r.contains("value") || !r["value"].is_object() || !r["value"].contains(kElement)) {
    on_error_("no element " + css + ": " + r.dump());
    return "";
  }
  return r["value"][kElement];
}

void Browser::Type(const std::string& css, const std::string& text) {
  Session("POST", "/element/" + Find(css) + "/value", {{"text", text}});
}

void Browser::Click(const std::string& css) {
  Session("POST", "/element/" + Find(css) + "/click", json::object());
}

void Browser::Drag(const std::string& css, int from_x, int to_x) {
  json origin = {{kElement, Find(css)}};
  json actions = {
      {"actions",
       {{{"type", "pointer"},
         {"id", "mouse"},
         {"parameters", {{"pointerType", "mouse"}}},
         {"actions",
          {{{"type", "pointerMove"}, {"origin", origin}, {"x", from_x}, {"y", 0}},
           {{"type", "pointerDown"}, {"button", 0}},
           {{"type", "pointerMove"}, {"duration", 300}, {"origin", origin}, {"x", to_x}, {"y", 0}},
           {{"type", "pointerUp"}, {"button", 0}}}}}}}};
  Session("POST", "/actions", actions);
}

void Browser::Hover(const std::string& css, int x) {
  // The page may draw the element anew between finding it and moving the
  // pointer to it (a live update); then it is found again.
  std::string error;
  for (int attempt = 0; attempt < 10; ++attempt) {
    json origin = {{kElement, Find(css)}};
    CallQuietly(
        "POST", "/session/" + session_ + "/actions",
        {{"actions",
          {{{"type", "pointer"},
            {"id", "mouse"},
            {"parameters", {{"pointerType", "mouse"}}},
            {"actions", {{{"type", "pointerMove"}, {"origin", origin}, {"x", x}, {"y", 0}}}}}}}},
        &error);
    if (error.find("stale element reference") == std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!error.empty()) on_error_("hover over " + css + ": " + error);
}

void Browser::SetWindowSize(int width, int height) {
  Session("POST", "/window/rect", {{"width", width}, {"height", height}});
}

json Browser::Cdp(const std::string& command, const json& params) {
  json r = Session("POST", "/goog/cdp/execute", {{"cmd", command}, {"params", params}});
  return r.contains("value") ? r["value"] : json();
}

void Browser::Screenshot(const std::string& path) {
  json r = Session("GET", "/screenshot", nullptr);
  if (!r.contains("value") || !r["value"].is_string()) return;
  std::ofstream(path, std::ios::binary) << Base64Decode(r["value"].get<std::string>());
}

json Browser::Session(const std::string& method, const std::string& path, const json& body) {
  return Call(method, "/session/" + session_ + path, body);
}

json Browser::Call(const std::string& method, const std::string& path, const json& body) {
  std::string error;
  json j = CallQuietly(method, path, body, &error);
  if (!error.empty()) on_error_(error);
  return j;
}

json Browser::CallQuietly(const std::string& method, const std::string& path, const json& body,
                          std::string* error) {
  error->clear();
  httplib::Client cli("127.0.0.1", port_);
  cli.set_read_timeout(120, 0);
  httplib::Result r = method == "GET"      ? cli.Get(path)
                      : method == "DELETE" ? cli.Delete(path)
                                           : cli.Post(path, body.dump(), "application/json");
  if (!r) {
    *error = method + " " + path + ": no answer from chromedriver";
    return json();
  }
  json j = json::parse(r->body, nullptr, false);
  if (r->status != 200) *error = method + " " + path + ": " + r->body;
  return j.is_discarded() ? json() : j;
}

}  // namespace komoku::webdriver
