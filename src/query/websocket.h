// The original Komoku protocol over WebSocket: v1 at /ws/v1, v2 at /ws/v2
// (wire/ws_protocol.h translates; docs/websocket.md). The HTTP transport
// (http.h) checks the limits and the token, then hands an upgrading
// connection's socket here; Boost.Beast does the framing.
//
// Each connection reads one message, answers it on a worker thread, then
// reads the next (so answers come in request order and a client that sends
// faster than it is answered is held back by TCP). Subscriptions are a set
// of key names per connection, fed by one Store listener per connection:
// the listener only queues the push (never waits), and a connection whose
// unsent answers and pushes pass `queue_bytes` is closed with 1008 and
// counted (komoku_ws_dropped_total). A message over `max_message_bytes`
// closes the connection with 1009, a malformed frame with 1002 (Beast's
// codes), each counted in komoku_refused_total. Internal to src/query.
//
// Thread-safe.
#pragma once

#include <spdlog/logger.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "query/http.h"
#include "store/store.h"
#include "wire/key_alias.h"

namespace komoku::query {

struct WebSocketOptions {
  size_t max_message_bytes = 64 * 1024;  // http.max_body_bytes
  size_t queue_bytes = 1024 * 1024;      // http.stream_queue_bytes
  size_t workers = 4;                    // threads answering messages
  // The handshake, and one write (a client that reads nothing for this long
  // is closed).
  std::chrono::milliseconds write_timeout{30000};
  // Past this without a byte from the client, a ping; without an answer for
  // as long again, the connection closes.
  std::chrono::milliseconds idle_timeout{60000};
  // Keys may be named by their aliases (ServerOptions::key_aliases).
  store::AliasSource aliases;
};

class WebSocketHub {
 public:
  // The paths served, and the protocol version of each.
  static bool Serves(const std::string& path);

  // `store` must outlive the hub.
  WebSocketHub(store::Store* store, WebSocketOptions options, std::shared_ptr<spdlog::logger> log);
  ~WebSocketHub();
  WebSocketHub(const WebSocketHub&) = delete;
  WebSocketHub& operator=(const WebSocketHub&) = delete;

  // Starts the io thread and the workers.
  void Start();
  // Closes every connection (1001, going away) and joins the threads.
  // Idempotent.
  void Stop();

  // Takes over `fd`, a connected TCP socket whose request `req` (a GET of a
  // path Serves() takes, with `Upgrade: websocket`) was read and checked;
  // `done` is called once the connection is gone. Callable from any thread.
  void Accept(int fd, Request req, std::function<void()> done);

  size_t connections() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace komoku::query
