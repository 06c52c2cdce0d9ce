#include "query/stream.h"

#include <algorithm>
#include <deque>
#include <nlohmann/json.hpp>

#include "wire/input.h"

namespace komoku::query {
namespace {

using nlohmann::json;
using store::MsToSeconds;
using store::ValueToJson;

// The most rows a `since` replay sends.
constexpr size_t kMaxReplay = 100000;

std::string Event(const char* name, uint64_t id, const json& data) {
  std::string out = "event: ";
  out += name;
  out += "\n";
  if (id) out += "id: " + std::to_string(id) + "\n";
  out += "data: " + store::DumpJson(data) + "\n\n";
  return out;
}

std::string ChangeEvent(const store::Change& c) {
  if (c.deleted) return Event("delete", 0, {{"key", c.key}});
  json data = {{"key", c.key},
               {"value", ValueToJson(c.sample.value)},
               {"time", MsToSeconds(c.sample.time_ms)},
               {"previous", c.previous ? ValueToJson(c.previous->value) : json(nullptr)},
               {"current", c.is_current}};
  return Event("change", c.seq, data);
}

}  // namespace

// One open stream. The store's listener fills `pending` (from the writer's
// thread); the transport takes it on its io thread.
struct StreamHub::Client : EventStream {
  StreamHub* hub = nullptr;
  std::set<std::string, std::less<>> keys;
  // From filters: "" for `#` (every key), "a/b" for `a/b/#` (a/b and all
  // under it, as in MQTT).
  std::vector<std::string> prefixes;
  bool Matches(const std::string& key) const {
    if (keys.count(key)) return true;
    for (const std::string& p : prefixes) {
      if (p.empty()) return true;
      if (key.compare(0, p.size(), p) == 0 && (key.size() == p.size() || key[p.size()] == '/')) {
        return true;
      }
    }
    return false;
  }
  uint64_t cutoff_seq = 0;  // changes up to here come from history
  int listener_id = 0;

  std::mutex mu;
  std::string opening;              // guarded by mu: the comment line and the replay
  std::deque<std::string> pending;  // guarded by mu: events to send
  size_t pending_bytes = 0;         // guarded by mu
  bool ended = false;               // guarded by mu: StopAll, or dropped
  bool closed = false;              // guarded by mu: Close ran
  bool wake_due = true;             // guarded by mu: Take ran since the last wake
  std::function<void()> wake;       // guarded by mu

  // From the store's listener: queues `event`, or drops the client when
  // too much waits already.
  void Push(std::string event) {
    std::function<void()> to_call;
    bool dropped = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (ended || closed) return;
      // One event is always taken, however large: the bound is on a backlog.
      if (!pending.empty() && pending_bytes + event.size() > hub->max_queued_bytes_) {
        ended = true;
        dropped = true;
        pending.clear();
        pending_bytes = 0;
      } else {
        pending_bytes += event.size();
        pending.push_back(std::move(event));
      }
      if ((wake_due || dropped) && wake) {
        wake_due = false;
        to_call = wake;
      }
    }
    if (dropped) {
      hub->store_->metrics().Add("komoku_sse_dropped_total");
      hub->log_->warn("event stream client dropped: it fell more than {} bytes behind",
                      hub->max_queued_bytes_);
    }
    if (to_call) to_call();
  }

  void End() {
    std::function<void()> to_call;
    {
      std::lock_guard<std::mutex> lock(mu);
      ended = true;
      to_call = wake;
    }
    if (to_call) to_call();
  }

  void SetWake(std::function<void()> w) override {
    std::lock_guard<std::mutex> lock(mu);
    wake = std::move(w);
  }

  bool Ended() override {
    std::lock_guard<std::mutex> lock(mu);
    return ended;
  }

  std::string Take() override {
    std::lock_guard<std::mutex> lock(mu);
    std::string out = std::move(opening);
    opening.clear();
    while (!pending.empty()) {
      out += pending.front();
      pending.pop_front();
    }
    pending_bytes = 0;
    wake_due = true;
    return out;
  }

  void Close() override {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (closed) return;
      closed = true;
      wake = nullptr;
    }
    hub->Release(this);
  }
};

StreamHub::StreamHub(store::Store* store, size_t max_clients, size_t max_queued_bytes,
                     std::shared_ptr<spdlog::logger> log)
    : store_(store),
      max_clients_(max_clients),
      max_queued_bytes_(max_queued_bytes),
      log_(std::move(log)) {}

StreamHub::~StreamHub() { StopAll(); }

size_t StreamHub::clients() const {
  std::lock_guard<std::mutex> lock(mu_);
  return clients_.size();
}

void StreamHub::StopAll() {
  std::set<std::shared_ptr<Client>> clients;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    clients = clients_;
  }
  for (const auto& c : clients) c->End();
}

void StreamHub::Release(Client* client) {
  std::shared_ptr<Client> found;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& c : clients_) {
      if (c.get() == client) found = c;
    }
    if (found) clients_.erase(found);
  }
  if (!found) return;
  store_->RemoveListener(client->listener_id);
  store_->metrics().Add("komoku_sse_clients", -1);
}

Result<std::shared_ptr<EventStream>> StreamHub::Open(std::vector<std::string> keys,
                                                     std::optional<int64_t> since_ms) {
  auto client = std::make_shared<Client>();
  client->hub = this;
  for (std::string& k : keys) {
    if (k == "#") {
      client->prefixes.emplace_back();
    } else if (k.size() > 2 && k.compare(k.size() - 2, 2, "/#") == 0) {
      client->prefixes.push_back(k.substr(0, k.size() - 2));
    } else {
      client->keys.insert(std::move(k));
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return Status::Busy("shutting down");
    if (clients_.size() >= max_clients_) {
      return Status::Busy("too many streams open (" + std::to_string(max_clients_) + ")");
    }
    clients_.insert(client);
  }
  std::weak_ptr<Client> weak = client;
  auto [id, seq] = store_->AddListenerAtSeq([weak](uint64_t cutoff) {
    return [weak, cutoff](const store::Change& c) {
      auto cl = weak.lock();
      if (!cl || !cl->Matches(c.key)) return;
      if (c.seq && c.seq <= cutoff) return;  // the replay has it
      cl->Push(ChangeEvent(c));
    };
  });
  client->listener_id = id;
  client->cutoff_seq = seq;
  store_->metrics().Add("komoku_sse_clients");

  std::string replay = ": komoku stream\n\n";
  if (since_ms) {
    // Everything up to the cutoff is committed, then read: exactly the
    // changes the listener skips.
    Status st = store_->WaitCommitted(client->cutoff_seq);
    struct Row {
      int64_t time;
      std::string key;
      store::Value value;
    };
    std::vector<Row> rows;
    std::set<std::string> keys(client->keys.begin(), client->keys.end());
    if (!client->prefixes.empty()) {
      for (const store::KeyInfo& k : store_->Keys()) {
        if (client->Matches(k.name)) keys.insert(k.name);
      }
    }
    for (const std::string& key : keys) {
      auto h = store_->History(key, *since_ms, INT64_MAX, kMaxReplay, client->cutoff_seq);
      if (!h.ok()) continue;  // a key that does not exist (yet)
      for (auto& s : *h) rows.push_back({s.time_ms, key, std::move(s.value)});
    }
    std::stable_sort(rows.begin(), rows.end(),
                     [](const Row& a, const Row& b) { return a.time < b.time; });
    for (const Row& r : rows) {
      replay +=
          Event("history", 0,
                {{"key", r.key}, {"value", ValueToJson(r.value)}, {"time", MsToSeconds(r.time)}});
    }
    replay += Event("live", 0, json::object());
  }
  {
    std::lock_guard<std::mutex> lock(client->mu);
    client->opening = std::move(replay);
  }
  return std::shared_ptr<EventStream>(client);
}

}  // namespace komoku::query
