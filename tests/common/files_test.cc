// WriteFileAtomically and ReadWholeFile on real files in a temporary
// directory.
#include "common/files.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "temp_dir.h"

namespace komoku::store {
namespace {

using testing::TempDir;

TEST(FilesTest, WritesReplacesAndReadsWholeFiles) {
  TempDir dir;
  const std::string path = dir.File("state.json");
  Result<std::string> missing = ReadWholeFile(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().ToString();

  ASSERT_TRUE(WriteFileAtomically(path, "first\n").ok());
  EXPECT_EQ(*ReadWholeFile(path), "first\n");
  const std::string big(200 * 1024, 'x');  // more than one read
  ASSERT_TRUE(WriteFileAtomically(path, big).ok());
  EXPECT_EQ(*ReadWholeFile(path), big);
  ASSERT_TRUE(WriteFileAtomically(path, "").ok());
  EXPECT_EQ(*ReadWholeFile(path), "");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(FilesTest, AFailedWriteLeavesTheOldFileAndNamesThePath) {
  TempDir dir;
  Status st = WriteFileAtomically(dir.File("no/such/dir/state.json"), "x");
  ASSERT_TRUE(st.IsIOError()) << st.ToString();
  EXPECT_NE(st.message().find("no/such/dir/state.json.tmp"), std::string::npos) << st.message();

  // The rename fails over a directory: the old contents stay, no temporary
  // file is left behind.
  const std::string path = dir.File("taken");
  std::filesystem::create_directory(path);
  std::filesystem::create_directory(path + "/inside");
  st = WriteFileAtomically(path, "x");
  ASSERT_TRUE(st.IsIOError()) << st.ToString();
  EXPECT_NE(st.message().find("rename"), std::string::npos) << st.message();
  EXPECT_TRUE(std::filesystem::is_directory(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_TRUE(ReadWholeFile(path).status().IsIOError());
}

}  // namespace
}  // namespace komoku::store
