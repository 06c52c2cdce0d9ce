// The ingest log's files; the record format is in docs/storage.md, "The
// ingest log":
//
//   u32 body length | u32 CRC-32C of the body | body
//   body: u8 version (1) | u8 flags (1: retained, 2: correlation data)
//         | i64 received_ms | u32 n + topic | u32 n + payload
//         | u32 n + response topic | u32 n + correlation data
//
// Integers are little-endian.
#include "bridge/ingest_log.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "cold/segment_codec.h"
#include "common/coding.h"
#include "common/fd.h"

namespace komoku::bridge {
namespace {

constexpr uint8_t kVersion = 1;
constexpr uint8_t kRetained = 1;
constexpr uint8_t kCorrelation = 2;
constexpr size_t kHeaderBytes = 8;
// version, flags, time and four lengths.
constexpr size_t kMinBodyBytes = 1 + 1 + 8 + 4 * 4;
// The reader reads the files in pieces of this size.
constexpr size_t kReadChunk = 256 << 10;

void PutBytes(std::string* out, const std::string& s) {
  PutFixed32(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

void Encode(const IngestRecord& r, std::string* out) {
  out->clear();
  out->append(kHeaderBytes, '\0');
  out->push_back(static_cast<char>(kVersion));
  out->push_back(static_cast<char>((r.retained ? kRetained : 0) |
                                   (r.has_correlation_data ? kCorrelation : 0)));
  PutFixed64(out, static_cast<uint64_t>(r.received_ms));
  PutBytes(out, r.topic);
  PutBytes(out, r.payload);
  PutBytes(out, r.response_topic);
  PutBytes(out, r.correlation_data);
  const size_t body = out->size() - kHeaderBytes;
  const uint32_t crc = store::segment_internal::Crc32c(out->data() + kHeaderBytes, body);
  for (int i = 0; i < 4; ++i) {
    (*out)[i] = static_cast<char>((body >> (8 * i)) & 0xFF);
    (*out)[4 + i] = static_cast<char>((crc >> (8 * i)) & 0xFF);
  }
}

// Decodes a body whose CRC matched; false when its lengths do not add up.
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

// How a run of records in a buffer ends.
enum class Scan { kEnd, kNeedMore, kDamaged };

// Walks the whole records in [p, p + n): each is handed to `fn` (when set)
// and *used is the bytes they take; *need is the bytes the next one needs
// when it is cut off.
template <typename Fn>
Scan ScanRecords(const char* p, size_t n, size_t max_records, size_t* used, size_t* need,
                 size_t* count, Fn&& fn) {
  *used = 0;
  *count = 0;
  IngestRecord r;
  while (*count < max_records) {
    const size_t left = n - *used;
    if (left == 0) return Scan::kEnd;
    if (left < kHeaderBytes) {
      *need = kHeaderBytes;
      return Scan::kNeedMore;
    }
    const char* h = p + *used;
    const uint32_t len = DecodeFixed32(h);
    if (len < kMinBodyBytes || len > IngestLog::kMaxRecordBytes) return Scan::kDamaged;
    if (left - kHeaderBytes < len) {
      *need = kHeaderBytes + len;
      return Scan::kNeedMore;
    }
    if (store::segment_internal::Crc32c(h + kHeaderBytes, len) != DecodeFixed32(h + 4))
      return Scan::kDamaged;
    if (!Decode(h + kHeaderBytes, len, &r)) return Scan::kDamaged;
    fn(r);
    *used += kHeaderBytes + len;
    ++*count;
  }
  return Scan::kEnd;
}

Status ReadAllAt(int fd, std::string* buf, size_t n, uint64_t offset, const std::string& path) {
  buf->resize(n);
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, buf->data() + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::IOError("cannot read " + path + ": " + std::strerror(errno));
    if (r == 0) return Status::IOError(path + " ends early");
    done += static_cast<size_t>(r);
  }
  return Status::Ok();
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

  // Each file of an earlier run is checked whole: a torn or damaged tail
  // (the process died inside a write, or the disk lost it) is cut off here,
  // so reading never meets one.
  std::string buf;
  for (uint64_t gen : gens) {
    const std::string path = log->PathOf(gen);
    Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (fd.get() < 0) return Status::IOError("cannot open " + path + ": " + std::strerror(errno));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) {
      return Status::IOError("cannot stat " + path + ": " + std::strerror(errno));
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    uint64_t offset = 0;
    uint64_t records = 0;
    bool damaged = false;
    while (offset < size) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(size - offset, kReadChunk));
      Status read = ReadAllAt(fd.get(), &buf, want, offset, path);
      if (!read.ok()) return read;
      size_t used = 0, need = 0, count = 0;
      Scan s =
          ScanRecords(buf.data(), want, SIZE_MAX, &used, &need, &count, [](const IngestRecord&) {});
      offset += used;
      records += count;
      if (s == Scan::kDamaged) {
        damaged = true;
        break;
      }
      if (s == Scan::kNeedMore) {
        if (offset + need > size) {
          damaged = true;  // torn: the record runs past the end
          break;
        }
        if (used == 0) {
          // One record larger than a chunk: read it whole.
          Status whole = ReadAllAt(fd.get(), &buf, need, offset, path);
          if (!whole.ok()) return whole;
          Scan one =
              ScanRecords(buf.data(), need, 1, &used, &need, &count, [](const IngestRecord&) {});
          if (one != Scan::kEnd || count != 1) {
            damaged = true;
            break;
          }
          offset += used;
          ++records;
        }
      }
    }
    if (damaged) {
      log->recovered_.torn_bytes += size - offset;
      if (::ftruncate(fd.get(), static_cast<off_t>(offset)) != 0) {
        return Status::IOError("cannot cut the damaged tail of " + path + ": " +
                               std::strerror(errno));
      }
    }
    fd.Close();
    if (offset == 0) {
      ::unlink(path.c_str());
      continue;
    }
    log->closed_sizes_[gen] = offset;
    log->recovered_.records += records;
    ++log->recovered_.files;
  }
  log->appended_ = log->recovered_.records;

  const uint64_t next = gens.empty() ? 1 : gens.back() + 1;
  {
    std::lock_guard<std::mutex> lock(log->mu_);
    KOMOKU_RETURN_IF_ERROR(log->OpenWriteFile(next));
  }
  log->first_gen_ = next;
  log->read_ =
      IngestPosition{log->closed_sizes_.empty() ? next : log->closed_sizes_.begin()->first, 0};
  return log;
}

IngestLog::~IngestLog() {
  if (write_fd_ >= 0) ::close(write_fd_);
  if (read_fd_ >= 0) ::close(read_fd_);
}

Status IngestLog::OpenWriteFile(uint64_t gen) {
  const std::string path = PathOf(gen);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("cannot create " + path + ": " + std::strerror(errno));
  if (write_fd_ >= 0) ::close(write_fd_);
  write_fd_ = fd;
  write_gen_ = gen;
  write_size_ = 0;
  return Status::Ok();
}

Status IngestLog::Append(const IngestRecord& record) {
  Encode(record, &encode_buf_);
  Status status;
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++appended_;
    // Once a record is in memory, the ones after it follow it there until
    // the reader has taken them all: the order stays the order received.
    if (spill_.empty()) {
      if (write_size_ >= kMaxFileBytes) {
        const uint64_t gen = write_gen_, size = write_size_;
        status = OpenWriteFile(gen + 1);
        if (status.ok()) closed_sizes_[gen] = size;
      }
      if (status.ok()) {
        size_t done = 0;
        while (done < encode_buf_.size()) {
          ssize_t n = ::write(write_fd_, encode_buf_.data() + done, encode_buf_.size() - done);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) {
            status = Status::IOError("cannot append to " + PathOf(write_gen_) + ": " +
                                     std::strerror(errno));
            break;
          }
          done += static_cast<size_t>(n);
        }
        if (status.ok()) {
          write_size_ += done;
        } else if (done > 0 && ::ftruncate(write_fd_, static_cast<off_t>(write_size_)) != 0) {
          // The part written stays; reading it back at the next start finds
          // a torn record and cuts it off there.
        }
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

size_t IngestLog::ReadFile(uint64_t end, std::vector<IngestRecord>* out, size_t max_records) {
  const std::string path = PathOf(read_.gen);
  if (read_fd_ < 0 || read_fd_gen_ != read_.gen) {
    if (read_fd_ >= 0) ::close(read_fd_);
    read_fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    read_fd_gen_ = read_.gen;
  }
  size_t taken = 0;
  size_t need = 0;
  while (out->size() < max_records && read_.offset < end) {
    Status read = Status::IOError("cannot open " + path);
    size_t want =
        static_cast<size_t>(std::min<uint64_t>(end - read_.offset, std::max(kReadChunk, need)));
    if (read_fd_ >= 0) read = ReadAllAt(read_fd_, &read_buf_, want, read_.offset, path);
    size_t used = 0, count = 0;
    Scan s = Scan::kDamaged;
    if (read.ok()) {
      s = ScanRecords(read_buf_.data(), want, max_records - out->size(), &used, &need, &count,
                      [out](IngestRecord& r) { out->push_back(std::move(r)); });
    }
    read_.offset += used;
    taken += count;
    if (read_.gen < first_gen_) {
      for (size_t i = out->size() - count; i < out->size(); ++i) (*out)[i].recovered = true;
    }
    if (s == Scan::kDamaged || (s == Scan::kNeedMore && read_.offset + need > end)) {
      // Open checked the files of earlier runs and this run writes whole
      // records: only an I/O error gets here. The rest of the file is lost.
      skipped_bytes_.fetch_add(end - read_.offset);
      read_.offset = end;
      break;
    }
  }
  return taken;
}

size_t IngestLog::Read(std::vector<IngestRecord>* out, size_t max_records,
                       std::chrono::milliseconds wait) {
  out->clear();
  {
    std::unique_lock<std::mutex> lock(mu_);
    reader_waiting_ = true;
    cv_.wait_for(lock, wait, [&] { return woken_ || read_count_ < appended_; });
    reader_waiting_ = false;
    woken_ = false;
  }
  while (out->size() < max_records) {
    uint64_t end = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (read_.gen < write_gen_) {
        auto it = closed_sizes_.lower_bound(read_.gen);
        if (it == closed_sizes_.end()) {
          read_ = IngestPosition{write_gen_, 0};
          continue;
        }
        if (it->first != read_.gen) {
          read_ = IngestPosition{it->first, 0};
          continue;
        }
        end = it->second;
      } else {
        end = write_size_;
        if (read_.offset >= end) {
          // Every record of the files is read: the ones kept in memory now.
          while (!spill_.empty() && out->size() < max_records) {
            out->push_back(std::move(spill_.front()));
            spill_.pop_front();
          }
          break;
        }
      }
    }
    if (read_.offset < end) {
      ReadFile(end, out, max_records);
      continue;
    }
    // A closed file read to its end: on to the next.
    std::lock_guard<std::mutex> lock(mu_);
    auto next = closed_sizes_.upper_bound(read_.gen);
    read_ = IngestPosition{next == closed_sizes_.end() ? write_gen_ : next->first, 0};
  }
  std::lock_guard<std::mutex> lock(mu_);
  read_count_ += out->size();
  return out->size();
}

void IngestLog::Release(IngestPosition pos) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = closed_sizes_.begin(); it != closed_sizes_.end();) {
    const bool done = it->first < pos.gen || (it->first == pos.gen && pos.offset >= it->second);
    if (!done) break;
    ::unlink(PathOf(it->first).c_str());
    if (read_fd_ >= 0 && read_fd_gen_ == it->first) {
      ::close(read_fd_);
      read_fd_ = -1;
    }
    it = closed_sizes_.erase(it);
  }
  // Everything appended is in the store: empty the file, so its pages are
  // dropped from the page cache before they are written out.
  if (pos.gen == write_gen_ && pos.offset == write_size_ && write_size_ > 0 &&
      read_.gen == pos.gen && read_.offset == pos.offset) {
    if (::ftruncate(write_fd_, 0) == 0) {
      write_size_ = 0;
      read_ = IngestPosition{write_gen_, 0};
    }
  }
}

uint64_t IngestLog::Unread() const {
  std::lock_guard<std::mutex> lock(mu_);
  return appended_ - read_count_;
}

uint64_t IngestLog::FileBytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t total = write_size_;
  for (const auto& [gen, size] : closed_sizes_) total += size;
  return total;
}

}  // namespace komoku::bridge
