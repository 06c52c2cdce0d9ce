// <prefix>/state/<key>: the store's listener records the newest state of
// each key that changed; the state thread publishes them, coalescing
// bursts, retrying what failed, and republishing every key after each
// connect.

#include <mqtt/async_client.h>

#include <algorithm>
#include <deque>
#include <nlohmann/json.hpp>

#include "bridge/bridge_impl.h"
#include "wire/input.h"

namespace komoku::bridge {
namespace {

using nlohmann::json;
using store::ValueToJson;

// The QoS of <prefix>/state/<key> (see StateLoop).
constexpr int kStateQos = 0;
// State publications not yet acknowledged by the broker, at most; fewer
// when the broker's Receive Maximum is smaller (StateInFlightLimit).
constexpr size_t kStateInFlight = 256;
// Of the broker's Receive Maximum, this many are left to the other QoS 1
// publications (status, derived state, API replies).
constexpr int kReservedInFlight = 4;
// A key's state goes out at most once in this time: a change within it of
// the last publication waits for its end, and the changes meanwhile coalesce
// into one publication. Every state costs Komoku and the broker about what
// a received message does; at QoS 0 with nothing to wait for, the state
// thread otherwise published nearly every change of a flood. A key changing
// less often than this is published at once (docs/mqtt-topics.md).
constexpr int64_t kStateMinGapMs = 250;
// Keys held back by kStateMinGapMs are looked at no more often than this:
// during a flood each of 1,000 keys has a time of its own to go out, and a
// wake-up for each cost more than the publications.
constexpr int64_t kStateHeldBackTickMs = 10;

}  // namespace

void Bridge::Impl::OnChange(const store::Change& c) {
  if (!c.deleted && !c.is_current) return;
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    auto [it, fresh] = state_pending_.try_emplace(c.key);
    StateItem& item = it->second;
    // A key already waiting keeps its place and its time to go out.
    if (fresh) item.due_ms = StateDueAtLocked(c.key);
    if (c.deleted) {
      const int64_t due = item.due_ms;
      item = StateItem{};
      item.deleted = true;
      item.due_ms = due;
    } else {
      // Concurrent puts may notify out of order: the newest time wins.
      if (!fresh && !item.deleted && c.sample.time_ms < item.time_ms) return;
      item.value = c.sample.value;
      item.time_ms = c.sample.time_ms;
      item.previous.reset();
      if (c.previous) item.previous = c.previous->value;
      item.deleted = false;
    }
    // A key published within kStateMinGapMs waits for the state thread's
    // timer: no wake-up for it (a flood wakes the thread once a gap).
    if (c.deleted || (fresh && item.due_ms <= SteadyNowMs())) {
      state_due_ = true;
      wake = state_waiting_;
    }
  }
  // A busy state thread takes what waits when it is done: no wake-up (a
  // system call) per change during a burst.
  if (wake) state_cv_.notify_one();
}

void Bridge::Impl::Requeue(std::string key, StateItem&& item) {
  std::lock_guard<std::mutex> lock(state_mu_);
  state_pending_.try_emplace(std::move(key), std::move(item));
  state_due_ = true;
}

int64_t Bridge::Impl::StateDueAtLocked(const std::string& key) const {
  auto it = state_sent_ms_.find(key);
  return it == state_sent_ms_.end() ? 0 : it->second + kStateMinGapMs;
}

void Bridge::Impl::StateLoop() {
  std::vector<std::pair<std::string, StateItem>> batch;
  struct InFlight {
    std::string key;
    mqtt::delivery_token_ptr token;
  };
  std::deque<InFlight> in_flight;
  // Waits for the oldest publication; false when it failed (requeued).
  auto settle_oldest = [&]() {
    InFlight f = std::move(in_flight.front());
    in_flight.pop_front();
    bool ok = false;
    // A lost connection does not end a publication: the session is kept,
    // and Paho sends it again after the reconnect, where it still counts
    // against the broker's Receive Maximum. Publishing its state anew
    // meanwhile put more in flight than the broker allows after each
    // reconnect, and Mosquitto dropped the connection every time for a
    // protocol error (integration 25, broker restarts). So the wait ends
    // only when Paho completes or fails the publication, or at a stop.
    try {
      while (!ok && !state_stopping()) ok = f.token->wait_for(std::chrono::milliseconds(500));
    } catch (const mqtt::exception&) {
      ok = false;
    }
    if (ok) {
      store_->metrics().Add("komoku_state_published_total");
    } else {
      store_->metrics().Add("komoku_mqtt_publish_errors_total");
      StateItem again;
      again.refresh = true;
      Requeue(std::move(f.key), std::move(again));
    }
    return ok;
  };
  // When the earliest key held back by kStateMinGapMs may go out; 0: none.
  int64_t next_due_ms = 0;
  for (;;) {
    bool all = false;
    batch.clear();
    {
      std::unique_lock<std::mutex> lock(state_mu_);
      state_waiting_ = true;
      // Publications still out are looked at again soon, to requeue any
      // that failed; held-back keys when their gap ends.
      int64_t wait_ms = in_flight.empty() ? 500 : 20;
      if (next_due_ms > 0) {
        wait_ms = std::clamp<int64_t>(next_due_ms - SteadyNowMs(), kStateHeldBackTickMs, wait_ms);
      }
      state_cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] {
        return state_stop_ || (subscribed_ && (republish_all_ || state_due_));
      });
      state_waiting_ = false;
      if (state_stop_) break;
      // Only once subscribed: Paho sends its commands in order, and a
      // subscription queued behind every key's state (republished after
      // each connect) was seen to wait for over 10 s under load.
      if (subscribed_) {
        all = republish_all_;
        republish_all_ = false;
        state_due_ = false;
        next_due_ms = 0;
        const int64_t now = SteadyNowMs();
        for (auto it = state_pending_.begin(); it != state_pending_.end();) {
          const StateItem& item = it->second;
          const int64_t at = all || item.deleted || item.refresh ? 0 : item.due_ms;
          if (at > now) {
            if (next_due_ms == 0 || at < next_due_ms) next_due_ms = at;
            ++it;
            continue;
          }
          state_sent_ms_[it->first] = now;
          batch.emplace_back(it->first, std::move(it->second));
          it = state_pending_.erase(it);
        }
        // Forget publications older than the gap once there are many.
        if (state_sent_ms_.size() > 4096) {
          for (auto it = state_sent_ms_.begin(); it != state_sent_ms_.end();) {
            it = now - it->second >= kStateMinGapMs ? state_sent_ms_.erase(it) : std::next(it);
          }
        }
      }
      store_->metrics().Set("komoku_state_pending", static_cast<int64_t>(state_pending_.size()));
    }
    if (all) {
      // Read after the pending states were taken: at least as new.
      std::unordered_map<std::string, size_t> index;
      for (size_t i = 0; i < batch.size(); ++i) index[batch[i].first] = i;
      for (store::KeyInfo& k : store_->Keys()) {
        if (!k.last) continue;
        // Every put checks its key's name, so only a name an older Komoku
        // accepted can fail here: MQTT does not allow it, the broker would
        // drop the connection, and every connect would publish it again.
        // Such a key keeps its history but has no state topic.
        if (Status name = store::ValidateKeyName(k.name); !name.ok()) {
          store_->metrics().Add("komoku_state_unpublishable_total");
          int64_t suppressed = 0;
          if (ShouldLog("state name", &suppressed)) {
            log_->warn("no state published for {}{}", name.message(),
                       NotLogged(suppressed, "keys with such names"));
          }
          continue;
        }
        StateItem item;
        item.value = std::move(k.last->value);
        item.time_ms = k.last->time_ms;
        if (k.previous) item.previous = std::move(k.previous->value);
        auto it = index.find(k.name);
        if (it == index.end()) {
          batch.emplace_back(std::move(k.name), std::move(item));
        } else {
          batch[it->second].second = std::move(item);
        }
      }
    }
    // Paho C 1.3.12 (Debian 12), with as many QoS 1 publications out as
    // the broker's Receive Maximum, queues the next and sends it only when
    // its send thread wakes, up to a second later (fixed in Paho C 1.3.14):
    // about 20 states a second against Mosquitto. Staying below that
    // limit keeps every publication going out at once.
    const size_t limit = StateInFlightLimit();
    size_t i = 0;
    for (; i < batch.size(); ++i) {
      if (state_stopping() || !subscribed_) break;
      while (in_flight.size() >= limit) settle_oldest();
      auto& [key, item] = batch[i];
      if (item.refresh) {
        Result<store::KeyInfo> info = store_->Get(key);
        if (info.ok() && !info->last) continue;
        item = StateItem{};
        item.deleted = !info.ok();
        if (info.ok()) {
          item.value = info->last->value;
          item.time_ms = info->last->time_ms;
          if (info->previous) item.previous = info->previous->value;
        }
      }
      std::string payload;
      if (!item.deleted) {
        payload = store::DumpJson(
            json{{"value", ValueToJson(item.value)},
                 {"time", static_cast<double>(item.time_ms) / 1000.0},
                 {"previous", item.previous ? ValueToJson(*item.previous) : json(nullptr)}});
      }
      try {
        // QoS 0: a state that a lost connection takes is published again
        // after the reconnect (every key is), and Paho C 1.3.12 resends
        // QoS 1 publications of an MQTT 5 session after a reconnect in a
        // way Mosquitto refuses ("malformed packet", then "protocol
        // error" at every reconnect: integration 25, broker restarts).
        auto token = client_->publish(options_.prefix + "/state/" + key, payload.data(),
                                      payload.size(), kStateQos, true);
        in_flight.push_back({std::move(key), std::move(token)});
      } catch (const mqtt::exception& e) {
        store_->metrics().Add("komoku_mqtt_publish_errors_total");
        log_->debug("state publish for '{}' failed: {}", key, e.what());
        break;  // not connected, or Paho's buffer is full: again later
      }
    }
    for (; i < batch.size(); ++i) Requeue(std::move(batch[i].first), std::move(batch[i].second));
    // Acknowledged publications are settled as they complete, without
    // waiting for them: a new change goes out while earlier ones are
    // still on their way.
    while (!in_flight.empty() && in_flight.front().token->is_complete()) settle_oldest();
  }
  while (!in_flight.empty()) settle_oldest();
  // Stopping: what is left is published at the next start (every key).
}

size_t Bridge::Impl::StateInFlightLimit() const {
  const int broker = server_receive_max_.load();
  return static_cast<size_t>(
      std::clamp<int>(broker - kReservedInFlight, 1, static_cast<int>(kStateInFlight)));
}

bool Bridge::Impl::state_stopping() {
  std::lock_guard<std::mutex> lock(state_mu_);
  return state_stop_;
}

}  // namespace komoku::bridge
