// Regression tests for what the libFuzzer targets in fuzz/ found, one named
// test per finding, each with the input the fuzzer wrote. The parsers'
// refusals are sent back as JSON by both transports (query/server.cc
// SendJson, the bridge's API replies), whose json::dump() throws on invalid
// UTF-8: so every message must stay valid UTF-8, whatever bytes came in.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "core/value.h"
#include "wire/input.h"
#include "wire/time_param.h"

namespace komoku::store {
namespace {

// Throws (failing the test) when a transport could not send `message`.
void ExpectSendable(const std::string& message) {
  EXPECT_TRUE(IsValidUtf8(message)) << "message is not valid UTF-8: " << message;
  EXPECT_NO_THROW((void)nlohmann::json({{"message", message}}).dump());
}

// value_payload_fuzzer-crash-887afc9d50bbd8f3c40a2bf80cfc7272e0bd66d0: a bare
// payload of 0xff bytes and "on", coerced to a numeric key. Quote() in
// src/core/value.cc copies the bytes as they are into the message.
TEST(FuzzRegressionTest, ValuePayloadInvalidUtf8MessageIsSendable) {
  const std::string payload = std::string(28, '\xff') + "on";
  Result<ValueMessage> msg = ParseValuePayload(payload, 1024);
  ASSERT_TRUE(msg.ok());
  Result<Value> v = CoerceValue(KeyType::kNumeric, msg->value);
  ASSERT_FALSE(v.ok());
  ExpectSendable(v.status().message());
}

// time_param_fuzzer-crash-2fd8dbc12954fcf3e4b4f71440ea9134328b013b: an epoch
// time whose first byte is 0xb1. Bad() in src/wire/time_param.cc copies the
// text as it is into the message (an HTTP query parameter such as
// from=%B1700000000.25 reaches it so).
TEST(FuzzRegressionTest, TimeParamInvalidUtf8MessageIsSendable) {
  Result<int64_t> t = ParseTimeParam(
      "\xb1"
      "700000000.25",
      1700000000000);
  ASSERT_FALSE(t.ok());
  ExpectSendable(t.status().message());
}

// The same class, from valid UTF-8 input: a long value cut short inside a
// two-byte character. Quote() (src/core/value.cc) cuts at a boundary.
TEST(FuzzRegressionTest, LongValueIsNotCutInsideACharacter) {
  std::string text = "x";
  for (int i = 0; i < 40; ++i) text += "\xc3\xa9";  // é
  ASSERT_TRUE(IsValidUtf8(text));
  Result<Value> v = CoerceValue(KeyType::kNumeric, InputValue(text));
  ASSERT_FALSE(v.ok());
  ExpectSendable(v.status().message());
}

// Bad() in src/wire/time_param.cc cut the text at 64 bytes, here inside a
// character.
TEST(FuzzRegressionTest, LongTimeIsNotCutInsideACharacter) {
  std::string text = "x";
  for (int i = 0; i < 40; ++i) text += "\xc3\xa9";  // é
  Result<int64_t> t = ParseTimeParam(text, 1700000000000);
  ASSERT_FALSE(t.ok());
  ExpectSendable(t.status().message());
}

// Inputs the fuzzers passed through that must keep working: the messages
// of refusals of plain ASCII input are sendable today.
TEST(FuzzRegressionTest, AsciiRefusalsAreSendable) {
  for (const char* text : {"abc", "1e400", "0x10", "nan", "-", ""}) {
    SCOPED_TRACE(text);
    Result<Value> v = CoerceValue(KeyType::kNumeric, InputValue(std::string(text)));
    if (!v.ok()) ExpectSendable(v.status().message());
    Result<int64_t> t = ParseTimeParam(text, 1700000000000);
    if (!t.ok()) ExpectSendable(t.status().message());
  }
  Result<ValueMessage> m = ParseValuePayload("{\"value\": 1, \"tme\": 2}", 1024);
  ASSERT_FALSE(m.ok());
  ExpectSendable(m.status().message());
}

}  // namespace
}  // namespace komoku::store
