// A shared memory mapping of a file, unmapped when it goes out of scope.
// Move-only; owned by one thread at a time (the bytes may be shared with
// other mappings of the same file through the page cache).
#pragma once

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "common/status.h"

namespace komoku {

class Mapping {
 public:
  Mapping() = default;
  ~Mapping() { Reset(); }
  Mapping(Mapping&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept {
    if (this != &other) {
      Reset();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  // Maps the first `size` bytes of the open file `fd` (MAP_SHARED; the fd
  // may be closed afterwards). `path` only names the file in the error.
  static Result<Mapping> Map(int fd, uint64_t size, bool writable, const std::string& path) {
    // On a 32-bit target mmap's size_t length would drop the high bits.
    if (static_cast<uint64_t>(static_cast<size_t>(size)) != size) {
      return Status::IOError(path + ": " + std::to_string(size) +
                             " bytes is too large to map in this address space");
    }
    Mapping m;
    if (size == 0) return m;
    void* p = ::mmap(nullptr, static_cast<size_t>(size),
                     writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return Status::IOError(path + ": mmap: " + std::strerror(errno));
    m.data_ = static_cast<char*>(p);
    m.size_ = static_cast<size_t>(size);
    return m;
  }

  explicit operator bool() const { return data_ != nullptr; }
  char* data() const { return data_; }
  size_t size() const { return size_; }

  void Reset() {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace komoku
