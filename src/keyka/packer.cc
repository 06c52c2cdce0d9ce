// KeyKa v0 packer; the format is in docs/keyka-format.md.
//
// Nodes are appended in index order with a right field of 0. TreeShape says
// when a branch's right field is settled; it is then patched in place — in the
// write buffer when the branch is still there, else with pwrite(). The root
// reference (tree offset 0) is patched last, in Finish().
#include "keyka/packer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

#include "keyka/format.h"
#include "keyka/tree_shape.h"

namespace komoku::keyka {
namespace {

constexpr size_t kBufferSize = size_t{1} << 20;

Status ErrnoStatus(const std::string& what, const std::string& path, int err) {
  return Status::IOError(path + ": " + what + ": " + std::strerror(err));
}

// Writes all of [data, data+size) at the current position, retrying short
// writes and EINTR.
Status WriteAll(int fd, const unsigned char* data, size_t size, const std::string& path) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("write", path, errno);
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status PwriteAll(int fd, const unsigned char* data, size_t size, uint64_t pos,
                 const std::string& path) {
  while (size > 0) {
    ssize_t n = ::pwrite(fd, data, size, static_cast<off_t>(pos));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("pwrite", path, errno);
    }
    data += n;
    size -= static_cast<size_t>(n);
    pos += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

// The directory holding `path`, for syncing the rename.
std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

class Packer::Impl {
 public:
  Impl(std::string path, std::string tmp_path, int fd, const PackerOptions& options)
      : path_(std::move(path)), tmp_path_(std::move(tmp_path)), fd_(fd), options_(options) {
    buffer_.reserve(kBufferSize + kBranchHeaderSize + kMaxKeySize);
    buffer_.insert(buffer_.end(), kMagic, kMagic + kMagicSize);
    buffer_.resize(kMagicSize + kRootRefSize, 0);  // root reference, patched by Finish()
    tree_size_ = kRootRefSize;
  }

  ~Impl() { Cleanup(); }

  Status Add(std::string_view key, uint64_t value) {
    if (!status_.ok()) return status_;
    if (finished_ || abandoned_) {
      return Status::InvalidArgument(path_ + ": Add after Finish or Abandon");
    }
    if (key.size() > kMaxKeySize) {
      return Fail(Status::InvalidArgument(path_ + ": key " + DescribeKey(key) + " is " +
                                          std::to_string(key.size()) + " bytes, over the " +
                                          std::to_string(kMaxKeySize) + "-byte limit"));
    }
    if (shape_.count() > 0) {
      const int c = key.compare(last_key_);
      if (c == 0)
        return Fail(Status::InvalidArgument(path_ + ": duplicate key " + DescribeKey(key)));
      if (c < 0) {
        return Fail(Status::InvalidArgument(path_ + ": key " + DescribeKey(key) +
                                            " is out of order: not greater than the previous key " +
                                            DescribeKey(last_key_)));
      }
    }
    const bool branch = IsBranchIndex(shape_.count());
    const uint64_t node_size = NodeHeaderSize(branch) + key.size();
    if (tree_size_ + node_size > options_.max_tree_size) {
      return Fail(Status::InvalidArgument(
          path_ + ": key " + DescribeKey(key) + " (pair " + std::to_string(shape_.count() + 1) +
          ") would pass the tree size limit of " + std::to_string(options_.max_tree_size) +
          " bytes (KeyKa v0 offsets are int32)"));
    }

    const uint64_t offset = tree_size_;
    std::optional<TreeShape::FinalRight> settled;
    const int32_t left = shape_.Add(offset, &settled);
    if (settled && settled->right != 0) {
      Status st = PatchRef(settled->offset + kBranchRightPos, settled->right);
      if (!st.ok()) return Fail(st);
    }

    const size_t at = buffer_.size();
    buffer_.resize(at + node_size);
    unsigned char* p = buffer_.data() + at;
    EncodeFixed64(p + kValuePos, value);
    if (branch) {
      EncodeRef(p + kBranchLeftPos, left);
      EncodeRef(p + kBranchRightPos, 0);
      EncodeFixed16(p + kBranchKeyLengthPos, static_cast<uint16_t>(key.size()));
    } else {
      EncodeFixed16(p + kLeafKeyLengthPos, static_cast<uint16_t>(key.size()));
    }
    if (!key.empty()) std::memcpy(p + NodeHeaderSize(branch), key.data(), key.size());
    tree_size_ += node_size;
    last_key_.assign(key.data(), key.size());

    if (buffer_.size() >= kBufferSize) {
      Status st = Flush();
      if (!st.ok()) return Fail(st);
    }
    return status_;
  }

  Status Finish() {
    if (finished_) return status_;
    finished_ = true;
    if (abandoned_) Fail(Status::InvalidArgument(path_ + ": Finish after Abandon"));
    if (status_.ok()) {
      for (const TreeShape::FinalRight& f : shape_.Unsettled()) {
        if (f.right == 0) continue;
        Status st = PatchRef(f.offset + kBranchRightPos, f.right);
        if (!st.ok()) {
          Fail(st);
          break;
        }
      }
    }
    if (status_.ok()) {
      Status st = PatchRef(0, shape_.RootRef());
      if (st.ok()) st = Flush();
      if (st.ok() && options_.sync && ::fsync(fd_) != 0)
        st = ErrnoStatus("fsync", tmp_path_, errno);
      if (st.ok()) {
        const int fd = fd_;
        fd_ = -1;
        if (::close(fd) != 0) st = ErrnoStatus("close", tmp_path_, errno);
      }
      if (st.ok() && std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
        st = ErrnoStatus("rename to " + path_, tmp_path_, errno);
      }
      if (st.ok()) {
        renamed_ = true;
        if (options_.sync) st = SyncDirectory();
      }
      if (!st.ok()) Fail(st);
    }
    Cleanup();
    return status_;
  }

  void Abandon() {
    abandoned_ = true;
    Cleanup();
  }

  const Status& status() const { return status_; }
  uint64_t count() const { return shape_.count(); }
  uint64_t file_size() const { return kMagicSize + tree_size_; }

 private:
  // Closes the file and removes it unless it was renamed into place.
  void Cleanup() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    if (!renamed_ && !removed_) {
      ::unlink(tmp_path_.c_str());
      removed_ = true;
    }
  }

  Status Fail(Status st) {
    if (status_.ok()) status_ = std::move(st);
    return status_;
  }

  // Overwrites the int32 at tree offset `tree_pos`, which was written before.
  Status PatchRef(uint64_t tree_pos, int32_t ref) {
    unsigned char bytes[4];
    EncodeRef(bytes, ref);
    const uint64_t file_pos = kMagicSize + tree_pos;
    if (file_pos >= buffer_start_) {
      std::memcpy(buffer_.data() + (file_pos - buffer_start_), bytes, sizeof(bytes));
      return Status::Ok();
    }
    // Nodes never straddle a patch: a field lies either wholly in the buffer
    // or wholly in the file, since flushes happen between whole nodes.
    return PwriteAll(fd_, bytes, sizeof(bytes), file_pos, tmp_path_);
  }

  Status Flush() {
    Status st = WriteAll(fd_, buffer_.data(), buffer_.size(), tmp_path_);
    buffer_start_ += buffer_.size();
    buffer_.clear();
    return st;
  }

  Status SyncDirectory() {
    const std::string dir = DirectoryOf(path_);
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open directory", dir, errno);
    Status st;
    if (::fsync(fd) != 0) st = ErrnoStatus("fsync directory", dir, errno);
    ::close(fd);
    return st;
  }

  const std::string path_;
  const std::string tmp_path_;
  int fd_;
  const PackerOptions options_;

  Status status_;
  bool finished_ = false;
  bool abandoned_ = false;
  bool renamed_ = false;
  bool removed_ = false;
  TreeShape shape_;
  std::string last_key_;
  uint64_t tree_size_ = 0;
  // Bytes not yet written; buffer_[0] belongs at file offset buffer_start_.
  std::vector<unsigned char> buffer_;
  uint64_t buffer_start_ = 0;
};

Result<Packer> Packer::Create(const std::string& path, const PackerOptions& options) {
  if (options.max_tree_size > kMaxTreeSize || options.max_tree_size < kRootRefSize) {
    return Status::InvalidArgument(path + ": max_tree_size must be between " +
                                   std::to_string(kRootRefSize) + " and " +
                                   std::to_string(kMaxTreeSize));
  }
  // Unique per process and per packer, so concurrent packers never share it.
  static std::atomic<uint64_t> sequence{0};
  const std::string tmp_path = path + "." + std::to_string(::getpid()) + "." +
                               std::to_string(sequence.fetch_add(1)) + ".tmp";
  const int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) return ErrnoStatus("create", tmp_path, errno);
  return Packer(std::make_unique<Impl>(path, tmp_path, fd, options));
}

Packer::Packer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Packer::~Packer() = default;
Packer::Packer(Packer&&) noexcept = default;
Packer& Packer::operator=(Packer&&) noexcept = default;

Status Packer::Add(std::string_view key, uint64_t value) { return impl_->Add(key, value); }
Status Packer::Finish() { return impl_->Finish(); }
void Packer::Abandon() { impl_->Abandon(); }
const Status& Packer::status() const { return impl_->status(); }
uint64_t Packer::count() const { return impl_->count(); }
uint64_t Packer::file_size() const { return impl_->file_size(); }

}  // namespace komoku::keyka
