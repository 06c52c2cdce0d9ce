#include "remote_write/remote_write.h"

#include <httplib.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "remote_write/encode.h"
#include "store/store.h"

namespace komoku::remote_write {

namespace {

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The longest a wait goes without a heartbeat.
constexpr int64_t kBeatMs = 500;

// The longest connecting (and a TLS handshake) may take.
constexpr std::chrono::milliseconds kMaxConnectTimeout{5000};

// How often the guard looks at the request under way, and Stop() cuts one
// off again until the thread has ended.
constexpr int64_t kGuardMs = 100;

// Most bytes of a refusal's body put in the log.
constexpr size_t kMaxLoggedBody = 300;

// Why a request got no HTTP answer, for the log and /readyz.
std::string Describe(httplib::Error error, int64_t timeout_ms, bool cut) {
  const std::string within = " within " + std::to_string(timeout_ms) + " ms";
  if (cut) return "no complete answer" + within + " (cut off)";
  switch (error) {
    case httplib::Error::Connection:
      return "cannot connect (Connection)";
    case httplib::Error::ConnectionTimeout:
      return "cannot connect" + within + " (ConnectionTimeout)";
    case httplib::Error::Read:
      // httplib tells a read timeout and a closed connection apart no more.
      return "no complete answer" + within + ", or the connection closed (Read)";
    case httplib::Error::Write:
      return "sending the request failed (Write)";
    case httplib::Error::SSLConnection:
      return "TLS handshake failed (SSLConnection)";
    case httplib::Error::SSLLoadingCerts:
      return "cannot load the CA certificates (SSLLoadingCerts); see remote_write.ca_file";
    case httplib::Error::SSLServerVerification:
      return "the receiver's certificate is not trusted (SSLServerVerification); see "
             "remote_write.ca_file";
    default:
      return httplib::to_string(error);
  }
}

}  // namespace

Action ActionFor(int http_status) {
  if (http_status >= 200 && http_status < 300) return Action::kAck;
  switch (http_status) {
    case 401:  // Unauthorized
    case 403:  // Forbidden
    case 404:  // Not Found: no write endpoint at the URL (yet)
    case 407:  // Proxy Authentication Required
    case 408:  // Request Timeout: about the connection, not the batch
    case 429:  // Too Many Requests
      return Action::kRetry;
    default:
      break;
  }
  if (http_status >= 400 && http_status < 500) return Action::kSkip;
  // 5xx; and a 1xx or 3xx (redirects are not followed), which acknowledge
  // nothing either.
  return Action::kRetry;
}

std::string StatePath(const std::string& data_dir) { return data_dir + "/remote_write.json"; }

Result<std::optional<uint64_t>> ReadAckedSeq(const std::string& state_path) {
  Result<std::string> text = store::ReadWholeFile(state_path);
  if (!text.ok()) {
    if (text.status().code() == Status::Code::kNotFound) return std::optional<uint64_t>();
    return text.status();
  }
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("acked_seq") || !j["acked_seq"].is_number_unsigned()) {
    return Status::Corruption(state_path +
                              ": not a remote write state file (expected {\"acked_seq\": N}); "
                              "remove it to start again from the newest change");
  }
  return std::optional<uint64_t>(j["acked_seq"].get<uint64_t>());
}

struct RemoteWriter::Impl {
  Options options;
  store::Store* store = nullptr;
  std::shared_ptr<spdlog::logger> log;
  KeyFilter filter;
  std::string scheme_host_port;  // "http://host:port"
  std::string path;              // "/api/v1/write"

  std::thread thread;
  // Cuts off a request that has taken longer than options.timeout (Guard).
  std::thread guard;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;  // guarded by mu
  bool run_done = false;  // guarded by mu: Run() has returned

  std::atomic<int64_t> beat_ms{0};
  // When the request under way began (SteadyMs), 0 between requests.
  std::atomic<int64_t> call_started_ms{0};
  // The guard cut the request under way off.
  std::atomic<bool> cut{false};

  // Guarded by trouble_mu: why the last request failed, and since when
  // requests fail (SteadyMs; 0 while they succeed).
  mutable std::mutex trouble_mu;
  std::string trouble;
  int64_t failing_since_ms = 0;

  // Thread-owned.
  uint64_t acked = 0;
  std::map<std::string, int64_t, std::less<>> last_sent;
  int64_t last_send_ms = 0;
  std::unique_ptr<httplib::Client> client;

  void Beat() { beat_ms = SteadyMs(); }

  void SetTrouble(const std::string& why) {
    std::lock_guard<std::mutex> lock(trouble_mu);
    if (failing_since_ms == 0) failing_since_ms = SteadyMs();
    trouble = why;
  }
  void ClearTrouble() {
    std::lock_guard<std::mutex> lock(trouble_mu);
    failing_since_ms = 0;
    trouble.clear();
  }

  // The guard thread: cuts off (Client::stop, which shuts the socket down
  // under a request under way) a request older than options.timeout.
  // httplib's own timeouts bound each connect, read and write, not the
  // whole request: a receiver that sends its answer a byte at a time would
  // hold the thread for ever.
  void Guard() {
    std::unique_lock<std::mutex> lock(mu);
    while (!stopping) {
      cv.wait_for(lock, std::chrono::milliseconds(kGuardMs));
      const int64_t started = call_started_ms.load();
      if (stopping || started == 0 || SteadyMs() - started < options.timeout.count()) continue;
      cut = true;
      lock.unlock();
      client->stop();  // with no lock held: it waits for a connect under way
      lock.lock();
    }
  }

  // Waits `ms` (beating meanwhile); false once stopping.
  bool Wait(int64_t ms) {
    const int64_t until = SteadyMs() + ms;
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      Beat();
      const int64_t left = until - SteadyMs();
      if (stopping) return false;
      if (left <= 0) return true;
      cv.wait_for(lock, std::chrono::milliseconds(std::min(left, kBeatMs)));
    }
  }

  bool Stopping() {
    std::lock_guard<std::mutex> lock(mu);
    return stopping;
  }

  void SaveState() {
    Status st = store::WriteFileAtomically(options.state_path,
                                           nlohmann::json{{"acked_seq", acked}}.dump() + "\n");
    if (!st.ok()) log->error("remote write: {}", st.ToString());
  }

  // `unsent`: what the last read found after `acked`. When it found
  // nothing, nothing is pending (the sequence numbers after the last
  // stored row may be gaps: a skipped duplicate, a deleted key).
  void UpdateGauges(const std::vector<store::Store::SeqChange>& unsent) {
    const uint64_t last = store->LastChangeSeq();
    store->metrics().Set("komoku_remote_write_pending",
                         static_cast<int64_t>(!unsent.empty() && last > acked ? last - acked : 0));
    int64_t lag_ms = 0;
    if (!unsent.empty()) {
      int64_t oldest = unsent.front().sample.time_ms;
      for (const auto& c : unsent) oldest = std::min(oldest, c.sample.time_ms);
      lag_ms = std::max<int64_t>(0, WallMs() - oldest);
    }
    store->metrics().Set("komoku_remote_write_lag_seconds", lag_ms / 1000);
  }

  enum class Outcome { kAcked, kRefused, kRetry };

  // One POST, with no lock held.
  Outcome Post(const std::string& body, size_t samples, uint64_t first_seq, uint64_t last_seq) {
    httplib::Headers headers = {{"Content-Encoding", "snappy"},
                                {"X-Prometheus-Remote-Write-Version", "0.1.0"},
                                {"User-Agent", "komoku/remote-write"}};
    cut = false;
    call_started_ms = SteadyMs();
    Beat();
    httplib::Result res = client->Post(path, headers, body, "application/x-protobuf");
    call_started_ms = 0;
    Beat();
    if (!res) {
      if (Stopping()) return Outcome::kRetry;  // cut off by Stop()
      const std::string why = Describe(res.error(), options.timeout.count(), cut);
      log->warn("remote write: {}: {}; retrying", options.url, why);
      SetTrouble(why);
      return Outcome::kRetry;
    }
    const int status = res->status;
    const Action action = ActionFor(status);
    if (action == Action::kAck) {
      ClearTrouble();
      return Outcome::kAcked;
    }
    std::string text = res->body.substr(0, kMaxLoggedBody);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    SetTrouble("HTTP " + std::to_string(status) + ": " + text);
    if (action == Action::kSkip) {
      log->error(
          "remote write: {} refused a batch of {} samples (changes {}..{}) with HTTP {}: {}; "
          "the batch is skipped (a permanent error: sending it again would be refused again)",
          options.url, samples, first_seq, last_seq, status, text);
      return Outcome::kRefused;
    }
    if (status >= 400 && status < 500 && status != 408 && status != 429) {
      // Credentials or the URL: nothing changes until someone fixes them.
      log->error(
          "remote write: {} answered HTTP {}: {}; check remote_write's url and credentials; "
          "the batch is kept and sent again until it is accepted",
          options.url, status, text);
    } else {
      log->warn("remote write: {} answered HTTP {}: {}; retrying", options.url, status, text);
    }
    return Outcome::kRetry;
  }

  void Run() {
    int64_t backoff = 1000;
    while (!Stopping()) {
      Beat();
      Result<std::vector<store::Store::SeqChange>> rows =
          store->ChangesAfter(acked, options.batch_size);
      if (!rows.ok()) {
        log->error("remote write: reading changes after {}: {}", acked, rows.status().ToString());
        if (!Wait(backoff)) return;
        continue;
      }
      UpdateGauges(*rows);
      if (rows->empty()) {
        if (!Wait(options.send_interval.count())) return;
        continue;
      }
      // A small batch waits for more until send_interval after the last send.
      const int64_t due = last_send_ms + options.send_interval.count();
      if (rows->size() < options.batch_size && SteadyMs() < due) {
        if (!Wait(due - SteadyMs())) return;
        continue;
      }
      last_send_ms = SteadyMs();
      Batch batch = BuildBatch(*rows, filter, last_sent);
      if (batch.out_of_order > 0) {
        store->metrics().Add("komoku_remote_write_out_of_order_total",
                             static_cast<int64_t>(batch.out_of_order));
      }
      const uint64_t first_seq = rows->front().seq;
      const uint64_t last_seq = rows->back().seq;
      if (batch.samples > 0) {
        const std::string body = EncodeWriteRequest(batch.series);
        Outcome outcome;
        for (;;) {
          outcome = Post(body, batch.samples, first_seq, last_seq);
          if (outcome != Outcome::kRetry) break;
          store->metrics().Add("komoku_remote_write_retries_total");
          UpdateGauges(*rows);  // the lag grows while the receiver is away
          if (!Wait(backoff)) return;
          backoff = std::min<int64_t>(backoff * 2, options.max_backoff.count());
        }
        backoff = 1000;
        if (outcome == Outcome::kAcked) {
          store->metrics().Add("komoku_remote_write_sent_total",
                               static_cast<int64_t>(batch.samples));
          for (size_t i = 0; i < batch.series.size(); ++i) {
            last_sent[batch.keys[i]] = batch.series[i].samples.back().first;
          }
        } else {
          store->metrics().Add("komoku_remote_write_failed_total",
                               static_cast<int64_t>(batch.samples));
        }
      }
      acked = last_seq;
      SaveState();
      store->KeepRowsAfter(acked);
    }
  }
};

RemoteWriter::RemoteWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RemoteWriter::~RemoteWriter() { Stop(); }

Result<std::unique_ptr<RemoteWriter>> RemoteWriter::Create(const Options& options,
                                                           store::Store* store,
                                                           std::shared_ptr<spdlog::logger> log) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->store = store;
  impl->log = std::move(log);
  impl->filter.include = SplitGlobs(options.include);
  impl->filter.exclude = SplitGlobs(options.exclude);
  const std::string& url = options.url;
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos ||
      (url.compare(0, scheme_end, "http") != 0 && url.compare(0, scheme_end, "https") != 0)) {
    return Status::InvalidArgument("remote_write.url: '" + url +
                                   "' must start with http:// or https://");
  }
  const size_t path_start = url.find('/', scheme_end + 3);
  impl->scheme_host_port = url.substr(0, path_start);
  impl->path = path_start == std::string::npos ? "/" : url.substr(path_start);
  if (impl->scheme_host_port.size() <= scheme_end + 3) {
    return Status::InvalidArgument("remote_write.url: '" + url + "' has no host");
  }
  if (options.batch_size == 0) {
    return Status::InvalidArgument("remote_write.batch_size: must be at least 1");
  }
  auto client = std::make_unique<httplib::Client>(impl->scheme_host_port);
  if (!client->is_valid()) {
    return Status::InvalidArgument("remote_write.url: '" + url + "' is not a URL Komoku can use");
  }
  const auto secs = [](std::chrono::milliseconds ms) {
    return std::chrono::duration_cast<std::chrono::microseconds>(ms);
  };
  // Connecting (with a TLS handshake) holds httplib's socket lock, which
  // Client::stop waits for: kept short so that the guard's cut and a stop
  // (within the service's 10 s stop deadline) never wait long for it.
  client->set_connection_timeout(secs(std::min(options.timeout, kMaxConnectTimeout)));
  client->set_read_timeout(secs(options.timeout));
  client->set_write_timeout(secs(options.timeout));
  client->set_keep_alive(true);
  if (!options.bearer_token.empty()) client->set_bearer_token_auth(options.bearer_token);
  if (!options.username.empty()) client->set_basic_auth(options.username, options.password);
  if (!options.ca_file.empty()) client->set_ca_cert_path(options.ca_file);
  impl->client = std::move(client);
  return std::unique_ptr<RemoteWriter>(new RemoteWriter(std::move(impl)));
}

Status RemoteWriter::Start() {
  Impl& impl = *impl_;
  Result<std::optional<uint64_t>> acked = ReadAckedSeq(impl.options.state_path);
  if (!acked.ok()) return acked.status();
  if (acked->has_value()) {
    impl.acked = **acked;
    impl.log->info("remote write to {}: resuming after change {}", impl.options.url, impl.acked);
  } else {
    impl.acked = impl.store->LastChangeSeq();
    impl.log->info("remote write to {}: starting after change {} (no state file yet)",
                   impl.options.url, impl.acked);
    impl.SaveState();
  }
  impl.store->KeepRowsAfter(impl.acked);
  for (const char* name :
       {"komoku_remote_write_sent_total", "komoku_remote_write_failed_total",
        "komoku_remote_write_retries_total", "komoku_remote_write_out_of_order_total"}) {
    impl.store->metrics().Add(name, 0);
  }
  impl.Beat();
  impl.thread = std::thread([&impl] {
    impl.Run();
    {
      std::lock_guard<std::mutex> lock(impl.mu);
      impl.run_done = true;
    }
    impl.cv.notify_all();
  });
  impl.guard = std::thread([&impl] { impl.Guard(); });
  return Status::Ok();
}

void RemoteWriter::Stop() {
  Impl& impl = *impl_;
  {
    std::lock_guard<std::mutex> lock(impl.mu);
    impl.stopping = true;
  }
  impl.cv.notify_all();
  if (impl.thread.joinable()) {
    // A request under way ends now rather than at its timeout; one that
    // began just after this (the thread had not yet seen `stopping`) is cut
    // off by the next round. Client::stop is called with no lock held.
    std::unique_lock<std::mutex> lock(impl.mu);
    while (!impl.run_done) {
      lock.unlock();
      impl.client->stop();
      lock.lock();
      impl.cv.wait_for(lock, std::chrono::milliseconds(kGuardMs), [&] { return impl.run_done; });
    }
    lock.unlock();
    impl.thread.join();
  }
  if (impl.guard.joinable()) impl.guard.join();
}

std::chrono::milliseconds RemoteWriter::StalledFor() const {
  if (!impl_->thread.joinable()) return std::chrono::milliseconds(0);
  int64_t idle = SteadyMs() - impl_->beat_ms.load();
  // A request is cut off after its timeout; connecting (a TLS handshake
  // included), which the cut waits for, may take up to another.
  if (impl_->call_started_ms != 0) idle -= 2 * impl_->options.timeout.count();
  return std::chrono::milliseconds(std::max<int64_t>(0, idle));
}

RemoteWriter::Trouble RemoteWriter::CurrentTrouble() const {
  std::lock_guard<std::mutex> lock(impl_->trouble_mu);
  Trouble t;
  t.error = impl_->trouble;
  if (impl_->failing_since_ms != 0) {
    t.failing_for = std::chrono::milliseconds(SteadyMs() - impl_->failing_since_ms);
  }
  return t;
}

}  // namespace komoku::remote_write
