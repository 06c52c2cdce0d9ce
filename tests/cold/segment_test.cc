// Cold segment files: round trips of every key type, the read paths against
// brute force over the written data, writer refusals, and damaged files
// (truncations and bit flips in both files), which must give an error and
// never a crash.
#include "cold/segment.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cold/segment_codec.h"
#include "keyka/reader.h"
#include "temp_dir.h"

namespace komoku::store {
namespace {

using testing::TempDir;

constexpr int64_t kFrom = 1'700'000'000'000;
constexpr int64_t kTo = kFrom + 7 * 86'400'000;

uint64_t Bits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}

// Values equal bit for bit (doubles compared by their bits).
void ExpectSameValue(const Value& a, const Value& b, const std::string& where) {
  ASSERT_EQ(a.index(), b.index()) << where;
  if (const auto* d = std::get_if<double>(&a)) {
    EXPECT_EQ(Bits(*d), Bits(std::get<double>(b)))
        << where << ": " << *d << " vs " << std::get<double>(b);
  } else {
    EXPECT_EQ(a, b) << where;
  }
}

void ExpectSameRollup(const Rollup& a, const Rollup& b, const std::string& where) {
  EXPECT_TRUE(a == b) << where << " start " << a.start_ms;
  for (auto [x, y] : {std::pair{a.sum, b.sum},
                      {a.min, b.min},
                      {a.max, b.max},
                      {a.integral, b.integral},
                      {a.increase, b.increase},
                      {a.high, b.high}}) {
    EXPECT_EQ(Bits(x), Bits(y)) << where << " start " << a.start_ms;
  }
  ASSERT_EQ(a.first.has_value(), b.first.has_value()) << where;
  if (a.first) ExpectSameValue(*a.first, *b.first, where + " first");
  ASSERT_EQ(a.last.has_value(), b.last.has_value()) << where;
  if (a.last) ExpectSameValue(*a.last, *b.last, where + " last");
}

void ExpectSameKey(const SegmentKeyData& a, const SegmentKeyData& b) {
  const std::string w = "key " + a.key;
  EXPECT_EQ(a.key, b.key);
  EXPECT_EQ(a.type, b.type) << w;
  EXPECT_EQ(a.stale_after_ms, b.stale_after_ms) << w;
  EXPECT_EQ(Bits(a.reset_tolerance), Bits(b.reset_tolerance)) << w;
  EXPECT_EQ(a.raw_dropped, b.raw_dropped) << w;
  ASSERT_EQ(a.carry.has_value(), b.carry.has_value()) << w;
  if (a.carry) {
    EXPECT_EQ(a.carry->time_ms, b.carry->time_ms) << w;
    ExpectSameValue(a.carry->value, b.carry->value, w + " carry");
  }
  ASSERT_EQ(a.changes.size(), b.changes.size()) << w;
  for (size_t i = 0; i < a.changes.size(); ++i) {
    ASSERT_EQ(a.changes[i].time_ms, b.changes[i].time_ms) << w << " change " << i;
    ExpectSameValue(a.changes[i].value, b.changes[i].value, w + " change " + std::to_string(i));
  }
  ASSERT_EQ(a.rollups.size(), b.rollups.size()) << w;
  for (size_t r = 0; r < a.rollups.size(); ++r) {
    EXPECT_EQ(a.rollups[r].first, b.rollups[r].first) << w;
    ASSERT_EQ(a.rollups[r].second.size(), b.rollups[r].second.size()) << w;
    for (size_t i = 0; i < a.rollups[r].second.size(); ++i) {
      ExpectSameRollup(a.rollups[r].second[i], b.rollups[r].second[i], w);
    }
  }
}

// Times from kFrom, about `step_ms` apart with jitter, some repeated.
std::vector<int64_t> Times(std::mt19937_64& rng, size_t n, int64_t step_ms) {
  std::vector<int64_t> t;
  int64_t now = kFrom + 1234;
  for (size_t i = 0; i < n; ++i) {
    t.push_back(now);
    if (rng() % 50 != 0) now += step_ms + static_cast<int64_t>(rng() % 600) - 300;
  }
  return t;
}

std::vector<Sample> Numbers(std::mt19937_64& rng, size_t n,
                            const std::function<double(size_t)>& f) {
  std::vector<Sample> out;
  std::vector<int64_t> t = Times(rng, n, 10'000);
  for (size_t i = 0; i < n; ++i) out.push_back({t[i], f(i)});
  return out;
}

std::vector<Rollup> MakeRollups(std::mt19937_64& rng, KeyType type, int64_t res, size_t n) {
  std::vector<Rollup> out;
  int64_t start = kFrom - kFrom % res;
  std::uniform_int_distribution<int> cents(1500, 2500);
  for (size_t i = 0; i < n; ++i) {
    Rollup r;
    r.start_ms = start;
    start += res * (rng() % 10 == 0 ? 3 : 1);
    r.count = static_cast<int64_t>(rng() % 40);
    r.changes = r.count - (r.count > 0 ? static_cast<int64_t>(rng() % 2) : 0);
    r.known_ms = rng() % 7 == 0 ? static_cast<int64_t>(rng() % res) : res;
    r.unknown_ms = res - r.known_ms;
    if (type == KeyType::kNumeric || type == KeyType::kCounter) {
      if (r.count > 0) {
        double sum = 0;
        for (int64_t c = 0; c < r.count; ++c) sum += cents(rng) / 100.0;
        r.sum = sum;
        r.min = cents(rng) / 100.0;
        r.max = r.min + cents(rng) / 100.0;
        r.first = cents(rng) / 100.0;
        r.last = cents(rng) / 100.0;
        r.integral = (cents(rng) / 100.0) * static_cast<double>(r.known_ms);
      }
      if (type == KeyType::kCounter) {
        r.increase = (rng() % 100) / 10.0;
        if (i > 0) r.high = 1000 + static_cast<double>(i) / 4;
      }
    } else {
      const bool boolean = type != KeyType::kString;
      auto text = [&](uint64_t v) {
        return boolean ? std::string(v % 2 ? "true" : "false") : "state-" + std::to_string(v % 5);
      };
      auto value = [&](uint64_t v) { return boolean ? Value(v % 2 == 1) : Value(text(v)); };
      if (r.count > 0) {
        r.first = value(rng());
        r.last = value(rng());
      }
      std::set<std::string> seen;
      for (int e = static_cast<int>(rng() % 3); e >= 0; --e) seen.insert(text(rng()));
      for (const auto& s : seen) r.ms_per_value.emplace_back(s, static_cast<int64_t>(rng() % res));
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<std::pair<int64_t, std::vector<Rollup>>> AllRollups(std::mt19937_64& rng, KeyType type,
                                                                size_t n5m) {
  return {{kRollupResolutionsMs[0], MakeRollups(rng, type, kRollupResolutionsMs[0], n5m)},
          {kRollupResolutionsMs[1], MakeRollups(rng, type, kRollupResolutionsMs[1], n5m / 12 + 1)},
          {kRollupResolutionsMs[2], MakeRollups(rng, type, kRollupResolutionsMs[2], 7)}};
}

// One key of each shape the format cares about, names in order.
std::vector<SegmentKeyData> TestKeys(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<SegmentKeyData> keys;
  auto add = [&](std::string name, KeyType type) -> SegmentKeyData& {
    SegmentKeyData d;
    d.key = std::move(name);
    d.type = type;
    d.stale_after_ms = 3'600'000;
    keys.push_back(std::move(d));
    return keys.back();
  };
  std::normal_distribution<double> noise(0, 0.05);
  {
    auto& d = add("a/temperature", KeyType::kNumeric);
    double v = 21;
    d.changes = Numbers(rng, 5000, [&](size_t) {
      v += noise(rng);
      return std::round(v * 100) / 100;
    });
    d.carry = Sample{kFrom - 5000, 20.5};
    d.rollups = AllRollups(rng, KeyType::kNumeric, 300);
  }
  {
    auto& d = add("b/doubles", KeyType::kNumeric);
    std::uniform_real_distribution<double> u(-1e6, 1e6);
    d.changes = Numbers(rng, 3000, [&](size_t) { return u(rng); });
  }
  {
    auto& d = add("c/negative", KeyType::kNumeric);
    d.changes =
        Numbers(rng, 2100, [&](size_t i) { return -40.0 - static_cast<double>(i % 97) / 10; });
  }
  {
    auto& d = add("d/huge", KeyType::kNumeric);
    const double specials[] = {1e300,
                               -1e300,
                               std::numeric_limits<double>::max(),
                               std::numeric_limits<double>::denorm_min(),
                               -0.0,
                               0.0,
                               4611686018427387904.0,
                               9007199254740993.0,
                               1e-300,
                               123456.789012,
                               std::numeric_limits<double>::infinity()};
    d.changes = Numbers(rng, 1100, [&](size_t i) { return specials[i % std::size(specials)]; });
  }
  {
    auto& d = add("e/energy", KeyType::kCounter);
    double total = 1000;
    d.changes = Numbers(rng, 2500, [&](size_t i) {
      total = i % 700 == 699 ? 0.001 : total + static_cast<double>(rng() % 50) / 1000;
      return total;
    });
    d.reset_tolerance = 0.5;
    d.rollups = AllRollups(rng, KeyType::kCounter, 100);
  }
  {
    auto& d = add("f/door", KeyType::kBoolean);
    std::vector<int64_t> t = Times(rng, 3000, 100'000);
    for (size_t i = 0; i < t.size(); ++i) d.changes.push_back({t[i], rng() % 3 != 0});
    d.carry = Sample{kFrom - 1, false};
    d.rollups = AllRollups(rng, KeyType::kBoolean, 50);
  }
  {
    auto& d = add("g/heartbeat", KeyType::kUptime);
    std::vector<int64_t> t = Times(rng, 100, 60'000);
    for (size_t i = 0; i < t.size(); ++i) d.changes.push_back({t[i], i % 2 == 0});
  }
  {
    auto& d = add("h/alarm", KeyType::kString);
    const char* states[] = {"armed_home", "armed_away", "disarmed", "triggered", ""};
    std::vector<int64_t> t = Times(rng, 2000, 30'000);
    for (size_t i = 0; i < t.size(); ++i)
      d.changes.push_back({t[i], std::string(states[rng() % 5])});
    d.rollups = AllRollups(rng, KeyType::kString, 40);
  }
  {
    auto& d = add("i/log", KeyType::kString);
    std::vector<int64_t> t = Times(rng, 1500, 1'000);
    for (size_t i = 0; i < t.size(); ++i) {
      d.changes.push_back({t[i], "line " + std::to_string(rng()) + std::string(rng() % 30, 'x')});
    }
  }
  add("j/empty", KeyType::kNumeric);
  add("k/carry-only", KeyType::kString).carry = Sample{kFrom - 86'400'000, std::string("idle")};
  {
    auto& d = add("l/dropped", KeyType::kNumeric);
    d.raw_dropped = true;
    d.carry = Sample{kFrom - 10, 3.25};
    d.rollups = AllRollups(rng, KeyType::kNumeric, 200);
    d.rollups.erase(d.rollups.begin());  // retention dropped the finest too
  }
  {
    // A prefix of the next name: the index must keep their records apart.
    add("m", KeyType::kNumeric).changes = {{kFrom, 1.0}, {kFrom + 1, 2.0}};
    add("m/x", KeyType::kNumeric).changes = {{kFrom, 3.0}};
  }
  {
    // A long run of equal times crosses the block size.
    auto& d = add("n/burst", KeyType::kNumeric);
    for (int i = 0; i < 1500; ++i) d.changes.push_back({kFrom + 100 + (i < 1000 ? 0 : i), i * 0.5});
  }
  return keys;
}

SegmentMeta TestMeta() { return SegmentMeta{kFrom, kTo, 4242}; }

std::string WriteSegment(const std::string& base, const std::vector<SegmentKeyData>& keys,
                         const SegmentMeta& meta = TestMeta()) {
  Result<std::unique_ptr<SegmentWriter>> w = SegmentWriter::Create(base, meta, {false});
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  if (!w.ok()) return base;
  for (const auto& k : keys) {
    Status st = (*w)->AddKey(k);
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  Status st = (*w)->Finish();
  EXPECT_TRUE(st.ok()) << st.ToString();
  return base;
}

std::shared_ptr<const Segment> OpenOk(const std::string& base) {
  Result<std::shared_ptr<const Segment>> s = Segment::Open(base);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? *s : nullptr;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(SegmentTest, RoundTripEveryType) {
  TempDir dir;
  const std::vector<SegmentKeyData> keys = TestKeys(1);
  const std::string base = WriteSegment(dir.File("seg"), keys);
  auto seg = OpenOk(base);
  ASSERT_NE(seg, nullptr);
  EXPECT_EQ(seg->meta().from_ms, kFrom);
  EXPECT_EQ(seg->meta().to_ms, kTo);
  EXPECT_EQ(seg->meta().max_seq, 4242u);
  Status st = seg->Verify();
  EXPECT_TRUE(st.ok()) << st.ToString();
  for (const auto& k : keys) {
    EXPECT_TRUE(seg->HasKey(k.key)) << k.key;
    Result<std::optional<SegmentKeyMeta>> meta = seg->KeyMeta(k.key);
    ASSERT_TRUE(meta.ok() && meta->has_value()) << k.key;
    EXPECT_EQ((*meta)->type, k.type);
    EXPECT_EQ((*meta)->stale_after_ms, k.stale_after_ms);
    EXPECT_EQ(Bits((*meta)->reset_tolerance), Bits(k.reset_tolerance));
    EXPECT_EQ((*meta)->raw_dropped, k.raw_dropped);
    EXPECT_EQ((*meta)->carry.has_value(), k.carry.has_value());
    Result<SegmentKeyData> got = seg->ReadKey(k.key);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ExpectSameKey(k, *got);
  }
  EXPECT_FALSE(seg->HasKey("a"));
  Result<std::optional<SegmentKeyMeta>> absent = seg->KeyMeta("a");
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
  EXPECT_FALSE(seg->HasKey("m/"));
  EXPECT_TRUE(seg->ReadKey("zz").status().IsNotFound());
}

// Resident bytes of this process's mappings of `path` (/proc/self/smaps).
int64_t ResidentBytesOf(const std::string& path) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in_file = false;
  int64_t kb = 0;
  while (std::getline(smaps, line)) {
    // A mapping's header line: "start-end perms offset dev inode path".
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
        line.find('-') < line.find(' ')) {
      in_file = line.size() >= path.size() &&
                line.compare(line.size() - path.size(), path.size(), path) == 0;
    } else if (in_file && line.rfind("Rss:", 0) == 0) {
      kb += std::stoll(line.substr(4));
    }
  }
  return kb * 1024;
}

// Verify reads every page of both files; ReleasePages gives them back, and
// what is read afterwards is still right.
TEST(SegmentTest, ReleasePagesAfterVerifyDropsResidentPages) {
  TempDir dir;
  const std::vector<SegmentKeyData> keys = TestKeys(1);
  const std::string base = WriteSegment(dir.File("seg"), keys);
  auto seg = OpenOk(base);
  ASSERT_NE(seg, nullptr);
  const std::string data = std::filesystem::canonical(base + ".kkd").string();
  const std::string index = std::filesystem::canonical(base + ".kki").string();
  ASSERT_TRUE(seg->Verify().ok());
  EXPECT_GT(ResidentBytesOf(data), 0);
  EXPECT_GT(ResidentBytesOf(index), 0);
  seg->ReleasePages();
  EXPECT_EQ(ResidentBytesOf(data), 0);
  EXPECT_EQ(ResidentBytesOf(index), 0);
  for (const auto& k : keys) {
    Result<SegmentKeyData> got = seg->ReadKey(k.key);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ExpectSameKey(k, *got);
  }
  EXPECT_TRUE(seg->Verify().ok());
}

// A check asked to stop ends with Busy, having asked every 256 blocks or
// records, and finds nothing wrong with a sound segment meanwhile.
TEST(SegmentTest, VerifyStopsWhenAsked) {
  TempDir dir;
  std::vector<SegmentKeyData> keys;
  for (int i = 0; i < 600; ++i) {
    SegmentKeyData d;
    d.key = "k/" + std::to_string(1000 + i);
    d.type = KeyType::kNumeric;
    d.changes = {Sample{kFrom + i, 1.0 * i}, Sample{kFrom + i + 1000, 2.0 * i}};
    keys.push_back(std::move(d));
  }
  const std::string base = WriteSegment(dir.File("seg"), keys);
  auto seg = OpenOk(base);
  ASSERT_NE(seg, nullptr);
  int asked = 0;
  Status all = seg->Verify([&] {
    ++asked;
    return true;
  });
  EXPECT_TRUE(all.ok()) << all.ToString();
  EXPECT_GE(asked, 4);  // 600 keys: at least 1,200 blocks and records
  int asked_once = 0;
  Status stopped = seg->Verify([&] {
    ++asked_once;
    return false;
  });
  EXPECT_TRUE(stopped.IsBusy()) << stopped.ToString();
  EXPECT_EQ(asked_once, 1);
}

TEST(SegmentTest, IndexIsValidKeyKa) {
  TempDir dir;
  const std::string base = WriteSegment(dir.File("seg"), TestKeys(2));
  Result<keyka::Reader> r = keyka::Reader::Open(base + ".kki");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  keyka::Stats stats;
  Status st = r->Verify(&stats);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_GT(stats.keys, 20u);
}

TEST(SegmentTest, KeysListsCountsAndBytes) {
  TempDir dir;
  const std::vector<SegmentKeyData> keys = TestKeys(3);
  auto seg = OpenOk(WriteSegment(dir.File("seg"), keys));
  ASSERT_NE(seg, nullptr);
  std::vector<SegmentKeyInfo> infos = seg->Keys();
  ASSERT_EQ(infos.size(), keys.size());
  uint64_t bytes = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(infos[i].key, keys[i].key);
    EXPECT_EQ(infos[i].type, keys[i].type);
    EXPECT_EQ(infos[i].changes, keys[i].changes.size());
    EXPECT_EQ(infos[i].raw_bytes > 0, !keys[i].changes.empty()) << keys[i].key;
    bool has_rollups = false;
    for (const auto& r : keys[i].rollups) has_rollups |= !r.second.empty();
    EXPECT_EQ(infos[i].rollup_bytes > 0, has_rollups) << keys[i].key;
    if (keys[i].changes.empty()) {
      EXPECT_FALSE(infos[i].first_ms);
    } else {
      EXPECT_EQ(infos[i].first_ms, keys[i].changes.front().time_ms);
      EXPECT_EQ(infos[i].last_ms, keys[i].changes.back().time_ms);
    }
    bytes += infos[i].raw_bytes + infos[i].rollup_bytes;
  }
  EXPECT_LT(bytes, seg->file_bytes());
}

TEST(SegmentTest, ScanAndAtMatchBruteForce) {
  TempDir dir;
  const std::vector<SegmentKeyData> keys = TestKeys(4);
  auto seg = OpenOk(WriteSegment(dir.File("seg"), keys));
  ASSERT_NE(seg, nullptr);
  std::mt19937_64 rng(99);
  for (const auto& k : keys) {
    if (k.changes.empty() && !k.carry) continue;
    const int64_t lo = k.changes.empty() ? kFrom : k.changes.front().time_ms;
    const int64_t hi = k.changes.empty() ? kFrom + 1000 : k.changes.back().time_ms + 1;
    for (int trial = 0; trial < 40; ++trial) {
      std::uniform_int_distribution<int64_t> when(lo - 5000, hi + 5000);
      int64_t a = when(rng), b = when(rng);
      if (trial == 0) a = b = lo;
      if (a > b) std::swap(a, b);
      if (trial % 7 == 3) b = a + 1;
      // Scan: every change in [a, b) in order.
      std::vector<Sample> want;
      for (const auto& s : k.changes) {
        if (s.time_ms >= a && s.time_ms < b) want.push_back(s);
      }
      std::vector<Sample> got;
      ASSERT_TRUE(seg->Scan(k.key, a, b,
                            [&](const Sample& s) {
                              got.push_back(s);
                              return true;
                            })
                      .ok());
      ASSERT_EQ(got.size(), want.size()) << k.key << " [" << a << ", " << b << ")";
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].time_ms, want[i].time_ms);
        ExpectSameValue(got[i].value, want[i].value, k.key);
      }
      // Early stop after 3.
      size_t calls = 0;
      ASSERT_TRUE(seg->Scan(k.key, a, b, [&](const Sample&) { return ++calls < 3; }).ok());
      EXPECT_EQ(calls, std::min<size_t>(3, want.size()));
      // At: the last change at or before a, else the carry.
      std::optional<Sample> at;
      for (const auto& s : k.changes) {
        if (s.time_ms <= a) at = s;
      }
      if (!at && k.carry && k.carry->time_ms <= a) at = k.carry;
      Result<std::optional<Sample>> got_at = seg->At(k.key, a);
      ASSERT_TRUE(got_at.ok()) << got_at.status().ToString();
      ASSERT_EQ(got_at->has_value(), at.has_value()) << k.key << " at " << a;
      if (at) {
        EXPECT_EQ((*got_at)->time_ms, at->time_ms);
        ExpectSameValue((*got_at)->value, at->value, k.key);
      }
    }
  }
  Result<std::optional<Sample>> none = seg->At("a/temperature", kFrom - 6000);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  Result<std::optional<Sample>> carry = seg->At("k/carry-only", kTo);
  ASSERT_TRUE(carry.ok());
  ASSERT_TRUE(carry->has_value());
  EXPECT_EQ(std::get<std::string>((*carry)->value), "idle");
  EXPECT_TRUE(seg->Scan("nope", kFrom, kTo, [](const Sample&) { return true; }).ok());
}

TEST(SegmentTest, ScanRollupsRanges) {
  TempDir dir;
  const std::vector<SegmentKeyData> keys = TestKeys(5);
  auto seg = OpenOk(WriteSegment(dir.File("seg"), keys));
  ASSERT_NE(seg, nullptr);
  std::mt19937_64 rng(7);
  for (const auto& k : keys) {
    for (const auto& [res, rollups] : k.rollups) {
      if (rollups.empty()) continue;
      for (int trial = 0; trial < 20; ++trial) {
        std::uniform_int_distribution<int64_t> when(rollups.front().start_ms - res,
                                                    rollups.back().start_ms + res);
        int64_t a = when(rng), b = when(rng);
        if (trial == 0) a = rollups.front().start_ms, b = rollups.back().start_ms + 1;
        if (a > b) std::swap(a, b);
        std::vector<Rollup> want, got;
        for (const auto& r : rollups) {
          if (r.start_ms >= a && r.start_ms < b) want.push_back(r);
        }
        ASSERT_TRUE(seg->ScanRollups(k.key, res, a, b,
                                     [&](const Rollup& r) {
                                       got.push_back(r);
                                       return true;
                                     })
                        .ok());
        ASSERT_EQ(got.size(), want.size()) << k.key << " " << res;
        for (size_t i = 0; i < got.size(); ++i) ExpectSameRollup(got[i], want[i], k.key);
        size_t calls = 0;
        ASSERT_TRUE(
            seg->ScanRollups(k.key, res, a, b, [&](const Rollup&) { return ++calls < 2; }).ok());
        EXPECT_EQ(calls, std::min<size_t>(2, want.size()));
      }
    }
    size_t calls = 0;
    ASSERT_TRUE(
        seg->ScanRollups(k.key, 12345, kFrom, kTo, [&](const Rollup&) { return ++calls; }).ok());
    EXPECT_EQ(calls, 0u);
  }
}

TEST(SegmentTest, RollupEqualityTreatsNanHighAsEqual) {
  Rollup a, b;
  EXPECT_TRUE(a == b);
  b.high = 1;
  EXPECT_FALSE(a == b);
  a.high = 1;
  EXPECT_TRUE(a == b);
}

TEST(SegmentTest, EmptySegment) {
  TempDir dir;
  auto seg = OpenOk(WriteSegment(dir.File("seg"), {}));
  ASSERT_NE(seg, nullptr);
  EXPECT_TRUE(seg->Verify().ok());
  EXPECT_TRUE(seg->Keys().empty());
}

TEST(SegmentTest, WriterRefusals) {
  TempDir dir;
  auto w = SegmentWriter::Create(dir.File("seg"), TestMeta(), {false});
  ASSERT_TRUE(w.ok());
  SegmentKeyData b;
  b.key = "b";
  ASSERT_TRUE((*w)->AddKey(b).ok());
  auto refused = [&](const SegmentKeyData& d, const char* why) {
    Status st = (*w)->AddKey(d);
    EXPECT_TRUE(st.IsInvalidArgument()) << why << ": " << st.ToString();
  };
  SegmentKeyData d;
  d.key = "a";
  refused(d, "name before the last");
  d.key = "b";
  refused(d, "same name");
  d.key = "c";
  d.changes = {{kFrom + 10, 1.0}, {kFrom + 5, 2.0}};
  refused(d, "out of order");
  d.changes = {{kFrom - 1, 1.0}};
  refused(d, "before from_ms");
  d.changes = {{kTo, 1.0}};
  refused(d, "at to_ms");
  d.changes = {{kFrom, true}};
  refused(d, "wrong type");
  d.changes = {};
  d.carry = Sample{kFrom, 1.0};
  refused(d, "carry inside the range");
  d.carry.reset();
  d.rollups = {{300'000, {Rollup{}, Rollup{}}}};
  refused(d, "rollup starts repeat");
  d.rollups = {{0, {}}};
  refused(d, "zero resolution");
  d.rollups = {};
  d.key = "with";
  d.key.push_back('\0');
  refused(d, "NUL in name");
  d.key = "c";
  d.changes = {{kFrom, 1.0}};
  EXPECT_TRUE((*w)->AddKey(d).ok()) << "a refusal does not poison the writer";
  ASSERT_TRUE((*w)->Finish().ok());
  auto seg = OpenOk(dir.File("seg"));
  ASSERT_NE(seg, nullptr);
  EXPECT_EQ(seg->Keys().size(), 2u);
  EXPECT_TRUE(SegmentWriter::Create(dir.File("x"), SegmentMeta{kTo, kFrom, 0})
                  .status()
                  .IsInvalidArgument());
}

TEST(SegmentTest, UnfinishedWriterLeavesNothing) {
  TempDir dir;
  {
    auto w = SegmentWriter::Create(dir.File("seg"), TestMeta(), {false});
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->AddKey(TestKeys(6)[0]).ok());
    EXPECT_GT((*w)->bytes(), 0u);
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  EXPECT_TRUE(Segment::Open(dir.File("seg")).status().IsNotFound());
}

// A damaged copy must fail Open or Verify, and no read may crash on it.
void ExpectDamageFound(const std::string& base, const std::string& what) {
  Result<std::shared_ptr<const Segment>> seg = Segment::Open(base);
  if (!seg.ok()) {
    EXPECT_FALSE(seg.status().message().empty());
    return;
  }
  Status verify = (*seg)->Verify();
  EXPECT_FALSE(verify.ok()) << what;
  // Whatever the reads say, they must return.
  for (const auto& info : (*seg)->Keys()) {
    (void)(*seg)->ReadKey(info.key);
    (void)(*seg)->At(info.key, kFrom + 3'600'000);
  }
  for (const char* key : {"a/temperature", "h/alarm", "f/door"}) {
    (void)(*seg)->Scan(key, kFrom, kTo, [](const Sample&) { return true; });
    (void)(*seg)->ScanRollups(key, kRollupResolutionsMs[0], kFrom - 86'400'000, kTo,
                              [](const Rollup&) { return true; });
  }
}

// Small keys so that a few thousand damaged copies stay fast.
std::vector<SegmentKeyData> SmallKeys() {
  std::vector<SegmentKeyData> keys = TestKeys(8);
  for (auto& k : keys) {
    if (k.changes.size() > 1100) k.changes.resize(1100);
    for (auto& r : k.rollups) {
      if (r.second.size() > 20) r.second.resize(20);
    }
  }
  return keys;
}

TEST(SegmentTest, TruncationIsCorruption) {
  TempDir dir;
  const std::string base = WriteSegment(dir.File("seg"), SmallKeys());
  for (const char* ext : {".kkd", ".kki"}) {
    const std::string path = base + ext;
    const std::string good = ReadFile(path);
    for (size_t len = 0; len < good.size(); len += 1 + len / 16) {
      WriteFile(path, good.substr(0, len));
      ExpectDamageFound(base, std::string(ext) + " cut at " + std::to_string(len));
    }
    WriteFile(path, good + "x");
    ExpectDamageFound(base, std::string(ext) + " extended");
    WriteFile(path, good);
  }
  EXPECT_TRUE(OpenOk(base)->Verify().ok());
}

// Flips bits of one byte of `path` in place.
void FlipByte(const std::string& path, size_t offset, unsigned char mask) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(static_cast<char>(c ^ mask));
}

TEST(SegmentTest, BitFlipsAreFound) {
  TempDir dir;
  const std::string base = WriteSegment(dir.File("seg"), SmallKeys());
  std::mt19937_64 rng(12345);
  for (const char* ext : {".kkd", ".kki"}) {
    const std::string path = base + ext;
    const size_t size = std::filesystem::file_size(path);
    for (int i = 0; i < 1500; ++i) {
      const size_t at = rng() % size;
      const auto mask = static_cast<unsigned char>(1 << (rng() % 8));
      FlipByte(path, at, mask);
      ExpectDamageFound(base, std::string(ext) + " flip at " + std::to_string(at));
      FlipByte(path, at, mask);
      if (::testing::Test::HasFailure()) return;
    }
  }
  EXPECT_TRUE(OpenOk(base)->Verify().ok());
}

TEST(SegmentTest, MismatchedFilesAreRefused) {
  TempDir dir;
  const std::string a = WriteSegment(dir.File("a"), SmallKeys());
  const std::string b = WriteSegment(dir.File("b"), SmallKeys());
  WriteFile(a + ".kki", ReadFile(b + ".kki"));
  Result<std::shared_ptr<const Segment>> seg = Segment::Open(a);
  EXPECT_TRUE(seg.status().IsCorruption()) << seg.status().ToString();
}

// A data file 4 GiB longer than its header says (sparse, so it costs no
// disk): on a 64-bit target it maps whole and is found extended; on a 32-bit
// one (armhf) it must be refused, not mapped short to exactly the size the
// header expects and taken for sound.
TEST(SegmentTest, FileLargerThanTheAddressSpaceIsRefused) {
  TempDir dir;
  const std::string base = WriteSegment(dir.File("seg"), SmallKeys());
  const std::string path = base + ".kkd";
  const uint64_t good = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, good + (uint64_t{1} << 32));
  Result<std::shared_ptr<const Segment>> seg = Segment::Open(base);
  ASSERT_FALSE(seg.ok());
  if (sizeof(size_t) < 8) {
    EXPECT_TRUE(seg.status().IsIOError()) << seg.status().ToString();
    EXPECT_NE(seg.status().message().find("too large to map"), std::string::npos)
        << seg.status().ToString();
  } else {
    EXPECT_TRUE(seg.status().IsCorruption()) << seg.status().ToString();
  }
}

// Payloads that pass the CRC but were crafted or damaged before it was
// computed: the decoders must refuse or decode them, never crash (run under
// ASan for the full guarantee; fuzz/segment_codec_fuzzer.cc goes further).
TEST(SegmentCodecTest, DamagedPayloadsNeverCrash) {
  const std::vector<SegmentKeyData> keys = TestKeys(11);
  std::vector<std::pair<KeyType, std::string>> raw, rollup;
  std::vector<std::string> meta;
  for (const auto& k : keys) {
    const size_t n = std::min<size_t>(k.changes.size(), 300);
    if (n > 0)
      raw.emplace_back(k.type, segment_internal::EncodeRawBlock(k.type, k.changes.data(), n));
    for (const auto& [res, rs] : k.rollups) {
      if (!rs.empty()) {
        rollup.emplace_back(k.type, segment_internal::EncodeRollupBlock(
                                        k.type, rs.data(), std::min<size_t>(rs.size(), 50)));
      }
    }
    segment_internal::KeyRecord m;
    m.name = k.key;
    m.type = k.type;
    m.carry = k.carry;
    m.resolutions = {{300'000, 5}};
    meta.push_back(segment_internal::EncodeKeyMeta(m));
  }
  std::mt19937_64 rng(2024);
  auto damage = [&](std::string p) {
    switch (rng() % 4) {
      case 0:  // flips
        for (int f = 1 + static_cast<int>(rng() % 4); f > 0 && !p.empty(); --f) {
          p[rng() % p.size()] ^= static_cast<char>(1 << (rng() % 8));
        }
        return p;
      case 1:  // truncation
        return p.substr(0, p.empty() ? 0 : rng() % p.size());
      case 2:  // random bytes over a stretch
        for (size_t i = rng() % (p.size() + 1); i < p.size() && rng() % 16 != 0; ++i) {
          p[i] = static_cast<char>(rng());
        }
        return p;
      default: {  // pure noise
        std::string q(rng() % 64, '\0');
        for (auto& c : q) c = static_cast<char>(rng());
        return q;
      }
    }
  };
  int refused = 0;
  for (int i = 0; i < 3000; ++i) {
    std::vector<Sample> samples;
    std::vector<Rollup> rollups;
    const auto& [rt, rp] = raw[rng() % raw.size()];
    refused += !segment_internal::DecodeRawBlock(rt, damage(rp), &samples).ok();
    const auto& [ut, up] = rollup[rng() % rollup.size()];
    refused += !segment_internal::DecodeRollupBlock(ut, damage(up), 2, &rollups).ok();
    refused += !segment_internal::DecodeKeyMeta(damage(meta[rng() % meta.size()])).ok();
  }
  EXPECT_GT(refused, 1000);
  // Undamaged, they decode to what was encoded.
  for (const auto& [t, p] : raw) {
    std::vector<Sample> samples;
    EXPECT_TRUE(segment_internal::DecodeRawBlock(t, p, &samples).ok());
  }
}

// The worked example of docs/segment-format.md, kept as golden files so that
// a change to the bytes the writer makes cannot go unnoticed by old readers:
// the reader must keep reading these. KOMOKU_WRITE_SEGMENT_GOLDEN=1 rewrites
// them (only for a deliberate format change, with a new format version).
// `version`: the format the golden files were written in (1 has no first_ms).
std::vector<SegmentKeyData> ExampleKeys(int version) {
  constexpr int64_t kT = 1'700'000'100'000;  // 2023-11-14T22:15:00Z, a 5-minute bucket start
  SegmentKeyData door;
  door.key = "door";
  door.type = KeyType::kBoolean;
  door.stale_after_ms = 0;
  door.carry = Sample{kT - 86'400'000, false};  // before the segment's day
  door.changes = {{kT, true}, {kT + 60'000, false}, {kT + 120'500, true}};
  SegmentKeyData temp;
  temp.key = "hall/temp";
  temp.type = KeyType::kNumeric;
  temp.changes = {{kT + 2'000, 21.5}, {kT + 12'010, 21.25}, {kT + 21'990, 21.75}};
  Rollup r;
  r.start_ms = kT;
  r.count = 3;
  r.changes = 3;
  r.first = 21.5;
  r.last = 21.75;
  r.sum = 64.5;
  r.min = 21.25;
  r.max = 21.75;
  r.known_ms = 298'000;
  r.unknown_ms = 2'000;
  r.integral = 21.5 * 10'010 + 21.25 * 9'980 + 21.75 * 278'010;
  if (version >= 2) r.first_ms = kT + 2'000;
  temp.rollups = {{300'000, {r}}};
  return {door, temp};
}

// Format 2, the one written now (example-v2.*), and format 1 (example.*,
// written before rollups held first_ms), which must stay readable.
void ExpectGoldenExample(int version) {
  const std::string base =
      std::string(KOMOKU_SEGMENT_TEST_DATA) + (version == 1 ? "/example" : "/example-v2");
  const SegmentMeta meta{1'700'000'000'000 - 1'700'000'000'000 % 86'400'000,
                         1'700'000'000'000 - 1'700'000'000'000 % 86'400'000 + 86'400'000, 7};
  if (version == 2 && std::getenv("KOMOKU_WRITE_SEGMENT_GOLDEN") != nullptr)
    WriteSegment(base, ExampleKeys(version), meta);
  auto seg = OpenOk(base);
  ASSERT_NE(seg, nullptr);
  EXPECT_TRUE(seg->Verify().ok());
  EXPECT_EQ(seg->meta().from_ms, meta.from_ms);
  EXPECT_EQ(seg->meta().to_ms, meta.to_ms);
  EXPECT_EQ(seg->meta().max_seq, 7u);
  for (const auto& k : ExampleKeys(version)) {
    Result<SegmentKeyData> got = seg->ReadKey(k.key);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ExpectSameKey(k, *got);
  }
}

TEST(SegmentTest, GoldenExample) { ExpectGoldenExample(2); }
TEST(SegmentTest, GoldenExampleOfFormat1) { ExpectGoldenExample(1); }

// ---------------------------------------------------------------- damage stays small

namespace damage {

// One block of a segment, from its index record (docs/segment-format.md).
struct BlockAt {
  uint64_t offset = 0, length = 0;
  int64_t first_ms = 0;  // the index's time; 0 for a metadata block
};

// The blocks of `name` whose index record kind is `record` (0 metadata, 1
// raw, 0x10 + r rollups), in time order.
std::vector<BlockAt> BlocksOf(const std::string& base, const std::string& name, char record) {
  Result<keyka::Reader> index = keyka::Reader::Open(base + ".kki");
  EXPECT_TRUE(index.ok()) << index.status().ToString();
  std::vector<BlockAt> out;
  if (!index.ok()) return out;
  std::string prefix = name;
  prefix.push_back('\0');
  prefix.push_back(record);
  for (keyka::Iterator it = index->Prefix(prefix); it.Valid(); it.Next()) {
    const std::string_view k = it.key();
    if (record != 0 && k.size() != prefix.size() + 8) continue;
    if (record == 0 && k.size() != prefix.size()) continue;
    BlockAt b;
    b.offset = it.value() & ((uint64_t{1} << 40) - 1);
    b.length = it.value() >> 40;
    if (record != 0) {
      uint64_t t = 0;
      for (size_t i = prefix.size(); i < k.size(); ++i)
        t = (t << 8) | static_cast<unsigned char>(k[i]);
      b.first_ms = static_cast<int64_t>(t ^ (uint64_t{1} << 63));
    }
    out.push_back(b);
  }
  return out;
}

void FlipByte(const std::string& path, uint64_t offset) {
  std::string bytes = ReadFile(path);
  ASSERT_LT(offset, bytes.size());
  bytes[offset] = static_cast<char>(bytes[offset] ^ 0x5a);
  WriteFile(path, bytes);
}

std::vector<Sample> ScanAll(const Segment& seg, const std::string& key, int64_t from = kFrom,
                            int64_t to = kTo) {
  std::vector<Sample> out;
  Status st = seg.Scan(key, from, to, [&](const Sample& s) {
    out.push_back(s);
    return true;
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

std::vector<Rollup> RollupsOf(const Segment& seg, const std::string& key, int64_t res) {
  std::vector<Rollup> out;
  Status st = seg.ScanRollups(key, res, INT64_MIN / 4, INT64_MAX / 4, [&](const Rollup& r) {
    out.push_back(r);
    return true;
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

bool SameSamples(const std::vector<Sample>& a, const std::vector<Sample>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].time_ms != b[i].time_ms || !(a[i].value == b[i].value)) return false;
  }
  return true;
}

// Every key but `except` reads exactly as written, by every read there is.
void ExpectOthersWhole(const Segment& seg, const std::vector<SegmentKeyData>& keys,
                       const std::string& except) {
  size_t listed = 0;
  for (const SegmentKeyInfo& info : seg.Keys()) listed += info.key != except;
  EXPECT_EQ(listed, keys.size() - 1);
  for (const SegmentKeyData& k : keys) {
    if (k.key == except) continue;
    SCOPED_TRACE(k.key);
    Result<SegmentKeyData> got = seg.ReadKey(k.key);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ExpectSameKey(k, *got);
    EXPECT_TRUE(SameSamples(ScanAll(seg, k.key), k.changes));
    for (const auto& [res, rolls] : k.rollups) {
      EXPECT_EQ(RollupsOf(seg, k.key, res), rolls) << res;
    }
    for (size_t i = 0; i < k.changes.size(); i += 97) {
      Result<std::optional<Sample>> at = seg.At(k.key, k.changes[i].time_ms);
      ASSERT_TRUE(at.ok() && at->has_value()) << at.status().ToString();
    }
  }
}

}  // namespace damage

TEST(SegmentDamageTest, OneFlippedByteInARawBlockLosesOnlyThatBlock) {
  using namespace damage;
  TempDir dir;
  const std::vector<SegmentKeyData> keys = TestKeys(3);
  const std::string base = WriteSegment(dir.File("seg"), keys);
  const std::string victim = "a/temperature";  // 5000 changes: five raw blocks
  const SegmentKeyData& orig = keys[0];
  ASSERT_EQ(orig.key, victim);
  const std::vector<BlockAt> raw = BlocksOf(base, victim, 1);
  ASSERT_GE(raw.size(), 3u);
  const BlockAt& hit = raw[1];
  FlipByte(base + ".kkd", hit.offset + hit.length / 2);

  auto seg = OpenOk(base);
  ASSERT_NE(seg, nullptr);
  Result<std::vector<BlockDamage>> damage = seg->Check({});
  ASSERT_TRUE(damage.ok()) << damage.status().ToString();
  ASSERT_EQ(damage->size(), 1u);
  const BlockDamage& d = damage->front();
  EXPECT_EQ(d.key, victim);
  EXPECT_EQ(d.part, BlockDamage::Part::kRaw);
  EXPECT_EQ(d.offset, hit.offset);
  EXPECT_EQ(d.from_ms, hit.first_ms);
  EXPECT_EQ(d.to_ms, raw[2].first_ms);
  EXPECT_NE(d.reason.find("checksum"), std::string::npos) << d.reason;
  EXPECT_EQ(seg->Damage().size(), 1u);
  Status verify = seg->Verify();
  EXPECT_TRUE(verify.IsCorruption());
  EXPECT_NE(verify.message().find(victim), std::string::npos) << verify.ToString();

  ExpectOthersWhole(*seg, keys, victim);

  // The damaged key: every change outside the lost range, and nothing else.
  std::vector<Sample> expected;
  for (const Sample& s : orig.changes) {
    if (s.time_ms < d.from_ms || s.time_ms >= d.to_ms) expected.push_back(s);
  }
  EXPECT_TRUE(SameSamples(ScanAll(*seg, victim), expected));
  std::vector<Sample> head;
  for (const Sample& s : orig.changes) {
    if (s.time_ms < d.from_ms) head.push_back(s);
  }
  EXPECT_TRUE(SameSamples(ScanAll(*seg, victim, kFrom, d.from_ms), head));
  auto last_at = [&](int64_t t) {
    int64_t found = INT64_MIN;
    for (const Sample& s : orig.changes) {
      if (s.time_ms <= t) found = s.time_ms;
    }
    return found;
  };
  // Its rollups live in other blocks: whole.
  for (const auto& [res, rolls] : orig.rollups) EXPECT_EQ(RollupsOf(*seg, victim, res), rolls);
  // The value at a time inside the lost range is not known; before and after it is.
  Result<std::optional<Sample>> inside = seg->At(victim, d.from_ms + 1);
  EXPECT_TRUE(inside.status().IsNotFound());
  EXPECT_EQ(inside.status().reason(), kDataLost);
  Result<std::optional<Sample>> before = seg->At(victim, d.from_ms - 1);
  ASSERT_TRUE(before.ok() && before->has_value());
  EXPECT_EQ((*before)->time_ms, last_at(d.from_ms - 1));
  Result<std::optional<Sample>> after = seg->At(victim, d.to_ms);
  ASSERT_TRUE(after.ok() && after->has_value());
  EXPECT_EQ((*after)->time_ms, last_at(d.to_ms));
  // Rewriting reads: strict says Corruption, a salvage read leaves the block out.
  EXPECT_TRUE(seg->ReadKey(victim).status().IsCorruption());
  Result<SegmentKeyData> salvaged = seg->ReadKey(victim, /*skip_damaged=*/true);
  ASSERT_TRUE(salvaged.ok()) << salvaged.status().ToString();
  EXPECT_TRUE(SameSamples(salvaged->changes, expected));
}

TEST(SegmentDamageTest, ADamagedRollupBlockLosesItsRangeAtItsResolution) {
  using namespace damage;
  TempDir dir;
  const std::vector<SegmentKeyData> keys = TestKeys(4);
  const std::string base = WriteSegment(dir.File("seg"), keys);
  const std::string victim = "f/door";
  const SegmentKeyData* orig = nullptr;
  for (const auto& k : keys) {
    if (k.key == victim) orig = &k;
  }
  ASSERT_NE(orig, nullptr);
  // The hourly rollups (the key's second resolution).
  const std::vector<BlockAt> blocks = BlocksOf(base, victim, 0x11);
  ASSERT_EQ(blocks.size(), 1u);
  FlipByte(base + ".kkd", blocks[0].offset + 7);
  auto seg = OpenOk(base);
  ASSERT_NE(seg, nullptr);
  Result<std::vector<BlockDamage>> damage = seg->Check({});
  ASSERT_TRUE(damage.ok()) << damage.status().ToString();
  ASSERT_EQ(damage->size(), 1u);
  EXPECT_EQ(damage->front().key, victim);
  EXPECT_EQ(damage->front().part, BlockDamage::Part::kRollups);
  EXPECT_EQ(damage->front().resolution_ms, kRollupResolutionsMs[1]);
  EXPECT_EQ(damage->front().from_ms, blocks[0].first_ms);
  EXPECT_EQ(damage->front().to_ms, kTo);
  EXPECT_EQ(DamagedPartName(damage->front()), "1 h rollups");
  ExpectOthersWhole(*seg, keys, victim);
  EXPECT_TRUE(SameSamples(ScanAll(*seg, victim), orig->changes));
  EXPECT_TRUE(RollupsOf(*seg, victim, kRollupResolutionsMs[1]).empty());
  EXPECT_EQ(RollupsOf(*seg, victim, kRollupResolutionsMs[0]), orig->rollups[0].second);
}

TEST(SegmentDamageTest, ADamagedMetadataBlockLosesTheKeyInThisSegmentOnly) {
  using namespace damage;
  TempDir dir;
  const std::vector<SegmentKeyData> keys = TestKeys(5);
  const std::string base = WriteSegment(dir.File("seg"), keys);
  const std::string victim = "e/energy";
  const std::vector<BlockAt> meta = BlocksOf(base, victim, 0);
  ASSERT_EQ(meta.size(), 1u);
  FlipByte(base + ".kkd", meta[0].offset + 6);
  auto seg = OpenOk(base);
  ASSERT_NE(seg, nullptr);
  Result<std::vector<BlockDamage>> damage = seg->Check({});
  ASSERT_TRUE(damage.ok()) << damage.status().ToString();
  ASSERT_EQ(damage->size(), 1u);
  EXPECT_EQ(damage->front().key, victim);
  EXPECT_EQ(damage->front().part, BlockDamage::Part::kKey);
  EXPECT_EQ(damage->front().from_ms, kFrom);
  EXPECT_EQ(damage->front().to_ms, kTo);
  ExpectOthersWhole(*seg, keys, victim);
  EXPECT_TRUE(ScanAll(*seg, victim).empty());
  EXPECT_EQ(seg->At(victim, kFrom + 1000).status().reason(), kDataLost);
  // Before the segment's range, it has nothing to say (an older segment does).
  Result<std::optional<Sample>> older = seg->At(victim, kFrom - 1);
  ASSERT_TRUE(older.ok());
  EXPECT_FALSE(older->has_value());
}

TEST(SegmentDamageTest, ADamagedLengthFieldStillLosesOnlyItsBlock) {
  using namespace damage;
  TempDir dir;
  const std::vector<SegmentKeyData> keys = TestKeys(6);
  const std::string base = WriteSegment(dir.File("seg"), keys);
  const std::string victim = "b/doubles";
  const std::vector<BlockAt> raw = BlocksOf(base, victim, 1);
  ASSERT_GE(raw.size(), 2u);
  FlipByte(base + ".kkd", raw[0].offset + 1);  // the block's length field
  auto seg = OpenOk(base);
  ASSERT_NE(seg, nullptr);
  Result<std::vector<BlockDamage>> damage = seg->Check({});
  ASSERT_TRUE(damage.ok()) << damage.status().ToString();
  ASSERT_EQ(damage->size(), 1u) << damage->front().reason << " / " << damage->back().reason;
  EXPECT_EQ(damage->front().key, victim);
  EXPECT_EQ(damage->front().from_ms, raw[0].first_ms);
  EXPECT_EQ(damage->front().to_ms, raw[1].first_ms);
  ExpectOthersWhole(*seg, keys, victim);
}

// One flipped byte anywhere past the header, at many places in turn: Open
// still works, exactly one block is damaged, and every other key reads
// exactly as written.
TEST(SegmentDamageTest, EveryFlippedByteLosesExactlyOneBlock) {
  using namespace damage;
  TempDir dir;
  std::vector<SegmentKeyData> keys = SmallKeys();
  const std::string base = WriteSegment(dir.File("seg"), keys);
  const std::string good = ReadFile(base + ".kkd");
  int checked = 0;
  for (uint64_t at = 64; at < good.size(); at += 211) {
    std::string bytes = good;
    bytes[at] = static_cast<char>(bytes[at] ^ (1 << (at % 8)));
    WriteFile(base + ".kkd", bytes);
    SCOPED_TRACE("flipped byte at " + std::to_string(at));
    auto seg = OpenOk(base);
    ASSERT_NE(seg, nullptr);
    Result<std::vector<BlockDamage>> damage = seg->Check({});
    ASSERT_TRUE(damage.ok()) << damage.status().ToString();
    ASSERT_EQ(damage->size(), 1u) << damage->front().reason << " / " << damage->back().reason;
    const BlockDamage& d = damage->front();
    EXPECT_LE(d.offset, at);
    size_t listed = 0;
    for (const SegmentKeyInfo& info : seg->Keys()) listed += info.key != d.key;
    EXPECT_EQ(listed, keys.size() - 1);
    for (const SegmentKeyData& k : keys) {
      if (k.key == d.key) continue;
      Result<SegmentKeyData> got = seg->ReadKey(k.key);
      ASSERT_TRUE(got.ok()) << k.key << ": " << got.status().ToString();
      ExpectSameKey(k, *got);
    }
    ++checked;
  }
  EXPECT_GT(checked, 50);
  WriteFile(base + ".kkd", good);
}

}  // namespace
}  // namespace komoku::store
