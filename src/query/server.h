// The HTTP query server: the Komoku API over loopback or the LAN, JSON in and
// out, errors as {"error": {"code", "message"}} with 400 (bad or missing
// parameter, saying which) or 404 (unknown key). See docs/http-api.md.
//
// Thread-safe; owns its io thread (Boost.Beast: every connection on one
// event loop), a bounded pool of worker threads that run the requests, and
// a thread for the probes. The limits below are checked before the bytes
// they guard are read (docs/http-api.md, "Limits").
#pragma once

#include <spdlog/logger.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "store/store.h"

namespace komoku::query {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: a port the OS chooses (see Server::port())
  // Raw history answers hold at most this many rows; more is a 400.
  size_t max_points = 10000;
  // Server-Sent Event streams open at once.
  size_t max_stream_clients = 8;
  // Bytes of events a stream client may have unsent; past them it is dropped
  // (komoku_sse_dropped_total).
  size_t stream_queue_bytes = 1024 * 1024;
  // A request body larger than this is refused (413), whatever its transfer
  // encoding.
  size_t max_body_bytes = 64 * 1024;
  // The request line and header fields (431 past either).
  size_t max_header_bytes = 16 * 1024;
  size_t max_header_fields = 100;
  // Connections open at once; past them, only /healthz and /readyz are
  // answered, anything else gets 503.
  size_t max_connections = 1000;
  // An idle connection closes after idle_timeout; a request's header must
  // arrive within header_timeout of its first byte, its body within
  // body_timeout (408 otherwise); one write may take write_timeout.
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds body_timeout{30000};
  std::chrono::milliseconds write_timeout{30000};
  // Threads that run requests, and requests that may wait for one (503
  // busy past them).
  size_t workers = 4;
  size_t max_queued_requests = 256;
  // /readyz calls the writer stuck once it has held uncommitted changes this
  // long (see Store::WriterStalledFor).
  std::chrono::milliseconds writer_stall_limit{10000};
  // GET /api/v1/discovery answers what this returns (called from worker
  // threads); 404 when unset or it returns null (discovery is off).
  std::function<nlohmann::json()> discovery;
  // GET /api/v1/keys shows each key's alias from this (key -> alias: the
  // name a discovered device's topic makes now, for a key that keeps its
  // first name), and every request that names a key may name it by its
  // alias (store::ResolveKey: a real key of that name wins); unset: none.
  // Called from worker threads.
  std::function<std::map<std::string, std::string>()> key_aliases;
  // When set, every request but /healthz and /readyz must carry
  // `Authorization: Bearer <token>`; others get 401 "unauthorized".
  std::string token;
};

// True for 127.0.0.0/8, ::1 and "localhost": where an open API is safe.
bool IsLoopbackHost(const std::string& host);

// What the rest of the service reports to /healthz, /readyz and /metrics.
struct Health {
  bool mqtt_connected = false;
  bool mqtt_subscribed = false;
  // How long the MQTT ingest thread has been on one batch (zero while it
  // keeps up), and the messages received and not yet stored.
  std::chrono::milliseconds ingest_stalled{0};
  uint64_t ingest_backlog = 0;
  // Whether remote write is on; how long its thread has gone without a
  // step beyond its request timeout (zero while it keeps going); why its
  // last request failed and for how long requests have been failing (empty
  // and zero while they succeed).
  bool remote_write_on = false;
  std::chrono::milliseconds remote_write_stalled{0};
  std::string remote_write_error;
  std::chrono::milliseconds remote_write_failing{0};
};

class Server {
 public:
  // `store` must outlive the Server; `health` is called from worker threads.
  static Result<std::unique_ptr<Server>> Create(const ServerOptions& options, store::Store* store,
                                                std::function<Health()> health,
                                                std::shared_ptr<spdlog::logger> log);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the address (IOError naming it when that fails) and serves on a
  // thread of its own.
  Status Start();
  // Stops accepting and waits for the serving thread. Idempotent.
  void Stop();

  // The bound port (the chosen one when options.port was 0).
  int port() const;

 private:
  class Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace komoku::query
