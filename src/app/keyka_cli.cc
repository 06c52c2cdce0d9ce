// `komoku keyka …`: command-line tools over KeyKa v0 files
// (docs/keyka-format.md), thin wrappers around keyka/packer.h and
// keyka/reader.h.
//
// Pairs are printed as `key<TAB>value` lines, the form `pack` reads, so
// `dump | pack` rebuilds the identical file. With --hex keys are hex, for
// binary keys; without it they are raw bytes (dump refuses a key holding a
// newline, which no line could carry). `pack` splits each line at its last
// tab, so text keys may contain tabs.
//
// Exit status: 0 on success; 1 when a key is not found, a file fails to
// verify, or any error occurs (the reason goes to stderr); CLI11 reports usage
// errors itself.
#include "app/keyka_cli.h"

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "keyka/packer.h"
#include "keyka/reader.h"

namespace komoku::app {
namespace {

// Values bound to the options of every keyka subcommand; CLI11 writes them
// during parsing, the callbacks read them afterwards.
struct KeykaArgs {
  std::string file;
  std::string input = "-";
  std::string key;
  std::string to;
  bool hex = false;
  bool reverse = false;
  bool ge = false;
  bool gt = false;
  bool le = false;
  bool lt = false;
};

std::string HexEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xF]);
  }
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    return Status::InvalidArgument("hex key '" + std::string(hex) + "' has an odd length");
  }
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = HexDigit(hex[i]);
    const int lo = HexDigit(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      return Status::InvalidArgument("hex key '" + std::string(hex) + "' has a non-hex digit");
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

// A key given on the command line: raw, or hex with --hex.
Result<std::string> ArgKey(const std::string& arg, bool hex) {
  if (!hex) return arg;
  return HexDecode(arg);
}

int Fail(const std::string& command, const Status& status) {
  std::fprintf(stderr, "komoku keyka %s: %s\n", command.c_str(), status.ToString().c_str());
  return 1;
}

// Writes `key<TAB>value\n` to stdout.
void PrintPair(std::string_view key, uint64_t value, bool hex) {
  std::string line = hex ? HexEncode(key) : std::string(key);
  line.push_back('\t');
  line += std::to_string(value);
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stdout);
}

int Flushed(const std::string& command) {
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    return Fail(command, Status::IOError("cannot write to stdout"));
  }
  return 0;
}

Result<keyka::Reader> OpenReader(const std::string& path) { return keyka::Reader::Open(path); }

int RunPack(const KeykaArgs& a) {
  std::ifstream file;
  std::istream* in = &std::cin;
  const std::string in_name = a.input == "-" ? "<stdin>" : a.input;
  if (a.input != "-") {
    file.open(a.input, std::ios::binary);
    if (!file) return Fail("pack", Status::IOError(a.input + ": cannot open"));
    in = &file;
  }
  Result<keyka::Packer> packer = keyka::Packer::Create(a.file);
  if (!packer.ok()) return Fail("pack", packer.status());
  std::string line;
  uint64_t line_no = 0;
  while (std::getline(*in, line)) {
    ++line_no;
    const std::string where = in_name + ":" + std::to_string(line_no);
    const size_t tab = line.rfind('\t');
    if (tab == std::string::npos) {
      return Fail("pack", Status::InvalidArgument(where + ": expected key<TAB>value"));
    }
    const std::string_view digits = std::string_view(line).substr(tab + 1);
    uint64_t value = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
      return Fail("pack", Status::InvalidArgument(where + ": value '" + std::string(digits) +
                                                  "' is not a decimal uint64"));
    }
    Result<std::string> key = ArgKey(line.substr(0, tab), a.hex);
    if (!key.ok()) return Fail("pack", key.status().WithContext(where));
    Status st = packer->Add(*key, value);
    if (!st.ok()) return Fail("pack", st.WithContext(where));
  }
  if (in->bad()) return Fail("pack", Status::IOError(in_name + ": read error"));
  Status st = packer->Finish();
  if (!st.ok()) return Fail("pack", st);
  return 0;
}

int RunGet(const KeykaArgs& a) {
  Result<keyka::Reader> reader = OpenReader(a.file);
  if (!reader.ok()) return Fail("get", reader.status());
  Result<std::string> key = ArgKey(a.key, a.hex);
  if (!key.ok()) return Fail("get", key.status());
  Result<uint64_t> value = reader->Get(*key);
  if (!value.ok()) return Fail("get", value.status());
  PrintPair(*key, *value, a.hex);
  return Flushed("get");
}

int RunNearest(const KeykaArgs& a) {
  Result<keyka::Reader> reader = OpenReader(a.file);
  if (!reader.ok()) return Fail("nearest", reader.status());
  Result<std::string> key = ArgKey(a.key, a.hex);
  if (!key.ok()) return Fail("nearest", key.status());
  keyka::Nearest dir = keyka::Nearest::kGe;
  if (a.gt) dir = keyka::Nearest::kGt;
  if (a.le) dir = keyka::Nearest::kLe;
  if (a.lt) dir = keyka::Nearest::kLt;
  Result<keyka::Entry> entry = reader->Find(*key, dir);
  if (!entry.ok()) return Fail("nearest", entry.status());
  PrintPair(entry->key, entry->value, a.hex);
  return Flushed("nearest");
}

// Prints every pair of `it`, forward or (with --reverse) backward.
int PrintScan(const std::string& command, keyka::Iterator it, const KeykaArgs& a) {
  if (a.reverse) {
    for (it.SeekToLast(); it.Valid(); it.Prev()) PrintPair(it.key(), it.value(), a.hex);
  } else {
    for (; it.Valid(); it.Next()) PrintPair(it.key(), it.value(), a.hex);
  }
  if (!it.status().ok()) {
    std::fflush(stdout);
    return Fail(command, it.status());
  }
  return Flushed(command);
}

int RunRange(const KeykaArgs& a) {
  Result<keyka::Reader> reader = OpenReader(a.file);
  if (!reader.ok()) return Fail("range", reader.status());
  Result<std::string> from = ArgKey(a.key, a.hex);
  if (!from.ok()) return Fail("range", from.status());
  Result<std::string> to = ArgKey(a.to, a.hex);
  if (!to.ok()) return Fail("range", to.status());
  return PrintScan("range", reader->Range(*from, *to), a);
}

int RunPrefix(const KeykaArgs& a) {
  Result<keyka::Reader> reader = OpenReader(a.file);
  if (!reader.ok()) return Fail("prefix", reader.status());
  Result<std::string> prefix = ArgKey(a.key, a.hex);
  if (!prefix.ok()) return Fail("prefix", prefix.status());
  return PrintScan("prefix", reader->Prefix(*prefix), a);
}

int RunDump(const KeykaArgs& a) {
  Result<keyka::Reader> reader = OpenReader(a.file);
  if (!reader.ok()) return Fail("dump", reader.status());
  keyka::Iterator it = reader->All();
  for (; it.Valid(); it.Next()) {
    if (!a.hex && it.key().find('\n') != std::string_view::npos) {
      std::fflush(stdout);
      return Fail("dump", Status::InvalidArgument(a.file + ": a key holds a newline, which a "
                                                           "text line cannot carry; use --hex"));
    }
    PrintPair(it.key(), it.value(), a.hex);
  }
  if (!it.status().ok()) {
    std::fflush(stdout);
    return Fail("dump", it.status());
  }
  return Flushed("dump");
}

int RunVerify(const KeykaArgs& a) {
  Result<keyka::Reader> reader = OpenReader(a.file);
  if (!reader.ok()) return Fail("verify", reader.status());
  keyka::Stats stats;
  Status st = reader->Verify(&stats);
  if (!st.ok()) return Fail("verify", st);
  std::printf("%s: OK, %llu keys, depth %d\n", a.file.c_str(),
              static_cast<unsigned long long>(stats.keys), stats.depth);
  return Flushed("verify");
}

int RunStats(const KeykaArgs& a) {
  Result<keyka::Reader> reader = OpenReader(a.file);
  if (!reader.ok()) return Fail("stats", reader.status());
  keyka::Stats s;
  Status st = reader->Verify(&s);
  auto row = [](const char* name, uint64_t v) {
    std::printf("%s\t%llu\n", name, static_cast<unsigned long long>(v));
  };
  row("file_bytes", s.file_size);
  row("keys", s.keys);
  row("leaves", s.leaves);
  row("branches", s.branches);
  row("depth", static_cast<uint64_t>(s.depth));
  row("key_bytes", s.key_bytes);
  row("min_key_bytes", s.min_key_size);
  row("max_key_bytes", s.max_key_size);
  std::printf("mean_key_bytes\t%.1f\n", s.keys == 0 ? 0.0 : double(s.key_bytes) / double(s.keys));
  std::printf("bytes_per_key\t%.1f\n", s.keys == 0 ? 0.0 : double(s.file_size) / double(s.keys));
  if (!st.ok()) {
    std::fflush(stdout);
    return Fail("stats", st.WithContext("figures cover only the nodes before the damage"));
  }
  return Flushed("stats");
}

}  // namespace

void AddKeykaCommand(CLI::App& parent, int* exit_code) {
  auto* keyka = parent.add_subcommand("keyka", "KeyKa v0 file tools");
  keyka->require_subcommand(1);
  // Shared by the callbacks, which CLI11 keeps as copyable std::function.
  auto args = std::make_shared<KeykaArgs>();

  auto add = [&](const char* name, const char* help, int (*run)(const KeykaArgs&),
                 bool takes_keys = true) {
    CLI::App* sub = keyka->add_subcommand(name, help);
    if (takes_keys) sub->add_flag("--hex", args->hex, "keys are hex (for binary keys)");
    sub->callback([args, run, exit_code] { *exit_code = run(*args); });
    return sub;
  };

  CLI::App* pack = add("pack", "write a KeyKa file from key<TAB>value lines (sorted)", RunPack);
  pack->add_option("out", args->file, "the KeyKa file to write")->required();
  pack->add_option("in", args->input, "TSV input; '-' or absent for stdin");

  CLI::App* get = add("get", "print the pair of KEY", RunGet);
  get->add_option("file", args->file, "KeyKa file")->required();
  get->add_option("key", args->key, "the key")->required();

  CLI::App* range = add("range", "print the pairs with FROM <= key < TO", RunRange);
  range->add_option("file", args->file, "KeyKa file")->required();
  range->add_option("from", args->key, "first key (inclusive)")->required();
  range->add_option("to", args->to, "end key (exclusive)")->required();
  range->add_flag("--reverse", args->reverse, "print from the last key down");

  CLI::App* prefix = add("prefix", "print the pairs whose key starts with PREFIX", RunPrefix);
  prefix->add_option("file", args->file, "KeyKa file")->required();
  prefix->add_option("prefix", args->key, "the key prefix")->required();
  prefix->add_flag("--reverse", args->reverse, "print from the last key down");

  CLI::App* nearest = add("nearest", "print the nearest pair to KEY in one direction", RunNearest);
  nearest->add_option("file", args->file, "KeyKa file")->required();
  nearest->add_option("key", args->key, "the key")->required();
  CLI::Option_group* dir = nearest->add_option_group("direction", "exactly one of");
  dir->add_flag("--ge", args->ge, "first key >= KEY");
  dir->add_flag("--gt", args->gt, "first key > KEY");
  dir->add_flag("--le", args->le, "last key <= KEY");
  dir->add_flag("--lt", args->lt, "last key < KEY");
  dir->require_option(1);

  CLI::App* dump = add("dump", "print every pair, in the form pack reads", RunDump);
  dump->add_option("file", args->file, "KeyKa file")->required();

  CLI::App* verify =
      add("verify", "check every node; exit 0 only if the file is sound", RunVerify, false);
  verify->add_option("file", args->file, "KeyKa file")->required();

  CLI::App* stats = add("stats", "print the number of keys, tree depth and sizes", RunStats, false);
  stats->add_option("file", args->file, "KeyKa file")->required();
}

}  // namespace komoku::app
