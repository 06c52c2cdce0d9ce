// libFuzzer target: the block decoders of cold segments
// (cold/segment_codec.h) on arbitrary payloads. In a file every payload sits
// behind a CRC, so random damage rarely reaches a decoder; a crafted file
// (or a bug in the writer) does, and this is what it meets.
//
// The first byte picks the decoder (raw, rollup, metadata) and the key type;
// the rest is the payload. Any crash or sanitizer report is a bug; so is a
// payload that decodes to something which, encoded again, does not decode to
// the same values bit for bit. Seeds (fuzz/seeds/segment_codec) are the
// blocks of tests/data/segment/example.kkd behind their selector byte.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "cold/segment_codec.h"
#include "fuzz_util.h"

namespace {

using komoku::store::KeyType;
using komoku::store::Rollup;
using komoku::store::Sample;
using komoku::store::Value;
namespace si = komoku::store::segment_internal;

using komoku::fuzz::Require;

bool SameDouble(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

bool SameValue(const Value& a, const Value& b) {
  if (a.index() != b.index()) return false;
  if (const auto* d = std::get_if<double>(&a)) return SameDouble(*d, std::get<double>(b));
  return a == b;
}

bool SameOptional(const std::optional<Value>& a, const std::optional<Value>& b) {
  return a.has_value() == b.has_value() && (!a || SameValue(*a, *b));
}

bool SameRollup(const Rollup& a, const Rollup& b) {
  return a.start_ms == b.start_ms && a.count == b.count && a.changes == b.changes &&
         SameOptional(a.first, b.first) && SameOptional(a.last, b.last) &&
         SameDouble(a.sum, b.sum) && SameDouble(a.min, b.min) && SameDouble(a.max, b.max) &&
         SameDouble(a.integral, b.integral) && SameDouble(a.increase, b.increase) &&
         SameDouble(a.high, b.high) && a.known_ms == b.known_ms && a.unknown_ms == b.unknown_ms &&
         a.ms_per_value == b.ms_per_value;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const KeyType type = static_cast<KeyType>(data[0] % 5);
  const std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);
  switch ((data[0] / 5) % 3) {
    case 0: {
      std::vector<Sample> samples;
      if (!si::DecodeRawBlock(type, payload, &samples).ok()) return 0;
      // The writer only encodes values of the key's type; the decoder only
      // makes them.
      for (const Sample& s : samples) Require(si::ValueMatchesType(type, s.value));
      if (samples.empty()) return 0;
      const std::string again = si::EncodeRawBlock(type, samples.data(), samples.size());
      std::vector<Sample> back;
      Require(si::DecodeRawBlock(type, again, &back).ok());
      Require(back.size() == samples.size());
      for (size_t i = 0; i < back.size(); ++i) {
        Require(back[i].time_ms == samples[i].time_ms &&
                SameValue(back[i].value, samples[i].value));
      }
      return 0;
    }
    case 1: {
      std::vector<Rollup> rollups;
      if (!si::DecodeRollupBlock(type, payload, 2, &rollups).ok()) return 0;
      if (rollups.empty()) return 0;
      const std::string again = si::EncodeRollupBlock(type, rollups.data(), rollups.size());
      std::vector<Rollup> back;
      Require(si::DecodeRollupBlock(type, again, 2, &back).ok());
      Require(back.size() == rollups.size());
      for (size_t i = 0; i < back.size(); ++i) Require(SameRollup(back[i], rollups[i]));
      return 0;
    }
    default: {
      komoku::Result<si::KeyRecord> meta = si::DecodeKeyMeta(payload);
      if (!meta.ok()) return 0;
      komoku::Result<si::KeyRecord> back = si::DecodeKeyMeta(si::EncodeKeyMeta(*meta));
      Require(back.ok() && back->name == meta->name && back->type == meta->type &&
              back->changes == meta->changes &&
              back->resolutions.size() == meta->resolutions.size());
      return 0;
    }
  }
}
