#include "wire/import_format.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "core/civil_time.h"
#include "core/value.h"
#include "wire/time_param.h"

namespace komoku::store {
namespace {

// A record longer than this (a quoted field never closed swallowing the
// rest of the file) is refused instead of read on.
constexpr size_t kMaxRecordBytes = 1 << 20;

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Reads `s` as a whole int64; false on anything else or overflow.
bool ToInt64(std::string_view s, int64_t* out) {
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, *out);
  return ec == std::errc() && ptr == end;
}

Status LineError(const std::string& what) { return Status::InvalidArgument(what); }

// Where the next unescaped `stop` character is in `s` from `pos` (npos when
// none); a backslash escapes the character after it.
size_t FindUnescaped(std::string_view s, size_t pos, std::string_view stops) {
  for (size_t i = pos; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      ++i;
      continue;
    }
    if (stops.find(s[i]) != std::string_view::npos) return i;
  }
  return std::string_view::npos;
}

// Line protocol's identifiers: a backslash before one of `escapable` stands
// for that character; any other backslash is itself.
std::string Unescape(std::string_view s, std::string_view escapable) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && escapable.find(s[i + 1]) != std::string_view::npos) {
      ++i;
    }
    out += s[i];
  }
  return out;
}

std::string Escape(std::string_view s, std::string_view special) {
  std::string out;
  out.reserve(s.size() + 2);
  for (char c : s) {
    if (special.find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

// A field value of line protocol (not a string: those are read by the
// caller).
Result<InputValue> LineFieldValue(std::string_view v) {
  if (v.empty()) return LineError("a field has no value");
  if ((v.back() == 'i' || v.back() == 'u') && v.size() > 1) {
    int64_t n = 0;
    if (!ToInt64(v.substr(0, v.size() - 1), &n)) {
      return LineError("field value " + QuoteForMessage(v) + " is not an integer");
    }
    return InputValue(static_cast<double>(n));
  }
  if (v == "t" || v == "T" || v == "true" || v == "True" || v == "TRUE") return InputValue(true);
  if (v == "f" || v == "F" || v == "false" || v == "False" || v == "FALSE") {
    return InputValue(false);
  }
  Result<double> d = ParseNumber(v);
  if (!d.ok() || v.front() == ' ' || v.back() == ' ') {
    return LineError("field value " + QuoteForMessage(v) +
                     " is not a number, 12i, a boolean or a \"string\"");
  }
  return InputValue(*d);
}

std::string FormatNumber(double d) { return ValueToText(Value(d)); }

std::string Rfc3339Ms(int64_t ms) {
  char frac[8];
  std::snprintf(frac, sizeof(frac), ".%03dZ", static_cast<int>(((ms % 1000) + 1000) % 1000));
  return FormatUtc(ms, "%Y-%m-%dT%H:%M:%S") + frac;
}

}  // namespace

std::optional<ImportFormat> ImportFormatNamed(std::string_view name) {
  if (name == "csv") return ImportFormat::kCsv;
  if (name == "tsv") return ImportFormat::kTsv;
  if (name == "line") return ImportFormat::kLine;
  return std::nullopt;
}

ImportFormat ImportFormatOfPath(std::string_view path) {
  if (EndsWith(path, ".tsv") || EndsWith(path, ".tab")) return ImportFormat::kTsv;
  if (EndsWith(path, ".lp") || EndsWith(path, ".line") || EndsWith(path, ".influx")) {
    return ImportFormat::kLine;
  }
  return ImportFormat::kCsv;
}

Result<int64_t> ParseImportTime(std::string_view text) {
  text = TrimAscii(text);
  auto bad = [&](const char* why) {
    return Status::InvalidArgument(
        "time " + QuoteForMessage(text) + " " + why +
        " (expected RFC 3339, epoch seconds, or epoch milliseconds of 12 digits or more)");
  };
  if (text.empty()) return bad("is empty");
  if (text.size() >= 10 && text[4] == '-') {
    Result<int64_t> t = ParseTimeParam(text, 0);
    if (t.ok() && *t < 0) return bad("is before 1970");
    return t;
  }
  if (AllDigits(text)) {
    int64_t n = 0;
    if (!ToInt64(text, &n)) return bad("is out of range");
    if (n >= 100000000000LL) return n;  // milliseconds
    return n * 1000;
  }
  const size_t dot = text.find('.');
  if (dot == std::string_view::npos || text.find('.', dot + 1) != std::string_view::npos ||
      !AllDigits(text.substr(0, dot)) ||
      (dot + 1 < text.size() && !AllDigits(text.substr(dot + 1)))) {
    return bad("is not a time");
  }
  int64_t secs = 0;
  if (!ToInt64(text.substr(0, dot), &secs) || secs >= 100000000000LL) {
    return bad("is out of range");
  }
  // The fraction to the nearest millisecond, in integers: 0.0005 s is 1 ms.
  int64_t ms = 0, scale = 100;
  const std::string_view frac = text.substr(dot + 1);
  for (size_t i = 0; i < frac.size() && i < 3; ++i, scale /= 10) ms += (frac[i] - '0') * scale;
  if (frac.size() > 3 && frac[3] >= '5') ++ms;
  return secs * 1000 + ms;
}

bool CsvQuotesBalanced(std::string_view text) {
  size_t quotes = 0;
  for (char c : text) quotes += c == '"';
  return quotes % 2 == 0;
}

Status SplitCsvRecord(std::string_view record, char sep, std::vector<std::string>* fields) {
  fields->clear();
  if (EndsWith(record, "\r\n")) {
    record.remove_suffix(2);
  } else if (EndsWith(record, "\n") || EndsWith(record, "\r")) {
    record.remove_suffix(1);
  }
  size_t i = 0;
  while (true) {
    std::string field;
    if (i < record.size() && record[i] == '"') {
      ++i;
      while (true) {
        if (i >= record.size()) {
          return Status::InvalidArgument("field " + std::to_string(fields->size() + 1) +
                                         ": a quoted field is not closed");
        }
        if (record[i] == '"') {
          if (i + 1 < record.size() && record[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        field += record[i++];
      }
      if (i < record.size() && record[i] != sep) {
        return Status::InvalidArgument("field " + std::to_string(fields->size() + 1) +
                                       ": text after the closing quote");
      }
    } else {
      const size_t end = std::min(record.find(sep, i), record.size());
      field.assign(record.substr(i, end - i));
      if (field.find('"') != std::string::npos) {
        return Status::InvalidArgument("field " + std::to_string(fields->size() + 1) +
                                       ": a quote inside an unquoted field (quote the field and "
                                       "double the quote)");
      }
      i = end;
    }
    fields->push_back(std::move(field));
    if (i >= record.size()) return Status::Ok();
    ++i;  // the separator
  }
}

bool IsCsvHeader(const std::vector<std::string>& fields) {
  return fields.size() >= 3 && EqualsIgnoreCase(TrimAscii(fields[0]), "key") &&
         EqualsIgnoreCase(TrimAscii(fields[1]), "time") &&
         EqualsIgnoreCase(TrimAscii(fields[2]), "value");
}

Result<ImportRow> CsvRow(const std::vector<std::string>& fields) {
  if (fields.size() < 3 || fields.size() > 4) {
    return Status::InvalidArgument(std::to_string(fields.size()) +
                                   " fields, expected key,time,value[,type]");
  }
  ImportRow row;
  row.key = fields[0];
  if (row.key.empty()) return Status::InvalidArgument("no key (the first field is empty)");
  Result<int64_t> t = ParseImportTime(fields[1]);
  if (!t.ok()) return t.status();
  row.time_ms = *t;
  row.value = InputValue(fields[2]);
  if (fields.size() == 4 && !TrimAscii(fields[3]).empty()) {
    Result<KeyType> type = ParseKeyType(TrimAscii(fields[3]));
    if (!type.ok()) return type.status();
    row.type = *type;
  }
  return row;
}

bool IsInfluxCsvHeader(const std::vector<std::string>& fields) {
  if (fields.size() >= 4 && fields[0] == "name" && fields[1] == "tags" && fields[2] == "time") {
    return true;
  }
  return fields.size() >= 3 && fields[0] == "name" && fields[1] == "time";
}

Result<int64_t> InfluxCsvTimeMs(std::string_view text) {
  text = TrimAscii(text);
  int64_t n = 0;
  // The CLI's -precision, told by the size: after 2001-09-09 a time has 19
  // digits in ns, 16 in us; milliseconds, seconds and RFC 3339 are the
  // forms every import reads (ParseImportTime).
  if (ToInt64(text, &n) && n >= 100'000'000'000'000) {
    return n >= 100'000'000'000'000'000 ? n / 1'000'000 : n / 1'000;
  }
  return ParseImportTime(text);
}

Status InfluxCsvRows(const std::vector<std::string>& header, const std::vector<std::string>& fields,
                     std::vector<ImportRow>* rows) {
  rows->clear();
  if (fields.size() != header.size()) {
    return Status::InvalidArgument(std::to_string(fields.size()) + " fields, the header has " +
                                   std::to_string(header.size()));
  }
  const bool tagged = header[1] == "tags";
  const size_t time_col = tagged ? 2 : 1;
  std::string key = fields[0];
  if (key.empty()) return Status::InvalidArgument("no measurement (the name field is empty)");
  std::optional<KeyType> type;
  // The tags: key=value pairs separated by commas (InfluxDB writes them
  // sorted by key and unescaped; a value may be empty).
  std::string_view tags = tagged ? std::string_view(fields[1]) : std::string_view();
  while (!tags.empty()) {
    const size_t comma = tags.find(',');
    const std::string_view tag = tags.substr(0, comma);
    tags = comma == std::string_view::npos ? std::string_view() : tags.substr(comma + 1);
    const size_t eq = tag.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return Status::InvalidArgument("tag " + QuoteForMessage(tag) + " is not key=value");
    }
    const std::string_view value = tag.substr(eq + 1);
    if (tag.substr(0, eq) == "komoku_type" && !value.empty()) {
      Result<KeyType> t = ParseKeyType(value);
      if (!t.ok()) return t.status();
      type = *t;
      continue;
    }
    if (value.empty()) continue;  // a tag other points of the measurement have
    key += '/';
    key += value;
  }
  Result<int64_t> time_ms = InfluxCsvTimeMs(fields[time_col]);
  if (!time_ms.ok()) return time_ms.status();
  for (size_t i = time_col + 1; i < fields.size(); ++i) {
    if (fields[i].empty()) continue;
    ImportRow row;
    row.key = header[i] == "value" ? key : key + "/" + header[i];
    row.time_ms = *time_ms;
    row.value = InputValue(fields[i]);
    row.type = type;
    rows->push_back(std::move(row));
  }
  return Status::Ok();
}

std::optional<int64_t> LinePrecisionNamed(std::string_view name) {
  if (name == "ns" || name == "n") return 1;
  if (name == "us" || name == "u") return 1000;
  if (name == "ms") return 1000000;
  if (name == "s") return 1000000000;
  return std::nullopt;
}

Status ParseLineProtocol(std::string_view line, int64_t ns_per_unit, std::vector<ImportRow>* rows) {
  rows->clear();
  // The series: measurement and tags, up to the first unescaped space.
  const size_t series_end = FindUnescaped(line, 0, " ");
  if (series_end == std::string_view::npos) return LineError("no fields (expected a space)");
  const std::string_view series = line.substr(0, series_end);
  size_t comma = FindUnescaped(series, 0, ",");
  std::string key = Unescape(series.substr(0, comma), ", ");
  if (key.empty()) return LineError("no measurement");
  std::optional<KeyType> type;
  while (comma != std::string_view::npos) {
    const size_t start = comma + 1;
    comma = FindUnescaped(series, start, ",");
    const std::string_view tag = series.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    const size_t eq = FindUnescaped(tag, 0, "=");
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == tag.size()) {
      return LineError("tag " + QuoteForMessage(tag) + " is not key=value");
    }
    const std::string tag_key = Unescape(tag.substr(0, eq), ", =");
    const std::string tag_value = Unescape(tag.substr(eq + 1), ", =");
    if (tag_key == "komoku_type") {
      Result<KeyType> t = ParseKeyType(tag_value);
      if (!t.ok()) return t.status();
      type = *t;
      continue;
    }
    key += '/';
    key += tag_value;
  }
  // The fields: key=value pairs up to the first unescaped space outside a
  // string.
  struct Field {
    std::string name;
    InputValue value;
  };
  std::vector<Field> parsed;
  size_t i = series_end + 1;
  while (true) {
    const size_t eq = FindUnescaped(line, i, "= ,");
    if (eq == std::string_view::npos || line[eq] != '=' || eq == i) {
      return LineError("field " +
                       QuoteForMessage(line.substr(
                           i, eq == std::string_view::npos ? std::string_view::npos : eq - i + 1)) +
                       " is not key=value");
    }
    Field f;
    f.name = Unescape(line.substr(i, eq - i), ", =");
    i = eq + 1;
    if (i < line.size() && line[i] == '"') {
      std::string s;
      ++i;
      while (i < line.size() && line[i] != '"') {
        if (line[i] == '\\' && i + 1 < line.size() && (line[i + 1] == '"' || line[i + 1] == '\\')) {
          ++i;
        }
        s += line[i++];
      }
      if (i >= line.size())
        return LineError("field " + QuoteForMessage(f.name) + ": a string is not closed");
      ++i;
      f.value = InputValue(std::move(s));
    } else {
      size_t end = line.find_first_of(", ", i);
      if (end == std::string_view::npos) end = line.size();
      Result<InputValue> v = LineFieldValue(line.substr(i, end - i));
      if (!v.ok()) return v.status().WithContext("field " + QuoteForMessage(f.name));
      f.value = std::move(v.value());
      i = end;
    }
    parsed.push_back(std::move(f));
    if (i < line.size() && line[i] == ',') {
      ++i;
      continue;
    }
    break;
  }
  if (i >= line.size()) {
    return LineError("no timestamp (an import needs the time of each change)");
  }
  if (line[i] != ' ') return LineError("text after the fields: " + QuoteForMessage(line.substr(i)));
  std::string_view ts = TrimAscii(line.substr(i + 1));
  int64_t units = 0;
  if (ts.empty()) return LineError("no timestamp (an import needs the time of each change)");
  if (!ToInt64(ts, &units))
    return LineError("timestamp " + QuoteForMessage(ts) + " is not an integer");
  if (units < 0) return LineError("timestamp " + QuoteForMessage(ts) + " is before 1970");
  if (units > INT64_MAX / ns_per_unit) {
    return LineError("timestamp " + QuoteForMessage(ts) + " is out of range");
  }
  const int64_t time_ms = units * ns_per_unit / 1000000;
  for (Field& f : parsed) {
    ImportRow row;
    row.key = f.name == "value" ? key : key + "/" + f.name;
    row.time_ms = time_ms;
    row.value = std::move(f.value);
    // A quoted string is text even when it reads as a number ("21").
    row.type = type ? type
               : std::holds_alternative<std::string>(row.value)
                   ? std::optional<KeyType>(KeyType::kString)
                   : std::nullopt;
    rows->push_back(std::move(row));
  }
  return Status::Ok();
}

ImportReader::ImportReader(std::istream& in, ImportFormat format, int64_t line_ns_per_unit)
    : in_(in), format_(format), ns_per_unit_(line_ns_per_unit) {}

bool ImportReader::ReadLine(std::string* line) {
  if (!std::getline(in_, *line)) return false;
  ++line_no_;
  bytes_read_ += line->size() + 1;
  if (line_no_ == 1 && line->compare(0, 3, "\xEF\xBB\xBF") == 0) line->erase(0, 3);
  if (!line->empty() && line->back() == '\r') line->pop_back();
  return true;
}

bool ImportReader::Next(std::vector<ImportRow>* rows, Status* error, int64_t* line) {
  rows->clear();
  *error = Status::Ok();
  while (ReadLine(&line_)) {
    *line = line_no_;
    if (TrimAscii(line_).empty()) continue;
    if (format_ == ImportFormat::kLine) {
      if (line_[0] == '#') continue;
      *error = ParseLineProtocol(line_, ns_per_unit_, rows);
      return true;
    }
    const char sep = format_ == ImportFormat::kTsv ? '\t' : ',';
    if (format_ == ImportFormat::kCsv && !CsvQuotesBalanced(line_)) {
      // A quoted field goes on over the next lines.
      record_ = line_;
      bool closed = false;
      while (record_.size() <= kMaxRecordBytes && ReadLine(&line_)) {
        record_ += '\n';
        record_ += line_;
        if (CsvQuotesBalanced(record_)) {
          closed = true;
          break;
        }
      }
      if (!closed) {
        *error = Status::InvalidArgument("a quoted field opened here is not closed (lines " +
                                         std::to_string(*line) + "-" + std::to_string(line_no_) +
                                         " skipped)");
        first_record_ = false;
        return true;
      }
      line_.swap(record_);
    }
    if (format_ == ImportFormat::kCsv) {
      *error = SplitCsvRecord(line_, sep, &fields_);
    } else {
      fields_.clear();
      size_t start = 0;
      while (true) {
        const size_t tab = line_.find('\t', start);
        fields_.emplace_back(line_, start,
                             tab == std::string::npos ? std::string::npos : tab - start);
        if (tab == std::string::npos) break;
        start = tab + 1;
      }
    }
    const bool first = first_record_;
    first_record_ = false;
    if (!error->ok()) return true;
    if (first && IsCsvHeader(fields_)) continue;
    // InfluxDB's CLI export: a header before each series.
    if (format_ == ImportFormat::kCsv && (first || !influx_header_.empty()) &&
        IsInfluxCsvHeader(fields_)) {
      influx_header_ = fields_;
      continue;
    }
    if (!influx_header_.empty()) {
      *error = InfluxCsvRows(influx_header_, fields_, rows);
      return true;
    }
    Result<ImportRow> row = CsvRow(fields_);
    if (!row.ok()) {
      *error = row.status();
      return true;
    }
    rows->push_back(std::move(row.value()));
    return true;
  }
  return false;
}

const char* CsvExportHeader() { return "key,time,value,type\n"; }

std::string CsvField(std::string_view text) {
  const bool quote = text.find_first_of(",\"\r\n") != std::string_view::npos ||
                     (!text.empty() && (text.front() == ' ' || text.back() == ' '));
  if (!quote) return std::string(text);
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

void AppendCsvRow(std::string_view key, KeyType type, const Sample& sample, std::string* out) {
  *out += CsvField(key);
  *out += ',';
  *out += Rfc3339Ms(sample.time_ms);
  *out += ',';
  *out += CsvField(ValueToText(sample.value));
  *out += ',';
  *out += KeyTypeName(type);
  *out += '\n';
}

bool AppendLineProtocolRow(std::string_view key, KeyType type, const Sample& sample,
                           std::string* out) {
  const std::string* text = std::get_if<std::string>(&sample.value);
  if (key.find_first_of("\r\n") != std::string_view::npos || key.back() == '\\' ||
      (text && text->find_first_of("\r\n") != std::string::npos)) {
    return false;
  }
  *out += Escape(key, ", ");
  if (type == KeyType::kCounter || type == KeyType::kUptime) {
    *out += ",komoku_type=";
    *out += KeyTypeName(type);
  }
  *out += " value=";
  if (const double* d = std::get_if<double>(&sample.value)) {
    *out += FormatNumber(*d);
  } else if (const bool* b = std::get_if<bool>(&sample.value)) {
    *out += *b ? "true" : "false";
  } else {
    *out += '"';
    *out += Escape(std::get<std::string>(sample.value), "\"\\");
    *out += '"';
  }
  *out += ' ';
  *out += std::to_string(sample.time_ms);
  *out += "000000\n";
  return true;
}

}  // namespace komoku::store
