#include "query/http.h"

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <unordered_map>

#include "query/encoding.h"

namespace komoku::query {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;

namespace {

std::string_view SV(beast::string_view v) { return {v.data(), v.size()}; }

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string Decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size()) {
      int hi = HexDigit(s[i + 1]), lo = HexDigit(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += plus_is_space && c == '+' ? ' ' : c;
  }
  return out;
}

std::string ErrorJson(const std::string& code, const std::string& message) {
  return nlohmann::json{{"error", {{"code", code}, {"message", message}}}}.dump(
      -1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Runs tasks on a fixed set of threads, holding at most `max_queued` that
// wait. Thread-safe.
class WorkerPool {
 public:
  WorkerPool(size_t threads, size_t max_queued) : threads_(threads), max_queued_(max_queued) {}
  ~WorkerPool() { Stop(); }

  void Start() {
    for (size_t i = 0; i < threads_; ++i) workers_.emplace_back([this] { Run(); });
  }
  // False when the queue is full or the pool stopped: the task is not run.
  bool Submit(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_ || queue_.size() >= max_queued_) return false;
      queue_.push_back(std::move(task));
    }
    cv_.notify_one();
    return true;
  }
  // Lets the running tasks finish, drops the queued ones, joins.
  void Stop() {
    std::deque<std::function<void()>> dropped;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopped_ = true;
      dropped.swap(queue_);
    }
    cv_.notify_all();
    for (auto& t : workers_) {
      if (t.joinable()) t.join();
    }
    workers_.clear();
  }
  size_t queued() const {
    std::lock_guard<std::mutex> lock(mu_);
    return queue_.size();
  }

 private:
  void Run() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopped_ || !queue_.empty(); });
        if (stopped_) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  const size_t threads_;
  const size_t max_queued_;
  std::vector<std::thread> workers_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stopped_ = false;                     // guarded by mu_
};

// How many bytes of a request's unread body are read and thrown away after
// an error answer, so that the client reads the answer instead of a reset.
constexpr size_t kLingerBytes = 256 * 1024;
constexpr auto kLingerTime = std::chrono::seconds(2);
// Connections past max_connections that are read far enough to answer a
// probe (or a 503); past this many, a connection gets a 503 unread.
constexpr size_t kMaxOverflow = 64;
constexpr auto kOverflowTimeout = std::chrono::seconds(5);

}  // namespace

bool Request::HasHeader(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (EqualsNoCase(n, name)) return true;
  }
  return false;
}

std::string Request::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (EqualsNoCase(n, name)) return v;
  }
  return "";
}

void Response::SetHeader(std::string name, std::string value) {
  for (auto& [n, v] : headers) {
    if (EqualsNoCase(n, name)) {
      v = std::move(value);
      return;
    }
  }
  headers.emplace_back(std::move(name), std::move(value));
}

bool Response::HasHeader(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (EqualsNoCase(n, name)) return true;
  }
  return false;
}

std::string Response::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (EqualsNoCase(n, name)) return v;
  }
  return "";
}

std::vector<std::pair<std::string, std::string>> ParseQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.empty()) continue;
    size_t eq = item.find('=');
    std::string name = Decode(item.substr(0, eq), true);
    if (name.empty()) continue;
    out.emplace_back(std::move(name),
                     eq == std::string_view::npos ? "" : Decode(item.substr(eq + 1), true));
  }
  return out;
}

std::string EncodeQueryParam(std::string_view text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

class HttpServer::Impl {
 public:
  Impl(HttpOptions options, Handler handler, std::function<void(const std::string&, int64_t)> count,
       std::shared_ptr<spdlog::logger> log)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        count_(std::move(count)),
        log_(std::move(log)),
        acceptor_(ioc_),
        accept_timer_(ioc_),
        workers_(std::max<size_t>(1, options_.workers), options_.max_queued),
        probes_(1, 32) {}

  ~Impl() { Stop(); }

  Status Start();
  void Stop();
  int port() const { return port_; }

 private:
  class Session;

  void Accept();
  void Count(const std::string& series, int64_t delta = 1) {
    if (count_) count_(series, delta);
  }
  void Refused(const std::string& reason) {
    Count("komoku_refused_total{reason=\"" + reason + "\"}");
  }
  bool IsProbe(const std::string& path) const {
    return std::find(options_.probe_paths.begin(), options_.probe_paths.end(), path) !=
           options_.probe_paths.end();
  }
  // Answered without the token (HttpOptions::open_paths, open_prefixes).
  bool IsOpen(const std::string& path) const {
    if (std::find(options_.open_paths.begin(), options_.open_paths.end(), path) !=
        options_.open_paths.end()) {
      return true;
    }
    for (const std::string& prefix : options_.open_prefixes) {
      if (path.compare(0, prefix.size(), prefix) == 0) return true;
    }
    return false;
  }
  // The Authorization header's credentials: scheme "Bearer" in any case
  // (RFC 7235), then the token, compared in time independent of where it
  // differs.
  bool Authorized(std::string_view given) const {
    while (!given.empty() && given.front() == ' ') given.remove_prefix(1);
    size_t sp = given.find(' ');
    if (sp == std::string_view::npos || !EqualsNoCase(given.substr(0, sp), "bearer")) {
      return false;
    }
    given.remove_prefix(sp);
    while (!given.empty() && given.front() == ' ') given.remove_prefix(1);
    while (!given.empty() && given.back() == ' ') given.remove_suffix(1);
    return TokenMatches(given);
  }
  bool TokenMatches(std::string_view given) const {
    const std::string& want = options_.token;
    unsigned char diff = given.size() == want.size() ? 0 : 1;
    for (size_t i = 0; i < want.size(); ++i) {
      diff |= static_cast<unsigned char>(want[i] ^ (i < given.size() ? given[i] : 0));
    }
    return diff == 0;
  }
  bool IsWebSocket(const std::string& path) const {
    return std::find(options_.websocket_paths.begin(), options_.websocket_paths.end(), path) !=
           options_.websocket_paths.end();
  }
  // The `token` query parameter of a WebSocket path's target matches.
  bool QueryTokenMatches(std::string_view target) const {
    const size_t q = target.find('?');
    if (q == std::string_view::npos) return false;
    for (const auto& [name, value] : ParseQuery(target.substr(q + 1))) {
      if (name == "token") return TokenMatches(value);
    }
    return false;
  }

  // Constant after construction.
  const HttpOptions options_;
  const Handler handler_;
  const std::function<void(const std::string&, int64_t)> count_;
  const std::shared_ptr<spdlog::logger> log_;

  // Declared before ioc_: sessions that ioc_ destroys with its handlers
  // still report here.
  std::atomic<size_t> open_{0};      // sessions within max_connections
  std::atomic<size_t> overflow_{0};  // sessions past it
  // Connections handed to HttpOptions::upgrade and not yet ended: they
  // count against max_connections. Shared with their `done` callbacks,
  // which may outlive the server.
  const std::shared_ptr<std::atomic<size_t>> upgraded_ = std::make_shared<std::atomic<size_t>>(0);
  std::mutex sessions_mu_;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions_;  // guarded by sessions_mu_

  // What lingering and stream connections read is dropped here (the io
  // thread's alone; overlapping reads into it do not matter).
  std::array<char, 16384> discard_{};

  net::io_context ioc_{1};
  tcp::acceptor acceptor_;          // io thread (and Start)
  net::steady_timer accept_timer_;  // io thread
  WorkerPool workers_;
  WorkerPool probes_;
  std::thread io_thread_;
  int port_ = 0;
  bool started_ = false;
  bool stopped_ = false;
};

// One connection, from accept to close. Owned by the asynchronous operations
// pending on it (each holds a shared_ptr); touched on the io thread only,
// but for the worker that runs its request's handler, which hands the answer
// back to the io thread.
class HttpServer::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl* server, tcp::socket socket, bool overflow)
      : server_(server),
        socket_(std::move(socket)),
        timer_(server->ioc_),
        keepalive_timer_(server->ioc_),
        buffer_(server->options_.max_header_bytes + 16 * 1024),
        overflow_(overflow) {
    if (overflow_) {
      ++server_->overflow_;
    } else {
      ++server_->open_;
      server_->Count("komoku_http_connections", 1);
    }
  }

  ~Session() {
    if (events_) events_->Close();
    if (overflow_) {
      --server_->overflow_;
    } else {
      --server_->open_;
      server_->Count("komoku_http_connections", -1);
    }
    std::lock_guard<std::mutex> lock(server_->sessions_mu_);
    server_->sessions_.erase(this);
  }

  void Start() {
    {
      std::lock_guard<std::mutex> lock(server_->sessions_mu_);
      server_->sessions_[this] = weak_from_this();
    }
    ReadRequest();
  }

  // At shutdown (io thread): ends every operation.
  void Shutdown() {
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    timer_.cancel();
    keepalive_timer_.cancel();
    if (events_) events_->Close();
  }

 private:
  const HttpOptions& opt() const { return server_->options_; }

  // Cancels the socket's operations after `d` (they complete with
  // operation_aborted and timed_out_ set).
  void Arm(std::chrono::milliseconds d) {
    timed_out_ = false;
    const uint64_t gen = ++timer_gen_;
    timer_.expires_after(d);
    timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
      if (ec || gen != self->timer_gen_) return;
      self->timed_out_ = true;
      error_code ignored;
      self->socket_.cancel(ignored);
    });
  }
  void Disarm() {
    ++timer_gen_;
    timer_.cancel();
  }

  void ReadRequest() {
    head_ = false;
    if (buffer_.size() > 0) return ReadHeader();
    // An idle connection keeps no buffer.
    buffer_.shrink_to_fit();
    // Waiting for a request's first byte costs no timeout of a request: an
    // idle keep-alive connection closes quietly.
    Arm(overflow_ ? std::chrono::duration_cast<std::chrono::milliseconds>(kOverflowTimeout)
                  : opt().idle_timeout);
    socket_.async_read_some(buffer_.prepare(512),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              self->Disarm();
                              if (ec) return self->Close();
                              self->buffer_.commit(n);
                              self->ReadHeader();
                            });
  }

  void ReadHeader() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(opt().max_header_bytes));
    parser_->body_limit(opt().max_body_bytes);
    Arm(overflow_ ? std::chrono::duration_cast<std::chrono::milliseconds>(kOverflowTimeout)
                  : opt().header_timeout);
    http::async_read_header(socket_, buffer_, *parser_,
                            [self = shared_from_this()](error_code ec, size_t) {
                              self->Disarm();
                              self->OnHeader(ec);
                            });
  }

  void OnReadError(error_code ec, bool in_header) {
    if (timed_out_) {
      server_->Refused("timeout");
      return Fail(408, "timeout",
                  in_header ? "the request header did not arrive within " +
                                  std::to_string(opt().header_timeout.count() / 1000) + " s"
                            : "the request body did not arrive within " +
                                  std::to_string(opt().body_timeout.count() / 1000) + " s");
    }
    if (ec == http::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted ||
        ec == net::error::broken_pipe) {
      return Close();
    }
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      return Fail(431, "header_too_large",
                  "the request header is larger than " + std::to_string(opt().max_header_bytes) +
                      " bytes (http.max_header_bytes)");
    }
    if (ec == http::error::body_limit) {
      return Fail(413, "too_large",
                  "request body is too large: more than " + std::to_string(opt().max_body_bytes) +
                      " bytes (http.max_body_bytes)");
    }
    Fail(400, "bad_request", "malformed HTTP request: " + ec.message());
  }

  void OnHeader(error_code ec) {
    if (ec) return OnReadError(ec, /*in_header=*/true);
    const auto& req = parser_->get();
    version_ = req.version();
    keep_alive_ = req.keep_alive();
    size_t fields = 0;
    for (auto it = req.begin(); it != req.end(); ++it) ++fields;
    if (fields > opt().max_header_fields) {
      return Fail(431, "header_too_large",
                  "the request has " + std::to_string(fields) + " header fields, at most " +
                      std::to_string(opt().max_header_fields) + " (http.max_header_fields)");
    }
    const std::string target(SV(req.target()));
    path_ = Decode(std::string_view(target).substr(0, target.find('?')), false);
    const bool probe = server_->IsProbe(path_);
    if (overflow_ && !probe) {
      return Fail(503, "too_many_connections",
                  "too many connections open (" + std::to_string(opt().max_connections) +
                      ", http.max_connections); try again later");
    }
    const auto encoding = req[http::field::content_encoding];
    if (!encoding.empty() && !EqualsNoCase(SV(encoding), "identity")) {
      return Fail(415, "unsupported_encoding",
                  "Content-Encoding '" + std::string(SV(encoding)) +
                      "' is not accepted: send the body uncompressed");
    }
    const auto method = req.method();
    if ((method == http::verb::post || method == http::verb::put || method == http::verb::patch) &&
        !req.has_content_length() && !req.chunked()) {
      return Fail(411, "length_required",
                  std::string(SV(req.method_string())) +
                      " without a Content-Length header: send a body, or an empty one (with "
                      "curl, add -d '')");
    }
    const bool websocket = server_->IsWebSocket(path_);
    if (!opt().token.empty() && !probe && !server_->IsOpen(path_)) {
      auto auth = req.find(http::field::authorization);
      const bool by_query = websocket && server_->QueryTokenMatches(target);
      if (!by_query && (auth == req.end() || !server_->Authorized(SV(auth->value())))) {
        server_->Refused("unauthorized");
        Response res;
        res.SetHeader("WWW-Authenticate", "Bearer realm=\"komoku\"");
        res.status = 401;
        res.SetContent(
            ErrorJson("unauthorized", auth != req.end() ? "wrong token in the Authorization header"
                                      : websocket       ? "this API needs 'Authorization: Bearer "
                                                          "<token>' or ?token=<token> (http.token)"
                                                        : "this API needs 'Authorization: Bearer "
                                                          "<token>' (http.token)"),
            "application/json");
        close_after_ = !parser_->is_done();
        return Write(std::move(res));
      }
    }
    if (websocket) return Upgrade();
    const auto expect = req[http::field::expect];
    if (!expect.empty()) {
      if (!EqualsNoCase(SV(expect), "100-continue")) {
        return Fail(417, "expectation_failed",
                    "Expect: '" + std::string(SV(expect)) + "' is not supported");
      }
      if (!parser_->is_done()) {
        static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        Arm(opt().write_timeout);
        return net::async_write(socket_, net::buffer(kContinue),
                                [self = shared_from_this()](error_code ec, size_t) {
                                  self->Disarm();
                                  if (ec) return self->Close();
                                  self->ReadBody();
                                });
      }
    }
    ReadBody();
  }

  // A WebSocket path: the socket goes to HttpOptions::upgrade when the
  // request asks for it, with no body.
  void Upgrade() {
    const auto& req = parser_->get();
    const auto upgrade = req[http::field::upgrade];
    if (req.method() != http::verb::get || !EqualsNoCase(SV(upgrade), "websocket") ||
        !opt().upgrade) {
      Response res;
      res.SetHeader("Upgrade", "websocket");
      res.status = 426;
      res.SetContent(ErrorJson("upgrade_required",
                               "this path speaks WebSocket (docs/websocket.md): connect with a "
                               "WebSocket client, e.g. ws://host:port" +
                                   path_),
                     "application/json");
      server_->Refused("upgrade_required");
      close_after_ = true;
      return Write(std::move(res));
    }
    if (!parser_->is_done()) return Fail(400, "bad_request", "a WebSocket upgrade has no body");
    Request out;
    out.method = "GET";
    out.target = std::string(SV(req.target()));
    out.path = path_;
    for (const auto& f : req) out.headers.emplace_back(SV(f.name_string()), SV(f.value()));
    parser_.reset();
    Disarm();
    error_code ec;
    const int fd = socket_.release(ec);
    if (ec) return Close();
    ++*server_->upgraded_;
    server_->options_.upgrade(fd, std::move(out), [upgraded = server_->upgraded_] { --*upgraded; });
  }

  void ReadBody() {
    if (parser_->is_done()) return Dispatch();
    Arm(opt().body_timeout);
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, size_t) {
                       self->Disarm();
                       if (ec) return self->OnReadError(ec, /*in_header=*/false);
                       self->Dispatch();
                     });
  }

  void Dispatch() {
    auto msg = parser_->release();
    parser_.reset();
    Request req;
    req.head = msg.method() == http::verb::head;
    req.method = req.head ? "GET" : std::string(SV(msg.method_string()));
    req.target = std::string(SV(msg.target()));
    req.path = path_;
    req.body = std::move(msg.body());
    for (const auto& f : msg) req.headers.emplace_back(SV(f.name_string()), SV(f.value()));
    head_ = req.head;
    const bool probe = server_->IsProbe(path_);
    auto task = [self = shared_from_this(), req = std::move(req)]() {
      Response res;
      self->server_->handler_(req, res);
      // Compressed here, on the worker, so a large answer never holds the io
      // thread that every connection shares.
      EncodeAnswer(req, res);
      net::post(self->server_->ioc_,
                [self, res = std::move(res)]() mutable { self->Write(std::move(res)); });
    };
    const bool queued = probe ? server_->probes_.Submit(std::move(task))
                              : server_->workers_.Submit(std::move(task));
    if (!queued) {
      Fail(503, "busy",
           "the server is busy (" + std::to_string(opt().max_queued) +
               " requests wait for a worker); try again later");
    }
  }

  // Answers an error the transport found itself and closes the connection
  // (the rest of the request may be unread).
  void Fail(int status, const std::string& code, const std::string& message) {
    if (code != "timeout" && code != "unauthorized") server_->Refused(code);
    Response res;
    res.status = status;
    res.SetContent(ErrorJson(code, message), "application/json");
    close_after_ = true;
    Write(std::move(res));
  }

  void Write(Response r) {
    if (r.stream && head_) {  // HEAD of a stream: its header alone
      r.stream->Close();
      r.stream.reset();
    }
    if (r.stream) return StartStream(std::move(r));
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(r.status), version_ ? version_ : 11);
    for (auto& [name, value] : r.headers) res->insert(name, value);
    if (!r.content_type.empty()) res->set(http::field::content_type, r.content_type);
    if (overflow_) close_after_ = true;
    res->keep_alive(keep_alive_ && !close_after_);
    res->body() = std::move(r.body);
    res->prepare_payload();
    if (head_) {
      const size_t n = res->body().size();
      res->body().clear();
      res->content_length(n);
    }
    Arm(opt().write_timeout);
    http::async_write(socket_, *res, [self = shared_from_this(), res](error_code ec, size_t) {
      self->Disarm();
      if (ec) return self->Close();
      if (!res->keep_alive()) return self->Linger();
      self->ReadRequest();
    });
  }

  // After the last answer: no more sending, then read and drop what the
  // client still sends (bounded), so that the answer is read, not reset.
  void Linger() {
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return Close();
    buffer_.consume(buffer_.size());
    Arm(std::chrono::duration_cast<std::chrono::milliseconds>(kLingerTime));
    LingerRead();
  }
  void LingerRead() {
    socket_.async_read_some(net::buffer(server_->discard_),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              self->lingered_ += n;
                              if (ec || self->lingered_ > kLingerBytes) {
                                self->Disarm();
                                return self->Close();
                              }
                              self->LingerRead();
                            });
  }

  void Close() {
    error_code ec;
    socket_.close(ec);
    timer_.cancel();
    keepalive_timer_.cancel();
    if (events_) events_->Close();
  }

  // --- event streams -----------------------------------------------------

  void StartStream(Response r) {
    events_ = std::move(r.stream);
    auto res = std::make_shared<http::response<http::empty_body>>(
        static_cast<http::status>(r.status), version_ ? version_ : 11);
    for (auto& [name, value] : r.headers) res->insert(name, value);
    res->set(http::field::content_type,
             r.content_type.empty() ? "text/event-stream" : r.content_type);
    chunked_ = version_ >= 11;
    res->keep_alive(false);
    if (chunked_) res->chunked(true);
    auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
    std::weak_ptr<Session> weak = weak_from_this();
    net::io_context& ioc = server_->ioc_;
    events_->SetWake([weak, &ioc] {
      net::post(ioc, [weak] {
        if (auto self = weak.lock()) self->Pump();
      });
    });
    Arm(opt().write_timeout);
    http::async_write_header(socket_, *sr,
                             [self = shared_from_this(), res, sr](error_code ec, size_t) {
                               self->Disarm();
                               if (ec) return self->Close();
                               self->WatchClient();
                               self->Pump();
                             });
  }

  // A read that completes when the client goes away, so that its stream is
  // released at once rather than at the next write.
  void WatchClient() {
    socket_.async_read_some(net::buffer(server_->discard_),
                            [self = shared_from_this()](error_code ec, size_t) {
                              if (ec) return self->Close();
                              self->WatchClient();  // bytes after the request are ignored
                            });
  }

  void Pump() {
    if (!socket_.is_open()) return;
    // Also while a write hangs on a client that does not read.
    if (events_->Ended()) return Close();
    if (writing_) return;  // its completion pumps again
    std::string text = events_->Take();
    if (text.empty()) {
      const uint64_t gen = ++keepalive_gen_;
      keepalive_timer_.expires_after(opt().keepalive_interval);
      keepalive_timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
        if (ec || gen != self->keepalive_gen_) return;
        self->Send(": keepalive\n\n");
      });
      return;
    }
    Send(std::move(text));
  }

  void Send(std::string text) {
    ++keepalive_gen_;
    keepalive_timer_.cancel();
    out_.clear();
    if (chunked_ && !text.empty()) {
      char size[20];
      std::snprintf(size, sizeof size, "%zx\r\n", text.size());
      out_ = size;
      out_ += text;
      out_ += "\r\n";
    } else {
      out_ = std::move(text);
    }
    writing_ = true;
    Arm(opt().write_timeout);
    net::async_write(socket_, net::buffer(out_),
                     [self = shared_from_this()](error_code ec, size_t) {
                       self->writing_ = false;
                       self->Disarm();
                       if (ec) return self->Close();
                       self->Pump();
                     });
  }

  Impl* const server_;
  tcp::socket socket_;
  net::steady_timer timer_;
  net::steady_timer keepalive_timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  const bool overflow_;
  uint64_t timer_gen_ = 0;
  uint64_t keepalive_gen_ = 0;
  bool timed_out_ = false;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool close_after_ = false;
  bool head_ = false;
  std::string path_;
  size_t lingered_ = 0;
  std::shared_ptr<EventStream> events_;
  bool chunked_ = true;
  bool writing_ = false;
  std::string out_;
};

Status HttpServer::Impl::Start() {
  error_code ec;
  auto address =
      net::ip::make_address(options_.host == "localhost" ? "127.0.0.1" : options_.host, ec);
  const std::string where = options_.host + ":" + std::to_string(options_.port);
  if (ec) {
    return Status::IOError("cannot listen on " + where + ": not an IP address (" + ec.message() +
                           ")");
  }
  tcp::endpoint endpoint(address, static_cast<unsigned short>(options_.port));
  acceptor_.open(endpoint.protocol(), ec);
  // SO_REUSEADDR alone allows a restart while old connections are in
  // TIME_WAIT; never SO_REUSEPORT, with which a second Komoku on the same
  // port started without an error and took half the requests.
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    error_code ignored;
    acceptor_.close(ignored);
    return Status::IOError("cannot listen on " + where +
                           " (address in use or not local?): " + ec.message());
  }
  port_ = acceptor_.local_endpoint().port();

  // Each connection is a file descriptor: raise the soft limit toward what
  // max_connections needs (a service under systemd gets LimitNOFILE=).
  const rlim_t want = static_cast<rlim_t>(options_.max_connections + kMaxOverflow + 128);
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
    rlimit raised = rl;
    raised.rlim_cur = std::min(want, rl.rlim_max);
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
    if (rl.rlim_cur < want) {
      log_->warn(
          "http.max_connections {} wants {} open files, the limit is {} (LimitNOFILE= "
          "under systemd, ulimit -n otherwise); past it new connections wait",
          options_.max_connections, static_cast<unsigned long long>(want),
          static_cast<unsigned long long>(rl.rlim_cur));
    }
  }

  workers_.Start();
  probes_.Start();
  started_ = true;
  Accept();
  io_thread_ = std::thread([this] { ioc_.run(); });
  return Status::Ok();
}

void HttpServer::Impl::Accept() {
  acceptor_.async_accept([this](error_code ec, tcp::socket socket) {
    if (!acceptor_.is_open()) return;
    if (ec) {
      if (ec == net::error::no_descriptors || ec.value() == ENFILE ||
          ec == net::error::no_buffer_space || ec == net::error::no_memory) {
        // Out of file descriptors: waiting connections stay in the backlog.
        log_->warn("HTTP accept: {}; retrying in 100 ms", ec.message());
        accept_timer_.expires_after(std::chrono::milliseconds(100));
        accept_timer_.async_wait([this](error_code e) {
          if (!e) Accept();
        });
        return;
      }
      return Accept();
    }
    error_code ignored;
    // Without Nagle's algorithm: a kept-alive connection's answer otherwise
    // waited for the client's delayed ACK, about 40 ms a request.
    socket.set_option(tcp::no_delay(true), ignored);
    if (open_.load() + upgraded_->load() < options_.max_connections) {
      std::make_shared<Session>(this, std::move(socket), false)->Start();
    } else if (overflow_.load() < kMaxOverflow) {
      std::make_shared<Session>(this, std::move(socket), true)->Start();
    } else {
      // Past the overflow too: a 503 written without reading the request.
      Refused("too_many_connections");
      static const std::string kBusy = [] {
        std::string body =
            ErrorJson("too_many_connections", "too many connections open; try again later");
        return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
               "Connection: close\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n\r\n" + body;
      }();
      socket.non_blocking(true, ignored);
      socket.write_some(net::buffer(kBusy), ignored);
      socket.shutdown(tcp::socket::shutdown_both, ignored);
      socket.close(ignored);
    }
    Accept();
  });
}

void HttpServer::Impl::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (!started_) return;
  // Close the acceptor and every connection on the io thread, then let the
  // io thread run out of work.
  net::post(ioc_, [this] {
    error_code ignored;
    acceptor_.close(ignored);
    accept_timer_.cancel();
    std::vector<std::shared_ptr<Session>> open;
    {
      std::lock_guard<std::mutex> lock(sessions_mu_);
      for (auto& [ptr, weak] : sessions_) {
        if (auto s = weak.lock()) open.push_back(std::move(s));
      }
    }
    for (auto& s : open) s->Shutdown();
  });
  workers_.Stop();
  probes_.Stop();
  // Answers the workers posted after the sessions closed fail at once;
  // whatever is left is destroyed with ioc_.
  net::post(ioc_, [this] {
    std::vector<std::shared_ptr<Session>> open;
    {
      std::lock_guard<std::mutex> lock(sessions_mu_);
      for (auto& [ptr, weak] : sessions_) {
        if (auto s = weak.lock()) open.push_back(std::move(s));
      }
    }
    for (auto& s : open) s->Shutdown();
    ioc_.stop();
  });
  if (io_thread_.joinable()) io_thread_.join();
}

HttpServer::HttpServer(HttpOptions options, Handler handler,
                       std::function<void(const std::string&, int64_t)> count,
                       std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler), std::move(count),
                                   std::move(log))) {}
HttpServer::~HttpServer() = default;
Status HttpServer::Start() { return impl_->Start(); }
void HttpServer::Stop() { impl_->Stop(); }
int HttpServer::port() const { return impl_->port(); }

}  // namespace komoku::query
