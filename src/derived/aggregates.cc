// Bucket aggregates: buckets aligned as history aligns them, closed
// buckets and corrections computed and queued (docs/derived.md).
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "derived/publisher_impl.h"
#include "series/history.h"
#include "wire/history_json.h"
#include "wire/input.h"

namespace komoku::derived {
namespace {

using nlohmann::json;
using store::MsToSeconds;

}  // namespace

std::pair<int64_t, int64_t> Publisher::Impl::Bucket(int64_t t, int64_t step_ms) const {
  Result<std::vector<int64_t>> starts = store::BucketStarts(t, t + 1, step_ms, options_.tz, 8);
  // Checked at Init: the zone is known and the step is positive.
  const int64_t start = starts.ok() ? starts->back() : t - t % step_ms;
  const int64_t slack = step_ms >= kDay ? 3 * kHour : 0;  // a 25-hour day
  Result<std::vector<int64_t>> next =
      store::BucketStarts(start, start + step_ms + slack, step_ms, options_.tz, 8);
  int64_t end = start + step_ms;
  if (next.ok()) {
    for (int64_t s : *next) {
      if (s > start) {
        end = s;
        break;
      }
    }
  }
  return {start, end};
}

Result<json> Publisher::Impl::AggregateBody(const Agg& a, int64_t start, int64_t end) const {
  store::HistoryQuery q{a.def.key, start, end, {start}, a.def.step_ms};
  json body = {{"start", MsToSeconds(start)}, {"end", MsToSeconds(end)}};
  if (a.type == store::KeyType::kNumeric || a.type == store::KeyType::kCounter) {
    Result<std::vector<store::AggregateBucket>> buckets = store::Downsample(*store_, q);
    if (!buckets.ok()) return buckets.status();
    // The fields GET /api/v1/history answers, rendered the same way.
    const std::vector<store::Agg> fields =
        a.type == store::KeyType::kCounter
            ? std::vector<store::Agg>{store::Agg::kIncrease, store::Agg::kRate}
            : std::vector<store::Agg>{store::Agg::kAvg, store::Agg::kTwavg, store::Agg::kMin,
                                      store::Agg::kMax, store::Agg::kCount};
    for (store::Agg f : fields) body[store::AggName(f)] = store::AggregateJson(buckets->front(), f);
    return body;
  }
  Result<store::KeyStats> stats = store::Stats(*store_, q, false, options_.tz);
  if (!stats.ok()) return stats.status();
  // Stats lists both states of a boolean key, so time.true is always there;
  // time, share and changes as GET /api/v1/stats answers them.
  body.update(store::StateStatsJson(stats->states));
  return body;
}

void Publisher::Impl::RunAggregate(Agg& a, int64_t now) {
  // Closed buckets, oldest first.
  for (;;) {
    int64_t start, end;
    bool catch_up;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (a.next_close > now) break;
      start = a.next_start;
      end = Bucket(start, a.def.step_ms).second;
      catch_up = end <= a.catch_up_until;
      // Advanced before computing: a late change that arrives while the
      // bucket is computed becomes a correction, never a loss.
      a.next_start = end;
      a.last_start = start;
      a.next_close = Bucket(end, a.def.step_ms).second + options_.close_delay_ms;
    }
    EnsureCommitted();
    PublishBucket(a, start, end, catch_up ? "catchup" : nullptr, options_.retain);
  }
  // Late changes of buckets already computed.
  std::set<int64_t> corrections;
  int64_t last_start;
  {
    std::lock_guard<std::mutex> lock(mu_);
    corrections.swap(a.corrections);
    last_start = a.last_start;
  }
  for (int64_t start : corrections) {
    EnsureCommitted();
    // Only a correction of the newest bucket replaces the retained
    // message: the retained one stays the newest bucket.
    PublishBucket(a, start, Bucket(start, a.def.step_ms).second, "correction",
                  options_.retain && start == last_start);
  }
}

void Publisher::Impl::PublishBucket(Agg& a, int64_t start, int64_t end, const char* mark,
                                    bool retain) {
  Result<json> body = AggregateBody(a, start, end);
  if (!body.ok()) {
    ReportError(a.error_logged, a.def.key + "/" + a.def.resolution, body.status());
    return;
  }
  a.error_logged = false;
  std::string plain = store::DumpJson(*body);
  const bool correction = mark && std::string(mark) == "correction";
  auto recent = a.recent.find(start);
  if (correction && recent != a.recent.end() && recent->second == plain) return;
  a.recent[start] = plain;
  while (a.recent.size() > kRecentBuckets) a.recent.erase(a.recent.begin());
  json out = std::move(body.value());
  if (mark) out[mark] = true;
  if (correction) store_->metrics().Add("komoku_derived_corrections_total");
  if (mark && !correction) store_->metrics().Add("komoku_derived_catchup_total");
  Message m;
  m.topic = derived_prefix_ + a.def.key + "/" + a.def.resolution;
  m.payload = store::DumpJson(out);
  m.retain = retain;
  if (!correction) {
    m.agg = &a;
    m.bucket_end = end;
  }
  Enqueue(std::move(m));
}

}  // namespace komoku::derived
