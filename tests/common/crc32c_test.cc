// CRC-32C: the standard check value, continuation, and the CPU's
// instruction (when this machine has one) agreeing with the tables at every
// length and alignment.
#include "common/crc32c.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <iostream>
#include <random>
#include <string>
#include <vector>

namespace komoku {
namespace {

TEST(Crc32cTest, CheckValue) {
  // The check value of CRC-32C (RFC 3720, appendix B.4's "123456789").
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c_internal::Portable("123456789", 9, 0), 0xE3069283u);
  EXPECT_EQ(Crc32c("", 0), 0u);
  // 32 bytes of zeros and of 0xFF (RFC 3720, appendix B.4).
  const std::string zeros(32, '\0'), ones(32, '\xFF');
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(ones.data(), ones.size()), 0x62A8AB43u);
}

TEST(Crc32cTest, ContinuesFromAPreviousCrc) {
  const std::string text = "The quick brown fox jumps over the lazy dog, twice over.";
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    EXPECT_EQ(Crc32c(text.data() + cut, text.size() - cut, Crc32c(text.data(), cut)),
              Crc32c(text.data(), text.size()))
        << cut;
  }
}

TEST(Crc32cTest, CpuInstructionAndTablesAgree) {
  // Says which one this machine ran (x86-64 since 2008 and every Raspberry
  // Pi from the 3 on have the instruction).
  std::cout << "CRC-32C " << (crc32c_internal::InHardware() ? "in hardware" : "from tables")
            << "\n";
  std::mt19937_64 rng(11);
  std::vector<unsigned char> buf(4096 + 16);
  for (auto& b : buf) b = static_cast<unsigned char>(rng());
  for (size_t offset = 0; offset < 16; ++offset) {
    for (size_t size : {0, 1, 3, 7, 8, 9, 15, 16, 17, 63, 64, 100, 1000, 4096}) {
      const uint32_t seed = static_cast<uint32_t>(rng());
      EXPECT_EQ(Crc32c(buf.data() + offset, size, seed),
                crc32c_internal::Portable(buf.data() + offset, size, seed))
          << "offset " << offset << ", " << size << " bytes";
    }
  }
}

}  // namespace
}  // namespace komoku
