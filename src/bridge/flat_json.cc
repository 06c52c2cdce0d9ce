// FlatJson (flat_json.h): nlohmann::json's own lexer and parser, so what is
// valid JSON, how strings are unescaped and how numbers are read are exactly
// json::parse's; only the DOM is left out.
#include "bridge/flat_json.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

namespace komoku::bridge {

// The SAX handler: one node per value outside arrays, and one per element
// of an array that is not itself inside an array (an element that is an
// object or array is one node whose contents are skipped). Deeper than
// that only the nesting is counted, to know where the skipped part ends.
class FlatJson::Builder {
 public:
  explicit Builder(FlatJson* out) : out_(out) {}

  bool null() {
    Add(Kind::kNull);
    return true;
  }
  bool boolean(bool v) {
    if (Node* n = Add(Kind::kBoolean)) n->boolean = v;
    return true;
  }
  bool number_integer(int64_t v) {
    if (Node* n = Add(Kind::kInteger)) n->integer = v;
    return true;
  }
  bool number_unsigned(uint64_t v) {
    if (Node* n = Add(Kind::kUnsigned)) n->unsigned_integer = v;
    return true;
  }
  bool number_float(double v, const std::string& /*text*/) {
    if (Node* n = Add(Kind::kFloat)) n->floating = v;
    return true;
  }
  bool string(std::string& v) {
    if (Node* n = Add(Kind::kString)) {
      n->text_at = static_cast<uint32_t>(out_->text_.size());
      n->text_size = static_cast<uint32_t>(v.size());
      out_->text_.append(v);
    }
    return true;
  }
  bool binary(nlohmann::json::binary_t& /*v*/) { return true; }  // not in JSON text
  bool start_object(size_t /*elements*/) {
    if (skip_) {
      ++skip_;
      return true;
    }
    if (in_array_) {  // an element: one node, its contents skipped
      Add(Kind::kObject);
      ++skip_;
      return true;
    }
    Add(Kind::kObject);
    out_->open_.push_back(static_cast<Index>(out_->nodes_.size() - 1));
    return true;
  }
  bool key(std::string& name) {
    if (skip_) return true;
    name_at_ = static_cast<uint32_t>(out_->text_.size());
    name_size_ = static_cast<uint32_t>(name.size());
    out_->text_.append(name);
    return true;
  }
  bool end_object() {
    if (skip_) {
      --skip_;
      return true;
    }
    out_->nodes_[out_->open_.back()].end = static_cast<Index>(out_->nodes_.size());
    out_->open_.pop_back();
    return true;
  }
  bool start_array(size_t /*elements*/) {
    if (skip_) {
      ++skip_;
      return true;
    }
    Add(Kind::kArray);
    if (in_array_) {  // an element: one node, its contents skipped
      ++skip_;
      return true;
    }
    in_array_ = true;
    array_ = static_cast<Index>(out_->nodes_.size() - 1);
    return true;
  }
  bool end_array() {
    if (skip_) {
      --skip_;
      return true;
    }
    out_->nodes_[array_].end = static_cast<Index>(out_->nodes_.size());
    in_array_ = false;
    return true;
  }
  bool parse_error(size_t /*position*/, const std::string& /*last_token*/,
                   const nlohmann::json::exception& /*error*/) {
    return false;
  }

 private:
  // The new node, named by the last key() when inside an object; null
  // inside an array.
  Node* Add(Kind kind) {
    if (skip_) return nullptr;
    Node& n = out_->nodes_.emplace_back();
    n.kind = kind;
    n.end = static_cast<Index>(out_->nodes_.size());
    if (!out_->open_.empty()) {
      n.name_at = name_at_;
      n.name_size = name_size_;
    }
    return &n;
  }

  FlatJson* const out_;
  uint32_t name_at_ = 0, name_size_ = 0;
  size_t skip_ = 0;        // skipped objects and arrays open around the current value
  bool in_array_ = false;  // reading the elements of array_
  Index array_ = 0;
};

bool FlatJson::Parse(std::string_view text) {
  nodes_.clear();
  text_.clear();
  open_.clear();
  if (text.size() >= (size_t{1} << 31)) return false;
  // Names and strings unescaped are never longer than the text: one
  // allocation for a new parser, none for a reused one.
  text_.reserve(text.size());
  if (nodes_.capacity() == 0) nodes_.reserve(16);
  Builder builder(this);
  const bool ok = nlohmann::json::sax_parse(text.data(), text.data() + text.size(), &builder);
  if (!ok || nodes_.empty()) {
    nodes_.clear();
    return false;
  }
  return true;
}

const char* FlatJson::TypeName(Index i) const {
  switch (kind(i)) {
    case Kind::kNull:
      return "null";
    case Kind::kBoolean:
      return "boolean";
    case Kind::kString:
      return "string";
    case Kind::kObject:
      return "object";
    case Kind::kArray:
      return "array";
    case Kind::kInteger:
    case Kind::kUnsigned:
    case Kind::kFloat:
      break;
  }
  return "number";
}

double FlatJson::Number(Index i) const {
  const Node& n = nodes_[i];
  switch (n.kind) {
    case Kind::kInteger:
      return static_cast<double>(n.integer);
    case Kind::kUnsigned:
      return static_cast<double>(n.unsigned_integer);
    case Kind::kFloat:
      return n.floating;
    default:
      return std::numeric_limits<double>::quiet_NaN();
  }
}

std::string FlatJson::NumberText(Index i) const {
  const Node& n = nodes_[i];
  switch (n.kind) {
    case Kind::kInteger:
      return nlohmann::json(n.integer).dump();
    case Kind::kUnsigned:
      return nlohmann::json(n.unsigned_integer).dump();
    case Kind::kFloat:
      return nlohmann::json(n.floating).dump();
    default:
      return std::string();
  }
}

FlatJson::Index FlatJson::Member(Index object, std::string_view name) const {
  if (kind(object) != Kind::kObject) return kNone;
  Index found = kNone;
  for (Index c = object + 1; c < nodes_[object].end; c = nodes_[c].end) {
    if (Name(c) == name) found = c;
  }
  return found;
}

void FlatJson::AppendElements(Index array, std::vector<Index>* out) const {
  if (kind(array) != Kind::kArray) return;
  for (Index c = array + 1; c < nodes_[array].end; c = nodes_[c].end) out->push_back(c);
}

void FlatJson::AppendMembersSorted(Index object, std::vector<Index>* out) const {
  if (kind(object) != Kind::kObject) return;
  const size_t first = out->size();
  for (Index c = object + 1; c < nodes_[object].end; c = nodes_[c].end) out->push_back(c);
  // By name, and of equal names the later first, so that the one kept
  // below (the first of each run) is the value the DOM keeps.
  std::sort(out->begin() + static_cast<std::ptrdiff_t>(first), out->end(), [&](Index a, Index b) {
    const int order = Name(a).compare(Name(b));
    return order < 0 || (order == 0 && a > b);
  });
  auto last = std::unique(out->begin() + static_cast<std::ptrdiff_t>(first), out->end(),
                          [&](Index a, Index b) { return Name(a) == Name(b); });
  out->erase(last, out->end());
}

}  // namespace komoku::bridge
