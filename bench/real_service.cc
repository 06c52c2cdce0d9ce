#include "real_service.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>  // mkdtemp, getloadavg
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "hot_schema.h"

namespace komoku::bench {

using std::chrono::milliseconds;

void Fail(const std::string& what) { throw std::runtime_error(what); }

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

bool WaitFor(const std::function<bool()>& cond, milliseconds timeout, milliseconds poll) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll);
  }
}

Progress WaitProgress(const std::function<int64_t()>& read, int64_t target, Clock::time_point start,
                      milliseconds stall, milliseconds limit, milliseconds poll,
                      const std::function<bool()>& complete, const std::function<bool()>& active) {
  Progress p;
  p.count = read();
  Clock::time_point grew = Clock::now();  // when the count last changed
  p.seconds = std::chrono::duration<double>(grew - start).count();
  for (;;) {
    const Clock::time_point now = Clock::now();
    if (p.count >= target && (!complete || complete())) {
      p.reached = true;
      p.seconds = std::chrono::duration<double>(now - start).count();
      return p;
    }
    if (now - start >= limit) return p;
    if (now - grew >= stall && !(active && active())) return p;
    std::this_thread::sleep_for(poll);
    const int64_t c = read();
    if (c != p.count) {
      p.count = c;
      grew = Clock::now();
      p.seconds = std::chrono::duration<double>(grew - start).count();
    } else if (active && active()) {
      grew = Clock::now();  // a pause while the source still runs is no stall yet
    }
  }
}

std::string BenchBase() {
  const char* dir = std::getenv("KOMOKU_BENCH_DIR");
  return dir && *dir ? dir : KOMOKU_BENCH_BUILD_DIR;
}

std::string MachineLine() {
  std::ifstream cpu("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(cpu, line)) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  char buf[256];
  std::snprintf(buf, sizeof buf, "%u CPUs (%s), load average %.2f at start",
                std::thread::hardware_concurrency(), model.c_str(), load[0]);
  return buf;
}

std::string LoadLine() {
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  char buf[128];
  std::snprintf(buf, sizeof buf, "load average at the end: %.2f (1 min), %.2f (5 min)", load[0],
                load[1]);
  return buf;
}

ScratchDir::ScratchDir(const std::string& base, const std::string& prefix) {
  std::string tmpl = base + "/" + prefix + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) Fail("cannot create a directory from " + tmpl);
  path_ = tmpl;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

// --- SQLite -------------------------------------------------------------------

Sqlite::Sqlite(const std::string& path) : path_(path) {
  if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) Fail(path + ": " + sqlite3_errmsg(db_));
}

Sqlite::~Sqlite() { sqlite3_close(db_); }

void Sqlite::Check(int rc, const char* what) const {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    Fail(path_ + ": " + what + ": " + sqlite3_errmsg(db_));
  }
}

void Sqlite::Exec(const char* sql) const {
  Check(sqlite3_exec(db_, sql, nullptr, nullptr, nullptr), sql);
}

Statement::Statement(const Sqlite& db, const char* sql) : db_(db) {
  db.Check(sqlite3_prepare_v2(db.get(), sql, -1, &stmt_, nullptr), sql);
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

void Statement::Run() {
  const int rc = sqlite3_step(stmt_);
  sqlite3_reset(stmt_);
  if (rc != SQLITE_DONE) db_.Check(rc == SQLITE_ROW ? SQLITE_MISUSE : rc, sqlite3_sql(stmt_));
}

HotDbBuilder::HotDbBuilder(const std::string& path, int64_t first_seq)
    : path_(path), tmp_(path + ".tmp"), first_seq_(first_seq), seq_(first_seq - 1) {
  std::filesystem::remove(tmp_);
  db_ = std::make_unique<Sqlite>(tmp_);
  db_->Exec("PRAGMA journal_mode=OFF");
  db_->Exec("PRAGMA synchronous=OFF");
  db_->Exec("PRAGMA cache_size=-262144");
  db_->Exec(kHotSchema);
  db_->Exec("BEGIN");
  key_ = std::make_unique<Statement>(
      *db_, "INSERT INTO keys(id, name, type, options, created_ms) VALUES(?1, ?2, ?3, '{}', ?4)");
  change_ = std::make_unique<Statement>(
      *db_, "INSERT INTO changes(rowid, key_id, time_ms, value) VALUES(?1, ?2, ?3, ?4)");
}

HotDbBuilder::~HotDbBuilder() {
  change_.reset();
  key_.reset();
  if (db_) {
    db_.reset();
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
  }
}

void HotDbBuilder::AddKey(int64_t id, const std::string& name, const char* type,
                          int64_t created_ms) {
  sqlite3_bind_int64(key_->get(), 1, id);
  sqlite3_bind_text(key_->get(), 2, name.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(key_->get(), 3, type, -1, SQLITE_STATIC);
  sqlite3_bind_int64(key_->get(), 4, created_ms);
  key_->Run();
}

void HotDbBuilder::AddChange(int64_t key_id, int64_t time_ms, double value) {
  sqlite3_bind_int64(change_->get(), 1, ++seq_);
  sqlite3_bind_int64(change_->get(), 2, key_id);
  sqlite3_bind_int64(change_->get(), 3, time_ms);
  sqlite3_bind_double(change_->get(), 4, value);
  change_->Run();
}

void HotDbBuilder::AddChange(int64_t key_id, int64_t time_ms, bool value) {
  sqlite3_bind_int64(change_->get(), 1, ++seq_);
  sqlite3_bind_int64(change_->get(), 2, key_id);
  sqlite3_bind_int64(change_->get(), 3, time_ms);
  sqlite3_bind_int64(change_->get(), 4, value ? 1 : 0);  // the store's form of a boolean
  change_->Run();
}

void HotDbBuilder::AddChange(int64_t key_id, int64_t time_ms, const std::string& value) {
  sqlite3_bind_int64(change_->get(), 1, ++seq_);
  sqlite3_bind_int64(change_->get(), 2, key_id);
  sqlite3_bind_int64(change_->get(), 3, time_ms);
  sqlite3_bind_text(change_->get(), 4, value.data(), static_cast<int>(value.size()),
                    SQLITE_TRANSIENT);
  change_->Run();
}

void HotDbBuilder::Finish() {
  db_->Exec("COMMIT");
  change_.reset();
  key_.reset();
  db_.reset();
  std::filesystem::rename(tmp_, path_);
}

// --- processes ----------------------------------------------------------------

namespace {

bool TcpOpen(int port) {
  httplib::Client probe("127.0.0.1", port);
  probe.set_connection_timeout(milliseconds(200));
  // Any answer, even a refused HTTP parse, means something listens.
  auto res = probe.Get("/");
  return res || res.error() != httplib::Error::Connection;
}

}  // namespace

std::unique_ptr<Process> StartBroker(const ScratchDir& dir, int* port,
                                     const std::string& extra_config) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    *port = FreeLoopbackPort();
    std::string conf = dir.File("mosquitto-" + std::to_string(attempt) + ".conf");
    std::ofstream(conf) << "listener " << *port << " 127.0.0.1\nallow_anonymous true\n"
                        << extra_config;
    auto broker = std::make_unique<Process>(std::vector<std::string>{MOSQUITTO_BINARY, "-c", conf},
                                            dir.File("mosquitto.log"));
    if (WaitFor([&] { return TcpOpen(*port) || !broker->Running(); }, milliseconds(5000)) &&
        broker->Running()) {
      return broker;
    }
  }
  Fail("mosquitto did not start");
}

void Komoku::FailWithLog(const std::string& what) const {
  Fail(what + "\n--- komoku output ---\n" + (process ? process->Output() : std::string()));
}

Komoku StartKomoku(const ScratchDir& dir, const std::string& config_yaml, milliseconds poll,
                   const std::string& binary) {
  static int runs = 0;
  const std::string n = std::to_string(runs++);
  const std::string config = dir.File("komoku-" + n + ".yaml");
  const std::string ready = dir.File("komoku-" + n + ".ready");
  std::ofstream(config) << config_yaml;
  Komoku k;
  const auto t0 = Clock::now();
  k.process = std::make_unique<Process>(
      std::vector<std::string>{binary.empty() ? KOMOKU_BINARY : binary, "run", "-c", config,
                               "--ready-file", ready},
      dir.File("komoku-" + n + ".log"));
  if (!WaitFor([&] { return std::filesystem::exists(ready) || !k.process->Running(); },
               milliseconds(120000), poll) ||
      !k.process->Running()) {
    k.FailWithLog("komoku did not get ready");
  }
  k.ready_file_seconds = SecondsSince(t0);
  {
    std::ifstream in(ready);
    k.port = nlohmann::json::parse(in).at("http_port").get<int>();
  }
  auto probe = NewClient(k.port);
  if (!WaitFor(
          [&] {
            auto res = probe->Get("/readyz");
            return res && res->status == 200;
          },
          milliseconds(30000), poll)) {
    k.FailWithLog("komoku's /readyz did not answer 200 (broker not connected or subscribed?)");
  }
  k.readyz_seconds = SecondsSince(t0);
  return k;
}

// --- HTTP and MQTT ------------------------------------------------------------

std::unique_ptr<httplib::Client> NewClient(int port) {
  auto cli = std::make_unique<httplib::Client>("127.0.0.1", port);
  cli->set_keep_alive(true);
  cli->set_connection_timeout(std::chrono::seconds(10));
  cli->set_read_timeout(std::chrono::seconds(300));
  return cli;
}

namespace {

nlohmann::json ParseAnswer(const httplib::Result& res, const std::string& what) {
  if (!res) Fail(what + ": no answer: " + httplib::to_string(res.error()));
  if (res->status != 200) Fail(what + ": HTTP " + std::to_string(res->status) + ": " + res->body);
  nlohmann::json j = nlohmann::json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) Fail(what + ": not JSON: " + res->body.substr(0, 200));
  return j;
}

}  // namespace

CompactAnswer Compact(int port, std::chrono::seconds timeout) {
  auto cli = NewClient(port);
  cli->set_read_timeout(timeout);
  const auto t0 = Clock::now();
  auto res = cli->Post("/api/v1/compact");
  CompactAnswer a;
  a.seconds = SecondsSince(t0);
  const nlohmann::json j = ParseAnswer(res, "compact");
  a.changes = j.value("changes", int64_t{0});
  a.segments_written = j.value("segments_written", int64_t{0});
  a.segments_removed = j.value("segments_removed", int64_t{0});
  a.bytes_written = j.value("bytes_written", int64_t{0});
  return a;
}

SegmentTotals Segments(int port, bool per_key) {
  const nlohmann::json j =
      ParseAnswer(NewClient(port)->Get(per_key ? "/api/v1/segments?keys=true" : "/api/v1/segments"),
                  "segments");
  if (!j["segments"].is_array()) Fail("segments: not a list");
  SegmentTotals t;
  t.count = j.value("count", int64_t{0});
  t.bytes = j.value("bytes", int64_t{0});
  for (const nlohmann::json& seg : j["segments"]) {
    t.changes += seg.value("changes", int64_t{0});
    if (!per_key || !seg["keys"].is_array()) continue;
    for (const nlohmann::json& k : seg["keys"]) {
      t.raw_bytes += k.value("raw_bytes", int64_t{0});
      t.rollup_bytes += k.value("rollup_bytes", int64_t{0});
    }
  }
  return t;
}

int64_t Metric(int port, const std::string& series) {
  auto cli = NewClient(port);
  auto res = cli->Get("/metrics");
  if (!res || res->status != 200) return -1;
  std::istringstream in(res->body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stoll(line.substr(series.size() + 1));
    }
  }
  return 0;
}

std::map<std::string, double> Metrics(int port, const std::vector<std::string>& families) {
  std::map<std::string, double> out;
  std::string target = "/metrics";
  for (size_t i = 0; i < families.size(); ++i) {
    target += (i == 0 ? "?name=" : "&name=") + families[i];
  }
  auto res = NewClient(port)->Get(target);
  if (!res || res->status != 200) return out;
  std::istringstream in(res->body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    out[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
  }
  return out;
}

Ingest::Ingest(const std::string& url, const std::string& client_id, int rate,
               std::vector<std::string> keys, IngestOptions options)
    : client_(std::make_unique<mqtt::async_client>(url, client_id)),
      rate_(rate),
      keys_(std::move(keys)),
      options_(std::move(options)) {
  if (keys_.empty()) Fail("ingest without keys");
  mqtt::connect_options opts;
  opts.set_clean_session(true);
  client_->connect(opts)->wait();
  thread_ = std::thread([this] { Loop(); });
}

Ingest::~Ingest() { Stop(); }

void Ingest::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  try {
    if (client_->is_connected()) client_->disconnect()->wait_for(std::chrono::seconds(5));
  } catch (const std::exception&) {
  }
}

void Ingest::Loop() {
  const auto period = std::chrono::nanoseconds(1000000000LL / std::max(rate_, 1));
  auto next = Clock::now();
  const int64_t keys = static_cast<int64_t>(keys_.size());
  const int64_t first = options_.first, count = options_.count;
  for (int64_t n = first; !stop_.load() && (count <= 0 || n < first + count); ++n) {
    const size_t key = static_cast<size_t>(n % keys);
    const std::string topic = "komoku/set/" + keys_[key];
    std::string payload;
    if (options_.payload) {
      payload = options_.payload(key, n / keys);
    } else {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(n / keys % 1000) / 10.0 + 0.05);
      payload = buf;
    }
    if (options_.before_publish) options_.before_publish(n);
    try {
      if (client_->publish(topic, payload.data(), payload.size(), 1, false)
              ->wait_for(std::chrono::seconds(30))) {
        ++published_;
        bytes_ += static_cast<int64_t>(topic.size() + payload.size());
      } else {
        ++failed_;
      }
    } catch (const std::exception&) {
      ++failed_;
    }
    next += period;
    std::this_thread::sleep_until(next);
  }
}

struct Flood::Lane {
  std::unique_ptr<mqtt::async_client> client;
  std::vector<mqtt::message_ptr> messages;
  Clock::time_point end;  // written by the lane's thread, read after the join
};

Flood::Flood(const std::string& url, const std::vector<std::vector<Publication>>& lanes,
             FloodOptions options)
    : options_(std::move(options)) {
  for (size_t i = 0; i < lanes.size(); ++i) {
    auto lane = std::make_unique<Lane>();
    // Paho C refuses a publication while max_buffered_messages (100 unless
    // told) of the client's are queued inside it, connected or not.
    lane->client = std::make_unique<mqtt::async_client>(
        url, options_.client_id + "-" + std::to_string(i),
        mqtt::create_options(MQTTVERSION_3_1_1, options_.inflight + 1), nullptr);
    mqtt::connect_options opts;
    opts.set_mqtt_version(MQTTVERSION_3_1_1);
    opts.set_clean_session(true);
    opts.set_max_inflight(options_.inflight);
    opts.set_connect_timeout(std::chrono::seconds(10));
    if (!lane->client->connect(opts)->wait_for(std::chrono::seconds(15))) {
      Fail("flood publisher " + std::to_string(i) + " did not connect to " + url);
    }
    lane->messages.reserve(lanes[i].size());
    for (const Publication& p : lanes[i]) {
      lane->messages.push_back(mqtt::make_message(p.topic, p.payload, options_.qos, false));
    }
    total_ += static_cast<int64_t>(lanes[i].size());
    lanes_.push_back(std::move(lane));
  }
  running_lanes_ = static_cast<int>(lanes_.size());
  std::atomic<int> waiting{static_cast<int>(lanes_.size())};
  for (auto& lane : lanes_) {
    threads_.emplace_back([this, &waiting, l = lane.get()] {
      --waiting;  // the last touch of the constructor's stack
      while (!go_.load()) std::this_thread::yield();
      Run(*l);
    });
  }
  while (waiting.load() > 0) std::this_thread::sleep_for(milliseconds(1));
  start_ = Clock::now();
  go_ = true;
}

Flood::~Flood() { Wait(); }

void Flood::Run(Lane& lane) {
  std::deque<mqtt::delivery_token_ptr> outstanding;
  bool stalled = false;
  // Done when the token completed in time; a failure or a timeout counts.
  auto finish = [&](const mqtt::delivery_token_ptr& tok) {
    if (stalled) {
      ++failed_;
      return;
    }
    try {
      if (tok->wait_for(options_.stall)) {
        ++published_;
        return;
      }
      stalled = true;
    } catch (const std::exception&) {
    }
    ++failed_;
  };
  for (const mqtt::message_ptr& m : lane.messages) {
    if (stalled) {
      ++failed_;
      continue;
    }
    while (static_cast<int>(outstanding.size()) >= options_.inflight) {
      finish(outstanding.front());
      outstanding.pop_front();
    }
    try {
      outstanding.push_back(lane.client->publish(m));
    } catch (const std::exception&) {
      ++failed_;
    }
  }
  for (const auto& tok : outstanding) finish(tok);
  lane.end = Clock::now();
  --running_lanes_;
}

double Flood::Wait() {
  if (!waited_) {
    waited_ = true;
    for (std::thread& t : threads_) t.join();
    for (auto& lane : lanes_) {
      try {
        if (lane->client->is_connected())
          lane->client->disconnect()->wait_for(std::chrono::seconds(5));
      } catch (const std::exception&) {
      }
    }
  }
  Clock::time_point end = start_;
  for (const auto& lane : lanes_) end = std::max(end, lane->end);
  return std::chrono::duration<double>(end - start_).count();
}

Consumer::Consumer(const std::string& url, const std::string& client_id, const std::string& filter,
                   int qos, Handler handler, int receive_maximum)
    : filter_(filter), handler_(std::move(handler)) {
  client_ = std::make_unique<mqtt::async_client>(url, client_id,
                                                 mqtt::create_options(MQTTVERSION_5), nullptr);
  client_->set_message_callback([this](mqtt::const_message_ptr msg) {
    const Clock::time_point now = Clock::now();
    if (handler_) handler_(*msg, now);
    last_ns_.store(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count(),
        std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
  });
  // Field by field, as the bridge does (Paho C++ 1.2.0's builder loses the
  // MQTT 5 properties when it copies the options).
  mqtt::connect_options opts;
  opts.set_mqtt_version(MQTTVERSION_5);
  opts.set_clean_start(false);
  mqtt::properties props{{mqtt::property::SESSION_EXPIRY_INTERVAL, 604800}};
  if (receive_maximum > 0) props.add({mqtt::property::RECEIVE_MAXIMUM, receive_maximum});
  opts.set_properties(props);
  opts.set_connect_timeout(std::chrono::seconds(10));
  if (!client_->connect(opts)->wait_for(std::chrono::seconds(15))) {
    Fail("consumer " + client_id + " did not connect to " + url);
  }
  if (!client_->subscribe(filter, qos)->wait_for(std::chrono::seconds(15))) {
    Fail("consumer " + client_id + " did not subscribe to " + filter);
  }
}

Consumer::~Consumer() { Close(); }

Clock::time_point Consumer::last() const {
  return Clock::time_point{std::chrono::nanoseconds(last_ns_.load())};
}

void Consumer::Close() {
  try {
    if (client_->is_connected()) {
      client_->unsubscribe(filter_)->wait_for(std::chrono::seconds(5));
      client_->disconnect()->wait_for(std::chrono::seconds(5));
    }
  } catch (const std::exception&) {
  }
}

// --- /proc --------------------------------------------------------------------

std::map<std::string, int64_t> ProcStatus(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::map<std::string, int64_t> out;
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos || line.size() < 3 ||
        line.compare(line.size() - 3, 3, " kB") != 0) {
      continue;
    }
    out[line.substr(0, colon)] = std::stoll(line.substr(colon + 1)) * 1024;
  }
  return out;
}

void ParseIntFlags(int argc, char** argv, const std::vector<std::pair<std::string, int*>>& flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    bool known = false;
    for (const auto& [name, out] : flags) {
      const std::string prefix = name + "=";
      if (a.rfind(prefix, 0) != 0) continue;
      *out = std::atoi(a.c_str() + prefix.size());
      if (*out <= 0) Fail("bad " + a);
      known = true;
    }
    if (known) continue;
    std::string list;
    for (const auto& flag : flags) list += (list.empty() ? "" : ", ") + flag.first + "=N";
    Fail("unknown argument " + a + " (known: " + list + ")");
  }
}

int BenchMain(const char* name, const std::function<int()>& run) {
  // A closed connection must not kill the benchmark; the failed request counts.
  signal(SIGPIPE, SIG_IGN);
  // Each line as it comes, also into a log: a run takes minutes.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

int64_t ProcField(pid_t pid, const std::string& file, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return -1;
}

int64_t ProcIo(pid_t pid, const std::string& field) { return ProcField(pid, "io", field); }

}  // namespace komoku::bench
