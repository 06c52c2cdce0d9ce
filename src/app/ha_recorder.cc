#include "app/ha_recorder.h"

#include <sqlite3.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

namespace komoku::app {
namespace {

struct DbClose {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
struct StmtFinalize {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Db = std::unique_ptr<sqlite3, DbClose>;
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalize>;

std::string Text(sqlite3_stmt* s, int col) {
  const unsigned char* t = sqlite3_column_text(s, col);
  return t ? std::string(reinterpret_cast<const char*>(t),
                         static_cast<size_t>(sqlite3_column_bytes(s, col)))
           : std::string();
}

// An entity id (`sensor.kitchen_temperature`) or a statistic id
// (`sensor.x`, or `source:name` for external statistics) as a key:
// its first '.' or ':' becomes '/'.
std::string KeyOf(std::string id) {
  const size_t sep = id.find_first_of(".:");
  if (sep != std::string::npos) id[sep] = '/';
  return id;
}

std::string DomainOf(const std::string& entity_id) {
  return entity_id.substr(0, entity_id.find('.'));
}

// Domains whose states are on/off: boolean keys.
bool OnOffDomain(const std::string& domain) {
  for (const char* d : {"binary_sensor", "input_boolean", "switch", "light", "fan", "siren",
                        "remote", "automation", "schedule"}) {
    if (domain == d) return true;
  }
  return false;
}

// The type of an entity's key, from its domain and attributes: on/off
// domains boolean; a sensor whose state_class is total_increasing (meters
// of energy, gas, water) counter; a sensor with a unit of measurement or a
// state_class numeric; anything else guessed from its first value.
std::optional<store::KeyType> TypeOf(const std::string& entity_id, const nlohmann::json& attrs) {
  const std::string domain = DomainOf(entity_id);
  if (OnOffDomain(domain)) return store::KeyType::kBoolean;
  if (domain != "sensor" && domain != "number" && domain != "input_number") return std::nullopt;
  const std::string state_class =
      attrs.is_object() && attrs.contains("state_class") && attrs["state_class"].is_string()
          ? attrs["state_class"].get<std::string>()
          : "";
  if (state_class == "total_increasing") return store::KeyType::kCounter;
  if (!state_class.empty() || (attrs.is_object() && attrs.contains("unit_of_measurement"))) {
    return store::KeyType::kNumeric;
  }
  return domain == "sensor" ? std::nullopt : std::optional(store::KeyType::kNumeric);
}

int64_t MsOf(double seconds) { return std::llround(seconds * 1000.0); }

bool HasTable(sqlite3* db, const char* name) {
  sqlite3_stmt* raw = nullptr;
  sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", -1, &raw,
                     nullptr);
  Stmt s(raw);
  sqlite3_bind_text(raw, 1, name, -1, SQLITE_STATIC);
  return sqlite3_step(raw) == SQLITE_ROW;
}

}  // namespace

bool IsSqliteFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[16] = {};
  in.read(head, sizeof head);
  return in.gcount() == 16 && std::string(head, 16) == std::string("SQLite format 3\0", 16);
}

Status ReadRecorder(const std::string& path,
                    const std::function<void(store::ImportRow&& row, RecorderRef ref)>& fn) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
  Db db(raw);
  if (rc != SQLITE_OK) {
    return Status::IOError(path + ": " + (raw ? sqlite3_errmsg(raw) : "cannot open"));
  }
  sqlite3_busy_timeout(raw, 5000);  // Home Assistant may be writing it
  if (!HasTable(raw, "states") || !HasTable(raw, "states_meta")) {
    return Status::InvalidArgument(path +
                                   ": not a Home Assistant recorder database of schema 31 or "
                                   "newer (no states and states_meta tables)");
  }
  auto prepare = [&](const char* sql, Stmt* out) -> Status {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(raw, sql, -1, &s, nullptr) != SQLITE_OK) {
      return Status::InvalidArgument(path + ": " + sqlite3_errmsg(raw));
    }
    out->reset(s);
    return Status::Ok();
  };

  // Each entity's type (from the attributes of its newest state that has
  // any) and the time of its first state: statistics fill in before it.
  struct Entity {
    std::optional<store::KeyType> type;
    double first_ts = 0;
  };
  std::unordered_map<std::string, Entity> entities;
  Stmt meta;
  KOMOKU_RETURN_IF_ERROR(
      prepare("SELECT m.entity_id, MIN(s.last_updated_ts), "
              "(SELECT a.shared_attrs FROM states s2 JOIN state_attributes a "
              "   ON a.attributes_id = s2.attributes_id WHERE s2.metadata_id = m.metadata_id "
              "   ORDER BY s2.last_updated_ts DESC LIMIT 1) "
              "FROM states_meta m JOIN states s ON s.metadata_id = m.metadata_id "
              "GROUP BY m.metadata_id",
              &meta));
  while (sqlite3_step(meta.get()) == SQLITE_ROW) {
    const std::string id = Text(meta.get(), 0);
    Entity& e = entities[id];
    e.first_ts = sqlite3_column_double(meta.get(), 1);
    e.type = TypeOf(id, nlohmann::json::parse(Text(meta.get(), 2), nullptr, false));
  }

  if (HasTable(raw, "statistics") && HasTable(raw, "statistics_meta")) {
    Stmt stats;
    KOMOKU_RETURN_IF_ERROR(
        prepare("SELECT s.id, m.statistic_id, m.has_mean, m.has_sum, s.start_ts, s.mean, "
                "s.state, s.sum FROM statistics s JOIN statistics_meta m ON s.metadata_id = m.id "
                "ORDER BY m.statistic_id, s.start_ts",
                &stats));
    while (sqlite3_step(stats.get()) == SQLITE_ROW) {
      sqlite3_stmt* s = stats.get();
      const std::string id = Text(s, 1);
      const double start = sqlite3_column_double(s, 4);
      auto e = entities.find(id);
      if (e != entities.end() && start >= e->second.first_ts) continue;  // states tell it
      store::ImportRow row;
      row.key = KeyOf(id);
      row.time_ms = MsOf(start);
      if (sqlite3_column_int(s, 3) != 0) {
        // A meter: its reading (the sum since it was first seen when the
        // sensor reports none).
        const int col = sqlite3_column_type(s, 6) != SQLITE_NULL ? 6 : 7;
        if (sqlite3_column_type(s, col) == SQLITE_NULL) continue;
        row.value = sqlite3_column_double(s, col);
        row.type = store::KeyType::kCounter;
      } else if (sqlite3_column_int(s, 2) != 0 && sqlite3_column_type(s, 5) != SQLITE_NULL) {
        row.value = sqlite3_column_double(s, 5);  // the hour's mean, at its start
        row.type = store::KeyType::kNumeric;
      } else {
        continue;
      }
      if (e != entities.end() && e->second.type) row.type = e->second.type;
      fn(std::move(row), {"statistics", sqlite3_column_int64(s, 0)});
    }
  }

  Stmt states;
  KOMOKU_RETURN_IF_ERROR(prepare(
      "SELECT s.state_id, m.entity_id, s.state, s.last_updated_ts FROM states s "
      "JOIN states_meta m ON s.metadata_id = m.metadata_id ORDER BY s.last_updated_ts, s.state_id",
      &states));
  while (sqlite3_step(states.get()) == SQLITE_ROW) {
    sqlite3_stmt* s = states.get();
    const std::string id = Text(s, 1);
    const std::string state = Text(s, 2);
    const RecorderRef ref{"states", sqlite3_column_int64(s, 0)};
    // No value: the entity was unknown, unavailable or removed then.
    if (state.empty() || state == "unknown" || state == "unavailable" ||
        sqlite3_column_type(s, 2) == SQLITE_NULL) {
      continue;
    }
    store::ImportRow row;
    row.key = KeyOf(id);
    row.time_ms = MsOf(sqlite3_column_double(s, 3));
    row.type = entities[id].type;
    if (row.type == store::KeyType::kBoolean && (state == "on" || state == "off")) {
      row.value = state == "on";
    } else {
      row.value = state;
    }
    fn(std::move(row), ref);
  }
  return Status::Ok();
}

}  // namespace komoku::app
