// The files `komoku import` reads and `komoku export` writes
// (docs/operations.md, "Import and export"): CSV and TSV rows
// `key,time,value[,type]` (RFC 4180 quoting) and InfluxDB 1.x line
// protocol. Parsing and formatting only: nothing here touches the store.
#pragma once

#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "core/value.h"

namespace komoku::store {

enum class ImportFormat { kCsv, kTsv, kLine };

// "csv", "tsv" or "line"; nullopt for anything else.
std::optional<ImportFormat> ImportFormatNamed(std::string_view name);
// The format a file name suggests: .tsv/.tab -> TSV, .lp/.line/.influx ->
// line protocol, anything else CSV.
ImportFormat ImportFormatOfPath(std::string_view path);

// One change read from a file. The value is as written (a number, a
// boolean, or text the key's type reads); `type`, when the file gives one,
// is the type a key the import creates gets.
struct ImportRow {
  std::string key;
  int64_t time_ms = 0;
  InputValue value;
  std::optional<KeyType> type;
};

// A time of a CSV/TSV row, in milliseconds since the epoch:
// - RFC 3339 / ISO 8601 ("2026-12-06T12:00:00Z", "2026-12-06T13:00:00.250+01:00",
//   "2026-12-06 12:00:00"; no offset means UTC);
// - epoch seconds, with or without a fraction ("1795306133", "1795306133.852");
// - epoch milliseconds: an integer of 12 digits or more (>= 100000000000,
//   i.e. after 1973-03-03 as milliseconds; as seconds that would be the
//   year 5138, which no row means).
// A leading sign, "now" and relative times are refused.
Result<int64_t> ParseImportTime(std::string_view text);

// RFC 4180: splits one record (which may span lines inside quotes; a
// trailing CR or CRLF is dropped) into its fields. `sep` is ',' or '\t'.
// A quote inside a quoted field is doubled; a quote in an unquoted field,
// or text after a closing quote, is an error.
Status SplitCsvRecord(std::string_view record, char sep, std::vector<std::string>* fields);

// Whether `text` ends outside quotes: a record read line by line is
// complete once this holds.
bool CsvQuotesBalanced(std::string_view text);

// A header row names the columns: key,time,value[,type] (case ignored).
bool IsCsvHeader(const std::vector<std::string>& fields);

// A row from its fields: key, time, value, and an optional type (numeric,
// counter, boolean, uptime, string; empty: guessed from the value).
Result<ImportRow> CsvRow(const std::vector<std::string>& fields);

// The header InfluxDB 1.x's CLI writes before each series of
// `influx -execute 'SELECT * FROM "m" GROUP BY *' -format csv`:
// name,tags,time,<field>... for a measurement with tags, name,time,<field>...
// for one without (case as written).
bool IsInfluxCsvHeader(const std::vector<std::string>& fields);

// The time of such a row: an integer in the unit of the CLI's -precision,
// told by its size (after 2001-09-09: 19 digits ns, its default, 16 us,
// 13 ms, 10 s), or RFC 3339 (-precision rfc3339).
Result<int64_t> InfluxCsvTimeMs(std::string_view text);

// The changes of one row of such an export under `header`: one per field
// with a value (an empty one is a field the point did not have). The key is
// made as for line protocol (below) from the measurement (`name`), the tag
// values of `tags` ("room=kitchen,site=home": InfluxDB lists them sorted by
// tag key; empty ones are left out; komoku_type gives the type) and the
// field's name unless it is "value". Values are text the key's type reads
// (true/false, numbers, text): CSV does not say whether "21" was a string.
// Without GROUP BY * the CLI writes tags as columns like fields: they are
// read as fields (docs/operations.md).
Status InfluxCsvRows(const std::vector<std::string>& header, const std::vector<std::string>& fields,
                     std::vector<ImportRow>* rows);

// How many nanoseconds one unit of a line-protocol timestamp is: 1 for ns
// (InfluxDB's default), 1000 for us, 1000000 for ms, 1000000000 for s.
std::optional<int64_t> LinePrecisionNamed(std::string_view name);

// One line of InfluxDB 1.x line protocol:
//   measurement[,tag=value...] field=value[,field=value...] timestamp
// Each field is one change; its key is the measurement, then each tag's
// value in the order written, then the field's name unless it is "value",
// joined by '/' (`weather,site=home temp=21.5 ...` -> weather/home/temp).
// A tag named komoku_type gives the type of a key the import creates and is
// not part of the key. Values: 12i (and 12u) and floats are numbers,
// t/T/true/True/TRUE and f/F/false/False/FALSE booleans, "text" strings
// (with \" and \\ escapes); a key a string field creates is a string key
// even when its text reads as a number. A line without a timestamp is refused: an
// import needs each change's time. `rows` gets the line's changes (none on
// an error, which names what was wrong).
Status ParseLineProtocol(std::string_view line, int64_t ns_per_unit, std::vector<ImportRow>* rows);

// Reads a whole file of one format, record by record, keeping line numbers.
// A UTF-8 byte order mark at the start is skipped, CRLF line ends are read
// as LF, blank lines (and line protocol's # comments) are skipped, and in
// CSV/TSV a first record that is a header is skipped. A CSV whose records
// start with InfluxDB's CLI header (IsInfluxCsvHeader) is read as that
// export, each header starting a series.
class ImportReader {
 public:
  // `in` must outlive the reader.
  ImportReader(std::istream& in, ImportFormat format, int64_t line_ns_per_unit = 1);

  // The next record's changes (a CSV row gives one, a line-protocol line
  // one per field) in *rows, or its error; *line is the record's first line
  // (1-based). False at the end of the input.
  bool Next(std::vector<ImportRow>* rows, Status* error, int64_t* line);

  // Bytes read so far (for a progress line).
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  bool ReadLine(std::string* line);

  std::istream& in_;
  const ImportFormat format_;
  const int64_t ns_per_unit_;
  int64_t line_no_ = 0;
  uint64_t bytes_read_ = 0;
  bool first_record_ = true;
  std::string line_, record_;
  std::vector<std::string> fields_;
  // InfluxDB's CSV: the header in force (empty: not that format).
  std::vector<std::string> influx_header_;
};

// CSV export: the header, and one row `key,time,value,type` (time as RFC
// 3339 UTC with milliseconds, numbers in shortest round-trip form, fields
// quoted when they need it) appended to *out with a LF.
const char* CsvExportHeader();
void AppendCsvRow(std::string_view key, KeyType type, const Sample& sample, std::string* out);
// A CSV field, quoted when it holds the separator, a quote, CR or LF, or
// starts or ends with a space.
std::string CsvField(std::string_view text);

// Line-protocol export: `<key> value=<v>[,komoku_type=...] <ns>` with the
// measurement escaped; counter and uptime keys carry a komoku_type tag so
// an import makes them again. Appended to *out with a LF. False (nothing
// appended) when line protocol cannot hold the change: a key or a string
// with a line break, or a key ending in a backslash.
bool AppendLineProtocolRow(std::string_view key, KeyType type, const Sample& sample,
                           std::string* out);

}  // namespace komoku::store
