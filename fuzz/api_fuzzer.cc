// libFuzzer target: store::Api::HandleText, the Komoku JSON queries that
// MQTT's komoku/api/request and HTTP's POST /api/v1/komoku hand over.
//
// One Store per process, in a fresh directory (under /dev/shm when there is
// one, so commits stay cheap), removed at exit; the inputs accumulate keys
// and history in it, which is what a long-running service sees too. Any
// crash or sanitizer report is a bug; so is an answer without exactly one of
// "result" and "error", and one that the transports cannot send: they call
// json::dump(), which throws on invalid UTF-8 (the target lets it escape).
#include <spdlog/spdlog.h>
#include <stdlib.h>  // mkdtemp

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <system_error>

#include "fuzz_util.h"
#include "store/store.h"
#include "wire/api.h"

namespace {

using komoku::Result;
using nlohmann::json;
using namespace komoku::store;

using komoku::fuzz::Dump;
using komoku::fuzz::Require;

struct Fixture {
  std::string dir;
  std::unique_ptr<Store> store;
  std::unique_ptr<Api> api;

  Fixture() {
    spdlog::set_level(spdlog::level::off);
    std::string base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/komoku-api-fuzz-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    dir = tmpl;
    StoreOptions options;
    options.data_dir = dir;
    Result<std::unique_ptr<Store>> s = Store::Open(options, nullptr);
    if (!s.ok()) std::abort();
    store = std::move(s).value();
    api = std::make_unique<Api>(store.get(), [](bool subscribe, const std::string& key) {
      return Result<json>(json{{"topic", "komoku/state/" + key}, {"sub", subscribe}});
    });
  }
  ~Fixture() {
    api.reset();
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

Fixture& TheFixture() {
  static Fixture fixture;
  return fixture;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fixture& f = TheFixture();
  std::string_view request(reinterpret_cast<const char*>(data), size);
  json answer = f.api->HandleText(request);
  Require(answer.is_object());
  Require(answer.contains("result") != answer.contains("error"));
  if (answer.contains("error")) {
    Require(answer["error"]["code"].is_string());
    Require(answer["error"]["message"].is_string());
  }
  Dump(answer);
  return 0;
}
