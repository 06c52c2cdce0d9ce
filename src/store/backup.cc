// Backup and restore (backup.h). Store::Backup lives here too, beside the
// format it writes.
#include "store/backup.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "cold/cold_store.h"
#include "common/fd.h"
#include "common/files.h"
#include "store/store.h"

namespace komoku::store {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int kBackupFormat = 1;
constexpr const char* kDb = "komoku.db";
constexpr const char* kSegments = "segments";
constexpr const char* kManifest = "MANIFEST";

Status Errno(const std::string& what, const std::string& path, int err) {
  return Status::IOError(what + " " + path + ": " + std::strerror(err));
}

Status SyncPath(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open", path, errno);
  Status st;
  if (::fsync(fd) != 0) st = Errno("fsync", path, errno);
  ::close(fd);
  return st;
}

// Copies `from` to a new file `to` (which must not exist), synced if asked.
Status CopyFile(const std::string& from, const std::string& to, bool sync) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Errno("open", from, errno);
  const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) {
    const int err = errno;
    ::close(in);
    return Errno("create", to, err);
  }
  Status st;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(in, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      st = Errno("read", from, errno);
      break;
    }
    if (n == 0) break;
    ssize_t done = 0;
    while (done < n) {
      const ssize_t w = ::write(out, buf + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        st = Errno("write", to, errno);
        break;
      }
      done += w;
    }
    if (!st.ok()) break;
  }
  if (st.ok() && sync && ::fsync(out) != 0) st = Errno("fsync", to, errno);
  ::close(in);
  ::close(out);
  return st;
}

// Writes `text` to a new file `path`, synced if asked.
Status WriteNewFile(const std::string& path, const std::string& text, bool sync) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("create", path, errno);
  Status st;
  size_t done = 0;
  while (st.ok() && done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) st = Errno("write", path, errno);
    if (n > 0) done += static_cast<size_t>(n);
  }
  if (st.ok() && sync && ::fsync(fd) != 0) st = Errno("fsync", path, errno);
  ::close(fd);
  return st;
}

// Creates `dir`, or accepts it empty; anything in it is refused, so a
// backup never mixes with other files.
Status PrepareEmptyDir(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) return Status::InvalidArgument(dir + " is not a directory");
    if (!fs::is_empty(dir, ec)) {
      return Status::InvalidArgument(dir + " is not empty; a backup goes into a new directory");
    }
    return Status::Ok();
  }
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create " + dir + ": " + ec.message());
  return Status::Ok();
}

// The segment names a MANIFEST's text lists, or why they cannot be read.
Result<std::vector<std::string>> ManifestSegments(const std::string& path,
                                                  const std::string& text) {
  json m = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!m.is_object() || !m.contains("segments") || !m["segments"].is_array()) {
    return Status::Corruption(path + ": not a cold store MANIFEST (no segment list)");
  }
  std::vector<std::string> names;
  for (const json& s : m["segments"]) {
    if (!s.is_string() || s.get<std::string>().empty() ||
        s.get<std::string>().find('/') != std::string::npos) {
      return Status::Corruption(path + ": bad segment name " + s.dump());
    }
    names.push_back(s.get<std::string>());
  }
  return names;
}

// Copies the hot store's database at `from` into the new file `to` with
// SQLite's online backup API, in one step: one read transaction, so the copy
// is the database as one commit left it, and in WAL mode writers go on. The
// copy is switched out of WAL mode, so that it is one self-contained file
// (the Store switches it back at open). Returns its highest sequence number.
Result<uint64_t> BackupDatabase(const std::string& from, const std::string& to) {
  sqlite3* src = nullptr;
  sqlite3* dst = nullptr;
  struct Closer {
    sqlite3** a;
    sqlite3** b;
    ~Closer() {
      sqlite3_close_v2(*a);
      sqlite3_close_v2(*b);
    }
  } closer{&src, &dst};
  if (sqlite3_open_v2(from.c_str(), &src, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    return Status::IOError("cannot open " + from + ": " + sqlite3_errmsg(src));
  }
  sqlite3_busy_timeout(src, 60000);
  if (sqlite3_open_v2(to.c_str(), &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    return Status::IOError("cannot create " + to + ": " + sqlite3_errmsg(dst));
  }
  sqlite3_backup* b = sqlite3_backup_init(dst, "main", src, "main");
  if (b == nullptr) return Status::IOError("cannot back up " + from + ": " + sqlite3_errmsg(dst));
  int rc;
  do {
    rc = sqlite3_backup_step(b, -1);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) sqlite3_sleep(50);
  } while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
  sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) {
    return Status::IOError("cannot back up " + from + " to " + to + ": " + sqlite3_errstr(rc));
  }
  if (sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return Status::IOError("cannot leave WAL mode in " + to + ": " + sqlite3_errmsg(dst));
  }
  sqlite3_stmt* stmt = nullptr;
  uint64_t seq = 0;
  const char* sql =
      "SELECT max((SELECT coalesce(max(rowid), 0) FROM changes), "
      "(SELECT coalesce(max(rowid), 0) FROM recent))";
  if (sqlite3_prepare_v2(dst, sql, -1, &stmt, nullptr) != SQLITE_OK) {
    return Status::Corruption(to + ": " + sqlite3_errmsg(dst));
  }
  if (sqlite3_step(stmt) == SQLITE_ROW) seq = static_cast<uint64_t>(sqlite3_column_int64(stmt, 0));
  sqlite3_finalize(stmt);
  return seq;
}

// Writes SHA256SUMS (last, through a temporary file and a rename) for
// `files`, relative to `dir`.
Status WriteSums(const std::string& dir, const std::vector<std::string>& files, bool sync,
                 uint64_t* bytes) {
  std::string text;
  for (const std::string& f : files) {
    const std::string path = (fs::path(dir) / f).string();
    Result<std::string> sum = Sha256OfFile(path);
    if (!sum.ok()) return sum.status();
    std::error_code ec;
    *bytes += fs::file_size(path, ec);
    text += *sum + "  " + f + "\n";
  }
  const std::string path = (fs::path(dir) / kBackupSums).string();
  if (sync) return WriteFileAtomically(path, text);
  const std::string tmp = path + ".tmp";
  KOMOKU_RETURN_IF_ERROR(WriteNewFile(tmp, text, false));
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return Errno("rename to", path, errno);
  return Status::Ok();
}

}  // namespace

Result<std::string> Sha256OfFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound(path + " is missing");
    return Errno("open", path, errno);
  }
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    ::close(fd);
    return Status::IOError("cannot compute SHA-256 of " + path + ": OpenSSL failed");
  }
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Errno("read", path, err);
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buf, static_cast<size_t>(n));
  }
  ::close(fd);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[md[i] >> 4];
    hex += kHex[md[i] & 15];
  }
  return hex;
}

Result<BackupReport> Store::Backup(const BackupOptions& options) {
  if (options.dir.empty()) return Status::InvalidArgument("no backup directory given");
  KOMOKU_RETURN_IF_ERROR(PrepareEmptyDir(options.dir));
  BackupReport report;
  report.dir = options.dir;
  const fs::path out(options.dir);
  const fs::path data_dir = fs::path(db_path_).parent_path();
  const fs::path cold_dir(cold_->options().dir);
  std::error_code ec;
  fs::create_directories(out / kSegments, ec);
  if (ec)
    return Status::IOError("cannot create " + (out / kSegments).string() + ": " + ec.message());

  // No compaction commits while the backup runs, so the MANIFEST read
  // here stays the live one and the hot store's snapshot below, taken after
  // it, holds every change it does not (the rows it made cold and the
  // snapshot still has are deleted at open, as after any compaction). Puts
  // go on: they do not take compact_mu_ (a key deletion with cold history
  // waits).
  std::unique_lock<std::mutex> compact(compact_mu_);
  // Every change accepted before the backup began is in it: commit them
  // first (the writer commits in groups, within milliseconds).
  KOMOKU_RETURN_IF_ERROR(WaitCommitted(CommitMark()));
  const std::string manifest = (cold_dir / kManifest).string();
  std::vector<std::string> segment_files;
  // A quarantine (which does not take compact_mu_) may rewrite the MANIFEST
  // and move a listed file away between reading and linking: read again.
  for (int attempt = 0;; ++attempt) {
    for (const std::string& f : segment_files) fs::remove(out / f, ec);
    segment_files.clear();
    Result<std::string> text = ReadWholeFile(manifest);
    if (!text.ok() && text.status().IsNotFound()) break;  // no cold store yet
    if (!text.ok()) return text.status();
    Result<std::vector<std::string>> names = ManifestSegments(manifest, *text);
    if (!names.ok()) return names.status();
    Status gone;
    for (const std::string& name : *names) {
      for (const char* ext : {".kkd", ".kki"}) {
        const std::string rel = std::string(kSegments) + "/" + name + ext;
        const std::string from = (cold_dir / (name + ext)).string();
        const std::string to = (out / rel).string();
        // A hard link made now keeps the file even if a later commit
        // unlinks it; another file system (EXDEV) or one without links
        // gets a copy.
        if (::link(from.c_str(), to.c_str()) == 0) {
          ++report.linked;
        } else if (errno == ENOENT) {
          gone = Status::NotFound(from + " is listed by " + manifest + " but gone");
        } else {
          const Status copied = CopyFile(from, to, options.sync);
          if (!copied.ok()) return copied;
        }
        if (!gone.ok()) break;
        segment_files.push_back(rel);
      }
      if (!gone.ok()) break;
    }
    if (gone.ok()) {
      report.segments = names->size();
      KOMOKU_RETURN_IF_ERROR(
          WriteNewFile((out / kSegments / kManifest).string(), *text, options.sync));
      segment_files.push_back(std::string(kSegments) + "/" + kManifest);
      break;
    }
    if (attempt >= 5) return gone;
  }
  report.cold_seq = cold_->state()->cold_seq;

  report.created_ms = clock_->NowMs();
  Result<uint64_t> hot_seq = BackupDatabase(db_path_, (out / kDb).string());
  // The links and the snapshot are made: compaction may go on while the
  // rest is copied and the checksums computed.
  compact.unlock();
  if (!hot_seq.ok()) return hot_seq.status();
  if (options.sync) KOMOKU_RETURN_IF_ERROR(SyncPath((out / kDb).string(), false));
  report.seq = std::max(*hot_seq, report.cold_seq);
  report.files.push_back(kDb);
  for (const std::string& f : segment_files) report.files.push_back(f);

  // The adapters install these by rename: a copy reads one whole version.
  for (const std::string& name : options.state_files) {
    const std::string from = (data_dir / name).string();
    if (!fs::exists(from, ec)) continue;
    KOMOKU_RETURN_IF_ERROR(CopyFile(from, (out / name).string(), options.sync));
    report.files.push_back(name);
  }
  json info = {{"format", kBackupFormat},     {"created_ms", report.created_ms},
               {"seq", report.seq},           {"cold_seq", report.cold_seq},
               {"segments", report.segments}, {"data_dir", data_dir.string()}};
  KOMOKU_RETURN_IF_ERROR(
      WriteNewFile((out / kBackupInfo).string(), info.dump(1) + "\n", options.sync));
  report.files.push_back(kBackupInfo);
  KOMOKU_RETURN_IF_ERROR(WriteSums(options.dir, report.files, options.sync, &report.bytes));
  report.files.push_back(kBackupSums);
  if (options.sync) {
    KOMOKU_RETURN_IF_ERROR(SyncPath((out / kSegments).string(), true));
    KOMOKU_RETURN_IF_ERROR(SyncPath(options.dir, true));
  }
  log_->info("backup written to {}: {} files, {} bytes, every change up to #{}", options.dir,
             report.files.size(), report.bytes, report.seq);
  return report;
}

Result<std::vector<std::string>> VerifyBackup(const std::string& dir) {
  const fs::path root(dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return Status::NotFound(dir + " is not a directory");
  const std::string sums_path = (root / kBackupSums).string();
  Result<std::string> sums = ReadWholeFile(sums_path);
  if (!sums.ok()) {
    if (sums.status().IsNotFound()) {
      return Status::NotFound(sums_path +
                              " is missing: not a komoku backup, or one that did not finish");
    }
    return sums.status();
  }
  std::vector<std::string> files;
  std::set<std::string> listed;
  std::istringstream in(*sums);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    const std::string where = sums_path + " line " + std::to_string(line_no);
    if (line.size() < 67 || line.compare(64, 2, "  ") != 0) {
      return Status::Corruption(where + ": not '<sha256>  <file>'");
    }
    const std::string want = line.substr(0, 64);
    const std::string rel = line.substr(66);
    if (rel.empty() || rel[0] == '/' || rel.find("..") != std::string::npos) {
      return Status::Corruption(where + ": bad file name '" + rel + "'");
    }
    const std::string path = (root / rel).string();
    Result<std::string> got = Sha256OfFile(path);
    if (!got.ok()) {
      if (got.status().IsNotFound()) {
        return Status::NotFound(path + " is missing from the backup (listed in " + sums_path + ")");
      }
      return got.status();
    }
    if (*got != want) {
      return Status::Corruption(path + " is damaged: its SHA-256 is " + *got + ", " + sums_path +
                                " says " + want);
    }
    files.push_back(rel);
    listed.insert(rel);
  }
  if (!listed.count(kDb)) {
    return Status::Corruption(sums_path + " does not list " + kDb + ": not a komoku backup");
  }
  // Every segment the MANIFEST names is there (a file deleted along with
  // its line would otherwise pass).
  const std::string manifest_rel = std::string(kSegments) + "/" + kManifest;
  if (listed.count(manifest_rel)) {
    const std::string manifest = (root / manifest_rel).string();
    Result<std::string> text = ReadWholeFile(manifest);
    if (!text.ok()) return text.status();
    Result<std::vector<std::string>> names = ManifestSegments(manifest, *text);
    if (!names.ok()) return names.status();
    for (const std::string& name : *names) {
      for (const char* ext : {".kkd", ".kki"}) {
        const std::string rel = std::string(kSegments) + "/" + name + ext;
        if (!listed.count(rel)) {
          return Status::Corruption((root / rel).string() + " is named by " + manifest +
                                    " but not listed in " + sums_path);
        }
      }
    }
  }
  return files;
}

Result<RestoreReport> RestoreBackup(const RestoreOptions& options) {
  if (options.data_dir.empty()) return Status::InvalidArgument("no data directory given");
  Result<std::vector<std::string>> files = VerifyBackup(options.backup_dir);
  if (!files.ok()) return files.status();

  const fs::path target = fs::absolute(fs::path(options.data_dir)).lexically_normal();
  const fs::path target_clean = target.has_filename() ? target : target.parent_path();
  std::error_code ec;
  const bool exists = fs::exists(target_clean, ec);
  std::optional<Fd> lock;
  if (exists) {
    if (!fs::is_directory(target_clean, ec)) {
      return Status::InvalidArgument(target_clean.string() + " is not a directory");
    }
    // A running komoku holds the lock; the restore must not pull its files
    // away (and the lock is held until the end, so none starts meanwhile).
    const std::string lock_path = Store::LockPath(target_clean.string());
    if (fs::exists(lock_path, ec)) {
      lock.emplace(::open(lock_path.c_str(), O_RDWR | O_CLOEXEC));
      if (lock->get() >= 0 && ::flock(lock->get(), LOCK_EX | LOCK_NB) != 0) {
        return Status::Busy(target_clean.string() +
                            " is in use by a running komoku; stop it first, then restore")
            .WithReason("locked");
      }
    }
    bool empty = true;
    for (const auto& entry : fs::directory_iterator(target_clean, ec)) {
      // A LOCK file alone (a stopped service leaves it) is not data.
      if (entry.path().filename() != "LOCK") empty = false;
    }
    if (!empty && !options.force) {
      return Status::InvalidArgument(target_clean.string() +
                                     " is not empty; restoring would replace its data (give "
                                     "--force to do so)")
          .WithReason("not_empty");
    }
  }
  const fs::path parent = target_clean.parent_path();
  const std::string stem = target_clean.filename().string();
  const fs::path tmp = parent / ("." + stem + ".restoring-" + std::to_string(::getpid()));
  const fs::path old = parent / ("." + stem + ".replaced-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  RestoreReport report;
  auto fail = [&](Status st) {
    std::error_code rec;
    fs::remove_all(tmp, rec);
    return st;
  };
  fs::create_directories(tmp / kSegments, ec);
  if (ec) return fail(Status::IOError("cannot create " + tmp.string() + ": " + ec.message()));
  for (const std::string& rel : *files) {
    if (rel == kBackupInfo) continue;  // about the backup, not data
    const fs::path to = tmp / rel;
    fs::create_directories(to.parent_path(), ec);
    Status st = CopyFile((fs::path(options.backup_dir) / rel).string(), to.string(), options.sync);
    if (!st.ok()) return fail(st);
    ++report.files;
    report.bytes += fs::file_size(to, ec);
  }
  if (options.sync) {
    Status st = SyncPath((tmp / kSegments).string(), true);
    if (st.ok()) st = SyncPath(tmp.string(), true);
    if (!st.ok()) return fail(st);
  }
  if (exists) {
    if (std::rename(target_clean.c_str(), old.c_str()) != 0) {
      return fail(Errno("rename aside", target_clean.string(), errno));
    }
  }
  if (std::rename(tmp.c_str(), target_clean.c_str()) != 0) {
    const int err = errno;
    if (exists) (void)std::rename(old.c_str(), target_clean.c_str());  // put it back
    return fail(Errno("rename " + tmp.string() + " to", target_clean.string(), err));
  }
  if (options.sync) (void)SyncPath(parent.string(), true);
  if (exists) {
    fs::remove_all(old, ec);
    report.replaced = target_clean.string();
  }
  return report;
}

}  // namespace komoku::store
