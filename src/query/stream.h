// Server-Sent Events of key changes (Komoku's `sub` over HTTP):
// GET /api/v1/stream?key=a&key=b[&key=c/#][&since=T]. With `since`, the stored changes
// since then are replayed first and the live feed continues with no gap and
// no duplicate at the seam (Store::AddListenerAtSeq). A client that goes away
// releases its listener. Each client's queue of unsent events is bounded: a
// client that does not read as fast as changes come is dropped and counted
// (komoku_sse_dropped_total). Internal to src/query. Thread-safe.
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
#include "query/http.h"
#include "store/store.h"

namespace komoku::query {

class StreamHub {
 public:
  // A client whose unsent events pass `max_queued_bytes` is dropped.
  StreamHub(store::Store* store, size_t max_clients, size_t max_queued_bytes,
            std::shared_ptr<spdlog::logger> log);
  ~StreamHub();

  // Opens an event stream of `keys`, each a key name or a filter: `#`
  // (every key, also those created later) or `<prefix>/#` (the key <prefix>
  // and every key under it). The replay since `since_ms` is read here, on
  // the caller's thread. Busy when max_clients streams are open already.
  Result<std::shared_ptr<EventStream>> Open(std::vector<std::string> keys,
                                            std::optional<int64_t> since_ms);

  // Ends every open stream (at shutdown) and refuses new ones.
  void StopAll();

  size_t clients() const;

 private:
  struct Client;
  // A client's stream closed: its listener goes.
  void Release(Client* client);

  store::Store* const store_;
  const size_t max_clients_;
  const size_t max_queued_bytes_;
  const std::shared_ptr<spdlog::logger> log_;

  mutable std::mutex mu_;
  std::set<std::shared_ptr<Client>> clients_;  // guarded by mu_
  bool stopped_ = false;                       // guarded by mu_
};

}  // namespace komoku::query
