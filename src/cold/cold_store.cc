#include "cold/cold_store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/civil_time.h"

namespace komoku::store {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kManifest = "MANIFEST";
constexpr int kManifestVersion = 1;
// Segment file names carry their range in UTC, for people: 20260105T000000Z.
constexpr const char* kStamp = "%Y%m%dT%H%M%SZ";

Status Errno(const std::string& what, const std::string& path, int err) {
  return Status::IOError(what + " " + path + ": " + std::strerror(err));
}

Status SyncPath(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), (directory ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open", path, errno);
  Status st;
  if (::fsync(fd) != 0) st = Errno("fsync", path, errno);
  ::close(fd);
  return st;
}

std::string FileName(const std::string& base) { return fs::path(base).filename().string(); }

const char* PartKey(BlockDamage::Part part) {
  switch (part) {
    case BlockDamage::Part::kKey:
      return "all";
    case BlockDamage::Part::kRaw:
      return "raw";
    case BlockDamage::Part::kRollups:
      return "rollups";
  }
  return "all";
}

json LostJson(const ColdDamage& d) {
  return {{"segment", d.segment},          {"key", d.block.key},
          {"part", PartKey(d.block.part)}, {"resolution_ms", d.block.resolution_ms},
          {"from", d.block.from_ms},       {"to", d.block.to_ms},
          {"reason", d.block.reason},      {"max_seq", d.max_seq}};
}

ColdDamage LostFromJson(const json& j) {
  ColdDamage d;
  d.salvaged = true;
  d.segment = j.at("segment").get<std::string>();
  d.block.key = j.at("key").get<std::string>();
  const std::string part = j.at("part").get<std::string>();
  d.block.part = part == "raw"       ? BlockDamage::Part::kRaw
                 : part == "rollups" ? BlockDamage::Part::kRollups
                                     : BlockDamage::Part::kKey;
  d.block.resolution_ms = j.at("resolution_ms").get<int64_t>();
  d.block.from_ms = j.at("from").get<int64_t>();
  d.block.to_ms = j.at("to").get<int64_t>();
  d.block.reason = j.value("reason", "");
  d.max_seq = j.value("max_seq", uint64_t{0});
  return d;
}

}  // namespace

bool ColdState::Hidden(const Segment& segment, std::string_view key) const {
  for (const Tombstone& t : tombstones) {
    if (t.key == key && segment.meta().max_seq < t.seq) return true;
  }
  return false;
}

bool ColdState::RollupsDamaged(const Segment& segment, std::string_view key) const {
  auto hole = [&](const BlockDamage& d) {
    return d.key == key && d.part != BlockDamage::Part::kRaw;
  };
  for (const BlockDamage& d : segment.Damage()) {
    if (hole(d)) return true;
  }
  for (const ColdDamage& d : lost) {
    if (hole(d.block) && !LostRecordHidden(d) && d.block.from_ms < segment.meta().to_ms &&
        segment.meta().from_ms < d.block.to_ms) {
      return true;
    }
  }
  return false;
}

std::vector<ColdDamage> ColdState::Damage() const {
  std::vector<ColdDamage> out;
  for (const auto& seg : segments) {
    for (BlockDamage& d : seg->Damage()) {
      if (Hidden(*seg, d.key)) continue;
      out.push_back({FileName(seg->base()), false, seg->meta().max_seq, std::move(d)});
    }
  }
  for (const ColdDamage& d : lost) {
    if (!LostRecordHidden(d)) out.push_back(d);
  }
  return out;
}

Status ColdState::Scan(std::string_view key, int64_t from_ms, int64_t to_ms,
                       const std::function<bool(const Sample&)>& fn) const {
  bool go_on = true;
  for (const auto& seg : segments) {
    if (seg->meta().to_ms <= from_ms) continue;
    if (seg->meta().from_ms >= to_ms) break;
    if (Hidden(*seg, key)) continue;
    KOMOKU_RETURN_IF_ERROR(seg->Scan(key, from_ms, to_ms, [&](const Sample& s) {
      go_on = fn(s);
      return go_on;
    }));
    if (!go_on) break;
  }
  return Status::Ok();
}

bool ColdState::LostRecordHidden(const ColdDamage& d) const {
  for (const Tombstone& t : tombstones) {
    if (t.key == d.block.key && d.max_seq < t.seq) return true;
  }
  return false;
}

Result<std::optional<Sample>> ColdState::At(std::string_view key, int64_t time_ms) const {
  // Raw changes a salvage left out: the value in force there is not known.
  for (const ColdDamage& d : lost) {
    if (d.block.key == key && d.block.part != BlockDamage::Part::kRollups &&
        d.block.from_ms <= time_ms && time_ms < d.block.to_ms && !LostRecordHidden(d)) {
      return std::optional<Sample>();
    }
  }
  // Newest first: the first segment that knows a value at time_ms answers
  // (its carry covers the time before its first change).
  for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
    const Segment& seg = **it;
    if (seg.meta().from_ms > time_ms) continue;
    if (Hidden(seg, key)) continue;
    Result<std::optional<Sample>> found = seg.At(key, time_ms);
    // The block that says is damaged: the value is not known (an older
    // segment's would be the value before a lost change).
    if (!found.ok() && found.status().reason() == kDataLost) return std::optional<Sample>();
    if (!found.ok()) return found.status();
    if (*found) return found;
  }
  return std::optional<Sample>();
}

Status ColdState::ScanRollups(std::string_view key, int64_t resolution_ms, int64_t from_ms,
                              int64_t to_ms, const std::function<bool(const Rollup&)>& fn) const {
  bool go_on = true;
  for (const auto& seg : segments) {
    if (seg->meta().to_ms <= from_ms) continue;
    if (seg->meta().from_ms >= to_ms) break;
    if (Hidden(*seg, key)) continue;
    KOMOKU_RETURN_IF_ERROR(
        seg->ScanRollups(key, resolution_ms, from_ms, to_ms, [&](const Rollup& r) {
          go_on = fn(r);
          return go_on;
        }));
    if (!go_on) break;
  }
  return Status::Ok();
}

std::vector<SegmentListing> ListSegments(const ColdState& state) {
  std::vector<SegmentListing> out;
  for (const auto& seg : state.segments) {
    SegmentListing l;
    l.name = FileName(seg->base());
    l.from_ms = seg->meta().from_ms;
    l.to_ms = seg->meta().to_ms;
    l.max_seq = seg->meta().max_seq;
    l.bytes = seg->file_bytes();
    for (SegmentKeyInfo& k : seg->Keys()) {
      if (!state.Hidden(*seg, k.key)) l.keys.push_back(std::move(k));
    }
    // One metadata record per key, but the kernel maps the cached pages
    // around each one as well (fault-around): a listing of every key would
    // leave most of every segment resident.
    seg->ReleasePages();
    out.push_back(std::move(l));
  }
  return out;
}

ColdStore::ColdStore(const ColdStoreOptions& options, std::shared_ptr<spdlog::logger> log,
                     Metrics* metrics)
    : options_(options), log_(log ? std::move(log) : spdlog::default_logger()), metrics_(metrics) {}

Result<std::unique_ptr<ColdStore>> ColdStore::Open(const ColdStoreOptions& options,
                                                   std::shared_ptr<spdlog::logger> log,
                                                   Metrics* metrics) {
  std::unique_ptr<ColdStore> cold(new ColdStore(options, std::move(log), metrics));
  std::error_code ec;
  if (!options.read_only) fs::create_directories(options.dir, ec);
  if (ec) return Status::IOError("cannot create " + options.dir + ": " + ec.message());

  auto state = std::make_shared<ColdState>();
  const std::string manifest_path = (fs::path(options.dir) / kManifest).string();
  std::set<std::string> live;  // file names of live segments, without extension
  bool rewrite = false;
  if (fs::exists(manifest_path, ec)) {
    std::ifstream in(manifest_path);
    std::stringstream text;
    text << in.rdbuf();
    json m = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
    auto bad = [&](const std::string& why) {
      return Status::Corruption(manifest_path + ": " + why +
                                " (the cold store cannot tell which segments are live; "
                                "restore the file from a backup)");
    };
    if (!m.is_object()) return bad("not a JSON object");
    if (m.value("version", 0) != kManifestVersion) {
      return bad("version " + m.value("version", json(nullptr)).dump() + ", this Komoku reads " +
                 std::to_string(kManifestVersion));
    }
    try {
      state->cold_to = m.at("cold_to").get<int64_t>();
      state->cold_seq = m.at("cold_seq").get<uint64_t>();
      state->next_gen = m.at("next_gen").get<uint64_t>();
      for (const json& t : m.at("tombstones")) {
        state->tombstones.push_back({t.at("key").get<std::string>(), t.at("seq").get<uint64_t>()});
      }
      for (const json& l : m.value("lost", json::array())) state->lost.push_back(LostFromJson(l));
      for (const json& s : m.at("segments")) {
        std::string name = s.get<std::string>();
        if (name.empty() || name.find('/') != std::string::npos) return bad("bad segment name");
        live.insert(name);
      }
    } catch (const json::exception& e) {
      return bad(e.what());
    }
  }
  for (const std::string& name : live) {
    std::string base = (fs::path(options.dir) / name).string();
    Result<std::shared_ptr<const Segment>> seg = Segment::Open(base);
    if (!seg.ok() && options.read_only) {
      cold->warnings_.push_back("segment " + name + " cannot be read: " + seg.status().ToString());
      continue;
    }
    if (!seg.ok()) {
      // Keep serving the rest: the segment goes to quarantine.
      cold->MoveToQuarantine(base, seg.status());
      rewrite = true;
      continue;
    }
    state->segments.push_back(std::move(seg.value()));
  }
  std::sort(state->segments.begin(), state->segments.end(),
            [](const auto& a, const auto& b) { return a->meta().from_ms < b->meta().from_ms; });
  // Leftovers of a step that never committed (or was committed and not
  // cleaned up): files no live segment owns.
  for (const auto& entry : fs::directory_iterator(options.dir, ec)) {
    if (options.read_only) break;
    std::string file = entry.path().filename().string();
    if (file == kManifest) continue;
    std::string stem = entry.path().stem().string();
    std::string ext = entry.path().extension().string();
    bool segment_file = ext == ".kkd" || ext == ".kki";
    if (segment_file && live.count(stem)) continue;
    std::error_code rec;
    fs::remove(entry.path(), rec);
    cold->log_->info("removed {} (left over from an unfinished compaction)", file);
  }
  if (rewrite) KOMOKU_RETURN_IF_ERROR(cold->WriteManifest(*state));
  cold->UpdateMetrics(*state);
  cold->state_ = std::move(state);
  return cold;
}

std::shared_ptr<const ColdState> ColdStore::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

std::string ColdStore::NewSegmentBase(const ColdState& state, int64_t from_ms,
                                      int64_t to_ms) const {
  return (fs::path(options_.dir) / (FormatUtc(from_ms, kStamp) + "-" + FormatUtc(to_ms, kStamp) +
                                    "-g" + std::to_string(state.next_gen)))
      .string();
}

Status ColdStore::WriteManifest(const ColdState& state) {
  json m = {{"version", kManifestVersion},
            {"cold_to", state.cold_to},
            {"cold_seq", state.cold_seq},
            {"next_gen", state.next_gen}};
  json segs = json::array();
  for (const auto& seg : state.segments) segs.push_back(FileName(seg->base()));
  m["segments"] = std::move(segs);
  json tombs = json::array();
  for (const Tombstone& t : state.tombstones) tombs.push_back({{"key", t.key}, {"seq", t.seq}});
  m["tombstones"] = std::move(tombs);
  if (!state.lost.empty()) {
    json lost = json::array();
    for (const ColdDamage& d : state.lost) lost.push_back(LostJson(d));
    m["lost"] = std::move(lost);
  }
  const std::string path = (fs::path(options_.dir) / kManifest).string();
  const std::string tmp = path + ".tmp";
  std::string text = m.dump(1) + "\n";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("create", tmp, errno);
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Errno("write", tmp, err);
    }
    done += static_cast<size_t>(n);
  }
  if (options_.sync && ::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return Errno("fsync", tmp, err);
  }
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Errno("rename to " + path, tmp, err);
  }
  if (options_.sync) KOMOKU_RETURN_IF_ERROR(SyncPath(options_.dir, /*directory=*/true));
  return Status::Ok();
}

Status ColdStore::Commit(const std::shared_ptr<const ColdState>& next) {
  std::lock_guard<std::mutex> commit(commit_mu_);
  std::shared_ptr<const ColdState> old = state();
  KOMOKU_RETURN_IF_ERROR(WriteManifest(*next));
  {
    std::lock_guard<std::mutex> lock(mu_);
    state_ = next;
  }
  std::set<std::string> keep;
  for (const auto& seg : next->segments) keep.insert(seg->base());
  for (const auto& seg : old->segments) {
    if (!keep.count(seg->base())) RemoveSegmentFiles(seg->base());
  }
  UpdateMetrics(*next);
  return Status::Ok();
}

void ColdStore::DiscardUncommitted(const ColdState& next) {
  std::lock_guard<std::mutex> commit(commit_mu_);
  std::set<std::string> live;
  for (const auto& seg : state()->segments) live.insert(seg->base());
  int removed = 0;
  for (const auto& seg : next.segments) {
    if (live.count(seg->base())) continue;
    RemoveSegmentFiles(seg->base());
    ++removed;
  }
  if (removed)
    log_->info("removed {} segments written by a compaction that did not commit", removed);
}

void ColdStore::RemoveSegmentFiles(const std::string& base) {
  for (const char* ext : {".kkd", ".kki"}) {
    std::error_code ec;
    fs::remove(base + ext, ec);
    if (ec) log_->warn("cannot remove {}{}: {}", base, ext, ec.message());
  }
}

void ColdStore::Quarantine(const Segment& segment, const Status& why) {
  std::lock_guard<std::mutex> commit(commit_mu_);
  std::shared_ptr<const ColdState> old = state();
  auto next = std::make_shared<ColdState>(*old);
  auto& segs = next->segments;
  auto it = std::find_if(segs.begin(), segs.end(),
                         [&](const auto& s) { return s->base() == segment.base(); });
  if (it == segs.end()) return;  // already done by another reader
  segs.erase(it);
  MoveToQuarantine(segment.base(), why);
  Status st = WriteManifest(*next);
  if (!st.ok()) log_->error("cannot record the quarantine in the manifest: {}", st.ToString());
  {
    std::lock_guard<std::mutex> lock(mu_);
    state_ = next;
  }
  UpdateMetrics(*next);
}

void ColdStore::MoveToQuarantine(const std::string& base, const Status& why) {
  const std::string name = FileName(base);
  log_->error("segment {} is damaged and was moved to {}: {}", name, options_.quarantine_dir,
              why.ToString());
  std::error_code ec;
  fs::create_directories(options_.quarantine_dir, ec);
  for (const char* ext : {".kkd", ".kki"}) {
    fs::rename(base + ext, (fs::path(options_.quarantine_dir) / (name + ext)).string(), ec);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    warnings_.push_back("segment " + name + " quarantined: " + why.ToString());
  }
  if (metrics_) metrics_->Add("komoku_segments_quarantined_total");
}

Result<ColdStore::SalvageReport> ColdStore::Salvage(const std::string& name,
                                                    const RollupFn& recompute) {
  if (options_.read_only)
    return Status::InvalidArgument("salvage: the cold store is open read-only");
  std::lock_guard<std::mutex> commit(commit_mu_);
  std::shared_ptr<const ColdState> old = state();
  auto it = std::find_if(old->segments.begin(), old->segments.end(),
                         [&](const auto& s) { return FileName(s->base()) == name; });
  if (it == old->segments.end()) {
    return Status::NotFound("no live segment " + name + " in " + options_.dir +
                            " (`komoku segments` lists them)");
  }
  const Segment& seg = **it;
  Result<std::vector<BlockDamage>> damage = seg.Check({});
  if (!damage.ok()) {
    return damage.status().WithContext("cannot salvage " + name +
                                       " (its damage is not limited to blocks)");
  }
  if (damage->empty()) return Status::InvalidArgument(name + " has no damaged block");
  SalvageReport report;
  report.segment = name;

  const SegmentMeta meta = seg.meta();
  const std::string base = NewSegmentBase(*old, meta.from_ms, meta.to_ms);
  SegmentWriteOptions wo;
  wo.sync = options_.sync;
  Result<std::unique_ptr<SegmentWriter>> writer = SegmentWriter::Create(base, meta, wo);
  if (!writer.ok()) return writer.status();
  // Keys whose metadata block is damaged are not listed by Keys(): all of
  // them in this segment is lost.
  std::vector<BlockDamage> lost;
  for (const BlockDamage& d : *damage) {
    if (d.part == BlockDamage::Part::kKey) lost.push_back(d);
  }
  for (const SegmentKeyInfo& info : seg.Keys()) {
    if (old->Hidden(seg, info.key)) continue;  // deleted: nothing to keep
    // A key whose blocks disagree with its metadata: none of it is trusted.
    const bool whole_key = std::any_of(damage->begin(), damage->end(), [&](const BlockDamage& d) {
      return d.key == info.key && d.part == BlockDamage::Part::kKey;
    });
    if (whole_key) continue;
    Result<SegmentKeyData> data = seg.ReadKey(info.key, /*skip_damaged=*/true);
    if (!data.ok()) return data.status();
    bool raw_whole = !data->raw_dropped;
    std::vector<BlockDamage> rollup_damage;
    for (const BlockDamage& d : *damage) {
      if (d.key != info.key) continue;
      if (d.part == BlockDamage::Part::kRaw) {
        raw_whole = false;
        lost.push_back(d);
      } else if (d.part == BlockDamage::Part::kRollups) {
        rollup_damage.push_back(d);
      }
    }
    if (!rollup_damage.empty() && raw_whole) {
      // Every raw change is here: the rollups come out as compaction made
      // them (a counter's walk goes on from the rollups before the segment).
      RollupParams params{data->type, data->stale_after_ms, data->reset_tolerance};
      if (data->type == KeyType::kCounter) {
        Status st = old->ScanRollups(info.key, 24 * 3600 * 1000, INT64_MIN / 4, meta.from_ms,
                                     [&](const Rollup& r) {
                                       params.start_high = r.high;
                                       return true;
                                     });
        if (!st.ok()) return st;
      }
      for (auto& [res, rolls] : data->rollups) {
        rolls = recompute(params, data->carry, data->changes, meta.from_ms, meta.to_ms, res);
      }
      report.recovered.insert(report.recovered.end(), rollup_damage.begin(), rollup_damage.end());
    } else {
      lost.insert(lost.end(), rollup_damage.begin(), rollup_damage.end());
    }
    KOMOKU_RETURN_IF_ERROR((*writer)->AddKey(*data));
    ++report.keys;
  }
  KOMOKU_RETURN_IF_ERROR((*writer)->Finish());
  Result<std::shared_ptr<const Segment>> fresh = Segment::Open(base);
  if (!fresh.ok()) return fresh.status();
  if (Status st = (*fresh)->Verify(); !st.ok()) {
    RemoveSegmentFiles(base);
    return st.WithContext("the salvaged segment does not verify");
  }

  // The damaged files stay, under another name: hard links, so that they
  // are kept whichever way a crash goes (the commit below removes the names
  // in the segment directory).
  std::error_code ec;
  fs::create_directories(options_.quarantine_dir, ec);
  if (ec) return Status::IOError("cannot create " + options_.quarantine_dir + ": " + ec.message());
  report.kept_aside = (fs::path(options_.quarantine_dir) / (name + ".damaged")).string();
  for (const char* ext : {".kkd", ".kki"}) {
    const std::string from = seg.base() + ext, to = report.kept_aside + ext;
    fs::remove(to, ec);
    fs::create_hard_link(from, to, ec);
    if (ec) fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
    if (ec) {
      return Status::IOError("cannot keep " + from + " as " + to + ": " + ec.message());
    }
  }
  if (options_.sync) KOMOKU_RETURN_IF_ERROR(SyncPath(options_.quarantine_dir, /*directory=*/true));

  auto next = std::make_shared<ColdState>(*old);
  for (auto& slot : next->segments) {
    if (slot->base() == seg.base()) slot = *fresh;
  }
  ++next->next_gen;
  for (const BlockDamage& d : lost) next->lost.push_back({name, true, meta.max_seq, d});
  Status st = WriteManifest(*next);
  if (!st.ok()) {
    RemoveSegmentFiles(base);
    return st;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    state_ = next;
  }
  RemoveSegmentFiles(seg.base());
  UpdateMetrics(*next);
  UpdateDamageMetric();
  log_->warn(
      "segment {} salvaged as {}: {} keys kept, {} damaged blocks lost, {} recomputed; "
      "the damaged files are kept as {}.kkd/.kki",
      name, FileName(base), report.keys, lost.size(), report.recovered.size(), report.kept_aside);
  report.replacement = FileName(base);
  report.lost = std::move(lost);
  return report;
}

std::vector<std::string> ColdStore::Warnings() const {
  std::lock_guard<std::mutex> lock(mu_);
  return warnings_;
}

void ColdStore::UpdateDamageMetric() {
  if (metrics_) {
    metrics_->Set("komoku_segment_damaged_blocks", static_cast<int64_t>(state()->Damage().size()));
  }
}

void ColdStore::UpdateMetrics(const ColdState& state) {
  if (!metrics_) return;
  uint64_t bytes = 0;
  for (const auto& seg : state.segments) bytes += seg->file_bytes();
  metrics_->Set("komoku_segments", static_cast<int64_t>(state.segments.size()));
  metrics_->Set("komoku_segment_bytes", static_cast<int64_t>(bytes));
}

}  // namespace komoku::store
