// A JSON payload read the way mapping needs it, without building a DOM:
// nlohmann::json's SAX parser fills a flat list of nodes in document order
// (objects and scalars; an array is one node followed by its elements, an
// element that is itself an object or array being one node whose contents
// are skipped: mapping reads arrays of scalars, Tasmota's per-channel
// "Power":[12,34], and nothing deeper) and one text buffer for member
// names and string values. Both are kept from payload to payload, so a
// parser reused for every message allocates nothing once they have grown.
//
// Lookups answer as the nlohmann::json DOM of the same text would: a name
// given twice in one object means its last value, and an object's members
// come sorted by name (the DOM's std::map order). tests/bridge/
// flat_json_test.cc holds the DOM as the oracle.
//
// Owned by one thread at a time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace komoku::bridge {

class FlatJson {
 public:
  enum class Kind : uint8_t {
    kNull,
    kBoolean,
    kInteger,
    kUnsigned,
    kFloat,
    kString,
    kObject,
    kArray
  };
  // Node indices; the root (the whole text's value) is node 0.
  using Index = uint32_t;
  static constexpr Index kNone = UINT32_MAX;
  static constexpr Index kRoot = 0;

  // Parses `text` as one JSON value (strict: nothing but whitespace after
  // it). False, with the nodes cleared, when json::parse would refuse it;
  // also for a text of 2 GiB or more (offsets are 32-bit).
  bool Parse(std::string_view text);

  Kind kind(Index i) const { return nodes_[i].kind; }
  // Not an object or an array (nlohmann's is_primitive).
  bool IsScalar(Index i) const { return kind(i) != Kind::kObject && kind(i) != Kind::kArray; }
  // nlohmann's type_name(): "object", "array", "string", "number", "boolean", "null".
  const char* TypeName(Index i) const;
  // The member name under which node `i` stands in its object ("" for the root).
  std::string_view Name(Index i) const { return Text(nodes_[i].name_at, nodes_[i].name_size); }

  bool Boolean(Index i) const { return nodes_[i].boolean; }
  // A number of any kind as a double (nlohmann's get<double>()).
  double Number(Index i) const;
  // A number as nlohmann's dump() writes it ("57", "21.43", "100.0").
  std::string NumberText(Index i) const;
  std::string_view String(Index i) const { return Text(nodes_[i].text_at, nodes_[i].text_size); }

  // The value of member `name` of object `object` (the last one of that
  // name), or kNone; kNone too when `object` is not an object.
  Index Member(Index object, std::string_view name) const;
  // Appends to `*out` the elements of array `array`, in order (none when
  // it is not an array).
  void AppendElements(Index array, std::vector<Index>* out) const;
  // Appends to `*out` the members of `object`, sorted by name and one per
  // name (the last), as the DOM iterates them.
  void AppendMembersSorted(Index object, std::vector<Index>* out) const;

 private:
  class Builder;
  struct Node {
    Kind kind = Kind::kNull;
    bool boolean = false;
    Index end = 0;  // one past the last node of this node's subtree
    uint32_t name_at = 0, name_size = 0;
    uint32_t text_at = 0, text_size = 0;  // a string's value
    union {
      int64_t integer;
      uint64_t unsigned_integer;
      double floating = 0;
    };
  };
  std::string_view Text(uint32_t at, uint32_t size) const {
    return std::string_view(text_.data() + at, size);
  }

  std::vector<Node> nodes_;
  std::string text_;         // names and string values, back to back
  std::vector<Index> open_;  // objects being read; only while parsing
};

}  // namespace komoku::bridge
