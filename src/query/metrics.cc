#include "query/metrics.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/metrics.h"

#ifndef KOMOKU_VERSION
#define KOMOKU_VERSION "unknown"
#endif

namespace komoku::query {
namespace {

using MT = MetricType;

// Where a family's samples come from.
enum class From {
  kStore,        // store::Metrics series `source` (and `source{...}` when labelled)
  kCommitHisto,  // the commit histogram's buckets, sum and count in store::Metrics
  kComputed,     // written by RenderMetrics itself
};

struct Declared {
  MetricFamily family;
  From from = From::kComputed;
  // The series name in store::Metrics, when it differs from the family's
  // (components count micros as integers; /metrics shows seconds).
  std::string_view source = {};
  double scale = 1;  // exported value = source value * scale
  // Samples carry labels, known only at the first event; until then the
  // family has HELP and TYPE and no sample, unless `zero` names label sets
  // that are there at 0 from the start.
  bool labelled = false;
  std::string_view zero[2] = {};
};

constexpr double kMicros = 1e-6;

// Every family of GET /metrics. Unlabelled counters
// and gauges from the store are written at 0 until their first event, so a
// rate() or an alert on them works from the first scrape.
// docs/http-api.md lists each (tests/query/metrics_test.cc checks that).
const Declared kFamilies[] = {
    // --- MQTT in.
    {{"komoku_mqtt_messages_total", MT::kCounter,
      "MQTT messages received on the set topics and mapped topics."},
     From::kStore},
    {{"komoku_mqtt_connected", MT::kGauge, "1 while connected to the MQTT broker, else 0."}},
    {{"komoku_mqtt_subscribe_failures_total", MT::kCounter,
      "Subscriptions the broker refused or did not acknowledge in time (asked again)."},
     From::kStore},
    {{"komoku_mqtt_publish_errors_total", MT::kCounter,
      "MQTT publications (state, status, replies) that failed."},
     From::kStore},
    {{"komoku_ingest_backlog", MT::kGauge,
      "MQTT messages received (in the ingest log) and not yet stored."},
     From::kStore},
    {{"komoku_ingest_log_bytes", MT::kGauge,
      "Bytes of messages in the ingest log's files (the files are allocated larger)."},
     From::kStore},
    {{"komoku_ingest_log_errors_total", MT::kCounter,
      "Appends to the ingest log that found no room (the message stays in memory until stored)."},
     From::kStore},
    {{"komoku_ingest_recovered_total", MT::kCounter,
      "Messages found in the ingest log at start (received by an earlier run) and stored."},
     From::kStore},
    {{"komoku_mapping_messages_total", MT::kCounter, "MQTT messages handled by a mapping rule."},
     From::kStore},
    {{"komoku_mapping_retained_skipped_total", MT::kCounter,
      "Retained messages a mapping rule skipped as repeats of what is stored."},
     From::kStore},
    {{"komoku_mapping_clock_unset_total", MT::kCounter,
      "Mapped changes whose payload time was before 2000 (a device clock not set yet), "
      "stored at their arrival time."},
     From::kStore},
    {{"komoku_mapping_unknown_skipped_total", MT::kCounter,
      "Mapped values that said unknown (ESPHome's nan), skipped: not stored, not refused."},
     From::kStore},
    {{"komoku_mapping_refused_total", MT::kCounter, "Mapped messages refused, by rule and reason."},
     From::kStore,
     {},
     1,
     true},
    {{"komoku_discovery_messages_total", MT::kCounter,
      "Home Assistant and Homie discovery messages handled."},
     From::kStore},
    {{"komoku_discovery_refused_total", MT::kCounter, "Discovery messages refused, by reason."},
     From::kStore,
     {},
     1,
     true},
    {{"komoku_discovery_entities", MT::kGauge, "Entities known from discovery."}, From::kStore},
    // --- The key model.
    {{"komoku_keys", MT::kGauge, "Keys in the store."}, From::kStore},
    {{"komoku_changes_accepted_total", MT::kCounter,
      "Changes accepted (stored, or a repeat within same_value_resolution)."},
     From::kStore},
    {{"komoku_changes_stored_total", MT::kCounter, "Changes stored in history."}, From::kStore},
    {{"komoku_changes_repeated_total", MT::kCounter,
      "Accepted repeats of the same value within same_value_resolution, not stored again."},
     From::kStore},
    {{"komoku_changes_duplicate_total", MT::kCounter,
      "Changes already stored (a broker's redelivery), not stored twice."},
     From::kStore},
    {{"komoku_refused_total", MT::kCounter,
      "Refused changes and requests, by reason (docs/komoku-api.md, docs/mqtt-topics.md)."},
     From::kStore,
     {},
     1,
     true},
    {{"komoku_promql_read_total", MT::kCounter,
      "What PromQL queries read: stored changes, or rollups standing in for them."},
     From::kStore,
     {},
     1,
     true,
     {"{from=\"changes\"}", "{from=\"rollups\"}"}},
    {{"komoku_uptime_timeouts_total", MT::kCounter,
      "Uptime keys that turned false because max_time passed."},
     From::kStore},
    // --- MQTT out.
    {{"komoku_state_published_total", MT::kCounter, "State messages published."}, From::kStore},
    {{"komoku_state_pending", MT::kGauge, "State messages waiting to be published."}, From::kStore},
    {{"komoku_state_unpublishable_total", MT::kCounter,
      "Keys whose name MQTT does not allow, so no state is published for them."},
     From::kStore},
    {{"komoku_derived_published_total", MT::kCounter, "Derived values published."}, From::kStore},
    {{"komoku_derived_dropped_total", MT::kCounter,
      "Derived values dropped because the publish queue was full."},
     From::kStore},
    {{"komoku_derived_errors_total", MT::kCounter, "Derived values that could not be computed."},
     From::kStore},
    {{"komoku_remote_write_sent_total", MT::kCounter,
      "Samples remote write sent and the receiver acknowledged (2xx)."},
     From::kStore},
    {{"komoku_remote_write_failed_total", MT::kCounter,
      "Samples in batches the receiver refused for good (a 4xx other than 401, 403, 404, 407, "
      "408 and 429); skipped."},
     From::kStore},
    {{"komoku_remote_write_retries_total", MT::kCounter,
      "Remote write requests that failed for now (5xx, 429, 401, 403, 404, 407, 408, no "
      "connection, no answer within remote_write.timeout) and were retried."},
     From::kStore},
    {{"komoku_remote_write_out_of_order_total", MT::kCounter,
      "Changes remote write left out because the receiver would refuse them: not after the "
      "newest time sent for their key."},
     From::kStore},
    {{"komoku_remote_write_pending", MT::kGauge,
      "Changes (by sequence number) stored and not yet acknowledged by the receiver."},
     From::kStore},
    {{"komoku_remote_write_lag_seconds", MT::kGauge,
      "Age of the oldest change not yet acknowledged by the receiver (0 when none waits)."},
     From::kStore},
    {{"komoku_derived_corrections_total", MT::kCounter,
      "Bucket aggregates published again because a late change altered them."},
     From::kStore},
    {{"komoku_derived_catchup_total", MT::kCounter,
      "Bucket aggregates published at start for buckets that closed while stopped."},
     From::kStore},
    {{"komoku_derived_queue_depth", MT::kGauge, "Derived values waiting to be published."},
     From::kStore},
    // --- The hot store (SQLite).
    {{"komoku_writer_queue_depth", MT::kGauge, "Changes queued for the hot store's writer."}},
    {{"komoku_store_write_failing", MT::kGauge,
      "1 while the hot store's commits fail (changes are refused), else 0."},
     From::kStore},
    {{"komoku_commit_batches_total", MT::kCounter, "Hot store transactions committed."},
     From::kStore},
    {{"komoku_commit_rows_total", MT::kCounter, "Rows written by those transactions."},
     From::kStore},
    {{"komoku_commit_errors_total", MT::kCounter, "Hot store commits that failed."}, From::kStore},
    {{"komoku_commit_seconds", MT::kHistogram, "Time one hot store commit took."},
     From::kCommitHisto},
    {{"komoku_checkpoints_total", MT::kCounter, "WAL checkpoints of the hot store."}, From::kStore},
    {{"komoku_hot_pages", MT::kGauge, "Pages of komoku.db."}, From::kStore},
    {{"komoku_hot_free_pages", MT::kGauge, "Free pages of komoku.db."}, From::kStore},
    {{"komoku_hot_recent_rows", MT::kGauge, "Changes in recent, waiting for the next fold."},
     From::kStore},
    {{"komoku_hot_folds_total", MT::kCounter, "Folds of recent into changes."}, From::kStore},
    {{"komoku_hot_folded_rows_total", MT::kCounter, "Rows those folds moved."}, From::kStore},
    {{"komoku_hot_fold_seconds_total", MT::kCounter, "Time spent folding."},
     From::kStore,
     "komoku_hot_fold_micros_total",
     kMicros},
    {{"komoku_hot_vacuum_steps_total", MT::kCounter,
      "Incremental vacuum steps giving free pages back."},
     From::kStore},
    {{"komoku_hot_vacuumed_pages_total", MT::kCounter, "Pages those steps gave back."},
     From::kStore},
    {{"komoku_hot_vacuum_seconds_total", MT::kCounter, "Time spent in vacuum steps."},
     From::kStore,
     "komoku_hot_vacuum_micros_total",
     kMicros},
    {{"komoku_hot_vacuum_step_max_seconds", MT::kGauge, "The longest vacuum step."},
     From::kStore,
     "komoku_hot_vacuum_step_max_micros",
     kMicros},
    {{"komoku_hot_vacuum_errors_total", MT::kCounter, "Vacuum steps that failed."}, From::kStore},
    {{"komoku_sqlite_memory_bytes", MT::kGauge,
      "Heap SQLite holds: page caches and statements of every connection."}},
    {{"komoku_sqlite_memory_highwater_bytes", MT::kGauge,
      "The most heap SQLite has held since the start."}},
    // --- Cold history (segments) and compaction.
    {{"komoku_segments", MT::kGauge, "Live cold segments."}, From::kStore},
    {{"komoku_segment_bytes", MT::kGauge, "Bytes of the live cold segments."}, From::kStore},
    {{"komoku_segments_quarantined_total", MT::kCounter,
      "Damaged segments moved to the quarantine directory."},
     From::kStore},
    {{"komoku_compactions_total", MT::kCounter, "Compactions completed."}, From::kStore},
    {{"komoku_compaction_changes_total", MT::kCounter, "Changes moved into segments."},
     From::kStore},
    {{"komoku_compaction_bytes_total", MT::kCounter, "Bytes of segments written."}, From::kStore},
    {{"komoku_compaction_errors_total", MT::kCounter, "Compactions that failed."}, From::kStore},
    // --- Per key (GET /api/v1/top ranks the same figures).
    {{"komoku_key_changes_stored_total", MT::kCounter,
      "Changes stored per key since the process started."}},
    {{"komoku_key_hot_bytes_written_total", MT::kCounter,
      "Bytes written to the hot store per key since the process started."}},
    {{"komoku_key_segment_bytes", MT::kGauge, "Bytes of each key's blocks in live segments."}},
    // --- SSE, configuration, the service.
    {{"komoku_sse_clients", MT::kGauge, "Server-Sent Events streams open."}, From::kStore},
    {{"komoku_sse_dropped_total", MT::kCounter,
      "Server-Sent Events clients dropped for leaving too much unread."},
     From::kStore},
    {{"komoku_http_connections", MT::kGauge, "Open HTTP connections."}, From::kStore},
    {{"komoku_ws_connections", MT::kGauge, "Open WebSocket connections (/ws/v1, /ws/v2)."},
     From::kStore},
    {{"komoku_ws_messages_total", MT::kCounter, "WebSocket requests answered."}, From::kStore},
    {{"komoku_ws_dropped_total", MT::kCounter,
      "WebSocket clients closed (1008) for leaving too much unread."},
     From::kStore},
    {{"komoku_segment_damaged_blocks", MT::kGauge,
      "Damaged blocks found in live segments (GET /healthz names them)."},
     From::kStore},
    {{"komoku_config_reloads_total", MT::kCounter,
      "Configuration reloads (SIGHUP), by result: ok or refused."},
     From::kStore,
     {},
     1,
     true,
     {"{result=\"ok\"}", "{result=\"refused\"}"}},
    {{"komoku_config_last_reload_successful", MT::kGauge,
      "1 when the last configuration load or reload succeeded, else 0."},
     From::kStore},
    {{"komoku_uptime_seconds", MT::kGauge, "Seconds since the HTTP server started."}},
    {{"komoku_build_info", MT::kGauge, "Always 1; the version label is Komoku's version."}},
    // --- The process, as Prometheus's client libraries name it.
    {{"process_start_time_seconds", MT::kGauge,
      "Start time of the process since the Unix epoch in seconds."}},
    {{"process_cpu_seconds_total", MT::kCounter, "User and system CPU time spent in seconds."}},
    {{"process_resident_memory_bytes", MT::kGauge, "Resident memory size in bytes."}},
    {{"process_virtual_memory_bytes", MT::kGauge, "Virtual memory size in bytes."}},
    {{"process_open_fds", MT::kGauge, "Number of open file descriptors."}},
    {{"process_max_fds", MT::kGauge, "Maximum number of open file descriptors."}},
};

constexpr std::string_view kCommitBucket = "komoku_commit_seconds_bucket";
constexpr std::string_view kCommitSumMicros = "komoku_commit_micros_total";
constexpr std::string_view kCommitCount = "komoku_commit_batches_total";

std::string_view SourceOf(const Declared& d) { return d.source.empty() ? d.family.name : d.source; }

bool IsNameChar(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
         (!first && c >= '0' && c <= '9');
}

bool EndsWith(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

std::string FormatDouble(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

// What /proc tells of this process; absent figures stay nullopt-like (< 0).
struct ProcessFacts {
  double start_time_seconds = -1;
  double cpu_seconds = -1;
  int64_t resident_bytes = -1;
  int64_t virtual_bytes = -1;
  int64_t open_fds = -1;
  int64_t max_fds = -1;
};

ProcessFacts ReadProcess() {
  ProcessFacts p;
  const long ticks = sysconf(_SC_CLK_TCK);
  const long page = sysconf(_SC_PAGESIZE);
  // /proc/self/stat: the fields after the command name (which may hold
  // spaces and parentheses, so the last ')' ends it) start with field 3.
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren != std::string::npos && ticks > 0) {
    std::istringstream in(stat.substr(paren + 1));
    std::vector<std::string> f;
    for (std::string tok; in >> tok;) f.push_back(tok);
    // Fields 14 utime, 15 stime, 22 starttime (ticks since boot), 23 vsize
    // (bytes), 24 rss (pages): indexes 11, 12, 19, 20, 21 here.
    if (f.size() > 21) {
      try {
        p.cpu_seconds = static_cast<double>(std::stoull(f[11]) + std::stoull(f[12])) /
                        static_cast<double>(ticks);
        const double since_boot = static_cast<double>(std::stoull(f[19])) / ticks;
        p.virtual_bytes = static_cast<int64_t>(std::stoull(f[20]));
        p.resident_bytes = static_cast<int64_t>(std::stoll(f[21])) * page;
        std::ifstream proc_stat("/proc/stat");
        for (std::string line; std::getline(proc_stat, line);) {
          if (line.rfind("btime ", 0) == 0) {
            p.start_time_seconds = static_cast<double>(std::stoll(line.substr(6))) + since_boot;
            break;
          }
        }
      } catch (const std::exception&) {
        // A kernel that formats these differently: the figures stay absent.
      }
    }
  }
  std::error_code ec;
  int64_t fds = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++fds;
  }
  if (!ec) p.open_fds = fds;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    p.max_fds = static_cast<int64_t>(limit.rlim_cur);
  }
  return p;
}

}  // namespace

Status CheckFamily(const MetricFamily& f) {
  const std::string name(f.name);
  if (f.name.empty() || !IsNameChar(f.name[0], true) ||
      !std::all_of(f.name.begin(), f.name.end(), [](char c) { return IsNameChar(c, false); })) {
    return Status::InvalidArgument("metric family '" + name + "': not a valid metric name");
  }
  if (f.help.empty() || f.help.find('\n') != std::string_view::npos) {
    return Status::InvalidArgument("metric family '" + name + "': no one-line help text");
  }
  const bool total = EndsWith(f.name, "_total");
  if (f.type == MetricType::kCounter && !total) {
    return Status::InvalidArgument("metric family '" + name + "': a counter's name ends in _total");
  }
  if (f.type != MetricType::kCounter && total) {
    return Status::InvalidArgument("metric family '" + name + "': only counters end in _total");
  }
  // Base units: seconds and bytes, never scaled ones.
  for (std::string_view unit :
       {"_micros", "_millis", "_ms", "_us", "_ns", "_microseconds", "_milliseconds", "_nanoseconds",
        "_minutes", "_hours", "_kb", "_mb", "_kilobytes", "_megabytes"}) {
    const std::string tail(unit);
    if (EndsWith(f.name, tail) || f.name.find(tail + "_") != std::string_view::npos) {
      return Status::InvalidArgument("metric family '" + name + "': use base units (" +
                                     tail.substr(1) + " is not one): seconds, bytes");
    }
  }
  return Status::Ok();
}

std::vector<MetricFamily> DeclaredFamilies() {
  std::vector<MetricFamily> out;
  for (const Declared& d : kFamilies) out.push_back(d.family);
  return out;
}

ExpositionWriter::ExpositionWriter(std::vector<MetricFamily> declared)
    : declared_(std::move(declared)) {}

bool ExpositionWriter::Wants(std::string_view name) const {
  return only_.empty() || std::find(only_.begin(), only_.end(), name) != only_.end();
}

bool ExpositionWriter::Begin(std::string_view name) {
  current_ = nullptr;
  if (!Wants(name)) return false;
  auto it = std::find_if(declared_.begin(), declared_.end(),
                         [&](const MetricFamily& f) { return f.name == name; });
  if (it == declared_.end()) {
    errors_.push_back("metric family '" + std::string(name) + "' is not declared");
    return false;
  }
  if (std::find(begun_.begin(), begun_.end(), name) != begun_.end()) {
    errors_.push_back("metric family '" + std::string(name) + "' written twice");
    return false;
  }
  if (Status st = CheckFamily(*it); !st.ok()) {
    errors_.push_back(st.message());
    return false;
  }
  begun_.push_back(it->name);
  current_ = &*it;
  static constexpr const char* kTypeNames[] = {"counter", "gauge", "histogram"};
  text_ += "# HELP ";
  text_ += it->name;
  text_ += ' ';
  // HELP escapes backslashes and newlines; CheckFamily refused newlines.
  for (char c : it->help) {
    if (c == '\\') text_ += '\\';
    text_ += c;
  }
  text_ += "\n# TYPE ";
  text_ += it->name;
  text_ += ' ';
  text_ += kTypeNames[static_cast<int>(it->type)];
  text_ += '\n';
  return true;
}

bool ExpositionWriter::SampleAllowed(std::string_view suffix) {
  if (current_ == nullptr) {
    // A refused family's samples go with it; its error is already kept.
    return false;
  }
  const bool ok = current_->type == MetricType::kHistogram
                      ? (suffix == "_bucket" || suffix == "_sum" || suffix == "_count")
                      : suffix.empty();
  if (!ok) {
    errors_.push_back("metric family '" + std::string(current_->name) + "': no sample suffix '" +
                      std::string(suffix) + "'");
  }
  return ok;
}

void ExpositionWriter::SampleLine(std::string_view suffix, std::string_view labels,
                                  std::string_view value) {
  text_ += current_->name;
  text_ += suffix;
  text_ += labels;
  text_ += ' ';
  text_ += value;
  text_ += '\n';
}

void ExpositionWriter::Sample(std::string_view suffix, std::string_view labels, double value) {
  if (SampleAllowed(suffix)) SampleLine(suffix, labels, FormatDouble(value));
}

void ExpositionWriter::Sample(std::string_view suffix, std::string_view labels, int64_t value) {
  if (SampleAllowed(suffix)) SampleLine(suffix, labels, std::to_string(value));
}

std::string Labels(std::string_view name, std::string_view value) {
  std::string out = "{";
  out += name;
  out += "=\"";
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  out += "\"}";
  return out;
}

void WriteStoreSeries(const std::map<std::string, int64_t>& snapshot, ExpositionWriter* out,
                      std::vector<std::string>* undeclared) {
  auto value = [&](std::string_view series) -> int64_t {
    auto it = snapshot.find(std::string(series));
    return it == snapshot.end() ? 0 : it->second;
  };
  auto sample = [&](const Declared& d, std::string_view labels, int64_t v) {
    if (d.scale == 1) {
      out->Sample("", labels, v);
    } else {
      out->Sample("", labels, static_cast<double>(v) * d.scale);
    }
  };
  for (const Declared& d : kFamilies) {
    if (d.from == From::kStore) {
      if (!out->Begin(d.family.name)) continue;
      const std::string source(SourceOf(d));
      if (!d.labelled) {
        sample(d, "", value(source));
        continue;
      }
      const std::string prefix = source + "{";
      std::vector<std::string_view> written;
      for (auto it = snapshot.lower_bound(prefix);
           it != snapshot.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
        const std::string_view labels = std::string_view(it->first).substr(source.size());
        written.push_back(labels);
        sample(d, labels, it->second);
      }
      for (std::string_view zero : d.zero) {
        if (!zero.empty() && std::find(written.begin(), written.end(), zero) == written.end()) {
          sample(d, zero, 0);
        }
      }
    } else if (d.from == From::kCommitHisto) {
      if (!out->Begin(d.family.name)) continue;
      for (const store::HistogramBound& b : store::kCommitSecondsBounds) {
        out->Sample("_bucket", Labels("le", b.le),
                    value(std::string(kCommitBucket) + "{le=\"" + b.le + "\"}"));
      }
      out->Sample("_bucket", Labels("le", "+Inf"), value(kCommitCount));
      out->Sample("_sum", "", static_cast<double>(value(kCommitSumMicros)) * kMicros);
      out->Sample("_count", "", value(kCommitCount));
    }
  }
  // Whatever a component counts under a family the table does not know.
  for (const auto& [series, v] : snapshot) {
    const std::string_view family = std::string_view(series).substr(0, series.find('{'));
    const bool known =
        family == kCommitBucket || family == kCommitSumMicros ||
        std::any_of(std::begin(kFamilies), std::end(kFamilies), [&](const Declared& d) {
          return d.from == From::kStore && SourceOf(d) == family;
        });
    if (!known) undeclared->push_back(series);
  }
}

Result<std::string> RenderMetrics(store::Store& store, const Health& health,
                                  std::chrono::steady_clock::time_point started,
                                  spdlog::logger& log, const std::vector<std::string>& only) {
  std::vector<MetricFamily> declared = DeclaredFamilies();
  for (const std::string& name : only) {
    if (std::none_of(declared.begin(), declared.end(),
                     [&](const MetricFamily& f) { return f.name == name; })) {
      return Status::InvalidArgument("no metric family named '" + name +
                                     "' (docs/http-api.md lists them)");
    }
  }
  ExpositionWriter out(std::move(declared));
  out.Only(only);
  std::vector<std::string> undeclared;
  WriteStoreSeries(store.metrics().Snapshot(), &out, &undeclared);

  if (out.Begin("komoku_mqtt_connected")) {
    out.Sample("", "", int64_t{health.mqtt_connected ? 1 : 0});
  }
  if (out.Begin("komoku_writer_queue_depth")) {
    out.Sample("", "", static_cast<int64_t>(store.QueueDepth()));
  }
  if (out.Begin("komoku_sqlite_memory_bytes")) out.Sample("", "", store.SqliteMemoryBytes());
  if (out.Begin("komoku_sqlite_memory_highwater_bytes")) {
    out.Sample("", "", store.SqliteMemoryHighwater());
  }
  // Per key: what it writes and holds (the SD-card question).
  // Read only when asked for: a copy of every key's figures.
  const bool per_key = out.Wants("komoku_key_changes_stored_total") ||
                       out.Wants("komoku_key_hot_bytes_written_total") ||
                       out.Wants("komoku_key_segment_bytes");
  const std::vector<store::KeyWrites> writes =
      per_key ? store.Writes(nullptr) : std::vector<store::KeyWrites>{};
  if (out.Begin("komoku_key_changes_stored_total")) {
    for (const store::KeyWrites& k : writes) {
      out.Sample("", Labels("key", k.key), static_cast<int64_t>(k.changes_stored));
    }
  }
  if (out.Begin("komoku_key_hot_bytes_written_total")) {
    for (const store::KeyWrites& k : writes) {
      out.Sample("", Labels("key", k.key), static_cast<int64_t>(k.hot_bytes));
    }
  }
  if (out.Begin("komoku_key_segment_bytes")) {
    for (const store::KeyWrites& k : writes) {
      out.Sample("", Labels("key", k.key), static_cast<int64_t>(k.cold_bytes));
    }
  }
  if (out.Begin("komoku_uptime_seconds")) {
    out.Sample("", "",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  if (out.Begin("komoku_build_info")) out.Sample("", Labels("version", KOMOKU_VERSION), int64_t{1});

  const ProcessFacts p = ReadProcess();
  if (out.Begin("process_start_time_seconds") && p.start_time_seconds >= 0) {
    out.Sample("", "", p.start_time_seconds);
  }
  if (out.Begin("process_cpu_seconds_total") && p.cpu_seconds >= 0) {
    out.Sample("", "", p.cpu_seconds);
  }
  if (out.Begin("process_resident_memory_bytes") && p.resident_bytes >= 0) {
    out.Sample("", "", p.resident_bytes);
  }
  if (out.Begin("process_virtual_memory_bytes") && p.virtual_bytes >= 0) {
    out.Sample("", "", p.virtual_bytes);
  }
  if (out.Begin("process_open_fds") && p.open_fds >= 0) out.Sample("", "", p.open_fds);
  if (out.Begin("process_max_fds") && p.max_fds >= 0) out.Sample("", "", p.max_fds);

  for (const std::string& series : undeclared) {
    log.error("metric series {} has no declared family (src/query/metrics.cc); not exported",
              series);
  }
  for (const std::string& error : out.errors()) log.error("/metrics: {}", error);
  return out.text();
}

}  // namespace komoku::query
