// Server-Sent Events of key changes (Komoku's `sub` over HTTP):
// GET /api/v1/stream?key=a&key=b[&key=c/#][&since=T]. With `since`, the stored changes
// since then are replayed first and the live feed continues with no gap and
// no duplicate at the seam (Store::AddListenerAtSeq). A client that goes away
// releases its listener. Internal to src/query. Thread-safe.
#pragma once

#include <spdlog/logger.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "store/store.h"

namespace httplib {
struct Response;
}

namespace komoku::query {

class StreamHub {
 public:
  StreamHub(store::Store* store, size_t max_clients, std::shared_ptr<spdlog::logger> log);
  ~StreamHub();

  // Turns `res` into an event stream of `keys`, each a key name or a filter:
  // `#` (every key, also those created later) or `<prefix>/#` (the key
  // <prefix> and every key under it). Busy when max_clients
  // streams are open already.
  Status Serve(std::vector<std::string> keys, std::optional<int64_t> since_ms,
               httplib::Response& res);

  // Ends every open stream (at shutdown) and refuses new ones.
  void StopAll();

  size_t clients() const;

 private:
  struct Client;

  store::Store* const store_;
  const size_t max_clients_;
  const std::shared_ptr<spdlog::logger> log_;

  mutable std::mutex mu_;
  std::set<std::shared_ptr<Client>> clients_;  // guarded by mu_
  bool stopped_ = false;                       // guarded by mu_
};

}  // namespace komoku::query
