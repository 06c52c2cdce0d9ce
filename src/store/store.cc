#include "store/store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "cold/cold_store.h"
#include "core/civil_time.h"
#include "hot/hot_store.h"
#include "hot/stored_options.h"

namespace komoku::store {
namespace {

// A change may come from the past (a late reading) but not from further in the
// future than a clock that is off by a day.
constexpr int64_t kMaxFutureMs = 24LL * 3600 * 1000;

// Types whose values have the same representation: a define may switch
// between them under existing data.
bool SameRepresentation(KeyType a, KeyType b) {
  auto group = [](KeyType t) {
    switch (t) {
      case KeyType::kNumeric:
      case KeyType::kCounter:
        return 0;
      case KeyType::kBoolean:
      case KeyType::kUptime:
        return 1;
      case KeyType::kString:
        return 2;
    }
    return 3;
  };
  return group(a) == group(b);
}

std::string Quoted(std::string_view key) { return "key '" + std::string(key) + "'"; }

// Bytes of a SQLite integer in a record (its serial type's size).
uint64_t IntBytes(int64_t v) {
  if (v == 0 || v == 1) return 0;  // serial types 8 and 9 hold no bytes
  uint64_t u = v < 0 ? ~static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  if (u < 0x80) return 1;
  if (u < 0x8000) return 2;
  if (u < 0x800000) return 3;
  if (u < 0x80000000ULL) return 4;
  if (u < 0x800000000000ULL) return 6;
  return 8;
}

// What a stored change adds to the hot store: the table row (header, key id,
// time, value; rowid and cell size as varints) and the index entry (key id,
// time, rowid).
uint64_t HotRowBytes(int64_t key_id, uint64_t seq, const Sample& s) {
  uint64_t value = 8;  // a REAL
  if (const bool* b = std::get_if<bool>(&s.value)) value = IntBytes(*b);
  if (const std::string* t = std::get_if<std::string>(&s.value)) value = t->size();
  const uint64_t id = IntBytes(key_id), time = IntBytes(s.time_ms);
  const uint64_t rowid = IntBytes(static_cast<int64_t>(seq));
  return (4 + id + time + value + 2 + rowid) + (4 + id + time + rowid + 2);
}

}  // namespace

Store::Store(const StoreOptions& options, std::shared_ptr<spdlog::logger> log)
    : clock_(options.clock ? options.clock : SystemClock::Get()),
      boolean_words_(options.boolean_words),
      log_(std::move(log)) {
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
  const std::string lock_path = LockPath(options.data_dir);
  store->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (store->lock_fd_ < 0) {
    return Status::IOError("cannot open " + lock_path + ": " + std::strerror(errno));
  }
  if (::flock(store->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return Status::Busy(options.data_dir + " is in use by another komoku process (" + lock_path +
                        " is locked)")
        .WithReason("locked");
  }
  store->db_path_ = (std::filesystem::path(options.data_dir) / "komoku.db").string();
  Result<std::unique_ptr<HotStore>> hot =
      HotStore::Open(store->db_path_, options.hot, store->log_, &store->metrics_);
  if (!hot.ok()) return hot.status();
  store->hot_ = std::move(hot.value());

  ColdStoreOptions cold_options;
  cold_options.dir = (std::filesystem::path(options.data_dir) / "segments").string();
  cold_options.quarantine_dir = (std::filesystem::path(options.data_dir) / "quarantine").string();
  cold_options.sync = options.cold.sync;
  store->cold_options_ = options.cold;
  Result<std::unique_ptr<ColdStore>> cold =
      ColdStore::Open(cold_options, store->log_, &store->metrics_);
  if (!cold.ok()) return cold.status();
  store->cold_ = std::move(cold.value());
  std::shared_ptr<const ColdState> snap = store->cold_->state();
  const ColdMark mark = snap->mark();
  // A compaction that committed but did not get to delete its hot rows
  // finishes here (reads skip those rows meanwhile).
  if (mark.cold_to != INT64_MIN) store->hot_->EnqueueDeleteCompacted(mark);

  Result<std::vector<HotStore::LoadedKey>> loaded = store->hot_->LoadKeys(mark);
  if (!loaded.ok()) return loaded.status();
  Result<uint64_t> max_seq = store->hot_->MaxChangeSeq();
  if (!max_seq.ok()) return max_seq.status();
  // Sequence numbers never go back, even when every row moved to segments.
  store->last_change_seq_ = std::max<uint64_t>(*max_seq, mark.cold_seq);
  for (auto& k : *loaded) {
    if (k.last && k.previous) continue;
    // The newest changes of a key that has been quiet longer than the hot
    // window are in segments.
    std::vector<Sample> newest;
    if (k.last) newest.push_back(*k.last);
    Result<std::optional<Sample>> c = snap->At(k.name, INT64_MAX);
    if (!c.ok()) return c.status();
    if (*c) {
      int64_t t = (*c)->time_ms;
      newest.push_back(**c);
      Result<std::optional<Sample>> p = snap->At(k.name, t - 1);
      if (!p.ok()) return p.status();
      if (*p) newest.push_back(**p);
    }
    std::stable_sort(newest.begin(), newest.end(),
                     [](const Sample& a, const Sample& b) { return a.time_ms > b.time_ms; });
    k.last.reset();
    k.previous.reset();
    if (!newest.empty()) k.last = newest[0];
    if (newest.size() > 1) k.previous = newest[1];
  }
  {
    std::lock_guard<std::mutex> lock(store->mu_);
    for (auto& k : *loaded) {
      store->next_key_id_ = std::max(store->next_key_id_, k.id + 1);
      KeyState state{k.id, k.type, KeyOptions{}, std::move(k.last), std::move(k.previous), 0, 0};
      Result<KeyOptions> options = DecodeStoredOptions(k.options_json, k.type);
      if (!options.ok()) {
        return Status::Corruption(store->db_path_ + ": options of key '" + k.name +
                                  "': " + options.status().message());
      }
      state.options = *options;
      if (state.last) state.last_seen_ms = state.last->time_ms;
      if (k.last_seen_ms) state.last_seen_ms = std::max(state.last_seen_ms, *k.last_seen_ms);
      auto it = store->AddKeyState(std::move(k.name), std::move(state));
      // A timeout that fell while Komoku was down is recorded at its due
      // time by the first timer run.
      store->ArmUptime(it->first, it->second);
    }
    store->metrics_.Set("komoku_keys", static_cast<int64_t>(store->keys_.size()));
  }
  store->opened_ms_ = store->clock_->NowMs();
  if (options.start_timers) store->StartTimers();
  if (options.cold.background) {
    Store* raw = store.get();
    store->compactor_ = std::thread([raw] { raw->CompactorLoop(); });
  }
  return store;
}

Store::~Store() { Close(); }

std::string Store::LockPath(const std::string& data_dir) {
  return (std::filesystem::path(data_dir) / "LOCK").string();
}

Status Store::Refuse(Status status) {
  metrics_.Add("komoku_refused_total{reason=\"" + status.reason() + "\"}");
  return status;
}

void Store::ArmUptime(const std::string& name, KeyState& state) {
  if (state.due_ms) uptime_due_.erase({state.due_ms, name});
  state.due_ms = 0;
  if (state.type != KeyType::kUptime || !state.last) return;
  const bool* on = std::get_if<bool>(&state.last->value);
  if (!on || !*on) return;
  state.due_ms = state.last_seen_ms + state.options.max_time_ms;
  bool earliest = uptime_due_.empty() || state.due_ms < uptime_due_.begin()->first;
  uptime_due_.insert({state.due_ms, name});
  if (earliest) timer_cv_.notify_one();
}

Result<Change> Store::Put(std::string_view key, const InputValue& value,
                          const PutOptions& options) {
  return Apply(
      key,
      [&](const KeyState* state, KeyType* type) { return CheckValue(state, value, options, type); },
      options);
}

Result<Value> Store::CheckValue(const KeyState* state, const InputValue& value,
                                const PutOptions& options, KeyType* type) const {
  *type = state ? state->type : options.new_key_type ? *options.new_key_type : GuessType(value);
  Result<Value> v = CoerceValue(*type, value, boolean_words_);
  if (!v.ok()) return v.status().WithReason("wrong_type");
  if (state && state->options.values) {
    const auto& allowed = *state->options.values;
    const std::string& s = std::get<std::string>(*v);
    if (std::find(allowed.begin(), allowed.end(), s) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return Status::InvalidArgument("value '" + s + "' is not allowed (allowed: " + list + ")")
          .WithReason("value_not_allowed");
    }
  }
  return v;
}

Result<std::vector<Change>> Store::PutAll(const std::vector<KeyPut>& puts, size_t* refused) {
  std::vector<std::optional<Sample>> stored_at_time(puts.size());
  for (size_t i = 0; i < puts.size(); ++i) {
    if (Status st = CheckPut(puts[i].key, puts[i].options); !st.ok()) {
      if (refused) *refused = i;
      return st;
    }
    stored_at_time[i] = StoredAtTime(puts[i].key, puts[i].options);
  }
  std::vector<Change> changes;
  std::vector<uint64_t> op_seqs(puts.size(), 0);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return Status::Busy("store is closing");
    // Every value is checked before any change is applied, so a refusal
    // changes nothing. A key the batch creates has the type its first
    // change gives it, as it will once that change is applied.
    std::map<std::string_view, KeyState> created;
    std::vector<std::pair<KeyType, Value>> checked;
    checked.reserve(puts.size());
    for (size_t i = 0; i < puts.size(); ++i) {
      const KeyPut& p = puts[i];
      auto it = keys_.find(p.key);
      const KeyState* state = it == keys_.end() ? nullptr : &it->second;
      if (!state) {
        auto c = created.find(p.key);
        if (c != created.end()) state = &c->second;
      }
      KeyType type;
      Result<Value> value = CheckValue(state, *p.value, p.options, &type);
      if (!value.ok()) {
        if (refused) *refused = i;
        return Refuse(value.status().WithContext(Quoted(p.key) + " (" + KeyTypeName(type) + ")"));
      }
      if (!state) created.emplace(p.key, KeyState{0, type, KeyOptions{}, {}, {}, 0, 0});
      checked.emplace_back(type, std::move(value.value()));
    }
    changes.reserve(puts.size());
    for (size_t i = 0; i < puts.size(); ++i) {
      changes.push_back(ApplyLocked(puts[i].key, checked[i].first, std::move(checked[i].second),
                                    puts[i].options, stored_at_time[i], &op_seqs[i]));
    }
  }
  for (size_t i = 0; i < puts.size(); ++i) {
    KOMOKU_RETURN_IF_ERROR(FinishPut(changes[i], puts[i].options, op_seqs[i]));
  }
  return changes;
}

Result<Change> Store::Increment(std::string_view key, double delta, const PutOptions& options) {
  return Apply(
      key,
      [&](const KeyState* state, KeyType* type) -> Result<Value> {
        if (state && state->type != KeyType::kCounter && state->type != KeyType::kNumeric) {
          return Status::InvalidArgument(std::string("increment needs a counter or numeric key, "
                                                     "not ") +
                                         KeyTypeName(state->type))
              .WithReason("wrong_type");
        }
        *type = state ? state->type : KeyType::kCounter;
        double base = state && state->last ? std::get<double>(state->last->value) : 0.0;
        double v = base + delta;
        if (!std::isfinite(v)) {
          return Status::InvalidArgument("increment overflows").WithReason("wrong_type");
        }
        return Value(v);
      },
      options);
}

Result<Change> Store::Apply(std::string_view key, const ValueFn& make_value,
                            const PutOptions& options) {
  KOMOKU_RETURN_IF_ERROR(CheckPut(key, options));
  const std::optional<Sample> stored_at_time = StoredAtTime(key, options);
  Change change;
  uint64_t op_seq = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return Status::Busy("store is closing");
    auto it = keys_.find(key);
    KeyType type;
    Result<Value> value = make_value(it == keys_.end() ? nullptr : &it->second, &type);
    if (!value.ok()) {
      return Refuse(value.status().WithContext(Quoted(key) + " (" + KeyTypeName(type) + ")"));
    }
    change = ApplyLocked(key, type, std::move(value.value()), options, stored_at_time, &op_seq);
  }
  KOMOKU_RETURN_IF_ERROR(FinishPut(change, options, op_seq));
  return change;
}

Status Store::CheckPut(std::string_view key, const PutOptions& options) {
  Status name_ok = ValidateKeyName(key);
  if (!name_ok.ok()) return Refuse(name_ok.WithReason("bad_key"));
  const int64_t now = clock_->NowMs();
  if (options.time_ms && (*options.time_ms < 0 || *options.time_ms > now + kMaxFutureMs)) {
    return Refuse(Status::InvalidArgument(Quoted(key) + ": time " +
                                          std::to_string(*options.time_ms) +
                                          " ms is before 1970 or more than a day in the future")
                      .WithReason("bad_time"));
  }
  if (Status health = hot_->WriteHealth(); !health.ok()) return Refuse(health);
  return Status::Ok();
}

std::optional<Sample> Store::StoredAtTime(std::string_view key, const PutOptions& options) const {
  // A change with a time of its own may repeat one stored already (a
  // broker redelivering after a reconnect, an ingest log replayed after a
  // crash, a backfill sent twice). The current and previous values are
  // compared under the lock (ApplyLocked); an older time is looked up in
  // history here, before taking it. A repeat of a change not yet committed
  // is caught by the hot store's writer instead (HotStore::EnqueueChange's
  // dedup).
  if (!options.time_ms || !options.skip_duplicate) return std::nullopt;
  bool look_up = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = keys_.find(key);
    look_up = it != keys_.end() && it->second.last && *options.time_ms < it->second.last->time_ms &&
              !(it->second.previous && it->second.previous->time_ms == *options.time_ms);
  }
  if (look_up) {
    Result<std::optional<Sample>> at = At(key, *options.time_ms);
    if (at.ok() && *at && (*at)->time_ms == *options.time_ms) return std::move(**at);
  }
  return std::nullopt;
}

Change Store::ApplyLocked(std::string_view key, KeyType type, Value value,
                          const PutOptions& options, const std::optional<Sample>& stored_at_time,
                          uint64_t* op_seq_out) {
  const int64_t now = clock_->NowMs();
  const bool dedup = options.time_ms && options.skip_duplicate;
  Change change;
  uint64_t op_seq = 0;
  // Without a time of its own, a change is stamped under the lock, so puts
  // are stamped in the order they apply: a put that comes later is never
  // older (an increment always builds on the current value).
  const int64_t time = options.time_ms ? *options.time_ms : now;
  auto it = keys_.find(key);
  if (it == keys_.end()) {
    int64_t id = next_key_id_++;
    it = AddKeyState(std::string(key), KeyState{id, type, KeyOptions{}, {}, {}, 0, 0});
    hot_->EnqueueUpsertKey(id, it->first, type, EncodeStoredOptions(it->second.options, type), now);
    change.created_key = true;
    metrics_.Set("komoku_keys", static_cast<int64_t>(keys_.size()));
  }
  KeyState& state = it->second;
  change.key = it->first;
  change.type = type;
  change.sample = Sample{time, std::move(value)};
  change.previous = state.last;
  if (dedup) {
    auto same = [&](const std::optional<Sample>& s) {
      return s && s->time_ms == time && s->value == change.sample.value;
    };
    if (same(state.last) || same(state.previous) || same(stored_at_time)) {
      change.duplicate = true;
      change.stored = false;
      change.is_current = same(state.last);
    }
  }
  if (change.duplicate) {
    metrics_.Add("komoku_changes_duplicate_total");
    *op_seq_out = 0;
    return change;
  }
  // The newest time wins the current value; a tie goes to the later put.
  change.is_current = !state.last || time >= state.last->time_ms;
  // A repeat of the current value within same_value_resolution of its
  // stored time is not stored again; it still refreshes an uptime key.
  change.stored = !(change.is_current && state.last && state.last->value == change.sample.value &&
                    time - state.last->time_ms < state.options.same_value_resolution_ms);
  if (change.stored) {
    change.seq = ++last_change_seq_;
    if (change.is_current) {
      state.previous = std::move(state.last);
      state.last = change.sample;
    } else if (!state.previous || time >= state.previous->time_ms) {
      // A late change between the previous and the current value becomes
      // the previous one, as a restart would load it.
      state.previous = change.sample;
    }
    // A late change may repeat one the writer has not committed yet.
    op_seq = hot_->EnqueueChange(state.id, change.seq, change.sample,
                                 /*skip_if_stored=*/!change.is_current && dedup);
    ++state.changes_stored;
    state.hot_bytes += HotRowBytes(state.id, change.seq, change.sample);
  }
  if (type == KeyType::kUptime && change.is_current) {
    const bool* on = std::get_if<bool>(&change.sample.value);
    if (on && *on && time > state.last_seen_ms) {
      state.last_seen_ms = time;
      // Persist the refresh so a restart re-arms the timeout from it.
      if (!change.stored) op_seq = hot_->EnqueueTouch(state.id, time);
    }
    ArmUptime(it->first, state);
  }
  if (op_seq) last_op_seq_ = op_seq;
  *op_seq_out = op_seq;
  return change;
}

Status Store::FinishPut(const Change& change, const PutOptions& options, uint64_t op_seq) {
  if (change.duplicate) return Status::Ok();
  metrics_.Add("komoku_changes_accepted_total");
  if (change.stored) {
    metrics_.Add("komoku_changes_stored_total");
  } else {
    metrics_.Add("komoku_changes_repeated_total");
  }
  if (options.wait_committed && op_seq) KOMOKU_RETURN_IF_ERROR(hot_->WaitCommitted(op_seq));
  if (change.stored) Notify(change);
  return Status::Ok();
}

void Store::Notify(const Change& change) {
  std::vector<std::shared_ptr<ListenerSlot>> slots;
  {
    std::lock_guard<std::mutex> lock(listeners_mu_);
    if (listeners_.empty()) return;
    slots.reserve(listeners_.size());
    for (auto& [id, slot] : listeners_) {
      ++slot->calls;
      slots.push_back(slot);
    }
  }
  // No lock held: a listener may publish, take its own locks or wait.
  for (const auto& slot : slots) slot->fn(change);
  {
    std::lock_guard<std::mutex> lock(listeners_mu_);
    for (const auto& slot : slots) --slot->calls;
  }
  listeners_cv_.notify_all();
}

Result<KeyInfo> Store::Define(std::string_view key, std::optional<KeyType> type,
                              const KeyOptionsPatch& options) {
  Result<std::vector<KeyInfo>> infos = DefineAll({{std::string(key), type, options}});
  if (!infos.ok()) return infos.status();
  return std::move(infos->front());
}

Result<std::vector<KeyInfo>> Store::DefineAll(const std::vector<KeyDefinition>& defs) {
  for (const KeyDefinition& d : defs) {
    Status name_ok = ValidateKeyName(d.key);
    if (!name_ok.ok()) return Refuse(name_ok.WithReason("bad_key"));
  }
  if (Status health = hot_->WriteHealth(); !health.ok()) return Refuse(health);
  const int64_t now = clock_->NowMs();
  std::vector<KeyInfo> infos;
  uint64_t op_seq = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return Status::Busy("store is closing");
    // Every definition is checked before any is applied: a refusal changes
    // nothing.
    std::vector<std::pair<KeyType, KeyOptions>> planned;
    for (const KeyDefinition& d : defs) {
      auto it = keys_.find(d.key);
      if (it == keys_.end() && !d.type) {
        return Refuse(Status::NotFound(Quoted(d.key) + " does not exist; give its type")
                          .WithReason("unknown_key"));
      }
      KeyType new_type = d.type ? *d.type : it->second.type;
      KeyOptions base;
      if (it != keys_.end()) {
        const KeyState& old = it->second;
        if (new_type != old.type && old.last && !SameRepresentation(new_type, old.type)) {
          return Refuse(Status::InvalidArgument(Quoted(d.key) + " holds " + KeyTypeName(old.type) +
                                                " data; its type cannot become " +
                                                KeyTypeName(new_type))
                            .WithReason("type_change"));
        }
        base = old.options;
        // Options of the old type that the new one does not take are dropped.
        if (new_type != KeyType::kString) base.values.reset();
      }
      Result<KeyOptions> opts = ApplyKeyOptions(base, new_type, d.options);
      if (!opts.ok()) return Refuse(opts.status().WithContext(Quoted(d.key)));
      planned.emplace_back(new_type, std::move(opts.value()));
    }
    for (size_t i = 0; i < defs.size(); ++i) {
      auto it = keys_.find(defs[i].key);
      if (it == keys_.end()) {
        it = AddKeyState(defs[i].key,
                         KeyState{next_key_id_++, planned[i].first, KeyOptions{}, {}, {}, 0, 0});
      }
      KeyState& state = it->second;
      state.type = planned[i].first;
      state.options = std::move(planned[i].second);
      if (state.type == KeyType::kUptime && state.last) {
        // A key that becomes uptime times out from its last change, not the epoch.
        state.last_seen_ms = std::max(state.last_seen_ms, state.last->time_ms);
      }
      ArmUptime(it->first, state);
      op_seq = hot_->EnqueueUpsertKey(state.id, it->first, state.type,
                                      EncodeStoredOptions(state.options, state.type), now);
      infos.push_back(KeyInfo{it->first, state.type, state.options, state.last, state.previous});
    }
    metrics_.Set("komoku_keys", static_cast<int64_t>(keys_.size()));
    rollups_may_be_outdated_ = true;  // the next compaction looks
  }
  if (op_seq) KOMOKU_RETURN_IF_ERROR(hot_->WaitCommitted(op_seq));
  return infos;
}

Status Store::Delete(std::string_view key) {
  if (Status health = hot_->WriteHealth(); !health.ok()) return Refuse(health);
  Change change;
  uint64_t op_seq;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return Status::Busy("store is closing");
    auto it = keys_.find(key);
    if (it == keys_.end()) {
      return Status::NotFound("no " + Quoted(key)).WithReason("unknown_key");
    }
    if (it->second.due_ms) uptime_due_.erase({it->second.due_ms, it->first});
    op_seq = hot_->EnqueueDeleteKey(it->second.id);
    change.key = it->first;
    change.type = it->second.type;
    change.previous = it->second.last;
    change.deleted = true;
    EraseKeyState(it);
    metrics_.Set("komoku_keys", static_cast<int64_t>(keys_.size()));
  }
  KOMOKU_RETURN_IF_ERROR(hot_->WaitCommitted(op_seq));
  {
    // Segments written before now no longer show the key (a key of the same
    // name made later starts afresh).
    std::lock_guard<std::mutex> compact(compact_mu_);
    std::shared_ptr<const ColdState> cur = cold_->state();
    bool held = false;
    for (const auto& seg : cur->segments) held = held || seg->HasKey(change.key);
    if (held) {
      auto next = std::make_shared<ColdState>(*cur);
      uint64_t seq;
      {
        std::lock_guard<std::mutex> lock(mu_);
        seq = last_change_seq_ + 1;
      }
      next->tombstones.push_back({change.key, seq});
      std::unique_lock<std::shared_mutex> swap(cold_rw_);
      KOMOKU_RETURN_IF_ERROR(cold_->Commit(std::move(next)));
    }
  }
  Notify(change);
  return Status::Ok();
}

Result<KeyInfo> Store::Get(std::string_view key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key);
  if (it == keys_.end()) return Status::NotFound("no " + Quoted(key)).WithReason("unknown_key");
  const KeyState& s = it->second;
  return KeyInfo{it->first, s.type, s.options, s.last, s.previous};
}

bool Store::Contains(std::string_view key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return keys_.find(key) != keys_.end();
}

std::vector<KeyInfo> Store::Keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<KeyInfo> out;
  out.reserve(keys_.size());
  for (const auto& [name, s] : keys_) {
    out.push_back(KeyInfo{name, s.type, s.options, s.last, s.previous});
  }
  return out;
}

Store::KeyMap::iterator Store::AddKeyState(std::string name, KeyState state) {
  const int64_t id = state.id;
  auto it = keys_.emplace(std::move(name), std::move(state)).first;
  keys_by_id_[id] = it;
  return it;
}

void Store::EraseKeyState(KeyMap::iterator it) {
  keys_by_id_.erase(it->second.id);
  keys_.erase(it);
}

Result<int64_t> Store::IdOf(std::string_view key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key);
  if (it == keys_.end()) return Status::NotFound("no " + Quoted(key)).WithReason("unknown_key");
  return it->second.id;
}

Status Store::ScanMerged(int64_t id, std::string_view key, const ColdState& cold, int64_t from_ms,
                         int64_t to_ms, uint64_t max_seq,
                         const std::function<bool(const Sample&)>& fn) const {
  const ColdMark mark = cold.mark();
  if (from_ms < mark.cold_to) {
    const int64_t mid = std::min(to_ms, mark.cold_to);
    // Late changes (put after their time was compacted) wait in the hot
    // store for the next compaction; merged in by time, after cold changes
    // of the same time, which were put before them.
    Result<std::vector<Sample>> late = hot_->ReadHistory(id, from_ms, mid, SIZE_MAX, max_seq, mark);
    if (!late.ok()) return late.status();
    size_t i = 0;
    bool go_on = true;
    Status st = cold.Scan(key, from_ms, mid, [&](const Sample& s) {
      while (go_on && i < late->size() && (*late)[i].time_ms < s.time_ms) go_on = fn((*late)[i++]);
      if (go_on) go_on = fn(s);
      return go_on;
    });
    if (!st.ok()) {
      if (st.IsCorruption()) (void)VerifySegments();
      return st;
    }
    while (go_on && i < late->size()) go_on = fn((*late)[i++]);
    if (!go_on) return Status::Ok();
  }
  if (to_ms <= mark.cold_to) return Status::Ok();
  return hot_->ScanHistory(id, std::max(from_ms, mark.cold_to), to_ms, fn, mark, max_seq);
}

Result<std::optional<Sample>> Store::AtMerged(int64_t id, std::string_view key,
                                              const ColdState& cold, int64_t time_ms) const {
  const ColdMark mark = cold.mark();
  Result<std::optional<Sample>> hot = hot_->ReadAt(id, time_ms, mark);
  if (!hot.ok() || mark.cold_to == INT64_MIN) return hot;
  // A hot row at or after cold_to is newer than anything cold.
  if (*hot && (*hot)->time_ms >= mark.cold_to) return hot;
  Result<std::optional<Sample>> cold_at = cold.At(key, time_ms);
  if (!cold_at.ok()) {
    if (cold_at.status().IsCorruption()) (void)VerifySegments();
    return cold_at.status();
  }
  // The later of the two; at the same time the hot one was put later.
  if (!*hot) return cold_at;
  if (!*cold_at || (*cold_at)->time_ms <= (*hot)->time_ms) return hot;
  return cold_at;
}

Result<std::vector<Sample>> Store::History(std::string_view key, int64_t from_ms, int64_t to_ms,
                                           size_t limit, uint64_t max_seq) const {
  Result<int64_t> id = IdOf(key);
  if (!id.ok()) return id.status();
  std::shared_lock<std::shared_mutex> lock(cold_rw_);
  std::shared_ptr<const ColdState> cold = cold_->state();
  if (from_ms >= cold->cold_to) return hot_->ReadHistory(*id, from_ms, to_ms, limit, max_seq);
  std::vector<Sample> out;
  if (limit == 0) return out;
  Status st = ScanMerged(*id, key, *cold, from_ms, to_ms, max_seq, [&](const Sample& s) {
    out.push_back(s);
    return out.size() < limit;
  });
  if (!st.ok()) return st;
  return out;
}

Status Store::Scan(std::string_view key, int64_t from_ms, int64_t to_ms,
                   const std::function<bool(const Sample&)>& fn) const {
  Result<int64_t> id = IdOf(key);
  if (!id.ok()) return id.status();
  std::shared_lock<std::shared_mutex> lock(cold_rw_);
  std::shared_ptr<const ColdState> cold = cold_->state();
  return ScanMerged(*id, key, *cold, from_ms, to_ms, UINT64_MAX, fn);
}

Result<std::optional<Sample>> Store::At(std::string_view key, int64_t time_ms) const {
  Result<int64_t> id = IdOf(key);
  if (!id.ok()) return id.status();
  std::shared_lock<std::shared_mutex> lock(cold_rw_);
  std::shared_ptr<const ColdState> cold = cold_->state();
  return AtMerged(*id, key, *cold, time_ms);
}

std::vector<RollupStretch> Store::RollupCoverage(std::string_view key) const {
  std::vector<RollupStretch> out;
  Result<KeyInfo> info = Get(key);
  Result<int64_t> id = IdOf(key);
  if (!info.ok() || !id.ok()) return out;
  std::shared_lock<std::shared_mutex> lock(cold_rw_);
  std::shared_ptr<const ColdState> cold = cold_->state();
  if (cold->segments.empty()) return out;
  int64_t to = cold->cold_to;
  // A late change makes the rollups of its bucket and every later one
  // inexact until the next compaction rewrites them.
  Result<std::optional<int64_t>> late = hot_->EarliestLate(*id, cold->mark());
  if (!late.ok()) return out;
  if (*late) to = std::min(to, **late);
  const KeyOptions& now = info->options;
  for (const auto& seg : cold->segments) {
    if (seg->meta().from_ms >= to) break;
    RollupStretch s{seg->meta().from_ms, std::min(seg->meta().to_ms, to), now.stale_after_ms,
                    now.reset_tolerance, true};
    if (!cold->Hidden(*seg, key)) {
      // A damaged rollup block: the raw changes answer there (salvage
      // recomputes the rollups).
      if (cold->RollupsDamaged(*seg, key)) continue;
      Result<std::optional<SegmentKeyMeta>> meta = seg->KeyMeta(key);
      if (!meta.ok()) continue;  // damaged: neither rollups nor raw changes answer
      // A segment without the key knew nothing of it: with the current
      // options, its rollups (none) are exact.
      if (*meta) {
        if ((*meta)->type != info->type) continue;  // another key of the same name
        if ((*meta)->stale_after_ms != now.stale_after_ms ||
            (*meta)->reset_tolerance != now.reset_tolerance) {
          // Computed under other options: the raw changes answer exactly
          // while they are kept; once retention dropped them, these rollups
          // are all that is left, and they answer as under their options.
          if (!(*meta)->raw_dropped) continue;
          s.stale_after_ms = (*meta)->stale_after_ms;
          s.reset_tolerance = (*meta)->reset_tolerance;
          s.current_options = false;
        }
      }
    }
    if (!out.empty() && out.back().to_ms == s.from_ms &&
        out.back().stale_after_ms == s.stale_after_ms &&
        out.back().reset_tolerance == s.reset_tolerance &&
        out.back().current_options == s.current_options) {
      out.back().to_ms = s.to_ms;
    } else {
      out.push_back(s);
    }
  }
  return out;
}

std::optional<int64_t> Store::RawExpiredBefore(std::string_view key) const {
  std::shared_lock<std::shared_mutex> lock(cold_rw_);
  std::shared_ptr<const ColdState> cold = cold_->state();
  // Retention strips whole segments, oldest first: the newest stripped one
  // ends where the raw changes kept begin.
  for (auto it = cold->segments.rbegin(); it != cold->segments.rend(); ++it) {
    const Segment& seg = **it;
    if (cold->Hidden(seg, key)) continue;
    Result<std::optional<SegmentKeyMeta>> meta = seg.KeyMeta(key);
    if (meta.ok() && *meta && (*meta)->raw_dropped) return seg.meta().to_ms;
  }
  return std::nullopt;
}

Status Store::ScanRollups(std::string_view key, int64_t resolution_ms, int64_t from_ms,
                          int64_t to_ms, const std::function<bool(const Rollup&)>& fn) const {
  std::shared_lock<std::shared_mutex> lock(cold_rw_);
  std::shared_ptr<const ColdState> cold = cold_->state();
  Status st = cold->ScanRollups(key, resolution_ms, from_ms, to_ms, fn);
  if (st.IsCorruption()) (void)VerifySegments();
  return st;
}

namespace {
constexpr const char* kIsoUtc = "%Y-%m-%dT%H:%M:%SZ";
}  // namespace

int Store::VerifySegments() const {
  std::shared_ptr<const ColdState> cold = cold_->state();
  int damaged = 0;
  for (const auto& seg : cold->segments) {
    if (!NextStep().ok()) break;  // the rest is checked at the next start
    const size_t known = seg->Damage().size();
    Result<std::vector<BlockDamage>> blocks = seg->Check([this] { return !stopping_; });
    // Check read every page: a year of segments would stay resident.
    seg->ReleasePages();
    if (!blocks.ok() && blocks.status().IsBusy()) break;  // stopped part way
    if (!blocks.ok()) {
      // Not limited to blocks: nothing of the segment can be trusted.
      cold_->Quarantine(*seg, blocks.status());
      ++damaged;
      continue;
    }
    if (blocks->empty()) continue;
    ++damaged;
    if (known == blocks->size()) continue;  // logged when first found
    for (const BlockDamage& d : *blocks) {
      log_->error(
          "segment {}: damaged block at offset {}: {} of {} from {} to {} are missing "
          "from answers ({}); `komoku segments --salvage` rewrites the segment without it",
          std::filesystem::path(seg->base()).filename().string(), d.offset, DamagedPartName(d),
          QuoteForMessage(d.key), FormatUtc(d.from_ms, kIsoUtc), FormatUtc(d.to_ms, kIsoUtc),
          d.reason);
    }
  }
  cold_->UpdateDamageMetric();
  return damaged;
}

std::vector<ColdDamage> Store::DamagedHistory() const { return cold_->state()->Damage(); }

std::vector<SegmentListing> Store::Segments() const { return ListSegments(*cold_->state()); }

std::vector<std::string> Store::ColdWarnings() const {
  std::vector<std::string> out = cold_->Warnings();
  for (const ColdDamage& d : DamagedHistory()) {
    out.push_back(
        std::string(d.salvaged ? "lost (salvaged) from segment " : "damaged block in segment ") +
        d.segment + ": " + DamagedPartName(d.block) + " of " + QuoteForMessage(d.block.key) +
        " from " + FormatUtc(d.block.from_ms, kIsoUtc) + " to " +
        FormatUtc(d.block.to_ms, kIsoUtc));
  }
  return out;
}

std::vector<KeyWrites> Store::Writes(int64_t* since_ms) const {
  std::shared_ptr<const std::map<std::string, uint64_t, std::less<>>> cold;
  {
    std::lock_guard<std::mutex> lock(cold_bytes_mu_);
    std::shared_ptr<const ColdState> state = cold_->state();
    if (state != cold_bytes_state_ || !cold_bytes_) {
      // One segment's keys at a time: a listing of every segment at once
      // held 10 MB with 10,000 keys and a year, for a few numbers a key.
      auto bytes = std::make_shared<std::map<std::string, uint64_t, std::less<>>>();
      for (const auto& seg : state->segments) {
        for (const SegmentKeyInfo& k : seg->Keys()) {
          if (!state->Hidden(*seg, k.key)) (*bytes)[k.key] += k.raw_bytes + k.rollup_bytes;
        }
        seg->ReleasePages();  // as ListSegments does
      }
      cold_bytes_ = std::move(bytes);
      cold_bytes_state_ = state;
    }
    cold = cold_bytes_;
  }
  std::vector<KeyWrites> out;
  std::lock_guard<std::mutex> lock(mu_);
  if (since_ms) *since_ms = opened_ms_;
  out.reserve(keys_.size());
  for (const auto& [name, st] : keys_) {
    auto it = cold->find(name);
    out.push_back(
        {name, st.type, st.changes_stored, st.hot_bytes, it == cold->end() ? 0 : it->second});
  }
  return out;
}

size_t Store::QueueDepth() const { return hot_->QueueDepth(); }

int64_t Store::SqliteMemoryBytes() const { return sqlite3_memory_used(); }

int64_t Store::SqliteMemoryHighwater() const { return sqlite3_memory_highwater(/*reset=*/0); }

std::chrono::milliseconds Store::WriterStalledFor() const { return hot_->StalledFor(); }

Status Store::WriteHealth() const { return hot_->WriteHealth(); }

int Store::AddListener(Listener listener) {
  return AddListenerAtSeq([&listener](uint64_t) { return std::move(listener); }).first;
}

std::pair<int, uint64_t> Store::AddListenerAtSeq(const std::function<Listener(uint64_t)>& make) {
  // Holding mu_ keeps the sequence number from moving while the listener is
  // added: every change numbered after it reaches the listener.
  std::lock_guard<std::mutex> lock(mu_);
  std::lock_guard<std::mutex> lock2(listeners_mu_);
  int id = next_listener_id_++;
  auto slot = std::make_shared<ListenerSlot>();
  slot->fn = make(last_change_seq_);
  listeners_.emplace(id, std::move(slot));
  return {id, last_change_seq_};
}

void Store::RemoveListener(int id) {
  std::unique_lock<std::mutex> lock(listeners_mu_);
  auto it = listeners_.find(id);
  if (it == listeners_.end()) return;
  std::shared_ptr<ListenerSlot> slot = std::move(it->second);
  listeners_.erase(it);
  listeners_cv_.wait(lock, [&] { return slot->calls == 0; });
}

void Store::WaitColdRowsDeleted() { hot_->WaitDeletions(); }

Result<std::vector<Store::SeqChange>> Store::ChangesAfter(uint64_t after_seq, size_t limit) const {
  // Read without the store's lock (the hot store has its own); names are
  // looked up under it afterwards, once per key in the batch.
  Result<std::vector<HotStore::SeqChange>> rows = hot_->ReadChangesAfter(after_seq, limit);
  if (!rows.ok()) return rows.status();
  std::map<int64_t, std::pair<std::string, KeyType>> names;
  for (const HotStore::SeqChange& row : *rows) names.emplace(row.key_id, std::pair{"", KeyType{}});
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, name] : names) {
      auto it = keys_by_id_.find(id);
      if (it != keys_by_id_.end()) name = {it->second->first, it->second->second.type};
    }
  }
  std::vector<SeqChange> out;
  out.reserve(rows->size());
  for (HotStore::SeqChange& row : *rows) {
    const auto& [name, type] = names[row.key_id];
    if (name.empty()) continue;  // deleted since
    out.push_back({row.seq, name, type, std::move(row.sample)});
  }
  return out;
}

uint64_t Store::LastChangeSeq() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_change_seq_;
}

void Store::KeepRowsAfter(uint64_t seq) { hot_->KeepRowsAfter(seq); }

uint64_t Store::CommitMark() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_op_seq_;
}

bool Store::Committed(uint64_t mark) const { return hot_->CommittedSeq() >= mark; }

bool Store::WaitCommittedFor(uint64_t mark, std::chrono::milliseconds timeout) {
  return hot_->WaitCommittedFor(mark, timeout);
}

Status Store::WaitCommitted(uint64_t change_seq) {
  uint64_t op_seq;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Every change up to change_seq was enqueued no later than the newest
    // op; waiting for that op covers them all.
    op_seq = change_seq ? last_op_seq_ : 0;
  }
  return op_seq ? hot_->WaitCommitted(op_seq) : Status::Ok();
}

void Store::RunDueTimers() {
  for (;;) {
    std::string name;
    int64_t due;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_ || uptime_due_.empty()) return;
      auto first = uptime_due_.begin();
      if (first->first > clock_->NowMs()) return;
      due = first->first;
      name = first->second;
      uptime_due_.erase(first);
      auto it = keys_.find(name);
      if (it == keys_.end() || it->second.due_ms != due) continue;
      it->second.due_ms = 0;
    }
    PutOptions put;
    put.time_ms = due;
    Result<Change> c = Put(name, InputValue(false), put);
    if (!c.ok()) {
      log_->warn("uptime timeout of '{}' not recorded: {}", name, c.status().ToString());
    } else {
      metrics_.Add("komoku_uptime_timeouts_total");
      log_->debug("uptime key '{}' timed out", name);
    }
  }
}

void Store::StartTimers() {
  std::lock_guard<std::mutex> lock(mu_);
  if (timer_.joinable() || closed_) return;
  timer_ = std::thread([this] { TimerLoop(); });
}

void Store::TimerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!closed_) {
    auto wait = std::chrono::milliseconds(1000);
    if (!uptime_due_.empty()) {
      int64_t in = uptime_due_.begin()->first - clock_->NowMs();
      wait = std::chrono::milliseconds(std::clamp<int64_t>(in, 0, 1000));
    }
    if (wait.count() > 0) timer_cv_.wait_for(lock, wait);
    if (closed_) break;
    lock.unlock();
    RunDueTimers();
    lock.lock();
  }
}

void Store::RequestStop() { stopping_ = true; }

Status Store::NextStep() const {
  if (cold_options_.before_step) cold_options_.before_step();
  if (stopping_) return Status::Busy("store is stopping; compaction stopped");
  return Status::Ok();
}

void Store::Close() {
  RequestStop();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
  }
  timer_cv_.notify_all();
  compactor_cv_.notify_all();
  if (timer_.joinable()) timer_.join();
  if (compactor_.joinable()) compactor_.join();
  if (hot_) hot_->Close();
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock: the directory is free
  lock_fd_ = -1;
}

}  // namespace komoku::store
