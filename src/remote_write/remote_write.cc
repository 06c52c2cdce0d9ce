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

// Most bytes of a refusal's body put in the log.
constexpr size_t kMaxLoggedBody = 300;

}  // namespace

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
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;  // guarded by mu

  std::atomic<int64_t> beat_ms{0};
  std::atomic<bool> in_call{false};

  // Thread-owned.
  uint64_t acked = 0;
  std::map<std::string, int64_t, std::less<>> last_sent;
  int64_t last_send_ms = 0;
  std::unique_ptr<httplib::Client> client;

  void Beat() { beat_ms = SteadyMs(); }

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
    in_call = true;
    Beat();
    httplib::Result res = client->Post(path, headers, body, "application/x-protobuf");
    in_call = false;
    Beat();
    if (!res) {
      log->warn("remote write: {}: {}; retrying", options.url, httplib::to_string(res.error()));
      return Outcome::kRetry;
    }
    const int status = res->status;
    if (status >= 200 && status < 300) return Outcome::kAcked;
    std::string text = res->body.substr(0, kMaxLoggedBody);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    if (status >= 400 && status < 500 && status != 429) {
      log->error(
          "remote write: {} refused a batch of {} samples (changes {}..{}) with HTTP {}: {}; "
          "the batch is skipped (a permanent error: sending it again would be refused again)",
          options.url, samples, first_seq, last_seq, status, text);
      return Outcome::kRefused;
    }
    log->warn("remote write: {} answered HTTP {}: {}; retrying", options.url, status, text);
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
  client->set_connection_timeout(secs(options.timeout));
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
  impl.thread = std::thread([&impl] { impl.Run(); });
  return Status::Ok();
}

void RemoteWriter::Stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  // A request under way ends now rather than at its timeout.
  if (impl_->client) impl_->client->stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::chrono::milliseconds RemoteWriter::StalledFor() const {
  if (!impl_->thread.joinable()) return std::chrono::milliseconds(0);
  int64_t idle = SteadyMs() - impl_->beat_ms.load();
  // A request may take its three timeouts (connect, write, read).
  if (impl_->in_call) idle -= 3 * impl_->options.timeout.count();
  return std::chrono::milliseconds(std::max<int64_t>(0, idle));
}

}  // namespace komoku::remote_write
