// The derived-state publisher: a worker computes what is due (closed
// buckets, corrections, rolling refreshes, staleness) through the history
// read API, and a sender drains a bounded queue to the broker in order.
// Decisions and payloads: docs/derived.md.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "derived/derived.h"
#include "derived/internal.h"
#include "store/history.h"
#include "store/input.h"

namespace komoku::derived {
namespace {

using nlohmann::json;
using store::MsToSeconds;

constexpr int64_t kHour = 3600 * 1000;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
// A busy key refreshes its rolling statistics at most this often.
constexpr int64_t kChangeRefreshMinMs = 1000;
// How often the keys are looked through for a stale_after option set by
// define after the start.
constexpr int64_t kStaleRescanMs = 10 * 1000;
// How many recently published bucket bodies are kept per aggregate, so a
// correction that changes nothing is not published.
constexpr size_t kRecentBuckets = 16;
constexpr std::chrono::milliseconds kRetryDelay{200};

bool IsBoolean(store::KeyType t) {
  return t == store::KeyType::kBoolean || t == store::KeyType::kUptime;
}

json OrNull(const std::optional<double>& d) { return d ? json(*d) : json(nullptr); }

// The time in state of a bucket as GET /api/v1/stats gives it: seconds per
// value and unknown, the share of the known time per value, and changes.
void PutStates(const store::StateStats& s, json& body) {
  json time = json::object();
  json share = json::object();
  for (const auto& [v, ms] : s.ms_per_value) {
    time[v] = static_cast<double>(ms) / 1000.0;
    share[v] = OrNull(s.Share(v));
  }
  time["unknown"] = static_cast<double>(s.unknown_ms) / 1000.0;
  body["time"] = std::move(time);
  body["share"] = std::move(share);
  body["changes"] = s.changes;
}

// Writes `text` to `path` by temp file, fsync and rename, so a crash leaves
// the old file or the new one, never half of one.
Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError("cannot write '" + tmp + "': " + std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status st = Status::IOError("cannot write '" + tmp + "': " + std::strerror(errno));
      ::close(fd);
      return st;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return Status::IOError("cannot flush '" + tmp + "': " + std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::IOError("cannot rename '" + tmp + "' to '" + path +
                           "': " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

class Publisher::Impl {
 public:
  Impl(DerivedOptions options, store::Store* store, PublishFn publish,
       std::shared_ptr<spdlog::logger> log)
      : options_(std::move(options)),
        store_(store),
        publish_(std::move(publish)),
        log_(std::move(log)),
        derived_prefix_(options_.prefix + "/derived/") {}

  ~Impl() { Stop(); }

  Status Init(const KeyTypeFn& key_type) {
    KOMOKU_RETURN_IF_ERROR(store::CheckTimeZone(options_.tz));
    for (const AggregateDef& def : options_.aggregates) {
      Result<store::KeyType> type = TypeOf(key_type, def.key, def.where);
      if (!type.ok()) return type.status();
      KOMOKU_RETURN_IF_ERROR(CheckAggregate(def, *type));
      Agg a;
      a.def = def;
      a.type = *type;
      aggs_.push_back(std::move(a));
    }
    for (RollingDef def : options_.rolling) {
      Result<store::KeyType> type = TypeOf(key_type, def.key, def.where);
      if (!type.ok()) return type.status();
      KOMOKU_RETURN_IF_ERROR(CheckRolling(def, *type, store_->boolean_words()));
      Roll r;
      r.def = def;
      r.type = *type;
      rolls_.push_back(std::move(r));
    }
    for (const DiscoveryKey& k : options_.discovery_keys) {
      Result<store::KeyType> type = TypeOf(key_type, k.key, k.where);
      if (!type.ok()) return type.status();
    }
    KOMOKU_RETURN_IF_ERROR(CheckNames(options_));
    for (size_t i = 0; i < aggs_.size(); ++i) by_key_[aggs_[i].def.key].aggs.push_back(i);
    for (size_t i = 0; i < rolls_.size(); ++i) by_key_[rolls_[i].def.key].rolls.push_back(i);
    return Status::Ok();
  }

  void SetConfigurationUrl(std::string url) { configuration_url_ = std::move(url); }

  Status Start() {
    const int64_t now = store_->clock().NowMs();
    SavedState saved;
    if (!options_.state_path.empty()) {
      Result<SavedState> loaded = LoadState();
      if (!loaded.ok()) return loaded.status();
      saved = std::move(loaded.value());
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (Agg& a : aggs_) {
        const int64_t current = Bucket(now, a.def.step_ms).first;
        auto it = saved.next.find(StateName(a.def));
        if (it == saved.next.end()) {
          a.next_start = current;  // a new definition starts with the bucket now open
        } else {
          a.next_start = it->second;
          a.catch_up_until = now;
          const int64_t missed = (current - a.next_start) / a.def.step_ms;
          if (missed > static_cast<int64_t>(options_.max_catch_up)) {
            const int64_t keep_from =
                Bucket(now - static_cast<int64_t>(options_.max_catch_up) * a.def.step_ms,
                       a.def.step_ms)
                    .first;
            log_->warn("derived {}/{}: {} buckets closed while down; publishing the last {}",
                       a.def.key, a.def.resolution, missed, options_.max_catch_up);
            a.next_start = keep_from;
          }
        }
        a.sent_next = a.next_start;
        a.last_start = Bucket(a.next_start - 1, a.def.step_ms).first;
        a.next_close = Bucket(a.next_start, a.def.step_ms).second + options_.close_delay_ms;
      }
      for (Roll& r : rolls_) r.next_refresh = now;
      started_ = true;
    }
    if (options_.discovery) QueueDiscovery();
    ClearDiscovery(saved.discovery);
    bool discovery_changed = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      discovery_changed = discovery_topics_ != saved.discovery;
    }
    // Known at once, so that a crash before the next save cannot leave a
    // config behind that no later start knows to clear.
    if (discovery_changed) SaveState();
    listener_id_ = store_->AddListener([this](const store::Change& c) { OnChange(c); });
    if (options_.start_threads) {
      worker_ = std::thread([this] { WorkerLoop(); });
      sender_ = std::thread([this] { SenderLoop(); });
    }
    log_->info("derived: {} bucket aggregates, {} rolling statistics, discovery {}", aggs_.size(),
               rolls_.size(), options_.discovery ? "on" : "off");
    return Status::Ok();
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
      stopped_ = true;
      // Never started: its buckets were never set up, and the state file
      // belongs to the publisher that runs.
      if (!started_) return;
    }
    cv_.notify_all();
    {
      std::lock_guard<std::mutex> lock(out_mu_);
      sender_stop_ = true;
    }
    out_cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    if (sender_.joinable()) sender_.join();
    if (listener_id_) store_->RemoveListener(listener_id_);
    listener_id_ = 0;
    Flush();  // a last try while the bridge is still connected
    size_t left = QueueDepth();
    if (left) {
      store_->metrics().Add("komoku_derived_dropped_total", static_cast<int64_t>(left));
      log_->warn(
          "derived: {} publications not sent at stop; buckets among them are published "
          "as catch-up at the next start",
          left);
    }
    SaveState();
  }

  void RunDue() {
    std::lock_guard<std::mutex> run(run_mu_);
    const int64_t now = store_->clock().NowMs();
    committed_ = false;
    for (Agg& a : aggs_) RunAggregate(a, now);
    for (Roll& r : rolls_) RunRolling(r, now);
    RunStale(now);
  }

  // Returns false when a send failed (the broker is away).
  bool Flush() {
    std::lock_guard<std::mutex> flush(flush_mu_);
    bool sent_bucket = false;
    bool ok = true;
    for (;;) {
      Message m;
      {
        std::lock_guard<std::mutex> lock(out_mu_);
        if (queue_.empty()) break;
        m = queue_.front();
      }
      Status st = publish_(m.topic, m.payload, m.retain);
      if (!st.ok()) {
        ok = false;
        break;
      }
      {
        std::lock_guard<std::mutex> lock(out_mu_);
        // The front may have been dropped meanwhile (the queue overflowed).
        if (!queue_.empty() && queue_.front().id == m.id) queue_.pop_front();
        store_->metrics().Set("komoku_derived_queue_depth", static_cast<int64_t>(queue_.size()));
      }
      store_->metrics().Add("komoku_derived_published_total");
      if (m.agg) {
        std::lock_guard<std::mutex> lock(mu_);
        m.agg->sent_next = std::max(m.agg->sent_next, m.bucket_end);
        sent_bucket = true;
      }
      if (m.clears_discovery) {
        std::lock_guard<std::mutex> lock(mu_);
        discovery_to_clear_.erase(m.topic);
        sent_bucket = true;  // the state file forgets the topic
      }
    }
    if (sent_bucket) SaveState();
    return ok;
  }

  size_t QueueDepth() const {
    std::lock_guard<std::mutex> lock(out_mu_);
    return queue_.size();
  }

  int64_t NextDueMs() const {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t due = kNever;
    for (const Agg& a : aggs_) {
      due = std::min(due, a.corrections.empty() ? a.next_close : 0);
    }
    for (const Roll& r : rolls_) {
      due = std::min(due, r.next_refresh);
      if (r.dirty) due = std::min(due, r.last_run + kChangeRefreshMinMs);
    }
    for (const auto& [key, s] : stale_) due = std::min(due, s.check_at);
    return std::min(due, next_stale_scan_);
  }

 private:
  struct Agg {
    AggregateDef def;
    store::KeyType type = store::KeyType::kNumeric;
    // Guarded by mu_:
    int64_t next_start = 0;         // the first bucket not yet computed
    int64_t next_close = 0;         // when that bucket is due (its end + close delay)
    int64_t last_start = 0;         // the newest bucket computed: what the retained message holds
    int64_t sent_next = 0;          // the end of the newest bucket sent: kept across restarts
    int64_t catch_up_until = 0;     // buckets ending by this closed while Komoku was down
    std::set<int64_t> corrections;  // starts of computed buckets that changed late
    bool error_logged = false;
    // Only the worker (under run_mu_):
    std::map<int64_t, std::string> recent;  // start -> body last published
  };
  struct Roll {
    RollingDef def;
    store::KeyType type = store::KeyType::kNumeric;
    // Guarded by mu_:
    int64_t next_refresh = 0;
    int64_t last_run = std::numeric_limits<int64_t>::min() / 2;
    bool dirty = false;
    bool error_logged = false;
  };
  struct Stale {
    int64_t after_ms = 0;
    std::optional<bool> published;
    int64_t check_at = 0;
  };
  struct Message {
    uint64_t id = 0;
    std::string topic;
    std::string payload;
    bool retain = false;
    Agg* agg = nullptr;  // set for a bucket aggregate: its sending is remembered
    int64_t bucket_end = 0;
    bool clears_discovery = false;  // an empty retained config: remembered when sent
  };
  // What the state file holds.
  struct SavedState {
    std::map<std::string, int64_t> next;  // StateName -> end of the newest bucket sent
    // Home Assistant config topics published and not cleared since.
    std::set<std::string> discovery;
  };
  struct KeyDefs {
    std::vector<size_t> aggs;
    std::vector<size_t> rolls;
  };

  // The type `key_type` gives, else the store's.
  Result<store::KeyType> TypeOf(const KeyTypeFn& key_type, const std::string& key,
                                const std::string& where) const {
    if (key_type) {
      if (std::optional<store::KeyType> t = key_type(key)) return *t;
    }
    Result<store::KeyInfo> info = store_->Get(key);
    if (!info.ok()) {
      return Status::InvalidArgument(where + ": unknown key '" + key +
                                     "' (define it under keys:, or put a value first)");
    }
    return info->type;
  }

  // The bucket [start, end) of `step_ms` holding `t`, aligned as history
  // aligns it (store::BucketStarts).
  std::pair<int64_t, int64_t> Bucket(int64_t t, int64_t step_ms) const {
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

  static std::string StateName(const AggregateDef& def) { return def.key + "\n" + def.resolution; }

  void OnChange(const store::Change& c) {
    // A repeat that was not stored changes no history.
    if (!c.stored && !c.deleted) return;
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
      auto it = by_key_.find(c.key);
      if (it != by_key_.end() && !c.deleted) {
        for (size_t i : it->second.aggs) {
          Agg& a = aggs_[i];
          if (c.sample.time_ms < a.next_start) {
            a.corrections.insert(Bucket(c.sample.time_ms, a.def.step_ms).first);
            wake = true;
          }
        }
        for (size_t i : it->second.rolls) {
          rolls_[i].dirty = true;
          wake = true;
        }
      }
      auto s = stale_.find(c.key);
      if (s != stale_.end()) {
        s->second.check_at = 0;
        wake = true;
      }
      if (wake) {
        pending_seq_ = std::max(pending_seq_, c.seq);
        wake_ = true;
      }
    }
    if (wake) cv_.notify_all();
  }

  // The changes the listener saw are committed before anything is read.
  void EnsureCommitted() {
    if (committed_) return;
    uint64_t seq;
    {
      std::lock_guard<std::mutex> lock(mu_);
      seq = pending_seq_;
    }
    if (seq) {
      Status st = store_->WaitCommitted(seq);
      if (!st.ok()) log_->warn("derived: waiting for commit: {}", st.message());
    }
    committed_ = true;
  }

  // The body of a bucket: what GET /api/v1/history (numeric, counter) or
  // /stats (boolean, uptime, string) answers for [start, end).
  Result<json> AggregateBody(const Agg& a, int64_t start, int64_t end) const {
    store::HistoryQuery q{a.def.key, start, end, {start}, a.def.step_ms};
    json body = {{"start", MsToSeconds(start)}, {"end", MsToSeconds(end)}};
    if (a.type == store::KeyType::kNumeric || a.type == store::KeyType::kCounter) {
      Result<std::vector<store::AggregateBucket>> buckets = store::Downsample(*store_, q);
      if (!buckets.ok()) return buckets.status();
      const store::AggregateBucket& b = buckets->front();
      if (a.type == store::KeyType::kCounter) {
        body["increase"] = OrNull(b.increase);
        body["rate"] = OrNull(b.rate);
        return body;
      }
      body["avg"] = OrNull(b.avg);
      body["twavg"] = OrNull(b.twavg);
      body["min"] = OrNull(b.min);
      body["max"] = OrNull(b.max);
      body["count"] = b.count;
      return body;
    }
    Result<store::KeyStats> stats = store::Stats(*store_, q, false, options_.tz);
    if (!stats.ok()) return stats.status();
    // Stats lists both states of a boolean key, so time.true is always there.
    PutStates(stats->states, body);
    return body;
  }

  void RunAggregate(Agg& a, int64_t now) {
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

  void PublishBucket(Agg& a, int64_t start, int64_t end, const char* mark, bool retain) {
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

  Result<json> RollingBody(const Roll& r, int64_t now) const {
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

  void RunRolling(Roll& r, int64_t now) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      const bool due =
          now >= r.next_refresh || (r.dirty && now >= r.last_run + kChangeRefreshMinMs);
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

  void RunStale(int64_t now) {
    if (now >= next_stale_scan_) {
      std::map<std::string, int64_t> wanted;
      for (const store::KeyInfo& k : store_->Keys()) {
        if (k.options.stale_after_ms > 0) wanted[k.name] = k.options.stale_after_ms;
      }
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = stale_.begin(); it != stale_.end();) {
        it = wanted.count(it->first) ? std::next(it) : stale_.erase(it);
      }
      for (const auto& [key, after] : wanted) {
        Stale& s = stale_[key];
        if (s.after_ms != after) s.check_at = 0;
        s.after_ms = after;
      }
      next_stale_scan_ = now + kStaleRescanMs;
    }
    std::vector<std::pair<std::string, int64_t>> due;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [key, s] : stale_) {
        if (s.check_at <= now) due.push_back({key, s.after_ms});
      }
    }
    for (const auto& [key, after] : due) {
      EnsureCommitted();
      Result<store::KeyInfo> info = store_->Get(key);
      if (!info.ok()) continue;  // deleted; the next scan forgets it
      // The rule history uses: a value is unknown from its change + stale_after.
      const bool stale = !info->last || now >= info->last->time_ms + after;
      bool publish = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = stale_.find(key);
        if (it == stale_.end()) continue;
        Stale& s = it->second;
        publish = !s.published || *s.published != stale;
        s.published = stale;
        s.check_at = stale ? kNever : info->last->time_ms + after;
      }
      if (!publish) continue;
      Message m;
      m.topic = derived_prefix_ + key + "/stale";
      m.payload = stale ? "true" : "false";
      m.retain = options_.retain;
      Enqueue(std::move(m));
    }
  }

  void ReportError(bool& logged, const std::string& what, const Status& st) {
    store_->metrics().Add("komoku_derived_errors_total");
    if (!logged) log_->warn("derived {}: {}", what, st.message());
    logged = true;
  }

  void Enqueue(Message m) {
    {
      std::lock_guard<std::mutex> lock(out_mu_);
      m.id = next_message_id_++;
      if (queue_.size() >= std::max<size_t>(options_.queue_max, 1)) {
        queue_.pop_front();  // the oldest goes: newer values matter more
        store_->metrics().Add("komoku_derived_dropped_total");
      }
      queue_.push_back(std::move(m));
      store_->metrics().Set("komoku_derived_queue_depth", static_cast<int64_t>(queue_.size()));
    }
    out_cv_.notify_all();
  }

  // Home Assistant discovery configs, retained whatever `retain` says: Home
  // Assistant reads them when it starts.
  void QueueDiscovery() {
    const std::string status = options_.prefix + "/status";
    json device = {
        {"identifiers", json::array({"komoku"})}, {"name", "Komoku"}, {"manufacturer", "Komoku"}};
    if (!configuration_url_.empty()) device["configuration_url"] = configuration_url_;
    auto emit = [&](const std::string& component, const std::string& key, const std::string& name,
                    json config) {
      const std::string id = DiscoveryId(key, name);
      config["unique_id"] = id;
      config["object_id"] = id;
      config["availability_topic"] = status;
      config["payload_available"] = "online";
      config["payload_not_available"] = "offline";
      config["device"] = device;
      Message m;
      m.topic = options_.discovery_prefix + "/" + component + "/" + id + "/config";
      m.payload = store::DumpJson(config);
      m.retain = true;
      {
        std::lock_guard<std::mutex> lock(mu_);
        discovery_topics_.insert(m.topic);
      }
      Enqueue(std::move(m));
    };
    auto set_if = [](json& j, const char* field, const std::string& v) {
      if (!v.empty()) j[field] = v;
    };
    for (const Agg& a : aggs_) {
      const std::string topic = derived_prefix_ + a.def.key + "/" + a.def.resolution;
      json c = {{"name", a.def.key + " " + a.def.resolution},
                {"state_topic", topic},
                {"json_attributes_topic", topic}};
      if (a.type == store::KeyType::kNumeric) {
        c["value_template"] = "{{ value_json.twavg }}";
        c["state_class"] = "measurement";
      } else if (a.type == store::KeyType::kCounter) {
        c["value_template"] = "{{ value_json.increase }}";
      } else if (IsBoolean(a.type)) {
        c["name"] = a.def.key + " " + a.def.resolution + " time true";
        c["value_template"] = "{{ value_json.time['true'] }}";
        c["unit_of_measurement"] = "s";
        c["device_class"] = "duration";
      } else {
        c["name"] = a.def.key + " " + a.def.resolution + " changes";
        c["value_template"] = "{{ value_json.changes }}";
      }
      set_if(c, "unit_of_measurement", a.def.unit);
      set_if(c, "device_class", a.def.device_class);
      emit("sensor", a.def.key, a.def.resolution, std::move(c));
    }
    for (const Roll& r : rolls_) {
      const std::string topic = derived_prefix_ + r.def.key + "/" + r.def.name;
      json c = {{"name", r.def.key + " " + r.def.name},
                {"state_topic", topic},
                {"value_template", "{{ value_json.value }}"},
                {"state_class", "measurement"}};
      if (r.def.stat == RollingStat::kTime) {
        c["unit_of_measurement"] = "s";
        c["device_class"] = "duration";
      } else if (r.def.stat == RollingStat::kHours) {
        c["unit_of_measurement"] = "h";
        c["device_class"] = "duration";
      }
      set_if(c, "unit_of_measurement", r.def.unit);
      set_if(c, "device_class", r.def.device_class);
      emit("sensor", r.def.key, r.def.name, std::move(c));
    }
    for (const store::KeyInfo& k : store_->Keys()) {
      if (k.options.stale_after_ms <= 0) continue;
      emit("binary_sensor", k.name, "stale",
           {{"name", k.name + " stale"},
            {"state_topic", derived_prefix_ + k.name + "/stale"},
            {"payload_on", "true"},
            {"payload_off", "false"},
            {"device_class", "problem"}});
    }
    for (const DiscoveryKey& k : options_.discovery_keys) {
      Result<store::KeyInfo> info = store_->Get(k.key);
      if (!info.ok()) continue;
      const std::string topic = options_.prefix + "/state/" + k.key;
      json c = {{"name", k.key}, {"state_topic", topic}, {"json_attributes_topic", topic}};
      std::string component = "sensor";
      if (IsBoolean(info->type)) {
        component = "binary_sensor";
        c["value_template"] = "{{ 'ON' if value_json.value else 'OFF' }}";
      } else {
        c["value_template"] = "{{ value_json.value }}";
        if (info->type == store::KeyType::kNumeric) c["state_class"] = "measurement";
        if (info->type == store::KeyType::kCounter) c["state_class"] = "total_increasing";
      }
      set_if(c, "unit_of_measurement", k.unit);
      set_if(c, "device_class", k.device_class);
      emit(component, k.key, "state", std::move(c));
    }
  }

  void WorkerLoop() {
    for (;;) {
      RunDue();
      const int64_t wait = std::clamp<int64_t>(NextDueMs() - store_->clock().NowMs(), 1, 1000);
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(wait), [&] { return stopped_ || wake_; });
      wake_ = false;
      if (stopped_) return;
    }
  }

  void SenderLoop() {
    for (;;) {
      const bool ok = Flush();
      std::unique_lock<std::mutex> lock(out_mu_);
      if (ok) {
        out_cv_.wait(lock, [&] { return sender_stop_ || !queue_.empty(); });
      } else {
        out_cv_.wait_for(lock, kRetryDelay, [&] { return sender_stop_; });
      }
      if (sender_stop_) return;
    }
  }

  // Home Assistant configs published before (by an earlier start or before
  // a reload) that this one does not publish: an empty retained message
  // removes each from Home Assistant and the broker. Remembered in the state
  // file until sent, so a broker that is away does not leave them behind.
  void ClearDiscovery(const std::set<std::string>& before) {
    std::vector<std::string> clear;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const std::string& topic : before) {
        if (discovery_topics_.count(topic) == 0) clear.push_back(topic);
      }
      discovery_to_clear_.insert(clear.begin(), clear.end());
    }
    if (!clear.empty()) {
      log_->info("derived: clearing {} Home Assistant configs no longer defined", clear.size());
    }
    for (const std::string& topic : clear) {
      Message m;
      m.topic = topic;
      m.retain = true;
      m.clears_discovery = true;
      Enqueue(std::move(m));
    }
  }

  // The state file: {"version": 1, "aggregates": [{"key", "resolution",
  // "next"}], "discovery": [config topics]}, "next" the end of the newest
  // bucket sent (epoch ms); "discovery" (optional) the Home Assistant
  // configs published and not cleared since.
  Result<SavedState> LoadState() const {
    SavedState out;
    std::ifstream in(options_.state_path, std::ios::binary);
    if (!in) return out;  // first start
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (!j.is_object() || j.value("version", 0) != 1 || !j["aggregates"].is_array()) {
      return Status::Corruption("derived state file '" + options_.state_path +
                                "' is not a Komoku derived state (version 1); remove it to start "
                                "over at the current buckets");
    }
    for (const json& a : j["aggregates"]) {
      if (!a.is_object() || !a["key"].is_string() || !a["resolution"].is_string() ||
          !a["next"].is_number_integer()) {
        return Status::Corruption("derived state file '" + options_.state_path + "': bad entry " +
                                  store::DumpJson(a));
      }
      out.next[a["key"].get<std::string>() + "\n" + a["resolution"].get<std::string>()] =
          a["next"].get<int64_t>();
    }
    if (j.contains("discovery")) {
      if (!j["discovery"].is_array()) {
        return Status::Corruption("derived state file '" + options_.state_path +
                                  "': \"discovery\" is not a list");
      }
      for (const json& t : j["discovery"]) {
        if (t.is_string()) out.discovery.insert(t.get<std::string>());
      }
    }
    return out;
  }

  void SaveState() {
    if (options_.state_path.empty()) return;
    json list = json::array();
    json discovery = json::array();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const Agg& a : aggs_) {
        list.push_back(
            {{"key", a.def.key}, {"resolution", a.def.resolution}, {"next", a.sent_next}});
      }
      std::set<std::string> topics = discovery_topics_;
      topics.insert(discovery_to_clear_.begin(), discovery_to_clear_.end());
      for (const std::string& t : topics) discovery.push_back(t);
    }
    std::lock_guard<std::mutex> lock(state_file_mu_);
    Status st = WriteFileAtomically(
        options_.state_path,
        store::DumpJson({{"version", 1}, {"aggregates", list}, {"discovery", discovery}}) + "\n");
    if (!st.ok()) {
      store_->metrics().Add("komoku_derived_errors_total");
      log_->warn("derived: {}", st.message());
    }
  }

  // Set before Start, constant after.
  std::string configuration_url_;
  // Constant after Init.
  const DerivedOptions options_;
  store::Store* const store_;
  const PublishFn publish_;
  const std::shared_ptr<spdlog::logger> log_;
  const std::string derived_prefix_;
  std::map<std::string, KeyDefs, std::less<>> by_key_;
  // The vectors are fixed after Init; their elements' marked fields are
  // guarded by mu_, `recent` is the worker's.
  std::vector<Agg> aggs_;
  std::vector<Roll> rolls_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;                      // guarded by mu_
  bool started_ = false;                      // guarded by mu_
  bool wake_ = false;                         // guarded by mu_
  uint64_t pending_seq_ = 0;                  // guarded by mu_
  std::map<std::string, Stale> stale_;        // guarded by mu_
  std::set<std::string> discovery_topics_;    // configs published; guarded by mu_
  std::set<std::string> discovery_to_clear_;  // clears not yet sent; guarded by mu_
  int64_t next_stale_scan_ = 0;               // guarded by mu_ (written by the worker)

  std::mutex run_mu_;       // one RunDue at a time
  bool committed_ = false;  // guarded by run_mu_

  mutable std::mutex out_mu_;
  std::condition_variable out_cv_;
  std::deque<Message> queue_;     // guarded by out_mu_
  uint64_t next_message_id_ = 1;  // guarded by out_mu_
  bool sender_stop_ = false;      // guarded by out_mu_
  std::mutex flush_mu_;           // one sender at a time keeps the order
  std::mutex state_file_mu_;

  int listener_id_ = 0;
  std::thread worker_;
  std::thread sender_;
};

Publisher::Publisher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Publisher::~Publisher() = default;

Result<std::unique_ptr<Publisher>> Publisher::Create(DerivedOptions options, store::Store* store,
                                                     PublishFn publish,
                                                     std::shared_ptr<spdlog::logger> log,
                                                     const KeyTypeFn& key_type) {
  auto impl = std::make_unique<Impl>(std::move(options), store, std::move(publish),
                                     log ? std::move(log) : spdlog::default_logger());
  KOMOKU_RETURN_IF_ERROR(impl->Init(key_type));
  return std::unique_ptr<Publisher>(new Publisher(std::move(impl)));
}

void Publisher::SetConfigurationUrl(std::string url) { impl_->SetConfigurationUrl(std::move(url)); }
Status Publisher::Start() { return impl_->Start(); }
void Publisher::Stop() { impl_->Stop(); }
void Publisher::RunDue() { impl_->RunDue(); }
void Publisher::Flush() { (void)impl_->Flush(); }
size_t Publisher::QueueDepth() const { return impl_->QueueDepth(); }
int64_t Publisher::NextDueMs() const { return impl_->NextDueMs(); }

}  // namespace komoku::derived
