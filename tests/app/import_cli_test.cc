// `komoku import`'s default hand-over size from the memory the kernel says
// is available (app/import_cli.h).
#include "app/import_cli.h"

#include <gtest/gtest.h>

#include <sstream>

namespace komoku::app {
namespace {

TEST(ImportColdRowsTest, MemAvailableIsReadFromMeminfo) {
  std::istringstream meminfo(
      "MemTotal:        1919700 kB\n"
      "MemFree:          102400 kB\n"
      "MemAvailable:     761234 kB\n"
      "Buffers:           12345 kB\n");
  EXPECT_EQ(MemAvailableBytes(meminfo), 761234LL * 1024);
  std::istringstream without("MemTotal: 1919700 kB\nMemFree: 102400 kB\n");
  EXPECT_EQ(MemAvailableBytes(without), 0);  // a kernel before 3.14
  std::istringstream empty("");
  EXPECT_EQ(MemAvailableBytes(empty), 0);
  std::istringstream garbage("MemAvailable: lots\n");
  EXPECT_EQ(MemAvailableBytes(garbage), 0);
}

// A quarter of the available memory at ~210 bytes a row, bounded.
TEST(ImportColdRowsTest, AQuarterOfTheAvailableMemoryBounded) {
  // A Raspberry Pi with 1 GB (~750 MB available) and one with 512 MB.
  EXPECT_EQ(ColdRowsFor(750LL << 20), (750LL << 20) / 4 / 210);
  EXPECT_GT(ColdRowsFor(750LL << 20), 900000u);
  EXPECT_EQ(ColdRowsFor(330LL << 20), (330LL << 20) / 4 / 210);
  // This 24 GB machine: the most.
  EXPECT_EQ(ColdRowsFor(20LL << 30), kColdRowsMax);
  // Little memory: still enough rows for hand-overs to be worth it.
  EXPECT_EQ(ColdRowsFor(1LL << 20), kColdRowsMin);
  // Unknown: the most, as before the setting existed.
  EXPECT_EQ(ColdRowsFor(0), kColdRowsMax);
  EXPECT_EQ(ColdRowsFor(-5), kColdRowsMax);
}

}  // namespace
}  // namespace komoku::app
