// Parsing and checking of derived definitions: what config.cc validates
// before start and Publisher::Create checks again against the store's keys.
#include <algorithm>
#include <map>
#include <set>

#include "derived/derived.h"
#include "derived/internal.h"
#include "series/history.h"
#include "wire/input.h"

namespace komoku::derived {
namespace {

constexpr int64_t kSecond = 1000;
constexpr int64_t kDay = 24 * 3600 * kSecond;

struct StatName {
  RollingStat stat;
  const char* name;
};
constexpr StatName kStats[] = {
    {RollingStat::kAvg, "avg"},         {RollingStat::kTwavg, "twavg"},
    {RollingStat::kMin, "min"},         {RollingStat::kMax, "max"},
    {RollingStat::kCount, "count"},     {RollingStat::kIncrease, "increase"},
    {RollingStat::kRate, "rate"},       {RollingStat::kShare, "share"},
    {RollingStat::kTime, "time"},       {RollingStat::kHours, "hours"},
    {RollingStat::kChanges, "changes"},
};

bool IsNumeric(store::KeyType t) {
  return t == store::KeyType::kNumeric || t == store::KeyType::kCounter;
}

// A duration as history's step parser reads it, without "auto".
Result<int64_t> ParseDuration(std::string_view text, const char* what, int64_t max_ms) {
  if (text == "auto") {
    return Status::InvalidArgument(std::string(what) + " 'auto' is not allowed here (e.g. 1m, 1h)");
  }
  Result<int64_t> ms = store::ParseStep(text, 0, 0);
  if (!ms.ok()) {
    return Status::InvalidArgument(std::string(what) + " '" + std::string(text) +
                                   "' is not a duration (e.g. 30s, 1m, 1h, 1d, 1w)");
  }
  if (*ms < kSecond || *ms > max_ms) {
    return Status::InvalidArgument(std::string(what) + " '" + std::string(text) +
                                   "' is out of range (1s to " + std::to_string(max_ms / kDay) +
                                   "d)");
  }
  return *ms;
}

}  // namespace

Result<int64_t> ParseResolution(std::string_view text) {
  return ParseDuration(text, "resolution", 31 * kDay);
}

Result<int64_t> ParseWindow(std::string_view text) {
  if (text == "today") return int64_t{0};
  return ParseDuration(text, "window", 366 * kDay);
}

Result<RollingStat> ParseRollingStat(std::string_view text) {
  for (const StatName& s : kStats) {
    if (text == s.name) return s.stat;
  }
  return Status::InvalidArgument("unknown stat '" + std::string(text) +
                                 "' (avg, twavg, min, max, count, increase, rate, share, time, "
                                 "hours, changes)");
}

const char* RollingStatName(RollingStat stat) {
  for (const StatName& s : kStats) {
    if (s.stat == stat) return s.name;
  }
  return "?";
}

Status CheckAggregate(const AggregateDef& def, store::KeyType type) {
  // Day and week buckets follow local midnight; anything that does not
  // divide a day evenly would start buckets at odd times of day.
  if (def.step_ms < kDay && kDay % def.step_ms != 0) {
    return Status::InvalidArgument(def.where + ": resolution '" + def.resolution +
                                   "' does not divide a day evenly (e.g. 1m, 5m, 15m, 1h, 6h)");
  }
  // Longer buckets follow local midnight from the day a range starts, so
  // only weeks (which start on Monday) have one fixed alignment.
  if (def.step_ms > kDay && def.step_ms != 7 * kDay) {
    return Status::InvalidArgument(def.where + ": resolution '" + def.resolution +
                                   "' is longer than a day; use 1d or 1w");
  }
  (void)type;  // every type has a bucket aggregate; the kind depends on it
  return Status::Ok();
}

Status CheckRolling(RollingDef& def, store::KeyType type, const store::BooleanWords& words) {
  const std::string type_name = store::KeyTypeName(type);
  const bool state_stat = def.stat == RollingStat::kShare || def.stat == RollingStat::kTime ||
                          def.stat == RollingStat::kHours || def.stat == RollingStat::kChanges;
  const bool counter_stat = def.stat == RollingStat::kIncrease || def.stat == RollingStat::kRate;
  auto refuse = [&](const std::string& why) {
    return Status::InvalidArgument(def.where + ": stat '" + RollingStatName(def.stat) + "' " + why);
  };
  if (state_stat && IsNumeric(type)) {
    return refuse("is for boolean, uptime and string keys, not " + type_name + " (key '" + def.key +
                  "')");
  }
  if (!state_stat && !IsNumeric(type)) {
    return refuse("is for numeric and counter keys, not " + type_name + " (key '" + def.key + "')");
  }
  if (counter_stat && type != store::KeyType::kCounter) {
    return refuse("is for counter keys, not " + type_name + " (key '" + def.key + "')");
  }
  const bool needs_value = state_stat && def.stat != RollingStat::kChanges;
  if (needs_value && def.value.empty()) return refuse("needs a 'value' (the state counted)");
  if (!needs_value && !def.value.empty()) return refuse("takes no 'value'");
  if (needs_value) {
    Result<store::Value> v = store::CoerceValue(type, store::InputValue(def.value), words);
    if (!v.ok()) {
      return Status::InvalidArgument(def.where + ": value '" + def.value + "' does not fit key '" +
                                     def.key + "' (" + type_name + "): " + v.status().message());
    }
    def.value = store::ValueToText(*v);
  }
  return Status::Ok();
}

std::string DiscoveryId(const std::string& key, const std::string& name) {
  std::string id = "komoku_";
  for (char ch : key + "_" + name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
    id += ok ? ch : '_';
  }
  return id;
}

Status CheckNames(const DerivedOptions& options) {
  std::map<std::string, std::string> topics;  // key + "\n" + name -> where
  auto claim = [&](const std::string& key, const std::string& name,
                   const std::string& where) -> Status {
    auto [it, fresh] = topics.emplace(key + "\n" + name, where);
    if (!fresh) {
      return Status::InvalidArgument(where + ": " + options.prefix + "/derived/" + key + "/" +
                                     name + " is already published by " + it->second);
    }
    return Status::Ok();
  };
  for (const AggregateDef& a : options.aggregates) {
    KOMOKU_RETURN_IF_ERROR(claim(a.key, a.resolution, a.where));
  }
  for (const RollingDef& r : options.rolling) {
    if (r.name.empty() || r.name.find_first_of("/+#") != std::string::npos) {
      return Status::InvalidArgument(r.where + ": name '" + r.name +
                                     "' must be one topic level (no /, + or #)");
    }
    if (r.name == "stale") {
      return Status::InvalidArgument(r.where + ": name 'stale' is the staleness topic");
    }
    KOMOKU_RETURN_IF_ERROR(claim(r.key, r.name, r.where));
  }
  if (!options.discovery) return Status::Ok();
  // Home Assistant ids keep only [A-Za-z0-9_-]: "a/b" and "a_b" would meet.
  std::map<std::string, std::string> ids;
  auto id = [&](const std::string& key, const std::string& name,
                const std::string& where) -> Status {
    auto [it, fresh] = ids.emplace(DiscoveryId(key, name), where);
    if (!fresh) {
      return Status::InvalidArgument(where + ": Home Assistant id '" + it->first +
                                     "' is already used by " + it->second);
    }
    return Status::Ok();
  };
  for (const AggregateDef& a : options.aggregates)
    KOMOKU_RETURN_IF_ERROR(id(a.key, a.resolution, a.where));
  for (const RollingDef& r : options.rolling) KOMOKU_RETURN_IF_ERROR(id(r.key, r.name, r.where));
  for (const DiscoveryKey& k : options.discovery_keys) {
    KOMOKU_RETURN_IF_ERROR(id(k.key, "state", k.where));
  }
  return Status::Ok();
}

}  // namespace komoku::derived
