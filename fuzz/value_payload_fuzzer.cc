// libFuzzer target: store::ParseValuePayload, the parser of every MQTT
// `komoku/set/<key>` payload and HTTP PUT body (wire/input.h).
//
// Each accepted payload is coerced to every key type, as a put to a key of
// that type would. Any crash or sanitizer report is a bug; so is an answer
// that a transport could not send back: an error message that is not valid
// UTF-8 makes nlohmann::json::dump() throw (the target lets it escape).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/value.h"
#include "fuzz_util.h"
#include "wire/input.h"

namespace {

using komoku::Result;
using komoku::Status;
using namespace komoku::store;

// The largest MQTT payload the bridge takes is configurable; 64 KiB is more
// than any sensor sends and keeps the fuzzer on the parser.
constexpr size_t kMaxBytes = 64 * 1024;

using komoku::fuzz::Dump;
using komoku::fuzz::Require;

// What the transports do with a refusal: put the message in a JSON answer.
void Answer(const Status& st) {
  Require(!st.ok() && !st.message().empty());
  Dump({{"error", {{"code", st.reason()}, {"message", st.message()}}}});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view payload(reinterpret_cast<const char*>(data), size);
  Result<ValueMessage> msg = ParseValuePayload(payload, kMaxBytes);
  if (!msg.ok()) {
    Answer(msg.status());
    return 0;
  }
  if (msg->time_ms) Require(*msg->time_ms >= 0 && *msg->time_ms <= 100000000000000LL);
  (void)GuessType(msg->value);
  for (KeyType type : {KeyType::kNumeric, KeyType::kCounter, KeyType::kBoolean, KeyType::kUptime,
                       KeyType::kString}) {
    Result<Value> v = CoerceValue(type, msg->value);
    if (!v.ok()) {
      Answer(v.status());
      continue;
    }
    std::string text = ValueToText(*v);
    if (type == KeyType::kString) {
      Require(IsValidUtf8(text));
      Dump(ValueToJson(*v));
    }
  }
  return 0;
}
