// Prometheus remote write out (docs/prometheus.md, "Remote write"): a thread
// of its own reads the Store's changes in sequence order
// (Store::ChangesAfter), sends them in batches as remote-write 1.0 POSTs, and
// keeps the sequence number of the last acknowledged batch in a state file,
// so a restart or an outage of the receiver resumes exactly where it
// stopped. What each answer does is ActionFor's: a 2xx acknowledges a
// batch; 5xx, 429, an authentication refusal (401, 403, 407), a 404 and
// connection errors retry the same batch with backoff, for ever; another
// 4xx is a permanent error for that batch: logged, counted in
// komoku_remote_write_failed_total and skipped. The Store keeps what is not
// yet acknowledged: compaction deletes no hot row above the acknowledged
// sequence number (Store::KeepRowsAfter).
#pragma once

#include <spdlog/logger.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"

namespace komoku::store {
class Store;
}

namespace komoku::remote_write {

struct Options {
  // http://host:port/path or https://...; the receiver's write endpoint
  // (Prometheus: /api/v1/write).
  std::string url;
  // At most one of: a bearer token, or basic auth.
  std::string bearer_token;
  std::string username;
  std::string password;
  // PEM CA certificates to verify an https receiver with; empty: the
  // system's.
  std::string ca_file;
  // Comma-separated fnmatch globs of the keys that go (empty: all) and of
  // those that do not.
  std::string include;
  std::string exclude;
  // Changes per request at most.
  size_t batch_size = 2000;
  // A batch smaller than batch_size waits at most this long for more.
  std::chrono::milliseconds send_interval{1000};
  // The longest one request may take, from connecting to the end of the
  // answer: a receiver that accepts the connection and then answers
  // nothing, or a byte at a time, is cut off after it (and the batch
  // retried). Connecting (a TLS handshake included), which cannot be cut
  // short, times out after this or 5 s, whichever is shorter.
  std::chrono::milliseconds timeout{10000};
  // Retries wait 1 s, doubling up to this.
  std::chrono::milliseconds max_backoff{30000};
  // The state file: <data_dir>/remote_write.json.
  std::string state_path;
};

// The state file of a data directory.
std::string StatePath(const std::string& data_dir);

// The sequence number acknowledged last (the state file's), or nullopt when
// there is no state file. A state file that cannot be read is an error
// naming it.
Result<std::optional<uint64_t>> ReadAckedSeq(const std::string& state_path);

// What an HTTP status from the receiver does to the batch it answers.
enum class Action {
  kAck,    // 2xx: sent; go on after it
  kRetry,  // send the same batch again after a backoff, for as long as it takes
  kSkip,   // refused for good: count it as failed and go on after it
};
// 5xx and 429 (the receiver is busy or broken) and 401, 403, 407 and 404
// (the receiver refuses Komoku's credentials or has no write endpoint
// there: a matter of configuration on either side, never of the batch,
// and sending it again once that is fixed succeeds) are retried; the
// remote write specification would drop the batch on any 4xx but 429, but
// Komoku does not lose changes to a wrong password. Any other 4xx (400 for
// a sample the receiver will never take) is skipped: sending it again
// would be refused again and hold everything after it back.
Action ActionFor(int http_status);

class RemoteWriter {
 public:
  // Checks the options (the URL's form, the globs). `store` must outlive
  // the writer. The store must have been opened with hot.keep_rows_after at
  // the state file's sequence number (0 without one), so nothing unsent
  // was deleted meanwhile.
  static Result<std::unique_ptr<RemoteWriter>> Create(const Options& options, store::Store* store,
                                                      std::shared_ptr<spdlog::logger> log);
  ~RemoteWriter();
  RemoteWriter(const RemoteWriter&) = delete;
  RemoteWriter& operator=(const RemoteWriter&) = delete;

  // Starts the thread. Without a state file it starts after the newest
  // change stored now (history from before remote write was configured is
  // not sent).
  Status Start();
  // Stops the thread (an HTTP request under way ends within the timeout);
  // what is unacknowledged is sent after the next start. Idempotent.
  void Stop();

  // How long the thread has gone without making a step beyond what its
  // timeout allows (zero while it keeps going, also while the receiver is
  // down or hangs and it waits to retry): for /readyz and the watchdog.
  std::chrono::milliseconds StalledFor() const;

  // Why the last request did not acknowledge its batch ("HTTP 401: ...",
  // "no answer within 10 s", ...), and for how long requests have been
  // failing; empty and zero once one succeeds. For /readyz. Thread-safe.
  struct Trouble {
    std::string error;
    std::chrono::milliseconds failing_for{0};
  };
  Trouble CurrentTrouble() const;

 private:
  struct Impl;
  explicit RemoteWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace komoku::remote_write
