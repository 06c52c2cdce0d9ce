#include "query/stream.h"

#include <httplib.h>

#include <algorithm>
#include <deque>
#include <nlohmann/json.hpp>

#include "store/input.h"

namespace komoku::query {
namespace {

using nlohmann::json;
using store::MsToSeconds;
using store::ValueToJson;

// A comment line this often lets a dead client be noticed and keeps proxies
// from closing an idle stream.
constexpr auto kKeepAlive = std::chrono::seconds(15);
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

struct StreamHub::Client {
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
  std::optional<int64_t> since_ms;
  uint64_t cutoff_seq = 0;  // changes up to here come from history
  int listener_id = 0;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> pending;  // guarded by mu: events to send
  bool replayed = false;            // guarded by mu
  bool closed = false;              // guarded by mu
};

StreamHub::StreamHub(store::Store* store, size_t max_clients, std::shared_ptr<spdlog::logger> log)
    : store_(store), max_clients_(max_clients), log_(std::move(log)) {}

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
  for (const auto& c : clients) {
    std::lock_guard<std::mutex> lock(c->mu);
    c->closed = true;
    c->cv.notify_all();
  }
}

Status StreamHub::Serve(std::vector<std::string> keys, std::optional<int64_t> since_ms,
                        httplib::Response& res) {
  auto client = std::make_shared<Client>();
  for (std::string& k : keys) {
    if (k == "#") {
      client->prefixes.emplace_back();
    } else if (k.size() > 2 && k.compare(k.size() - 2, 2, "/#") == 0) {
      client->prefixes.push_back(k.substr(0, k.size() - 2));
    } else {
      client->keys.insert(std::move(k));
    }
  }
  client->since_ms = since_ms;
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
      std::lock_guard<std::mutex> lock(cl->mu);
      cl->pending.push_back(ChangeEvent(c));
      cl->cv.notify_all();
    };
  });
  client->listener_id = id;
  client->cutoff_seq = seq;
  store_->metrics().Add("komoku_sse_clients");

  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, client](size_t, httplib::DataSink& sink) {
        std::unique_lock<std::mutex> lock(client->mu);
        if (!client->replayed) {
          client->replayed = true;
          lock.unlock();
          std::string replay = ": komoku stream\n\n";
          if (client->since_ms) {
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
              auto h = store_->History(key, *client->since_ms, INT64_MAX, kMaxReplay,
                                       client->cutoff_seq);
              if (!h.ok()) continue;  // a key that does not exist (yet)
              for (auto& s : *h) rows.push_back({s.time_ms, key, std::move(s.value)});
            }
            std::stable_sort(rows.begin(), rows.end(),
                             [](const Row& a, const Row& b) { return a.time < b.time; });
            for (const Row& r : rows) {
              replay += Event("history", 0,
                              {{"key", r.key},
                               {"value", ValueToJson(r.value)},
                               {"time", MsToSeconds(r.time)}});
            }
            replay += Event("live", 0, json::object());
          }
          if (!sink.write(replay.data(), replay.size())) return false;
          lock.lock();
        }
        client->cv.wait_for(lock, kKeepAlive,
                            [&] { return client->closed || !client->pending.empty(); });
        if (client->closed) return false;
        std::string out;
        if (client->pending.empty()) {
          out = ": keepalive\n\n";
        } else {
          while (!client->pending.empty()) {
            out += client->pending.front();
            client->pending.pop_front();
          }
        }
        lock.unlock();
        return sink.write(out.data(), out.size());
      },
      [this, client](bool) {
        // The client went away (or the server stops): release everything.
        store_->RemoveListener(client->listener_id);
        store_->metrics().Add("komoku_sse_clients", -1);
        std::lock_guard<std::mutex> lock(mu_);
        clients_.erase(client);
      });
  return Status::Ok();
}

}  // namespace komoku::query
