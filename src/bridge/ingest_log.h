// The MQTT ingest log: the queue between Paho's receive thread and the
// store. Paho C acknowledges a QoS 1 message to the broker before it hands
// it to Komoku, so the message callback appends it here with one write() (no
// fsync) and returns at once; the ingest thread reads the records back in
// order, puts them into the store (which commits them in groups), and
// releases them once they are committed. A record survives a crash of the
// process (kill -9, OOM) as soon as its write() returned, like SQLite's WAL
// with synchronous=NORMAL; records left at a stop or a crash are read again
// at the next start. The format is in docs/storage.md, "The ingest log".
//
// Files are <dir>/ingest-<generation>.log, read oldest first. Appends go to
// the newest; a file is closed at kMaxFileBytes and deleted once every
// record in it is released; the newest is truncated to empty whenever
// everything appended is released, so at a steady rate the pages are
// dropped before they reach the disk.
//
// When a write fails (a full disk), the record is kept in memory instead,
// behind every record in the files, and so are those after it until the
// reader has caught up: nothing already acknowledged is dropped, but what
// is only in memory does not survive a crash.
//
// Thread-safe for one appender and one reader at a time: Append from one
// thread, Read and Release from one other thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace komoku::bridge {

// One MQTT message as received.
struct IngestRecord {
  std::string topic;
  std::string payload;
  int64_t received_ms = 0;  // when Paho handed it over: the time of a change without its own
  bool retained = false;
  // MQTT 5 request properties (Komoku JSON queries on <prefix>/api/request).
  std::string response_topic;
  std::string correlation_data;
  bool has_correlation_data = false;
  // Read from a file an earlier run left: it may have been stored already.
  bool recovered = false;
};

// A place in the log: the file's generation and an offset in it.
struct IngestPosition {
  uint64_t gen = 0;
  uint64_t offset = 0;
};

class IngestLog {
 public:
  // A file is closed and a new one begun past this size.
  static constexpr uint64_t kMaxFileBytes = 8 << 20;
  // A record longer than this is taken for damage when read back.
  static constexpr uint32_t kMaxRecordBytes = 256u << 20;

  struct Recovered {
    uint64_t files = 0;
    uint64_t records = 0;     // records waiting to be read again
    uint64_t torn_bytes = 0;  // a damaged or torn tail, skipped
  };

  // Opens the log in `dir` (created when missing): the records of earlier
  // runs are read first, in order; appends go to a new file.
  static Result<std::unique_ptr<IngestLog>> Open(const std::string& dir);
  ~IngestLog();
  IngestLog(const IngestLog&) = delete;
  IngestLog& operator=(const IngestLog&) = delete;

  // What Open found of earlier runs.
  const Recovered& recovered() const { return recovered_; }

  // Appends a record and wakes the reader. A failed write keeps the record in
  // memory and returns the error (IOError naming the file and the reason),
  // for the caller to count and log; the record is not lost.
  Status Append(const IngestRecord& record);

  // Moves up to `max_records` records after the read position into `*out`
  // (cleared first), waiting up to `wait` for the first. Returns how many.
  // Damaged records of an earlier run are skipped (counted in
  // skipped_bytes()).
  size_t Read(std::vector<IngestRecord>* out, size_t max_records, std::chrono::milliseconds wait);
  // Just after the last record Read returned.
  IngestPosition ReadPosition() const { return read_; }
  // Every record before `pos` (a position Read gave) is in the store: files
  // wholly before it are deleted, and the newest file is emptied when `pos`
  // is its end.
  void Release(IngestPosition pos);
  // Wakes a Read that waits.
  void Wake();

  // Records appended (or recovered) and not yet read.
  uint64_t Unread() const;
  // Bytes in the log's files now.
  uint64_t FileBytes() const;
  // Records kept in memory because a write failed, since the start.
  uint64_t spilled() const { return spilled_.load(); }
  // Bytes of damaged records skipped, since the start.
  uint64_t skipped_bytes() const { return skipped_bytes_.load(); }

 private:
  explicit IngestLog(std::string dir) : dir_(std::move(dir)) {}
  std::string PathOf(uint64_t gen) const;
  Status OpenWriteFile(uint64_t gen);  // requires mu_
  // Reads records of file read_.gen from read_.offset up to `end`.
  size_t ReadFile(uint64_t end, std::vector<IngestRecord>* out, size_t max_records);

  // Constant after Open.
  const std::string dir_;
  Recovered recovered_;
  uint64_t first_gen_ = 0;  // the first file of this run; older ones are recovered

  mutable std::mutex mu_;
  std::condition_variable cv_;
  int write_fd_ = -1;                          // guarded by mu_
  uint64_t write_gen_ = 0;                     // guarded by mu_
  uint64_t write_size_ = 0;                    // guarded by mu_
  std::map<uint64_t, uint64_t> closed_sizes_;  // closed files (gen -> size); guarded by mu_
  std::deque<IngestRecord> spill_;             // guarded by mu_
  uint64_t appended_ = 0;                      // records appended or recovered; guarded by mu_
  uint64_t read_count_ = 0;                    // records read; guarded by mu_
  bool woken_ = false;                         // guarded by mu_
  // The reader waits in Read: only then does Append pay for a wake-up.
  bool reader_waiting_ = false;  // guarded by mu_
  std::string encode_buf_;       // the appender's

  // The reader's.
  IngestPosition read_;
  int read_fd_ = -1;
  uint64_t read_fd_gen_ = 0;
  std::string read_buf_;

  std::atomic<uint64_t> spilled_{0};
  std::atomic<uint64_t> skipped_bytes_{0};
};

}  // namespace komoku::bridge
