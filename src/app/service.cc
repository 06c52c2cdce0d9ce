#include "app/service.h"

#include <signal.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "app/systemd_notify.h"
#include "bridge/bridge.h"
#include "derived/derived.h"
#include "query/server.h"
#include "remote_write/remote_write.h"
#include "store/store.h"
#include "wire/key_options_json.h"

namespace komoku::app {
namespace {

struct Loggers {
  std::shared_ptr<spdlog::logger> main, store, bridge, query, derived;
};

// "<N>", the sd-daemon(3) prefix that tells journald a line's priority
// (syslog levels: 3 err, 4 warning, 6 info, 7 debug), so that
// `journalctl -p warning` shows Komoku's warnings and errors.
class JournalPriority : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    char prefix[4] = {'<', '6', '>', '\0'};
    switch (msg.level) {
      case spdlog::level::trace:
      case spdlog::level::debug:
        prefix[1] = '7';
        break;
      case spdlog::level::warn:
        prefix[1] = '4';
        break;
      case spdlog::level::err:
        prefix[1] = '3';
        break;
      case spdlog::level::critical:
        prefix[1] = '2';
        break;
      default:
        break;
    }
    dest.append(prefix, prefix + 3);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JournalPriority>();
  }
};

// One line per event on stderr. Under systemd (JOURNAL_STREAM set), each
// line starts with its priority and has no timestamp: journald adds its own.
Loggers MakeLoggers(const std::string& level) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<JournalPriority>('*');
  formatter->set_pattern(journal ? "%*[%n] %l: %v" : "%Y-%m-%d %H:%M:%S.%e [%n] %l: %v");
  sink->set_formatter(std::move(formatter));
  auto make = [&](const char* name) {
    auto log = std::make_shared<spdlog::logger>(name, sink);
    log->set_level(spdlog::level::from_str(level));
    log->flush_on(spdlog::level::trace);
    return log;
  };
  return {make("main"), make("store"), make("bridge"), make("query"), make("derived")};
}

Status WriteReadyFile(const std::string& path, int http_port) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "{\"pid\": " << getpid() << ", \"http_port\": " << http_port << "}\n";
    if (!out) return Status::IOError("cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::IOError("cannot rename " + tmp + ": " + ec.message());
  return Status::Ok();
}

// /readyz reports the writer stuck, and the systemd watchdog goes unfed,
// once it has held uncommitted changes this long.
constexpr std::chrono::seconds kWriterStallLimit{10};

// SIGTERM to exit, at most (systemd's default TimeoutStopSec is 90 s).
constexpr std::chrono::seconds kStopDeadline{10};

// Exits the process if it is still running kStopDeadline after being made.
class StopDeadline {
 public:
  explicit StopDeadline(std::shared_ptr<spdlog::logger> log) : log_(std::move(log)) {
    thread_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, kStopDeadline, [&] { return done_; })) return;
      log_->error(
          "the stop has not finished within {} s; exiting now (messages not yet stored "
          "are in the ingest log and are stored at the next start)",
          kStopDeadline.count());
      log_->flush();
      std::_Exit(3);
    });
  }
  ~StopDeadline() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::shared_ptr<spdlog::logger> log_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// How often the heap's free pages go back to the kernel.
constexpr std::chrono::seconds kTrimInterval{10};

// glibc keeps memory freed in the middle of an arena's heap; only the top
// of the heap is given back on its own. A /metrics answer or a segment
// listing for 10,000 keys frees megabytes that stayed resident, so RssAnon
// grew with every scrape to several times what komoku uses (footprint_bench:
// 37.7 MB resident for 7.8 MB in use; 10.0 MB after malloc_trim).
// malloc_trim(0) returns every free page of every arena (madvise).
void GiveBackFreedMemory(spdlog::logger& log) {
#if defined(__GLIBC__)
  const auto t0 = std::chrono::steady_clock::now();
  (void)malloc_trim(0);
  log.debug("malloc_trim took {} us", std::chrono::duration_cast<std::chrono::microseconds>(
                                          std::chrono::steady_clock::now() - t0)
                                          .count());
#else
  (void)log;
#endif
}

// The STATUS= line systemctl status shows.
std::string StatusLine(store::Store& store, const bridge::Bridge& bridge) {
  int64_t refused = 0;
  for (const auto& [series, value] : store.metrics().Snapshot()) {
    if (series.rfind("komoku_refused_total", 0) == 0) refused += value;
  }
  return std::to_string(store.metrics().Get("komoku_keys")) + " keys, " +
         std::to_string(store.metrics().Get("komoku_changes_accepted_total")) +
         " changes accepted, " + std::to_string(refused) + " refused; MQTT " +
         (bridge.subscribed()  ? "subscribed"
          : bridge.connected() ? "connected"
                               : "connecting");
}

// The web page's address as a browser elsewhere reaches it: the listen
// host, or this machine's name when listening on every address.
std::string PageUrl(const std::string& host, int port) {
  std::string h = host;
  if (h.empty() || h == "0.0.0.0" || h == "::") {
    char name[256] = {};
    h = gethostname(name, sizeof name - 1) == 0 && name[0] ? name : "localhost";
  }
  if (h.find(':') != std::string::npos) h = "[" + h + "]";
  return "http://" + h + ":" + std::to_string(port) + "/";
}

derived::DerivedOptions DerivedOptionsOf(const Config& config) {
  derived::DerivedOptions o;
  o.prefix = config.mqtt_prefix;
  o.retain = config.derived_retain;
  o.queue_max = static_cast<size_t>(config.derived_queue_max);
  o.discovery = config.derived_discovery;
  o.discovery_prefix = config.derived_discovery_prefix;
  o.tz = config.derived_tz;
  o.aggregates = config.derived_aggregates;
  o.rolling = config.derived_rolling;
  o.discovery_keys = config.derived_discovery_keys;
  o.state_path = (std::filesystem::path(config.store_data_dir) / "derived-state.json").string();
  return o;
}

// The options of a key definition of the config file as a patch (checked
// when the file was read, so parsing them again does not fail in practice).
Result<store::KeyOptionsPatch> PatchOf(const Config::KeyDefinition& def) {
  Result<store::KeyOptionsPatch> patch = store::ParseKeyOptions(def.options);
  if (!patch.ok()) return patch.status().WithContext(def.where + ": keys." + def.name);
  return patch;
}

Result<std::vector<store::Store::KeyDefinition>> KeyDefinitionsOf(const Config& config) {
  std::vector<store::Store::KeyDefinition> defs;
  for (const Config::KeyDefinition& def : config.keys) {
    Result<store::KeyOptionsPatch> patch = PatchOf(def);
    if (!patch.ok()) return patch.status();
    defs.push_back({def.name, def.type, std::move(patch.value())});
  }
  return defs;
}

// The parts of a running service that a reload touches.
struct Running {
  Config config;         // as running: what the next reload compares with
  std::string page_url;  // the web page, for Home Assistant's configuration_url
  store::Store* store;
  bridge::Bridge* bridge;
  std::unique_ptr<derived::Publisher> derived;
  derived::PublishFn publish;
  const Loggers* log;
  remote_write::RemoteWriter* remote_write = nullptr;  // null when off
};

// SIGHUP: reads the config file again and applies what can change while
// running: log.level, keys:, mappings: and derived:. All or none: a file
// that does not load, a definition the store refuses or a derived
// definition that does not fit its key changes nothing. Settings that need a
// restart are named in the log and otherwise ignored. The bridge keeps
// receiving throughout: each message is mapped by the old rules or the new.
Status Reload(const std::string& path, Running& run) {
  if (path.empty()) {
    return Status::InvalidArgument("started without a configuration file (-c): nothing to reload");
  }
  Result<Config> loaded = LoadConfig(path);
  if (!loaded.ok()) return loaded.status();
  const Config& config = loaded.value();

  // Derived definitions are checked against the types the keys will have
  // once the keys: section is applied, before anything changes.
  std::map<std::string, store::KeyType> planned;
  for (const Config::KeyDefinition& def : config.keys) {
    if (def.type) planned[def.name] = *def.type;
  }
  derived::KeyTypeFn key_type = [&planned](const std::string& key) {
    auto it = planned.find(key);
    return it == planned.end() ? std::nullopt : std::optional<store::KeyType>(it->second);
  };
  derived::DerivedOptions derived_options = DerivedOptionsOf(config);
  // The state file stays beside the running store (data_dir needs a restart).
  derived_options.state_path = DerivedOptionsOf(run.config).state_path;
  derived_options.prefix = run.config.mqtt_prefix;
  Result<std::unique_ptr<derived::Publisher>> derived = derived::Publisher::Create(
      derived_options, run.store, run.publish, run.log->derived, key_type);
  if (!derived.ok()) return derived.status();

  // DefineAll changes nothing when one definition is refused.
  Result<std::vector<store::Store::KeyDefinition>> defs = KeyDefinitionsOf(config);
  if (!defs.ok()) return defs.status();
  Result<std::vector<store::KeyInfo>> defined = run.store->DefineAll(*defs);
  if (!defined.ok()) return defined.status().WithContext(path + ": keys");
  KOMOKU_RETURN_IF_ERROR(run.bridge->ReplaceRules(config.mappings));

  // The new publisher takes over from the saved state: buckets the old one
  // published are not published again; rolling values and discovery
  // configs are sent afresh.
  run.derived->Stop();
  run.derived = std::move(derived.value());
  run.derived->SetConfigurationUrl(run.page_url);
  Status started = run.derived->Start();
  if (!started.ok()) {
    run.log->main->error(
        "derived state not restarted (no derived topics until the next "
        "start): {}",
        started.message());
  }

  for (const auto& logger :
       {run.log->main, run.log->store, run.log->bridge, run.log->query, run.log->derived}) {
    logger->set_level(spdlog::level::from_str(config.log_level));
  }
  std::vector<std::string> restart = RestartOnlyChanges(run.config, config);
  if (!restart.empty()) {
    std::string names;
    for (const std::string& n : restart) names += (names.empty() ? "" : ", ") + n;
    run.log->main->warn("{}: changed settings that take effect at the next restart: {}", path,
                        names);
  }
  run.log->main->info(
      "configuration reloaded from {}: {} keys defined, {} mapping rules, {} "
      "derived aggregates, {} rolling statistics",
      path, config.keys.size(), config.mappings.size(), config.derived_aggregates.size(),
      config.derived_rolling.size());
  // Restart-only settings keep their running values for the next comparison.
  Config kept = run.config;
  kept.log_level = config.log_level;
  kept.keys = config.keys;
  kept.mappings = config.mappings;
  kept.derived_retain = config.derived_retain;
  kept.derived_queue_max = config.derived_queue_max;
  kept.derived_discovery = config.derived_discovery;
  kept.derived_discovery_prefix = config.derived_discovery_prefix;
  kept.derived_tz = config.derived_tz;
  kept.derived_aggregates = config.derived_aggregates;
  kept.derived_rolling = config.derived_rolling;
  kept.derived_discovery_keys = config.derived_discovery_keys;
  run.config = std::move(kept);
  // Applied, even when derived publishing could not start again (logged).
  return Status::Ok();
}

// The parts of the service, made in order by the steps of RunService and
// destroyed in the reverse order (each stops itself if a step failed).
struct Parts {
  std::unique_ptr<store::Store> store;
  std::unique_ptr<bridge::Bridge> bridge;
  derived::PublishFn publish;
  std::unique_ptr<derived::Publisher> derived;
  std::unique_ptr<query::Server> http;
  std::unique_ptr<remote_write::RemoteWriter> remote_write;  // null when off
};

// Signals are taken synchronously by the main thread (sigtimedwait in
// WaitForStop); every thread started after this inherits the blocked mask.
sigset_t BlockStopSignals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return stop_signals;
}

// Opens the store and applies the config's keys: section. 0, or the exit
// code.
// Starts remote write when remote_write.url is set. 0, or the exit code.
int StartRemoteWrite(const Config& config, const Loggers& log, SystemdNotifier& systemd,
                     Parts& parts) {
  if (config.remote_write_url.empty()) return 0;
  remote_write::Options options;
  options.url = config.remote_write_url;
  options.bearer_token = config.remote_write_bearer_token;
  options.username = config.remote_write_username;
  options.password = config.remote_write_password;
  options.ca_file = config.remote_write_ca_file;
  options.include = config.remote_write_include;
  options.exclude = config.remote_write_exclude;
  options.batch_size = static_cast<size_t>(config.remote_write_batch_size);
  options.send_interval = std::chrono::milliseconds(config.remote_write_send_interval_ms);
  options.timeout = std::chrono::milliseconds(config.remote_write_timeout_ms);
  options.state_path = remote_write::StatePath(config.store_data_dir);
  Result<std::unique_ptr<remote_write::RemoteWriter>> writer =
      remote_write::RemoteWriter::Create(options, parts.store.get(), log.main);
  Status st = writer.ok() ? writer.value()->Start() : writer.status();
  if (!st.ok()) {
    log.main->error("remote write: {}", st.ToString());
    systemd.SetStatus("remote write: " + st.ToString());
    return 1;
  }
  parts.remote_write = std::move(writer.value());
  return 0;
}

int OpenStore(const Config& config, const Loggers& log, SystemdNotifier& systemd, Parts& parts) {
  store::StoreOptions store_options = StoreOptionsOf(config);
  store_options.start_timers = false;  // started once the bridge listens
  if (!config.remote_write_url.empty()) {
    // Nothing remote write has not yet sent may be deleted by compaction.
    Result<std::optional<uint64_t>> acked =
        remote_write::ReadAckedSeq(remote_write::StatePath(config.store_data_dir));
    if (!acked.ok()) {
      log.main->error("{}", acked.status().ToString());
      systemd.SetStatus(acked.status().ToString());
      return 1;
    }
    store_options.hot.keep_rows_after = acked->value_or(0);
  }
  Result<std::unique_ptr<store::Store>> store = store::Store::Open(store_options, log.store);
  if (!store.ok()) {
    log.main->error("cannot open the store: {}", store.status().ToString());
    systemd.SetStatus("cannot open the store: " + store.status().ToString());
    return 1;
  }
  parts.store = std::move(store.value());
  log.main->info("data in {} ({} keys)", parts.store->db_path(), parts.store->Keys().size());
  for (const Config::KeyDefinition& def : config.keys) {
    Result<store::KeyOptionsPatch> patch = PatchOf(def);
    Result<store::KeyInfo> defined =
        patch.ok() ? parts.store->Define(def.name, def.type, *patch) : patch.status();
    if (!defined.ok()) {
      log.main->error("{}: keys.{}: {}", def.where, def.name, defined.status().message());
      return 2;
    }
  }
  if (!config.keys.empty()) log.main->info("{} keys defined by the config", config.keys.size());
  return StartRemoteWrite(config, log, systemd, parts);
}

// The bridge's options from the config (and a log line about the mapping
// rules and discovery).
bridge::BridgeOptions BridgeOptionsOf(const Config& config, const Loggers& log) {
  bridge::BridgeOptions bridge_options;
  bridge_options.broker = config.mqtt_broker;
  bridge_options.client_id = config.mqtt_client_id;
  bridge_options.username = config.mqtt_username;
  bridge_options.password = config.mqtt_password;
  bridge_options.tls.ca_file = config.mqtt_tls_ca_file;
  bridge_options.tls.cert_file = config.mqtt_tls_cert_file;
  bridge_options.tls.key_file = config.mqtt_tls_key_file;
  bridge_options.tls.key_password = config.mqtt_tls_key_password;
  bridge_options.tls.verify = config.mqtt_tls_verify;
  bridge_options.prefix = config.mqtt_prefix;
  bridge_options.session_expiry = std::chrono::seconds(config.mqtt_session_expiry_s);
  bridge_options.keep_alive = std::chrono::seconds(config.mqtt_keep_alive_s);
  bridge_options.max_payload_bytes = static_cast<size_t>(config.mqtt_max_payload_bytes);
  bridge_options.rules = config.mappings;
  bridge_options.ingest_dir = config.store_data_dir;
  if (!config.mappings.empty()) log.main->info("{} mapping rules", config.mappings.size());
  if (config.discovery_enabled) {
    bridge::DiscoveryOptions discovery;
    discovery.home_assistant = config.discovery_home_assistant;
    discovery.ha_prefix = config.discovery_prefix;
    discovery.homie = config.discovery_homie;
    discovery.homie_prefix = config.discovery_homie_prefix;
    discovery.tasmota = config.discovery_tasmota;
    discovery.disabled_entities = config.discovery_disabled_entities;
    discovery.key_prefix = config.discovery_key_prefix;
    discovery.state_path =
        (std::filesystem::path(config.store_data_dir) / "discovery.json").string();
    bridge_options.discovery = discovery;
    log.main->info("discovery on: {}{}{}{}; entities at GET /api/v1/discovery",
                   discovery.home_assistant ? "Home Assistant under " + discovery.ha_prefix + "/"
                                            : std::string(),
                   discovery.home_assistant && discovery.homie ? ", " : "",
                   discovery.homie ? "Homie under " + discovery.homie_prefix + "/" : std::string(),
                   discovery.tasmota ? ", Tasmota under tasmota/discovery/" : "");
  }
  return bridge_options;
}

// Makes the bridge (not yet connecting) and the derived-state publisher,
// which publishes through it. 0, or the exit code.
int CreateBridgeAndDerived(const Config& config, const Loggers& log, SystemdNotifier& systemd,
                           Parts& parts) {
  Result<std::unique_ptr<bridge::Bridge>> bridge =
      bridge::Bridge::Create(BridgeOptionsOf(config, log), parts.store.get(), log.bridge);
  if (!bridge.ok()) {
    log.main->error("{}", bridge.status().ToString());
    return 1;
  }
  parts.bridge = std::move(bridge.value());

  // Derived state: checked against the keys now defined (an unknown key or a
  // definition that does not fit its key's type stops the start).
  bridge::Bridge* bridge_for_derived = parts.bridge.get();
  parts.publish = [bridge_for_derived](const std::string& topic, const std::string& payload,
                                       bool retain) {
    return bridge_for_derived->Publish(topic, payload, retain);
  };
  Result<std::unique_ptr<derived::Publisher>> derived = derived::Publisher::Create(
      DerivedOptionsOf(config), parts.store.get(), parts.publish, log.derived);
  if (!derived.ok()) {
    log.main->error("{}", derived.status().message());
    systemd.SetStatus(derived.status().message());
    return 2;
  }
  parts.derived = std::move(derived.value());
  return 0;
}

query::ServerOptions ServerOptionsOf(const Config& config) {
  query::ServerOptions http_options;
  http_options.host = config.http_host;
  http_options.port = config.http_port;
  http_options.max_points = static_cast<size_t>(config.http_max_points);
  http_options.writer_stall_limit = kWriterStallLimit;
  http_options.token = config.http_token;
  http_options.max_connections = static_cast<size_t>(config.http_max_connections);
  http_options.max_header_bytes = static_cast<size_t>(config.http_max_header_bytes);
  http_options.max_header_fields = static_cast<size_t>(config.http_max_header_fields);
  http_options.max_body_bytes = static_cast<size_t>(config.http_max_body_bytes);
  http_options.idle_timeout = std::chrono::seconds(config.http_idle_timeout_s);
  http_options.header_timeout = std::chrono::seconds(config.http_header_timeout_s);
  http_options.body_timeout = std::chrono::seconds(config.http_body_timeout_s);
  http_options.write_timeout = std::chrono::seconds(config.http_write_timeout_s);
  http_options.workers = static_cast<size_t>(config.http_workers);
  http_options.max_queued_requests = static_cast<size_t>(config.http_max_queued_requests);
  http_options.max_stream_clients = static_cast<size_t>(config.http_max_stream_clients);
  http_options.stream_queue_bytes = static_cast<size_t>(config.http_stream_queue_bytes);
  return http_options;
}

// Makes and starts the HTTP server, which asks the bridge for health and
// discovery. 0, or the exit code.
int StartHttp(const Config& config, const Loggers& log, SystemdNotifier& systemd, Parts& parts) {
  query::ServerOptions http_options = ServerOptionsOf(config);
  if (config.http_token.empty() && !query::IsLoopbackHost(config.http_host)) {
    log.main->warn(
        "the HTTP API on {} has no authentication: anyone who can reach it may read "
        "and write every key; set http.token_file, or listen on 127.0.0.1",
        config.http_listen);
  }
  bridge::Bridge* bridge_ptr = parts.bridge.get();
  remote_write::RemoteWriter* remote_ptr = parts.remote_write.get();
  http_options.discovery = [bridge_ptr] { return bridge_ptr->DiscoveryJson(); };
  http_options.key_aliases = [bridge_ptr] { return bridge_ptr->KeyAliases(); };
  Result<std::unique_ptr<query::Server>> http = query::Server::Create(
      http_options, parts.store.get(),
      [bridge_ptr, remote_ptr] {
        query::Health health;
        health.mqtt_connected = bridge_ptr->connected();
        health.mqtt_subscribed = bridge_ptr->subscribed();
        health.ingest_stalled = bridge_ptr->IngestStalledFor();
        health.ingest_backlog = bridge_ptr->IngestBacklog();
        if (remote_ptr) {
          health.remote_write_on = true;
          health.remote_write_stalled = remote_ptr->StalledFor();
          remote_write::RemoteWriter::Trouble trouble = remote_ptr->CurrentTrouble();
          health.remote_write_error = std::move(trouble.error);
          health.remote_write_failing = trouble.failing_for;
        }
        return health;
      },
      log.query);
  if (!http.ok()) {
    log.main->error("{}", http.status().ToString());
    return 1;
  }
  parts.http = std::move(http.value());
  Status st = parts.http->Start();
  if (!st.ok()) {
    log.main->error("{}", st.ToString());
    systemd.SetStatus(st.ToString());
    return 1;
  }
  return 0;
}

// Connects MQTT, starts derived state and the store's timers. 0, or the
// exit code (everything stopped again).
int StartMqtt(Parts& parts, const std::string& page_url, const Loggers& log,
              SystemdNotifier& systemd) {
  parts.bridge->Start();
  parts.derived->SetConfigurationUrl(page_url);
  Status st = parts.derived->Start();
  if (!st.ok()) {
    log.main->error("{}", st.ToString());
    systemd.SetStatus(st.ToString());
    parts.bridge->Stop();
    parts.http->Stop();
    parts.store->Close();
    return 1;
  }
  // Timeouts (also those that fell while Komoku was down) now reach MQTT.
  parts.store->StartTimers();
  return 0;
}

// Writes the ready file (--ready-file) and the lock file's contents, logs
// "ready" and tells systemd.
void AnnounceReady(const Config& config, const RunOptions& options, Parts& parts,
                   const Loggers& log, SystemdNotifier& systemd) {
  if (!options.ready_file.empty()) {
    Status st = WriteReadyFile(options.ready_file, parts.http->port());
    if (!st.ok()) log.main->warn("{}", st.ToString());
  }
  // The data directory's lock file says who holds it and where its HTTP API
  // is, so `komoku compact` can ask this process (also with port 0).
  // Written in place: a rename would put a new, unlocked file at the path.
  {
    std::ofstream lock(store::Store::LockPath(config.store_data_dir), std::ios::trunc);
    lock << "{\"pid\": " << getpid() << ", \"http_host\": \"" << config.http_host
         << "\", \"http_port\": " << parts.http->port() << "}\n";
    if (!lock) log.main->warn("cannot write {}", store::Store::LockPath(config.store_data_dir));
  }
  log.main->info("ready");
  systemd.Ready(StatusLine(*parts.store, *parts.bridge));
}

// SIGHUP: reloads the configuration (Reload), counts the result and tells
// systemd.
void ReloadOnSignal(const RunOptions& options, SystemdNotifier& systemd, Running& run) {
  run.log->main->info("SIGHUP received; reloading {}", options.config_path.empty()
                                                           ? std::string("the configuration")
                                                           : options.config_path);
  systemd.Reloading();
  Status reloaded = Reload(options.config_path, run);
  const bool ok = reloaded.ok();
  if (!ok) {
    run.log->main->error("reload refused, the running configuration stays: {}", reloaded.message());
  }
  run.store->metrics().Add(std::string("komoku_config_reloads_total{result=\"") +
                           (ok ? "ok" : "refused") + "\"}");
  run.store->metrics().Set("komoku_config_last_reload_successful", ok ? 1 : 0);
  systemd.Ready(StatusLine(*run.store, *run.bridge));
}

// Feeds the systemd watchdog while the writer and the MQTT ingest thread
// make progress, and says (once) when one of them stops making it.
// `*stalled` is whether it said so last time.
void CheckProgress(SystemdNotifier& systemd, Running& run, bool* stalled_before) {
  // The writer and the MQTT ingest thread are the two that can stop making
  // progress; either one stuck stops the watchdog's food.
  // A full disk is a known state, not a hang: the writer retries, changes
  // are refused (HTTP 507) and MQTT messages wait in the ingest log;
  // /readyz says so. A restart by the watchdog would not free any space.
  const Status write_health = run.store->WriteHealth();
  const bool disk_full = write_health.reason() == "disk_full";
  const auto writer_stalled_for =
      disk_full ? std::chrono::milliseconds(0) : run.store->WriterStalledFor();
  auto ingest_stalled_for = run.bridge->IngestStalledFor();
  // The remote write thread counts as ingest here: it too must keep going.
  if (run.remote_write)
    ingest_stalled_for = std::max(ingest_stalled_for, run.remote_write->StalledFor());
  const bool ingest_stuck = ingest_stalled_for >= kWriterStallLimit;
  const auto stalled = ingest_stuck && writer_stalled_for < kWriterStallLimit ? ingest_stalled_for
                                                                              : writer_stalled_for;
  const char* who = ingest_stuck && writer_stalled_for < kWriterStallLimit
                        ? "MQTT ingest or remote write has not finished a batch"
                        : "store writer has not committed";
  if (stalled < kWriterStallLimit) {
    if (*stalled_before) run.log->main->info("store writer and MQTT ingest make progress again");
    *stalled_before = false;
    systemd.WatchdogPing();
    systemd.SetStatus(disk_full ? write_health.message() : StatusLine(*run.store, *run.bridge));
    return;
  }
  if (!*stalled_before) {
    run.log->main->error(
        "{} for {} s{}", who, std::chrono::duration_cast<std::chrono::seconds>(stalled).count(),
        systemd.watchdog_enabled() ? "; no longer feeding the systemd watchdog" : "");
  }
  *stalled_before = true;
  systemd.SetStatus(
      std::string(who) + " for " +
      std::to_string(std::chrono::duration_cast<std::chrono::seconds>(stalled).count()) + " s");
}

// Serves until SIGINT or SIGTERM: reloads on SIGHUP, gives freed memory
// back, and watches progress for the systemd watchdog.
void WaitForStop(const sigset_t& stop_signals, const RunOptions& options, SystemdNotifier& systemd,
                 Running& run) {
  // The loop wakes at least twice per watchdog interval; the ping proves that
  // this thread runs and that the writer commits.
  auto tick = std::chrono::microseconds(std::chrono::seconds(1));
  if (systemd.watchdog_enabled()) tick = std::min(tick, systemd.watchdog_interval() / 2);
  bool writer_stalled = false;
  auto next_trim = std::chrono::steady_clock::now() + kTrimInterval;
  for (;;) {
    timespec timeout{static_cast<time_t>(tick.count() / 1000000),
                     static_cast<long>(tick.count() % 1000000 * 1000)};
    int sig = sigtimedwait(&stop_signals, nullptr, &timeout);
    if (sig == SIGINT || sig == SIGTERM) {
      run.log->main->info("{} received; stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
      return;
    }
    if (sig == SIGHUP) {
      ReloadOnSignal(options, systemd, run);
      continue;
    }
    if (std::chrono::steady_clock::now() >= next_trim) {
      GiveBackFreedMemory(*run.log->main);
      next_trim = std::chrono::steady_clock::now() + kTrimInterval;
    }
    CheckProgress(systemd, run, &writer_stalled);
  }
}

// Stops everything in order, within kStopDeadline.
void StopService(Parts& parts, Running& run, SystemdNotifier& systemd) {
  systemd.Stopping();
  // A stop always ends: if draining and committing take longer than
  // kStopDeadline (a disk that does not answer, a broker that does not let
  // go), komoku exits anyway. What MQTT delivered and is not yet stored is
  // in the ingest log and is stored at the next start.
  StopDeadline deadline(run.log->main);
  // A compaction asked for over HTTP (POST /api/v1/compact) runs in an HTTP
  // worker, which the HTTP server's Stop waits for: tell the store first, so
  // that the compaction ends at its next step and the stop does not wait.
  parts.store->RequestStop();

  // The bridge disconnects first, so no message arrives after the store
  // closes; it then stores what its ingest log holds (for at most
  // mqtt drain_timeout; the rest stays in the log for the next start), and
  // Close() commits what else is queued.
  // Derived state first, while the bridge can still send what is queued.
  run.derived->Stop();
  parts.bridge->Stop();
  parts.http->Stop();
  // Remote write sends what is left after the next start (its state file).
  if (parts.remote_write) parts.remote_write->Stop();
  parts.store->Close();
  run.log->main->info("stopped");
}

}  // namespace

int RunService(const Config& config, const RunOptions& options) {
  const sigset_t stop_signals = BlockStopSignals();
  SystemdNotifier systemd;
  Loggers log = MakeLoggers(config.log_level);
  log.main->info("komoku {} starting; config: {}", KOMOKU_VERSION, config.source);

  Parts parts;
  if (int code = OpenStore(config, log, systemd, parts)) return code;
  if (int code = CreateBridgeAndDerived(config, log, systemd, parts)) return code;
  if (int code = StartHttp(config, log, systemd, parts)) return code;
  const std::string page_url = PageUrl(config.http_host, parts.http->port());
  if (int code = StartMqtt(parts, page_url, log, systemd)) return code;
  AnnounceReady(config, options, parts, log, systemd);

  Running running{config,
                  page_url,
                  parts.store.get(),
                  parts.bridge.get(),
                  std::move(parts.derived),
                  parts.publish,
                  &log,
                  parts.remote_write.get()};
  parts.store->metrics().Set("komoku_config_last_reload_successful", 1);
  WaitForStop(stop_signals, options, systemd, running);
  StopService(parts, running, systemd);
  return 0;
}

}  // namespace komoku::app
