// A gzip member inflated with zlib, for the tests that check what the HTTP
// server compressed (tests/query/encoding_test, integration/29).
#pragma once

#include <string>

namespace komoku::testing {

// `gz` inflated as one whole gzip member; "<bad gzip>" when it is not one
// (a bad header or checksum, a truncated member, or bytes after it).
std::string Gunzip(const std::string& gz);

}  // namespace komoku::testing
