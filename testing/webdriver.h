// A headless Chromium driven over the W3C WebDriver protocol by chromedriver
// (Debian's `chromium` and `chromium-driver`), for the tests and benchmarks
// that look at the web page as a browser shows it (integration test 30,
// bench/page_bench). chromedriver runs as a child process on a free loopback
// port and is stopped by its PID; the browser is one WebDriver session.
//
// Every call that the driver refuses, or that gets no answer, is reported
// through the `on_error` function given at construction (a test adds a
// failure, a benchmark throws) and returns null; nothing throws by itself.
//
// Not thread-safe: a Browser belongs to the thread that made it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "testing/process.h"

namespace komoku::webdriver {

struct BrowserOptions {
  std::string chromedriver = "/usr/bin/chromedriver";
  std::string chromium = "/usr/bin/chromium";
  // Holds chromedriver.log and the browser's profile (chromium-profile/).
  std::string dir;
  int width = 1200;
  int height = 900;
  // For chromedriver to start and for each WaitFor.
  std::chrono::milliseconds timeout{60000};
  // How long one script may run (WebDriver's "script" timeout; a page busy
  // for longer makes Eval fail).
  std::chrono::milliseconds script_timeout{30000};
};

class Browser {
 public:
  using ErrorFn = std::function<void(const std::string&)>;

  // Starts chromedriver and a session; ok() says whether both came up.
  Browser(BrowserOptions options, ErrorFn on_error);
  ~Browser();
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;

  bool ok() const { return ready_ && !session_.empty(); }
  // chromedriver's output, for a message when !ok().
  std::string Why() const;

  void Go(const std::string& url);

  // Runs `script` (a function body: `return …`) in the page; its value.
  nlohmann::json Eval(const std::string& script);

  // Polls `script` until it returns something truthy (true, a non-empty
  // string, a non-zero number); that value, or null when `timeout` (the
  // options' when zero) passes first.
  nlohmann::json WaitFor(const std::string& script,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

  // The WebDriver id of the first element `css` selects ("" when none, which
  // is reported).
  std::string Find(const std::string& css);
  void Type(const std::string& css, const std::string& text);
  void Click(const std::string& css);

  // Presses the mouse at `from_x` pixels from the element's centre, moves to
  // `to_x` and releases it: a drag across.
  void Drag(const std::string& css, int from_x, int to_x);
  // Moves the mouse to `x` pixels from the element's centre.
  void Hover(const std::string& css, int x);

  // The window's outer size, in CSS pixels.
  void SetWindowSize(int width, int height);

  // A Chrome DevTools Protocol command through chromedriver
  // (POST /session/{id}/goog/cdp/execute), e.g. "Emulation.setEmulatedMedia".
  nlohmann::json Cdp(const std::string& command, const nlohmann::json& params);

  // Saves a screenshot of the viewport (PNG) to `path`.
  void Screenshot(const std::string& path);

 private:
  nlohmann::json Session(const std::string& method, const std::string& path,
                         const nlohmann::json& body);
  nlohmann::json Call(const std::string& method, const std::string& path,
                      const nlohmann::json& body);
  // Call without reporting: *error is the failure's text ("" on success).
  nlohmann::json CallQuietly(const std::string& method, const std::string& path,
                             const nlohmann::json& body, std::string* error);

  const BrowserOptions options_;
  const ErrorFn on_error_;
  int port_ = 0;
  bool ready_ = false;
  std::unique_ptr<process::Process> driver_;
  std::string session_;
};

}  // namespace komoku::webdriver
