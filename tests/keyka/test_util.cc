#include "test_util.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace komoku::keyka::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/keyka-test.XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  for (const std::string& name : List()) ::unlink(File(name).c_str());
  ::rmdir(path_.c_str());
}

std::vector<std::string> TempDir::List() const {
  std::vector<std::string> names;
  DIR* dir = ::opendir(path_.c_str());
  if (dir == nullptr) return names;
  while (dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(dir);
  return names;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string HexDecode(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw std::runtime_error("bad hex digit");
  };
  if (hex.size() % 2 != 0) throw std::runtime_error("odd hex length");
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    out.push_back(static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1])));
  }
  return out;
}

std::string HexEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xF]);
  }
  return out;
}

std::string DataDir() { return KOMOKU_KEYKA_TEST_DATA; }

Pairs LoadTsv(const std::string& path, bool hex) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  Pairs pairs;
  std::string line;
  while (std::getline(in, line)) {
    const size_t tab = line.rfind('\t');
    if (tab == std::string::npos) throw std::runtime_error("no tab in " + path);
    std::string key = line.substr(0, tab);
    pairs.emplace_back(hex ? HexDecode(key) : key, std::stoull(line.substr(tab + 1)));
  }
  return pairs;
}

Status PackPairs(const std::string& path, const Pairs& pairs) {
  PackerOptions options;
  options.sync = false;
  Result<Packer> packer = Packer::Create(path, options);
  if (!packer.ok()) return packer.status();
  for (const auto& [key, value] : pairs) {
    Status st = packer->Add(key, value);
    if (!st.ok()) return st;
  }
  return packer->Finish();
}

Status PackMap(const std::string& path, const std::map<std::string, uint64_t>& map) {
  return PackPairs(path, Pairs(map.begin(), map.end()));
}

std::string PackToBytes(const TempDir& dir, const Pairs& pairs) {
  const std::string path = dir.File("packed.keyka");
  Status st = PackPairs(path, pairs);
  if (!st.ok()) throw std::runtime_error(st.ToString());
  return ReadFile(path);
}

}  // namespace komoku::keyka::testing
