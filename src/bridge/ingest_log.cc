// The ingest log's files; the format is in docs/storage.md, "The ingest
// log's files":
//
//   file (format 2): header | record | record | ... | zeros or stale bytes
//   header: "KOMOKUIL" | u32 format (2) | u32 header bytes (32)
//           | u32 epoch | 12 zero bytes
//   record: u32 body length | u32 CRC-32C of epoch and body | u32 epoch | body
//   body:   u8 version (1) | u8 flags (1: retained, 2: correlation data)
//           | i64 received_ms | u32 n + topic | u32 n + payload
//           | u32 n + response topic | u32 n + correlation data
//
// Format 1 (an older Komoku's) has no header, and records without the
// epoch: u32 body length | u32 CRC-32C of the body | body. Files of format 1
// are only read, at the start after an upgrade.
//
// Integers are little-endian.
#include "bridge/ingest_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/coding.h"
#include "common/crc32c.h"
#include "common/fd.h"

namespace komoku::bridge {
namespace {

constexpr char kMagic[8] = {'K', 'O', 'M', 'O', 'K', 'U', 'I', 'L'};
constexpr uint32_t kFormat = 2;
constexpr uint64_t kFileHeaderBytes = 32;
constexpr size_t kEpochAt = 16;  // the epoch's place in the file header

constexpr uint8_t kVersion = 1;
constexpr uint8_t kRetained = 1;
constexpr uint8_t kCorrelation = 2;
// A record's header: length, CRC and (format 2) epoch.
constexpr size_t kRecordHeaderV1 = 8;
constexpr size_t kRecordHeaderV2 = 12;
// version, flags, time and four lengths.
constexpr size_t kMinBodyBytes = 1 + 1 + 8 + 4 * 4;
// How long a reader with nothing to read waits before it asks to be woken
// (Read): the most this adds to a message's way into the store.
constexpr std::chrono::milliseconds kReaderNap{1};

size_t BodyBytes(const IngestRecord& r) {
  return kMinBodyBytes + r.topic.size() + r.payload.size() + r.response_topic.size() +
         r.correlation_data.size();
}

char* PutBytes(char* p, const std::string& s) {
  EncodeFixed32(p, static_cast<uint32_t>(s.size()));
  s.copy(p + 4, s.size());
  return p + 4 + s.size();
}

// Writes record `r` of `body` bytes (BodyBytes) at `p`, in format 2.
void EncodeAt(char* p, const IngestRecord& r, size_t body, uint32_t epoch) {
  char* b = p + kRecordHeaderV2;
  b[0] = static_cast<char>(kVersion);
  b[1] =
      static_cast<char>((r.retained ? kRetained : 0) | (r.has_correlation_data ? kCorrelation : 0));
  EncodeFixed64(b + 2, static_cast<uint64_t>(r.received_ms));
  char* at = b + 10;
  for (const std::string* s : {&r.topic, &r.payload, &r.response_topic, &r.correlation_data}) {
    at = PutBytes(at, *s);
  }
  EncodeFixed32(p + 8, epoch);
  EncodeFixed32(p + 4, Crc32c(p + 8, 4 + body));
  EncodeFixed32(p, static_cast<uint32_t>(body));
}

// Decodes a body; false when its lengths do not add up.
bool Decode(const char* p, size_t n, IngestRecord* r) {
  if (n < kMinBodyBytes || static_cast<uint8_t>(p[0]) != kVersion) return false;
  const uint8_t flags = static_cast<uint8_t>(p[1]);
  r->retained = flags & kRetained;
  r->has_correlation_data = flags & kCorrelation;
  r->received_ms = static_cast<int64_t>(DecodeFixed64(p + 2));
  size_t at = 10;
  for (std::string* s : {&r->topic, &r->payload, &r->response_topic, &r->correlation_data}) {
    if (n - at < 4) return false;
    const uint32_t len = DecodeFixed32(p + at);
    at += 4;
    if (n - at < len) return false;
    s->assign(p + at, len);
    at += len;
  }
  return at == n;
}

size_t RecordHeaderBytes(int format) { return format == 1 ? kRecordHeaderV1 : kRecordHeaderV2; }

// What a file of an earlier run holds: its span, its records, and the bytes
// of a torn or damaged record that ends it.
struct Checked {
  int format = 2;
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t records = 0;
  uint64_t torn_bytes = 0;
};

// Checks every record of a file's bytes [p, p + size): the records run
// until the first that is not whole and sound. In format 2, a record of
// another epoch (from before a rewind) or zeros end the records cleanly.
Checked CheckFile(const char* p, uint64_t size) {
  Checked c;
  uint32_t epoch = 0;
  if (size >= kFileHeaderBytes && std::memcmp(p, kMagic, sizeof kMagic) == 0 &&
      DecodeFixed32(p + 8) == kFormat) {
    c.format = 2;
    c.begin = DecodeFixed32(p + 12);
    epoch = DecodeFixed32(p + kEpochAt);
    if (c.begin < kFileHeaderBytes || c.begin > size) c.begin = size;
  } else {
    c.format = 1;
    c.begin = 0;
  }
  const size_t head = RecordHeaderBytes(c.format);
  uint64_t at = c.begin;
  IngestRecord r;
  while (at < size) {
    const uint64_t left = size - at;
    const char* h = p + at;
    if (left < head) {
      if (c.format == 1) c.torn_bytes = left;
      break;
    }
    const uint32_t len = DecodeFixed32(h);
    if (c.format == 2) {
      const uint32_t rec_epoch = DecodeFixed32(h + 8);
      if ((len == 0 && rec_epoch == 0) || rec_epoch != epoch) break;  // the end
    }
    const bool whole =
        len >= kMinBodyBytes && len <= IngestLog::kMaxRecordBytes && left - head >= len;
    const bool sound =
        whole &&
        (c.format == 1 ? Crc32c(h + head, len) : Crc32c(h + 8, 4 + len)) == DecodeFixed32(h + 4) &&
        Decode(h + head, len, &r);
    if (!sound) {
      c.torn_bytes = std::min<uint64_t>(left, c.format == 1 ? left : head + uint64_t{len});
      break;
    }
    at += head + len;
    ++c.records;
  }
  c.end = at;
  return c;
}

Result<Mapping> MapFile(const std::string& path, bool writable, uint64_t* size) {
  Fd fd(::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC));
  if (fd.get() < 0) return Status::IOError("cannot open " + path + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return Status::IOError("cannot stat " + path + ": " + std::strerror(errno));
  }
  *size = static_cast<uint64_t>(st.st_size);
  return Mapping::Map(fd.get(), *size, writable, path);
}

}  // namespace

std::string IngestLog::PathOf(uint64_t gen) const {
  char name[40];
  std::snprintf(name, sizeof name, "ingest-%010llu.log", static_cast<unsigned long long>(gen));
  return (std::filesystem::path(dir_) / name).string();
}

Result<std::unique_ptr<IngestLog>> IngestLog::Open(const std::string& dir) {
  std::unique_ptr<IngestLog> log(new IngestLog(dir));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create " + dir + ": " + ec.message());
  std::vector<uint64_t> gens;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() != 21 || name.compare(0, 7, "ingest-") != 0 ||
        name.compare(17, 4, ".log") != 0) {
      continue;
    }
    const std::string digits = name.substr(7, 10);
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    gens.push_back(std::stoull(digits));
  }
  if (ec) return Status::IOError("cannot list " + dir + ": " + ec.message());
  std::sort(gens.begin(), gens.end());

  // Each file of an earlier run is checked whole: a torn or damaged record
  // (the process died while writing it, or the disk lost it) ends the
  // file's records there, so reading never meets one.
  for (uint64_t gen : gens) {
    const std::string path = log->PathOf(gen);
    uint64_t size = 0;
    Result<Mapping> map = MapFile(path, false, &size);
    if (!map.ok()) return map.status();
    const Checked c = CheckFile(map->data(), size);
    log->recovered_.torn_bytes += c.torn_bytes;
    if (c.records == 0) {
      ::unlink(path.c_str());
      continue;
    }
    log->closed_[gen] = Span{c.format, c.begin, c.end};
    log->recovered_.records += c.records;
    ++log->recovered_.files;
  }
  log->appended_ = log->recovered_.records;

  const uint64_t next = gens.empty() ? 1 : gens.back() + 1;
  log->first_gen_ = next;
  {
    std::lock_guard<std::mutex> lock(log->mu_);
    Status begun = log->BeginWriteFile(next, kFileBytes);
    // Without space for a file, appends go to memory until there is.
    if (!begun.ok() && begun.reason() != "disk_full") return begun;
  }
  log->read_ = IngestPosition{log->closed_.empty() ? next : log->closed_.begin()->first, 0};
  return log;
}

IngestLog::~IngestLog() = default;

Status IngestLog::BeginWriteFile(uint64_t gen, uint64_t min_bytes) {
  if (write_map_) {
    closed_[write_gen_] = Span{2, kFileHeaderBytes, write_size_};
    write_map_.Reset();
  }
  write_gen_ = gen;
  write_size_ = 0;
  const std::string path = PathOf(gen);
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (fd.get() < 0) return Status::IOError("cannot create " + path + ": " + std::strerror(errno));
  const uint64_t size = std::max(kFileBytes, min_bytes);
  // Allocated now, so that the disk has room for every byte written into
  // the mapping later (a write to a mapping past a full disk is a SIGBUS).
  int err = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(size));
  Result<Mapping> map = Status::Ok();
  if (err == 0) {
    map = Mapping::Map(fd.get(), size, true, path);
    if (!map.ok()) err = EIO;
  }
  if (err != 0) {
    ::unlink(path.c_str());
    if (!map.ok()) return map.status();
    Status st = Status::IOError("cannot allocate " + std::to_string(size) + " bytes for " + path +
                                ": " + std::strerror(err));
    if (err == ENOSPC || err == EFBIG || err == EDQUOT) st = st.WithReason("disk_full");
    return st;
  }
  write_map_ = std::move(map.value());
  char* h = write_map_.data();
  std::memcpy(h, kMagic, sizeof kMagic);
  EncodeFixed32(h + 8, kFormat);
  EncodeFixed32(h + 12, kFileHeaderBytes);
  write_epoch_ = 1;
  EncodeFixed32(h + kEpochAt, write_epoch_);
  write_size_ = kFileHeaderBytes;
  return Status::Ok();
}

Status IngestLog::Append(const IngestRecord& record) {
  const size_t body = BodyBytes(record);
  const uint64_t need = kRecordHeaderV2 + body;
  Status status;
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++appended_;
    // Once a record is in memory, the ones after it follow it there until
    // the reader has taken them all: the order stays the order received.
    if (spill_.empty()) {
      if (body > kMaxRecordBytes) {
        status = Status::IOError("a message of " + std::to_string(body) +
                                 " bytes is too large for the ingest log");
      } else if (!write_map_ || write_size_ + need > write_map_.size()) {
        status = BeginWriteFile(write_gen_ + 1, kFileHeaderBytes + need);
      }
      if (status.ok()) {
        EncodeAt(write_map_.data() + write_size_, record, body, write_epoch_);
        write_size_ += need;
      }
    }
    if (!spill_.empty() || !status.ok()) {
      spill_.push_back(record);
      spilled_.fetch_add(1);
    }
    wake = reader_waiting_;
  }
  if (wake) cv_.notify_one();
  return status;
}

void IngestLog::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_one();
}

IngestLog::Span IngestLog::SpanOfLocked(uint64_t gen) const {
  if (gen == write_gen_ && write_map_) return Span{2, kFileHeaderBytes, write_size_};
  auto it = closed_.find(gen);
  return it == closed_.end() ? Span{2, 0, 0} : it->second;
}

bool IngestLog::MapForReading(uint64_t gen) {
  if (read_map_ && read_map_gen_ == gen) return true;
  read_map_.Reset();
  uint64_t size = 0;
  Result<Mapping> map = MapFile(PathOf(gen), false, &size);
  if (!map.ok()) return false;
  read_map_ = std::move(map.value());
  read_map_gen_ = gen;
  return true;
}

size_t IngestLog::Read(std::vector<IngestRecord>* out, size_t max_records,
                       std::chrono::milliseconds wait) {
  out->clear();
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto ready = [&] { return woken_ || read_count_ < appended_; };
    if (!ready() && wait.count() > 0) {
      // First a short nap that no append interrupts: a reader that keeps up
      // with a flood would otherwise cost the appender (Paho's receive
      // thread) a wake-up, a system call, for nearly every record. Only
      // then does the reader ask to be woken.
      const auto nap = std::min(wait, kReaderNap);
      cv_.wait_for(lock, nap, ready);
      if (!ready() && wait > nap) {
        reader_waiting_ = true;
        cv_.wait_for(lock, wait - nap, ready);
        reader_waiting_ = false;
      }
    }
    woken_ = false;
  }
  while (out->size() < max_records) {
    Span span;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const bool newest = read_.gen >= write_gen_;
      if (!newest && closed_.count(read_.gen) == 0) {
        // A file wholly released, or never begun: on to the next.
        auto next = closed_.upper_bound(read_.gen);
        read_ = IngestPosition{next == closed_.end() ? write_gen_ : next->first, 0};
        continue;
      }
      span = SpanOfLocked(read_.gen);
      read_.offset = std::max(read_.offset, span.begin);
      if (read_.offset >= span.end) {
        if (newest) {
          // Every record of the files is read: the ones kept in memory now.
          while (!spill_.empty() && out->size() < max_records) {
            out->push_back(std::move(spill_.front()));
            spill_.pop_front();
          }
          break;
        }
        auto next = closed_.upper_bound(read_.gen);
        read_ = IngestPosition{next == closed_.end() ? write_gen_ : next->first, 0};
        continue;
      }
    }
    // The bytes up to span.end are whole records: written by this run
    // before the lock was taken, or checked at Open.
    if (!MapForReading(read_.gen) || read_map_.size() < span.end) {
      // Only a file deleted or cut by someone else gets here.
      read_.offset = span.end;
      continue;
    }
    const size_t head = RecordHeaderBytes(span.format);
    const bool recovered = read_.gen < first_gen_;
    while (out->size() < max_records && read_.offset < span.end) {
      const char* h = read_map_.data() + read_.offset;
      const uint32_t len = DecodeFixed32(h);
      out->emplace_back();
      IngestRecord& r = out->back();
      if (!Decode(h + head, len, &r)) {
        out->pop_back();  // cannot happen: checked or written whole
      } else {
        r.recovered = recovered;
      }
      read_.offset += head + len;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  read_count_ += out->size();
  return out->size();
}

void IngestLog::Release(IngestPosition pos) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = closed_.begin(); it != closed_.end();) {
    const bool done = it->first < pos.gen || (it->first == pos.gen && pos.offset >= it->second.end);
    if (!done) break;
    ::unlink(PathOf(it->first).c_str());
    if (read_map_gen_ == it->first) read_map_.Reset();
    it = closed_.erase(it);
  }
  // Everything appended is in the store: rewind the newest file. A record
  // of the old epoch ends the file for a reader after a crash, so the
  // new records overwrite the old in place, in pages still in the page
  // cache.
  if (write_map_ && pos.gen == write_gen_ && pos.offset == write_size_ &&
      write_size_ > kFileHeaderBytes && read_.gen == pos.gen && read_.offset == pos.offset) {
    ++write_epoch_;
    if (write_epoch_ == 0) ++write_epoch_;  // 0 with a length of 0 is the zeros after the end
    EncodeFixed32(write_map_.data() + kEpochAt, write_epoch_);
    write_size_ = kFileHeaderBytes;
    read_ = IngestPosition{write_gen_, kFileHeaderBytes};
  }
}

uint64_t IngestLog::Unread() const {
  std::lock_guard<std::mutex> lock(mu_);
  return appended_ - read_count_;
}

uint64_t IngestLog::FileBytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t total = write_map_ ? write_size_ - kFileHeaderBytes : 0;
  for (const auto& [gen, span] : closed_) total += span.end - span.begin;
  return total;
}

}  // namespace komoku::bridge
