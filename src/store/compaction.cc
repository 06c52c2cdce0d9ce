// Compaction: moving hot changes into cold segments, merging day segments
// into month segments, and retention. Store members kept apart from the
// ingest path in store.cc. See docs/storage.md, "Cold history".
#include <date/date.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <tuple>

#include "cold/cold_store.h"
#include "hot/hot_store.h"
#include "series/history.h"
#include "store/store.h"

namespace komoku::store {
namespace {

constexpr int64_t kDayMs = 24LL * 3600 * 1000;

int64_t FloorDay(int64_t t) {
  return t >= 0 ? t / kDayMs * kDayMs : -((-t + kDayMs - 1) / kDayMs) * kDayMs;
}

// The start of the UTC month holding `t`, and of the one after.
std::pair<int64_t, int64_t> MonthOf(int64_t t) {
  using std::chrono::milliseconds;
  date::sys_days days = date::floor<date::days>(date::sys_time<milliseconds>(milliseconds(t)));
  date::year_month_day ymd{days};
  date::year_month_day first{ymd.year(), ymd.month(), date::day{1}};
  date::year_month_day next = first + date::months{1};
  auto ms = [](date::year_month_day d) {
    return std::chrono::duration_cast<milliseconds>(date::sys_days(d).time_since_epoch()).count();
  };
  return {ms(first), ms(next)};
}

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// All of one key in one segment: its rollups at every resolution, from its
// carry and changes.
void AddRollups(SegmentKeyData& data, const RollupParams& params, int64_t from_ms, int64_t to_ms) {
  data.rollups.clear();
  for (int64_t res : kRollupResolutionsMs) {
    data.rollups.emplace_back(
        res, ComputeRollups(params, data.carry, data.changes, from_ms, to_ms, res));
  }
}

Result<std::unique_ptr<SegmentWriter>> StartSegment(const std::string& base,
                                                    const SegmentMeta& meta, bool sync) {
  SegmentWriteOptions options;
  options.sync = sync;
  return SegmentWriter::Create(base, meta, options);
}

// Finishes a segment, opens what was written, and counts it in `report`.
Result<std::shared_ptr<const Segment>> FinishSegment(SegmentWriter& writer, const std::string& base,
                                                     CompactionReport& report) {
  KOMOKU_RETURN_IF_ERROR(writer.Finish());
  report.bytes_written += writer.bytes();
  ++report.segments_written;
  return Segment::Open(base);
}

// A segment with damaged blocks is not rewritten by compaction: what a
// rewrite read would silently leave the lost history out, and the damage
// would no longer be reported. `komoku segments --salvage` rewrites it and
// records what is lost; until then compaction leaves it as it is.
Status RefuseDamaged(const Segment& seg) {
  if (seg.Damage().empty()) return Status::Ok();
  const std::string name = std::filesystem::path(seg.base()).filename().string();
  return Status::Corruption("segment " + name +
                            " has damaged blocks; it is not rewritten until `komoku segments "
                            "--salvage " +
                            name + "` (with the service stopped)")
      .WithReason("damaged_segment");
}

// A segment rewritten in place of `old` (retention, rollups under new
// options): refused when reading it came upon damage (RefuseDamaged),
// else finished into `slot`.
Status ReplaceSegment(SegmentWriter& writer, const std::string& base, const Segment& old,
                      std::shared_ptr<const Segment>& slot, ColdState& next,
                      CompactionReport& report) {
  KOMOKU_RETURN_IF_ERROR(RefuseDamaged(old));
  Result<std::shared_ptr<const Segment>> fresh = FinishSegment(writer, base, report);
  if (!fresh.ok()) return fresh.status();
  slot = std::move(fresh.value());
  ++next.next_gen;
  ++report.segments_removed;
  return Status::Ok();
}

// Deletes, when a step ends, the segments it wrote and did not commit (it
// stopped, or failed): nothing half-done stays behind until the next start.
class DiscardUncommitted {
 public:
  DiscardUncommitted(ColdStore& cold, const ColdState& next) : cold_(cold), next_(next) {}
  DiscardUncommitted(const DiscardUncommitted&) = delete;
  DiscardUncommitted& operator=(const DiscardUncommitted&) = delete;
  ~DiscardUncommitted() { cold_.DiscardUncommitted(next_); }

 private:
  ColdStore& cold_;
  const ColdState& next_;
};

}  // namespace

void Store::SetProgress(std::optional<CompactionProgress> progress) {
  std::lock_guard<std::mutex> lock(progress_mu_);
  progress_ = std::move(progress);
}

std::optional<CompactionProgress> Store::CompactionProgressNow() const {
  std::lock_guard<std::mutex> lock(progress_mu_);
  return progress_;
}

Result<CompactionReport> Store::Compact() {
  std::lock_guard<std::mutex> compact(compact_mu_);
  KOMOKU_RETURN_IF_ERROR(NextStep());  // a stopping store starts none
  SetProgress(CompactionProgress{"days", 0, 0, 0});
  struct ClearProgress {
    Store* store;
    ~ClearProgress() { store->SetProgress(std::nullopt); }
  } clear_progress{this};
  const int64_t started = SteadyMs();
  CompactionReport report;
  // Rollups first: the days compacted next carry a counter's state on from
  // them, and retention must find them current before it drops raw changes.
  KOMOKU_RETURN_IF_ERROR(RefreshRollups(report));
  KOMOKU_RETURN_IF_ERROR(CompactHot(report));
  if (cold_options_.merge_months) KOMOKU_RETURN_IF_ERROR(MergeMonths(report));
  KOMOKU_RETURN_IF_ERROR(ApplyRetention(report));
  report.cold_to_ms = cold_->state()->cold_to;
  report.seconds = static_cast<double>(SteadyMs() - started) / 1000.0;
  metrics_.Add("komoku_compactions_total");
  metrics_.Add("komoku_compaction_changes_total", static_cast<int64_t>(report.changes));
  metrics_.Add("komoku_compaction_bytes_total", static_cast<int64_t>(report.bytes_written));
  if (report.segments_written || report.segments_removed) {
    log_->info("compaction: {} segments written ({} bytes, {} changes), {} removed, in {:.2f} s",
               report.segments_written, report.bytes_written, report.changes,
               report.segments_removed, report.seconds);
  }
  return report;
}

Status Store::RefreshRollups(CompactionReport& report) {
  // Segments are looked through only when a define may have changed
  // options: an hourly compaction of a store whose options stay costs no
  // pass over every segment's keys.
  if (!rollups_may_be_outdated_.exchange(false)) return Status::Ok();
  Status st = RewriteOutdatedRollups(report);
  if (!st.ok()) rollups_may_be_outdated_ = true;  // tried again next time
  return st;
}

Status Store::RewriteOutdatedRollups(CompactionReport& report) {
  std::shared_ptr<const ColdState> old = cold_->state();
  struct Current {
    KeyType type;
    int64_t stale_after_ms;
    double reset_tolerance;
  };
  std::map<std::string, Current, std::less<>> keys;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, st] : keys_) {
      keys[name] = {st.type, st.options.stale_after_ms, st.options.reset_tolerance};
    }
  }
  // A key's rollups in a segment are recomputed when they were computed
  // under a stale_after or reset_tolerance the key no longer has, or written
  // in an older segment format (format 1 lacks first_ms, without which
  // PromQL reads the raw changes: docs/prometheus.md), and the raw changes
  // are still there to compute them from. (Once retention dropped those,
  // the rollups stay as they are: RollupCoverage.)
  auto outdated = [&](const Segment& seg, const SegmentKeyInfo& info) {
    if (info.raw_dropped || old->Hidden(seg, info.key)) return false;
    auto it = keys.find(info.key);
    return it != keys.end() && it->second.type == info.type &&
           (it->second.stale_after_ms != info.stale_after_ms ||
            it->second.reset_tolerance != info.reset_tolerance ||
            seg.format_version() < kSegmentFormatVersion);
  };
  auto next = std::make_shared<ColdState>(*old);
  DiscardUncommitted discard(*cold_, *next);
  int rewritten = 0;
  // Oldest first: a counter's rollups continue from the highest value since
  // its last reset that the rollups before them (recomputed already) leave.
  for (auto& slot : next->segments) {
    KOMOKU_RETURN_IF_ERROR(NextStep());
    const std::shared_ptr<const Segment> seg = slot;
    const std::vector<SegmentKeyInfo> infos = seg->Keys();
    if (std::none_of(infos.begin(), infos.end(),
                     [&](const SegmentKeyInfo& info) { return outdated(*seg, info); })) {
      continue;
    }
    if (!RefuseDamaged(*seg).ok()) continue;  // kept whole until salvaged
    const SegmentMeta& meta = seg->meta();
    const std::string base = cold_->NewSegmentBase(*next, meta.from_ms, meta.to_ms);
    Result<std::unique_ptr<SegmentWriter>> writer = StartSegment(base, meta, cold_options_.sync);
    if (!writer.ok()) return writer.status();
    for (const SegmentKeyInfo& info : infos) {
      if (old->Hidden(*seg, info.key)) continue;
      KOMOKU_RETURN_IF_ERROR(NextStep());
      Result<SegmentKeyData> d = seg->ReadKey(info.key);
      if (!d.ok()) return d.status();
      if (outdated(*seg, info)) {
        const Current& now = keys.find(info.key)->second;
        RollupParams params{d->type, now.stale_after_ms, now.reset_tolerance};
        if (d->type == KeyType::kCounter) {
          KOMOKU_RETURN_IF_ERROR(next->ScanRollups(info.key, kDayMs, INT64_MIN / 4, meta.from_ms,
                                                   [&params](const Rollup& r) {
                                                     params.start_high = r.high;
                                                     return true;
                                                   }));
        }
        std::vector<int64_t> kept;  // resolutions retention has not dropped
        for (const auto& [res, rolls] : d->rollups) kept.push_back(res);
        d->stale_after_ms = now.stale_after_ms;
        d->reset_tolerance = now.reset_tolerance;
        AddRollups(*d, params, meta.from_ms, meta.to_ms);
        d->rollups.erase(std::remove_if(d->rollups.begin(), d->rollups.end(),
                                        [&kept](const auto& x) {
                                          return std::find(kept.begin(), kept.end(), x.first) ==
                                                 kept.end();
                                        }),
                         d->rollups.end());
      }
      KOMOKU_RETURN_IF_ERROR((*writer)->AddKey(*d));
    }
    KOMOKU_RETURN_IF_ERROR(ReplaceSegment(**writer, base, *seg, slot, *next, report));
    ++rewritten;
  }
  if (rewritten == 0) return Status::Ok();
  {
    std::unique_lock<std::shared_mutex> swap(cold_rw_);
    KOMOKU_RETURN_IF_ERROR(cold_->Commit(next));
  }
  log_->info(
      "rollups recomputed in {} segments (key options changed, or segment format older "
      "than {})",
      rewritten, kSegmentFormatVersion);
  return Status::Ok();
}

Status Store::CompactHot(CompactionReport& report) {
  std::shared_ptr<const ColdState> old = cold_->state();
  const int64_t cut = FloorDay(clock_->NowMs() - cold_options_.hot_window_ms);
  // Everything accepted so far is committed, so a hot read up to S sees all
  // changes numbered up to S.
  uint64_t max_seq;
  {
    std::lock_guard<std::mutex> lock(mu_);
    max_seq = last_change_seq_;
  }
  KOMOKU_RETURN_IF_ERROR(WaitCommitted(max_seq));
  // Every committed change into the indexed table: the scans of past days
  // below then leave out the unindexed `recent` (HotStore::FoldNow).
  KOMOKU_RETURN_IF_ERROR(hot_->FoldNow());

  // Where to start: the end of cold time, or earlier where late changes
  // arrived (their segments are written again), or the oldest hot change on
  // a first compaction.
  Result<std::optional<int64_t>> late = hot_->EarliestLate(0, old->mark(), max_seq);
  if (!late.ok()) return late.status();
  int64_t start = old->cold_to;
  if (start == INT64_MIN) {
    std::optional<int64_t> oldest;
    for (const KeyInfo& k : Keys()) {
      KOMOKU_RETURN_IF_ERROR(NextStep());
      Result<std::vector<Sample>> first = History(k.name, INT64_MIN, cut, 1, max_seq);
      if (!first.ok()) return first.status();
      if (!first->empty() && (!oldest || first->front().time_ms < *oldest)) {
        oldest = first->front().time_ms;
      }
    }
    if (!oldest) return Status::Ok();  // nothing old enough yet
    start = FloorDay(*oldest);
  }
  if (*late) start = std::min(start, FloorDay(**late));
  for (const auto& seg : old->segments) {
    if (seg->meta().from_ms <= start && start < seg->meta().to_ms) start = seg->meta().from_ms;
  }
  const int64_t end = std::max(cut, old->cold_to);
  if (start >= end) return Status::Ok();
  for (const auto& seg : old->segments) {
    if (seg->meta().to_ms > start) KOMOKU_RETURN_IF_ERROR(RefuseDamaged(*seg));
  }

  struct KeyWork {
    std::string name;
    int64_t id;
    KeyType type;
    KeyOptions options;
    std::optional<Sample> carry;
    // Counter: the highest value since the last reset where the day begins.
    double high = std::numeric_limits<double>::quiet_NaN();
  };
  std::vector<KeyWork> keys;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, st] : keys_) keys.push_back({name, st.id, st.type, st.options, {}});
  }
  {
    std::shared_lock<std::shared_mutex> read(cold_rw_);
    for (KeyWork& k : keys) {
      KOMOKU_RETURN_IF_ERROR(NextStep());
      Result<std::optional<Sample>> carry = AtMerged(k.id, k.name, *old, start - 1);
      if (!carry.ok()) return carry.status();
      k.carry = *carry;
      if (k.type != KeyType::kCounter) continue;
      KOMOKU_RETURN_IF_ERROR(
          old->ScanRollups(k.name, kDayMs, INT64_MIN / 4, start, [&k](const Rollup& r) {
            k.high = r.high;
            return true;
          }));
    }
  }

  auto next = std::make_shared<ColdState>(*old);
  next->segments.clear();
  for (const auto& seg : old->segments) {
    // Segments from `start` on are replaced by the ones written now.
    if (seg->meta().to_ms <= start) next->segments.push_back(seg);
  }
  DiscardUncommitted discard(*cold_, *next);
  const int64_t days = (end - start + kDayMs - 1) / kDayMs;
  SetProgress(CompactionProgress{"days", 0, days, 0});
  for (int64_t day = start; day < end; day += kDayMs) {
    if (day > start) {
      SetProgress(CompactionProgress{"days", (day - start) / kDayMs, days, day - kDayMs});
    }
    const std::string base = cold_->NewSegmentBase(*next, day, day + kDayMs);
    Result<std::unique_ptr<SegmentWriter>> writer =
        StartSegment(base, {day, day + kDayMs, max_seq}, cold_options_.sync);
    if (!writer.ok()) return writer.status();
    int added = 0;
    for (KeyWork& k : keys) {
      KOMOKU_RETURN_IF_ERROR(NextStep());
      SegmentKeyData data;
      data.key = k.name;
      data.type = k.type;
      data.stale_after_ms = k.options.stale_after_ms;
      data.reset_tolerance = k.options.reset_tolerance;
      data.carry = k.carry;
      {
        std::shared_lock<std::shared_mutex> read(cold_rw_);
        Status st =
            ScanMerged(k.id, k.name, *old, day, day + kDayMs, max_seq, [&](const Sample& s) {
              data.changes.push_back(s);
              return true;
            });
        if (!st.ok()) return st;
      }
      if (!data.carry && data.changes.empty()) continue;  // no value known yet
      RollupParams params{k.type, k.options.stale_after_ms, k.options.reset_tolerance, k.high};
      AddRollups(data, params, day, day + kDayMs);
      for (const auto& [res, rolls] : data.rollups) {
        if (res == kDayMs && !rolls.empty()) k.high = rolls.back().high;
      }
      KOMOKU_RETURN_IF_ERROR((*writer)->AddKey(data));
      report.changes += data.changes.size();
      if (!data.changes.empty()) k.carry = data.changes.back();
      ++added;
    }
    if (added == 0) continue;  // the unfinished writer removes its files
    Result<std::shared_ptr<const Segment>> seg = FinishSegment(**writer, base, report);
    if (!seg.ok()) return seg.status();
    next->segments.push_back(std::move(seg.value()));
    ++next->next_gen;
  }
  // Damage a read came upon while this step ran.
  for (const auto& seg : old->segments) {
    if (seg->meta().to_ms > start) KOMOKU_RETURN_IF_ERROR(RefuseDamaged(*seg));
  }
  SetProgress(CompactionProgress{"days", days, days, end - kDayMs});
  next->cold_to = end;
  next->cold_seq = max_seq;
  for (const auto& seg : old->segments) report.segments_removed += seg->meta().to_ms > start;
  {
    // The commit point: from here readers skip the hot rows now cold.
    std::unique_lock<std::shared_mutex> swap(cold_rw_);
    KOMOKU_RETURN_IF_ERROR(cold_->Commit(next));
  }
  hot_->EnqueueDeleteCompacted(next->mark());
  return Status::Ok();
}

Status Store::MergeMonths(CompactionReport& report) {
  std::shared_ptr<const ColdState> old = cold_->state();
  // Runs of day segments that make up a whole UTC month.
  std::vector<std::pair<size_t, size_t>> runs;  // [first, last) indexes into segments
  const auto& segs = old->segments;
  auto is_day = [](const Segment& s) { return s.meta().to_ms - s.meta().from_ms == kDayMs; };
  // A segment records one set of options per key, and has a key's raw
  // changes or not. A month stays in days (and is merged at a later
  // compaction) while one of its keys has raw changes on some days and
  // none, dropped by retention, on others: merging would lose the raw
  // changes before their time; retention soon drops them too. It stays in
  // days for good where a key's days hold rollups under different options,
  // some without the raw changes to compute them again: each day then
  // answers under its own options (RollupCoverage).
  auto mergeable = [&](size_t first, size_t last) {
    std::map<std::string, std::tuple<KeyType, int64_t, double>> seen;
    std::set<std::string> mixed, dropped, kept;
    for (size_t k = first; k < last; ++k) {
      for (const SegmentKeyInfo& info : segs[k]->Keys()) {
        if (old->Hidden(*segs[k], info.key)) continue;
        const auto options = std::make_tuple(info.type, info.stale_after_ms, info.reset_tolerance);
        auto [it, fresh] = seen.emplace(info.key, options);
        if (!fresh && it->second != options) mixed.insert(info.key);
        if (info.raw_dropped) dropped.insert(info.key);
        if (info.changes > 0) kept.insert(info.key);
      }
    }
    for (const std::string& key : dropped) {
      if (mixed.count(key) || kept.count(key)) return false;
    }
    return true;
  };
  for (size_t i = 0; i < segs.size();) {
    if (!is_day(*segs[i])) {
      ++i;
      continue;
    }
    // A month's day segments, some days possibly missing (nothing was known
    // on them), merge once the whole month is cold.
    const int64_t month_end = MonthOf(segs[i]->meta().from_ms).second;
    size_t j = i;
    while (j < segs.size() && is_day(*segs[j]) && segs[j]->meta().to_ms <= month_end) ++j;
    // A damaged day stays as it is (salvage first); its keys are not read.
    bool damaged = false;
    for (size_t k = i; k < j; ++k) damaged = damaged || !RefuseDamaged(*segs[k]).ok();
    if (month_end <= old->cold_to && j - i > 1 && !damaged && mergeable(i, j)) {
      runs.push_back({i, j});
    }
    i = std::max(j, i + 1);
  }
  if (runs.empty()) return Status::Ok();

  auto next = std::make_shared<ColdState>(*old);
  next->segments.clear();
  DiscardUncommitted discard(*cold_, *next);
  size_t r = 0;
  for (size_t i = 0; i < segs.size();) {
    if (r == runs.size() || i < runs[r].first) {
      next->segments.push_back(segs[i++]);
      continue;
    }
    const auto [first, last] = runs[r++];
    const auto [from, to] = MonthOf(segs[first]->meta().from_ms);
    SetProgress(CompactionProgress{"months", static_cast<int64_t>(r - 1),
                                   static_cast<int64_t>(runs.size()), from});
    uint64_t max_seq = 0;
    std::map<std::string, std::vector<const Segment*>> by_key;
    for (size_t k = first; k < last; ++k) {
      max_seq = std::max(max_seq, segs[k]->meta().max_seq);
      for (const SegmentKeyInfo& info : segs[k]->Keys()) {
        if (!old->Hidden(*segs[k], info.key)) by_key[info.key].push_back(segs[k].get());
      }
    }
    const std::string base = cold_->NewSegmentBase(*next, from, to);
    Result<std::unique_ptr<SegmentWriter>> writer =
        StartSegment(base, {from, to, max_seq}, cold_options_.sync);
    if (!writer.ok()) return writer.status();
    for (const auto& [key, parts] : by_key) {
      KOMOKU_RETURN_IF_ERROR(NextStep());
      SegmentKeyData merged;
      bool same_options = true;
      RollupParams newest;  // the options of the last day, which the key has now
      for (size_t p = 0; p < parts.size(); ++p) {
        Result<SegmentKeyData> d = parts[p]->ReadKey(key);
        if (!d.ok()) return d.status();
        if (p == 0) {
          merged.key = d->key;
          merged.type = d->type;
          merged.stale_after_ms = d->stale_after_ms;
          merged.reset_tolerance = d->reset_tolerance;
          merged.carry = d->carry;
          merged.raw_dropped = d->raw_dropped;
          merged.rollups = d->rollups;
        } else {
          same_options = same_options && d->type == merged.type &&
                         d->stale_after_ms == merged.stale_after_ms &&
                         d->reset_tolerance == merged.reset_tolerance;
          merged.raw_dropped = merged.raw_dropped || d->raw_dropped;
          for (auto& [res, rolls] : d->rollups) {
            auto it = std::find_if(merged.rollups.begin(), merged.rollups.end(),
                                   [res = res](const auto& x) { return x.first == res; });
            if (it == merged.rollups.end()) continue;
            it->second.insert(it->second.end(), rolls.begin(), rolls.end());
          }
        }
        merged.changes.insert(merged.changes.end(), d->changes.begin(), d->changes.end());
        newest = {d->type, d->stale_after_ms, d->reset_tolerance};
      }
      if (!same_options && !merged.raw_dropped) {
        // Days compacted under other options: the month's rollups are
        // computed afresh from the raw changes, under the newest options.
        merged.type = newest.type;
        merged.stale_after_ms = newest.stale_after_ms;
        merged.reset_tolerance = newest.reset_tolerance;
        AddRollups(merged, newest, from, to);
      }
      KOMOKU_RETURN_IF_ERROR((*writer)->AddKey(merged));
    }
    // A damaged metadata block a listing came upon leaves its key out.
    for (size_t k = first; k < last; ++k) KOMOKU_RETURN_IF_ERROR(RefuseDamaged(*segs[k]));
    Result<std::shared_ptr<const Segment>> seg = FinishSegment(**writer, base, report);
    if (!seg.ok()) return seg.status();
    next->segments.push_back(std::move(seg.value()));
    ++next->next_gen;
    report.segments_removed += static_cast<int>(last - first);
    i = last;
  }
  std::unique_lock<std::shared_mutex> swap(cold_rw_);
  return cold_->Commit(next);
}

Status Store::ApplyRetention(CompactionReport& report) {
  SetProgress(CompactionProgress{"retention", 0, 1, 0});
  const int64_t now = clock_->NowMs();
  const ColdOptions& o = cold_options_;
  std::shared_ptr<const ColdState> old = cold_->state();
  auto expired = [now](const Segment& seg, int64_t keep_ms) {
    return keep_ms > 0 && seg.meta().to_ms <= now - keep_ms;
  };
  // Each key's raw retention: its own option, else the store's.
  std::map<std::string, int64_t, std::less<>> raw_keep;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, st] : keys_) {
      raw_keep[name] = st.options.raw_retention_ms.value_or(o.raw_retention_ms);
    }
  }
  auto keep_of = [&](std::string_view key) {
    auto it = raw_keep.find(key);
    return it == raw_keep.end() ? o.raw_retention_ms : it->second;
  };
  auto next = std::make_shared<ColdState>(*old);
  DiscardUncommitted discard(*cold_, *next);
  bool changed = false;
  for (auto& slot : next->segments) {
    KOMOKU_RETURN_IF_ERROR(NextStep());
    const Segment& seg = *slot;
    if (!RefuseDamaged(seg).ok()) continue;  // kept whole until salvaged
    const bool drop_5m = expired(seg, o.rollup_5m_retention_ms);
    // Is there anything left to drop?
    bool work = false;
    for (const SegmentKeyInfo& info : seg.Keys()) {
      if (old->Hidden(seg, info.key)) continue;
      if (expired(seg, keep_of(info.key)) && info.changes > 0) work = true;
      if (drop_5m && info.rollup_bytes > 0) {
        // One index lookup, not the key's whole data: this runs for every
        // old segment at every compaction.
        KOMOKU_RETURN_IF_ERROR(seg.ScanRollups(info.key, kRollupResolutionsMs[0], INT64_MIN / 4,
                                               INT64_MAX / 4, [&work](const Rollup&) {
                                                 work = true;
                                                 return false;
                                               }));
      }
      if (work) break;
    }
    if (!work) continue;
    const std::string base = cold_->NewSegmentBase(*next, seg.meta().from_ms, seg.meta().to_ms);
    Result<std::unique_ptr<SegmentWriter>> writer = StartSegment(base, seg.meta(), o.sync);
    if (!writer.ok()) return writer.status();
    for (const SegmentKeyInfo& info : seg.Keys()) {
      if (old->Hidden(seg, info.key)) continue;
      KOMOKU_RETURN_IF_ERROR(NextStep());
      Result<SegmentKeyData> d = seg.ReadKey(info.key);
      if (!d.ok()) return d.status();
      if (expired(seg, keep_of(info.key))) {
        d->changes.clear();
        d->raw_dropped = true;
      }
      if (drop_5m) {
        d->rollups.erase(
            std::remove_if(d->rollups.begin(), d->rollups.end(),
                           [](const auto& x) { return x.first == kRollupResolutionsMs[0]; }),
            d->rollups.end());
      }
      KOMOKU_RETURN_IF_ERROR((*writer)->AddKey(*d));
    }
    KOMOKU_RETURN_IF_ERROR(ReplaceSegment(**writer, base, seg, slot, *next, report));
    changed = true;
  }
  if (!changed) return Status::Ok();
  std::unique_lock<std::shared_mutex> swap(cold_rw_);
  return cold_->Commit(next);
}

void Store::CompactorLoop() {
  // First, every segment's checksums, in the background: a damaged one goes
  // to quarantine before a reader trips on it.
  (void)VerifySegments();
  const bool compacting = cold_options_.compact_interval.count() > 0;
  // The first compaction comes soon after the start (a service that was
  // down for days has catching up to do), then every compact_interval.
  auto wait = compacting ? std::min<std::chrono::milliseconds>(cold_options_.compact_interval,
                                                               std::chrono::milliseconds(60000))
                         : std::chrono::milliseconds(3600000);
  std::unique_lock<std::mutex> lock(mu_);
  while (!closed_) {
    compactor_cv_.wait_for(lock, wait, [this] { return closed_; });
    if (closed_ || !compacting) continue;
    lock.unlock();
    Result<CompactionReport> r = Compact();
    if (!r.ok() && !r.status().IsBusy()) {
      log_->error("compaction failed (it will be tried again): {}", r.status().ToString());
      metrics_.Add("komoku_compaction_errors_total");
    }
    lock.lock();
    wait = cold_options_.compact_interval;
  }
}

}  // namespace komoku::store
