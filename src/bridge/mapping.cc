// Topic mapping (docs/mapping.md). Everything a rule needs at message time is
// compiled once: filters into levels, the key template into segments, field
// paths into tokens. A message is split into topic levels once, and its
// payload parsed at most once, whatever the number of rules that match it:
// by SAX into a flat list of fields (FlatJson), not into a DOM.
#include "bridge/mapping.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <set>

#include "bridge/flat_json.h"
#include "core/key_options.h"
#include "wire/key_options_json.h"
#include "wire/time_param.h"

namespace komoku::bridge {
namespace {

struct Level {
  enum Kind { kLiteral, kPlus, kHash, kPrefix } kind = kLiteral;
  std::string text;
};

struct Filter {
  std::string text;
  std::string subscribe;  // what the broker is asked for (docs/mapping.md)
  std::vector<Level> levels;
  size_t wildcards = 0;  // +, # and prefix* levels: what {1}, {2}, ... can name
  size_t hash_at = 0;    // the level of #, when it is there
  bool has_hash = false;
};

struct Segment {
  enum Kind { kLiteral, kLevel, kTopic, kField } kind = kLiteral;
  std::string text;
  size_t level = 0;  // 0-based
};

struct Path {
  std::vector<std::string> tokens;
  std::string dotted;  // tokens joined by '.'
};

struct FieldSpec {
  Path path;
  std::string suffix;
};

// The levels of a topic, without allocating for the usual depths.
class Levels {
 public:
  explicit Levels(std::string_view topic) {
    size_t start = 0;
    for (;;) {
      size_t slash = topic.find('/', start);
      Push(topic.substr(start,
                        slash == std::string_view::npos ? std::string_view::npos : slash - start));
      if (slash == std::string_view::npos) break;
      start = slash + 1;
    }
  }
  size_t size() const { return size_; }
  std::string_view operator[](size_t i) const {
    return i < kInline ? inline_[i] : more_[i - kInline];
  }

 private:
  static constexpr size_t kInline = 16;
  void Push(std::string_view level) {
    if (size_ < kInline) {
      inline_[size_] = level;
    } else {
      more_.push_back(level);
    }
    ++size_;
  }
  std::array<std::string_view, kInline> inline_;
  std::vector<std::string_view> more_;
  size_t size_ = 0;
};

// `allow_prefix`: a level may end in `*` (every level starting with the text
// before it); in a rule's topic such a level is also a wildcard ({N} is the
// whole level) and is subscribed as `+`. A `#` that is not the last level
// matches one or more levels (Komoku's, not MQTT's: subscribed as the filter
// up to and including the #), so `zigbee2mqtt/#/availability` reads every
// device's availability whatever the number of levels in its name.
Result<Filter> CompileFilter(const std::string& text, bool allow_prefix, bool prefix_is_wildcard) {
  if (text.empty()) return Status::InvalidArgument("an empty topic filter");
  Filter f;
  f.text = text;
  size_t start = 0;
  bool subscribe_done = false;
  for (;;) {
    size_t slash = text.find('/', start);
    std::string level =
        text.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    Level l;
    std::string sub = level;
    if (level == "+") {
      l.kind = Level::kPlus;
      ++f.wildcards;
    } else if (level == "#") {
      if (f.has_hash) return Status::InvalidArgument("'" + text + "': more than one #");
      l.kind = Level::kHash;
      f.has_hash = true;
      f.hash_at = f.levels.size();
      ++f.wildcards;
    } else if (level.find_first_of("+#") != std::string::npos) {
      return Status::InvalidArgument("'" + text + "': + and # must stand alone in a level");
    } else if (allow_prefix && !level.empty() && level.back() == '*') {
      l.kind = Level::kPrefix;
      l.text = level.substr(0, level.size() - 1);
      if (prefix_is_wildcard) ++f.wildcards;
      sub = "+";
    } else {
      l.text = level;
    }
    if (!subscribe_done) {
      f.subscribe += (f.levels.empty() ? "" : "/") + sub;
      subscribe_done = l.kind == Level::kHash;
    }
    f.levels.push_back(std::move(l));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (f.has_hash && f.hash_at + 1 < f.levels.size()) {
    for (size_t i = f.hash_at + 1; i < f.levels.size(); ++i) {
      if (f.levels[i].kind != Level::kLiteral) {
        return Status::InvalidArgument("'" + text + "': only literal levels may follow a #");
      }
    }
  }
  if (f.wildcards > 16) return Status::InvalidArgument("'" + text + "': more than 16 wildcards");
  return f;
}

// What the wildcards of a matching filter matched: one level per +, the
// rest of the topic for # (empty when # matched the parent level).
struct Captures {
  static constexpr size_t kMax = 16;
  std::array<std::string_view, kMax> at;
  size_t size = 0;
};

// Matches `topic` (split into `t`) against `f`; fills `captures` when given.
bool Matches(const Filter& f, std::string_view topic, const Levels& t, Captures* captures) {
  // MQTT: a wildcard in the first level does not match a $-topic ($SYS).
  if (!topic.empty() && topic[0] == '$' && f.levels[0].kind != Level::kLiteral &&
      f.levels[0].kind != Level::kPrefix) {
    return false;
  }
  if (captures) captures->size = 0;
  size_t i = 0;
  for (; i < f.levels.size(); ++i) {
    const Level& l = f.levels[i];
    if (l.kind == Level::kHash) {
      const size_t after = f.levels.size() - i - 1;  // literal levels after #
      if (after == 0) {                              // also the parent: a/# matches a
        if (captures) {
          std::string_view rest;
          if (i < t.size()) rest = topic.substr(static_cast<size_t>(t[i].data() - topic.data()));
          captures->at[captures->size++] = rest;
        }
        return true;
      }
      // A # inside: one or more levels, then the literal levels that follow.
      if (t.size() < i + 1 + after) return false;
      const size_t tail = t.size() - after;
      for (size_t k = 0; k < after; ++k) {
        if (t[tail + k] != f.levels[i + 1 + k].text) return false;
      }
      if (captures) {
        const size_t from = static_cast<size_t>(t[i].data() - topic.data());
        const size_t to =
            static_cast<size_t>(t[tail - 1].data() - topic.data()) + t[tail - 1].size();
        captures->at[captures->size++] = topic.substr(from, to - from);
      }
      return true;
    }
    if (i >= t.size()) return false;
    switch (l.kind) {
      case Level::kPlus:
        if (captures) captures->at[captures->size++] = t[i];
        break;
      case Level::kLiteral:
        if (t[i] != l.text) return false;
        break;
      case Level::kPrefix:
        if (t[i].substr(0, l.text.size()) != l.text) return false;
        if (captures) captures->at[captures->size++] = t[i];
        break;
      case Level::kHash:
        break;
    }
  }
  return i == t.size();
}

Result<std::vector<Segment>> CompileTemplate(const std::string& text) {
  std::vector<Segment> out;
  std::string literal;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '}') return Status::InvalidArgument("'}' without '{' in '" + text + "'");
    if (c != '{') {
      literal += c;
      continue;
    }
    size_t close = text.find('}', i);
    if (close == std::string::npos) {
      return Status::InvalidArgument("'{' without '}' in '" + text + "'");
    }
    std::string name = text.substr(i + 1, close - i - 1);
    Segment s;
    if (name == "topic") {
      s.kind = Segment::kTopic;
    } else if (name == "field") {
      s.kind = Segment::kField;
    } else if (!name.empty() && name.size() <= 3 &&
               name.find_first_not_of("0123456789") == std::string::npos && std::stoi(name) >= 1) {
      s.kind = Segment::kLevel;
      s.level = static_cast<size_t>(std::stoi(name)) - 1;
    } else {
      return Status::InvalidArgument("unknown placeholder {" + name + "} in '" + text +
                                     "' (expected {1}, {2}, ..., {topic} or {field})");
    }
    if (!literal.empty()) out.push_back(Segment{Segment::kLiteral, std::move(literal), 0});
    literal.clear();
    out.push_back(std::move(s));
    i = close;
  }
  if (!literal.empty()) out.push_back(Segment{Segment::kLiteral, std::move(literal), 0});
  return out;
}

// "ENERGY.Total" or "/ENERGY/Total" (RFC 6901, with ~1 and ~0).
Result<Path> CompilePath(const std::string& text) {
  Path p;
  if (text.empty()) return Status::InvalidArgument("an empty field path");
  if (text[0] == '/') {
    size_t start = 1;
    for (;;) {
      size_t slash = text.find('/', start);
      std::string raw =
          text.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      std::string token;
      for (size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] == '~') {
          if (i + 1 < raw.size() && (raw[i + 1] == '0' || raw[i + 1] == '1')) {
            token += raw[i + 1] == '0' ? '~' : '/';
            ++i;
            continue;
          }
          return Status::InvalidArgument("'" + text + "': bad ~ escape in a JSON pointer");
        }
        token += raw[i];
      }
      p.tokens.push_back(std::move(token));
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
  } else {
    size_t start = 0;
    for (;;) {
      size_t dot = text.find('.', start);
      p.tokens.push_back(
          text.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    for (const std::string& t : p.tokens) {
      if (t.empty())
        return Status::InvalidArgument("'" + text + "': an empty part in a dotted path");
    }
  }
  for (const std::string& t : p.tokens) p.dotted += (p.dotted.empty() ? "" : ".") + t;
  return p;
}

// The node a path names, or kNone when a part of it is missing or not an
// object.
FlatJson::Index Find(const FlatJson& doc, const Path& path) {
  FlatJson::Index at = FlatJson::kRoot;
  for (const std::string& t : path.tokens) {
    at = doc.Member(at, t);
    if (at == FlatJson::kNone) break;
  }
  return at;
}

std::string Shown(std::string_view s) { return store::QuoteForMessage(s); }

bool IsBooleanType(std::optional<store::KeyType> t) {
  return t && (*t == store::KeyType::kBoolean || *t == store::KeyType::kUptime);
}

}  // namespace

struct MappingEngine::Compiled {
  MappingRule rule;
  std::string label;
  std::vector<Filter> topics;
  std::vector<Filter> exclude;
  std::vector<Segment> key;
  bool key_has_field = false;
  std::vector<FieldSpec> fields;
  std::vector<std::string> ignore;  // dotted
  std::vector<std::string> invert;  // dotted
  std::optional<Path> time;
  bool json_only = false;  // payload: json
  bool text_only = false;  // payload: text
};

MappingEngine::MappingEngine() = default;
MappingEngine::~MappingEngine() = default;

Result<std::unique_ptr<MappingEngine>> MappingEngine::Compile(std::vector<MappingRule> rules) {
  std::unique_ptr<MappingEngine> engine(new MappingEngine());
  for (size_t i = 0; i < rules.size(); ++i) {
    Compiled c;
    c.rule = std::move(rules[i]);
    MappingRule& r = c.rule;
    c.label = r.name.empty() ? std::to_string(i) : r.name;
    std::string at =
        (r.where.empty() ? "" : r.where + ": ") + "mappings[" + std::to_string(i) + "]";
    auto bad = [&](const std::string& field, const std::string& why) {
      return Status::InvalidArgument(at + "." + field + ": " + why);
    };
    if (r.topics.empty()) return bad("topic", "give at least one topic filter");
    for (const std::string& t : r.topics) {
      Result<Filter> f = CompileFilter(t, true, true);
      if (!f.ok()) return bad("topic", f.status().message());
      c.topics.push_back(std::move(f.value()));
    }
    for (const std::string& t : r.exclude) {
      Result<Filter> f = CompileFilter(t, true, false);
      if (!f.ok()) return bad("exclude", f.status().message());
      c.exclude.push_back(std::move(f.value()));
    }
    if (r.availability) {
      if (!r.type) r.type = store::KeyType::kBoolean;
      if (!IsBooleanType(r.type))
        return bad("type", "an availability rule makes boolean or uptime keys");
      if (r.true_words.empty() && r.false_words.empty()) {
        r.true_words = {"online", "ready", "connected", "up", "true"};
        // Homie 4's $state: ready, or init, disconnected, sleeping, lost,
        // alert (as discovery reads it).
        r.false_words = {"offline", "lost",  "disconnected", "sleeping",
                         "init",    "alert", "down",         "false"};
      }
    }
    const bool several_fields = r.all_fields || r.fields.size() > 1;
    std::string key = r.key;
    if (key.empty()) key = (r.all_fields || !r.fields.empty()) ? "{topic}/{field}" : "{topic}";
    Result<std::vector<Segment>> segs = CompileTemplate(key);
    if (!segs.ok()) return bad("key", segs.status().message());
    c.key = std::move(segs.value());
    for (const Segment& s : c.key) {
      if (s.kind == Segment::kField) c.key_has_field = true;
      if (s.kind != Segment::kLevel) continue;
      for (const Filter& f : c.topics) {
        if (s.level >= f.wildcards) {
          return bad("key", "{" + std::to_string(s.level + 1) + "} but topic '" + f.text +
                                "' has " + std::to_string(f.wildcards) + " wildcards (+ or #)");
        }
      }
    }
    if (several_fields && !c.key_has_field) {
      return bad("key", "'" + key + "' needs {field}: the rule maps several fields");
    }
    if (r.payload == PayloadFormat::kText && (r.all_fields || !r.fields.empty())) {
      return bad("fields", "a text payload has no fields");
    }
    for (const auto& [path, suffix] : r.fields) {
      Result<Path> p = CompilePath(path);
      if (!p.ok()) return bad("fields", p.status().message());
      FieldSpec spec{std::move(p.value()), suffix};
      if (spec.suffix.empty()) spec.suffix = spec.path.dotted;
      c.fields.push_back(std::move(spec));
    }
    for (const std::string& ig : r.ignore) {
      Result<Path> p = CompilePath(ig);
      if (!p.ok()) return bad("ignore", p.status().message());
      c.ignore.push_back(p->dotted);
    }
    for (const std::string& inv : r.invert) {
      Result<Path> p = CompilePath(inv);
      if (!p.ok()) return bad("invert", p.status().message());
      c.invert.push_back(p->dotted);
    }
    if (!r.invert.empty() && r.type && !IsBooleanType(r.type)) {
      return bad("invert", std::string("negates booleans, but the rule's type is ") +
                               store::KeyTypeName(*r.type));
    }
    if (!r.time_field.empty()) {
      if (r.payload == PayloadFormat::kText) return bad("time", "a text payload has no fields");
      Result<Path> p = CompilePath(r.time_field);
      if (!p.ok()) return bad("time", p.status().message());
      c.time = std::move(p.value());
    }
    if ((!r.true_words.empty() || !r.false_words.empty()) && r.type && !IsBooleanType(r.type)) {
      return bad("true", std::string("boolean words need a boolean or uptime type, not ") +
                             store::KeyTypeName(*r.type));
    }
    if (r.strict_words &&
        (r.true_words.empty() || r.false_words.empty() || !IsBooleanType(r.type))) {
      return bad("true", "strict boolean words need true and false words and a boolean type");
    }
    for (const std::string& w : r.true_words) {
      if (std::find(r.false_words.begin(), r.false_words.end(), w) != r.false_words.end()) {
        return bad("false", "'" + w + "' is both true and false");
      }
    }
    if ((r.scale || r.offset) && r.type && *r.type != store::KeyType::kNumeric &&
        *r.type != store::KeyType::kCounter) {
      return bad(
          r.scale ? "scale" : "offset",
          std::string("needs a numeric or counter type, not ") + store::KeyTypeName(*r.type));
    }
    if (!r.number_ops.empty() && r.type && *r.type != store::KeyType::kNumeric &&
        *r.type != store::KeyType::kCounter) {
      return bad("template",
                 std::string("computes a number, but the key is ") + store::KeyTypeName(*r.type));
    }
    if ((r.scale && !std::isfinite(*r.scale)) || (r.offset && !std::isfinite(*r.offset))) {
      return bad(r.scale ? "scale" : "offset", "must be a finite number");
    }
    if (!r.options.is_object()) return bad("options", "expected an object of key options");
    if (!r.options.empty()) {
      Result<store::KeyOptions> o = store::ApplyKeyOptions(
          store::KeyOptions{}, r.type.value_or(store::KeyType::kNumeric), r.options);
      if (!o.ok()) {
        return Status::InvalidArgument(
            at + ": " + o.status().message() +
            (r.type ? "" : " (without `type`, options are checked for a numeric key)"));
      }
    }
    c.json_only = r.payload == PayloadFormat::kJson;
    c.text_only = r.payload == PayloadFormat::kText;
    engine->rules_.push_back(std::move(c));
  }
  return engine;
}

size_t MappingEngine::size() const { return rules_.size(); }
const MappingRule& MappingEngine::rule(size_t i) const { return rules_[i].rule; }
std::string MappingEngine::RuleLabel(size_t i) const { return rules_[i].label; }

std::vector<std::string> MappingEngine::Filters() const {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const Compiled& c : rules_) {
    for (const Filter& f : c.topics) {
      if (seen.insert(f.subscribe).second) out.push_back(f.subscribe);
    }
  }
  return out;
}

struct MappingScratch {
  FlatJson json;
  std::vector<FlatJson::Index> members;  // Expand's stack of sorted members
  std::string path;                      // Expand's dotted path
};

void MappingScratchDeleter::operator()(MappingScratch* scratch) const { delete scratch; }

namespace {

// The state of mapping one message: its topic, levels and payload, parsed
// at most once, into the result's scratch (made when first needed: a text
// payload needs none).
struct MessageContext {
  std::string_view topic;
  const Levels& levels;
  Captures captures;  // of the rule being applied
  std::string_view payload;
  int64_t now_ms;
  std::unique_ptr<MappingScratch, MappingScratchDeleter>* scratch;
  bool parsed = false;
  bool parse_failed = false;

  MappingScratch& Scratch() {
    if (!*scratch) scratch->reset(new MappingScratch());
    return **scratch;
  }
  const FlatJson* Json() {
    if (!parsed) {
      parsed = true;
      parse_failed = !Scratch().json.Parse(payload);
    }
    return parse_failed ? nullptr : &Scratch().json;
  }
};

}  // namespace

// The work of one rule on one message. Appends its changes to `out`, or
// returns a refusal (the caller drops every change of the message then).
class RuleApplier {
 public:
  using Compiled = MappingEngine::Compiled;
  RuleApplier(const Compiled& c, size_t index, MessageContext& m, std::vector<MappedChange>* out,
              std::vector<std::string>* spare_keys, size_t* unknown_skipped)
      : c_(c),
        r_(c.rule),
        index_(index),
        m_(m),
        out_(out),
        spare_keys_(spare_keys),
        unknown_skipped_(unknown_skipped) {}

  std::optional<MappingRefusal> Run() {
    std::string_view trimmed = store::TrimAscii(m_.payload);
    if (trimmed.empty()) return std::nullopt;  // clears a retained message; nothing to store
    bool as_json = c_.json_only ||
                   (!c_.text_only && (trimmed[0] == '{' || trimmed[0] == '[' || trimmed[0] == '"'));
    if (!as_json) {
      if (c_.key_has_field || !c_.fields.empty() || r_.all_fields) {
        return Refuse("not_object", "payload " + Shown(trimmed) + " is not a JSON object");
      }
      if (c_.time) return Refuse("not_object", "payload " + Shown(trimmed) + " has no time field");
      const bool read = r_.expression
                            ? FromTemplate(TemplateValue::String(std::string(trimmed)), "payload")
                            : FromText(trimmed, "payload");
      if (!read || !Emit("")) return refusal_;
      return std::nullopt;
    }
    doc_ = m_.Json();
    if (!doc_) return Refuse("bad_json", "payload " + Shown(trimmed) + " is not valid JSON");
    const FlatJson& doc = *doc_;
    constexpr FlatJson::Index kRoot = FlatJson::kRoot;
    const bool is_object = doc.kind(kRoot) == FlatJson::Kind::kObject;
    if (c_.time && is_object) {
      const FlatJson::Index t = Find(doc, *c_.time);
      if (t != FlatJson::kNone && !ReadTime(t)) return refusal_;
    }
    if (is_object) {
      if (!c_.fields.empty()) {
        for (const FieldSpec& f : c_.fields) {
          const FlatJson::Index v = Find(doc, f.path);
          // Devices often leave fields out.
          if (v == FlatJson::kNone || doc.kind(v) == FlatJson::Kind::kNull) {
            if (r_.expression) {
              // Only a template that tests for the field (is defined,
              // default) says what a missing one is.
              if (!r_.expression->reads_missing()) continue;
              if (!FromTemplate(TemplateValue::Undefined(), f.path.dotted) || !Emit(f.suffix)) {
                return refusal_;
              }
              continue;
            }
            if (!r_.missing_value) continue;
            if (!FromMissing(f.path.dotted) || !Emit(f.suffix)) return refusal_;
            continue;
          }
          if (r_.expression && doc.IsScalar(v)) {
            if (!FromTemplate(TemplateInput(v), f.path.dotted) || !Emit(f.suffix)) return refusal_;
            continue;
          }
          // A template reads an array whole, as a list (shellies-discovery-
          // gen2's `"overpower" in value_json.get("errors", [])`), never
          // element by element past the template.
          if (r_.expression && doc.kind(v) == FlatJson::Kind::kArray) {
            TemplateValue list;
            if (!TemplateList(v, f.path.dotted, &list)) return refusal_;
            if (!FromTemplate(list, f.path.dotted) || !Emit(f.suffix)) return refusal_;
            continue;
          }
          if (doc.kind(v) == FlatJson::Kind::kArray) {
            if (!FromArray(v, f)) return refusal_;
            continue;
          }
          if (!doc.IsScalar(v)) {
            return Refuse("not_scalar", "field '" + f.path.dotted + "' is " + doc.TypeName(v) +
                                            ", not a number, boolean or string");
          }
          bool skip = false;
          if (!FromJson(v, f.path.dotted, &skip)) return refusal_;
          if (!skip && !Emit(f.suffix)) return refusal_;
        }
        return std::nullopt;
      }
      if (r_.all_fields || c_.key_has_field) {
        std::string& path = m_.Scratch().path;
        path.clear();
        if (!Expand(kRoot, &path)) return refusal_;
        return std::nullopt;
      }
      if (r_.availability) {
        const FlatJson::Index state = doc.Member(kRoot, "state");
        if (state != FlatJson::kNone && doc.IsScalar(state)) {
          bool skip = false;
          if (!FromJson(state, "state", &skip)) return refusal_;
          return skip || Emit("") ? std::nullopt : refusal_;
        }
      }
      return Refuse("not_scalar", "payload is a JSON object; the rule names no fields");
    }
    if (c_.key_has_field || !c_.fields.empty() || r_.all_fields) {
      return Refuse("not_object", std::string("payload is a JSON ") + doc.TypeName(kRoot) +
                                      ", not an object with fields");
    }
    if (!doc.IsScalar(kRoot)) {
      return Refuse("not_scalar", std::string("payload is a JSON ") + doc.TypeName(kRoot) +
                                      ", not a number, boolean or string");
    }
    bool skip = false;
    if (!FromJson(kRoot, "payload", &skip)) return refusal_;
    if (skip) return std::nullopt;
    return Emit("") ? std::nullopt : refusal_;
  }

 private:
  std::optional<MappingRefusal> Refuse(const char* reason, std::string message) {
    refusal_ = MappingRefusal{index_, reason, std::move(message)};
    return refusal_;
  }

  // A named field holding an array of scalars, one per channel (Tasmota's
  // "Power":[12,34] on a two-channel device): one change per element, the
  // key suffix followed by /1, /2, ... (channels counted from 1, as Tasmota
  // numbers them); a null element is skipped, an object or array refused.
  bool FromArray(FlatJson::Index array, const FieldSpec& f) {
    const FlatJson& doc = *doc_;
    std::vector<FlatJson::Index> elements;
    doc.AppendElements(array, &elements);
    std::string what;
    std::string suffix;
    for (size_t n = 0; n < elements.size(); ++n) {
      const FlatJson::Index e = elements[n];
      what = f.path.dotted + "[" + std::to_string(n) + "]";
      if (doc.kind(e) == FlatJson::Kind::kNull) continue;
      if (!doc.IsScalar(e)) {
        Refuse("not_scalar",
               "field '" + what + "' is " + doc.TypeName(e) + ", not a number, boolean or string");
        return false;
      }
      bool skip = false;
      if (!FromJson(e, f.path.dotted, &skip)) return false;
      // With {field} the channel follows the suffix; without (a key
      // template naming one key, as a discovered entity's), the key.
      const std::string channel = "/" + std::to_string(n + 1);
      suffix = c_.key_has_field ? f.suffix + channel : f.suffix;
      key_tail_ = c_.key_has_field ? std::string_view() : std::string_view(channel);
      const bool ok = skip || Emit(suffix);
      key_tail_ = {};
      if (!ok) return false;
    }
    return true;
  }

  // A JSON array of scalars as a template reads it: a list. Nested
  // arrays and objects are refused (templates read one field's value).
  bool TemplateList(FlatJson::Index array, std::string_view what, TemplateValue* out) {
    const FlatJson& doc = *doc_;
    std::vector<FlatJson::Index> elements;
    doc.AppendElements(array, &elements);
    out->kind = TemplateValue::Kind::kList;
    out->items.clear();
    for (size_t n = 0; n < elements.size(); ++n) {
      const FlatJson::Index e = elements[n];
      if (doc.kind(e) != FlatJson::Kind::kNull && !doc.IsScalar(e)) {
        Refuse("not_scalar", "field '" + std::string(what) + "[" + std::to_string(n) + "]' is " +
                                 doc.TypeName(e) +
                                 ", not a number, boolean or string for the template's list");
        return false;
      }
      out->items.push_back(TemplateInput(e));
    }
    return true;
  }

  // A JSON scalar as a template reads it (Python's types).
  TemplateValue TemplateInput(FlatJson::Index v) const {
    const FlatJson& doc = *doc_;
    switch (doc.kind(v)) {
      case FlatJson::Kind::kBoolean:
        return TemplateValue::Bool(doc.Boolean(v));
      case FlatJson::Kind::kInteger:
      case FlatJson::Kind::kUnsigned:
        return TemplateValue::Int(doc.Number(v));
      case FlatJson::Kind::kFloat:
        return TemplateValue::Float(doc.Number(v));
      case FlatJson::Kind::kString:
        return TemplateValue::String(std::string(doc.String(v)));
      default:
        return TemplateValue::None();
    }
  }

  // The rule's template (HaExpression) evaluated for `in`, its result read
  // as the value: text as a payload's text is, a boolean as Home Assistant
  // renders it ("True") where the rule has words. Nothing (undefined, None,
  // empty text, nan) is skipped as unknown; a template that fails (float of
  // a word without a default) refuses the value.
  bool FromTemplate(const TemplateValue& in, std::string_view what) {
    Result<TemplateValue> out = r_.expression->Evaluate(in);
    if (!out.ok()) {
      Refuse("wrong_type", std::string(what) + ": the value template " + out.status().message());
      return false;
    }
    switch (out->kind) {
      case TemplateValue::Kind::kUndefined:
      case TemplateValue::Kind::kNone:
        unknown_ = true;
        return true;
      case TemplateValue::Kind::kString:
        if (store::TrimAscii(out->text).empty()) {
          unknown_ = true;
          return true;
        }
        return FromText(store::TrimAscii(out->text), what);
      case TemplateValue::Kind::kBool:
        if (r_.strict_words) {
          // Rendered "True"/"False"; a word from a JSON boolean (payload_on:
          // true) is "true": ignoring case, as for a JSON boolean value.
          const char* text = out->number != 0 ? "True" : "False";
          for (const std::string& w : r_.true_words) {
            if (store::EqualsIgnoreCase(w, text)) return SetBool(true, what);
          }
          for (const std::string& w : r_.false_words) {
            if (store::EqualsIgnoreCase(w, text)) return SetBool(false, what);
          }
          return RefuseWord(text, what);
        }
        value_ = out->number != 0;
        return Finish(what);
      case TemplateValue::Kind::kInt:
      case TemplateValue::Kind::kFloat:
        if (std::isnan(out->number)) {
          unknown_ = true;
          return true;
        }
        if (r_.strict_words || !std::isfinite(out->number)) {
          return FromText(RenderTemplateValue(*out), what);
        }
        value_ = out->number;
        return Finish(what);
      case TemplateValue::Kind::kList:
      case TemplateValue::Kind::kTuple:
      case TemplateValue::Kind::kDict:
      case TemplateValue::Kind::kNamespace:
        Refuse("wrong_type", std::string(what) + ": the value template renders " +
                                 RenderTemplateValue(*out) + ", not one value");
        return false;
    }
    return false;
  }

  // The rule's missing_value for a field the payload lacks.
  bool FromMissing(std::string_view what) {
    const store::InputValue& m = *r_.missing_value;
    if (const std::string* text = std::get_if<std::string>(&m)) return FromText(*text, what);
    if (const bool* b = std::get_if<bool>(&m)) {
      if (r_.strict_words) return FromText(*b ? "True" : "False", what);
      value_ = *b;
      return Finish(what);
    }
    value_ = std::get<double>(m);
    return Finish(what);
  }

  bool Ignored(const std::string& dotted) const {
    for (const std::string& ig : c_.ignore) {
      if (ig == dotted) return true;
    }
    return c_.time && c_.time->dotted == dotted;
  }

  // "*": every scalar below object `obj`, nested names dotted, in the order
  // of the names (as nlohmann's DOM, a std::map, iterated them).
  bool Expand(FlatJson::Index obj, std::string* path) {
    const FlatJson& doc = *doc_;
    std::vector<FlatJson::Index>& members = m_.Scratch().members;
    const size_t first = members.size();
    doc.AppendMembersSorted(obj, &members);
    const size_t last = members.size();
    if (obj == FlatJson::kRoot) out_->reserve(out_->size() + (last - first));
    const size_t base = path->size();
    bool ok = true;
    for (size_t i = first; ok && i < last; ++i) {
      const FlatJson::Index v = members[i];
      if (base) path->push_back('.');
      path->append(doc.Name(v));
      if (!Ignored(*path)) {
        const FlatJson::Kind kind = doc.kind(v);
        if (kind == FlatJson::Kind::kObject) {
          ok = Expand(v, path);
        } else if (kind != FlatJson::Kind::kArray && kind != FlatJson::Kind::kNull) {
          bool skip = false;
          ok = FromJson(v, *path, &skip) && (skip || Emit(*path));
        }
      }
      path->resize(base);
    }
    members.resize(first);
    return ok;
  }

  bool ReadTime(FlatJson::Index t) {
    const FlatJson& doc = *doc_;
    const FlatJson::Kind kind = doc.kind(t);
    if (kind == FlatJson::Kind::kNull) return true;
    if (kind == FlatJson::Kind::kInteger || kind == FlatJson::Kind::kUnsigned ||
        kind == FlatJson::Kind::kFloat) {
      double v = doc.Number(t);
      if (!std::isfinite(v) || v < 0 || v > 1e14) {
        Refuse("bad_time", "time field '" + c_.time->dotted + "' is out of range");
        return false;
      }
      time_ms_ = v > 1e11 ? std::llround(v) : std::llround(v * 1000.0);
      return CheckClock();
    }
    if (kind == FlatJson::Kind::kString) {
      Result<int64_t> ms = store::ParseTimeParam(doc.String(t), m_.now_ms);
      if (!ms.ok()) {
        Refuse("bad_time", "time field '" + c_.time->dotted + "': " + ms.status().message());
        return false;
      }
      time_ms_ = *ms;
      return CheckClock();
    }
    Refuse("bad_time",
           "time field '" + c_.time->dotted + "' is " + doc.TypeName(t) + ", not a number or text");
    return false;
  }

  // A time before 2000 is a device clock not set yet: the arrival time
  // stands in for it (docs/mapping.md#times).
  bool CheckClock() {
    if (*time_ms_ < kEarliestDeviceTimeMs) {
      time_ms_.reset();
      clock_unset_ = true;
    }
    return true;
  }

  // A scalar node of the payload.
  bool FromJson(FlatJson::Index v, std::string_view what, bool* skip) {
    const FlatJson& doc = *doc_;
    const FlatJson::Kind kind = doc.kind(v);
    if (r_.strict_words && kind != FlatJson::Kind::kNull) return FromStrict(v, what);
    switch (kind) {
      case FlatJson::Kind::kNull:
        *skip = true;
        return true;
      case FlatJson::Kind::kBoolean:
        value_ = doc.Boolean(v);
        return Finish(what);
      case FlatJson::Kind::kInteger:
      case FlatJson::Kind::kUnsigned:
      case FlatJson::Kind::kFloat:
        value_ = doc.Number(v);
        return Finish(what);
      case FlatJson::Kind::kString:
        return FromText(doc.String(v), what);
      case FlatJson::Kind::kObject:
      case FlatJson::Kind::kArray:
        break;
    }
    Refuse("not_scalar", std::string(what) + " is " + doc.TypeName(v));
    return false;
  }

  // A JSON scalar in its text form against the words only (strict_words).
  bool FromStrict(FlatJson::Index v, std::string_view what) {
    const FlatJson& doc = *doc_;
    switch (doc.kind(v)) {
      case FlatJson::Kind::kBoolean: {
        const char* text = doc.Boolean(v) ? "true" : "false";
        for (const std::string& w : r_.true_words) {
          if (store::EqualsIgnoreCase(w, text)) return SetBool(true, what);
        }
        for (const std::string& w : r_.false_words) {
          if (store::EqualsIgnoreCase(w, text)) return SetBool(false, what);
        }
        return RefuseWord(text, what);
      }
      case FlatJson::Kind::kInteger:
      case FlatJson::Kind::kUnsigned:
      case FlatJson::Kind::kFloat:
        return FromText(doc.NumberText(v), what);
      case FlatJson::Kind::kString:
        return FromText(doc.String(v), what);
      case FlatJson::Kind::kNull:
      case FlatJson::Kind::kObject:
      case FlatJson::Kind::kArray:
        break;
    }
    Refuse("not_scalar", std::string(what) + " is " + doc.TypeName(v));
    return false;
  }

  bool RefuseWord(std::string_view s, std::string_view what) {
    std::string words;
    for (const auto& w : r_.true_words) words += (words.empty() ? "" : ", ") + w;
    words += " / ";
    for (const auto& w : r_.false_words) words += w + (&w == &r_.false_words.back() ? "" : ", ");
    Refuse("bad_boolean", std::string(what) + " " + Shown(s) +
                              " is not a boolean word of this rule (" + words + ")");
    return false;
  }

  bool FromText(std::string_view s, std::string_view what) {
    for (const std::string& w : r_.true_words) {
      if (w == s) return SetBool(true, what);
    }
    for (const std::string& w : r_.false_words) {
      if (w == s) return SetBool(false, what);
    }
    if (r_.strict_words) {
      // Home Assistant's PAYLOAD_NONE: the state is unknown.
      if (s == "None") {
        unknown_ = true;
        return true;
      }
      return RefuseWord(s, what);
    }
    for (const std::string& w : r_.true_words) {
      if (store::EqualsIgnoreCase(w, s)) return SetBool(true, what);
    }
    for (const std::string& w : r_.false_words) {
      if (store::EqualsIgnoreCase(w, s)) return SetBool(false, what);
    }
    if (IsBooleanType(r_.type)) {
      if (!r_.true_words.empty() || !r_.false_words.empty()) return RefuseWord(s, what);
      Result<bool> b = store::ParseBoolean(s);
      if (!b.ok()) {
        Refuse("bad_boolean", std::string(what) + ": " + b.status().message());
        return false;
      }
      value_ = *b;
      return Finish(what);
    }
    if (!r_.type || *r_.type == store::KeyType::kNumeric || *r_.type == store::KeyType::kCounter) {
      // ESPHome publishes `nan` for a sensor without a reading. The value
      // model has no "unknown", and text would make or break the key's
      // type: skipped, counted (docs/mapping.md#values-and-types).
      if (store::EqualsIgnoreCase(s, "nan")) {
        unknown_ = true;
        return true;
      }
      Result<double> d = store::ParseNumber(s);
      if (d.ok()) {
        value_ = *d;
        return Finish(what);
      }
      if (r_.type) {
        Refuse("wrong_type", std::string(what) + ": " + d.status().message());
        return false;
      }
    }
    value_ = std::string(s);
    return Finish(what);
  }

  bool SetBool(bool b, std::string_view what) {
    value_ = b;
    return Finish(what);
  }

  // Scale, offset and the rule's type.
  bool Finish(std::string_view what) {
    if (double* d = std::get_if<double>(&value_)) {
      if (r_.scale) *d *= *r_.scale;
      if (r_.offset) *d += *r_.offset;
      if (!std::isfinite(*d)) {
        Refuse("wrong_type", std::string(what) + " is not a finite number after scale and offset");
        return false;
      }
    }
    if (!r_.number_ops.empty()) {
      double* d = std::get_if<double>(&value_);
      if (!d) {
        Refuse("wrong_type", std::string(what) + " is no number for the template to compute with");
        return false;
      }
      Result<double> x = ApplyNumberOps(r_.number_ops, *d);
      if (!x.ok()) {
        Refuse("wrong_type", std::string(what) + ": " + x.status().message());
        return false;
      }
      *d = *x;
    }
    if (!c_.invert.empty()) {
      const bool named = std::find(c_.invert.begin(), c_.invert.end(), what) != c_.invert.end();
      if (named) {
        bool* b = std::get_if<bool>(&value_);
        if (!b) {
          Refuse("bad_boolean", std::string(what) + " is to be negated (invert) but is no boolean");
          return false;
        }
        *b = !*b;
      }
    }
    if (r_.type) {
      Result<store::Value> v = store::CoerceValue(*r_.type, value_);
      if (!v.ok()) {
        Refuse(IsBooleanType(r_.type) ? "bad_boolean" : "wrong_type",
               std::string(what) + ": " + v.status().message());
        return false;
      }
      value_ = std::move(v.value());
    } else if (const std::string* s = std::get_if<std::string>(&value_)) {
      if (!store::IsValidUtf8(*s)) {
        Refuse("wrong_type", std::string(what) + " is not valid UTF-8");
        return false;
      }
    }
    if (!r_.event_types.empty()) return CheckEventType(what);
    return true;
  }

  // An event entity's value must be one of its event_types, exactly (Home
  // Assistant's EventEntity refuses any other, and MQTT's event logs
  // "Invalid event type" and drops the message).
  bool CheckEventType(std::string_view what) {
    // A string key's value is text by now (CoerceValue above).
    const std::string* s = std::get_if<std::string>(&value_);
    if (s && std::find(r_.event_types.begin(), r_.event_types.end(), *s) != r_.event_types.end()) {
      return true;
    }
    std::string listed;
    for (const std::string& t : r_.event_types) listed += (listed.empty() ? "" : ", ") + t;
    Refuse("unknown_event_type", std::string(what) + " " + (s ? Shown(*s) : "(no text)") +
                                     " is not one of the entity's event_types (" + listed +
                                     "); Home Assistant ignores such an event too");
    return false;
  }

  bool Emit(std::string_view field) {
    if (unknown_) {
      unknown_ = false;
      ++*unknown_skipped_;
      return true;
    }
    std::string key;
    if (!spare_keys_->empty()) {  // a buffer of an earlier message: no allocation
      key = std::move(spare_keys_->back());
      spare_keys_->pop_back();
      key.clear();
    } else {
      key.reserve(64);
    }
    for (const Segment& s : c_.key) {
      switch (s.kind) {
        case Segment::kLiteral:
          key += s.text;
          break;
        case Segment::kTopic:
          key += m_.topic;
          break;
        case Segment::kField:
          key += field;
          break;
        case Segment::kLevel:  // checked by Compile: every filter has the wildcard
          key += m_.captures.at[s.level];
          break;
      }
    }
    key += key_tail_;
    // Plain ASCII without NUL and wildcards (nearly every key) is a valid
    // name of the right length; anything else gets the full check.
    // Without an early exit the loop is branch-free (and vectorized).
    bool odd = key.empty() || key.size() > store::kMaxKeyNameBytes;
    for (const char ch : key) {
      const unsigned char b = static_cast<unsigned char>(ch);
      odd |= (b == 0) | (b >= 0x80) | (b == '+') | (b == '#');
    }
    Status ok = odd ? store::ValidateKeyName(key) : Status::Ok();
    if (!ok.ok()) {
      Refuse("bad_key", "key " + Shown(key) + ": " + ok.message());
      return false;
    }
    out_->push_back(
        MappedChange{std::move(key), std::move(value_), time_ms_, index_, clock_unset_});
    return true;
  }

  const Compiled& c_;
  const MappingRule& r_;
  const size_t index_;
  MessageContext& m_;
  std::vector<MappedChange>* out_;
  std::vector<std::string>* spare_keys_;
  size_t* unknown_skipped_;
  bool unknown_ = false;           // the value read said "unknown": Emit skips it
  std::string_view key_tail_;      // put after the key by Emit (an array's channel)
  const FlatJson* doc_ = nullptr;  // the parsed payload, once Run has parsed it
  store::InputValue value_;
  std::optional<int64_t> time_ms_;
  bool clock_unset_ = false;
  std::optional<MappingRefusal> refusal_;
};

MappingResult MappingEngine::Map(std::string_view topic, std::string_view payload,
                                 int64_t now_ms) const {
  MappingResult result;
  MapImpl(topic, payload, now_ms, /*each=*/false, &result);
  return result;
}

namespace {

// Empties a result for the next message, keeping its buffers.
void Recycle(MappingResult* out) {
  for (MappedChange& c : out->changes) out->spare_keys.push_back(std::move(c.key));
  out->changes.clear();
  out->matched.clear();
  out->refusal.reset();
  out->refusals.clear();
  out->unknown_skipped = 0;
}

}  // namespace

void MappingEngine::MapInto(std::string_view topic, std::string_view payload, int64_t now_ms,
                            MappingResult* out) const {
  Recycle(out);
  MapImpl(topic, payload, now_ms, /*each=*/false, out);
}

MappingResult MappingEngine::MapEach(std::string_view topic, std::string_view payload,
                                     int64_t now_ms) const {
  MappingResult result;
  MapImpl(topic, payload, now_ms, /*each=*/true, &result);
  return result;
}

void MappingEngine::MapEachInto(std::string_view topic, std::string_view payload, int64_t now_ms,
                                MappingResult* out) const {
  Recycle(out);
  MapImpl(topic, payload, now_ms, /*each=*/true, out);
}

void MappingEngine::MapImpl(std::string_view topic, std::string_view payload, int64_t now_ms,
                            bool each, MappingResult* out) const {
  MappingResult& result = *out;
  const Levels levels(topic);
  MessageContext m{topic, levels, {}, payload, now_ms, &result.scratch};
  for (size_t i = 0; i < rules_.size(); ++i) {
    const Compiled& c = rules_[i];
    bool hit = false;
    for (const Filter& f : c.topics) {
      if (Matches(f, topic, levels, &m.captures)) {
        hit = true;
        break;
      }
    }
    if (!hit) continue;
    for (const Filter& f : c.exclude) {
      if (Matches(f, topic, levels, nullptr)) {
        hit = false;
        break;
      }
    }
    if (!hit) continue;
    result.matched.push_back(i);
    const size_t changes_before = result.changes.size();
    std::optional<MappingRefusal> refused;
    if (payload.size() > max_payload_bytes_) {
      refused =
          MappingRefusal{i, "too_large",
                         "payload of " + std::to_string(payload.size()) +
                             " bytes is over the limit of " + std::to_string(max_payload_bytes_)};
    } else {
      const size_t unknown_before = result.unknown_skipped;
      refused =
          RuleApplier(c, i, m, &result.changes, &result.spare_keys, &result.unknown_skipped).Run();
      if (refused) result.unknown_skipped = unknown_before;
    }
    if (refused && each) {
      result.changes.resize(changes_before);
      result.refusals.push_back(std::move(*refused));
      continue;
    }
    if (refused) {
      result.changes.clear();
      result.unknown_skipped = 0;
      result.refusal = std::move(refused);
      return;
    }
    if (!c.rule.continue_matching && !each) break;
  }
}

bool TopicMatchesFilter(std::string_view filter, std::string_view topic) {
  Result<Filter> f = CompileFilter(std::string(filter), false, false);
  if (!f.ok()) return false;
  return Matches(*f, topic, Levels(topic), nullptr);
}

}  // namespace komoku::bridge
