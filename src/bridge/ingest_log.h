// The MQTT ingest log: the queue between Paho's receive thread and the
// store. Paho C acknowledges a QoS 1 message to the broker before it hands
// it to Komoku, so the message callback copies it here into a shared memory
// mapping of a file (no system call, no fsync) and returns at once; the
// ingest thread reads the records back in order from a mapping of its own,
// puts them into the store (which commits them in groups), and releases them
// once they are committed. A record is in the OS page cache as soon as
// Append returned, so it survives a crash of the process (kill -9, OOM),
// like SQLite's WAL with synchronous=NORMAL; records left at a stop or a
// crash are read again at the next start. The format is in
// docs/storage.md, "The ingest log's files".
//
// Files are <dir>/ingest-<generation>.log, read oldest first, each
// allocated whole when it is begun (kFileBytes, more for a larger record),
// so that writing into the mapping never meets a full disk. Appends go to
// the newest; a full one is closed and a new one begun; a closed file is
// deleted once every record in it is released. Whenever everything
// appended is released, the newest file is rewound: its epoch (in its
// header and in every record) goes up by one, which ends it where it
// begins, and appends start again at its beginning. At a steady rate the
// same few pages are written over and over: the log costs the disk almost
// nothing.
//
// When a file cannot be begun (a full disk), records are kept in memory
// instead, behind every record in the files, and so are those after them
// until the reader has caught up: nothing already acknowledged is dropped,
// but what is only in memory does not survive a crash.
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

#include "common/mapping.h"
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
  // Each file is allocated this size when it is begun (larger when one
  // record needs more).
  static constexpr uint64_t kFileBytes = 2 << 20;
  // A record longer than this is taken for damage when read back.
  static constexpr uint32_t kMaxRecordBytes = 256u << 20;

  struct Recovered {
    uint64_t files = 0;
    uint64_t records = 0;     // records waiting to be read again
    uint64_t torn_bytes = 0;  // a damaged or torn tail, skipped
  };

  // Opens the log in `dir` (created when missing): the records of earlier
  // runs are read first, in order; appends go to a new file. A file that
  // cannot be allocated for lack of space is no error: appends are then
  // kept in memory until one can be.
  static Result<std::unique_ptr<IngestLog>> Open(const std::string& dir);
  ~IngestLog();
  IngestLog(const IngestLog&) = delete;
  IngestLog& operator=(const IngestLog&) = delete;

  // What Open found of earlier runs.
  const Recovered& recovered() const { return recovered_; }

  // Appends a record and wakes the reader. When no file can take it, the
  // record is kept in memory and the error returned (IOError naming the
  // file and the reason), for the caller to count and log; it is not lost.
  Status Append(const IngestRecord& record);

  // Moves up to `max_records` records after the read position into `*out`
  // (cleared first), waiting up to `wait` for the first. Returns how many.
  size_t Read(std::vector<IngestRecord>* out, size_t max_records, std::chrono::milliseconds wait);
  // Just after the last record Read returned.
  IngestPosition ReadPosition() const { return read_; }
  // Every record before `pos` (a position Read gave) is in the store: files
  // wholly before it are deleted, and the newest file is rewound when `pos`
  // is its end.
  void Release(IngestPosition pos);
  // Wakes a Read that waits.
  void Wake();

  // Records appended (or recovered) and not yet read.
  uint64_t Unread() const;
  // Bytes of records in the log's files now (the files are allocated
  // larger).
  uint64_t FileBytes() const;
  // Records kept in memory because no file could take them, since the start.
  uint64_t spilled() const { return spilled_.load(); }

 private:
  // Where a file's records are: its format (1: records of an older Komoku,
  // no header; 2: a header and an epoch in each record), and the bytes from
  // its first record to the end of its last.
  struct Span {
    int format = 2;
    uint64_t begin = 0;
    uint64_t end = 0;
  };

  explicit IngestLog(std::string dir) : dir_(std::move(dir)) {}
  std::string PathOf(uint64_t gen) const;
  // Begins file `gen` of at least `min_bytes` for appends (creates,
  // allocates, maps and writes its header); the current one, if any, is
  // closed first. Requires mu_.
  Status BeginWriteFile(uint64_t gen, uint64_t min_bytes);
  // The span of file `gen` (the reader's): closed or being written.
  // Requires mu_.
  Span SpanOfLocked(uint64_t gen) const;
  // Maps file `gen` for the reader (read_map_); false when it is gone.
  bool MapForReading(uint64_t gen);

  // Constant after Open.
  const std::string dir_;
  Recovered recovered_;
  uint64_t first_gen_ = 0;  // the first file of this run; older ones are recovered

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // The file appends go to: its mapping (empty when there is none: no space
  // for one), generation, epoch, and the end of its records.
  Mapping write_map_;                // guarded by mu_
  uint64_t write_gen_ = 0;           // guarded by mu_
  uint32_t write_epoch_ = 0;         // guarded by mu_
  uint64_t write_size_ = 0;          // guarded by mu_
  std::map<uint64_t, Span> closed_;  // files no longer appended to; guarded by mu_
  std::deque<IngestRecord> spill_;   // guarded by mu_
  uint64_t appended_ = 0;            // records appended or recovered; guarded by mu_
  uint64_t read_count_ = 0;          // records read; guarded by mu_
  bool woken_ = false;               // guarded by mu_
  // The reader waits in Read: only then does Append pay for a wake-up.
  bool reader_waiting_ = false;  // guarded by mu_

  // The reader's.
  IngestPosition read_;
  Mapping read_map_;
  uint64_t read_map_gen_ = 0;

  std::atomic<uint64_t> spilled_{0};
};

}  // namespace komoku::bridge
