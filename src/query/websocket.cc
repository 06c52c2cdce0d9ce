#include "query/websocket.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "wire/input.h"
#include "wire/ws_protocol.h"

namespace komoku::query {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using boost::system::error_code;

namespace {

constexpr const char* kV1Path = "/ws/v1";
constexpr const char* kV2Path = "/ws/v2";
// How long a closing handshake may take before the socket is closed hard.
constexpr auto kCloseGrace = std::chrono::seconds(2);

// What a connection and its Store listener share: the keys subscribed to,
// and the messages waiting to be sent. Thread-safe.
struct Feed {
  Feed(store::Store* store, store::WsVersion version, store::AliasSource aliases)
      : protocol(store, version, std::move(aliases)) {}

  // Queues `text`. True when this push passed `limit` (the queue is
  // dropped and the connection must close); `*wake` is set when the io
  // thread must be told.
  bool Push(std::string text, size_t limit, bool* wake) {
    std::lock_guard<std::mutex> lock(mu);
    if (dropped) return false;
    // One message is always taken, however large: the bound is on a backlog.
    if (!out.empty() && out_bytes + text.size() > limit) {
      dropped = true;
      out.clear();
      out_bytes = 0;
      *wake = true;
      return true;
    }
    out_bytes += text.size();
    out.push_back(std::move(text));
    if (wake_due) {
      wake_due = false;
      *wake = true;
    }
    return false;
  }

  bool Subscribed(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu);
    return keys.count(key) > 0;
  }

  // Translates requests and changes; its own lock-free business.
  store::WsProtocol protocol;
  // Set before the listener is added, constant after: posts a pump to the
  // io thread (never waits).
  std::function<void()> wake;

  std::mutex mu;
  std::set<std::string, std::less<>> keys;  // guarded by mu
  std::deque<std::string> out;              // guarded by mu
  size_t out_bytes = 0;                     // guarded by mu
  bool dropped = false;                     // guarded by mu: fell too far behind
  bool wake_due = true;                     // guarded by mu: the io thread found `out` empty
};

}  // namespace

bool WebSocketHub::Serves(const std::string& path) { return path == kV1Path || path == kV2Path; }

class WebSocketHub::Impl {
 public:
  class Session;

  Impl(store::Store* store, WebSocketOptions options, std::shared_ptr<spdlog::logger> log)
      : store_(store),
        options_(std::move(options)),
        log_(std::move(log)),
        work_(net::make_work_guard(ioc_)),
        pool_(std::max<size_t>(1, options_.workers)) {}
  ~Impl() { Stop(); }

  void Start() {
    if (started_) return;
    started_ = true;
    io_thread_ = std::thread([this] { ioc_.run(); });
  }
  void Stop();
  void Accept(int fd, Request req, std::function<void()> done);

  void Count(const std::string& series, int64_t delta = 1) { store_->metrics().Add(series, delta); }

  // Constant after construction.
  store::Store* const store_;
  const WebSocketOptions options_;
  const std::shared_ptr<spdlog::logger> log_;

  // Before ioc_: sessions its handlers own report here when destroyed.
  std::mutex mu_;
  std::map<Session*, std::weak_ptr<Session>> sessions_;  // guarded by mu_
  bool stopped_ = false;                                 // guarded by mu_
  std::atomic<size_t> count_{0};

  net::io_context ioc_{1};
  net::executor_work_guard<net::io_context::executor_type> work_;
  net::thread_pool pool_;  // after ioc_: its tasks hold sessions
  std::thread io_thread_;
  bool started_ = false;
};

// One WebSocket connection. Owned by the operations pending on it; its
// stream is touched on the io thread only, its Feed from anywhere.
class WebSocketHub::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl* hub, tcp::socket socket, store::WsVersion version, std::function<void()> done)
      : hub_(hub),
        ws_(std::move(socket)),
        write_timer_(hub->ioc_),
        close_timer_(hub->ioc_),
        feed_(std::make_shared<Feed>(hub->store_, version, hub->options_.aliases)),
        done_(std::move(done)) {
    ++hub_->count_;
    hub_->Count("komoku_ws_connections", 1);
  }

  ~Session() {
    if (listener_) hub_->store_->RemoveListener(listener_);
    {
      std::lock_guard<std::mutex> lock(hub_->mu_);
      hub_->sessions_.erase(this);
    }
    --hub_->count_;
    hub_->Count("komoku_ws_connections", -1);
    if (done_) done_();
  }

  void Start(const Request& req) {
    {
      std::lock_guard<std::mutex> lock(hub_->mu_);
      hub_->sessions_[this] = weak_from_this();
    }
    std::weak_ptr<Session> weak = weak_from_this();
    net::io_context& ioc = hub_->ioc_;
    feed_->wake = [weak, &ioc] {
      net::post(ioc, [weak] {
        if (auto self = weak.lock()) self->Pump();
      });
    };
    const WebSocketOptions& opt = hub_->options_;
    // Beast's own timeouts: the tcp_stream's are off.
    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout timeouts{};
    timeouts.handshake_timeout = opt.write_timeout;
    timeouts.idle_timeout = opt.idle_timeout;
    timeouts.keep_alive_pings = true;
    ws_.set_option(timeouts);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "komoku"); }));
    ws_.read_message_max(opt.max_message_bytes);
    request_.method(http::verb::get);
    request_.target(req.target);
    request_.version(11);
    for (const auto& [name, value] : req.headers) request_.insert(name, value);
    ws_.async_accept(request_, [self = shared_from_this()](error_code ec) {
      if (ec) {
        self->hub_->log_->info("WebSocket handshake refused: {}", ec.message());
        return;
      }
      self->accepted_ = true;
      self->Read();
    });
  }

  // At shutdown (io thread).
  void GoingAway() {
    if (!accepted_) return HardClose();  // no close frame before the handshake
    Close(websocket::close_reason(websocket::close_code::going_away));
  }

 private:
  void Read() {
    if (closing_) return;
    ws_.async_read(in_, [self = shared_from_this()](error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(error_code ec) {
    if (ec) {
      if (ec == websocket::error::message_too_big) {
        hub_->Count("komoku_refused_total{reason=\"too_large\"}");
        hub_->log_->warn(
            "WebSocket client sent a message over {} bytes (http.max_body_bytes); "
            "closed with 1009",
            hub_->options_.max_message_bytes);
      } else if (ec == websocket::condition::protocol_violation) {
        hub_->Count("komoku_refused_total{reason=\"bad_frame\"}");
        hub_->log_->warn("WebSocket client broke the protocol ({}); closed with 1002",
                         ec.message());
      }
      return HardCloseLater();
    }
    std::string text = beast::buffers_to_string(in_.data());
    in_.consume(in_.size());
    // Answered on a worker: a question may read history from disk.
    net::post(hub_->pool_,
              [self = shared_from_this(), text = std::move(text)] { self->Answer(text); });
  }

  // On a worker thread.
  void Answer(const std::string& text) {
    store::WsReply reply = feed_->protocol.Handle(text);
    hub_->Count("komoku_ws_messages_total");
    if (reply.sub == store::WsReply::Sub::kSubscribe) {
      Subscribe(reply.key);
    } else if (reply.sub == store::WsReply::Sub::kUnsubscribe) {
      std::lock_guard<std::mutex> lock(feed_->mu);
      feed_->keys.erase(reply.key);
    }
    Queue(store::DumpJson(reply.answer));
    net::post(hub_->ioc_, [self = shared_from_this()] { self->Read(); });
  }

  // On a worker thread: one message of this connection at a time, so
  // listener_ is not raced.
  void Subscribe(const std::string& key) {
    {
      std::lock_guard<std::mutex> lock(feed_->mu);
      feed_->keys.insert(key);
    }
    if (listener_) return;
    std::weak_ptr<Feed> weak = feed_;
    Impl* hub = hub_;
    listener_ = hub_->store_->AddListener([weak, hub](const store::Change& c) {
      auto feed = weak.lock();
      if (!feed || !feed->Subscribed(c.key)) return;
      nlohmann::json push = feed->protocol.Push(c);
      if (push.is_null()) return;
      bool wake = false;
      if (feed->Push(store::DumpJson(push), hub->options_.queue_bytes, &wake)) {
        hub->Count("komoku_ws_dropped_total");
        hub->log_->warn(
            "WebSocket client dropped: it left more than {} bytes unread "
            "(http.stream_queue_bytes); closed with 1008",
            hub->options_.queue_bytes);
      }
      if (wake) feed->wake();
    });
  }

  // Queues an answer (any thread).
  void Queue(std::string text) {
    bool wake = false;
    if (feed_->Push(std::move(text), hub_->options_.queue_bytes, &wake)) {
      hub_->Count("komoku_ws_dropped_total");
      hub_->log_->warn(
          "WebSocket client dropped: it left more than {} bytes unread "
          "(http.stream_queue_bytes); closed with 1008",
          hub_->options_.queue_bytes);
    }
    if (wake) feed_->wake();
  }

  // Sends what is queued, one message at a time (io thread).
  void Pump() {
    if (closing_ || writing_) return;
    std::string text;
    bool dropped = false;
    {
      std::lock_guard<std::mutex> lock(feed_->mu);
      if (feed_->dropped) {
        dropped = true;
      } else if (feed_->out.empty()) {
        feed_->wake_due = true;
        return;
      } else {
        text = std::move(feed_->out.front());
        feed_->out.pop_front();
        feed_->out_bytes -= text.size();
      }
    }
    if (dropped) {
      return Close(websocket::close_reason(websocket::close_code::policy_error,
                                           "too slow: too much left unread"));
    }
    out_ = std::move(text);
    writing_ = true;
    const uint64_t gen = ++write_gen_;
    write_timer_.expires_after(hub_->options_.write_timeout);
    write_timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
      if (ec || gen != self->write_gen_) return;
      self->hub_->log_->warn("WebSocket client read nothing for {} s; closed",
                             self->hub_->options_.write_timeout.count() / 1000);
      self->HardClose();
    });
    ws_.text(true);
    ws_.async_write(net::buffer(out_), [self = shared_from_this()](error_code ec, size_t) {
      self->writing_ = false;
      ++self->write_gen_;
      self->write_timer_.cancel();
      if (ec) return self->HardCloseLater();
      self->Pump();
    });
  }

  // Starts the closing handshake; the socket closes hard if it does not end
  // in time (a client that reads nothing never answers it).
  void Close(const websocket::close_reason& reason) {
    if (closing_) return;
    closing_ = true;
    close_timer_.expires_after(kCloseGrace);
    close_timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->HardClose();
    });
    ws_.async_close(reason, [self = shared_from_this()](error_code) {
      self->close_timer_.cancel();
      self->HardClose();
    });
  }

  // After a failed read or write: Beast has sent its close frame where one
  // was due; what is left goes.
  void HardCloseLater() {
    closing_ = true;
    HardClose();
  }

  void HardClose() {
    closing_ = true;
    error_code ignored;
    auto& socket = beast::get_lowest_layer(ws_).socket();
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
    write_timer_.cancel();
    close_timer_.cancel();
  }

  Impl* const hub_;
  websocket::stream<beast::tcp_stream> ws_;
  net::steady_timer write_timer_;
  net::steady_timer close_timer_;
  const std::shared_ptr<Feed> feed_;
  const std::function<void()> done_;
  http::request<http::empty_body> request_;
  beast::flat_buffer in_;
  std::string out_;  // the message being written
  uint64_t write_gen_ = 0;
  bool writing_ = false;
  bool closing_ = false;
  bool accepted_ = false;  // the handshake is done
  int listener_ = 0;       // 0 until the first sub; set by the worker answering it
};

void WebSocketHub::Impl::Accept(int fd, Request req, std::function<void()> done) {
  bool stopped = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped = stopped_;
  }
  if (stopped) {
    ::close(fd);
    if (done) done();
    return;
  }
  const store::WsVersion version =
      req.path == kV1Path ? store::WsVersion::kV1 : store::WsVersion::kV2;
  net::post(ioc_, [this, fd, version, req = std::move(req), done = std::move(done)]() mutable {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    error_code ec;
    tcp::socket socket(ioc_);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ec = error_code(errno, boost::system::system_category());
    } else {
      socket.assign(addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
    }
    if (ec) {
      log_->warn("WebSocket connection lost on hand-over: {}", ec.message());
      ::close(fd);
      if (done) done();
      return;
    }
    auto session = std::make_shared<Session>(this, std::move(socket), version, std::move(done));
    session->Start(req);
  });
}

void WebSocketHub::Impl::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  if (!started_) return;
  net::post(ioc_, [this] {
    std::vector<std::shared_ptr<Session>> open;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [ptr, weak] : sessions_) {
        if (auto s = weak.lock()) open.push_back(std::move(s));
      }
    }
    for (auto& s : open) s->GoingAway();
  });
  // The io thread ends once every connection has closed (each within
  // kCloseGrace).
  work_.reset();
  if (io_thread_.joinable()) io_thread_.join();
  pool_.join();
}

WebSocketHub::WebSocketHub(store::Store* store, WebSocketOptions options,
                           std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<Impl>(store, std::move(options), std::move(log))) {}
WebSocketHub::~WebSocketHub() = default;
void WebSocketHub::Start() { impl_->Start(); }
void WebSocketHub::Stop() { impl_->Stop(); }
void WebSocketHub::Accept(int fd, Request req, std::function<void()> done) {
  impl_->Accept(fd, std::move(req), std::move(done));
}
size_t WebSocketHub::connections() const { return impl_->count_.load(); }

}  // namespace komoku::query
