// KeyKa v0 reader; the format is in docs/keyka-format.md.
//
// Safety argument, in one place: every node is decoded by DecodeNode, which
// checks that its fixed part and its key lie inside the window [lo, hi) the
// caller allows. A walk starts with the whole tree as window and narrows it at
// each step — to the bytes before the parent when going left, after it when
// going right — so it can never revisit a node, and it also stops after
// max_depth nodes, the depth of the deepest tree the file could hold.
// Forward scans decode each next node in the window from the current node's
// end to the end of the tree and require strictly increasing keys.
#include "keyka/reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

#include "keyka/format.h"
#include "keyka/tree_shape.h"

namespace komoku::keyka {

using internal::Node;
using internal::TreeView;

namespace {

const char* KindName(bool branch) { return branch ? "branch" : "leaf"; }

std::string Window(uint64_t lo, uint64_t hi) {
  return "[" + std::to_string(lo) + ", " + std::to_string(hi) + ")";
}

// Decodes the node of kind `branch` at tree offset `offset`, which must lie
// wholly inside [lo, hi) (hi <= view.size).
Status DecodeNode(const TreeView& view, uint64_t offset, bool branch, uint64_t lo, uint64_t hi,
                  Node* out) {
  const uint64_t header = NodeHeaderSize(branch);
  if (offset < lo || offset >= hi || hi - offset < header) {
    return Status::Corruption(std::string(KindName(branch)) + " at tree offset " +
                              std::to_string(offset) + " lies outside its allowed range " +
                              Window(lo, hi));
  }
  const unsigned char* p = view.tree + offset;
  const uint64_t key_size = DecodeFixed16(p + (branch ? kBranchKeyLengthPos : kLeafKeyLengthPos));
  if (hi - offset - header < key_size) {
    return Status::Corruption(std::string(KindName(branch)) + " at tree offset " +
                              std::to_string(offset) + ": key of " + std::to_string(key_size) +
                              " bytes runs past " + std::to_string(hi));
  }
  out->offset = offset;
  out->end = offset + header + key_size;
  out->branch = branch;
  out->value = DecodeFixed64(p + kValuePos);
  out->left = branch ? DecodeRef(p + kBranchLeftPos) : 0;
  out->right = branch ? DecodeRef(p + kBranchRightPos) : 0;
  out->key = std::string_view(reinterpret_cast<const char*>(p + header), key_size);
  return Status::Ok();
}

// Decodes the node `ref` names, inside [lo, hi). Precondition: ref != 0.
Status DecodeRefNode(const TreeView& view, int32_t ref, uint64_t lo, uint64_t hi, Node* out) {
  const int64_t wide = ref;
  const bool branch = wide > 0;
  return DecodeNode(view, static_cast<uint64_t>(branch ? wide : -wide), branch, lo, hi, out);
}

enum class Mode { kExact, kGe, kGt, kLe, kLt, kLast };

// One root-to-leaf walk. Sets *found and *out to the node the mode asks for;
// *depth to the number of nodes visited.
Status Walk(const TreeView& view, int32_t root, Mode mode, std::string_view target, bool* found,
            Node* out, int* depth) {
  *found = false;
  *depth = 0;
  uint64_t lo = kFirstNodeOffset;
  uint64_t hi = view.size;
  int32_t ref = root;
  Node node;
  uint64_t parent = 0;
  while (ref != 0) {
    if (*depth >= view.max_depth) {
      return Status::Corruption("walk is deeper than " + std::to_string(view.max_depth) +
                                " levels, more than a tree of this size can have (reached tree "
                                "offset " +
                                std::to_string(node.offset) + ")");
    }
    ++*depth;
    Status st = DecodeRefNode(view, ref, lo, hi, &node);
    if (!st.ok()) {
      if (*depth == 1) return st;
      return Status::Corruption("child of the branch at tree offset " + std::to_string(parent) +
                                ": " + st.message());
    }
    const int c = mode == Mode::kLast ? 1 : target.compare(node.key);
    bool go_left = false;
    switch (mode) {
      case Mode::kExact:
        if (c == 0) {
          *found = true;
          *out = node;
          return Status::Ok();
        }
        go_left = c < 0;
        break;
      case Mode::kGe:
      case Mode::kGt:
        if (c < 0 || (c == 0 && mode == Mode::kGe)) {
          *found = true;
          *out = node;
          go_left = true;
        }
        break;
      case Mode::kLe:
      case Mode::kLt:
      case Mode::kLast:
        if (c > 0 || (c == 0 && mode == Mode::kLe)) {
          *found = true;
          *out = node;
        } else {
          go_left = true;
        }
        break;
    }
    if (!node.branch) break;
    parent = node.offset;
    if (go_left) {
      ref = node.left;
      hi = node.offset;
    } else {
      ref = node.right;
      lo = node.end;
    }
  }
  return Status::Ok();
}

// The smallest key greater than every key starting with `prefix`, or nothing
// when there is none (the prefix is empty or all 0xFF).
std::optional<std::string> PrefixSuccessor(std::string_view prefix) {
  std::string s(prefix);
  while (!s.empty() && static_cast<unsigned char>(s.back()) == 0xFF) s.pop_back();
  if (s.empty()) return std::nullopt;
  s.back() = static_cast<char>(static_cast<unsigned char>(s.back()) + 1);
  return s;
}

}  // namespace

// --- Iterator

Iterator::Iterator(const std::string& name, TreeView view, int32_t root,
                   std::optional<std::string> lower, std::optional<std::string> upper)
    : name_(name), view_(view), root_(root), lower_(std::move(lower)), upper_(std::move(upper)) {
  SeekToFirst();
}

void Iterator::Fail(Status st) {
  valid_ = false;
  if (status_.ok()) status_ = st.WithContext(name_);
}

void Iterator::Land(const Node& node, bool found) {
  valid_ = found && (!lower_ || node.key.compare(*lower_) >= 0) &&
           (!upper_ || node.key.compare(*upper_) < 0);
  if (valid_) node_ = node;
}

void Iterator::SeekToFirst() {
  valid_ = false;
  if (!status_.ok() || root_ == 0) return;
  Node node;
  bool found = false;
  Status st;
  if (lower_) {
    int depth = 0;
    st = Walk(view_, root_, Mode::kGe, *lower_, &found, &node, &depth);
  } else {
    st = DecodeNode(view_, kFirstNodeOffset, false, kFirstNodeOffset, view_.size, &node);
    found = st.ok();
  }
  if (!st.ok()) return Fail(st);
  Land(node, found);
}

void Iterator::SeekToLast() {
  valid_ = false;
  if (!status_.ok() || root_ == 0) return;
  Node node;
  bool found = false;
  int depth = 0;
  Status st = upper_ ? Walk(view_, root_, Mode::kLt, *upper_, &found, &node, &depth)
                     : Walk(view_, root_, Mode::kLast, {}, &found, &node, &depth);
  if (!st.ok()) return Fail(st);
  Land(node, found);
}

void Iterator::Next() {
  if (!valid_) return;
  if (node_.end == view_.size) {
    valid_ = false;
    return;
  }
  Node next;
  Status st = DecodeNode(view_, node_.end, !node_.branch, node_.end, view_.size, &next);
  if (!st.ok()) return Fail(st);
  if (next.key.compare(node_.key) <= 0) {
    return Fail(Status::Corruption("key " + DescribeKey(next.key) + " at tree offset " +
                                   std::to_string(next.offset) +
                                   " is not greater than the key before it"));
  }
  // Keys only grow, so the lower bound needs no check here.
  valid_ = !upper_ || next.key.compare(*upper_) < 0;
  if (valid_) node_ = next;
}

void Iterator::Prev() {
  if (!valid_) return;
  Node prev;
  bool found = false;
  int depth = 0;
  Status st = Walk(view_, root_, Mode::kLt, node_.key, &found, &prev, &depth);
  if (!st.ok()) return Fail(st);
  Land(prev, found);
}

// --- Reader

Reader::Reader(std::string name, TreeView view, int32_t root, void* map, uint64_t map_size)
    : name_(std::move(name)), view_(view), root_(root), map_(map), map_size_(map_size) {}

Reader::~Reader() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

void Reader::ReleasePages() const {
  // A read-only shared mapping of a file: MADV_DONTNEED drops the process's
  // page table entries only; the file and its cached pages are untouched.
  if (map_ != nullptr) (void)::madvise(map_, map_size_, MADV_DONTNEED);
}

Reader::Reader(Reader&& other) noexcept
    : name_(std::move(other.name_)),
      view_(std::exchange(other.view_, TreeView{})),
      root_(std::exchange(other.root_, 0)),
      map_(std::exchange(other.map_, nullptr)),
      map_size_(std::exchange(other.map_size_, 0)) {}

Reader& Reader::operator=(Reader&& other) noexcept {
  if (this != &other) {
    if (map_ != nullptr) ::munmap(map_, map_size_);
    name_ = std::move(other.name_);
    view_ = std::exchange(other.view_, TreeView{});
    root_ = std::exchange(other.root_, 0);
    map_ = std::exchange(other.map_, nullptr);
    map_size_ = std::exchange(other.map_size_, 0);
  }
  return *this;
}

Result<Reader> Reader::FromBytes(std::string_view bytes, std::string name) {
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.empty()) return Status::Corruption(name + ": empty file, not a KeyKa v0 file");
  if (bytes.size() < kEmptyFileSize) {
    return Status::Corruption(name + ": " + std::to_string(bytes.size()) +
                              " bytes, too short for a KeyKa v0 file (at least " +
                              std::to_string(kEmptyFileSize) + ")");
  }
  if (std::memcmp(data, kMagic, kMagicSize) != 0) {
    return Status::Corruption(name + ": not a KeyKa v0 file (bad magic)");
  }
  TreeView view;
  view.tree = data + kMagicSize;
  view.size = bytes.size() - kMagicSize;
  // A tree of n nodes needs at least n leaf headers of bytes, and has depth
  // BitWidth(n).
  view.max_depth = BitWidth((view.size - kRootRefSize) / kLeafHeaderSize);
  const int32_t root = DecodeRef(view.tree);
  if (root == 0) {
    if (view.size != kRootRefSize) {
      return Status::Corruption(name + ": the tree is empty (root 0) but " +
                                std::to_string(view.size - kRootRefSize) + " bytes follow");
    }
  } else {
    Node node;
    Status st = DecodeRefNode(view, root, kFirstNodeOffset, view.size, &node);
    if (!st.ok()) return st.WithContext(name + ": root");
  }
  return Reader(std::move(name), view, root, nullptr, 0);
}

Result<Reader> Reader::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError(path + ": open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::IOError(path + ": fstat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::IOError(path + ": not a regular file");
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size < kEmptyFileSize) {
    ::close(fd);
    // Let FromBytes phrase the error; it needs no bytes for that beyond a few.
    std::string head(size, '\0');
    return FromBytes(head, path).status();
  }
  if (static_cast<uint64_t>(static_cast<size_t>(size)) != size) {
    ::close(fd);
    return Status::IOError(path + ": " + std::to_string(size) +
                           " bytes is too large to map in this address space");
  }
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  const int err = errno;
  ::close(fd);
  if (addr == MAP_FAILED) return Status::IOError(path + ": mmap: " + std::strerror(err));
  Result<Reader> reader = FromBytes(std::string_view(static_cast<const char*>(addr), size), path);
  if (!reader.ok()) {
    ::munmap(addr, size);
    return reader.status();
  }
  reader->map_ = addr;
  reader->map_size_ = size;
  return reader;
}

Status Reader::Corrupt(const std::string& what) const {
  return Status::Corruption(name_ + ": " + what);
}

Result<uint64_t> Reader::Get(std::string_view key) const {
  bool found = false;
  Node node;
  int depth = 0;
  Status st = Walk(view_, root_, Mode::kExact, key, &found, &node, &depth);
  if (!st.ok()) return st.WithContext(name_);
  if (!found) return Status::NotFound(name_ + ": key " + DescribeKey(key) + " not found");
  return node.value;
}

Result<Entry> Reader::Find(std::string_view key, Nearest dir) const {
  Mode mode = Mode::kGe;
  const char* relation = ">=";
  switch (dir) {
    case Nearest::kGe:
      mode = Mode::kGe;
      relation = ">=";
      break;
    case Nearest::kGt:
      mode = Mode::kGt;
      relation = ">";
      break;
    case Nearest::kLe:
      mode = Mode::kLe;
      relation = "<=";
      break;
    case Nearest::kLt:
      mode = Mode::kLt;
      relation = "<";
      break;
  }
  bool found = false;
  Node node;
  int depth = 0;
  Status st = Walk(view_, root_, mode, key, &found, &node, &depth);
  if (!st.ok()) return st.WithContext(name_);
  if (!found) {
    return Status::NotFound(name_ + ": no key " + relation + " " + DescribeKey(key));
  }
  return Entry{node.key, node.value};
}

Iterator Reader::Range(std::string_view from, std::string_view to) const {
  return Iterator(name_, view_, root_, std::string(from), std::string(to));
}

Iterator Reader::Prefix(std::string_view prefix) const {
  return Iterator(name_, view_, root_, std::string(prefix), PrefixSuccessor(prefix));
}

Iterator Reader::All() const { return Iterator(name_, view_, root_, std::nullopt, std::nullopt); }

Status Reader::Verify(Stats* stats_out) const {
  Stats local;
  Stats& stats = stats_out != nullptr ? *stats_out : local;
  stats = Stats{};
  stats.file_size = file_size();

  // Pass 1: the nodes in file order, their order and every reference.
  TreeShape shape;
  std::optional<TreeShape::FinalRight> settled;
  auto check_right = [&](const TreeShape::FinalRight& f) -> Status {
    // The branch at f.offset was decoded in this pass, so its fields are in bounds.
    const int32_t right = DecodeRef(view_.tree + f.offset + kBranchRightPos);
    if (right != f.right) {
      return Corrupt("branch at tree offset " + std::to_string(f.offset) + " has right reference " +
                     std::to_string(right) + ", the format requires " + std::to_string(f.right));
    }
    return Status::Ok();
  };
  Node node;
  std::string_view previous;
  uint64_t offset = kFirstNodeOffset;
  bool branch = false;
  while (offset < view_.size) {
    if (offset > static_cast<uint64_t>(INT32_MAX)) {
      return Corrupt("node at tree offset " + std::to_string(offset) +
                     " lies beyond what an int32 reference can name");
    }
    Status st = DecodeNode(view_, offset, branch, offset, view_.size, &node);
    if (!st.ok()) return st.WithContext(name_);
    if (stats.keys > 0 && node.key.compare(previous) <= 0) {
      return Corrupt("key " + DescribeKey(node.key) + " at tree offset " + std::to_string(offset) +
                     " is not greater than the key before it");
    }
    const int32_t left = shape.Add(offset, &settled);
    if (branch && node.left != left) {
      return Corrupt("branch at tree offset " + std::to_string(offset) + " has left reference " +
                     std::to_string(node.left) + ", the format requires " + std::to_string(left));
    }
    if (settled) KOMOKU_RETURN_IF_ERROR(check_right(*settled));
    stats.keys++;
    (branch ? stats.branches : stats.leaves)++;
    stats.key_bytes += node.key.size();
    if (stats.keys == 1 || node.key.size() < stats.min_key_size)
      stats.min_key_size = node.key.size();
    if (node.key.size() > stats.max_key_size) stats.max_key_size = node.key.size();
    previous = node.key;
    offset = node.end;
    branch = !branch;
  }
  for (const TreeShape::FinalRight& f : shape.Unsettled()) KOMOKU_RETURN_IF_ERROR(check_right(f));
  if (root_ != shape.RootRef()) {
    return Corrupt("root reference is " + std::to_string(root_) + ", the format requires " +
                   std::to_string(shape.RootRef()) + " for " + std::to_string(shape.count()) +
                   " keys");
  }

  // Pass 2: every key is found, at its own node, by an exact lookup.
  offset = kFirstNodeOffset;
  branch = false;
  while (offset < view_.size) {
    Status st = DecodeNode(view_, offset, branch, offset, view_.size, &node);
    if (!st.ok()) return st.WithContext(name_);
    bool found = false;
    Node hit;
    int depth = 0;
    st = Walk(view_, root_, Mode::kExact, node.key, &found, &hit, &depth);
    if (!st.ok()) return st.WithContext(name_);
    if (!found || hit.offset != node.offset) {
      return Corrupt("key " + DescribeKey(node.key) + " at tree offset " + std::to_string(offset) +
                     " is not found by an exact lookup");
    }
    if (depth > stats.depth) stats.depth = depth;
    offset = node.end;
    branch = !branch;
  }
  return Status::Ok();
}

}  // namespace komoku::keyka
