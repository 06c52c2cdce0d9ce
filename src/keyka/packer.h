// keyka::Packer writes a KeyKa v0 file (docs/keyka-format.md) from (key,
// value) pairs given in strictly increasing key order.
//
// The file is written under a temporary name beside the destination, synced
// and renamed into place by Finish(), so a reader sees either no file or the
// whole file. Memory is O(log n) pending node offsets plus a fixed I/O buffer.
//
// Errors are sticky: the first failure (an out-of-order, duplicate or
// oversized key, the 2 GiB tree limit, an I/O error) is kept, every later
// call returns it, and Finish() then removes the temporary file. A Packer
// ends with Finish() or Abandon(); destroying it without either abandons.
//
// Owned by one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace komoku::keyka {

struct PackerOptions {
  // fsync the file and its directory in Finish(). Tests may turn it off.
  bool sync = true;
  // Largest tree, in bytes, the packer may write; at most (and by default)
  // the format's 2 GiB limit. Lower it to test the limit cheaply.
  uint64_t max_tree_size = uint64_t{1} << 31;
};

class Packer {
 public:
  // Starts writing `path` (through "<path>.<pid>.<n>.tmp"). Fails with
  // IOError when the temporary file cannot be created, InvalidArgument for
  // bad options.
  static Result<Packer> Create(const std::string& path, const PackerOptions& options = {});

  // Destroying an unfinished Packer abandons it. A moved-from Packer may only
  // be destroyed or assigned to.
  ~Packer();
  Packer(Packer&&) noexcept;
  Packer& operator=(Packer&&) noexcept;

  // Appends a pair. `key` must be greater than the previous key and at most
  // 65,535 bytes; the error names the offending key.
  Status Add(std::string_view key, uint64_t value);

  // Completes the tree, syncs and renames the file into place. Returns the
  // sticky status; on any error the temporary file is removed and `path` is
  // left as it was. Later calls return the same status.
  Status Finish();

  // Discards the temporary file; `path` is left as it was. Idempotent.
  void Abandon();

  // The first error so far, or OK.
  const Status& status() const;
  // Pairs added so far.
  uint64_t count() const;
  // File bytes written so far (magic included).
  uint64_t file_size() const;

 private:
  class Impl;
  explicit Packer(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace komoku::keyka
