// Cold segment files: the container around the block codecs. The bytes are
// described in docs/segment-format.md; in short:
//
//   <base>.kkd  header (64 bytes) · blocks: u32 payload length · u8 kind ·
//               payload · u32 CRC-32C of everything before it in the block
//   <base>.kki  KeyKa v0: "\0" -> segment id, then per key
//               "<name>\0\0"                 -> the key's metadata block
//               "<name>\0\1<time>"           -> a raw block (time of its first change)
//               "<name>\0<0x10+r><time>"     -> a rollup block of resolution #r
//               (times big-endian with the sign bit flipped, so byte order
//               is time order); values are locators: offset | length << 40.
#include "cold/segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <random>
#include <set>

#include "cold/segment_codec.h"
#include "common/coding.h"
#include "keyka/packer.h"
#include "keyka/reader.h"

namespace komoku::store {
namespace {

using segment_internal::Crc32c;
using segment_internal::KeyRecord;

// ---------------------------------------------------------------- constants

constexpr char kMagic[8] = {'K', 'M', 'K', 'S', 'E', 'G', '\r', '\n'};
constexpr uint32_t kFormatVersion = kSegmentFormatVersion;
constexpr uint32_t kOldestFormatVersion = 1;
constexpr uint64_t kHeaderSize = 64;

// Block framing: u32 payload length, u8 kind, payload, u32 CRC.
constexpr uint64_t kBlockOverhead = 9;
enum BlockKind : unsigned char { kBlockMeta = 1, kBlockRaw = 2, kBlockRollup = 3 };

// Record kinds, the byte after "<name>\0" in index keys.
constexpr char kRecordMeta = 0x00;
constexpr char kRecordRaw = 0x01;
constexpr char kRecordRollup0 = 0x10;  // + the resolution's position in the key's metadata
constexpr size_t kMaxResolutions = 16;

// The index key of the segment id; sorts before every "<name>\0..." because
// names are never empty and never start with NUL.
const std::string kIdKey(1, '\0');

// Locators: the block's offset in the low 40 bits, its length (framing
// included) in the high 24.
constexpr int kLocatorOffsetBits = 40;
constexpr uint64_t kMaxBlockBytes = (uint64_t{1} << 24) - 1;
constexpr uint64_t kMaxDataBytes = uint64_t{1} << kLocatorOffsetBits;

// How the writer cuts blocks. Raw blocks close after kBlockItems changes or
// kBlockTextBytes of string values, but never inside a run of equal times (so
// a time lives in exactly one block and a lookup by time finds it); a run may
// not exceed kMaxRunItems changes or kMaxRunTextBytes. These keep every block
// under the decoders' limits (segment_codec.cc) and the locator's 16 MiB.
constexpr size_t kBlockItems = 1024;
constexpr uint64_t kBlockTextBytes = 1 << 20;
constexpr size_t kMaxRunItems = 60000;
constexpr uint64_t kMaxRunTextBytes = 8 << 20;
constexpr uint64_t kMaxStringBytes = 4 << 20;
constexpr size_t kBlockEntries = 1 << 16;  // ms_per_value entries per rollup block

// ---------------------------------------------------------------- encoding helpers

void PutU32(char* p, uint32_t v) { EncodeFixed32(p, v); }
void PutU64(char* p, uint64_t v) { EncodeFixed64(p, v); }
uint32_t GetU32(const char* p) { return DecodeFixed32(p); }
uint64_t GetU64(const char* p) { return DecodeFixed64(p); }

std::string MetaKey(std::string_view name) {
  std::string k(name);
  k.push_back('\0');
  k.push_back(kRecordMeta);
  return k;
}

std::string BlockKey(std::string_view name, char record, int64_t time_ms) {
  std::string k(name);
  k.push_back('\0');
  k.push_back(record);
  const uint64_t t = static_cast<uint64_t>(time_ms) ^ (uint64_t{1} << 63);
  for (int i = 7; i >= 0; --i) k.push_back(static_cast<char>(t >> (8 * i)));
  return k;
}

int64_t KeyTime(std::string_view key) {
  uint64_t t = 0;
  for (size_t i = key.size() - 8; i < key.size(); ++i)
    t = (t << 8) | static_cast<unsigned char>(key[i]);
  return static_cast<int64_t>(t ^ (uint64_t{1} << 63));
}

// True when `key` is a block record of `record` kind for `name`.
bool IsBlockOf(std::string_view key, std::string_view name, char record) {
  return key.size() == name.size() + 10 && key.substr(0, name.size()) == name &&
         key[name.size()] == '\0' && key[name.size() + 1] == record;
}

std::string OffsetText(uint64_t offset) { return "offset " + std::to_string(offset); }

Status ErrnoStatus(const std::string& op, const std::string& path, int err) {
  return Status::IOError(op + " " + path + ": " + std::strerror(err));
}

uint64_t TextBytes(const Value& v) {
  const auto* s = std::get_if<std::string>(&v);
  return s ? s->size() : 0;
}

// ---------------------------------------------------------------- writer

class SegmentWriterImpl final : public SegmentWriter {
 public:
  SegmentWriterImpl(std::string base, std::string tmp, int fd, keyka::Packer packer,
                    const SegmentMeta& meta, const SegmentWriteOptions& options, uint64_t id)
      : base_(std::move(base)),
        data_path_(base_ + ".kkd"),
        tmp_path_(std::move(tmp)),
        fd_(fd),
        packer_(std::move(packer)),
        meta_(meta),
        options_(options),
        id_(id) {
    buffer_.assign(kHeaderSize, '\0');  // the header is written last, in place
    size_ = kHeaderSize;
  }

  ~SegmentWriterImpl() override {
    if (fd_ >= 0) ::close(fd_);
    if (!renamed_) ::unlink(tmp_path_.c_str());
  }

  Status AddKey(const SegmentKeyData& data) override {
    if (!status_.ok()) return status_;
    if (finished_) return Status::InvalidArgument(base_ + ": AddKey after Finish");
    KOMOKU_RETURN_IF_ERROR(Validate(data));
    last_name_ = data.key;
    have_name_ = true;
    Status st = WriteKey(data);
    if (!st.ok()) status_ = st;
    return st;
  }

  Status Finish() override {
    if (finished_) return status_;
    finished_ = true;
    if (!status_.ok()) {
      packer_.Abandon();
      return status_;
    }
    status_ = FinishFiles();
    if (!status_.ok()) packer_.Abandon();
    return status_;
  }

  uint64_t bytes() const override { return size_ + packer_.file_size(); }

 private:
  Status Validate(const SegmentKeyData& d) const {
    const std::string who = base_ + ": key " + QuoteForMessage(d.key);
    KOMOKU_RETURN_IF_ERROR(ValidateKeyName(d.key).WithContext(base_));
    if (have_name_ && d.key <= last_name_) {
      return Status::InvalidArgument(who + " is not after the previous key " +
                                     QuoteForMessage(last_name_) +
                                     " (keys must be added in order)");
    }
    if (d.carry) {
      if (!segment_internal::ValueMatchesType(d.type, d.carry->value)) {
        return Status::InvalidArgument(who + ": carry value is not " + KeyTypeName(d.type));
      }
      if (d.carry->time_ms >= meta_.from_ms) {
        return Status::InvalidArgument(who + ": carry time " + std::to_string(d.carry->time_ms) +
                                       " is not before the segment's from_ms");
      }
      if (TextBytes(d.carry->value) > kMaxStringBytes) {
        return Status::InvalidArgument(who + ": carry string is longer than 4 MiB");
      }
    }
    if (d.raw_dropped && !d.changes.empty()) {
      return Status::InvalidArgument(who + ": raw_dropped with raw changes");
    }
    size_t run = 0;
    uint64_t run_text = 0;
    for (size_t i = 0; i < d.changes.size(); ++i) {
      const Sample& s = d.changes[i];
      const std::string at =
          who + ": change #" + std::to_string(i) + " at " + std::to_string(s.time_ms);
      if (!segment_internal::ValueMatchesType(d.type, s.value)) {
        return Status::InvalidArgument(at + " is not " + KeyTypeName(d.type));
      }
      if (s.time_ms < meta_.from_ms || s.time_ms >= meta_.to_ms) {
        return Status::InvalidArgument(at + " is outside the segment's range [" +
                                       std::to_string(meta_.from_ms) + ", " +
                                       std::to_string(meta_.to_ms) + ")");
      }
      if (i > 0 && s.time_ms < d.changes[i - 1].time_ms) {
        return Status::InvalidArgument(at + " is before the change before it");
      }
      const uint64_t text = TextBytes(s.value);
      if (text > kMaxStringBytes) return Status::InvalidArgument(at + ": string longer than 4 MiB");
      if (i > 0 && s.time_ms == d.changes[i - 1].time_ms) {
        ++run;
        run_text += text;
      } else {
        run = 1;
        run_text = text;
      }
      if (run > kMaxRunItems || run_text > kMaxRunTextBytes) {
        return Status::InvalidArgument(at + ": too many changes at one millisecond");
      }
    }
    if (d.rollups.size() > kMaxResolutions) {
      return Status::InvalidArgument(who + ": more than 16 rollup resolutions");
    }
    std::set<int64_t> resolutions;
    for (const auto& [res, rollups] : d.rollups) {
      const std::string at = who + ": rollups at resolution " + std::to_string(res);
      if (res <= 0) return Status::InvalidArgument(at + ": resolution must be positive");
      if (!resolutions.insert(res).second) return Status::InvalidArgument(at + ": given twice");
      for (size_t i = 0; i < rollups.size(); ++i) {
        const Rollup& r = rollups[i];
        if (i > 0 && r.start_ms <= rollups[i - 1].start_ms) {
          return Status::InvalidArgument(at + ": start " + std::to_string(r.start_ms) +
                                         " is not after the one before");
        }
        for (const auto* v : {&r.first, &r.last}) {
          if (*v && !segment_internal::ValueMatchesType(d.type, **v)) {
            return Status::InvalidArgument(at + ": first/last of start " +
                                           std::to_string(r.start_ms) + " is not " +
                                           KeyTypeName(d.type));
          }
          if (*v && TextBytes(**v) > kMaxStringBytes) {
            return Status::InvalidArgument(at + ": string longer than 4 MiB");
          }
        }
        if (r.ms_per_value.size() > kBlockEntries) {
          return Status::InvalidArgument(at + ": more than 65536 ms_per_value entries");
        }
        for (const auto& e : r.ms_per_value) {
          if (e.first.size() > kMaxStringBytes) {
            return Status::InvalidArgument(at + ": ms_per_value text longer than 4 MiB");
          }
        }
      }
    }
    return Status::Ok();
  }

  Status WriteKey(const SegmentKeyData& d) {
    KeyRecord m;
    m.name = d.key;
    m.type = d.type;
    m.stale_after_ms = d.stale_after_ms;
    m.reset_tolerance = d.reset_tolerance;
    m.carry = d.carry;
    m.raw_dropped = d.raw_dropped;
    m.changes = d.changes.size();
    if (!d.changes.empty()) {
      m.first_ms = d.changes.front().time_ms;
      m.last_ms = d.changes.back().time_ms;
    }
    std::vector<std::pair<std::string, uint64_t>> entries;

    const std::vector<Sample>& c = d.changes;
    for (size_t i = 0; i < c.size();) {
      size_t j = i + 1;
      uint64_t text = TextBytes(c[i].value);
      while (j < c.size()) {
        const bool full = j - i >= kBlockItems || text >= kBlockTextBytes;
        if (full && c[j].time_ms != c[j - 1].time_ms) break;
        text += TextBytes(c[j].value);
        ++j;
      }
      uint64_t loc = 0;
      KOMOKU_RETURN_IF_ERROR(
          WriteBlock(kBlockRaw, segment_internal::EncodeRawBlock(d.type, &c[i], j - i), &loc));
      m.raw_bytes += loc >> kLocatorOffsetBits;
      entries.emplace_back(BlockKey(d.key, kRecordRaw, c[i].time_ms), loc);
      i = j;
    }

    for (size_t r = 0; r < d.rollups.size(); ++r) {
      const auto& [res, rollups] = d.rollups[r];
      m.resolutions.push_back({res, rollups.size()});
      for (size_t i = 0; i < rollups.size();) {
        size_t j = i, entries_in = 0;
        uint64_t text = 0;
        while (j < rollups.size() && j - i < kBlockItems && text < kBlockTextBytes &&
               (j == i || entries_in + rollups[j].ms_per_value.size() <= kBlockEntries)) {
          for (const auto& e : rollups[j].ms_per_value) text += e.first.size();
          if (rollups[j].first) text += TextBytes(*rollups[j].first);
          if (rollups[j].last) text += TextBytes(*rollups[j].last);
          entries_in += rollups[j].ms_per_value.size();
          ++j;
        }
        uint64_t loc = 0;
        KOMOKU_RETURN_IF_ERROR(WriteBlock(
            kBlockRollup, segment_internal::EncodeRollupBlock(d.type, &rollups[i], j - i), &loc));
        m.rollup_bytes += loc >> kLocatorOffsetBits;
        entries.emplace_back(
            BlockKey(d.key, static_cast<char>(kRecordRollup0 + r), rollups[i].start_ms), loc);
        i = j;
      }
    }
    // Rollup records sort by resolution position, then time: the order they
    // were made in. Raw records come before them (0x01 < 0x10).
    uint64_t meta_loc = 0;
    KOMOKU_RETURN_IF_ERROR(WriteBlock(kBlockMeta, segment_internal::EncodeKeyMeta(m), &meta_loc));
    KOMOKU_RETURN_IF_ERROR(packer_.Add(MetaKey(d.key), meta_loc));
    for (const auto& [key, loc] : entries) KOMOKU_RETURN_IF_ERROR(packer_.Add(key, loc));
    return Status::Ok();
  }

  Status WriteBlock(unsigned char kind, const std::string& payload, uint64_t* locator) {
    const uint64_t len = payload.size() + kBlockOverhead;
    if (len > kMaxBlockBytes) {
      return Status::InvalidArgument(base_ + ": a block would exceed 16 MiB");
    }
    if (size_ + len > kMaxDataBytes) {
      return Status::InvalidArgument(base_ + ": the data file would exceed 1 TiB");
    }
    const size_t start = buffer_.size();
    buffer_.resize(start + 5);
    PutU32(&buffer_[start], static_cast<uint32_t>(payload.size()));
    buffer_[start + 4] = static_cast<char>(kind);
    buffer_.append(payload);
    char crc[4];
    PutU32(crc, Crc32c(buffer_.data() + start, buffer_.size() - start));
    buffer_.append(crc, 4);
    *locator = size_ | (len << kLocatorOffsetBits);
    size_ += len;
    ++blocks_;
    if (buffer_.size() >= (1 << 20)) return Flush();
    return Status::Ok();
  }

  Status Flush() {
    const char* p = buffer_.data();
    size_t left = buffer_.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("write", tmp_path_, errno);
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    buffer_.clear();
    return Status::Ok();
  }

  Status FinishFiles() {
    KOMOKU_RETURN_IF_ERROR(Flush());
    char header[kHeaderSize] = {};
    std::memcpy(header, kMagic, 8);
    PutU32(header + 8, kFormatVersion);
    PutU32(header + 12, static_cast<uint32_t>(kHeaderSize));
    PutU64(header + 16, id_);
    PutU64(header + 24, static_cast<uint64_t>(meta_.from_ms));
    PutU64(header + 32, static_cast<uint64_t>(meta_.to_ms));
    PutU64(header + 40, meta_.max_seq);
    PutU64(header + 48, size_);
    PutU32(header + 56, static_cast<uint32_t>(blocks_));
    PutU32(header + 60, Crc32c(header, 60));
    if (::pwrite(fd_, header, kHeaderSize, 0) != static_cast<ssize_t>(kHeaderSize)) {
      return ErrnoStatus("write header of", tmp_path_, errno);
    }
    if (options_.sync && ::fsync(fd_) != 0) return ErrnoStatus("fsync", tmp_path_, errno);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return ErrnoStatus("close", tmp_path_, errno);
    if (std::rename(tmp_path_.c_str(), data_path_.c_str()) != 0) {
      return ErrnoStatus("rename to " + data_path_, tmp_path_, errno);
    }
    renamed_ = true;
    // The index goes into place last: it is what makes the pair a segment.
    // The packer syncs the directory after its rename, which also makes the
    // data file's rename durable.
    return packer_.Finish();
  }

  const std::string base_;
  const std::string data_path_;
  const std::string tmp_path_;
  int fd_;
  keyka::Packer packer_;
  const SegmentMeta meta_;
  const SegmentWriteOptions options_;
  const uint64_t id_;

  std::string buffer_;  // data not yet written, ending at size_
  uint64_t size_ = 0;   // data file bytes so far, buffer included
  uint64_t blocks_ = 0;
  std::string last_name_;
  bool have_name_ = false;
  bool finished_ = false;
  bool renamed_ = false;
  Status status_;  // sticky: the first I/O or encoding error
};

// ---------------------------------------------------------------- reader

// A read-only mapping of a whole file.
class MappedFile {
 public:
  static Result<std::unique_ptr<MappedFile>> Open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return Status::NotFound(path + ": no such file");
      return ErrnoStatus("open", path, errno);
    }
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      return ErrnoStatus("stat", path, err);
    }
    auto f = std::unique_ptr<MappedFile>(new MappedFile());
    f->size_ = static_cast<uint64_t>(st.st_size);
    // On a 32-bit target mmap's size_t length would drop the high bits and
    // map the file short.
    if (static_cast<uint64_t>(static_cast<size_t>(f->size_)) != f->size_) {
      ::close(fd);
      return Status::IOError(path + ": " + std::to_string(f->size_) +
                             " bytes is too large to map in this address space");
    }
    if (f->size_ > 0) {
      void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        return ErrnoStatus("mmap", path, err);
      }
      f->addr_ = p;
    }
    ::close(fd);
    return f;
  }
  ~MappedFile() {
    if (addr_ != nullptr) ::munmap(addr_, size_);
  }
  std::string_view bytes() const {
    return {static_cast<const char*>(addr_), static_cast<size_t>(size_)};
  }
  // See keyka::Reader::ReleasePages.
  void ReleasePages() const {
    if (addr_ != nullptr) (void)::madvise(addr_, size_, MADV_DONTNEED);
  }

 private:
  MappedFile() = default;
  void* addr_ = nullptr;
  uint64_t size_ = 0;
};

class SegmentImpl final : public Segment {
 public:
  SegmentImpl(std::string base, std::unique_ptr<MappedFile> data, keyka::Reader index,
              SegmentMeta meta, uint64_t blocks, uint32_t version)
      : base_(std::move(base)),
        data_name_(base_ + ".kkd"),
        data_file_(std::move(data)),
        data_(data_file_->bytes()),
        index_(std::move(index)),
        meta_(meta),
        blocks_(blocks),
        version_(version) {}

  const SegmentMeta& meta() const override { return meta_; }
  const std::string& base() const override { return base_; }
  uint32_t format_version() const override { return version_; }
  uint64_t file_bytes() const override { return data_.size() + index_.file_size(); }

  using Segment::Verify;
  Status Verify(const std::function<bool()>& go_on) const override;
  Result<std::vector<BlockDamage>> Check(const std::function<bool()>& go_on) const override;
  std::vector<BlockDamage> Damage() const override {
    std::lock_guard<std::mutex> lock(damage_mu_);
    std::vector<BlockDamage> out;
    for (const auto& [offset, d] : damage_) out.push_back(d);
    return out;
  }
  void ReleasePages() const override {
    data_file_->ReleasePages();
    index_.ReleasePages();
  }
  std::vector<SegmentKeyInfo> Keys() const override;
  bool HasKey(std::string_view key) const override { return index_.Get(MetaKey(key)).ok(); }
  Result<std::optional<SegmentKeyMeta>> KeyMeta(std::string_view key) const override {
    Result<std::optional<KeyRecord>> m = LoadMeta(key);
    if (!m.ok()) {
      if (IsBlockDamage(m.status())) NoteKeyDamage(key, m.status());
      return m.status();
    }
    if (!*m) return std::optional<SegmentKeyMeta>();
    SegmentKeyMeta out;
    out.type = (*m)->type;
    out.stale_after_ms = (*m)->stale_after_ms;
    out.reset_tolerance = (*m)->reset_tolerance;
    out.raw_dropped = (*m)->raw_dropped;
    out.carry = std::move((*m)->carry);
    return std::optional<SegmentKeyMeta>(std::move(out));
  }
  Status Scan(std::string_view key, int64_t from_ms, int64_t to_ms,
              const std::function<bool(const Sample&)>& fn) const override;
  Result<std::optional<Sample>> At(std::string_view key, int64_t time_ms) const override;
  Status ScanRollups(std::string_view key, int64_t resolution_ms, int64_t from_ms, int64_t to_ms,
                     const std::function<bool(const Rollup&)>& fn) const override;
  Result<SegmentKeyData> ReadKey(std::string_view key, bool skip_damaged) const override;

 private:
  Status DataCorrupt(uint64_t offset, const std::string& what) const {
    return Status::Corruption(data_name_ + ": block at " + OffsetText(offset) + ": " + what)
        .WithReason(kDamagedBlock);
  }

  static bool IsBlockDamage(const Status& st) { return st.reason() == kDamagedBlock; }

  // What failed, without the file and offset a BlockDamage names anyway.
  std::string ReasonOf(const Status& why) const {
    const std::string& m = why.message();
    const std::string prefix = data_name_ + ": block at offset ";
    if (m.rfind(prefix, 0) == 0) {
      const size_t colon = m.find(": ", prefix.size());
      if (colon != std::string::npos) return m.substr(colon + 2);
    }
    return m;
  }

  // Records a damaged block (once per offset) and returns its description.
  BlockDamage NoteDamage(BlockDamage d) const {
    std::lock_guard<std::mutex> lock(damage_mu_);
    return damage_.emplace(d.offset, std::move(d)).first->second;
  }

  // A damaged metadata block: all of `key` in this segment is lost.
  void NoteKeyDamage(std::string_view key, uint64_t offset, const Status& why) const {
    BlockDamage d;
    d.key = std::string(key);
    d.part = BlockDamage::Part::kKey;
    d.from_ms = meta_.from_ms;
    d.to_ms = meta_.to_ms;
    d.offset = offset;
    d.reason = ReasonOf(why);
    NoteDamage(std::move(d));
  }
  void NoteKeyDamage(std::string_view key, const Status& why) const {
    Result<uint64_t> loc = index_.Get(MetaKey(key));
    NoteKeyDamage(key, loc.ok() ? (*loc & (kMaxDataBytes - 1)) : 0, why);
  }

  // A damaged raw or rollup block of `key`, the `record` whose first time is
  // `first_ms`: what it held runs to the next block of the same record, or
  // to the end of the segment.
  BlockDamage NoteBlockDamage(std::string_view key, char record, int64_t resolution_ms,
                              int64_t first_ms, uint64_t locator, const Status& why) const {
    BlockDamage d;
    d.key = std::string(key);
    d.part = record == kRecordRaw ? BlockDamage::Part::kRaw : BlockDamage::Part::kRollups;
    d.resolution_ms = record == kRecordRaw ? 0 : resolution_ms;
    d.from_ms = first_ms;
    d.to_ms = meta_.to_ms;
    Result<keyka::Entry> next = index_.Find(BlockKey(key, record, first_ms), keyka::Nearest::kGt);
    if (next.ok() && IsBlockOf(next->key, key, record)) d.to_ms = KeyTime(next->key);
    d.offset = locator & (kMaxDataBytes - 1);
    d.reason = ReasonOf(why);
    return NoteDamage(std::move(d));
  }

  // The payload of the block `locator` names, after checking its bounds,
  // framing, kind and checksum.
  Result<std::string_view> Block(uint64_t locator, unsigned char kind) const {
    const uint64_t off = locator & (kMaxDataBytes - 1);
    const uint64_t len = locator >> kLocatorOffsetBits;
    if (off < kHeaderSize || len < kBlockOverhead || off > data_.size() ||
        len > data_.size() - off) {
      return DataCorrupt(off, "locator (length " + std::to_string(len) +
                                  ") points outside the file of " + std::to_string(data_.size()) +
                                  " bytes");
    }
    const char* p = data_.data() + off;
    if (GetU32(p) + kBlockOverhead != len) {
      return DataCorrupt(off, "length does not match the index");
    }
    if (static_cast<unsigned char>(p[4]) != kind) return DataCorrupt(off, "unexpected block kind");
    if (Crc32c(p, len - 4) != GetU32(p + len - 4)) return DataCorrupt(off, "checksum mismatch");
    return std::string_view(p + 5, len - kBlockOverhead);
  }

  Status WithBlock(uint64_t locator, const Status& st) const {
    if (st.ok()) return st;
    return st.WithContext(data_name_ + ": block at " + OffsetText(locator & (kMaxDataBytes - 1)))
        .WithReason(kDamagedBlock);
  }

  // The key's metadata; nullopt when the segment lacks the key.
  Result<std::optional<KeyRecord>> LoadMeta(std::string_view key) const {
    Result<uint64_t> loc = index_.Get(MetaKey(key));
    if (!loc.ok()) {
      if (loc.status().IsNotFound()) return std::optional<KeyRecord>();
      return loc.status();
    }
    Result<std::string_view> payload = Block(*loc, kBlockMeta);
    if (!payload.ok()) return payload.status();
    Result<KeyRecord> m = segment_internal::DecodeKeyMeta(*payload);
    if (!m.ok()) return WithBlock(*loc, m.status());
    if (m->name != key) {
      return DataCorrupt(*loc & (kMaxDataBytes - 1), "metadata of key " + QuoteForMessage(m->name) +
                                                         " indexed as " + QuoteForMessage(key));
    }
    return std::optional<KeyRecord>(std::move(m).value());
  }

  Status DecodeRaw(KeyType type, uint64_t loc, std::vector<Sample>* out) const {
    Result<std::string_view> payload = Block(loc, kBlockRaw);
    if (!payload.ok()) return payload.status();
    out->clear();
    return WithBlock(loc, segment_internal::DecodeRawBlock(type, *payload, out));
  }

  Status DecodeRollups(KeyType type, uint64_t loc, std::vector<Rollup>* out) const {
    Result<std::string_view> payload = Block(loc, kBlockRollup);
    if (!payload.ok()) return payload.status();
    out->clear();
    return WithBlock(loc, segment_internal::DecodeRollupBlock(type, *payload, version_, out));
  }

  Status DecodeRollupColumns(KeyType type, uint64_t loc,
                             segment_internal::RollupColumns* out) const {
    Result<std::string_view> payload = Block(loc, kBlockRollup);
    if (!payload.ok()) return payload.status();
    return WithBlock(loc, out->Decode(type, *payload, version_));
  }

  // The index key to start a forward walk over `record` blocks of `name` that
  // may hold times >= from_ms: the last block starting at or before from_ms,
  // else the first block.
  Result<std::string> StartKey(std::string_view name, char record, int64_t from_ms) const {
    Result<keyka::Entry> e = index_.Find(BlockKey(name, record, from_ms), keyka::Nearest::kLe);
    if (e.ok() && IsBlockOf(e->key, name, record)) return std::string(e->key);
    if (!e.ok() && !e.status().IsNotFound()) return e.status();
    return BlockKey(name, record, std::numeric_limits<int64_t>::min());
  }

  // Calls fn(locator, first_time) for each `record` block of `name` whose
  // first time is in [from_ms, to_ms) or which is the last block starting
  // before from_ms, until fn returns false or an error.
  template <typename Fn>
  Status ForBlocks(std::string_view name, char record, int64_t from_ms, int64_t to_ms,
                   Fn fn) const {
    if (from_ms >= to_ms) return Status::Ok();
    Result<std::string> start = StartKey(name, record, from_ms);
    if (!start.ok()) return start.status();
    keyka::Iterator it = index_.Range(*start, BlockKey(name, record, to_ms));
    for (; it.Valid(); it.Next()) {
      Result<bool> more = fn(it.value(), KeyTime(it.key()));
      if (!more.ok()) return more.status();
      if (!*more) return Status::Ok();
    }
    return it.status();
  }

  // Rollup record kind of `resolution_ms` for the key, or nullopt.
  static std::optional<char> RollupRecord(const KeyRecord& m, int64_t resolution_ms) {
    for (size_t i = 0; i < m.resolutions.size(); ++i) {
      if (m.resolutions[i].resolution_ms == resolution_ms) {
        return static_cast<char>(kRecordRollup0 + i);
      }
    }
    return std::nullopt;
  }

  const std::string base_;
  const std::string data_name_;
  const std::unique_ptr<MappedFile> data_file_;
  const std::string_view data_;
  const keyka::Reader index_;
  const SegmentMeta meta_;
  const uint64_t blocks_;
  const uint32_t version_;  // the file's format version

  mutable std::mutex damage_mu_;
  mutable std::map<uint64_t, BlockDamage> damage_;  // by offset; guarded by damage_mu_
};

Status SegmentImpl::Scan(std::string_view key, int64_t from_ms, int64_t to_ms,
                         const std::function<bool(const Sample&)>& fn) const {
  Result<std::optional<KeyRecord>> m = LoadMeta(key);
  if (!m.ok()) {
    if (!IsBlockDamage(m.status())) return m.status();
    NoteKeyDamage(key, m.status());
    return Status::Ok();
  }
  if (!*m) return Status::Ok();
  const KeyType type = (*m)->type;
  std::vector<Sample> samples;
  return ForBlocks(key, kRecordRaw, from_ms, to_ms,
                   [&](uint64_t loc, int64_t first) -> Result<bool> {
                     if (Status st = DecodeRaw(type, loc, &samples); !st.ok()) {
                       if (!IsBlockDamage(st)) return st;
                       NoteBlockDamage(key, kRecordRaw, 0, first, loc, st);
                       return true;  // the other blocks still answer
                     }
                     for (const Sample& s : samples) {
                       if (s.time_ms < from_ms) continue;
                       if (s.time_ms >= to_ms || !fn(s)) return false;
                     }
                     return true;
                   });
}

Result<std::optional<Sample>> SegmentImpl::At(std::string_view key, int64_t time_ms) const {
  auto lost = [&] {
    return Status::NotFound(data_name_ + ": the value of " + QuoteForMessage(key) + " at " +
                            std::to_string(time_ms) + " was in a damaged block")
        .WithReason(kDataLost);
  };
  Result<std::optional<KeyRecord>> m = LoadMeta(key);
  if (!m.ok()) {
    if (!IsBlockDamage(m.status())) return m.status();
    NoteKeyDamage(key, m.status());
    if (time_ms < meta_.from_ms) return std::optional<Sample>();  // not this segment's time
    return lost();
  }
  if (!*m) return std::optional<Sample>();
  Result<keyka::Entry> e = index_.Find(BlockKey(key, kRecordRaw, time_ms), keyka::Nearest::kLe);
  if (!e.ok() && !e.status().IsNotFound()) return e.status();
  if (e.ok() && IsBlockOf(e->key, key, kRecordRaw)) {
    std::vector<Sample> samples;
    if (Status st = DecodeRaw((*m)->type, e->value, &samples); !st.ok()) {
      if (!IsBlockDamage(st)) return st;
      NoteBlockDamage(key, kRecordRaw, 0, KeyTime(e->key), e->value, st);
      return lost();
    }
    auto it = std::upper_bound(samples.begin(), samples.end(), time_ms,
                               [](int64_t t, const Sample& s) { return t < s.time_ms; });
    if (it == samples.begin()) {
      NoteBlockDamage(
          key, kRecordRaw, 0, KeyTime(e->key), e->value,
          DataCorrupt(e->value & (kMaxDataBytes - 1), "first change is after the index's time"));
      return lost();
    }
    return std::optional<Sample>(std::move(*(it - 1)));
  }
  std::optional<Sample> found;
  const auto& carry = (*m)->carry;
  if (carry && carry->time_ms <= time_ms) found = *carry;
  if (!(*m)->raw_dropped) return found;
  // Raw changes dropped by retention: the last rollup with a change that
  // ended by time_ms says the value. Coarse to fine, so that few are
  // decoded: each finer resolution looks only from the start of the last
  // coarser bucket with a change (buckets are aligned to the epoch). Its
  // time is the finest bucket's start: when in it the change came is no
  // longer kept.
  int64_t lo = meta_.from_ms;
  for (auto res = std::rbegin(kRollupResolutionsMs); res != std::rend(kRollupResolutionsMs);
       ++res) {
    const int64_t r = *res;
    const int64_t hi = (time_ms + 1) - (((time_ms + 1) % r) + r) % r;  // floor to r
    if (!RollupRecord(**m, r) || hi <= lo) continue;
    std::optional<int64_t> last_start;
    KOMOKU_RETURN_IF_ERROR(ScanRollups(key, r, lo, hi, [&](const Rollup& roll) {
      if (roll.count > 0 && roll.last) {
        found = Sample{roll.start_ms, *roll.last};
        last_start = roll.start_ms;
      }
      return true;
    }));
    lo = last_start ? *last_start : hi;
  }
  return found;
}

Status SegmentImpl::ScanRollups(std::string_view key, int64_t resolution_ms, int64_t from_ms,
                                int64_t to_ms, const std::function<bool(const Rollup&)>& fn) const {
  Result<std::optional<KeyRecord>> m = LoadMeta(key);
  if (!m.ok()) {
    if (!IsBlockDamage(m.status())) return m.status();
    NoteKeyDamage(key, m.status());
    return Status::Ok();
  }
  if (!*m) return Status::Ok();
  const std::optional<char> record = RollupRecord(**m, resolution_ms);
  if (!record) return Status::Ok();
  const KeyType type = (*m)->type;
  segment_internal::RollupColumns columns;
  Rollup rollup;
  return ForBlocks(key, *record, from_ms, to_ms, [&](uint64_t loc, int64_t first) -> Result<bool> {
    if (Status st = DecodeRollupColumns(type, loc, &columns); !st.ok()) {
      if (!IsBlockDamage(st)) return st;
      NoteBlockDamage(key, *record, resolution_ms, first, loc, st);
      return true;
    }
    for (size_t i = 0; i < columns.size(); ++i) {
      const int64_t start = columns.start_ms(i);
      if (start < from_ms) continue;
      if (start >= to_ms) return false;
      columns.Take(i, &rollup);
      if (!fn(rollup)) return false;
    }
    return true;
  });
}

Result<SegmentKeyData> SegmentImpl::ReadKey(std::string_view key, bool skip_damaged) const {
  Result<std::optional<KeyRecord>> m = LoadMeta(key);
  if (!m.ok()) {
    if (IsBlockDamage(m.status())) NoteKeyDamage(key, m.status());
    return m.status();
  }
  if (!*m) return Status::NotFound(base_ + ": no key " + QuoteForMessage(key));
  const KeyRecord& meta = **m;
  SegmentKeyData d;
  d.key = std::string(key);
  d.type = meta.type;
  d.stale_after_ms = meta.stale_after_ms;
  d.reset_tolerance = meta.reset_tolerance;
  d.carry = meta.carry;
  d.raw_dropped = meta.raw_dropped;
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  std::vector<Sample> samples;
  // A damaged block is recorded either way; `skip_damaged` says whether it
  // ends the read.
  auto damaged = [&](const Status& st, char record, int64_t res, int64_t first, uint64_t loc) {
    if (IsBlockDamage(st)) NoteBlockDamage(key, record, res, first, loc, st);
    return skip_damaged && IsBlockDamage(st);
  };
  KOMOKU_RETURN_IF_ERROR(
      ForBlocks(key, kRecordRaw, kMin, kMax, [&](uint64_t loc, int64_t first) -> Result<bool> {
        if (Status st = DecodeRaw(meta.type, loc, &samples); !st.ok()) {
          if (damaged(st, kRecordRaw, 0, first, loc)) return true;
          return st;
        }
        for (Sample& s : samples) d.changes.push_back(std::move(s));
        return true;
      }));
  for (size_t r = 0; r < meta.resolutions.size(); ++r) {
    std::vector<Rollup> all, part;
    const char record = static_cast<char>(kRecordRollup0 + r);
    const int64_t res = meta.resolutions[r].resolution_ms;
    KOMOKU_RETURN_IF_ERROR(
        ForBlocks(key, record, kMin, kMax, [&](uint64_t loc, int64_t first) -> Result<bool> {
          if (Status st = DecodeRollups(meta.type, loc, &part); !st.ok()) {
            if (damaged(st, record, res, first, loc)) return true;
            return st;
          }
          for (Rollup& ro : part) all.push_back(std::move(ro));
          return true;
        }));
    d.rollups.emplace_back(meta.resolutions[r].resolution_ms, std::move(all));
  }
  return d;
}

std::vector<SegmentKeyInfo> SegmentImpl::Keys() const {
  std::vector<SegmentKeyInfo> out;
  std::string from(1, '\x01');  // above the id key, below every name
  for (;;) {
    Result<keyka::Entry> e = index_.Find(from, keyka::Nearest::kGe);
    if (!e.ok()) break;
    const std::string_view k = e->key;
    const size_t nul = k.find('\0');
    if (nul == std::string_view::npos) break;
    const std::string_view name = k.substr(0, nul);
    Result<std::optional<KeyRecord>> m = LoadMeta(name);
    if (!m.ok() && IsBlockDamage(m.status())) {
      NoteKeyDamage(name, m.status());
      from = std::string(name) + '\x01';  // the other keys are unharmed
      continue;
    }
    if (!m.ok() || !*m) break;  // a damaged index: Check() reports it
    SegmentKeyInfo info;
    info.key = std::string(name);
    info.type = (*m)->type;
    info.changes = (*m)->changes;
    info.raw_bytes = (*m)->raw_bytes;
    info.rollup_bytes = (*m)->rollup_bytes;
    info.stale_after_ms = (*m)->stale_after_ms;
    info.reset_tolerance = (*m)->reset_tolerance;
    info.raw_dropped = (*m)->raw_dropped;
    if ((*m)->changes > 0) {
      info.first_ms = (*m)->first_ms;
      info.last_ms = (*m)->last_ms;
    }
    out.push_back(std::move(info));
    from = std::string(name) + '\x01';  // past every record of this name
  }
  return out;
}

Status SegmentImpl::Verify(const std::function<bool()>& go_on) const {
  Result<std::vector<BlockDamage>> damage = Check(go_on);
  if (!damage.ok()) return damage.status();
  if (damage->empty()) return Status::Ok();
  const BlockDamage& d = damage->front();
  return Status::Corruption(
             data_name_ + ": block at " + OffsetText(d.offset) + " (" + DamagedPartName(d) +
             " of " + QuoteForMessage(d.key) + "): " + d.reason +
             (damage->size() > 1
                  ? " (and " + std::to_string(damage->size() - 1) + " more damaged blocks)"
                  : ""))
      .WithReason(kDamagedBlock);
}

Result<std::vector<BlockDamage>> SegmentImpl::Check(const std::function<bool()>& go_on) const {
  // A month's segment takes seconds to check: a stop must not wait for it.
  constexpr uint64_t kAskEvery = 256;
  uint64_t steps = 0;
  auto stopped = [&] { return go_on && ++steps % kAskEvery == 0 && !go_on(); };
  auto stop_status = [] { return Status::Busy("check stopped"); };
  // The index first: without it no block can be told from another.
  KOMOKU_RETURN_IF_ERROR(index_.Verify());
  auto structure = [&](const std::string& why) {
    return Status::Corruption(data_name_ + ": " + why + " (the blocks cannot be told apart)");
  };

  // Every index record locates a block; together they must tile the data
  // file exactly. A block's own framing and checksum are checked below, one
  // block at a time, so that a damaged one loses only itself: the locators
  // still find every other block even when a damaged length field would
  // derail a walk in file order.
  struct Record {
    std::string_view key;
    uint64_t loc;
  };
  std::vector<Record> records;
  keyka::Iterator it = index_.All();
  if (!it.Valid() || it.key() != kIdKey) {
    KOMOKU_RETURN_IF_ERROR(it.status());
    return Status::Corruption(index_.name() + ": no segment id record");
  }
  for (it.Next(); it.Valid(); it.Next()) {
    if (stopped()) return stop_status();
    const std::string_view k = it.key();
    const size_t nul = k.find('\0');
    const bool meta =
        nul != std::string_view::npos && k.size() == nul + 2 && k[nul + 1] == kRecordMeta;
    const bool block =
        nul != std::string_view::npos && k.size() == nul + 10 && k[nul + 1] != kRecordMeta;
    if (nul == 0 || (!meta && !block)) {
      return Status::Corruption(index_.name() + ": record " + QuoteForMessage(k) +
                                ": not a segment record");
    }
    records.push_back({k, it.value()});
  }
  KOMOKU_RETURN_IF_ERROR(it.status());
  {
    std::vector<std::pair<uint64_t, uint64_t>> located;  // offset, length
    located.reserve(records.size());
    for (const Record& r : records) {
      located.emplace_back(r.loc & (kMaxDataBytes - 1), r.loc >> kLocatorOffsetBits);
    }
    std::sort(located.begin(), located.end());
    uint64_t off = kHeaderSize;
    for (const auto& [o, len] : located) {
      if (o != off || len < kBlockOverhead || len > data_.size() - off) {
        return structure("index records do not tile the file at " + OffsetText(off));
      }
      off += len;
    }
    if (off != data_.size()) return structure("index records do not reach the end of the file");
    if (located.size() != blocks_) {
      return structure(std::to_string(located.size()) + " blocks, the header says " +
                       std::to_string(blocks_));
    }
  }

  // Every record's block: framing, kind, checksum, decoding, and agreement
  // with the index and the key's metadata. A failure is pinned on the block
  // (a raw or rollup block loses its range, a metadata block all of its
  // key) and the check goes on with the next one.
  std::vector<BlockDamage> found;
  auto note = [&](BlockDamage d) { found.push_back(NoteDamage(std::move(d))); };
  std::optional<KeyRecord> cur;
  std::string name;
  bool key_damaged = false;  // some block of the current key failed
  bool skip_key = false;     // its metadata failed: its other blocks mean nothing
  uint64_t meta_offset = 0;
  uint64_t changes = 0, raw_bytes = 0, rollup_bytes = 0;
  std::vector<uint64_t> rollups;
  int64_t last_time = 0;
  int64_t first_ms = 0, last_raw_ms = 0;  // of the key's raw changes
  char last_record = 0;
  auto key_damage = [&](const std::string& why) {
    BlockDamage d;
    d.key = name;
    d.part = BlockDamage::Part::kKey;
    d.from_ms = meta_.from_ms;
    d.to_ms = meta_.to_ms;
    d.offset = meta_offset;
    d.reason = why;
    note(std::move(d));
  };
  auto finish_key = [&] {
    if (!cur || key_damaged) return;
    std::string why;
    if (changes != cur->changes || raw_bytes != cur->raw_bytes ||
        rollup_bytes != cur->rollup_bytes) {
      why = "raw changes or block bytes differ from its metadata";
    } else if (changes > 0 && (first_ms != cur->first_ms || last_raw_ms != cur->last_ms)) {
      why = "first or last change time differs from its metadata";
    } else if (cur->raw_dropped && changes > 0) {
      why = "raw changes although marked raw_dropped";
    }
    for (size_t r = 0; r < rollups.size() && why.empty(); ++r) {
      if (rollups[r] != cur->resolutions[r].rollups) why = "rollup count differs from its metadata";
    }
    if (!why.empty()) key_damage(data_name_ + ": key " + QuoteForMessage(name) + ": " + why);
  };
  std::vector<Sample> samples;
  std::vector<Rollup> rs;
  for (const Record& rec : records) {
    if (stopped()) return stop_status();
    const std::string_view k = rec.key;
    const uint64_t loc = rec.loc;
    const std::string what = index_.name() + ": record " + QuoteForMessage(k);
    const size_t nul = k.find('\0');
    const char record = k[nul + 1];
    const std::string_view rec_name = k.substr(0, nul);
    if (record == kRecordMeta) {
      finish_key();
      name = std::string(rec_name);
      meta_offset = loc & (kMaxDataBytes - 1);
      cur.reset();
      key_damaged = skip_key = false;
      Result<std::optional<KeyRecord>> m = LoadMeta(name);
      if (!m.ok()) {
        if (!IsBlockDamage(m.status())) return m.status();
        key_damage(ReasonOf(m.status()));
        key_damaged = skip_key = true;
        continue;
      }
      if (!*m) return Status::Corruption(what + ": metadata not found by lookup");
      cur = std::move(*m);
      if (cur->carry && cur->carry->time_ms >= meta_.from_ms) {
        key_damage(what + ": carry not before the segment");
        key_damaged = skip_key = true;
        continue;
      }
      changes = raw_bytes = rollup_bytes = 0;
      rollups.assign(cur->resolutions.size(), 0);
      last_record = kRecordMeta;
      continue;
    }
    if (rec_name != name) {
      return Status::Corruption(what + ": not after its key's metadata record");
    }
    if (skip_key) continue;
    const int64_t t = KeyTime(k);
    const bool first_of_kind = record != last_record;
    last_record = record;
    auto block_damage = [&](const Status& st, int64_t res) {
      found.push_back(NoteBlockDamage(name, record, res, t, loc, st));
      key_damaged = true;
      // The next block of the kind starts after this one's index time.
      last_time = t;
    };
    if (record == kRecordRaw) {
      if (Status st = DecodeRaw(cur->type, loc, &samples); !st.ok()) {
        if (!IsBlockDamage(st)) return st;
        block_damage(st, 0);
        continue;
      }
      Status bad;
      if (samples.empty() || samples.front().time_ms != t) {
        bad = DataCorrupt(loc & (kMaxDataBytes - 1), "first change differs from the index");
      }
      for (size_t i = 0; i < samples.size() && bad.ok(); ++i) {
        const int64_t st = samples[i].time_ms;
        if (st < meta_.from_ms || st >= meta_.to_ms || (i > 0 && st < samples[i - 1].time_ms) ||
            (i == 0 && !first_of_kind && st <= last_time)) {
          bad = DataCorrupt(loc & (kMaxDataBytes - 1), "change times out of order or range");
        }
      }
      if (!bad.ok()) {
        block_damage(bad, 0);
        continue;
      }
      if (changes == 0) first_ms = samples.front().time_ms;
      last_time = last_raw_ms = samples.back().time_ms;
      changes += samples.size();
      raw_bytes += loc >> kLocatorOffsetBits;
    } else if (record >= kRecordRollup0 &&
               static_cast<size_t>(record - kRecordRollup0) < cur->resolutions.size()) {
      const int64_t res =
          cur->resolutions[static_cast<size_t>(record - kRecordRollup0)].resolution_ms;
      if (Status st = DecodeRollups(cur->type, loc, &rs); !st.ok()) {
        if (!IsBlockDamage(st)) return st;
        block_damage(st, res);
        continue;
      }
      Status bad;
      if (rs.empty() || rs.front().start_ms != t) {
        bad = DataCorrupt(loc & (kMaxDataBytes - 1), "first rollup differs from the index");
      }
      for (size_t i = 0; i < rs.size() && bad.ok(); ++i) {
        if ((i > 0 && rs[i].start_ms <= rs[i - 1].start_ms) ||
            (i == 0 && !first_of_kind && rs[i].start_ms <= last_time)) {
          bad = DataCorrupt(loc & (kMaxDataBytes - 1), "rollup starts out of order");
        }
      }
      if (!bad.ok()) {
        block_damage(bad, res);
        continue;
      }
      last_time = rs.back().start_ms;
      rollups[static_cast<size_t>(record - kRecordRollup0)] += rs.size();
      rollup_bytes += loc >> kLocatorOffsetBits;
    } else {
      key_damage(what + ": unknown record kind");
      key_damaged = skip_key = true;
    }
  }
  finish_key();
  std::sort(found.begin(), found.end(),
            [](const BlockDamage& a, const BlockDamage& b) { return a.offset < b.offset; });
  return found;
}

}  // namespace

std::string DamagedPartName(const BlockDamage& damage) {
  switch (damage.part) {
    case BlockDamage::Part::kKey:
      return "all history";
    case BlockDamage::Part::kRaw:
      return "raw changes";
    case BlockDamage::Part::kRollups: {
      const int64_t r = damage.resolution_ms;
      if (r % 86'400'000 == 0) return std::to_string(r / 86'400'000) + " d rollups";
      if (r % 3'600'000 == 0) return std::to_string(r / 3'600'000) + " h rollups";
      if (r % 60'000 == 0) return std::to_string(r / 60'000) + " min rollups";
      return std::to_string(r) + " ms rollups";
    }
  }
  return "?";
}

namespace {

uint64_t NewSegmentId() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
         static_cast<uint64_t>(::getpid()) * 0x9E3779B97F4A7C15ull;
}

}  // namespace

Result<std::unique_ptr<SegmentWriter>> SegmentWriter::Create(const std::string& base,
                                                             const SegmentMeta& meta,
                                                             const SegmentWriteOptions& options) {
  if (meta.from_ms > meta.to_ms) {
    return Status::InvalidArgument(base + ": segment range [" + std::to_string(meta.from_ms) +
                                   ", " + std::to_string(meta.to_ms) + ") is backwards");
  }
  keyka::PackerOptions popts;
  popts.sync = options.sync;
  Result<keyka::Packer> packer = keyka::Packer::Create(base + ".kki", popts);
  if (!packer.ok()) return packer.status();
  const uint64_t id = NewSegmentId();
  KOMOKU_RETURN_IF_ERROR(packer->Add(kIdKey, id));
  static std::atomic<uint64_t> sequence{0};
  const std::string tmp = base + ".kkd." + std::to_string(::getpid()) + "." +
                          std::to_string(sequence.fetch_add(1)) + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) return ErrnoStatus("create", tmp, errno);
  return std::unique_ptr<SegmentWriter>(std::make_unique<SegmentWriterImpl>(
      base, tmp, fd, std::move(packer).value(), meta, options, id));
}

Result<std::shared_ptr<const Segment>> Segment::Open(const std::string& base) {
  const std::string data_name = base + ".kkd";
  Result<std::unique_ptr<MappedFile>> data = MappedFile::Open(data_name);
  if (!data.ok()) return data.status();
  const std::string_view d = (*data)->bytes();
  auto bad = [&](const std::string& why) { return Status::Corruption(data_name + ": " + why); };
  if (d.size() < kHeaderSize) return bad("shorter than the 64-byte header");
  if (std::memcmp(d.data(), kMagic, 8) != 0) return bad("not a Komoku segment (bad magic)");
  if (Crc32c(d.data(), 60) != GetU32(d.data() + 60)) return bad("header checksum mismatch");
  const uint32_t version = GetU32(d.data() + 8);
  if (version < kOldestFormatVersion || version > kFormatVersion) {
    return bad("format version " + std::to_string(version) +
               " is not supported (this build reads " + std::to_string(kOldestFormatVersion) +
               " to " + std::to_string(kFormatVersion) + ")");
  }
  if (GetU32(d.data() + 12) != kHeaderSize) return bad("unexpected header size");
  const uint64_t id = GetU64(d.data() + 16);
  SegmentMeta meta;
  meta.from_ms = static_cast<int64_t>(GetU64(d.data() + 24));
  meta.to_ms = static_cast<int64_t>(GetU64(d.data() + 32));
  meta.max_seq = GetU64(d.data() + 40);
  const uint64_t size = GetU64(d.data() + 48);
  if (size != d.size()) {
    return bad("file is " + std::to_string(d.size()) + " bytes, the header says " +
               std::to_string(size) + " (truncated or extended)");
  }
  const uint64_t blocks = GetU32(d.data() + 56);

  Result<keyka::Reader> index = keyka::Reader::Open(base + ".kki");
  if (!index.ok()) return index.status();
  Result<keyka::Entry> first = index->Find(kIdKey, keyka::Nearest::kGe);
  if (!first.ok() || first->key != kIdKey) {
    if (!first.ok() && !first.status().IsNotFound()) return first.status();
    return Status::Corruption(index->name() + ": no segment id record");
  }
  if (first->value != id) {
    return Status::Corruption(index->name() +
                              ": belongs to another data file (segment id differs)");
  }
  return std::shared_ptr<const Segment>(std::make_shared<SegmentImpl>(
      base, std::move(data).value(), std::move(index).value(), meta, blocks, version));
}

}  // namespace komoku::store
