// The way in: Paho's callback appends each message to the ingest log; the
// ingest thread stores the log's messages in order (set topics, API
// requests, and hands mapped ones to mapped_messages.cc) and releases them
// once committed. Also the rate-limited logging of refusals.

#include <mqtt/async_client.h>

#include <algorithm>
#include <deque>
#include <nlohmann/json.hpp>

#include "bridge/bridge_impl.h"
#include "wire/input.h"
#include "wire/key_alias.h"

namespace komoku::bridge {
namespace {

using nlohmann::json;

// At most one log line per rule and reason in this time; the others are
// counted and the count shown with the next line.
constexpr std::chrono::seconds kRefusalLogInterval{10};
// The ingest thread takes at most this many messages from the log at a time.
constexpr size_t kIngestBatch = 1024;

}  // namespace

void Bridge::Impl::OnMessage(const mqtt::const_message_ptr& msg) noexcept {
  try {
    IngestRecord& rec = incoming_;  // reused: its buffers are not allocated again
    rec.topic = msg->get_topic();
    rec.payload = msg->get_payload_str();
    rec.retained = msg->is_retained();
    rec.received_ms = store_->clock().NowMs();
    rec.response_topic.clear();
    rec.correlation_data.clear();
    rec.has_correlation_data = false;
    if (rec.topic == request_topic_) {
      const mqtt::properties& props = msg->get_properties();
      if (props.contains(mqtt::property::RESPONSE_TOPIC)) {
        rec.response_topic = mqtt::get<std::string>(props, mqtt::property::RESPONSE_TOPIC);
      }
      if (props.contains(mqtt::property::CORRELATION_DATA)) {
        rec.correlation_data = mqtt::get<mqtt::binary>(props, mqtt::property::CORRELATION_DATA);
        rec.has_correlation_data = true;
      }
    }
    Status st = ingest_->Append(rec);
    if (!st.ok()) {
      store_->metrics().Add("komoku_ingest_log_errors_total");
      int64_t suppressed = 0;
      if (ShouldLog("ingest log", &suppressed)) {
        log_->error(
            "{}; the message is kept in memory until it is stored (lost if komoku "
            "crashes before){}",
            st.message(), NotLogged(suppressed, "failed appends"));
      }
    }
  } catch (const std::exception& e) {
    Refuse("internal", msg->get_topic(), e.what());
  }
}

void Bridge::Impl::IngestLoop() {
  std::vector<IngestRecord> batch;
  // Where the log stood after a batch, and the commit that covers it.
  struct Covered {
    IngestPosition pos;
    uint64_t mark;
  };
  std::deque<Covered> uncommitted;
  // batch[next...] are read and not yet stored: after the store refused
  // one for a full disk, they are tried again, in order, until it takes
  // them (the log keeps them meanwhile: nothing is released past them).
  size_t next = 0;
  bool waiting_for_disk = false;
  for (;;) {
    const bool stopping = ingest_stop_.load();
    size_t n = batch.size() - next;
    if (n == 0) {
      next = 0;
      n = ingest_->Read(&batch, kIngestBatch,
                        stopping ? std::chrono::milliseconds(0) : std::chrono::milliseconds(100));
    }
    if (n > 0) {
      ingest_busy_since_ms_.store(std::max<int64_t>(1, SteadyNowMs()));
      const size_t first = next;
      for (; next < batch.size(); ++next) {
        bool stored = true;
        try {
          stored = HandleRecord(batch[next]);
        } catch (const std::exception& e) {
          Refuse("internal", batch[next].topic, e.what());
        }
        if (!stored) break;
      }
      ingest_busy_since_ms_.store(0);
      store_->metrics().Add("komoku_mqtt_messages_total", static_cast<int64_t>(next - first));
      if (next == batch.size()) {
        uncommitted.push_back({ingest_->ReadPosition(), store_->CommitMark()});
        if (waiting_for_disk) log_->info("the store takes changes again; MQTT ingest goes on");
        waiting_for_disk = false;
      } else {
        if (!waiting_for_disk) {
          log_->error(
              "the store refuses changes ({}); {} MQTT messages wait in the ingest log "
              "and are stored once it takes them again",
              store_->WriteHealth().message(), ingest_->Unread() + batch.size() - next);
        }
        waiting_for_disk = true;
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::seconds(1), [&] { return ingest_stop_.load(); });
      }
    }
    std::optional<IngestPosition> release;
    while (!uncommitted.empty() && store_->Committed(uncommitted.front().mark)) {
      release = uncommitted.front().pos;
      uncommitted.pop_front();
    }
    const bool past_deadline = stopping && SteadyNowMs() >= drain_until_ms_.load();
    if (stopping && n == 0 && !uncommitted.empty() && !past_deadline) {
      // Everything is read: have the last of it committed now.
      const auto left =
          std::chrono::milliseconds(std::max<int64_t>(1, drain_until_ms_.load() - SteadyNowMs()));
      if (store_->WaitCommittedFor(uncommitted.back().mark, left)) {
        release = uncommitted.back().pos;
        uncommitted.clear();
      }
    }
    if (release) ingest_->Release(*release);
    store_->metrics().Set("komoku_ingest_backlog", static_cast<int64_t>(ingest_->Unread()));
    store_->metrics().Set("komoku_ingest_log_bytes", static_cast<int64_t>(ingest_->FileBytes()));
    if (stopping && ((n == 0 && uncommitted.empty()) || past_deadline)) break;
  }
}

bool Bridge::Impl::RefusedForNow(const Status& st) {
  return st.reason() == "disk_full" || st.reason() == "write_failed";
}

bool Bridge::Impl::HandleRecord(const IngestRecord& rec) {
  const std::string& topic = rec.topic;
  if (topic == request_topic_) {
    HandleRequest(rec);
    return true;
  }
  const bool own = IsOwn(topic);
  // Discovery configs are never data, whatever rule matches them.
  if (discovery_ && !own && discovery_->IsDiscoveryTopic(topic)) {
    HandleDiscovery(rec);
    return true;
  }
  const std::shared_ptr<const MappingEngine> mapping = Mapping();
  const bool mapped = mapping || discovery_;
  if (mapped && !own) return HandleMapped(mapping.get(), rec);
  // Komoku's own topics (komoku/status, ...) also match broad mapping
  // filters such as +/status; they are never mapped.
  if (mapped && own && topic.compare(0, set_prefix_.size(), set_prefix_) != 0) return true;
  Result<std::string> key = KeyFromTopic(topic);
  if (!key.ok()) {
    Refuse("bad_topic", topic, key.status().message());
    return true;
  }
  const std::string& payload = rec.payload;
  Result<store::ValueMessage> parsed =
      store::ParseValuePayload(payload, options_.max_payload_bytes);
  if (!parsed.ok()) {
    // Blank (only spaces, tabs and line ends) counts as empty, as
    // ParseValuePayload says.
    const bool blank = payload.find_first_not_of(" \t\r\n") == std::string::npos;
    const char* reason = payload.size() > options_.max_payload_bytes ? "too_large"
                         : blank                                     ? "empty"
                                                                     : "bad_payload";
    Refuse(reason, topic, parsed.status().message());
    return true;
  }
  store::PutOptions put;
  // Without a time of its own, a change has the time it arrived, also
  // when it is stored after a restart from the log.
  put.time_ms = parsed->time_ms ? *parsed->time_ms : rec.received_ms;
  // A message with its own time that repeats a stored change is the
  // broker's redelivery; one read again from the log after a crash may be
  // stored already. Messages with only their arrival time are distinct.
  put.skip_duplicate = parsed->time_ms.has_value() || rec.recovered;
  put.wait_committed = false;
  if (parsed->text) put.new_key_type = store::KeyType::kString;
  // <prefix>/set/<alias> writes the key of that alias (store::ResolveKey).
  if (discovery_ && discovery_->HasAliases()) {
    *key = store::ResolveKey(
               *store_, [this] { return KeyAliases(); }, *key)
               .key;
  }
  Result<store::Change> change = store_->Put(*key, parsed->value, put);
  if (!change.ok()) {
    if (RefusedForNow(change.status())) return false;
    // The store counted it; the bridge logs it once.
    log_->warn("refused {}: {}", topic, change.status().message());
  }
  return true;
}

bool Bridge::Impl::ShouldLog(const std::string& what, int64_t* suppressed) {
  std::lock_guard<std::mutex> lock(refusal_log_mu_);
  RefusalLog& entry = refusal_log_[what];
  auto now = std::chrono::steady_clock::now();
  if (entry.logged_once && now - entry.last < kRefusalLogInterval) {
    ++entry.suppressed;
    return false;
  }
  *suppressed = entry.suppressed;
  entry = RefusalLog{now, 0, true};
  return true;
}

std::string Bridge::Impl::NotLogged(int64_t suppressed, const char* what) {
  if (suppressed <= 0) return "";
  return " [" + std::to_string(suppressed) + " more " + what + " not logged]";
}

void Bridge::Impl::HandleRequest(const IngestRecord& msg) {
  json answer = api_.HandleText(msg.payload);
  if (answer.contains("error")) {
    log_->warn("API request refused ({}): {}", answer["error"]["code"].get<std::string>(),
               answer["error"]["message"].get<std::string>());
  }
  std::string topic = response_topic_;
  mqtt::properties reply_props;
  if (!msg.response_topic.empty()) {
    topic = msg.response_topic;
    if (msg.has_correlation_data) {
      reply_props.add(
          mqtt::property(mqtt::property::CORRELATION_DATA, mqtt::binary(msg.correlation_data)));
    }
  }
  std::string payload = store::DumpJson(answer);
  auto reply = mqtt::make_message(topic, payload, kQos, false);
  reply->set_properties(reply_props);
  try {
    client_->publish(reply);
  } catch (const mqtt::exception& e) {
    store_->metrics().Add("komoku_mqtt_publish_errors_total");
    log_->warn("API reply to '{}' failed: {}", topic, e.what());
  }
}

void Bridge::Impl::Refuse(const char* reason, const std::string& topic, const std::string& why) {
  store_->metrics().Add(std::string("komoku_refused_total{reason=\"") + reason + "\"}");
  std::string shown = topic.size() > 300 ? topic.substr(0, 300) + "..." : topic;
  log_->warn("refused message on '{}' ({}): {}", shown, reason, why);
}

}  // namespace komoku::bridge
