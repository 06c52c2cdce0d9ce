// KeyKa v0 format constants and byte helpers shared by the packer and the
// reader. The format itself is described in docs/keyka-format.md; in short:
//
//   file  = magic (8 bytes) · tree
//   tree  = int32 root reference · node 0 · node 1 · … · node n-1 (key order)
//   leaf   (even index) = uint64 value · uint16 key length · key
//   branch (odd index)  = uint64 value · int32 left · int32 right ·
//                         uint16 key length · key
//
// All integers are little-endian. Offsets count from the start of the tree
// (file offset 8). A reference to a leaf is the negated offset, to a branch the
// positive offset, and 0 means "no node".
//
// Everything here is internal to src/keyka; users include keyka/packer.h and
// keyka/reader.h. Stateless; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace komoku::keyka {

// "\0Key\0Ka" followed by 0x08, the size in bytes of every value.
inline constexpr unsigned char kMagic[8] = {0x00, 0x4B, 0x65, 0x79, 0x00, 0x4B, 0x61, 0x08};
inline constexpr uint64_t kMagicSize = sizeof(kMagic);

// The tree starts with the int32 root reference; node 0 follows it.
inline constexpr uint64_t kRootRefSize = 4;
inline constexpr uint64_t kFirstNodeOffset = kRootRefSize;
// An empty tree is the magic and a root reference of 0, nothing else.
inline constexpr uint64_t kEmptyFileSize = kMagicSize + kRootRefSize;

// Fixed part of each node, before the key bytes.
inline constexpr uint64_t kLeafHeaderSize = 8 + 2;            // value, key length
inline constexpr uint64_t kBranchHeaderSize = 8 + 4 + 4 + 2;  // value, left, right, key length
// Field positions inside a node, from the node's start.
inline constexpr uint64_t kValuePos = 0;
inline constexpr uint64_t kBranchLeftPos = 8;
inline constexpr uint64_t kBranchRightPos = 12;
inline constexpr uint64_t kLeafKeyLengthPos = 8;
inline constexpr uint64_t kBranchKeyLengthPos = 16;

inline constexpr uint64_t kMaxKeySize = 65535;
// Node offsets are int32, so the tree (root reference and all nodes) is
// limited to 2 GiB; the largest node offset is then below 2^31 - 1.
inline constexpr uint64_t kMaxTreeSize = uint64_t{1} << 31;

// --- Little-endian encoding; byte by byte, so alignment and host order never
// matter. Decoders read exactly the named number of bytes at `p`; callers check
// the bounds first.

inline void EncodeFixed16(unsigned char* p, uint16_t v) {
  p[0] = static_cast<unsigned char>(v);
  p[1] = static_cast<unsigned char>(v >> 8);
}

inline void EncodeFixed32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

inline void EncodeFixed64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

inline uint16_t DecodeFixed16(const unsigned char* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

inline uint32_t DecodeFixed32(const unsigned char* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

inline uint64_t DecodeFixed64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// int32 references go through uint32 so that negative values have a defined
// two's-complement encoding on every compiler.
inline void EncodeRef(unsigned char* p, int32_t ref) {
  EncodeFixed32(p, static_cast<uint32_t>(ref));
}
inline int32_t DecodeRef(const unsigned char* p) {
  uint32_t u = DecodeFixed32(p);
  return u <= 0x7FFFFFFFu ? static_cast<int32_t>(u)
                          : static_cast<int32_t>(static_cast<int64_t>(u) - (int64_t{1} << 32));
}

// --- The implicit tree.

// The level of node `index`: its number of trailing 1-bits. Level 0 is a leaf.
inline int NodeLevel(uint64_t index) {
  int level = 0;
  while (index & 1) {
    ++level;
    index >>= 1;
  }
  return level;
}

inline bool IsBranchIndex(uint64_t index) { return (index & 1) != 0; }

inline uint64_t NodeHeaderSize(bool branch) { return branch ? kBranchHeaderSize : kLeafHeaderSize; }

// The reference that names a node at tree offset `offset` (< kMaxTreeSize).
inline int32_t MakeRef(uint64_t offset, bool branch) {
  int32_t positive = static_cast<int32_t>(offset);
  return branch ? positive : -positive;
}

// floor(log2(n)) + 1 for n > 0, 0 for n == 0: the depth of a tree of n nodes,
// since the root has level floor(log2 n) and each step down lowers the level.
inline int BitWidth(uint64_t n) {
  int width = 0;
  while (n != 0) {
    ++width;
    n >>= 1;
  }
  return width;
}

// A printable, bounded rendering of a key for error messages: printable ASCII
// as is, other bytes as \xNN, long keys cut with their length noted.
std::string DescribeKey(std::string_view key);

}  // namespace komoku::keyka
