// The files under tests/data, read whole. KOMOKU_TEST_DATA is that
// directory's absolute path, defined by the komoku_test_data target
// (tests/support/CMakeLists.txt), which unit and integration tests link.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace komoku::test_data {

// tests/data/<name>, with one final newline taken off (the files end in
// one; what they hold, a template, a payload, does not). A missing file
// fails the test that reads it and gives "".
inline std::string Read(const std::string& name) {
  const std::string path = std::string(KOMOKU_TEST_DATA) + "/" + name;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read test data " << path;
    return "";
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

}  // namespace komoku::test_data
