// Rolling statistics over a window ending now (docs/derived.md).
#include <mutex>
#include <nlohmann/json.hpp>

#include "derived/publisher_impl.h"
#include "series/history.h"
#include "wire/input.h"

namespace komoku::derived {
namespace {

using nlohmann::json;
using store::MsToSeconds;

}  // namespace

Result<json> Publisher::Impl::RollingBody(const Roll& r, int64_t now) const {
  // `to` is now itself, not now + 1 as HTTP's default: history's walk ends
  // at min(to, now), so an answer given later for [from, to) is the same.
  // A change made this very millisecond comes in with the next refresh.
  const int64_t to = now;
  const int64_t from = r.def.window_ms ? to - r.def.window_ms : Bucket(now, kDay).first;
  store::HistoryQuery q{r.def.key, from, to, {from}, 0};
  json value;
  switch (r.def.stat) {
    case RollingStat::kIncrease:
    case RollingStat::kRate: {
      Result<std::vector<store::AggregateBucket>> buckets = store::Downsample(*store_, q);
      if (!buckets.ok()) return buckets.status();
      const store::AggregateBucket& b = buckets->front();
      value = OrNull(r.def.stat == RollingStat::kRate ? b.rate : b.increase);
      break;
    }
    case RollingStat::kAvg:
    case RollingStat::kTwavg:
    case RollingStat::kMin:
    case RollingStat::kMax:
    case RollingStat::kCount: {
      Result<store::KeyStats> stats = store::Stats(*store_, q, false, options_.tz);
      if (!stats.ok()) return stats.status();
      const store::NumericStats& n = stats->numbers;
      if (!stats->numeric) {
        value = nullptr;  // no numbers of a key that is no longer numeric
      } else if (r.def.stat == RollingStat::kCount) {
        value = n.count;
      } else {
        value = OrNull(r.def.stat == RollingStat::kAvg     ? n.mean
                       : r.def.stat == RollingStat::kTwavg ? n.twavg
                       : r.def.stat == RollingStat::kMin   ? n.min
                                                           : n.max);
      }
      break;
    }
    case RollingStat::kShare:
    case RollingStat::kTime:
    case RollingStat::kHours:
    case RollingStat::kChanges: {
      Result<store::KeyStats> stats = store::Stats(*store_, q, false, options_.tz);
      if (!stats.ok()) return stats.status();
      const store::StateStats& st = stats->states;
      if (r.def.stat == RollingStat::kChanges) {
        value = stats->numeric ? json(nullptr) : json(st.changes);
        break;
      }
      auto held = st.ms_per_value.find(r.def.value);
      const double seconds =
          held == st.ms_per_value.end() ? 0.0 : static_cast<double>(held->second) / 1000.0;
      if (r.def.stat == RollingStat::kTime) {
        value = seconds;
      } else if (r.def.stat == RollingStat::kHours) {
        value = seconds / 3600.0;
      } else {
        value = OrNull(st.Share(r.def.value));
      }
      break;
    }
  }
  return json{{"value", value}, {"from", MsToSeconds(from)}, {"to", MsToSeconds(to)}};
}

void Publisher::Impl::RunRolling(Roll& r, int64_t now) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const bool due = now >= r.next_refresh || (r.dirty && now >= r.last_run + kChangeRefreshMinMs);
    if (!due) return;
    r.dirty = false;
    r.last_run = now;
    r.next_refresh = r.def.refresh_ms ? now + r.def.refresh_ms : kNever;
  }
  EnsureCommitted();
  Result<json> body = RollingBody(r, now);
  if (!body.ok()) {
    ReportError(r.error_logged, r.def.key + "/" + r.def.name, body.status());
    return;
  }
  r.error_logged = false;
  Message m;
  m.topic = derived_prefix_ + r.def.key + "/" + r.def.name;
  m.payload = store::DumpJson(*body);
  m.retain = options_.retain;
  Enqueue(std::move(m));
}

}  // namespace komoku::derived
