// The derived-state publisher: a worker computes what is due (closed
// buckets, corrections, rolling refreshes, staleness) through the history
// read API, and a sender drains a bounded queue to the broker in order.
// Decisions and payloads: docs/derived.md. This file holds its life cycle
// (start, stop, the worker), the store listener and the front door; the
// rest is in the files named after what each handles (publisher_impl.h).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <thread>

#include "derived/derived.h"
#include "derived/internal.h"
#include "derived/publisher_impl.h"
#include "series/history.h"
#include "wire/input.h"

namespace komoku::derived {

Publisher::Impl::Impl(DerivedOptions options, store::Store* store, PublishFn publish,
                      std::shared_ptr<spdlog::logger> log)
    : options_(std::move(options)),
      store_(store),
      publish_(std::move(publish)),
      log_(std::move(log)),
      derived_prefix_(options_.prefix + "/derived/") {}

Publisher::Impl::~Impl() { Stop(); }

Status Publisher::Impl::Init(const KeyTypeFn& key_type) {
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

Status Publisher::Impl::Start() {
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

void Publisher::Impl::Stop() {
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

void Publisher::Impl::RunDue() {
  std::lock_guard<std::mutex> run(run_mu_);
  const int64_t now = store_->clock().NowMs();
  committed_ = false;
  for (Agg& a : aggs_) RunAggregate(a, now);
  for (Roll& r : rolls_) RunRolling(r, now);
  RunStale(now);
}

int64_t Publisher::Impl::NextDueMs() const {
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

Result<store::KeyType> Publisher::Impl::TypeOf(const KeyTypeFn& key_type, const std::string& key,
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

void Publisher::Impl::OnChange(const store::Change& c) {
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

void Publisher::Impl::EnsureCommitted() {
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

void Publisher::Impl::ReportError(bool& logged, const std::string& what, const Status& st) {
  store_->metrics().Add("komoku_derived_errors_total");
  if (!logged) log_->warn("derived {}: {}", what, st.message());
  logged = true;
}

void Publisher::Impl::WorkerLoop() {
  for (;;) {
    RunDue();
    const int64_t wait = std::clamp<int64_t>(NextDueMs() - store_->clock().NowMs(), 1, 1000);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(wait), [&] { return stopped_ || wake_; });
    wake_ = false;
    if (stopped_) return;
  }
}

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
