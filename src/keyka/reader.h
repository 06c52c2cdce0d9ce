// keyka::Reader answers lookups on a KeyKa v0 file (docs/keyka-format.md)
// by walking the tree in a read-only memory map; nothing is loaded at open.
//
// The file is untrusted. Every offset, length and key is checked against the
// file's bounds before it is used, a child must lie inside the part of the
// file its parent leaves to it, and a walk deeper than a tree of the file's
// size can be is an error; a malformed file gives a Corruption status, never
// a crash, an out-of-bounds read or an endless walk. A lookup on a corrupt
// file may still succeed when the nodes it visits are sound; Verify() checks
// the whole file.
//
// The mapped file must not shrink while a Reader maps it (the OS would kill
// the process on the next read past the new end). KeyKa files are never
// modified in place; replacing one by rename, as Packer does, is safe.
//
// A Reader is immutable after open and safe to share between threads. Keys
// returned as std::string_view, and Iterators, point into the mapping: the
// Reader must outlive them (moving the Reader keeps them valid).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace komoku::keyka {

struct Entry {
  std::string_view key;
  uint64_t value = 0;
};

// Which key Reader::Nearest finds, relative to the given key.
enum class Nearest {
  kGe,  // the first key >= the given key
  kGt,  // the first key >  the given key
  kLe,  // the last key <= the given key
  kLt,  // the last key <  the given key
};

// Figures from Reader::Verify.
struct Stats {
  uint64_t keys = 0;
  uint64_t leaves = 0;
  uint64_t branches = 0;
  uint64_t file_size = 0;
  uint64_t key_bytes = 0;  // sum of key lengths
  uint64_t min_key_size = 0;
  uint64_t max_key_size = 0;
  int depth = 0;  // most nodes on any root-to-node path
};

namespace internal {
// The tree bytes of a Reader; shared by value with its iterators.
struct TreeView {
  const unsigned char* tree = nullptr;  // file offset 8
  uint64_t size = 0;                    // tree bytes
  int max_depth = 0;                    // deepest walk a tree this size allows
};
// A decoded node; `key` points into the tree.
struct Node {
  uint64_t offset = 0;  // tree offset
  uint64_t end = 0;     // tree offset of the next node in the file
  bool branch = false;
  uint64_t value = 0;
  int32_t left = 0;
  int32_t right = 0;
  std::string_view key;
};
}  // namespace internal

// Steps through the keys within optional bounds [lower, upper) in key order.
// Forward steps read the next node in the file (O(1)); backward steps are an
// O(log n) walk each. A corrupt node ends the scan with a non-OK status().
//
//   for (auto it = reader.Range(a, b); it.Valid(); it.Next()) use(it.key());
//   if (!it.status().ok()) ...
class Iterator {
 public:
  // True while positioned at a key inside the bounds.
  bool Valid() const { return valid_; }
  // Precondition: Valid().
  std::string_view key() const { return node_.key; }
  uint64_t value() const { return node_.value; }
  Entry entry() const { return Entry{node_.key, node_.value}; }

  // Moves to the next (previous) key; invalid past the bounds. Precondition: Valid().
  void Next();
  void Prev();
  // Repositions at the first (last) key inside the bounds.
  void SeekToFirst();
  void SeekToLast();

  // OK unless a corrupt node stopped the scan.
  const Status& status() const { return status_; }

 private:
  friend class Reader;
  Iterator(const std::string& name, internal::TreeView view, int32_t root,
           std::optional<std::string> lower, std::optional<std::string> upper);
  void Fail(Status st);
  // Positions at `node` if it lies inside the bounds, else becomes invalid.
  void Land(const internal::Node& node, bool found);

  std::string name_;  // of the file, for error messages
  internal::TreeView view_;
  int32_t root_ = 0;
  std::optional<std::string> lower_;  // inclusive
  std::optional<std::string> upper_;  // exclusive
  bool valid_ = false;
  internal::Node node_;
  Status status_;
};

class Reader {
 public:
  // Maps `path` read-only and checks the magic and the root reference: O(1).
  static Result<Reader> Open(const std::string& path);
  // Reads a file image held by the caller, which must outlive the Reader.
  // `name` appears in error messages.
  static Result<Reader> FromBytes(std::string_view bytes, std::string name = "<memory>");

  ~Reader();
  Reader(Reader&& other) noexcept;
  Reader& operator=(Reader&& other) noexcept;
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  // The value of `key`; NotFound when absent, Corruption on a malformed node.
  Result<uint64_t> Get(std::string_view key) const;
  // The nearest key in direction `dir`; NotFound when there is none.
  Result<Entry> Find(std::string_view key, Nearest dir) const;

  // Keys in [from, to), positioned at the first one.
  Iterator Range(std::string_view from, std::string_view to) const;
  // Keys starting with `prefix`, positioned at the first one.
  Iterator Prefix(std::string_view prefix) const;
  // Every key, positioned at the first one.
  Iterator All() const;

  // Reads every node: bounds, strictly increasing keys, each reference exactly
  // where the format puts it, the root, and that an exact lookup finds each
  // key. O(n log n) time, O(log n) memory. Fills *stats (if given) as far as
  // it got.
  Status Verify(Stats* stats = nullptr) const;

  // Gives back this process's resident pages of the mapping (after a scan
  // of the whole file, such as Verify): the next read maps them in again,
  // from the page cache while the kernel keeps them there. Nothing for
  // FromBytes, whose bytes the caller owns.
  void ReleasePages() const;

  const std::string& name() const { return name_; }
  uint64_t file_size() const { return view_.size + 8; }
  bool empty() const { return root_ == 0; }

 private:
  Reader(std::string name, internal::TreeView view, int32_t root, void* map, uint64_t map_size);
  Status Corrupt(const std::string& what) const;

  std::string name_;
  internal::TreeView view_;
  int32_t root_ = 0;
  // The mapping this Reader owns, if any (FromBytes borrows instead).
  void* map_ = nullptr;
  uint64_t map_size_ = 0;
};

}  // namespace komoku::keyka
