// Bulk import of old history straight into cold segments (Store::ImportCold):
// rows older than the hot window never touch SQLite. Kept apart from
// compaction.cc, whose steps it follows: a segment is written whole under a
// new name and made live by one manifest commit. See docs/storage.md,
// "Importing old history".
#include <date/date.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>

#include "cold/cold_store.h"
#include "hot/hot_store.h"
#include "hot/stored_options.h"
#include "series/history.h"
#include "store/store.h"

namespace komoku::store {
namespace {

constexpr int64_t kDayMs = 24LL * 3600 * 1000;

int64_t DayStart(int64_t t) {
  return t >= 0 ? t / kDayMs * kDayMs : -((-t + kDayMs - 1) / kDayMs) * kDayMs;
}

// The start of the UTC month after the one holding `t`.
int64_t NextMonth(int64_t t) {
  using std::chrono::milliseconds;
  const date::year_month_day ymd{
      date::floor<date::days>(date::sys_time<milliseconds>(milliseconds(t)))};
  const date::year_month_day next =
      date::year_month_day{ymd.year(), ymd.month(), date::day{1}} + date::months{1};
  return std::chrono::duration_cast<milliseconds>(date::sys_days(next).time_since_epoch()).count();
}

bool SameSample(const std::optional<Sample>& a, const std::optional<Sample>& b) {
  if (!a || !b) return !a && !b;
  return a->time_ms == b->time_ms && a->value == b->value;
}

bool SameHigh(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// The change in force at the end of a key's data in a segment.
std::optional<Sample> CarryOut(const SegmentKeyData& d) {
  if (!d.changes.empty()) return d.changes.back();
  return d.carry;
}

// The counter's highest value since its last reset at the end of the
// segment (the last daily rollup's), or `before` when it has none.
double HighOut(const SegmentKeyData& d, double before) {
  for (const auto& [res, rolls] : d.rollups) {
    if (res == kDayMs && !rolls.empty()) return rolls.back().high;
  }
  return before;
}

// One accepted row of a key.
struct Row {
  int64_t time_ms;
  Value value;
};

// Merges `rows` (sorted by time, ties in the order given) into `held` (a
// segment's changes of the key, sorted) after `in_force`, the change in
// force before the first of them: a row equal in time and value to a change
// before it at that time, or repeating the value in force within
// `resolution_ms` of that change, is not added. Returns how many rows were
// added; with `out`, the merged changes, and with `newest_added` the newest
// two rows added (newest last) after what it held.
uint64_t MergeRows(const std::vector<Sample>& held, const Row* rows, size_t n,
                   std::optional<Sample> in_force, int64_t resolution_ms, std::vector<Sample>* out,
                   std::vector<Sample>* newest_added = nullptr) {
  uint64_t added = 0;
  size_t i = 0;
  // The changes at the time of the last one emitted, for the duplicate check.
  std::vector<const Value*> at_time;
  int64_t at_time_ms = INT64_MIN;
  auto emit = [&](const Sample& s) {
    if (s.time_ms != at_time_ms) {
      at_time.clear();
      at_time_ms = s.time_ms;
    }
    if (out) out->push_back(s);
    in_force = s;
    at_time.push_back(out ? &out->back().value : &s.value);
  };
  if (out) out->reserve(held.size() + n);
  for (size_t j = 0; j < n; ++j) {
    const Row& r = rows[j];
    // Held changes up to the row's time come first: a row is put after them.
    while (i < held.size() && held[i].time_ms <= r.time_ms) emit(held[i++]);
    bool skip = false;
    if (at_time_ms == r.time_ms) {
      for (const Value* v : at_time) skip = skip || *v == r.value;
    }
    if (in_force && in_force->value == r.value && r.time_ms - in_force->time_ms < resolution_ms) {
      skip = true;
    }
    if (skip) continue;
    emit(Sample{r.time_ms, r.value});
    ++added;
    if (newest_added) {
      newest_added->push_back(in_force.value());
      if (newest_added->size() > 2) newest_added->erase(newest_added->begin());
    }
  }
  while (i < held.size()) emit(held[i++]);
  return added;
}

}  // namespace

int64_t Store::ColdImportBefore() const {
  const int64_t cut = DayStart(clock_->NowMs() - cold_options_.hot_window_ms);
  return std::max(cut, cold_->state()->cold_to);
}

Result<ColdImportReport> Store::ImportCold(const std::vector<ColdImportRow>& rows,
                                           const ColdImportOptions& options) {
  std::lock_guard<std::mutex> compact(compact_mu_);
  KOMOKU_RETURN_IF_ERROR(NextStep());
  KOMOKU_RETURN_IF_ERROR(hot_->WriteHealth());
  ColdImportReport report;
  // Hot rows older than the window go to segments first, so that history
  // older than the end of cold time is all in segments: the merge below
  // then sees every change held.
  CompactionReport compacted;
  KOMOKU_RETURN_IF_ERROR(CompactHot(compacted));
  std::shared_ptr<const ColdState> old = cold_->state();
  const int64_t cut = DayStart(clock_->NowMs() - cold_options_.hot_window_ms);
  // An empty cold store starts at the cut: CompactHot found no hot change
  // older than it.
  const int64_t cold_to = old->cold_to == INT64_MIN ? cut : std::max(old->cold_to, cut);

  // The rows' keys, created where new, and the rows checked, per key.
  struct Track {
    KeyType type = KeyType::kNumeric;
    KeyOptions options;
    std::vector<Row> rows;        // sorted by time before the walk
    size_t next = 0;              // the first row not yet in a segment
    std::optional<Sample> carry;  // the change in force where the walk is
    double high = std::numeric_limits<double>::quiet_NaN();
    bool dirty = false;  // its state where the walk is differs from the old one
    // The newest two changes added, newest last (for the current value),
    // and the newest time a `true` row had (uptime refreshes).
    std::vector<Sample> newest;
    uint64_t added = 0;
    int64_t newest_true_ms = INT64_MIN;
  };
  std::map<std::string, Track, std::less<>> tracks;
  uint64_t reserved_seq = 0;
  uint64_t op_seq = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return Status::Busy("store is closing");
    const int64_t now = clock_->NowMs();
    for (size_t i = 0; i < rows.size(); ++i) {
      const ColdImportRow& row = rows[i];
      auto refuse = [&](Status st) { report.refused.emplace_back(i, Refuse(std::move(st))); };
      auto it = keys_.find(row.key);
      if (it == keys_.end()) {
        if (Status name = ValidateKeyName(row.key); !name.ok()) {
          refuse(name.WithReason("bad_key"));
          continue;
        }
      }
      if (row.time_ms < 0 || row.time_ms >= cold_to) {
        refuse(Status::InvalidArgument(QuoteForMessage(row.key) + ": time " +
                                       std::to_string(row.time_ms) +
                                       " ms is before 1970 or not older than the hot window")
                   .WithReason(row.time_ms < 0 ? "bad_time" : "not_cold"));
        continue;
      }
      PutOptions put;
      put.new_key_type = row.new_key_type;
      KeyType type;
      Result<Value> value =
          CheckValue(it == keys_.end() ? nullptr : &it->second, row.value, put, &type);
      if (!value.ok()) {
        refuse(
            value.status().WithContext(QuoteForMessage(row.key) + " (" + KeyTypeName(type) + ")"));
        continue;
      }
      if (it == keys_.end()) {
        const int64_t id = next_key_id_++;
        it = keys_.emplace(row.key, KeyState{id, type, KeyOptions{}, {}, {}, 0, 0}).first;
        op_seq = hot_->EnqueueUpsertKey(id, it->first, type,
                                        EncodeStoredOptions(it->second.options, type), now);
        metrics_.Set("komoku_keys", static_cast<int64_t>(keys_.size()));
      }
      auto t = tracks.find(row.key);
      if (t == tracks.end()) {
        t = tracks.emplace(row.key, Track{}).first;
        t->second.type = it->second.type;
        t->second.options = it->second.options;
      }
      t->second.rows.push_back(Row{row.time_ms, std::move(value.value())});
    }
    // Every key, for the carries of the days written: a day segment holds
    // every key known then, as compaction writes it.
    for (const auto& [name, st] : keys_) {
      if (tracks.count(name)) continue;
      Track& t = tracks.emplace(name, Track{}).first->second;
      t.type = st.type;
      t.options = st.options;
    }
    // Written segments say they hold every change numbered up to this one,
    // so a tombstone older than it hides nothing they hold.
    reserved_seq = ++last_change_seq_;
  }
  if (op_seq) KOMOKU_RETURN_IF_ERROR(hot_->WaitCommitted(op_seq));

  std::optional<int64_t> first_ms;
  size_t rows_left = 0;
  for (auto& [name, t] : tracks) {
    std::stable_sort(t.rows.begin(), t.rows.end(),
                     [](const Row& a, const Row& b) { return a.time_ms < b.time_ms; });
    if (!t.rows.empty() && (!first_ms || t.rows.front().time_ms < *first_ms)) {
      first_ms = t.rows.front().time_ms;
    }
    rows_left += t.rows.size();
  }
  const bool fill = options.fill_from_ms.has_value();
  if (fill) first_ms = std::min(first_ms.value_or(INT64_MAX), *options.fill_from_ms);
  if (!first_ms || *first_ms >= cold_to) return report;
  int64_t start = DayStart(*first_ms);
  for (const auto& seg : old->segments) {
    if (seg->meta().from_ms <= start && start < seg->meta().to_ms) start = seg->meta().from_ms;
  }

  // Every key's state where the walk starts (no hot change is older than
  // the end of cold time now).
  auto refresh_carries = [&](int64_t at, bool all) -> Status {
    for (auto& entry : tracks) {
      const auto& name = entry.first;
      auto& t = entry.second;  // a plain reference: C++17 lambdas cannot capture bindings
      if (t.dirty && !all) continue;
      KOMOKU_RETURN_IF_ERROR(NextStep());
      Result<std::optional<Sample>> carry = old->At(name, at - 1);
      if (!carry.ok()) return carry.status();
      t.carry = *carry;
      t.high = std::numeric_limits<double>::quiet_NaN();
      if (t.type != KeyType::kCounter) continue;
      KOMOKU_RETURN_IF_ERROR(
          old->ScanRollups(name, kDayMs, INT64_MIN / 4, at, [&t](const Rollup& r) {
            t.high = r.high;
            return true;
          }));
    }
    return Status::Ok();
  };
  KOMOKU_RETURN_IF_ERROR(refresh_carries(start, /*all=*/true));
  bool carries_stale = false;  // a segment kept as it was since the carries were known

  auto next = std::make_shared<ColdState>(*old);
  next->segments.clear();
  struct Discard {
    ColdStore& cold;
    const ColdState& next;
    ~Discard() { cold.DiscardUncommitted(next); }
  } discard{*cold_, *next};
  size_t si = 0;
  for (; si < old->segments.size() && old->segments[si]->meta().to_ms <= start; ++si) {
    next->segments.push_back(old->segments[si]);
  }
  size_t dirty = 0;
  for (int64_t pos = start; pos < cold_to;) {
    KOMOKU_RETURN_IF_ERROR(NextStep());
    const Segment* seg = nullptr;
    if (si < old->segments.size() && old->segments[si]->meta().from_ms <= pos) {
      seg = old->segments[si].get();
    }
    const int64_t from = seg ? seg->meta().from_ms : pos;
    int64_t to = seg ? seg->meta().to_ms : pos + kDayMs;
    if (!seg && fill && NextMonth(pos - 1) == pos) {
      // A whole cold month with no segment, on the last hand-over (no later
      // one rewrites it): one segment, as compaction's merge of its days
      // would make it, instead of a segment a day merged afterwards.
      const int64_t month_end = NextMonth(pos);
      if (month_end <= cold_to &&
          (si == old->segments.size() || old->segments[si]->meta().from_ms >= month_end)) {
        to = month_end;
      }
    }
    if (!seg && si < old->segments.size()) to = std::min(to, old->segments[si]->meta().from_ms);
    pos = to;
    auto rows_in = [&](const Track& t) {
      return t.next < t.rows.size() && t.rows[t.next].time_ms < to;
    };
    bool rows_here = false;
    for (const auto& [name, t] : tracks) rows_here = rows_here || rows_in(t);
    if (!rows_here && rows_left == 0 && dirty == 0 && !fill) break;
    if (seg && !rows_here && dirty == 0) {
      next->segments.push_back(old->segments[si++]);
      carries_stale = true;
      continue;
    }
    if (!seg && !rows_here && !fill) continue;  // a day no row touched stays unwritten
    if (!seg && carries_stale) {
      KOMOKU_RETURN_IF_ERROR(refresh_carries(from, /*all=*/false));
      carries_stale = false;
    }
    if (seg && !seg->Damage().empty()) {
      const std::string name = std::filesystem::path(seg->base()).filename().string();
      return Status::Corruption("segment " + name +
                                " has damaged blocks; it is not rewritten until `komoku segments "
                                "--salvage " +
                                name + "` (with the service stopped)")
          .WithReason("damaged_segment");
    }
    // The keys of the span: the segment's, those with rows or a changed
    // state, and on a day of its own every key known then.
    std::vector<const std::string*> names;
    std::vector<std::string> held_names;
    if (seg) {
      for (const SegmentKeyInfo& info : seg->Keys()) {
        if (!old->Hidden(*seg, info.key)) held_names.push_back(info.key);
      }
    }
    {
      auto h = held_names.begin();
      for (const auto& [name, t] : tracks) {
        while (h != held_names.end() && *h < name) names.push_back(&*h++);
        const bool held = h != held_names.end() && *h == name;
        if (held) ++h;
        if (held || rows_in(t) || t.dirty || (!seg && t.carry)) names.push_back(&name);
      }
      while (h != held_names.end()) names.push_back(&*h++);
    }
    auto held_here = [&](const std::string& name) {
      return seg && std::binary_search(held_names.begin(), held_names.end(), name);
    };
    auto rows_here_of = [&](const Track& t) {
      size_t n = 0;
      while (t.next + n < t.rows.size() && t.rows[t.next + n].time_ms < to) ++n;
      return n;
    };
    // The change in force where the span begins: a key whose state is as
    // before has the one the old state has (a held key's carry).
    auto carry_in = [&](const std::string& name, const Track& t,
                        const SegmentKeyData* held) -> Result<std::optional<Sample>> {
      if (t.dirty) return t.carry;
      if (held) return held->carry;
      if (!seg && !carries_stale) return t.carry;
      return old->At(name, from - 1);
    };
    // A segment whose keys' states are as before and whose rows are all
    // held already stays as it is (a file imported twice writes nothing).
    if (seg && dirty == 0) {
      uint64_t adds = 0;
      for (const std::string* name : names) {
        auto t = tracks.find(*name);
        if (t == tracks.end() || !rows_in(t->second)) continue;
        KOMOKU_RETURN_IF_ERROR(NextStep());
        std::optional<SegmentKeyData> held;
        if (held_here(*name)) {
          Result<SegmentKeyData> d = seg->ReadKey(*name);
          if (!d.ok()) return d.status();
          held = std::move(d.value());
        }
        Result<std::optional<Sample>> carry = carry_in(*name, t->second, held ? &*held : nullptr);
        if (!carry.ok()) return carry.status();
        static const std::vector<Sample> kNone;
        adds += MergeRows(held ? held->changes : kNone, t->second.rows.data() + t->second.next,
                          rows_here_of(t->second), *carry,
                          t->second.options.same_value_resolution_ms, nullptr);
      }
      if (adds == 0) {
        for (const std::string* name : names) {
          auto t = tracks.find(*name);
          if (t == tracks.end()) continue;
          const size_t n = rows_here_of(t->second);
          t->second.next += n;
          rows_left -= n;
          report.already += n;
        }
        next->segments.push_back(old->segments[si++]);
        carries_stale = true;
        continue;
      }
    }

    const std::string base = cold_->NewSegmentBase(*next, from, to);
    SegmentWriteOptions write_options;
    write_options.sync = cold_options_.sync;
    Result<std::unique_ptr<SegmentWriter>> writer =
        SegmentWriter::Create(base, {from, to, reserved_seq}, write_options);
    if (!writer.ok()) return writer.status();
    int added_keys = 0;
    for (const std::string* name : names) {
      KOMOKU_RETURN_IF_ERROR(NextStep());
      auto tit = tracks.find(*name);
      if (tit == tracks.end()) continue;  // deleted since: hidden from here on
      Track& t = tit->second;
      std::optional<SegmentKeyData> held;
      if (held_here(*name)) {
        Result<SegmentKeyData> d = seg->ReadKey(*name);
        if (!d.ok()) return d.status();
        held = std::move(d.value());
      }
      const size_t n = rows_here_of(t);
      Result<std::optional<Sample>> carry = carry_in(*name, t, held ? &*held : nullptr);
      if (!carry.ok()) return carry.status();
      if (!t.dirty && t.type == KeyType::kCounter && (n > 0 || !held)) {
        // The highest value since the last reset where the span begins, as
        // the rollups before it leave it.
        t.high = std::numeric_limits<double>::quiet_NaN();
        KOMOKU_RETURN_IF_ERROR(
            old->ScanRollups(*name, kDayMs, INT64_MIN / 4, from, [&t](const Rollup& r) {
              t.high = r.high;
              return true;
            }));
      }
      // What the old state holds where the span ends, to tell whether the
      // spans after it change too.
      std::optional<Sample> old_out;
      if (held) {
        old_out = CarryOut(*held);
      } else if (!seg) {
        Result<std::optional<Sample>> at = old->At(*name, to - 1);
        if (!at.ok()) return at.status();
        old_out = *at;
      }
      const double old_high = held ? HighOut(*held, t.high) : t.high;
      SegmentKeyData data;
      uint64_t adds = 0;
      if (held && n == 0 && (!t.dirty || held->raw_dropped)) {
        // Unchanged (or retention's leftovers, whose rollups cannot be
        // computed again): kept as it was.
        data = std::move(*held);
      } else {
        data.key = *name;
        data.type = t.type;
        data.stale_after_ms = t.options.stale_after_ms;
        data.reset_tolerance = t.options.reset_tolerance;
        data.carry = *carry;
        static const std::vector<Sample> kNone;
        adds = MergeRows(held ? held->changes : kNone, t.rows.data() + t.next, n, *carry,
                         t.options.same_value_resolution_ms, &data.changes, &t.newest);
        if (t.newest.size() > 2) t.newest.erase(t.newest.begin(), t.newest.end() - 2);
        report.stored += adds;
        report.already += n - adds;
        t.added += adds;
        if (held && adds == 0 && !t.dirty) {
          data = std::move(*held);
        } else {
          RollupParams params{t.type, t.options.stale_after_ms, t.options.reset_tolerance, t.high};
          for (int64_t res : kRollupResolutionsMs) {
            data.rollups.emplace_back(
                res, ComputeRollups(params, data.carry, data.changes, from, to, res));
          }
        }
      }
      for (size_t j = 0; j < n; ++j) {
        const bool* on = std::get_if<bool>(&t.rows[t.next + j].value);
        if (on && *on) t.newest_true_ms = std::max(t.newest_true_ms, t.rows[t.next + j].time_ms);
      }
      t.next += n;
      rows_left -= n;
      const bool was_dirty = t.dirty;
      const std::optional<Sample> new_out = CarryOut(data);
      const double new_high = HighOut(data, t.high);
      t.dirty = !SameSample(old_out, new_out) ||
                (t.type == KeyType::kCounter && !SameHigh(old_high, new_high));
      dirty = dirty - (was_dirty ? 1 : 0) + (t.dirty ? 1 : 0);
      t.carry = new_out;
      t.high = new_high;
      if (!data.carry && data.changes.empty()) continue;  // no value known yet
      KOMOKU_RETURN_IF_ERROR((*writer)->AddKey(data));
      ++added_keys;
    }
    if (seg) ++si;
    if (added_keys == 0) continue;  // the unfinished writer removes its files
    KOMOKU_RETURN_IF_ERROR((*writer)->Finish());
    report.bytes_written += (*writer)->bytes();
    ++report.segments_written;
    if (seg) ++report.segments_removed;
    Result<std::shared_ptr<const Segment>> written = Segment::Open(base);
    if (!written.ok()) return written.status();
    next->segments.push_back(std::move(written.value()));
    ++next->next_gen;
  }
  for (; si < old->segments.size(); ++si) next->segments.push_back(old->segments[si]);
  if (report.segments_written == 0 && old->cold_to == cold_to) return report;
  next->cold_to = cold_to;
  next->cold_seq = std::max(old->cold_seq, reserved_seq);
  {
    std::unique_lock<std::shared_mutex> swap(cold_rw_);
    KOMOKU_RETURN_IF_ERROR(cold_->Commit(next));
  }
  metrics_.Add("komoku_changes_accepted_total", static_cast<int64_t>(report.stored));
  metrics_.Add("komoku_changes_stored_total", static_cast<int64_t>(report.stored));

  // The current values, as puts of the rows would have left them: the
  // newest time wins, a tie going to the row (put later).
  uint64_t touch_seq = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [name, t] : tracks) {
      if (t.newest.empty()) continue;
      auto it = keys_.find(name);
      if (it == keys_.end()) continue;
      KeyState& st = it->second;
      std::vector<Sample> all;
      if (st.previous) all.push_back(*st.previous);
      if (st.last) all.push_back(*st.last);
      all.insert(all.end(), t.newest.begin(), t.newest.end());
      std::stable_sort(all.begin(), all.end(),
                       [](const Sample& a, const Sample& b) { return a.time_ms < b.time_ms; });
      st.last = all.back();
      st.previous.reset();
      if (all.size() > 1) st.previous = all[all.size() - 2];
      st.changes_stored += t.added;
      if (st.type == KeyType::kUptime) {
        const bool* on = std::get_if<bool>(&st.last->value);
        if (on && *on) {
          st.last_seen_ms = std::max(st.last_seen_ms, st.last->time_ms);
          if (t.newest_true_ms > st.last_seen_ms) {
            st.last_seen_ms = t.newest_true_ms;
            touch_seq = hot_->EnqueueTouch(st.id, st.last_seen_ms);
          }
        }
        ArmUptime(it->first, st);
      }
    }
  }
  if (touch_seq) KOMOKU_RETURN_IF_ERROR(hot_->WaitCommitted(touch_seq));
  return report;
}

}  // namespace komoku::store
