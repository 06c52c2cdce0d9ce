// See format.h and docs/keyka-format.md.
#include "keyka/format.h"

namespace komoku::keyka {

std::string DescribeKey(std::string_view key) {
  constexpr size_t kShown = 64;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  const size_t shown = key.size() < kShown ? key.size() : kShown;
  for (size_t i = 0; i < shown; ++i) {
    const auto c = static_cast<unsigned char>(key[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\' && c != '\'') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  out.push_back('\'');
  if (shown < key.size()) out += "... (" + std::to_string(key.size()) + " bytes)";
  return out;
}

}  // namespace komoku::keyka
