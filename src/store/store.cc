#include "store/store.h"

#include <spdlog/spdlog.h>

#include "store/hot_store.h"

#include <filesystem>
#include <system_error>

namespace komoku::store {
namespace {

// A change may come from the past (a late reading) but not from further in the
// future than a clock that is off by a day.
constexpr int64_t kMaxFutureMs = 24LL * 3600 * 1000;

}  // namespace

Store::Store(const StoreOptions& options, std::shared_ptr<spdlog::logger> log)
    : clock_(options.clock ? options.clock : SystemClock::Get()), log_(std::move(log)) {
  if (!log_) log_ = spdlog::default_logger();
}

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options,
                                           std::shared_ptr<spdlog::logger> log) {
  std::unique_ptr<Store> store(new Store(options, std::move(log)));
  std::error_code ec;
  std::filesystem::create_directories(options.data_dir, ec);
  if (ec) {
    return Status::IOError("cannot create data directory " + options.data_dir + ": " +
                           ec.message());
  }
  store->db_path_ = (std::filesystem::path(options.data_dir) / "komoku.db").string();
  Result<std::unique_ptr<HotStore>> hot =
      HotStore::Open(store->db_path_, options.hot, store->log_, &store->metrics_);
  if (!hot.ok()) return hot.status();
  store->hot_ = std::move(hot.value());

  Result<std::vector<HotStore::LoadedKey>> loaded = store->hot_->LoadKeys();
  if (!loaded.ok()) return loaded.status();
  for (auto& k : *loaded) {
    store->next_key_id_ = std::max(store->next_key_id_, k.id + 1);
    store->keys_.emplace(std::move(k.name), KeyState{k.id, k.type, std::move(k.last),
                                                     std::move(k.previous)});
  }
  store->metrics_.Set("komoku_keys", static_cast<int64_t>(store->keys_.size()));
  return store;
}

Store::~Store() { Close(); }

Status Store::Refuse(const char* reason, Status status) {
  metrics_.Add(std::string("komoku_refused_total{reason=\"") + reason + "\"}");
  return status;
}

Result<Change> Store::Put(std::string_view key, const InputValue& value,
                          const PutOptions& options) {
  Status name_ok = ValidateKeyName(key);
  if (!name_ok.ok()) return Refuse("bad_key", name_ok);
  const int64_t now = clock_->NowMs();
  const int64_t time = options.time_ms.value_or(now);
  if (time < 0 || time > now + kMaxFutureMs) {
    return Refuse("bad_time", Status::InvalidArgument(
                                  "key '" + std::string(key) + "': time " + std::to_string(time) +
                                  " ms is before 1970 or more than a day in the future"));
  }

  Change change;
  uint64_t seq = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return Status::Busy("store is closing");
    auto it = keys_.find(key);
    KeyType type = it != keys_.end() ? it->second.type : GuessType(value);
    Result<Value> coerced = CoerceValue(type, value);
    if (!coerced.ok()) {
      return Refuse("bad_value", coerced.status().WithContext(
                                     "key '" + std::string(key) + "' (" + KeyTypeName(type) + ")"));
    }
    if (it == keys_.end()) {
      int64_t id = next_key_id_++;
      it = keys_.emplace(std::string(key), KeyState{id, type, std::nullopt, std::nullopt}).first;
      hot_->EnqueueNewKey(id, it->first, type, now);
      change.created_key = true;
      metrics_.Set("komoku_keys", static_cast<int64_t>(keys_.size()));
    }
    KeyState& state = it->second;
    change.key = it->first;
    change.type = type;
    change.sample = Sample{time, std::move(coerced.value())};
    change.previous = state.last;
    // The newest time wins the current value; a tie goes to the later put.
    change.is_current = !state.last || time >= state.last->time_ms;
    if (change.is_current) {
      state.previous = std::move(state.last);
      state.last = change.sample;
    } else if (!state.previous || time >= state.previous->time_ms) {
      // A late change between the previous and the current value becomes the
      // previous one, as a restart would load it (newest time, then newest put).
      state.previous = change.sample;
    }
    seq = hot_->EnqueueChange(state.id, change.sample);
  }
  metrics_.Add("komoku_changes_accepted_total");
  if (options.wait_committed) {
    Status st = hot_->WaitCommitted(seq);
    if (!st.ok()) return st;
  }
  std::lock_guard<std::mutex> lock(listeners_mu_);
  for (auto& [id, listener] : listeners_) listener(change);
  return change;
}

Result<KeyInfo> Store::Get(std::string_view key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key);
  if (it == keys_.end()) return Status::NotFound("no key '" + std::string(key) + "'");
  return KeyInfo{it->first, it->second.type, it->second.last, it->second.previous};
}

std::vector<KeyInfo> Store::Keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<KeyInfo> out;
  out.reserve(keys_.size());
  for (const auto& [name, state] : keys_) {
    out.push_back(KeyInfo{name, state.type, state.last, state.previous});
  }
  return out;
}

Result<std::vector<Sample>> Store::History(std::string_view key, int64_t from_ms, int64_t to_ms,
                                           size_t limit) const {
  int64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = keys_.find(key);
    if (it == keys_.end()) return Status::NotFound("no key '" + std::string(key) + "'");
    id = it->second.id;
  }
  return hot_->ReadHistory(id, from_ms, to_ms, limit);
}

size_t Store::QueueDepth() const { return hot_->QueueDepth(); }
std::chrono::milliseconds Store::WriterStalledFor() const { return hot_->StalledFor(); }

int Store::AddListener(Listener listener) {
  std::lock_guard<std::mutex> lock(listeners_mu_);
  int id = next_listener_id_++;
  listeners_.emplace(id, std::move(listener));
  return id;
}

void Store::RemoveListener(int id) {
  std::lock_guard<std::mutex> lock(listeners_mu_);
  listeners_.erase(id);
}

void Store::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
  }
  if (hot_) hot_->Close();
}

}  // namespace komoku::store
