#include "app/import_cli.h"

#include <fnmatch.h>
#include <httplib.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "app/config.h"
#include "app/ha_recorder.h"
#include "app/store_cli.h"
#include "store/store.h"
#include "wire/import_format.h"
#include "wire/time_param.h"

namespace komoku::app {
namespace {

// Changes handed to the store at once: large enough that a batch's fixed
// costs vanish, small enough that a refused row (which makes the batch be
// handed again without it) costs little.
constexpr size_t kBatchRows = 100000;
// Rows older than the hot window gathered for Store::ImportCold at once:
// each hand-over rewrites the segments its rows touch, so the more at once
// the fewer rewrites. Measured 207 MB of peak memory at a million
// (bench/import_bench, docs/benchmarks.md), so a row costs about this much.
constexpr int64_t kColdRowBytes = 210;

size_t DefaultColdRows() {
  std::ifstream meminfo("/proc/meminfo");
  return ColdRowsFor(MemAvailableBytes(meminfo));
}
}  // namespace

int64_t MemAvailableBytes(std::istream& meminfo) {
  std::string line;
  while (std::getline(meminfo, line)) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    // "MemAvailable:   761234 kB"
    const long long kb = std::atoll(line.c_str() + 13);
    return kb > 0 ? static_cast<int64_t>(kb) * 1024 : 0;
  }
  return 0;
}

size_t ColdRowsFor(int64_t available_bytes) {
  if (available_bytes <= 0) return kColdRowsMax;
  return std::clamp<size_t>(static_cast<size_t>(available_bytes / 4 / kColdRowBytes), kColdRowsMin,
                            kColdRowsMax);
}

namespace {

// Bad rows named one by one; past this only counted.
constexpr int64_t kMaxReportedErrors = 1000;

std::string Thousands(uint64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

std::shared_ptr<spdlog::logger> StderrLogger(const char* command) {
  auto log =
      std::make_shared<spdlog::logger>("store", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  log->set_pattern(std::string("komoku ") + command + ": %v");
  return log;
}

store::StoreOptions QuietStoreOptions(const Config& config) {
  store::StoreOptions options = StoreOptionsOf(config);
  options.start_timers = false;  // an uptime key's timeout is the service's to record
  options.cold.compact_interval = std::chrono::milliseconds(0);
  options.cold.background = false;
  return options;
}

// Who holds the data directory: what the service wrote into the lock file.
std::string LockHolder(const Config& config) {
  const std::string path = store::Store::LockPath(config.store_data_dir);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json who = nlohmann::json::parse(text.str(), nullptr, false);
  std::string holder = "a running komoku";
  if (who.is_object() && who.contains("pid")) {
    holder += " (pid " + who["pid"].dump();
    if (who.value("http_port", 0) > 0) {
      holder += ", HTTP on " + who.value("http_host", std::string("?")) + ":" +
                std::to_string(who.value("http_port", 0));
    }
    holder += ")";
  }
  return holder + ", which holds " + path;
}

struct ImportArgs {
  std::string file;
  std::string format;     // "" -> from the file name
  std::string precision;  // line protocol's timestamps
  bool no_cold = false;   // every row through the hot store
  size_t cold_rows = 0;   // rows per hand-over to ImportCold; 0: DefaultColdRows()
};

// The import's state: the keys' types and newest times as the store has
// them and as this import changes them, the batch being gathered and the
// counts.
class Importer {
 public:
  // Rows older than `cold_before` go straight into segments
  // (Store::ImportCold); INT64_MIN: none.
  Importer(store::Store& store, std::string file, int64_t cold_before, size_t cold_rows)
      : store_(store), file_(std::move(file)), cold_before_(cold_before), cold_rows_(cold_rows) {
    for (const store::KeyInfo& k : store.Keys()) {
      Known& known = keys_[k.name];
      known.ordinal = keys_.size();
      known.type = k.type;
      known.resolution_ms = k.options.same_value_resolution_ms;
      if (k.last) known.newest_ms = k.last->time_ms;
    }
  }

  // Checks one row and adds it to the batch, or names it as refused.
  void Add(store::ImportRow&& row, int64_t line) {
    ++read_;
    if (row.time_ms > now_ms_ + 24 * 3600 * 1000) {
      return Refuse(line, Status::InvalidArgument(store::QuoteForMessage(row.key) + ": time " +
                                                  std::to_string(row.time_ms) +
                                                  " ms is more than a day in the future"));
    }
    auto it = keys_.find(row.key);
    const bool is_new = it == keys_.end();
    if (is_new) {
      if (Status name = store::ValidateKeyName(row.key); !name.ok()) return Refuse(line, name);
    }
    const store::KeyType type = !is_new    ? it->second.type
                                : row.type ? *row.type
                                           : store::GuessType(row.value);
    Result<store::Value> value = store::CoerceValue(type, row.value, store_.boolean_words());
    if (!value.ok()) {
      return Refuse(line, value.status().WithContext(store::QuoteForMessage(row.key) + " (" +
                                                     store::KeyTypeName(type) + ")"));
    }
    if (is_new) {
      it = keys_.emplace(row.key, Known{}).first;
      it->second.type = type;
      it->second.ordinal = keys_.size();
    }
    Known& known = it->second;
    if (row.time_ms < cold_before_) {
      // Old: merged with the segments' history by the store itself.
      if (!known.newest_ms || row.time_ms > *known.newest_ms) known.newest_ms = row.time_ms;
      known.cold_gen = cold_gen_;
      cold_min_ms_ = std::min(cold_min_ms_, row.time_ms);
      // The value as converted already (a number parsed once).
      cold_.push_back({std::move(row.key), row.time_ms, std::move(value.value()), type});
      cold_lines_.push_back(line);
      if (cold_.size() >= cold_rows_) FlushCold(/*last=*/false);
      return;
    }
    if (known.newest_ms && row.time_ms < *known.newest_ms) {
      // A late change: look at what history holds at its time, which must
      // include what this import put before it. Old rows gathered for the
      // segments count only within same_value_resolution of their end.
      if (known.cold_gen == cold_gen_ && row.time_ms - cold_before_ < known.resolution_ms) {
        FlushCold(/*last=*/false);
      }
      if (known.put_by_import) Flush(/*wait=*/true);
      Result<std::optional<store::Sample>> at = store_.At(row.key, row.time_ms);
      if (at.ok() && *at && (*at)->value == *value &&
          ((*at)->time_ms == row.time_ms || row.time_ms - (*at)->time_ms < known.resolution_ms)) {
        ++already_;  // stored already, or a repeat of the value then in force
        return;
      }
    }
    if (!known.newest_ms || row.time_ms > *known.newest_ms) known.newest_ms = row.time_ms;
    known.put_by_import = true;
    row.type = type;  // the key may not be created yet (its first rows went cold)
    batch_.push_back(std::move(row));
    lines_.push_back(line);
    ordinals_.push_back(known.ordinal);
    if (batch_.size() >= kBatchRows) Flush(/*wait=*/false);
  }

  // Hands the batch to the store. With `wait`, returns once everything put
  // so far is committed; else once the batch before this one is (so at
  // most two batches wait in memory).
  // Hands the old rows gathered to the store; `last`: the import's last
  // hand-over, which also writes the days no row touched (as compaction
  // writes every day) from the oldest row on.
  void FlushCold(bool last) {
    if (cold_.empty() && !(last && cold_min_ms_ != INT64_MAX)) return;
    if (!fatal_.ok()) return;
    store::ColdImportOptions options;
    if (last) options.fill_from_ms = cold_min_ms_;
    if (tty_) {
      std::cerr << "\r\033[Kkomoku import: writing " << Thousands(cold_.size())
                << " rows into cold segments" << std::flush;
    }
    Result<store::ColdImportReport> done = store_.ImportCold(cold_, options);
    if (!done.ok()) {
      fatal_ = done.status();
    } else {
      stored_ += done->stored;
      already_ += done->already;
      for (const auto& [index, why] : done->refused) Refuse(cold_lines_[index], why);
    }
    cold_.clear();
    cold_lines_.clear();
    ++cold_gen_;
  }
  bool used_cold() const { return cold_min_ms_ != INT64_MAX; }

  void Flush(bool wait) {
    SortBatchByKey();
    while (!batch_.empty()) {
      std::vector<store::Store::KeyPut> puts;
      puts.reserve(batch_.size());
      for (const store::ImportRow& r : batch_) {
        store::Store::KeyPut p;
        p.key = r.key;
        p.value = &r.value;
        p.options.time_ms = r.time_ms;
        p.options.wait_committed = false;
        p.options.skip_duplicate = true;
        p.options.new_key_type = r.type;
        puts.push_back(p);
      }
      size_t refused = puts.size();
      Result<std::vector<store::Change>> done = store_.PutAll(puts, &refused);
      if (done.ok()) {
        for (const store::Change& c : *done) {
          if (c.duplicate || !c.stored) {
            ++already_;
          } else {
            ++stored_;
          }
        }
        batch_.clear();
        lines_.clear();
        break;
      }
      if (refused >= batch_.size() || !store_.WriteHealth().ok()) {
        // Not one row's fault (a full disk, a failed commit, a closing
        // store): nothing more can go in.
        fatal_ = done.status();
        batch_.clear();
        lines_.clear();
        break;
      }
      Refuse(lines_[refused], done.status());
      batch_.erase(batch_.begin() + static_cast<std::ptrdiff_t>(refused));
      lines_.erase(lines_.begin() + static_cast<std::ptrdiff_t>(refused));
    }
    const uint64_t mark = store_.CommitMark();
    if (wait) {
      while (!store_.WaitCommittedFor(mark, std::chrono::seconds(1))) {
        if (!store_.WriteHealth().ok()) break;
      }
    } else if (previous_mark_) {
      while (!store_.WaitCommittedFor(previous_mark_, std::chrono::seconds(1))) {
        if (!store_.WriteHealth().ok()) break;
      }
    }
    previous_mark_ = mark;
  }

  // The hot store writes a batch's rows in the order they are put: with
  // each key's rows together (a stable sort keeps them in the file's order)
  // its index takes them a page at a time instead of a page a row, which
  // made an import of 1,000 interleaved sensors several times faster
  // (docs/benchmarks.md, "Import").
  void SortBatchByKey() {
    std::vector<size_t> order(batch_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return ordinals_[a] < ordinals_[b]; });
    ordinals_.clear();
    std::vector<store::ImportRow> rows;
    std::vector<int64_t> lines;
    rows.reserve(order.size());
    lines.reserve(order.size());
    for (size_t i : order) {
      rows.push_back(std::move(batch_[i]));
      lines.push_back(lines_[i]);
    }
    batch_.swap(rows);
    lines_.swap(lines);
  }

  void Refuse(int64_t line, const Status& why) {
    if (++refused_ <= kMaxReportedErrors) {
      std::cerr << (tty_ ? "\r\033[K" : "") << where_ << ":" << line << ": " << why.message()
                << "\n";
    } else if (refused_ == kMaxReportedErrors + 1) {
      std::cerr << file_ << ": more refused rows; only counted from here\n";
    }
  }

  const Status& fatal() const { return fatal_; }
  uint64_t read() const { return read_; }
  uint64_t stored() const { return stored_; }
  uint64_t already() const { return already_; }
  uint64_t refused() const { return static_cast<uint64_t>(refused_); }
  void set_tty(bool tty) { tty_ = tty; }
  // What a refused row's number is counted in: the file (its line), or a
  // recorder database's table (its row id).
  void set_where(std::string where) { where_ = std::move(where); }

 private:
  struct Known {
    store::KeyType type = store::KeyType::kNumeric;
    int64_t resolution_ms = store::KeyOptions{}.same_value_resolution_ms;
    std::optional<int64_t> newest_ms;  // the newest change stored or put
    bool put_by_import = false;
    size_t ordinal = 0;  // a number of its own, to sort a batch by key
    uint64_t cold_gen = 0;
  };

  store::Store& store_;
  const std::string file_;
  const int64_t cold_before_;
  const size_t cold_rows_;
  std::vector<store::ColdImportRow> cold_;
  std::vector<int64_t> cold_lines_;
  uint64_t cold_gen_ = 1;  // a key with cold_gen == this has rows in cold_
  int64_t cold_min_ms_ = INT64_MAX;
  std::string where_ = file_;
  const int64_t now_ms_ = store_.clock().NowMs();
  std::unordered_map<std::string, Known> keys_;
  std::vector<store::ImportRow> batch_;
  std::vector<int64_t> lines_;
  std::vector<size_t> ordinals_;  // of each row's key, while it is gathered
  uint64_t previous_mark_ = 0;
  uint64_t read_ = 0, stored_ = 0, already_ = 0;
  int64_t refused_ = 0;
  Status fatal_;
  bool tty_ = false;
};

int Import(const Config& config, const ImportArgs& args) {
  const bool recorder =
      args.format == "ha" || (args.format.empty() && args.file != "-" && IsSqliteFile(args.file));
  std::optional<store::ImportFormat> format = recorder ? store::ImportFormat::kCsv  // not used
                                              : args.format.empty()
                                                  ? store::ImportFormatOfPath(args.file)
                                                  : store::ImportFormatNamed(args.format);
  std::optional<int64_t> ns_per_unit = store::LinePrecisionNamed(args.precision);
  if (!format || !ns_per_unit) {
    std::cerr << "komoku import: "
              << (!format ? "--format takes csv, tsv, line or ha"
                          : "--precision takes ns, us, ms or s")
              << "\n";
    return 2;
  }
  std::ifstream file;
  std::vector<char> buffer(1 << 20);
  file.rdbuf()->pubsetbuf(buffer.data(), static_cast<std::streamsize>(buffer.size()));
  std::istream* in = &std::cin;
  uint64_t size = 0;
  if (args.file != "-") {
    file.open(args.file, std::ios::binary);
    if (!file) {
      std::cerr << "komoku import: cannot read " << args.file << ": " << std::strerror(errno)
                << "\n";
      return 1;
    }
    std::error_code ec;
    size = std::filesystem::file_size(args.file, ec);
    in = &file;
  }
  Result<std::unique_ptr<store::Store>> opened =
      store::Store::Open(QuietStoreOptions(config), StderrLogger("import"));
  if (!opened.ok()) {
    if (opened.status().reason() == "locked") {
      std::cerr << "komoku import: " << config.store_data_dir << " is in use by "
                << LockHolder(config)
                << "; stop it first (systemctl stop komoku), import, then start it again\n";
    } else {
      std::cerr << "komoku import: " << opened.status().ToString() << "\n";
    }
    return 1;
  }
  store::Store& s = **opened;
  const bool tty = isatty(STDERR_FILENO) == 1;
  Importer importer(s, args.file, args.no_cold ? INT64_MIN : s.ColdImportBefore(),
                    args.cold_rows > 0 ? args.cold_rows : DefaultColdRows());
  importer.set_tty(tty);
  store::ImportReader reader(*in, *format, *ns_per_unit);
  std::vector<store::ImportRow> rows;
  Status error;
  int64_t line = 0;
  const auto start = std::chrono::steady_clock::now();
  auto last_shown = start;
  uint64_t records = 0;
  auto progress = [&](bool final) {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string pct;
    if (size > 0) {
      pct = " (" + std::to_string(std::min<uint64_t>(100, reader.bytes_read() * 100 / size)) + "%)";
    }
    std::fprintf(stderr, "\rkomoku import: %s: %s rows%s, %s rows/s\033[K%s", args.file.c_str(),
                 Thousands(importer.read() + importer.refused()).c_str(), pct.c_str(),
                 Thousands(static_cast<uint64_t>(secs > 0 ? importer.read() / secs : 0)).c_str(),
                 final ? "\n" : "");
    std::fflush(stderr);
  };
  if (recorder) {
    const char* table = nullptr;
    Status read = ReadRecorder(args.file, [&](store::ImportRow&& row, RecorderRef ref) {
      if (!importer.fatal().ok()) return;
      if (ref.table != table) {
        // Refused rows gathered so far are named by the table they came from.
        if (table) importer.FlushCold(/*last=*/false);
        table = ref.table;
        importer.set_where(args.file + ":" + table);
      }
      importer.Add(std::move(row), ref.id);
      if (tty && (++records & 4095) == 0) progress(false);
    });
    if (!read.ok()) {
      std::cerr << "komoku import: " << read.message() << "\n";
      s.Close();
      return 1;
    }
  }
  while (!recorder && importer.fatal().ok() && reader.Next(&rows, &error, &line)) {
    if (!error.ok()) {
      importer.Refuse(line, error);
      continue;
    }
    for (store::ImportRow& r : rows) importer.Add(std::move(r), line);
    if (tty && (++records & 4095) == 0) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last_shown >= std::chrono::milliseconds(200)) {
        progress(false);
        last_shown = now;
      }
    }
  }
  if (in->bad()) {
    std::cerr << "komoku import: reading " << args.file << " failed: " << std::strerror(errno)
              << "\n";
  }
  importer.FlushCold(/*last=*/true);
  importer.Flush(/*wait=*/true);
  if (importer.used_cold() && importer.fatal().ok()) {
    // Months merged and retention applied, as the service's next
    // compaction would: the store is left as compacted as after an import
    // through the hot store and a compaction.
    if (tty) std::cerr << "\r\033[Kkomoku import: compacting" << std::flush;
    Result<store::CompactionReport> compacted = s.Compact();
    if (!compacted.ok()) {
      std::cerr << "\nkomoku import: compaction after the import failed (the service's next "
                   "compaction tries again): "
                << compacted.status().ToString() << "\n";
    }
  }
  const Status health = s.WriteHealth();
  s.Close();
  if (tty) progress(true);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!importer.fatal().ok() || !health.ok()) {
    std::cerr << "komoku import: stopped: "
              << (!importer.fatal().ok() ? importer.fatal() : health).ToString() << "\n";
  }
  std::printf("%s: %s changes read in %.1f s: %s stored, %s already there, %s rows refused\n",
              args.file.c_str(), Thousands(importer.read()).c_str(), secs,
              Thousands(importer.stored()).c_str(), Thousands(importer.already()).c_str(),
              Thousands(importer.refused()).c_str());
  const bool failed = !importer.fatal().ok() || !health.ok() || in->bad();
  return failed || importer.refused() > 0 ? 1 : 0;
}

struct ExportArgs {
  std::string format = "csv";
  std::vector<std::string> keys;  // globs; empty: every key
  std::string from, to;
};

bool Selected(const std::vector<std::string>& globs, const std::string& key) {
  if (globs.empty()) return true;
  for (const std::string& g : globs) {
    if (::fnmatch(g.c_str(), key.c_str(), 0) == 0) return true;
  }
  return false;
}

// Writes rows to stdout in large pieces; counts what line protocol cannot
// hold.
class ExportWriter {
 public:
  explicit ExportWriter(bool line) : line_(line) {
    if (!line_) out_ = store::CsvExportHeader();
  }
  ~ExportWriter() { Drain(); }

  void Add(const std::string& key, store::KeyType type, const store::Sample& sample) {
    if (line_) {
      if (!store::AppendLineProtocolRow(key, type, sample, &out_)) {
        if (++unwritable_ <= kMaxReportedErrors) {
          std::cerr << "komoku export: " << store::QuoteForMessage(key) << " at " << sample.time_ms
                    << " ms: line protocol cannot hold a line break in a key "
                    << "or string (use --format=csv); left out\n";
        }
        return;
      }
    } else {
      store::AppendCsvRow(key, type, sample, &out_);
    }
    ++rows_;
    if (out_.size() >= (1 << 20)) Drain();
  }
  void Drain() {
    std::fwrite(out_.data(), 1, out_.size(), stdout);
    out_.clear();
  }
  uint64_t rows() const { return rows_; }
  int64_t unwritable() const { return unwritable_; }

 private:
  const bool line_;
  std::string out_;
  uint64_t rows_ = 0;
  int64_t unwritable_ = 0;
};

// History from a running service over its HTTP API (GET /api/v1/keys and
// /api/v1/history), a range at a time: a range with more changes than the
// service answers at once (http.max_points) is halved until it fits.
int ExportOverHttp(const Config& config, const ExportArgs& args, int64_t from_ms, int64_t to_ms,
                   ExportWriter& writer) {
  const ServiceAddress address = RunningServiceAddress(config);
  httplib::Client client(address.host, address.port);
  client.set_read_timeout(300, 0);
  if (!config.http_token.empty()) client.set_bearer_token_auth(config.http_token);
  httplib::Result got = client.Get("/api/v1/keys");
  if (!got || got->status != 200) {
    std::cerr << "komoku export: " << config.store_data_dir
              << " is in use by a running komoku whose HTTP API at " << address.host << ":"
              << address.port << " does not answer "
              << (got ? std::to_string(got->status) + " " + got->body
                      : httplib::to_string(got.error()))
              << "\n";
    return 1;
  }
  nlohmann::json keys = nlohmann::json::parse(got->body, nullptr, false);
  if (!keys.is_object() || !keys["keys"].is_array()) {
    std::cerr << "komoku export: GET /api/v1/keys answered no key list\n";
    return 1;
  }
  auto seconds = [](int64_t ms) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%lld.%03lld", static_cast<long long>(ms / 1000),
                  static_cast<long long>(ms % 1000));
    return std::string(buf);
  };
  for (const auto& k : keys["keys"]) {
    const std::string key = k.value("key", "");
    if (!Selected(args.keys, key)) continue;
    Result<store::KeyType> type = store::ParseKeyType(k.value("type", ""));
    if (!type.ok()) {
      std::cerr << "komoku export: key " << key << ": " << type.status().message() << "\n";
      return 1;
    }
    // Ranges still to fetch, the earliest last.
    std::vector<std::pair<int64_t, int64_t>> todo{{from_ms, to_ms}};
    while (!todo.empty()) {
      auto [a, b] = todo.back();
      todo.pop_back();
      httplib::Params params{{"key", key}, {"from", seconds(a)}, {"to", seconds(b)}};
      httplib::Result h = client.Get("/api/v1/history", params, httplib::Headers{});
      if (h && h->status == 400 && h->body.find("more than") != std::string::npos && b - a > 1) {
        const int64_t mid = a + (b - a) / 2;
        todo.emplace_back(mid, b);
        todo.emplace_back(a, mid);
        continue;
      }
      if (!h || h->status != 200) {
        std::cerr << "komoku export: history of " << key << ": "
                  << (h ? std::to_string(h->status) + " " + h->body : httplib::to_string(h.error()))
                  << "\n";
        return 1;
      }
      nlohmann::json body = nlohmann::json::parse(h->body, nullptr, false);
      if (!body.is_object() || !body["rows"].is_array()) {
        std::cerr << "komoku export: history of " << key << ": no rows in the answer\n";
        return 1;
      }
      for (const auto& row : body["rows"]) {
        store::Sample s;
        s.time_ms = std::llround(row[0].get<double>() * 1000.0);
        if (row[1].is_boolean()) {
          s.value = row[1].get<bool>();
        } else if (row[1].is_number()) {
          s.value = row[1].get<double>();
        } else {
          s.value = row[1].get<std::string>();
        }
        writer.Add(key, *type, s);
      }
    }
  }
  return 0;
}

int Export(const Config& config, const ExportArgs& args) {
  if (args.format != "csv" && args.format != "line") {
    std::cerr << "komoku export: --format takes csv or line\n";
    return 2;
  }
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  int64_t from_ms = 0;
  int64_t to_ms = now + 24 * 3600 * 1000 + 1;  // the store takes nothing later
  for (auto [text, out] : {std::pair{&args.from, &from_ms}, std::pair{&args.to, &to_ms}}) {
    if (text->empty()) continue;
    Result<int64_t> t = store::ParseTimeParam(*text, now);
    if (!t.ok()) {
      std::cerr << "komoku export: " << t.status().message() << "\n";
      return 2;
    }
    *out = *t;
  }
  ExportWriter writer(args.format == "line");
  Result<std::unique_ptr<store::Store>> opened =
      store::Store::Open(QuietStoreOptions(config), StderrLogger("export"));
  int rc = 0;
  if (!opened.ok() && opened.status().reason() == "locked") {
    rc = ExportOverHttp(config, args, from_ms, to_ms, writer);
  } else if (!opened.ok()) {
    std::cerr << "komoku export: " << opened.status().ToString() << "\n";
    return 1;
  } else {
    store::Store& s = **opened;
    for (const store::KeyInfo& k : s.Keys()) {
      if (!Selected(args.keys, k.name)) continue;
      Status st = s.Scan(k.name, from_ms, to_ms, [&](const store::Sample& sample) {
        writer.Add(k.name, k.type, sample);
        return true;
      });
      if (!st.ok()) {
        std::cerr << "komoku export: " << k.name << ": " << st.ToString() << "\n";
        rc = 1;
      }
    }
    s.Close();
  }
  writer.Drain();
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::cerr << "komoku export: writing failed: " << std::strerror(errno) << "\n";
    return 1;
  }
  std::cerr << "komoku export: " << Thousands(writer.rows()) << " changes written\n";
  return rc != 0 || writer.unwritable() > 0 ? 1 : 0;
}

}  // namespace

void AddImportCommands(CLI::App& parent, int* exit_code) {
  static std::string config_path;
  static ImportArgs import_args;
  static ExportArgs export_args;
  auto with_config = [exit_code](std::function<int(const Config&)> fn, bool need_dir) {
    return [exit_code, fn = std::move(fn), need_dir] {
      const std::string path = config_path.empty() ? FindInstalledConfig() : config_path;
      Result<Config> config = LoadConfigOrDefaults(path);
      if (!config.ok()) {
        std::cerr << "komoku: " << config.status().message() << "\n";
        *exit_code = 2;
        return;
      }
      std::error_code ec;
      if (need_dir && !std::filesystem::is_directory(config->store_data_dir, ec)) {
        std::cerr << "komoku: no data directory at " << config->store_data_dir << " (from "
                  << (path.empty() ? std::string("the built-in defaults") : path)
                  << "); give the service's configuration with -c\n";
        *exit_code = 1;
        return;
      }
      *exit_code = fn(*config);
    };
  };
  const char* kConfigHelp =
      "YAML configuration (default: /etc/komoku/komoku.yaml, else ./config/komoku.yaml)";
  import_args.precision = "ns";
  auto* imp = parent.add_subcommand(
      "import",
      "Import history from a CSV/TSV (key,time,value[,type]) or InfluxDB line-protocol file, or a "
      "Home Assistant recorder database, into the stopped service's data directory; exit 1 "
      "when a row was refused");
  imp->add_option("FILE", import_args.file, "The file ('-': standard input)")->required();
  imp->add_option(
      "--format", import_args.format,
      "csv, tsv, line or ha (a Home Assistant recorder database; default: from the file: "
      "an SQLite database is ha, else by name: .tsv, .lp/.line, else csv; csv also reads "
      "InfluxDB's CLI export, influx -format csv)");
  imp->add_option("--precision", import_args.precision,
                  "Line protocol's timestamp unit: ns (default), us, ms or s");
  imp->add_flag("--no-cold", import_args.no_cold,
                "Put every row through the hot store, old rows too (by default rows older "
                "than the hot window go straight into cold segments)");
  imp->add_option("--cold-rows", import_args.cold_rows,
                  "Old rows gathered before they are written into segments (about 210 bytes of "
                  "memory each; default: as many as a quarter of the available memory holds, "
                  "at most 1,000,000)")
      ->check(CLI::Range(size_t{1}, size_t{100000000}));
  imp->add_option("-c,--config", config_path, kConfigHelp);
  // The data directory may be new: an import into an empty one makes it.
  imp->callback(with_config([](const Config& c) { return Import(c, import_args); }, false));

  auto* exp = parent.add_subcommand(
      "export", "Write history as CSV or InfluxDB line protocol to standard output");
  exp->add_option("--format", export_args.format, "csv (default) or line");
  exp->add_option("--key", export_args.keys,
                  "Keys to export, a glob ('*' matches '/' too); repeatable (default: every key)");
  exp->add_option("--from", export_args.from,
                  "From this time (epoch s, ISO 8601, -30d; default: "
                  "the beginning)");
  exp->add_option("--to", export_args.to, "Up to (not including) this time (default: the end)");
  exp->add_option("-c,--config", config_path, kConfigHelp);
  exp->callback(with_config([](const Config& c) { return Export(c, export_args); }, true));
}

}  // namespace komoku::app
