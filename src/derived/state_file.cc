// The state file: the last published bucket of each aggregate and the Home
// Assistant configs published, kept across restarts.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "derived/publisher_impl.h"
#include "wire/input.h"

namespace komoku::derived {
namespace {

using nlohmann::json;

// Writes `text` to `path` by temp file, fsync and rename, so a crash leaves
// the old file or the new one, never half of one.
Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError("cannot write '" + tmp + "': " + std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status st = Status::IOError("cannot write '" + tmp + "': " + std::strerror(errno));
      ::close(fd);
      return st;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return Status::IOError("cannot flush '" + tmp + "': " + std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::IOError("cannot rename '" + tmp + "' to '" + path +
                           "': " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

Result<Publisher::Impl::SavedState> Publisher::Impl::LoadState() const {
  SavedState out;
  std::ifstream in(options_.state_path, std::ios::binary);
  if (!in) return out;  // first start
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  if (!j.is_object() || j.value("version", 0) != 1 || !j["aggregates"].is_array()) {
    return Status::Corruption("derived state file '" + options_.state_path +
                              "' is not a Komoku derived state (version 1); remove it to start "
                              "over at the current buckets");
  }
  for (const json& a : j["aggregates"]) {
    if (!a.is_object() || !a["key"].is_string() || !a["resolution"].is_string() ||
        !a["next"].is_number_integer()) {
      return Status::Corruption("derived state file '" + options_.state_path + "': bad entry " +
                                store::DumpJson(a));
    }
    out.next[a["key"].get<std::string>() + "\n" + a["resolution"].get<std::string>()] =
        a["next"].get<int64_t>();
  }
  if (j.contains("discovery")) {
    if (!j["discovery"].is_array()) {
      return Status::Corruption("derived state file '" + options_.state_path +
                                "': \"discovery\" is not a list");
    }
    for (const json& t : j["discovery"]) {
      if (t.is_string()) out.discovery.insert(t.get<std::string>());
    }
  }
  return out;
}

void Publisher::Impl::SaveState() {
  if (options_.state_path.empty()) return;
  json list = json::array();
  json discovery = json::array();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Agg& a : aggs_) {
      list.push_back({{"key", a.def.key}, {"resolution", a.def.resolution}, {"next", a.sent_next}});
    }
    std::set<std::string> topics = discovery_topics_;
    topics.insert(discovery_to_clear_.begin(), discovery_to_clear_.end());
    for (const std::string& t : topics) discovery.push_back(t);
  }
  std::lock_guard<std::mutex> lock(state_file_mu_);
  Status st = WriteFileAtomically(
      options_.state_path,
      store::DumpJson({{"version", 1}, {"aggregates", list}, {"discovery", discovery}}) + "\n");
  if (!st.ok()) {
    store_->metrics().Add("komoku_derived_errors_total");
    log_->warn("derived: {}", st.message());
  }
}

}  // namespace komoku::derived
