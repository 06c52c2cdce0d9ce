// The HTTP/1.1 transport under the query server: Boost.Beast on one Asio
// io thread, so an open connection costs a socket and a few hundred bytes,
// not a thread. Every limit is checked before the bytes it guards are read
// or buffered (docs/http-api.md, "Limits"):
//
//   accept ── over max_connections? ── overflow: probes only, else 503
//     │
//   wait for the first byte (idle_timeout) ── nothing: close quietly
//     │
//   read the header (header_timeout, max_header_bytes) ── 408 / 431 / 400
//     │ max_header_fields (431), Content-Encoding (415), no length (411),
//     │ the token (401) — none of these reads the body
//   read the body (body_timeout, max_body_bytes for every encoding) ── 413
//     │
//   probe paths ──▶ the probe thread      others ──▶ the bounded worker pool
//     │                                            (full: 503 busy)
//   write the answer (write_timeout), keep alive or close
//
// The handler runs on a worker thread and fills a Response; an event stream
// (Response::stream) is then driven by the io thread. A WebSocket path
// (HttpOptions::websocket_paths) is taken where the header has passed the
// limits and the token: a GET with `Upgrade: websocket` hands its socket and
// header to HttpOptions::upgrade (query/websocket.h), and the connection
// counts against max_connections until it ends. Internal to src/query.
#pragma once

#include <spdlog/logger.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace komoku::query {

// One request as the handler sees it: the whole body is read.
struct Request {
  std::string method;  // "GET"; a HEAD request arrives as "GET" (head set)
  std::string target;  // as sent: /path?query
  std::string path;    // the target's path, percent-decoded
  std::string body;
  bool head = false;
  std::vector<std::pair<std::string, std::string>> headers;

  bool HasHeader(std::string_view name) const;  // names compare case-insensitively
  std::string Header(std::string_view name) const;
};

// A body written a piece at a time while the connection stays open (Server-
// Sent Events). Implementations are thread-safe; the transport calls them on
// its io thread.
class EventStream {
 public:
  virtual ~EventStream() = default;
  // `wake` is called, from any thread, when Take has something new; the
  // implementation must not hold a lock of its own while calling it.
  virtual void SetWake(std::function<void()> wake) = 0;
  // The stream has ended (the server stops, or the client fell too far
  // behind): the connection closes at once, without the unsent events.
  virtual bool Ended() = 0;
  // The text ready to send (may be empty).
  virtual std::string Take() = 0;
  // The connection is gone: release what the stream holds. Idempotent.
  virtual void Close() = 0;
};

struct Response {
  int status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // Set: the answer is this event stream (chunked), not `body`.
  std::shared_ptr<EventStream> stream;

  void SetContent(std::string text, const char* type) {
    body = std::move(text);
    content_type = type;
  }
  void SetHeader(std::string name, std::string value);  // replaces
  bool HasHeader(std::string_view name) const;
  std::string Header(std::string_view name) const;
};

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  // Connections served at once; past it, a connection may still ask a probe
  // path, anything else gets 503 too_many_connections.
  size_t max_connections = 1000;
  size_t max_header_bytes = 16 * 1024;              // request line and fields (431)
  size_t max_header_fields = 100;                   // (431)
  size_t max_body_bytes = 64 * 1024;                // any transfer encoding (413)
  std::chrono::milliseconds idle_timeout{60000};    // to a request's first byte
  std::chrono::milliseconds header_timeout{10000};  // first byte to the header's end (408)
  std::chrono::milliseconds body_timeout{30000};    // header's end to the body's end (408)
  std::chrono::milliseconds write_timeout{30000};   // one write of an answer or event
  size_t workers = 4;                               // threads running handlers
  size_t max_queued = 256;  // requests waiting for a worker (past it: 503 busy)
  // Answered on a thread of their own, without the token, also past
  // max_connections.
  std::vector<std::string> probe_paths = {"/healthz", "/readyz"};
  // When set, every other path needs `Authorization: Bearer <token>`, but
  // for these paths and the paths starting with one of `open_prefixes`
  // (the web page's files, which hold no data).
  std::string token;
  std::vector<std::string> open_paths;
  std::vector<std::string> open_prefixes;
  std::chrono::milliseconds keepalive_interval{15000};  // comment line on an idle event stream
  // WebSocket paths: a GET there with `Upgrade: websocket` that passed the
  // limits and the token (which may also come as a `token` query
  // parameter, for clients that cannot set headers) is handed to `upgrade`
  // with the connection's file descriptor (the callee owns it) and its
  // header; `done` must be called once that connection has ended. Any
  // other request there gets 426.
  std::vector<std::string> websocket_paths;
  std::function<void(int fd, Request request, std::function<void()> done)> upgrade;
};

class HttpServer {
 public:
  using Handler = std::function<void(const Request&, Response&)>;
  // `handler` runs on the worker and probe threads. `count(series, delta)`
  // adds to a metric; it is called from the io thread.
  HttpServer(HttpOptions options, Handler handler,
             std::function<void(const std::string&, int64_t)> count,
             std::shared_ptr<spdlog::logger> log);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds (IOError naming the address when that fails; no SO_REUSEPORT, so
  // a port in use is an error) and starts the io, worker and probe threads.
  Status Start();
  // Stops accepting, closes every connection, joins the threads. Idempotent.
  void Stop();
  int port() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// The members of a query string, percent- and plus-decoded, in order.
std::vector<std::pair<std::string, std::string>> ParseQuery(std::string_view query);
// `text` percent-encoded for a query string.
std::string EncodeQueryParam(std::string_view text);

}  // namespace komoku::query
