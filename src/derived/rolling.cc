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
      store::Agg agg = r.def.stat == RollingStat::kRate ? store::Agg::kRate : store::Agg::kIncrease;
      Result<json> rows = store::Downsample(*store_, q, {agg});
      if (!rows.ok()) return rows.status();
      value = (*rows)[0][1];
      break;
    }
    case RollingStat::kAvg:
    case RollingStat::kTwavg:
    case RollingStat::kMin:
    case RollingStat::kMax:
    case RollingStat::kCount: {
      Result<json> stats = store::Stats(*store_, q, false, options_.tz);
      if (!stats.ok()) return stats.status();
      const char* field = r.def.stat == RollingStat::kAvg ? "mean" : RollingStatName(r.def.stat);
      value = (*stats)[field];
      break;
    }
    case RollingStat::kShare:
    case RollingStat::kTime:
    case RollingStat::kHours:
    case RollingStat::kChanges: {
      Result<json> stats = store::Stats(*store_, q, false, options_.tz);
      if (!stats.ok()) return stats.status();
      if (r.def.stat == RollingStat::kChanges) {
        value = (*stats)["changes"];
        break;
      }
      const json& time = (*stats)["time"];
      const double held = time.contains(r.def.value) ? time[r.def.value].get<double>() : 0.0;
      if (r.def.stat == RollingStat::kTime) {
        value = held;
      } else if (r.def.stat == RollingStat::kHours) {
        value = held / 3600.0;
      } else {
        const json& share = (*stats)["share"];
        double known = 0;
        for (const auto& [k, v] : time.items()) {
          if (k != "unknown") known += v.get<double>();
        }
        value = share.contains(r.def.value) ? share[r.def.value]
                : known > 0                 ? json(0.0)
                                            : json(nullptr);
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
